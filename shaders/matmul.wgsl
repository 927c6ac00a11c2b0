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
// register block of (4·VM) × (4·VN) outputs held in named vec4 registers (branches on VM, VN
// fold away; measured on lavapipe, an array indexed in the loops was 2-3× slower). Per K-tile of BK, the A and B tiles are
// staged in workgroup memory as vec4s (4 consecutive rows, resp. columns, of one k), bounds-
// checked with clamped loads (zero outside), then two barriers. B is staged 4 consecutive elements of one stored row at a
// time (4 k of a row when TRANS_B = 1, 4 columns when TRANS_B = 0). The hooks `b_hook4`
// (applied to those 4 staged B elements, with their flat indices in B) and `c_hook` (applied
// to every output, with its flat index in C) are the identity in matmul_dense.wgsl.

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
// vec4s of rows (VM) and of columns (VN) of an invocation's register block, each 1..=4.
override VM: u32 = 2u;
override VN: u32 = 2u;
// K-tile (a multiple of 4).
override BK: u32 = 16u;
override TRANS_A: u32 = 0u;
// 1: the A tile (when TRANS_A = 0) and the B tile (when TRANS_B = 1) are staged 4 consecutive
// k of one stored row per slot, consecutive invocations taking consecutive k: a GPU subgroup
// then reads whole 32-byte sectors. 0: A one k of 4 rows per slot, B consecutive invocations
// along the rows (what suits lavapipe's per-lane loads).
override K_FAST: u32 = 0u;
override TRANS_B: u32 = 1u;
// 0: an invocation's register block is VM × VN contiguous vec4s (rows 4·(ty·VM + v) + r,
// columns 4·(tx·VN + u) + c). 1: its vec4s are spread WG_M (WG_N) vec4s apart (rows
// 4·(v·WG_M + ty) + r, columns 4·(u·WG_N + tx) + c), so that neighbouring invocations read
// neighbouring vec4s of the staged tiles: on GPUs, conflict-free workgroup-memory reads for
// any VM, VN.
override SPREAD: u32 = 0u;
// 1: split-K (few output tiles, long K): workgroup t computes output tile t % (tiles / splits)
// over the k of split t / (tiles / splits), [split·k_chunk, (split + 1)·k_chunk), and writes the
// raw sums, without bias or hook, to C = the f32 partials (splits × M × N); `matmul_reduce`
// then adds each output's partial sums in split order, and the bias. The hook of a split
// product must leave outputs unchanged (the second pass has none).
override SPLIT: u32 = 0u;
override HAS_BIAS: u32 = 0u;
// 0: b_row4 passes zeros to b_hook4 instead of reading B (a hook that computes the weight from
// its index, matmul_pq.wgsl; B is then bound to a placeholder).
override B_RAW: u32 = 1u;
// 1: add the output's current value (dW over windows of rows: the hook is linear, so applying
// it per window is exact).
override ACCUMULATE: u32 = 0u;

override BM: u32 = 4u * VM * WG_M;
override BN: u32 = 4u * VN * WG_N;
override THREADS: u32 = WG_M * WG_N;
// An invocation's first vec4 of rows (columns) is at ty·QA (tx·QB), its next ones SA (SB) on.
override QA: u32 = VM - SPREAD * (VM - 1u);
override QB: u32 = VN - SPREAD * (VN - 1u);
override SA: u32 = 1u + SPREAD * (WG_M - 1u);
override SB: u32 = 1u + SPREAD * (WG_N - 1u);
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
    // K per split (a multiple of BK; K without split-K) and the number of splits.
    k_chunk: u32,
    splits: u32,
    // Broadcast kernel: the first k, column and row of this dispatch.
    k_first: u32,
    col_first: u32,
    row_first: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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

// op(A)(i, p .. p + 3) of an A stored M × K (TRANS_A = 0): 4 consecutive elements of one row;
// 0 outside M × K.
fn a_row4(i: u32, p: u32) -> vec4<f32> {
    let ps = vec4<u32>(p) + vec4<u32>(0u, 1u, 2u, 3u);
    let e = vec4<u32>(min(i, mm.m - 1u) * mm.k) + min(ps, vec4<u32>(mm.k - 1u));
    let raw = vec4<f32>(f32(mat_a[mm.a_off + e.x]), f32(mat_a[mm.a_off + e.y]),
                        f32(mat_a[mm.a_off + e.z]), f32(mat_a[mm.a_off + e.w]));
    let v = select(vec4<f32>(0.0), raw, ps < vec4<u32>(mm.k));
    return select(vec4<f32>(0.0), v, i < mm.m);
}

// op(B)(p .. p + 3, j) of a B stored N × K (TRANS_B = 1): 4 consecutive elements of one row
// (so mostly of one noise block), through b_hook4; 0 outside K × N.
fn b_row4(p: u32, j: u32) -> vec4<f32> {
    let ps = vec4<u32>(p) + vec4<u32>(0u, 1u, 2u, 3u);
    let e = vec4<u32>(min(j, mm.n - 1u) * mm.k) + min(ps, vec4<u32>(mm.k - 1u));
    var raw = vec4<f32>(0.0);
    if B_RAW == 1u {
        raw = vec4<f32>(f32(mat_b[mm.b_off + e.x]), f32(mat_b[mm.b_off + e.y]),
                        f32(mat_b[mm.b_off + e.z]), f32(mat_b[mm.b_off + e.w]));
    }
    let v = select(vec4<f32>(0.0), b_hook4(raw, e), ps < vec4<u32>(mm.k));
    return select(vec4<f32>(0.0), v, j < mm.n);
}

// op(B)(p, j .. j + 3) of a B stored K × N (TRANS_B = 0): 4 consecutive elements of one row,
// through b_hook4; 0 outside K × N.
fn b_col4(p: u32, j: u32) -> vec4<f32> {
    let js = vec4<u32>(j) + vec4<u32>(0u, 1u, 2u, 3u);
    let e = vec4<u32>(min(p, mm.k - 1u) * mm.n) + min(js, vec4<u32>(mm.n - 1u));
    let raw = vec4<f32>(f32(mat_b[mm.b_off + e.x]), f32(mat_b[mm.b_off + e.y]),
                        f32(mat_b[mm.b_off + e.z]), f32(mat_b[mm.b_off + e.w]));
    let v = select(vec4<f32>(0.0), b_hook4(raw, e), js < vec4<u32>(mm.n));
    return select(vec4<f32>(0.0), v, p < mm.k);
}

fn store(e: u32, value: f32) {
    var v = c_hook(value, e);
    if ACCUMULATE == 1u {
        v += f32(mat_c[mm.c_off + e]);
    }
    mat_c[mm.c_off + e] = Elem(v);
}

// Output e of split `split`: with SPLIT = 1 its raw partial sum at split·M·N + e of the
// partials (bound as C from offset 0), else through store.
fn emit(split: u32, e: u32, value: f32) {
    if SPLIT == 1u {
        mat_c[split * mm.m * mm.n + e] = Elem(value);
    } else {
        store(e, value);
    }
}

@compute @workgroup_size(THREADS)
fn matmul(@builtin(local_invocation_index) lid: u32,
          @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wid.y * nwg.x + wid.x;
    if t >= mm.tiles {
        return;
    }
    let tiles_mn = mm.tiles / mm.splits;
    let split = t / tiles_mn;
    let row0 = ((t % tiles_mn) / mm.tiles_n) * BM;
    let col0 = ((t % tiles_mn) % mm.tiles_n) * BN;
    // K-tiles never straddle two splits: k_chunk is a multiple of BK.
    let k_begin = split * mm.k_chunk;
    let k_end = min(k_begin + mm.k_chunk, mm.k);
    let tx = lid % WG_N;
    let ty = lid / WG_N;
    // c{4·v + r}_{u}: row 4·(ty·QA + v·SA) + r, columns 4·(tx·QB + u·SB) .. + 3 of the invocation's
    // register block (named registers: a private array indexed in a loop would live in memory).
    // Those past VM, VN are never touched (the branches on them fold away).
    var c0_0 = vec4<f32>(0.0);
    var c0_1 = vec4<f32>(0.0);
    var c0_2 = vec4<f32>(0.0);
    var c0_3 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0);
    var c1_1 = vec4<f32>(0.0);
    var c1_2 = vec4<f32>(0.0);
    var c1_3 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0);
    var c2_1 = vec4<f32>(0.0);
    var c2_2 = vec4<f32>(0.0);
    var c2_3 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0);
    var c3_1 = vec4<f32>(0.0);
    var c3_2 = vec4<f32>(0.0);
    var c3_3 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0);
    var c4_1 = vec4<f32>(0.0);
    var c4_2 = vec4<f32>(0.0);
    var c4_3 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0);
    var c5_1 = vec4<f32>(0.0);
    var c5_2 = vec4<f32>(0.0);
    var c5_3 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0);
    var c6_1 = vec4<f32>(0.0);
    var c6_2 = vec4<f32>(0.0);
    var c6_3 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0);
    var c7_1 = vec4<f32>(0.0);
    var c7_2 = vec4<f32>(0.0);
    var c7_3 = vec4<f32>(0.0);
    var c8_0 = vec4<f32>(0.0);
    var c8_1 = vec4<f32>(0.0);
    var c8_2 = vec4<f32>(0.0);
    var c8_3 = vec4<f32>(0.0);
    var c9_0 = vec4<f32>(0.0);
    var c9_1 = vec4<f32>(0.0);
    var c9_2 = vec4<f32>(0.0);
    var c9_3 = vec4<f32>(0.0);
    var c10_0 = vec4<f32>(0.0);
    var c10_1 = vec4<f32>(0.0);
    var c10_2 = vec4<f32>(0.0);
    var c10_3 = vec4<f32>(0.0);
    var c11_0 = vec4<f32>(0.0);
    var c11_1 = vec4<f32>(0.0);
    var c11_2 = vec4<f32>(0.0);
    var c11_3 = vec4<f32>(0.0);
    var c12_0 = vec4<f32>(0.0);
    var c12_1 = vec4<f32>(0.0);
    var c12_2 = vec4<f32>(0.0);
    var c12_3 = vec4<f32>(0.0);
    var c13_0 = vec4<f32>(0.0);
    var c13_1 = vec4<f32>(0.0);
    var c13_2 = vec4<f32>(0.0);
    var c13_3 = vec4<f32>(0.0);
    var c14_0 = vec4<f32>(0.0);
    var c14_1 = vec4<f32>(0.0);
    var c14_2 = vec4<f32>(0.0);
    var c14_3 = vec4<f32>(0.0);
    var c15_0 = vec4<f32>(0.0);
    var c15_1 = vec4<f32>(0.0);
    var c15_2 = vec4<f32>(0.0);
    var c15_3 = vec4<f32>(0.0);
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        if K_FAST == 1u && TRANS_A == 0u {
            // Slot: 4 consecutive k of row il, into component il % 4 of 4 k-rows of the tile.
            for (var s = 0u; s < A_PER; s++) {
                let slot = s * THREADS + lid;
                if slot < A_SLOTS {
                    let p4 = slot % (BK / 4u);
                    let il = slot / (BK / 4u);
                    let v = a_row4(row0 + il, k0 + 4u * p4);
                    let base = 4u * p4 * (BM / 4u) + il / 4u;
                    let c = il % 4u;
                    tile_a[base][c] = v.x;
                    tile_a[base + BM / 4u][c] = v.y;
                    tile_a[base + 2u * (BM / 4u)][c] = v.z;
                    tile_a[base + 3u * (BM / 4u)][c] = v.w;
                }
            }
        } else {
            for (var s = 0u; s < A_PER; s++) {
                let slot = s * THREADS + lid;
                if slot < A_SLOTS {
                    let p = slot / (BM / 4u);
                    let i = row0 + 4u * (slot % (BM / 4u));
                    tile_a[slot] = vec4<f32>(a_at(i, k0 + p), a_at(i + 1u, k0 + p),
                                             a_at(i + 2u, k0 + p), a_at(i + 3u, k0 + p));
                }
            }
        }
        if TRANS_B == 1u {
            // Each slot: 4 consecutive k of one column j (one row of the stored B), written
            // into component j % 4 of 4 consecutive k-rows of the tile.
            for (var s = 0u; s < B_PER; s++) {
                let slot = s * THREADS + lid;
                if slot < B_SLOTS {
                    var jl = slot % BN;
                    var p4 = slot / BN;
                    if K_FAST == 1u {
                        jl = slot / (BK / 4u);
                        p4 = slot % (BK / 4u);
                    }
                    let v = b_row4(k0 + 4u * p4, col0 + jl);
                    let base = 4u * p4 * (BN / 4u) + jl / 4u;
                    let c = jl % 4u;
                    tile_b[base][c] = v.x;
                    tile_b[base + BN / 4u][c] = v.y;
                    tile_b[base + 2u * (BN / 4u)][c] = v.z;
                    tile_b[base + 3u * (BN / 4u)][c] = v.w;
                }
            }
        } else {
            for (var s = 0u; s < B_PER; s++) {
                let slot = s * THREADS + lid;
                if slot < B_SLOTS {
                    let p = slot / (BN / 4u);
                    let j = col0 + 4u * (slot % (BN / 4u));
                    tile_b[slot] = b_col4(k0 + p, j);
                }
            }
        }
        workgroupBarrier();
        for (var p = 0u; p < BK; p++) {
            let ra = p * (BM / 4u) + ty * QA;
            let rb = p * (BN / 4u) + tx * QB;
            let a0 = tile_a[ra];
            let b0 = tile_b[rb];
            var a1 = vec4<f32>(0.0);
            var a2 = vec4<f32>(0.0);
            var a3 = vec4<f32>(0.0);
            var b1 = vec4<f32>(0.0);
            var b2 = vec4<f32>(0.0);
            var b3 = vec4<f32>(0.0);
            if VM > 1u {
                a1 = tile_a[ra + SA];
            }
            if VM > 2u {
                a2 = tile_a[ra + 2u * SA];
            }
            if VM > 3u {
                a3 = tile_a[ra + 3u * SA];
            }
            if VN > 1u {
                b1 = tile_b[rb + SB];
            }
            if VN > 2u {
                b2 = tile_b[rb + 2u * SB];
            }
            if VN > 3u {
                b3 = tile_b[rb + 3u * SB];
            }
            c0_0 = fma(vec4<f32>(a0.x), b0, c0_0);
            c1_0 = fma(vec4<f32>(a0.y), b0, c1_0);
            c2_0 = fma(vec4<f32>(a0.z), b0, c2_0);
            c3_0 = fma(vec4<f32>(a0.w), b0, c3_0);
            if VM > 0u && VN > 1u {
                c0_1 = fma(vec4<f32>(a0.x), b1, c0_1);
                c1_1 = fma(vec4<f32>(a0.y), b1, c1_1);
                c2_1 = fma(vec4<f32>(a0.z), b1, c2_1);
                c3_1 = fma(vec4<f32>(a0.w), b1, c3_1);
            }
            if VM > 0u && VN > 2u {
                c0_2 = fma(vec4<f32>(a0.x), b2, c0_2);
                c1_2 = fma(vec4<f32>(a0.y), b2, c1_2);
                c2_2 = fma(vec4<f32>(a0.z), b2, c2_2);
                c3_2 = fma(vec4<f32>(a0.w), b2, c3_2);
            }
            if VM > 0u && VN > 3u {
                c0_3 = fma(vec4<f32>(a0.x), b3, c0_3);
                c1_3 = fma(vec4<f32>(a0.y), b3, c1_3);
                c2_3 = fma(vec4<f32>(a0.z), b3, c2_3);
                c3_3 = fma(vec4<f32>(a0.w), b3, c3_3);
            }
            if VM > 1u && VN > 0u {
                c4_0 = fma(vec4<f32>(a1.x), b0, c4_0);
                c5_0 = fma(vec4<f32>(a1.y), b0, c5_0);
                c6_0 = fma(vec4<f32>(a1.z), b0, c6_0);
                c7_0 = fma(vec4<f32>(a1.w), b0, c7_0);
            }
            if VM > 1u && VN > 1u {
                c4_1 = fma(vec4<f32>(a1.x), b1, c4_1);
                c5_1 = fma(vec4<f32>(a1.y), b1, c5_1);
                c6_1 = fma(vec4<f32>(a1.z), b1, c6_1);
                c7_1 = fma(vec4<f32>(a1.w), b1, c7_1);
            }
            if VM > 1u && VN > 2u {
                c4_2 = fma(vec4<f32>(a1.x), b2, c4_2);
                c5_2 = fma(vec4<f32>(a1.y), b2, c5_2);
                c6_2 = fma(vec4<f32>(a1.z), b2, c6_2);
                c7_2 = fma(vec4<f32>(a1.w), b2, c7_2);
            }
            if VM > 1u && VN > 3u {
                c4_3 = fma(vec4<f32>(a1.x), b3, c4_3);
                c5_3 = fma(vec4<f32>(a1.y), b3, c5_3);
                c6_3 = fma(vec4<f32>(a1.z), b3, c6_3);
                c7_3 = fma(vec4<f32>(a1.w), b3, c7_3);
            }
            if VM > 2u && VN > 0u {
                c8_0 = fma(vec4<f32>(a2.x), b0, c8_0);
                c9_0 = fma(vec4<f32>(a2.y), b0, c9_0);
                c10_0 = fma(vec4<f32>(a2.z), b0, c10_0);
                c11_0 = fma(vec4<f32>(a2.w), b0, c11_0);
            }
            if VM > 2u && VN > 1u {
                c8_1 = fma(vec4<f32>(a2.x), b1, c8_1);
                c9_1 = fma(vec4<f32>(a2.y), b1, c9_1);
                c10_1 = fma(vec4<f32>(a2.z), b1, c10_1);
                c11_1 = fma(vec4<f32>(a2.w), b1, c11_1);
            }
            if VM > 2u && VN > 2u {
                c8_2 = fma(vec4<f32>(a2.x), b2, c8_2);
                c9_2 = fma(vec4<f32>(a2.y), b2, c9_2);
                c10_2 = fma(vec4<f32>(a2.z), b2, c10_2);
                c11_2 = fma(vec4<f32>(a2.w), b2, c11_2);
            }
            if VM > 2u && VN > 3u {
                c8_3 = fma(vec4<f32>(a2.x), b3, c8_3);
                c9_3 = fma(vec4<f32>(a2.y), b3, c9_3);
                c10_3 = fma(vec4<f32>(a2.z), b3, c10_3);
                c11_3 = fma(vec4<f32>(a2.w), b3, c11_3);
            }
            if VM > 3u && VN > 0u {
                c12_0 = fma(vec4<f32>(a3.x), b0, c12_0);
                c13_0 = fma(vec4<f32>(a3.y), b0, c13_0);
                c14_0 = fma(vec4<f32>(a3.z), b0, c14_0);
                c15_0 = fma(vec4<f32>(a3.w), b0, c15_0);
            }
            if VM > 3u && VN > 1u {
                c12_1 = fma(vec4<f32>(a3.x), b1, c12_1);
                c13_1 = fma(vec4<f32>(a3.y), b1, c13_1);
                c14_1 = fma(vec4<f32>(a3.z), b1, c14_1);
                c15_1 = fma(vec4<f32>(a3.w), b1, c15_1);
            }
            if VM > 3u && VN > 2u {
                c12_2 = fma(vec4<f32>(a3.x), b2, c12_2);
                c13_2 = fma(vec4<f32>(a3.y), b2, c13_2);
                c14_2 = fma(vec4<f32>(a3.z), b2, c14_2);
                c15_2 = fma(vec4<f32>(a3.w), b2, c15_2);
            }
            if VM > 3u && VN > 3u {
                c12_3 = fma(vec4<f32>(a3.x), b3, c12_3);
                c13_3 = fma(vec4<f32>(a3.y), b3, c13_3);
                c14_3 = fma(vec4<f32>(a3.z), b3, c14_3);
                c15_3 = fma(vec4<f32>(a3.w), b3, c15_3);
            }
        }
        workgroupBarrier();
    }
    // The register block as an array for the epilogue (unrolled: constant indices).
    var acc: array<vec4<f32>, 64>;
    acc[0] = c0_0;
    acc[1] = c0_1;
    acc[2] = c0_2;
    acc[3] = c0_3;
    acc[4] = c1_0;
    acc[5] = c1_1;
    acc[6] = c1_2;
    acc[7] = c1_3;
    acc[8] = c2_0;
    acc[9] = c2_1;
    acc[10] = c2_2;
    acc[11] = c2_3;
    acc[12] = c3_0;
    acc[13] = c3_1;
    acc[14] = c3_2;
    acc[15] = c3_3;
    acc[16] = c4_0;
    acc[17] = c4_1;
    acc[18] = c4_2;
    acc[19] = c4_3;
    acc[20] = c5_0;
    acc[21] = c5_1;
    acc[22] = c5_2;
    acc[23] = c5_3;
    acc[24] = c6_0;
    acc[25] = c6_1;
    acc[26] = c6_2;
    acc[27] = c6_3;
    acc[28] = c7_0;
    acc[29] = c7_1;
    acc[30] = c7_2;
    acc[31] = c7_3;
    acc[32] = c8_0;
    acc[33] = c8_1;
    acc[34] = c8_2;
    acc[35] = c8_3;
    acc[36] = c9_0;
    acc[37] = c9_1;
    acc[38] = c9_2;
    acc[39] = c9_3;
    acc[40] = c10_0;
    acc[41] = c10_1;
    acc[42] = c10_2;
    acc[43] = c10_3;
    acc[44] = c11_0;
    acc[45] = c11_1;
    acc[46] = c11_2;
    acc[47] = c11_3;
    acc[48] = c12_0;
    acc[49] = c12_1;
    acc[50] = c12_2;
    acc[51] = c12_3;
    acc[52] = c13_0;
    acc[53] = c13_1;
    acc[54] = c13_2;
    acc[55] = c13_3;
    acc[56] = c14_0;
    acc[57] = c14_1;
    acc[58] = c14_2;
    acc[59] = c14_3;
    acc[60] = c15_0;
    acc[61] = c15_1;
    acc[62] = c15_2;
    acc[63] = c15_3;
    for (var v = 0u; v < VM; v++) {
        for (var r = 0u; r < 4u; r++) {
            let i = row0 + 4u * (ty * QA + v * SA) + r;
            for (var u = 0u; u < VN; u++) {
                let j = col0 + 4u * (tx * QB + u * SB);
                var out = acc[(4u * v + r) * 4u + u];
                if HAS_BIAS == 1u && SPLIT == 0u {
                    out += vec4<f32>(f32(bias[min(j, mm.n - 1u)]), f32(bias[min(j + 1u, mm.n - 1u)]),
                                     f32(bias[min(j + 2u, mm.n - 1u)]), f32(bias[min(j + 3u, mm.n - 1u)]));
                }
                if i < mm.m {
                    let e = i * mm.n + j;
                    if j < mm.n {
                        emit(split, e, out.x);
                    }
                    if j + 1u < mm.n {
                        emit(split, e + 1u, out.y);
                    }
                    if j + 2u < mm.n {
                        emit(split, e + 2u, out.z);
                    }
                    if j + 3u < mm.n {
                        emit(split, e + 3u, out.w);
                    }
                }
            }
        }
    }
}

// Second pass of split-K: output e = Σ over the splits, in order, of A (the partials, bound from
// offset 0) at s·M·N + e, plus the bias. One invocation per output.
@compute @workgroup_size(256)
fn matmul_reduce(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid;
    let mn = mm.m * mm.n;
    if e >= mn {
        return;
    }
    var v = 0.0;
    for (var s = 0u; s < mm.splits; s++) {
        v += f32(mat_a[s * mn + e]);
    }
    if HAS_BIAS == 1u {
        v += f32(bias[e % mm.n]);
    }
    store(e, v);
}

// Broadcast kernel (`matmul_bcast`), shaped for CPU adapters such as lavapipe, where a lane's
// load from workgroup memory at a compile-time-constant address, outside all loops, is one
// broadcast, while any other load is a loop over the SIMD lanes. One invocation owns one column
// j of C and BC_R rows; one workgroup BC_N columns. One dispatch covers BC_S sub-slabs of BC_KS
// k from k_first, in straight-line code:
// - op(A) of the sub-slabs (BC_R rows × BC_S · BC_KS k) is staged in workgroup memory, then one
//   barrier (on lavapipe a barrier with sums live across it costs as much as the products),
//   and read at constant addresses: broadcasts;
// - the invocation's op(B) column comes from uniform block s, one vec4 of 4 k at a time:
//   `matmul_bcast_pack` wrote op(B) through b_hook4 there (the noise, or the PQ decoding) just
//   before, column-major per block (block row j holds its BC_KS k).
// The first dispatch of a window stores its sums (plus the bias), later ones add theirs; the
// last applies c_hook to the total (with ACCUMULATE = 1, dW windows after the first, c_hook is
// applied to each dispatch's part: it is linear). Where the window takes several dispatches,
// the sums before the last go to `bc_part` instead of C (BC_PHASE).
const BC_N: u32 = 256u;
const BC_R: u32 = 32u;
const BC_KS: u32 = 64u;
// vec4s of one staged sub-slab, and of one uniform block.
const BC_SLAB4: u32 = BC_R * BC_KS / 4u;
// Sub-slabs per dispatch, 1..=3 (8 KiB of workgroup memory each; one uniform block each).
override BC_S: u32 = 3u;
// Whether the dispatch's rows or columns may end past C's: each store is then checked. The
// host dispatches whole blocks of rows and columns without (on lavapipe a store under a branch
// is dearer: 1024³ took 10 % longer with the check).
override BC_CHECK: bool = true;

// 0: each dispatch reads and writes C (scalar accesses, 32 per invocation). 1, 2, 3: the first,
// a middle, the last dispatch of a window whose sums before the last go to bc_part: the 32
// sums of an invocation as 8 consecutive vec4s there (on lavapipe an access at a per-lane
// address is a loop over the lanes, one per vec4 as per scalar). Phases 1 and 2 do not touch
// C; phase 3 adds the stored sums and writes C as phase 0 would a window's only dispatch.
override BC_PHASE: u32 = 0u;
// 1: staged slots hold 4 rows of one k (matmul_bcast_a4 with TRANS_A = 1), 0: 4 k of one row.
override A4_ROWS: u32 = 0u;

@group(0) @binding(11) var<uniform> bc_w0: array<vec4<f32>, UNIFORM_TABLE_VEC4S>;
@group(0) @binding(12) var<uniform> bc_w1: array<vec4<f32>, UNIFORM_TABLE_VEC4S>;
@group(0) @binding(13) var<uniform> bc_w2: array<vec4<f32>, UNIFORM_TABLE_VEC4S>;

var<workgroup> bc_a: array<vec4<f32>, BC_S * BC_SLAB4>;

// The window's partial sums for BC_PHASE 1..=3, bound per column block: row block b (rows
// 32·b ..) of column c of the block at vec4s 8·(256·b + c) .. + 7. matmul_bcast never reads B
// (its blocks come packed in uniform buffers), so its binding takes the sums: the noisy Linear
// module then stays within 8 storage bindings per stage.
@group(0) @binding(2) var<storage, read_write> bc_part: array<vec4<f32>>;

var<private> bc_row0: u32;
var<private> bc_col: u32;
// Row r's sum of the invocation's column (named: a private array may live in memory).
var<private> bc_c0: f32;
var<private> bc_c1: f32;
var<private> bc_c2: f32;
var<private> bc_c3: f32;
var<private> bc_c4: f32;
var<private> bc_c5: f32;
var<private> bc_c6: f32;
var<private> bc_c7: f32;
var<private> bc_c8: f32;
var<private> bc_c9: f32;
var<private> bc_c10: f32;
var<private> bc_c11: f32;
var<private> bc_c12: f32;
var<private> bc_c13: f32;
var<private> bc_c14: f32;
var<private> bc_c15: f32;
var<private> bc_c16: f32;
var<private> bc_c17: f32;
var<private> bc_c18: f32;
var<private> bc_c19: f32;
var<private> bc_c20: f32;
var<private> bc_c21: f32;
var<private> bc_c22: f32;
var<private> bc_c23: f32;
var<private> bc_c24: f32;
var<private> bc_c25: f32;
var<private> bc_c26: f32;
var<private> bc_c27: f32;
var<private> bc_c28: f32;
var<private> bc_c29: f32;
var<private> bc_c30: f32;
var<private> bc_c31: f32;

// Stages slot t (row t / 16, k 4·(t % 16) .. + 3 of sub-slab s) of op(A).
fn bc_stage_slot(s: u32, t: u32) {
    let i = bc_row0 + t / (BC_KS / 4u);
    let p = mm.k_first + s * BC_KS + 4u * (t % (BC_KS / 4u));
    bc_a[s * BC_SLAB4 + t] = vec4<f32>(a_at(i, p), a_at(i, p + 1u), a_at(i, p + 2u),
                                              a_at(i, p + 3u));
}

fn bc_stage(s: u32, lid: u32) {
    bc_stage_slot(s, lid);
    bc_stage_slot(s, lid + BC_N);
}

// op(A) as vec4s, for matmul_bcast_a4 (which reads A only through it): the host takes that
// entry where every staged slot is one aligned vec4 of A (A4_ROWS below).
@group(0) @binding(1) var<storage, read> bc_a4: array<vec4<f32>>;

// Slot t of sub-slab s from one vec4 load: with TRANS_A = 0 (A stored M × K, K % 4 = 0) the 4 k
// of one row, as bc_stage_slot; with TRANS_A = 1 (A stored K × M, M % 4 = 0) the 4 rows
// 4·(t % 8) .. + 3 of k t / 8 (A4_ROWS = 1: bc_fma reads that layout). 0 outside M × K.
fn bc_stage4_slot(s: u32, t: u32) {
    var i = bc_row0 + t / (BC_KS / 4u);
    var p = mm.k_first + s * BC_KS + 4u * (t % (BC_KS / 4u));
    var e = min(i, mm.m - 1u) * mm.k + min(p, mm.k - 4u);
    if TRANS_A == 1u {
        i = bc_row0 + 4u * (t % (BC_R / 4u));
        p = mm.k_first + s * BC_KS + t / (BC_R / 4u);
        e = min(p, mm.k - 1u) * mm.m + min(i, mm.m - 4u);
    }
    let inside = i < mm.m && p < mm.k;
    bc_a[s * BC_SLAB4 + t] = select(vec4<f32>(0.0), bc_a4[(mm.a_off + e) / 4u], inside);
}

fn bc_stage4(s: u32, lid: u32) {
    bc_stage4_slot(s, lid);
    bc_stage4_slot(s, lid + BC_N);
}

// The invocation's op(B)(p .. p + 3, j) for the 4 k of vec4 q of sub-slab s.
fn bc_b4(s: u32, q: u32) -> vec4<f32> {
    let slot = (bc_col % BC_N) * (BC_KS / 4u) + q;
    if s == 0u {
        return bc_w0[slot];
    } else if s == 1u {
        return bc_w1[slot];
    }
    return bc_w2[slot];
}

// Row r's 4 k of vec4 q of sub-slab s, staged (constant addresses: broadcasts either way).
fn bc_a_at(s: u32, q: u32, r: u32) -> vec4<f32> {
    if A4_ROWS == 1u {
        let at = s * BC_SLAB4 + 4u * q * (BC_R / 4u) + r / 4u;
        let c = r % 4u;
        return vec4<f32>(bc_a[at][c], bc_a[at + BC_R / 4u][c], bc_a[at + BC_R / 2u][c],
                         bc_a[at + 3u * BC_R / 4u][c]);
    }
    return bc_a[s * BC_SLAB4 + r * (BC_KS / 4u) + q];
}

fn bc_fma(acc: ptr<private, f32>, s: u32, q: u32, r: u32, b: vec4<f32>) {
    let a = bc_a_at(s, q, r);
    *acc = fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, *acc))));
}

// The 4 k of vec4 q (a constant) of the staged sub-slab s, for every row.
fn bc_q(s: u32, q: u32) {
    let b = bc_b4(s, q);
    bc_fma(&bc_c0, s, q, 0u, b);
    bc_fma(&bc_c1, s, q, 1u, b);
    bc_fma(&bc_c2, s, q, 2u, b);
    bc_fma(&bc_c3, s, q, 3u, b);
    bc_fma(&bc_c4, s, q, 4u, b);
    bc_fma(&bc_c5, s, q, 5u, b);
    bc_fma(&bc_c6, s, q, 6u, b);
    bc_fma(&bc_c7, s, q, 7u, b);
    bc_fma(&bc_c8, s, q, 8u, b);
    bc_fma(&bc_c9, s, q, 9u, b);
    bc_fma(&bc_c10, s, q, 10u, b);
    bc_fma(&bc_c11, s, q, 11u, b);
    bc_fma(&bc_c12, s, q, 12u, b);
    bc_fma(&bc_c13, s, q, 13u, b);
    bc_fma(&bc_c14, s, q, 14u, b);
    bc_fma(&bc_c15, s, q, 15u, b);
    bc_fma(&bc_c16, s, q, 16u, b);
    bc_fma(&bc_c17, s, q, 17u, b);
    bc_fma(&bc_c18, s, q, 18u, b);
    bc_fma(&bc_c19, s, q, 19u, b);
    bc_fma(&bc_c20, s, q, 20u, b);
    bc_fma(&bc_c21, s, q, 21u, b);
    bc_fma(&bc_c22, s, q, 22u, b);
    bc_fma(&bc_c23, s, q, 23u, b);
    bc_fma(&bc_c24, s, q, 24u, b);
    bc_fma(&bc_c25, s, q, 25u, b);
    bc_fma(&bc_c26, s, q, 26u, b);
    bc_fma(&bc_c27, s, q, 27u, b);
    bc_fma(&bc_c28, s, q, 28u, b);
    bc_fma(&bc_c29, s, q, 29u, b);
    bc_fma(&bc_c30, s, q, 30u, b);
    bc_fma(&bc_c31, s, q, 31u, b);
}

fn bc_q4(s: u32, q: u32) {
    bc_q(s, q);
    bc_q(s, q + 1u);
    bc_q(s, q + 2u);
    bc_q(s, q + 3u);
}

// Sub-slab s (staged, barrier passed): all BC_KS k of it.
fn bc_slab(s: u32) {
    bc_q4(s, 0u);
    bc_q4(s, 4u);
    bc_q4(s, 8u);
    bc_q4(s, 12u);
}

fn bc_begin(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) {
    bc_row0 = mm.row_first + (wid.y * nwg.x + wid.x) * BC_R;
    bc_col = mm.col_first + lid;
}

@compute @workgroup_size(BC_N)
fn matmul_bcast(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    bc_begin(lid, wid, nwg);
    bc_stage(0u, lid);
    if BC_S > 1u {
        bc_stage(1u, lid);
    }
    if BC_S > 2u {
        bc_stage(2u, lid);
    }
    workgroupBarrier();
    bc_products();
}

// matmul_bcast staging with one vec4 load of A per slot (per-lane loads are loops over the
// lanes on lavapipe: one instead of four).
@compute @workgroup_size(BC_N)
fn matmul_bcast_a4(@builtin(local_invocation_index) lid: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    bc_begin(lid, wid, nwg);
    bc_stage4(0u, lid);
    if BC_S > 1u {
        bc_stage4(1u, lid);
    }
    if BC_S > 2u {
        bc_stage4(2u, lid);
    }
    workgroupBarrier();
    bc_products();
}

// The staged sub-slabs' products and the epilogue.
fn bc_products() {
    bc_slab(0u);
    if BC_S > 1u {
        bc_slab(1u);
    }
    if BC_S > 2u {
        bc_slab(2u);
    }
    if BC_PHASE == 1u || BC_PHASE == 2u {
        bc_part_out(0u, vec4<f32>(bc_c0, bc_c1, bc_c2, bc_c3));
        bc_part_out(1u, vec4<f32>(bc_c4, bc_c5, bc_c6, bc_c7));
        bc_part_out(2u, vec4<f32>(bc_c8, bc_c9, bc_c10, bc_c11));
        bc_part_out(3u, vec4<f32>(bc_c12, bc_c13, bc_c14, bc_c15));
        bc_part_out(4u, vec4<f32>(bc_c16, bc_c17, bc_c18, bc_c19));
        bc_part_out(5u, vec4<f32>(bc_c20, bc_c21, bc_c22, bc_c23));
        bc_part_out(6u, vec4<f32>(bc_c24, bc_c25, bc_c26, bc_c27));
        bc_part_out(7u, vec4<f32>(bc_c28, bc_c29, bc_c30, bc_c31));
        return;
    }
    // Dispatches after the first of a window add to the stored sums, the first adds the bias
    // (phase 3 takes the earlier sums from bc_part: for C it is the first).
    let first = ACCUMULATE == 0u && (mm.k_first == 0u || BC_PHASE == 3u);
    let last = mm.k_first + BC_S * BC_KS >= mm.k;
    var bias_j = 0.0;
    if HAS_BIAS == 1u && first {
        bias_j = f32(bias[min(bc_col, mm.n - 1u)]);
    }
    let p0 = bc_part_in(0u);
    let p1 = bc_part_in(1u);
    let p2 = bc_part_in(2u);
    let p3 = bc_part_in(3u);
    let p4 = bc_part_in(4u);
    let p5 = bc_part_in(5u);
    let p6 = bc_part_in(6u);
    let p7 = bc_part_in(7u);
    bc_out(first, last, 0u, bc_c0 + p0.x + bias_j);
    bc_out(first, last, 1u, bc_c1 + p0.y + bias_j);
    bc_out(first, last, 2u, bc_c2 + p0.z + bias_j);
    bc_out(first, last, 3u, bc_c3 + p0.w + bias_j);
    bc_out(first, last, 4u, bc_c4 + p1.x + bias_j);
    bc_out(first, last, 5u, bc_c5 + p1.y + bias_j);
    bc_out(first, last, 6u, bc_c6 + p1.z + bias_j);
    bc_out(first, last, 7u, bc_c7 + p1.w + bias_j);
    bc_out(first, last, 8u, bc_c8 + p2.x + bias_j);
    bc_out(first, last, 9u, bc_c9 + p2.y + bias_j);
    bc_out(first, last, 10u, bc_c10 + p2.z + bias_j);
    bc_out(first, last, 11u, bc_c11 + p2.w + bias_j);
    bc_out(first, last, 12u, bc_c12 + p3.x + bias_j);
    bc_out(first, last, 13u, bc_c13 + p3.y + bias_j);
    bc_out(first, last, 14u, bc_c14 + p3.z + bias_j);
    bc_out(first, last, 15u, bc_c15 + p3.w + bias_j);
    bc_out(first, last, 16u, bc_c16 + p4.x + bias_j);
    bc_out(first, last, 17u, bc_c17 + p4.y + bias_j);
    bc_out(first, last, 18u, bc_c18 + p4.z + bias_j);
    bc_out(first, last, 19u, bc_c19 + p4.w + bias_j);
    bc_out(first, last, 20u, bc_c20 + p5.x + bias_j);
    bc_out(first, last, 21u, bc_c21 + p5.y + bias_j);
    bc_out(first, last, 22u, bc_c22 + p5.z + bias_j);
    bc_out(first, last, 23u, bc_c23 + p5.w + bias_j);
    bc_out(first, last, 24u, bc_c24 + p6.x + bias_j);
    bc_out(first, last, 25u, bc_c25 + p6.y + bias_j);
    bc_out(first, last, 26u, bc_c26 + p6.z + bias_j);
    bc_out(first, last, 27u, bc_c27 + p6.w + bias_j);
    bc_out(first, last, 28u, bc_c28 + p7.x + bias_j);
    bc_out(first, last, 29u, bc_c29 + p7.y + bias_j);
    bc_out(first, last, 30u, bc_c30 + p7.z + bias_j);
    bc_out(first, last, 31u, bc_c31 + p7.w + bias_j);
}

// Index of the invocation's vec4 q of sums in bc_part.
fn bc_part_index(q: u32) -> u32 {
    return ((bc_row0 / BC_R) * BC_N + bc_col % BC_N) * 8u + q;
}

// Phases 1 and 2: stores sums 4·q .. 4·q + 3 of the invocation, or adds them to the stored ones.
fn bc_part_out(q: u32, sums: vec4<f32>) {
    let i = bc_part_index(q);
    var v = sums;
    if BC_PHASE == 2u {
        v += bc_part[i];
    }
    bc_part[i] = v;
}

// Phase 3: the stored sums 4·q .. 4·q + 3 of the earlier dispatches (0 in phase 0).
fn bc_part_in(q: u32) -> vec4<f32> {
    if BC_PHASE == 3u {
        return bc_part[bc_part_index(q)];
    }
    return vec4<f32>(0.0);
}

// Stores the sum of row r (a constant) of the invocation's column, or adds it to the stored
// one; c_hook as described above.
fn bc_out(first: bool, last: bool, r: u32, value: f32) {
    let i = bc_row0 + r;
    if !BC_CHECK || (i < mm.m && bc_col < mm.n) {
        let e = i * mm.n + bc_col;
        var v = value;
        if ACCUMULATE == 1u {
            v = c_hook(v, e);
        }
        if !first {
            v += f32(mat_c[mm.c_off + e]);
        }
        if ACCUMULATE == 0u && last {
            v = c_hook(v, e);
        }
        mat_c[mm.c_off + e] = Elem(v);
    }
}

// Packing for matmul_bcast, through b_hook4 (B_RAW = 0: the hooks compute op(B) from its
// indices, B is not read): block g (BC_N · BC_KS f32: 64 KiB) holds sub-slab g / tiles_n (k from
// k_first + BC_KS · (g / tiles_n)) of column block g % tiles_n, row j of the block its column's
// BC_KS k; 0 outside K × N. Writes C (f32) from offset 0; `tiles` is the number of slots in all.
// A slot is 4 consecutive elements of one stored row of B (what b_hook4 takes): 4 k of one
// column (TRANS_B = 1, one vec4 of a block row) or 4 columns of one k (TRANS_B = 0).
struct BcSlot {
    // Flat indices in B of the slot's elements (clamped inside B), where each goes in the
    // blocks, and which lie inside K × N.
    e: vec4<u32>,
    at: vec4<u32>,
    inside: vec4<bool>,
}

// The blocks as vec4s (what both packing entries write: a multiple of 64 KiB).
@group(0) @binding(3) var<storage, read_write> bc_blocks: array<vec4<f32>>;
// B as vec4s, for matmul_bcast_pack4 (which reads B only through it).
@group(0) @binding(2) var<storage, read> bc_b4v: array<vec4<f32>>;

@compute @workgroup_size(256)
fn matmul_bcast_pack(@builtin(local_invocation_index) lid: u32,
                     @builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = (wid.y * nwg.x + wid.x) * 256u + lid;
    if t >= mm.tiles {
        return;
    }
    let slot = bc_slot(t);
    var raw = vec4<f32>(0.0);
    if B_RAW == 1u {
        let b = vec4<u32>(mm.b_off) + slot.e;
        raw = vec4<f32>(f32(mat_b[b.x]), f32(mat_b[b.y]), f32(mat_b[b.z]), f32(mat_b[b.w]));
    }
    bc_pack_write(slot, raw);
}

// matmul_bcast_pack reading each slot of B with one vec4 load: for B_RAW = 1 where the slot's
// 4 elements are one aligned vec4 (K % 4 = 0 with TRANS_B = 1, N % 4 = 0 with TRANS_B = 0, and
// an offset of B that is a multiple of 4).
@compute @workgroup_size(256)
fn matmul_bcast_pack4(@builtin(local_invocation_index) lid: u32,
                      @builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = (wid.y * nwg.x + wid.x) * 256u + lid;
    if t >= mm.tiles {
        return;
    }
    let slot = bc_slot(t);
    // All 4 elements inside B or all clamped to its last aligned vec4.
    bc_pack_write(slot, bc_b4v[(mm.b_off + slot.e.x) / 4u]);
}

// ψ of the slot (b_hook4), 0 outside K × N, written to the blocks.
fn bc_pack_write(slot: BcSlot, raw: vec4<f32>) {
    let v = select(vec4<f32>(0.0), b_hook4(raw, slot.e), slot.inside);
    if TRANS_B == 1u {
        // One vec4 of a block row.
        bc_blocks[slot.at.x / 4u] = v;
    } else {
        bc_blocks[slot.at.x / 4u][slot.at.x % 4u] = v.x;
        bc_blocks[slot.at.y / 4u][slot.at.y % 4u] = v.y;
        bc_blocks[slot.at.z / 4u][slot.at.z % 4u] = v.z;
        bc_blocks[slot.at.w / 4u][slot.at.w % 4u] = v.w;
    }
}

// Slot t of the blocks (see above).
fn bc_slot(t: u32) -> BcSlot {
    let per_block = BC_N * BC_KS / 4u;
    let g = t / per_block;
    let local = t % per_block;
    let col0 = (g % mm.tiles_n) * BC_N;
    let k0 = mm.k_first + (g / mm.tiles_n) * BC_KS;
    let c4 = vec4<u32>(0u, 1u, 2u, 3u);
    // The slot's elements: k and column of each, and where each goes in the blocks.
    var ps = vec4<u32>(k0 + 4u * (local % (BC_KS / 4u))) + c4;
    var js = vec4<u32>(col0 + local / (BC_KS / 4u));
    var at = vec4<u32>(4u * t) + c4;
    if TRANS_B == 0u {
        ps = vec4<u32>(k0 + local / (BC_N / 4u));
        js = vec4<u32>(col0 + 4u * (local % (BC_N / 4u))) + c4;
        at = vec4<u32>(g * BC_N * BC_KS) + (js - vec4<u32>(col0)) * BC_KS + (ps - vec4<u32>(k0));
    }
    let pc = min(ps, vec4<u32>(mm.k - 1u));
    let jc = min(js, vec4<u32>(mm.n - 1u));
    var e = jc * mm.k + pc;
    if TRANS_B == 0u {
        e = pc * mm.n + jc;
    }
    return BcSlot(e, at, ps < vec4<u32>(mm.k) & js < vec4<u32>(mm.n));
}
