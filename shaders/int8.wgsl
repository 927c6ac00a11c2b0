// int8 quantization and exact int8 matrix multiplication.
//
// Packed layout (see src/int8.rs): a (rows, cols) matrix of 8-bit values is stored row by row,
// each row in WPR = 4·ceil(cols / 16) u32 words (whole vec4<u32>s, so the matmul loads 16
// values at once); element c of a row is byte c % 4 (little-endian: bits 8·(c % 4) ..
// 8·(c % 4) + 7) of word c / 4, and the bytes past `cols` in a row are zero. Signed values
// (int8) are two's complement bytes.
//
// `quantize` / `dequantize`: WPI / one packed word (4 elements) per invocation. Scale and zero-point
// are per tensor (index 0) or per row (PER_CHANNEL), read from `qscale` / `qzero`.
//
// `int8_rowsum`: Σ_k w[n, k] of every packed int8 row (the zero-point correction term).
//
// `int8_matmul_{dp4a,polyfill}{,_acc}`: Y = sx·sw[n]·acc[m, n] + b[n] with
// acc[m, n] = Σ_k xq[m, k]·wq[n, k] − zx·Σ_k wq[n, k] (i32, exact), xq an int8 (M, K) matrix,
// wq an int8 (N, K) matrix, both packed. The `_acc` entries write acc itself (its i32 bits)
// instead of Y. A workgroup computes a TM × TN tile of the output: every k-step it stages
// TM (resp. TN) rows of KV vec4<u32> words (16·KV values of k) of X (resp. W) in workgroup
// memory, and every invocation accumulates a 4 × 4 register block (rows ty + i·WGY, columns
// tx + j·WGX) held in four named vec4<i32>, indexed by constants only. `dp4a` uses
// dot4I8Packed; `polyfill` unpacks each word once with unpack4xI8 and uses i32 vector dots.
// Staged rows are KS = KV + 1 vec4s apart (bank-conflict-free reads on GPUs). Words past K4
// (and rows past M or N) are staged as zeros; padding bytes of a row are zero in W, so
// whatever X holds there contributes nothing to either sum.
//
// `int8_matmul_direct_{dp4a,polyfill}{,_acc}`: the same product without workgroup memory or
// barriers (see `matmul_direct`), for CPU rasterisers (lavapipe/llvmpipe) where it is faster.

override WG: u32 = 64u;
override SIGNED: bool = true;
override PER_CHANNEL: bool = false;
// Packed words per invocation of `quantize`.
override WPI: u32 = 4u;

override WGX: u32 = 8u;
override WGY: u32 = 8u;
override KV: u32 = 4u;
// Row stride of the staged tiles in vec4s: one vec4 of padding, so that the invocations of a
// GPU warp reading rows tx, tx + 1, ... hit distinct shared-memory banks.
override KS: u32 = KV + 1u;
override WGN: u32 = 64u;
override TM: u32 = 4u * WGY;
override TN: u32 = 4u * WGX;

struct QuantParams {
    // Rows of this dispatch (a chunk of the tensor's rows).
    rows: u32,
    cols: u32,
    // Packed words per row.
    wpr: u32,
    // Element offset of the chunk's first value in the bound f32 window.
    x_skip: u32,
    // Word offset of the chunk's first packed word in the bound u32 window.
    q_skip: u32,
    // Index of the chunk's first row (per-channel parameters).
    row0: u32,
    _pad0: u32,
    _pad1: u32,
}

struct MatmulParams {
    // Rows of X (and Y) in this dispatch.
    m: u32,
    n: u32,
    // Packed words per row of X and W.
    k4: u32,
    // Output tiles along n.
    tiles_n: u32,
    x_skip: u32,
    y_skip: u32,
    zx: i32,
    sx: f32,
}

@group(0) @binding(0) var<uniform> qp: QuantParams;
@group(0) @binding(1) var<storage, read> qscale: array<f32>;
@group(0) @binding(2) var<storage, read> qzero: array<i32>;
@group(0) @binding(3) var<storage, read> xf: array<f32>;
@group(0) @binding(4) var<storage, read_write> packed_out: array<u32>;

@group(0) @binding(3) var<storage, read> packed_in: array<u32>;
@group(0) @binding(4) var<storage, read_write> xf_out: array<f32>;

@group(0) @binding(0) var<uniform> mp: MatmulParams;
@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> rowsum: array<i32>;
@group(0) @binding(4) var<storage, read> wscale: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<u32>;

@group(0) @binding(3) var<storage, read_write> rowsum_out: array<i32>;

fn linear_id(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

fn qindex(r: u32) -> u32 {
    if PER_CHANNEL {
        return qp.row0 + r;
    }
    return 0u;
}

// The 8-bit code of x: round half to even, saturated to the type's range, as a byte.
fn quantize_one(x: f32, scale: f32, z: f32, lo: f32, hi: f32) -> u32 {
    let q = clamp(round(x / scale + z), lo, hi);
    return bitcast<u32>(i32(q)) & 0xFFu;
}

fn quantize_word(i: u32, lo: f32, hi: f32) {
    let r = i / qp.wpr;
    let c0 = (i % qp.wpr) * 4u;
    let s = qscale[qindex(r)];
    let z = f32(qzero[qindex(r)]);
    let base = qp.x_skip + r * qp.cols + c0;
    var word = 0u;
    if c0 + 4u <= qp.cols {
        word = quantize_one(xf[base], s, z, lo, hi)
             | (quantize_one(xf[base + 1u], s, z, lo, hi) << 8u)
             | (quantize_one(xf[base + 2u], s, z, lo, hi) << 16u)
             | (quantize_one(xf[base + 3u], s, z, lo, hi) << 24u);
    } else {
        for (var j = 0u; j < 4u; j++) {
            if c0 + j < qp.cols {
                word |= quantize_one(xf[base + j], s, z, lo, hi) << (8u * j);
            }
        }
    }
    packed_out[qp.q_skip + i] = word;
}

// WPI consecutive packed words per invocation.
@compute @workgroup_size(WG)
fn quantize(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let first = linear_id(lid, wid, nwg) * WPI;
    var lo = 0.0;
    var hi = 255.0;
    if SIGNED {
        lo = -128.0;
        hi = 127.0;
    }
    let total = qp.rows * qp.wpr;
    for (var j = 0u; j < WPI; j++) {
        if first + j < total {
            quantize_word(first + j, lo, hi);
        }
    }
}

// Byte j of a packed word as its value.
fn byte_value(word: u32, j: u32) -> i32 {
    if SIGNED {
        return (bitcast<i32>(word << (24u - 8u * j))) >> 24u;
    }
    return i32((word >> (8u * j)) & 0xFFu);
}

@compute @workgroup_size(WG)
fn dequantize(@builtin(local_invocation_index) lid: u32,
              @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(lid, wid, nwg);
    if i >= qp.rows * qp.wpr {
        return;
    }
    let r = i / qp.wpr;
    let c0 = (i % qp.wpr) * 4u;
    let s = qscale[qindex(r)];
    let z = qzero[qindex(r)];
    let word = packed_in[qp.q_skip + i];
    let base = qp.x_skip + r * qp.cols;
    for (var j = 0u; j < 4u; j++) {
        if c0 + j < qp.cols {
            // q − z is an exact integer: one rounding, in the product.
            xf_out[base + c0 + j] = s * f32(byte_value(word, j) - z);
        }
    }
}

@compute @workgroup_size(WG)
fn int8_rowsum(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = linear_id(lid, wid, nwg);
    if n >= mp.n {
        return;
    }
    var s = 0;
    for (var k = 0u; k < mp.k4; k += 4u) {
        let w = wq[(n * mp.k4 + k) / 4u];
        let v = (unpack4xI8(w.x) + unpack4xI8(w.y)) + (unpack4xI8(w.z) + unpack4xI8(w.w));
        s += (v.x + v.y) + (v.z + v.w);
    }
    rowsum_out[n] = s;
}

var<workgroup> xs: array<vec4<u32>, TM * KS>;
var<workgroup> ws: array<vec4<u32>, TN * KS>;

var<private> acc0: vec4<i32>;
var<private> acc1: vec4<i32>;
var<private> acc2: vec4<i32>;
var<private> acc3: vec4<i32>;
var<private> acc4: vec4<i32>;
var<private> acc5: vec4<i32>;
var<private> acc6: vec4<i32>;
var<private> acc7: vec4<i32>;

// Words k .. k + 3 of row `row` of X (k a multiple of 4; rows are padded to whole vec4s),
// zero past k4 or m.
fn load_x(row: u32, k: u32) -> vec4<u32> {
    if row < mp.m && k < mp.k4 {
        return xq[(mp.x_skip + row * mp.k4 + k) / 4u];
    }
    return vec4<u32>(0u);
}

fn load_w(row: u32, k: u32) -> vec4<u32> {
    if row < mp.n && k < mp.k4 {
        return wq[(row * mp.k4 + k) / 4u];
    }
    return vec4<u32>(0u);
}

// Σ over the 16 values of a and b (4 packed words each), with dot4I8Packed.
fn dot16(a: vec4<u32>, b: vec4<u32>) -> i32 {
    return (dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y))
         + (dot4I8Packed(a.z, b.z) + dot4I8Packed(a.w, b.w));
}

fn row_dp4a(acc: vec4<i32>, a: vec4<u32>, b0: vec4<u32>, b1: vec4<u32>, b2: vec4<u32>,
            b3: vec4<u32>) -> vec4<i32> {
    return acc + vec4<i32>(dot16(a, b0), dot16(a, b1), dot16(a, b2), dot16(a, b3));
}

// One packed word of a row against the 4 columns' words, unpacked.
fn row_unpacked(acc: vec4<i32>, a: u32, b0: vec4<i32>, b1: vec4<i32>, b2: vec4<i32>,
                b3: vec4<i32>) -> vec4<i32> {
    let u = unpack4xI8(a);
    return acc + vec4<i32>(dot(u, b0), dot(u, b1), dot(u, b2), dot(u, b3));
}

// Component c of the 4 registers, unpacked: word c of a 16-value chunk.
fn step_unpacked(a0: vec4<u32>, a1: vec4<u32>, a2: vec4<u32>, a3: vec4<u32>,
                 b0: u32, b1: u32, b2: u32, b3: u32, ax: u32) {
    let u0 = unpack4xI8(b0);
    let u1 = unpack4xI8(b1);
    let u2 = unpack4xI8(b2);
    let u3 = unpack4xI8(b3);
    acc0 = row_unpacked(acc0, a0[ax], u0, u1, u2, u3);
    acc1 = row_unpacked(acc1, a1[ax], u0, u1, u2, u3);
    acc2 = row_unpacked(acc2, a2[ax], u0, u1, u2, u3);
    acc3 = row_unpacked(acc3, a3[ax], u0, u1, u2, u3);
}

// Word c of a 16-value chunk of the 8 rows against the 4 columns' words, unpacked once each.
fn step_unpacked8(a0: vec4<u32>, a1: vec4<u32>, a2: vec4<u32>, a3: vec4<u32>,
                  a4: vec4<u32>, a5: vec4<u32>, a6: vec4<u32>, a7: vec4<u32>,
                  b0: u32, b1: u32, b2: u32, b3: u32, ax: u32) {
    let u0 = unpack4xI8(b0);
    let u1 = unpack4xI8(b1);
    let u2 = unpack4xI8(b2);
    let u3 = unpack4xI8(b3);
    acc0 = row_unpacked(acc0, a0[ax], u0, u1, u2, u3);
    acc1 = row_unpacked(acc1, a1[ax], u0, u1, u2, u3);
    acc2 = row_unpacked(acc2, a2[ax], u0, u1, u2, u3);
    acc3 = row_unpacked(acc3, a3[ax], u0, u1, u2, u3);
    acc4 = row_unpacked(acc4, a4[ax], u0, u1, u2, u3);
    acc5 = row_unpacked(acc5, a5[ax], u0, u1, u2, u3);
    acc6 = row_unpacked(acc6, a6[ax], u0, u1, u2, u3);
    acc7 = row_unpacked(acc7, a7[ax], u0, u1, u2, u3);
}

fn store(row: u32, col: u32, a: i32, raw: bool) {
    if row < mp.m && col < mp.n {
        let c = a - mp.zx * rowsum[col];
        var bits = bitcast<u32>(c);
        if !raw {
            bits = bitcast<u32>((mp.sx * wscale[col]) * f32(c) + bias[col]);
        }
        y[mp.y_skip + row * mp.n + col] = bits;
    }
}

fn store_row(row: u32, col: u32, a: vec4<i32>, raw: bool) {
    store(row, col, a.x, raw);
    store(row, col + WGX, a.y, raw);
    store(row, col + 2u * WGX, a.z, raw);
    store(row, col + 3u * WGX, a.w, raw);
}

fn store_row_n(row: u32, col: u32, a: vec4<i32>, raw: bool) {
    store(row, col, a.x, raw);
    store(row, col + WGN, a.y, raw);
    store(row, col + 2u * WGN, a.z, raw);
    store(row, col + 3u * WGN, a.w, raw);
}

// The direct kernel: no workgroup memory, no barriers. A workgroup computes 8 rows × 4·WGN
// columns; every invocation holds the 8 rows × 4 columns (n0 + lid + j·WGN) block. The 8 rows'
// words are loaded at addresses uniform across the workgroup (on CPU rasterisers: one scalar
// load broadcast to the SIMD lanes); each invocation loads its own 4 weight rows' words.
fn matmul_direct(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, dp4a: bool, raw: bool) {
    let tile = wid.y * nwg.x + wid.x;
    let tm = tile / mp.tiles_n;
    if tm * 8u >= mp.m {
        return;
    }
    let m0 = tm * 8u;
    let c0 = (tile % mp.tiles_n) * 4u * WGN + lid;
    acc0 = vec4<i32>(0);
    acc1 = vec4<i32>(0);
    acc2 = vec4<i32>(0);
    acc3 = vec4<i32>(0);
    acc4 = vec4<i32>(0);
    acc5 = vec4<i32>(0);
    acc6 = vec4<i32>(0);
    acc7 = vec4<i32>(0);
    for (var k = 0u; k < mp.k4; k += 4u) {
        let b0 = load_w(c0, k);
        let b1 = load_w(c0 + WGN, k);
        let b2 = load_w(c0 + 2u * WGN, k);
        let b3 = load_w(c0 + 3u * WGN, k);
        let a0 = load_x(m0, k);
        let a1 = load_x(m0 + 1u, k);
        let a2 = load_x(m0 + 2u, k);
        let a3 = load_x(m0 + 3u, k);
        let a4 = load_x(m0 + 4u, k);
        let a5 = load_x(m0 + 5u, k);
        let a6 = load_x(m0 + 6u, k);
        let a7 = load_x(m0 + 7u, k);
        if dp4a {
            acc0 = row_dp4a(acc0, a0, b0, b1, b2, b3);
            acc1 = row_dp4a(acc1, a1, b0, b1, b2, b3);
            acc2 = row_dp4a(acc2, a2, b0, b1, b2, b3);
            acc3 = row_dp4a(acc3, a3, b0, b1, b2, b3);
            acc4 = row_dp4a(acc4, a4, b0, b1, b2, b3);
            acc5 = row_dp4a(acc5, a5, b0, b1, b2, b3);
            acc6 = row_dp4a(acc6, a6, b0, b1, b2, b3);
            acc7 = row_dp4a(acc7, a7, b0, b1, b2, b3);
        } else {
            step_unpacked8(a0, a1, a2, a3, a4, a5, a6, a7, b0.x, b1.x, b2.x, b3.x, 0u);
            step_unpacked8(a0, a1, a2, a3, a4, a5, a6, a7, b0.y, b1.y, b2.y, b3.y, 1u);
            step_unpacked8(a0, a1, a2, a3, a4, a5, a6, a7, b0.z, b1.z, b2.z, b3.z, 2u);
            step_unpacked8(a0, a1, a2, a3, a4, a5, a6, a7, b0.w, b1.w, b2.w, b3.w, 3u);
        }
    }
    store_row_n(m0, c0, acc0, raw);
    store_row_n(m0 + 1u, c0, acc1, raw);
    store_row_n(m0 + 2u, c0, acc2, raw);
    store_row_n(m0 + 3u, c0, acc3, raw);
    store_row_n(m0 + 4u, c0, acc4, raw);
    store_row_n(m0 + 5u, c0, acc5, raw);
    store_row_n(m0 + 6u, c0, acc6, raw);
    store_row_n(m0 + 7u, c0, acc7, raw);
}

// The whole matmul; `dp4a` and `raw` are literals at every call, so their branches fold away.
fn matmul(lid: vec3<u32>, wid: vec3<u32>, nwg: vec3<u32>, dp4a: bool, raw: bool) {
    let tile = wid.y * nwg.x + wid.x;
    let tm = tile / mp.tiles_n;
    // Surplus workgroups of the 2-D grid: uniform per workgroup, so no barrier is skipped
    // by only part of one.
    if tm * TM >= mp.m {
        return;
    }
    let m0 = tm * TM;
    let n0 = (tile % mp.tiles_n) * TN;
    let tx = lid.x;
    let ty = lid.y;
    let flat = ty * WGX + tx;
    acc0 = vec4<i32>(0);
    acc1 = vec4<i32>(0);
    acc2 = vec4<i32>(0);
    acc3 = vec4<i32>(0);
    for (var k = 0u; k < mp.k4; k += 4u * KV) {
        for (var i = flat; i < TM * KV; i += WGX * WGY) {
            xs[i / KV * KS + i % KV] = load_x(m0 + i / KV, k + 4u * (i % KV));
        }
        for (var i = flat; i < TN * KV; i += WGX * WGY) {
            ws[i / KV * KS + i % KV] = load_w(n0 + i / KV, k + 4u * (i % KV));
        }
        workgroupBarrier();
        for (var v = 0u; v < KV; v++) {
            let a0 = xs[ty * KS + v];
            let a1 = xs[(ty + WGY) * KS + v];
            let a2 = xs[(ty + 2u * WGY) * KS + v];
            let a3 = xs[(ty + 3u * WGY) * KS + v];
            let b0 = ws[tx * KS + v];
            let b1 = ws[(tx + WGX) * KS + v];
            let b2 = ws[(tx + 2u * WGX) * KS + v];
            let b3 = ws[(tx + 3u * WGX) * KS + v];
            if dp4a {
                acc0 = row_dp4a(acc0, a0, b0, b1, b2, b3);
                acc1 = row_dp4a(acc1, a1, b0, b1, b2, b3);
                acc2 = row_dp4a(acc2, a2, b0, b1, b2, b3);
                acc3 = row_dp4a(acc3, a3, b0, b1, b2, b3);
            } else {
                step_unpacked(a0, a1, a2, a3, b0.x, b1.x, b2.x, b3.x, 0u);
                step_unpacked(a0, a1, a2, a3, b0.y, b1.y, b2.y, b3.y, 1u);
                step_unpacked(a0, a1, a2, a3, b0.z, b1.z, b2.z, b3.z, 2u);
                step_unpacked(a0, a1, a2, a3, b0.w, b1.w, b2.w, b3.w, 3u);
            }
        }
        workgroupBarrier();
    }
    let col = n0 + tx;
    store_row(m0 + ty, col, acc0, raw);
    store_row(m0 + ty + WGY, col, acc1, raw);
    store_row(m0 + ty + 2u * WGY, col, acc2, raw);
    store_row(m0 + ty + 3u * WGY, col, acc3, raw);
}

@compute @workgroup_size(WGX, WGY)
fn int8_matmul_dp4a(@builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul(lid, wid, nwg, true, false);
}

@compute @workgroup_size(WGX, WGY)
fn int8_matmul_polyfill(@builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul(lid, wid, nwg, false, false);
}

@compute @workgroup_size(WGN)
fn int8_matmul_direct_dp4a(@builtin(local_invocation_index) lid: u32,
                           @builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul_direct(lid, wid, nwg, true, false);
}

@compute @workgroup_size(WGN)
fn int8_matmul_direct_polyfill(@builtin(local_invocation_index) lid: u32,
                               @builtin(workgroup_id) wid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul_direct(lid, wid, nwg, false, false);
}

@compute @workgroup_size(WGN)
fn int8_matmul_direct_dp4a_acc(@builtin(local_invocation_index) lid: u32,
                               @builtin(workgroup_id) wid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul_direct(lid, wid, nwg, true, true);
}

@compute @workgroup_size(WGN)
fn int8_matmul_direct_polyfill_acc(@builtin(local_invocation_index) lid: u32,
                                   @builtin(workgroup_id) wid: vec3<u32>,
                                   @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul_direct(lid, wid, nwg, false, true);
}

@compute @workgroup_size(WGX, WGY)
fn int8_matmul_dp4a_acc(@builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul(lid, wid, nwg, true, true);
}

@compute @workgroup_size(WGX, WGY)
fn int8_matmul_polyfill_acc(@builtin(local_invocation_id) lid: vec3<u32>,
                            @builtin(workgroup_id) wid: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    matmul(lid, wid, nwg, false, true);
}
