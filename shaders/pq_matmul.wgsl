// Product-quantized matrix multiplication: Y = X · decode(C, I)ᵀ (+ b) without materialising
// the decoded weight (N × K). Row n of the weight is nsub = K / D subvectors; subvector j is
// centroid I[n·nsub + j] of the codebook C (Kc × D). Indices are packed IDX_BITS (8 or 16) per
// field, 32 / IDX_BITS per u32 word, little-endian (index p in field p % per of word p / per),
// contiguous across rows. An index ≥ Kc reads centroid Kc − 1 (as pq_decode does).
//
// Codebook formats (CB_FMT): 0 = `codebook: array<Elem>` (f32, or f16 in the f16 module);
// 1 = int8 in `codebook_q`, each centroid padded to DW = ceil(D / 4) words (byte t of the
// centroid in byte t % 4 of word t / 4), value = byte · params.scale. With CB_WG the decoded
// f32 codebook is first copied into workgroup memory (CB_LEN ≥ Kc·D floats).
//
// Entry points:
// * pq_matmul_tiled: 32 × 32 output tile per workgroup of 64 invocations, 4 × 4 register block
//   per invocation; per K-chunk of S subvectors (BK = S·D values) the X tile and the decoded
//   weight tile go to workgroup memory (transposed, vec4 along the tile's rows / columns).
// * pq_lut_build + pq_lut_gather: the lookup-table matrix–vector product for small batches.
//   The table interleaves groups of G (1 or 4) batch rows: entry (m, j, c) = x_m[jD .. jD+D] ·
//   C[c] is lut[(((m / G)·nsub + j)·Kc + c)·G + m % G]; then y[m, n] = Σ_j lut[m, j, I[n, j]]
//   (one index read per D weights), one table load per index for G batch rows.
// * pq_lut_build4 / pq_lut_gather4: the same for D % 4 == 0 (one invocation per centroid, vec4
//   activations) and for rows of indices that start on a vec4 of words (16 u8 indices a load).
// * pq_lut_build_ub / pq_lut_gather_ub: the table of one batch row in uniform buffers, a slab
//   of subvectors at a time (CPU adapters; see the section at the end).
// * pq_matmul_rows (D % 4 == 0): one invocation per batch row, 8 output columns per
//   workgroup, the weights decoded on the fly (the same for every invocation of a workgroup).
// * pq_matmul_i8: the integer path: int8 activations (per-tensor affine, zero point zx) times
//   int8 centroids, dot4I8Packed into i32, raw = Σ xq·cq − zx·Σ cq; output the raw i32
//   accumulators (RAW) or y = raw · scale (+ b) with scale = sx·sc.
// * dense_matvec: the dense baseline y = W x (+ b), W (N × K) in Elem: 2 output rows per
//   invocation (MB = 1) or one output row and 4 batch rows (MB = 4), vec4 loads of the
//   weight rows and of x (the same x addresses in every invocation).
//
// Shapes come in the uniform; the knobs and the block size are overrides.

struct PqmParams {
    // Batch rows of this window, out features, in features, centroids.
    m: u32,
    n: u32,
    k: u32,
    kc: u32,
    // Subvectors per weight row (K / D); element offsets of the window's first row of x, y.
    nsub: u32,
    x_off: u32,
    y_off: u32,
    // Words per row of int8 activations (ceil(K / 4)).
    x_words: u32,
    // Int8 codebook scale (float path) or sx·sc (integer path); activation zero point.
    scale: f32,
    zx: i32,
    // 1: add the bias (a uniform flag: it is only read in the epilogue).
    has_bias: u32,
    _pad1: u32,
}

override WG: u32 = 64u;
// Block size (subvector dimension).
override D: u32 = 8u;
// Subvectors per K-chunk of the tiled kernels, and BK = S·D.
override S: u32 = 4u;
override BK: u32 = 32u;
// Bits per packed index: 8 or 16.
override IDX_BITS: u32 = 8u;
// 0: Elem codebook; 1: int8 codebook words.
override CB_FMT: u32 = 0u;
// Decoded codebook in workgroup memory, and its length in floats (1 when unused).
override CB_WG: u32 = 0u;
override CB_LEN: u32 = 1u;
// Words per int8 centroid: ceil(D / 4).
override DW: u32 = 2u;
// Batch rows per invocation of the LUT gather and of dense_matvec: 1 or 4.
override MB: u32 = 1u;
// Integer path: write the raw i32 accumulators instead of the dequantized output.
override RAW: u32 = 0u;

@group(0) @binding(0) var<uniform> params: PqmParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> codebook: array<Elem>;
@group(0) @binding(3) var<storage, read> codebook_q: array<u32>;
@group(0) @binding(4) var<storage, read> indices: array<u32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read_write> lut: array<f32>;
@group(0) @binding(8) var<storage, read> xq: array<u32>;
@group(0) @binding(9) var<storage, read_write> y_raw: array<i32>;

// Tile rows / columns per workgroup of the tiled kernels.
const BM: u32 = 32u;
const BN: u32 = 32u;

var<workgroup> cb_wg: array<f32, CB_LEN>;
// Transposed tiles: element (row r, k) at [k·8 + r / 4][r % 4]; BK·8 vec4 each.
override TILE_LEN: u32 = 256u;
var<workgroup> xs: array<vec4<f32>, TILE_LEN>;
var<workgroup> ws: array<vec4<f32>, TILE_LEN>;
// Integer tiles: word q (= s·DW + w) of row r at [q·8 + r / 4][r % 4]; S·DW·8 vec4 each.
override QTILE_LEN: u32 = 16u;
var<workgroup> xsq: array<vec4<u32>, QTILE_LEN>;
var<workgroup> wsq: array<vec4<u32>, QTILE_LEN>;

fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// The centroid index of flat subvector p.
fn index_of(p: u32) -> u32 {
    let per = 32u / IDX_BITS;
    let mask = (1u << IDX_BITS) - 1u;
    let word = indices[p / per];
    return min((word >> ((p % per) * IDX_BITS)) & mask, params.kc - 1u);
}

// Byte t % 4 of an int8 word, sign-extended.
fn sbyte(w: u32, t: u32) -> i32 {
    return bitcast<i32>(w << (24u - 8u * t)) >> 24u;
}

// Component t of centroid c, from the storage codebook.
fn cb_storage(c: u32, t: u32) -> f32 {
    if CB_FMT == 1u {
        return f32(sbyte(codebook_q[c * DW + t / 4u], t % 4u)) * params.scale;
    }
    return f32(codebook[c * D + t]);
}

// Component t of centroid c, from wherever the kernel keeps the codebook.
fn cb(c: u32, t: u32) -> f32 {
    if CB_WG == 1u {
        return cb_wg[c * D + t];
    }
    return cb_storage(c, t);
}

// Copies the decoded codebook into workgroup memory (when CB_WG). Uniform control flow.
fn load_codebook(lid: u32) {
    if CB_WG == 1u {
        let total = params.kc * D;
        for (var e = lid; e < total; e += WG) {
            cb_wg[e] = cb_storage(e / D, e % D);
        }
        workgroupBarrier();
    }
}

fn add_bias(v: f32, col: u32) -> f32 {
    if params.has_bias == 1u {
        return v + bias[col];
    }
    return v;
}

// Output tiles (BM × BN) of the tiled kernels.
fn tile_count() -> u32 {
    let tiles_n = (params.n + BN - 1u) / BN;
    let tiles_m = (params.m + BM - 1u) / BM;
    return tiles_n * tiles_m;
}

// First batch row (x) and output column (y) of output tile `tile`.
fn tile_origin(tile: u32) -> vec2<u32> {
    let tiles_n = (params.n + BN - 1u) / BN;
    return vec2<u32>((tile / tiles_n) * BM, (tile % tiles_n) * BN);
}

// Entry e of a weight tile (BN rows × S subvectors) of the tile at output column n0, in the
// K-chunk from subvector j0: row r of the tile, subvector s of the chunk, whether it lies in
// the weight and (then, else 0) its centroid index.
struct WeightTileEntry {
    r: u32,
    s: u32,
    valid: bool,
    c: u32,
}

fn weight_tile_entry(e: u32, n0: u32, j0: u32) -> WeightTileEntry {
    let r = e / S;
    let s = e % S;
    let row = n0 + r;
    let j = j0 + s;
    let valid = row < params.n && j < params.nsub;
    var c = 0u;
    if valid {
        c = index_of(row * params.nsub + j);
    }
    return WeightTileEntry(r, s, valid, c);
}

fn store_row(row: u32, n0: u32, acc: vec4<f32>) {
    if row < params.m {
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + j;
            if col < params.n {
                y[params.y_off + row * params.n + col] = add_bias(acc[j], col);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn pq_matmul_tiled(@builtin(local_invocation_index) lid: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = linear_group(wid, nwg);
    if tile >= tile_count() {
        return;
    }
    load_codebook(lid);
    let origin = tile_origin(tile);
    let m0 = origin.x;
    let n0 = origin.y;
    let tx = lid % 8u;
    let ty = lid / 8u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let chunks = (params.nsub + S - 1u) / S;
    for (var ch = 0u; ch < chunks; ch++) {
        let j0 = ch * S;
        // X tile: BM rows × BK values (consecutive invocations read consecutive values).
        for (var e = lid; e < BM * BK; e += WG) {
            let r = e / BK;
            let kk = e % BK;
            let row = m0 + r;
            let col = j0 * D + kk;
            var v = 0.0;
            if row < params.m && col < params.k {
                v = x[params.x_off + row * params.k + col];
            }
            xs[kk * 8u + r / 4u][r % 4u] = v;
        }
        // Weight tile: BN rows × S subvectors, decoded from the codebook.
        for (var e = lid; e < BN * S; e += WG) {
            let tc = weight_tile_entry(e, n0, j0);
            let r = tc.r;
            let s = tc.s;
            let valid = tc.valid;
            let c = tc.c;
            for (var t = 0u; t < D; t++) {
                var v = 0.0;
                if valid {
                    v = cb(c, t);
                }
                ws[(s * D + t) * 8u + r / 4u][r % 4u] = v;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = xs[kk * 8u + ty];
            let b = ws[kk * 8u + tx];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    let r0 = m0 + ty * 4u;
    let c0 = n0 + tx * 4u;
    store_row(r0, c0, acc0);
    store_row(r0 + 1u, c0, acc1);
    store_row(r0 + 2u, c0, acc2);
    store_row(r0 + 3u, c0, acc3);
}

// One invocation per (batch row m, subvector j, group of 4 centroids).
@compute @workgroup_size(WG)
fn pq_lut_build(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups = (params.kc + 3u) / 4u;
    let total = params.m * params.nsub * groups;
    let i = linear_group(wid, nwg) * WG + lid;
    if linear_group(wid, nwg) * WG >= total {
        return;
    }
    load_codebook(lid);
    if i >= total {
        return;
    }
    let g = i % groups;
    let mj = i / groups;
    let m = mj / params.nsub;
    let j = mj % params.nsub;
    let xb = params.x_off + m * params.k + j * D;
    let c0 = g * 4u;
    let last = params.kc - 1u;
    let c = vec4<u32>(c0, min(c0 + 1u, last), min(c0 + 2u, last), min(c0 + 3u, last));
    var acc = vec4<f32>(0.0);
    for (var t = 0u; t < D; t++) {
        let xt = x[xb + t];
        acc = fma(vec4<f32>(xt), vec4<f32>(cb(c.x, t), cb(c.y, t), cb(c.z, t), cb(c.w, t)), acc);
    }
    let base = (((m / G) * params.nsub + j) * params.kc + c0) * G + m % G;
    lut[base] = acc.x;
    if c0 + 1u < params.kc {
        lut[base + G] = acc.y;
    }
    if c0 + 2u < params.kc {
        lut[base + 2u * G] = acc.z;
    }
    if c0 + 3u < params.kc {
        lut[base + 3u * G] = acc.w;
    }
}

@group(0) @binding(7) var<storage, read> lut4: array<vec4<f32>>;
// Batch rows interleaved in the table and summed per gather invocation: 1 or 4.
override G: u32 = 4u;

// The same table as scalars (the host binds it twice): with G = 1 one scalar load per entry,
// where a vec4 load and a component at a varying index cost lavapipe four loads and a select.
@group(0) @binding(10) var<storage, read> lut1: array<f32>;

// acc plus table entry `off` (in units of G floats): 4 batch rows, or 1 into .x only (adding
// zeros to the other three would still cost three adds per entry). Nothing when !inside.
fn lut_add(acc: vec4<f32>, off: u32, inside: bool) -> vec4<f32> {
    if G == 4u {
        return acc + select(vec4<f32>(0.0), lut4[off], inside);
    }
    return vec4<f32>(acc.x + select(0.0, lut1[off], inside), acc.yzw);
}

// One invocation per (output row n, group of 4 batch rows); consecutive invocations take
// consecutive rows n. Any row alignment of the indices (each index loaded with its word).
@compute @workgroup_size(WG)
fn pq_lut_gather(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_group(wid, nwg) * WG + lid;
    let n = i % params.n;
    let b0 = (i / params.n) * G;
    if b0 >= params.m {
        return;
    }
    let base = (b0 / G) * params.nsub * params.kc;
    let per = 32u / IDX_BITS;
    let mask = (1u << IDX_BITS) - 1u;
    let first = n * params.nsub;
    let end = first + params.nsub;
    var acc = vec4<f32>(0.0);
    for (var wd = first / per; wd * per < end; wd++) {
        let word = indices[wd];
        for (var t = 0u; t < per; t++) {
            let p = wd * per + t;
            let inside = p >= first && p < end;
            let c = min((word >> (t * IDX_BITS)) & mask, params.kc - 1u);
            let off = base + (min(p, end - 1u) - first) * params.kc + c;
            acc = lut_add(acc, off, inside);
        }
    }
    store_lut_rows(b0, n, acc);
}

// y[b0 .. b0 + 4, n] = acc (+ b), rows below m only.
fn store_lut_rows(b0: u32, n: u32, acc: vec4<f32>) {
    for (var b = 0u; b < G; b++) {
        if b0 + b < params.m {
            y[params.y_off + (b0 + b) * params.n + n] = add_bias(acc[b], n);
        }
    }
}

@group(0) @binding(4) var<storage, read> indices4: array<vec4<u32>>;

// 1: Kc = 2^IDX_BITS, so every index field is a valid centroid and needs no clamp.
override FULL_K: u32 = 0u;

// Adds the table entries of the `32 / IDX_BITS` indices of `word` (subvectors j0, j0 + 1, …).
fn lut_word(word: u32, j0: u32, base: u32, acc: vec4<f32>) -> vec4<f32> {
    let per = 32u / IDX_BITS;
    let mask = (1u << IDX_BITS) - 1u;
    var a = acc;
    var row = base + j0 * params.kc;
    for (var t = 0u; t < per; t++) {
        var c = (word >> (t * IDX_BITS)) & mask;
        if FULL_K == 0u {
            c = min(c, params.kc - 1u);
        }
        a = lut_add(a, row + c, true);
        row += params.kc;
    }
    return a;
}

// pq_lut_gather when every row's indices start on a vec4 of words (K/d a multiple of
// 4 · 32 / IDX_BITS): 16 (u8) or 8 (u16) indices per load, no masking.
@compute @workgroup_size(WG)
fn pq_lut_gather4(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_group(wid, nwg) * WG + lid;
    let n = i % params.n;
    let b0 = (i / params.n) * G;
    if b0 >= params.m {
        return;
    }
    let base = (b0 / G) * params.nsub * params.kc;
    let per = 32u / IDX_BITS;
    let nv = params.nsub / (4u * per);
    let v0 = n * nv;
    var acc = vec4<f32>(0.0);
    for (var v = 0u; v < nv; v++) {
        let q = indices4[v0 + v];
        let j0 = v * 4u * per;
        acc = lut_word(q.x, j0, base, acc);
        acc = lut_word(q.y, j0 + per, base, acc);
        acc = lut_word(q.z, j0 + 2u * per, base, acc);
        acc = lut_word(q.w, j0 + 3u * per, base, acc);
    }
    store_lut_rows(b0, n, acc);
}

// Centroid c's D/4 vec4s (D % 4 == 0).
fn centroid_vec4s(c: u32) -> array<vec4<f32>, 16> {
    var cv: array<vec4<f32>, 16>;
    for (var q = 0u; q < D / 4u; q++) {
        let t = 4u * q;
        cv[q] = vec4<f32>(cb_storage(c, t), cb_storage(c, t + 1u), cb_storage(c, t + 2u),
                          cb_storage(c, t + 3u));
    }
    return cv;
}

// Subvectors per invocation of pq_lut_build4.
override JB: u32 = 16u;

// A table build invocation's (column, batch row, first subvector) when each of `columns`
// columns (centroids, or quads of them) takes one invocation: workgroup g takes column group
// g % ceil(columns / WG), then (batch row, group of JB subvectors).
fn build_slot(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, columns: u32) -> vec3<u32> {
    let cgroups = (columns + WG - 1u) / WG;
    let jgroups = (params.nsub + JB - 1u) / JB;
    let g = linear_group(wid, nwg);
    let rest = g / cgroups;
    return vec3<u32>((g % cgroups) * WG + lid, rest / jgroups, (rest % jgroups) * JB);
}

// pq_lut_build for D % 4 == 0: one invocation per centroid c (its D/4 vec4s kept in
// registers) and JB subvectors of one batch row; the activations are the same for every
// invocation of the workgroup (lane-uniform loads), consecutive invocations write consecutive
// table entries. Workgroup g: centroid group g % cgroups, then (m, subvector group).
@compute @workgroup_size(WG)
fn pq_lut_build4(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let slot = build_slot(lid, wid, nwg, params.kc);
    let c = slot.x;
    let m = slot.y;
    let j0 = slot.z;
    if m >= params.m || c >= params.kc {
        return;
    }
    let dq = D / 4u;
    let cv = centroid_vec4s(c);
    let xb = params.x_off / 4u + m * (params.k / 4u);
    let j1 = min(j0 + JB, params.nsub);
    for (var j = j0; j < j1; j++) {
        var s = 0.0;
        for (var q = 0u; q < dq; q++) {
            s += dot(x4[xb + j * dq + q], cv[q]);
        }
        lut[(((m / G) * params.nsub + j) * params.kc + c) * G + m % G] = s;
    }
}

// The table written as vec4s by pq_lut_build4x4.
@group(0) @binding(7) var<storage, read_write> lut_out4: array<vec4<f32>>;

// Chunk q (components 4q .. 4q + 3) of centroids 4·c4 .. 4·c4 + 3, one per column.
fn quad_chunk(c4: u32, q: u32) -> mat4x4<f32> {
    var m: mat4x4<f32>;
    for (var i = 0u; i < 4u; i++) {
        let c = 4u * c4 + i;
        let t = 4u * q;
        m[i] = vec4<f32>(cb_storage(c, t), cb_storage(c, t + 1u), cb_storage(c, t + 2u),
                         cb_storage(c, t + 3u));
    }
    return m;
}

// pq_lut_build4 for G = 1 (batch rows not interleaved) and Kc % 4 == 0: each invocation
// computes 4 consecutive centroids' entries and writes them as one vec4, so every activation
// vec4 it loads serves 4 centroids (on lavapipe a lane's vec4 load or store costs about what a
// scalar one does). The same dot products as pq_lut_build4.
@compute @workgroup_size(WG)
fn pq_lut_build4x4(@builtin(local_invocation_index) lid: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let quads = params.kc / 4u;
    let slot = build_slot(lid, wid, nwg, quads);
    let c4 = slot.x;
    let m = slot.y;
    let j0 = slot.z;
    if m >= params.m || c4 >= quads {
        return;
    }
    let dq = D / 4u;
    let xb = params.x_off / 4u + m * (params.k / 4u);
    let j1 = min(j0 + JB, params.nsub);
    if D <= 16u {
        // Chunk q of the 4 centroids as the columns of one matrix, held in registers (a
        // private array indexed in the loop would live in per-lane memory): x · m_q gives
        // the 4 dot products of chunk q.
        let m0 = quad_chunk(c4, 0u);
        var m1: mat4x4<f32>;
        var m2: mat4x4<f32>;
        var m3: mat4x4<f32>;
        if dq > 1u {
            m1 = quad_chunk(c4, 1u);
        }
        if dq > 2u {
            m2 = quad_chunk(c4, 2u);
        }
        if dq > 3u {
            m3 = quad_chunk(c4, 3u);
        }
        for (var j = j0; j < j1; j++) {
            let xj = xb + j * dq;
            var s = x4[xj] * m0;
            if dq > 1u {
                s += x4[xj + 1u] * m1;
            }
            if dq > 2u {
                s += x4[xj + 2u] * m2;
            }
            if dq > 3u {
                s += x4[xj + 3u] * m3;
            }
            lut_out4[(m * params.nsub + j) * quads + c4] = s;
        }
        return;
    }
    let cv0 = centroid_vec4s(4u * c4);
    let cv1 = centroid_vec4s(4u * c4 + 1u);
    let cv2 = centroid_vec4s(4u * c4 + 2u);
    let cv3 = centroid_vec4s(4u * c4 + 3u);
    for (var j = j0; j < j1; j++) {
        var s = vec4<f32>(0.0);
        for (var q = 0u; q < dq; q++) {
            let xv = x4[xb + j * dq + q];
            s += vec4<f32>(dot(xv, cv0[q]), dot(xv, cv1[q]), dot(xv, cv2[q]), dot(xv, cv3[q]));
        }
        lut_out4[(m * params.nsub + j) * quads + c4] = s;
    }
}

// Decoded codebook as vec4s (D % 4 == 0), CB4_LEN = Kc·D/4 rounded up (1 when unused).
override CB4_LEN: u32 = 1u;
var<workgroup> cb4: array<vec4<f32>, CB4_LEN>;

// Quarter q of centroid c.
fn cb_vec(c: u32, q: u32) -> vec4<f32> {
    if CB_WG == 1u {
        return cb4[c * (D / 4u) + q];
    }
    let t = 4u * q;
    return vec4<f32>(cb_storage(c, t), cb_storage(c, t + 1u), cb_storage(c, t + 2u),
                     cb_storage(c, t + 3u));
}

// PQ matmul for D % 4 == 0: one invocation per batch row, a workgroup of WG batch rows
// computes 8 output columns. The 8 weight rows are decoded on the fly: their indices and
// centroids are the same for every invocation (lane-uniform loads, from the codebook in
// workgroup memory with CB_WG), the activations are the invocation's own (vec4 loads).
@compute @workgroup_size(WG)
fn pq_matmul_rows(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups_m = (params.m + WG - 1u) / WG;
    let g = linear_group(wid, nwg);
    let n0 = (g / groups_m) * 8u;
    if n0 >= params.n {
        return;
    }
    if CB_WG == 1u {
        let total = params.kc * (D / 4u);
        for (var e = lid; e < total; e += WG) {
            let c = e / (D / 4u);
            let t = (e % (D / 4u)) * 4u;
            cb4[e] = vec4<f32>(cb_storage(c, t), cb_storage(c, t + 1u), cb_storage(c, t + 2u),
                               cb_storage(c, t + 3u));
        }
        workgroupBarrier();
    }
    let m = (g % groups_m) * WG + lid;
    if m >= params.m {
        return;
    }
    let dq = D / 4u;
    let xb = params.x_off / 4u + m * (params.k / 4u);
    let last = params.n - 1u;
    let r = vec4<u32>(n0, min(n0 + 1u, last), min(n0 + 2u, last), min(n0 + 3u, last)) * params.nsub;
    let r2 = vec4<u32>(min(n0 + 4u, last), min(n0 + 5u, last), min(n0 + 6u, last),
                       min(n0 + 7u, last)) * params.nsub;
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var j = 0u; j < params.nsub; j++) {
        let c0 = index_of(r.x + j);
        let c1 = index_of(r.y + j);
        let c2 = index_of(r.z + j);
        let c3 = index_of(r.w + j);
        let c4 = index_of(r2.x + j);
        let c5 = index_of(r2.y + j);
        let c6 = index_of(r2.z + j);
        let c7 = index_of(r2.w + j);
        for (var q = 0u; q < dq; q++) {
            let xv = x4[xb + j * dq + q];
            acc_a += vec4<f32>(dot(xv, cb_vec(c0, q)), dot(xv, cb_vec(c1, q)),
                               dot(xv, cb_vec(c2, q)), dot(xv, cb_vec(c3, q)));
            acc_b += vec4<f32>(dot(xv, cb_vec(c4, q)), dot(xv, cb_vec(c5, q)),
                               dot(xv, cb_vec(c6, q)), dot(xv, cb_vec(c7, q)));
        }
    }
    store_row(m, n0, acc_a);
    store_row(m, n0 + 4u, acc_b);
}

// The integer path (see the header). Tiles as pq_matmul_tiled, in packed int8 words.
@compute @workgroup_size(WG)
fn pq_matmul_i8(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = linear_group(wid, nwg);
    if tile >= tile_count() {
        return;
    }
    let origin = tile_origin(tile);
    let m0 = origin.x;
    let n0 = origin.y;
    let tx = lid % 8u;
    let ty = lid / 8u;
    let qw = S * DW;
    var acc0 = vec4<i32>(0);
    var acc1 = vec4<i32>(0);
    var acc2 = vec4<i32>(0);
    var acc3 = vec4<i32>(0);
    var csum = vec4<i32>(0);
    let ones = 0x01010101u;
    let chunks = (params.nsub + S - 1u) / S;
    for (var ch = 0u; ch < chunks; ch++) {
        let j0 = ch * S;
        // Activation tile: BM rows × S subvectors, each re-packed into DW zero-padded words.
        for (var e = lid; e < BM * qw; e += WG) {
            let r = e / qw;
            let q = e % qw;
            let s = q / DW;
            let w = q % DW;
            let row = m0 + r;
            var word = 0u;
            if row < params.m && j0 + s < params.nsub {
                let rb = params.x_off + row * params.x_words;
                let bp = (j0 + s) * D + 4u * w;
                if D % 4u == 0u {
                    word = xq[rb + bp / 4u];
                } else {
                    for (var t = 0u; t < 4u; t++) {
                        if 4u * w + t < D {
                            let b = (xq[rb + (bp + t) / 4u] >> (8u * ((bp + t) % 4u))) & 0xffu;
                            word |= b << (8u * t);
                        }
                    }
                }
            }
            xsq[q * 8u + r / 4u][r % 4u] = word;
        }
        // Centroid tile: BN rows × S subvectors of DW words (padding bytes masked off).
        for (var e = lid; e < BN * S; e += WG) {
            let tc = weight_tile_entry(e, n0, j0);
            let r = tc.r;
            let s = tc.s;
            let valid = tc.valid;
            let c = tc.c;
            for (var w = 0u; w < DW; w++) {
                var word = 0u;
                if valid {
                    word = codebook_q[c * DW + w];
                    let left = D - 4u * w;
                    if left < 4u {
                        word &= (1u << (8u * left)) - 1u;
                    }
                }
                wsq[(s * DW + w) * 8u + r / 4u][r % 4u] = word;
            }
        }
        workgroupBarrier();
        for (var q = 0u; q < qw; q++) {
            let a = xsq[q * 8u + ty];
            let b = wsq[q * 8u + tx];
            acc0 += vec4<i32>(dot4I8Packed(a.x, b.x), dot4I8Packed(a.x, b.y),
                              dot4I8Packed(a.x, b.z), dot4I8Packed(a.x, b.w));
            acc1 += vec4<i32>(dot4I8Packed(a.y, b.x), dot4I8Packed(a.y, b.y),
                              dot4I8Packed(a.y, b.z), dot4I8Packed(a.y, b.w));
            acc2 += vec4<i32>(dot4I8Packed(a.z, b.x), dot4I8Packed(a.z, b.y),
                              dot4I8Packed(a.z, b.z), dot4I8Packed(a.z, b.w));
            acc3 += vec4<i32>(dot4I8Packed(a.w, b.x), dot4I8Packed(a.w, b.y),
                              dot4I8Packed(a.w, b.z), dot4I8Packed(a.w, b.w));
            csum += vec4<i32>(dot4I8Packed(ones, b.x), dot4I8Packed(ones, b.y),
                              dot4I8Packed(ones, b.z), dot4I8Packed(ones, b.w));
        }
        workgroupBarrier();
    }
    let corr = csum * params.zx;
    let r0 = m0 + ty * 4u;
    let c0 = n0 + tx * 4u;
    store_i8(r0, c0, acc0 - corr);
    store_i8(r0 + 1u, c0, acc1 - corr);
    store_i8(r0 + 2u, c0, acc2 - corr);
    store_i8(r0 + 3u, c0, acc3 - corr);
}

fn store_i8(row: u32, n0: u32, raw: vec4<i32>) {
    if row < params.m {
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + j;
            if col < params.n {
                let o = params.y_off + row * params.n + col;
                if RAW == 1u {
                    y_raw[o] = raw[j];
                } else {
                    y[o] = add_bias(f32(raw[j]) * params.scale, col);
                }
            }
        }
    }
}

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<Elem>>;

// Dense y[m, n] = W[n] · x[m] (+ b), K % 4 == 0. MB == 1: one invocation per 2 output rows
// (each x load feeds both rows). MB == 4: one invocation per output row and 4 batch rows (each
// weight load feeds 4 batch rows). Weights and x are read as vec4s; no reduction, no barrier.
@compute @workgroup_size(WG)
fn dense_matvec(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = select(1u, 2u, MB == 1u);
    let groups_n = (params.n + WG * rows - 1u) / (WG * rows);
    let g = linear_group(wid, nwg);
    let b0 = (g / groups_n) * MB;
    let n = ((g % groups_n) * WG + lid) * rows;
    if b0 >= params.m || n >= params.n {
        return;
    }
    let k4 = params.k / 4u;
    let last = params.m - 1u;
    let wb = n * k4;
    let xb = vec4<u32>(b0, min(b0 + 1u, last), min(b0 + 2u, last), min(b0 + 3u, last)) * k4;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if MB == 1u {
        // Rows n and n + 1 (n itself again past the last row), two chains each.
        let wb2 = min(n + 1u, params.n - 1u) * k4;
        var i = 0u;
        for (; i + 2u <= k4; i += 2u) {
            let x0 = x4[xb.x + i];
            let x1 = x4[xb.x + i + 1u];
            a0 = fma(vec4<f32>(w4[wb + i]), x0, a0);
            a1 = fma(vec4<f32>(w4[wb2 + i]), x0, a1);
            a2 = fma(vec4<f32>(w4[wb + i + 1u]), x1, a2);
            a3 = fma(vec4<f32>(w4[wb2 + i + 1u]), x1, a3);
        }
        if i < k4 {
            let x0 = x4[xb.x + i];
            a0 = fma(vec4<f32>(w4[wb + i]), x0, a0);
            a1 = fma(vec4<f32>(w4[wb2 + i]), x0, a1);
        }
        let one = vec4<f32>(1.0);
        let row = params.y_off + b0 * params.n + n;
        y[row] = add_bias(dot(a0 + a2, one), n);
        if n + 1u < params.n {
            y[row + 1u] = add_bias(dot(a1 + a3, one), n + 1u);
        }
        return;
    }
    for (var i = 0u; i < k4; i++) {
        let w = vec4<f32>(w4[wb + i]);
        a0 = fma(w, x4[xb.x + i], a0);
        a1 = fma(w, x4[xb.y + i], a1);
        a2 = fma(w, x4[xb.z + i], a2);
        a3 = fma(w, x4[xb.w + i], a3);
    }
    let one = vec4<f32>(1.0);
    let s = vec4<f32>(dot(a0, one), dot(a1, one), dot(a2, one), dot(a3, one));
    for (var b = 0u; b < 4u; b++) {
        if b0 + b < params.m {
            y[params.y_off + (b0 + b) * params.n + n] = add_bias(s[b], n);
        }
    }
}

// ---- Split-row matrix–vector kernels (the GPU layout) ----
// The kernels above give each invocation whole output rows: right for CPU-type adapters
// (lavapipe's SIMD lanes), but on a GPU the lanes of a subgroup then read WG different rows
// (uncoalesced) and a 4096-row product has too few invocations to hide memory latency. Here
// SEG consecutive invocations share one output row: they read consecutive words of it (one
// coalesced transaction per subgroup), and a fixed tree in workgroup memory sums their partials
// (a fixed order: the same bits on every run). WG / SEG output rows per workgroup; SEG is a
// power of two ≤ WG.

override SEG: u32 = 32u;
// One partial per invocation: up to 4 batch rows.
var<workgroup> partial: array<vec4<f32>, WG>;

// Tree-sums the SEG partials of each segment into its first invocation's slot; every
// invocation of the workgroup must call it (barriers).
fn reduce_segments(lid: u32, value: vec4<f32>) -> vec4<f32> {
    partial[lid] = value;
    workgroupBarrier();
    let lane = lid % SEG;
    for (var s = SEG / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    return partial[lid];
}

// The output row and first batch row of an invocation of a split-row kernel taking `batch`
// batch rows per workgroup; `row` is clamped to a real one, `valid` says whether it was one.
// (No early return in these kernels: every invocation reaches the reduction's barriers.)
struct SplitRow {
    b0: u32,
    row: u32,
    valid: bool,
}

fn split_row(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, batch: u32) -> SplitRow {
    let rows = WG / SEG;
    let groups_n = (params.n + rows - 1u) / rows;
    let g = linear_group(wid, nwg);
    let b0 = (g / groups_n) * batch;
    let row = (g % groups_n) * rows + lid / SEG;
    return SplitRow(b0, min(row, params.n - 1u), b0 < params.m && row < params.n);
}

// pq_lut_gather with the indices of one output row split over SEG invocations (consecutive
// invocations take consecutive index words); G batch rows per table entry as there.
@compute @workgroup_size(WG)
fn pq_lut_gather_split(@builtin(local_invocation_index) lid: u32,
                       @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let sr = split_row(lid, wid, nwg, G);
    let n = sr.row;
    let base = (min(sr.b0, params.m - 1u) / G) * params.nsub * params.kc;
    let per = 32u / IDX_BITS;
    let mask = (1u << IDX_BITS) - 1u;
    let first = n * params.nsub;
    let end = first + params.nsub;
    var acc = vec4<f32>(0.0);
    for (var wd = first / per + lid % SEG; wd * per < end; wd += SEG) {
        let word = indices[wd];
        for (var t = 0u; t < per; t++) {
            let p = wd * per + t;
            let inside = p >= first && p < end;
            let c = min((word >> (t * IDX_BITS)) & mask, params.kc - 1u);
            let off = base + (min(max(p, first), end - 1u) - first) * params.kc + c;
            acc = lut_add(acc, off, inside);
        }
    }
    let sum = reduce_segments(lid, acc);
    if sr.valid && lid % SEG == 0u {
        store_lut_rows(sr.b0, n, sum);
    }
}

// dense_matvec with each output row split over SEG invocations (consecutive invocations read
// consecutive vec4s of the weight row and of x); MB (1 or 4) batch rows per workgroup.
@compute @workgroup_size(WG)
fn dense_matvec_split(@builtin(local_invocation_index) lid: u32,
                      @builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let sr = split_row(lid, wid, nwg, MB);
    let b0 = sr.b0;
    let n = sr.row;
    let k4 = params.k / 4u;
    let last = params.m - 1u;
    let bc = min(b0, last);
    let xb = vec4<u32>(bc, min(bc + 1u, last), min(bc + 2u, last), min(bc + 3u, last)) * k4;
    let wb = n * k4;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var i = lid % SEG; i < k4; i += SEG) {
        let w = vec4<f32>(w4[wb + i]);
        a0 = fma(w, x4[xb.x + i], a0);
        if MB == 4u {
            a1 = fma(w, x4[xb.y + i], a1);
            a2 = fma(w, x4[xb.z + i], a2);
            a3 = fma(w, x4[xb.w + i], a3);
        }
    }
    let one = vec4<f32>(1.0);
    let sum = reduce_segments(lid, vec4<f32>(dot(a0, one), dot(a1, one), dot(a2, one), dot(a3, one)));
    if sr.valid && lid % SEG == 0u {
        for (var b = 0u; b < MB; b++) {
            if b0 + b < params.m {
                y[params.y_off + (b0 + b) * params.n + n] = add_bias(sum[b], n);
            }
        }
    }
}

// ---- pq_lut_build_ub + pq_lut_gather_ub: the table in uniform buffers (CPU adapters) ----
//
// On lavapipe a storage or workgroup load whose address differs between lanes is a loop over
// the lanes, each lane's load behind a branch on the execution mask; a uniform-buffer load at
// such an address is a branch-free gather (Mesa's gallivm, `emit_load_ubo`). The table's
// lookups are such loads, so for one batch row the table goes to uniform buffers of 64 KiB:
// the build writes TABLE_SLOTS bindings' worth for a slab of `slab.count` subvectors (from
// subvector `slab.first` of every weight row; the host loops over slabs), and each gather
// dispatch reads UB_SLOTS of those bindings, from group `slab.q_first` on. Layout: 4
// consecutive subvectors per vec4, so that every lookup reads one fixed component: group q
// (subvectors 4q .. 4q + 3 of the slab) of centroid c is vec4 (q % qpb)·Kc + c of binding
// q / qpb, qpb = UB_VEC4S / Kc groups per binding. The slab's activations come from a uniform
// buffer too (at lane-uniform addresses: one broadcast load). D ≤ 16, Kc ≤ UB_VEC4S, K/D and
// the slab's first subvector and count multiples of 4.
//
// Why a gather reads only 4 bindings: Mesa 22.3.6's lavapipe corrupts its heap while it
// compiles a shader with six or more loops that each gather from a different uniform array
// (valgrind: a write into memory freed by an earlier pipeline creation; crashes in 1 run of 2).
// Four such loops compiled clean under valgrind.

// 4096 (64 KiB) from the runtime's prelude: these kernels run only where the device allows it.
const UB_VEC4S: u32 = UNIFORM_TABLE_VEC4S;

struct SlabParams {
    first: u32,
    count: u32,
    // 0: y = sum (+ bias); 1: y += sum (later slabs and gathers).
    accumulate: u32,
    // The gather's first group: its bindings hold groups q_first .. q_first + UB_SLOTS·qpb.
    q_first: u32,
}

@group(0) @binding(20) var<uniform> slab: SlabParams;
// The slab's activations (count·D floats).
@group(0) @binding(19) var<uniform> x_slab: array<vec4<f32>, UB_VEC4S>;
@group(0) @binding(11) var<uniform> ub0: array<vec4<f32>, UB_VEC4S>;
@group(0) @binding(12) var<uniform> ub1: array<vec4<f32>, UB_VEC4S>;
@group(0) @binding(13) var<uniform> ub2: array<vec4<f32>, UB_VEC4S>;
@group(0) @binding(14) var<uniform> ub3: array<vec4<f32>, UB_VEC4S>;
// Table bindings of one gather (bound at 11 ..); TABLE_SLOTS (8) per slab on the host.
const UB_SLOTS: u32 = 4u;

// Activation i of the slab (a lane-uniform i).
fn x_slab_at(i: u32) -> f32 {
    return x_slab[i / 4u][i % 4u];
}

// Component t of centroid c, 0 past D.
fn cb_or_zero(c: u32, t: u32) -> f32 {
    if t < D {
        return cb_storage(c, t);
    }
    return 0.0;
}

// Entry (slab subvector j, centroid of `cv`): the activations of subvector j times cv.
fn slab_dot(j: u32, cv: array<vec4<f32>, 4>) -> f32 {
    var s = 0.0;
    for (var t = 0u; t < D; t++) {
        s = fma(x_slab_at(j * D + t), cv[t / 4u][t % 4u], s);
    }
    return s;
}

// One invocation per centroid c and JB subvectors of the slab (JB a multiple of 4): workgroup
// g takes centroid group g % ceil(Kc / WG), then subvector block g / ceil(Kc / WG).
@compute @workgroup_size(WG)
fn pq_lut_build_ub(@builtin(local_invocation_index) lid: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let cgroups = (params.kc + WG - 1u) / WG;
    let g = linear_group(wid, nwg);
    let c = (g % cgroups) * WG + lid;
    let j0 = (g / cgroups) * JB;
    if c >= params.kc || j0 >= slab.count {
        return;
    }
    var cv: array<vec4<f32>, 4>;
    for (var q = 0u; q < 4u; q++) {
        cv[q] = vec4<f32>(cb_or_zero(c, 4u * q), cb_or_zero(c, 4u * q + 1u),
                          cb_or_zero(c, 4u * q + 2u), cb_or_zero(c, 4u * q + 3u));
    }
    let qpb = UB_VEC4S / params.kc;
    let j1 = min(j0 + JB, slab.count);
    for (var j = j0; j < j1; j += 4u) {
        let q = j / 4u;
        let s = vec4<f32>(slab_dot(j, cv), slab_dot(j + 1u, cv), slab_dot(j + 2u, cv),
                          slab_dot(j + 3u, cv));
        lut_out4[(q / qpb) * UB_VEC4S + (q % qpb) * params.kc + c] = s;
    }
}

// The centroids of the 4 subvectors from flat subvector p (a multiple of 4).
fn group_indices(p: u32) -> vec4<u32> {
    var cs: vec4<u32>;
    if IDX_BITS == 8u {
        cs = (vec4<u32>(indices[p / 4u]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    } else {
        let w0 = indices[p / 2u];
        let w1 = indices[p / 2u + 1u];
        cs = vec4<u32>(w0 & 65535u, w0 >> 16u, w1 & 65535u, w1 >> 16u);
    }
    if FULL_K == 0u {
        cs = min(cs, vec4<u32>(params.kc - 1u));
    }
    return cs;
}

// One invocation per output row n: the lookups of row n in this gather's bindings, binding
// by binding.
@compute @workgroup_size(WG)
fn pq_lut_gather_ub(@builtin(local_invocation_index) lid: u32,
                    @builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = linear_group(wid, nwg) * WG + lid;
    if n >= params.n {
        return;
    }
    let groups = slab.count / 4u;
    let p0 = n * params.nsub + slab.first;
    let kc = params.kc;
    var acc = 0.0;
    // Binding by binding, each loop over the groups it holds (a switch on the binding would
    // run every case: lavapipe masks control flow rather than branching).
    let qpb = UB_VEC4S / kc;
    let q0 = slab.q_first;
    var q = q0;
    for (var e = 0u; q < min(q0 + 1u * qpb, groups); q++) {
        let c = e + group_indices(p0 + 4u * q);
        acc += ub0[c.x].x + ub0[c.y].y + ub0[c.z].z + ub0[c.w].w;
        e += kc;
    }
    for (var e = 0u; q < min(q0 + 2u * qpb, groups); q++) {
        let c = e + group_indices(p0 + 4u * q);
        acc += ub1[c.x].x + ub1[c.y].y + ub1[c.z].z + ub1[c.w].w;
        e += kc;
    }
    for (var e = 0u; q < min(q0 + 3u * qpb, groups); q++) {
        let c = e + group_indices(p0 + 4u * q);
        acc += ub2[c.x].x + ub2[c.y].y + ub2[c.z].z + ub2[c.w].w;
        e += kc;
    }
    for (var e = 0u; q < min(q0 + 4u * qpb, groups); q++) {
        let c = e + group_indices(p0 + 4u * q);
        acc += ub3[c.x].x + ub3[c.y].y + ub3[c.z].z + ub3[c.w].w;
        e += kc;
    }
    let at = params.y_off + n;
    if slab.accumulate == 1u {
        y[at] += acc;
    } else {
        y[at] = add_bias(acc, n);
    }
}
