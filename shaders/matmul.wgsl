// Dense matrix product C = op(A) · op(B) (+ bias), f32 accumulation, the core of the `matmul`
// family (and, with the hooks of noisy_linear.wgsl, of the `noisy_linear` family).
//
// op(A) is M × K: A stored row-major M × K (TRANS_A = 0) or K × M (TRANS_A = 1).
// op(B) is K × N: B stored row-major N × K (TRANS_B = 1, the Linear weight layout) or K × N
// (TRANS_B = 0). C is M × N row-major. The three products of a Linear layer (batch folded into
// the rows): Y = X·Wᵀ (A = X, B = W, TRANS_B = 1), dX = dY·W (A = dY, B = W, TRANS_B = 0),
// dW = dYᵀ·X (A = dY with TRANS_A = 1, B = X, TRANS_B = 0; the batch is the reduction).
//
// One workgroup computes a BM × BN tile of C with WG_M × WG_N invocations; each invocation a
// register block of (4·VM) × (4·VN) outputs held in vec4s indexed by constants (every loop over
// VM, VN and BK has a constant trip count and unrolls). Per K-tile of BK, the A and B tiles are
// staged in workgroup memory as vec4s (4 consecutive rows, resp. columns, of one k), bounds-
// checked with clamped loads (zero outside), then two barriers. The hooks `b_hook` (applied to
// every staged B element, with its flat index in B) and `c_hook` (applied to every output,
// with its flat index in C) are the identity in matmul_dense.wgsl.

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
// vec4s of rows (VM) and of columns (VN) of an invocation's register block, each 1..=4.
override VM: u32 = 2u;
override VN: u32 = 2u;
// K-tile.
override BK: u32 = 16u;
override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 1u;
override HAS_BIAS: u32 = 0u;
// 1: add the output's current value (dW over windows of rows: the hook is linear, so applying
// it per window is exact).
override ACCUMULATE: u32 = 0u;

override BM: u32 = 4u * VM * WG_M;
override BN: u32 = 4u * VN * WG_N;
override THREADS: u32 = WG_M * WG_N;
// vec4 slots of the staged tiles, and slots each invocation stages.
override A_SLOTS: u32 = BK * BM / 4u;
override B_SLOTS: u32 = BK * BN / 4u;
override A_PER: u32 = (A_SLOTS + THREADS - 1u) / THREADS;
override B_PER: u32 = (B_SLOTS + THREADS - 1u) / THREADS;

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    // Column tiles: ceil(n / BN).
    tiles_n: u32,
    // Tiles in all: tiles_n · ceil(m / BM).
    tiles: u32,
    // Index of element 0 of A, B and C in their bindings (windows are bound from an aligned
    // offset).
    a_off: u32,
    b_off: u32,
    c_off: u32,
}

@group(0) @binding(0) var<uniform> mm: MatmulParams;
@group(0) @binding(1) var<storage, read> mat_a: array<Elem>;
@group(0) @binding(2) var<storage, read> mat_b: array<Elem>;
@group(0) @binding(3) var<storage, read_write> mat_c: array<Elem>;
@group(0) @binding(4) var<storage, read> bias: array<Elem>;

var<workgroup> tile_a: array<vec4<f32>, A_SLOTS>;
var<workgroup> tile_b: array<vec4<f32>, B_SLOTS>;

// op(A)(i, p), 0 outside M × K.
fn a_at(i: u32, p: u32) -> f32 {
    let inside = i < mm.m && p < mm.k;
    let ic = min(i, mm.m - 1u);
    let pc = min(p, mm.k - 1u);
    var e = ic * mm.k + pc;
    if TRANS_A == 1u {
        e = pc * mm.m + ic;
    }
    return select(0.0, f32(mat_a[mm.a_off + e]), inside);
}

// op(B)(p, j) through b_hook, 0 outside K × N.
fn b_at(p: u32, j: u32) -> f32 {
    let inside = p < mm.k && j < mm.n;
    let pc = min(p, mm.k - 1u);
    let jc = min(j, mm.n - 1u);
    var e = jc * mm.k + pc;
    if TRANS_B == 0u {
        e = pc * mm.n + jc;
    }
    return select(0.0, b_hook(f32(mat_b[mm.b_off + e]), e), inside);
}

fn store(e: u32, value: f32) {
    var v = c_hook(value, e);
    if ACCUMULATE == 1u {
        v += f32(mat_c[mm.c_off + e]);
    }
    mat_c[mm.c_off + e] = Elem(v);
}

@compute @workgroup_size(THREADS)
fn matmul(@builtin(local_invocation_index) lid: u32,
          @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wid.y * nwg.x + wid.x;
    if t >= mm.tiles {
        return;
    }
    let row0 = (t / mm.tiles_n) * BM;
    let col0 = (t % mm.tiles_n) * BN;
    let tx = lid % WG_N;
    let ty = lid / WG_N;
    // acc[(4·v + r)·4 + u]: row 4·(ty·VM + v) + r, columns 4·(tx·VN + u) .. + 3.
    // Zero-initialised.
    var acc: array<vec4<f32>, 64>;
    for (var k0 = 0u; k0 < mm.k; k0 += BK) {
        for (var s = 0u; s < A_PER; s++) {
            let slot = s * THREADS + lid;
            if slot < A_SLOTS {
                let p = slot / (BM / 4u);
                let i = row0 + 4u * (slot % (BM / 4u));
                tile_a[slot] = vec4<f32>(a_at(i, k0 + p), a_at(i + 1u, k0 + p),
                                         a_at(i + 2u, k0 + p), a_at(i + 3u, k0 + p));
            }
        }
        for (var s = 0u; s < B_PER; s++) {
            let slot = s * THREADS + lid;
            if slot < B_SLOTS {
                let p = slot / (BN / 4u);
                let j = col0 + 4u * (slot % (BN / 4u));
                tile_b[slot] = vec4<f32>(b_at(k0 + p, j), b_at(k0 + p, j + 1u),
                                         b_at(k0 + p, j + 2u), b_at(k0 + p, j + 3u));
            }
        }
        workgroupBarrier();
        for (var p = 0u; p < BK; p++) {
            var a: array<vec4<f32>, 4>;
            var b: array<vec4<f32>, 4>;
            for (var v = 0u; v < VM; v++) {
                a[v] = tile_a[p * (BM / 4u) + ty * VM + v];
            }
            for (var u = 0u; u < VN; u++) {
                b[u] = tile_b[p * (BN / 4u) + tx * VN + u];
            }
            for (var v = 0u; v < VM; v++) {
                for (var u = 0u; u < VN; u++) {
                    acc[(4u * v) * 4u + u] = fma(vec4<f32>(a[v].x), b[u], acc[(4u * v) * 4u + u]);
                    acc[(4u * v + 1u) * 4u + u] = fma(vec4<f32>(a[v].y), b[u], acc[(4u * v + 1u) * 4u + u]);
                    acc[(4u * v + 2u) * 4u + u] = fma(vec4<f32>(a[v].z), b[u], acc[(4u * v + 2u) * 4u + u]);
                    acc[(4u * v + 3u) * 4u + u] = fma(vec4<f32>(a[v].w), b[u], acc[(4u * v + 3u) * 4u + u]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var v = 0u; v < VM; v++) {
        for (var r = 0u; r < 4u; r++) {
            let i = row0 + 4u * (ty * VM + v) + r;
            for (var u = 0u; u < VN; u++) {
                let j = col0 + 4u * (tx * VN + u);
                var out = acc[(4u * v + r) * 4u + u];
                if HAS_BIAS == 1u {
                    out += vec4<f32>(f32(bias[min(j, mm.n - 1u)]), f32(bias[min(j + 1u, mm.n - 1u)]),
                                     f32(bias[min(j + 2u, mm.n - 1u)]), f32(bias[min(j + 3u, mm.n - 1u)]));
                }
                if i < mm.m {
                    let e = i * mm.n + j;
                    if j < mm.n {
                        store(e, out.x);
                    }
                    if j + 1u < mm.n {
                        store(e + 1u, out.y);
                    }
                    if j + 2u < mm.n {
                        store(e + 2u, out.z);
                    }
                    if j + 3u < mm.n {
                        store(e + 3u, out.w);
                    }
                }
            }
        }
    }
}
