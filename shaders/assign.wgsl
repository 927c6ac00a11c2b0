// Nearest-centroid assignment (the k-means E-step): for each subvector x of dimension d, the
// index of the codebook row c minimising ||x − c||², ties to the lowest index, and that squared
// distance. Scores are ||c||² − 2·x·c; ||x||² is added once at the end.
//
// `assign_prepare` turns the codebook into "prepared" rows: D4 vec4 chunks of −2·c (zero past
// d), then ||c||² in the .x of one more vec4. The host pads the rows to whole tiles with dummy
// centroids whose norm is FAR, which never win.
//
// `assign_nearest` (d <= 16) is written for lavapipe/llvmpipe, where an invocation is one SIMD
// lane: a storage load at an address that is a compile-time constant, outside all control flow,
// is one scalar load broadcast to the lanes, while any other load (e.g. one indexed by a loop
// counter) is a per-lane gather, ~10x dearer. So one dispatch scores a tile of KT centroids as
// straight-line code (KT is a specialisation constant; the centroid index reaches `score` only
// through inlined calls with literal arguments, never through a loop), the host binds each tile
// as its own window, and the running best is carried between tiles in the outputs. Each
// invocation keeps 4 subvectors in registers so that one broadcast feeds 4 lanes' FMAs.
//
// `assign_nearest_wide` (d > 16) is the simple portable loop: one subvector per invocation.

override WG: u32 = 64u;
// Subvector dimension: a specialisation constant, so branches on it fold away.
override D: u32 = 8u;
// vec4 chunks per subvector.
override D4: u32 = (D + 3u) / 4u;
// vec4s per prepared centroid row: D4 chunks of −2·c, then ||c||² (in .x).
override ROW: u32 = D4 + 1u;
// Centroids per `assign_nearest` dispatch: a multiple of 16, at most 496.
override KT: u32 = 16u;

// Larger than any real score; the initial best and the norm of padding centroids.
const FAR: f32 = 3.0e38;
const FIRST_TILE: u32 = 1u;
const LAST_TILE: u32 = 2u;

struct AssignParams {
    // Subvectors in this window (`assign_prepare`: prepared rows to write).
    n: u32,
    // Real centroids (`assign_nearest_wide`: the rows to scan).
    k: u32,
    // Index of the bound tile's first centroid.
    base: u32,
    // FIRST_TILE: no running best yet; LAST_TILE: write distances instead of raw scores.
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: AssignParams;
@group(0) @binding(1) var<storage, read> data: array<f32>;
@group(0) @binding(2) var<storage, read> codebook: array<f32>;
// Between tiles these hold the running best index and raw score (||c||² − 2·x·c).
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> distances: array<f32>;
@group(0) @binding(5) var<storage, read> prepared: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> prepared_out: array<vec4<f32>>;

// Component j of row i of `src` (d floats per row), 0 past d. With a constant j the branch folds.
fn codebook_at(i: u32, j: u32) -> f32 {
    if j < D {
        return codebook[i * D + j];
    }
    return 0.0;
}

fn data_at(i: u32, j: u32) -> f32 {
    if j < D {
        return data[i * D + j];
    }
    return 0.0;
}

fn data_chunk(i: u32, j: u32) -> vec4<f32> {
    let c = 4u * j;
    return vec4<f32>(data_at(i, c), data_at(i, c + 1u), data_at(i, c + 2u), data_at(i, c + 3u));
}

@compute @workgroup_size(WG)
fn assign_prepare(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = (wid.y * nwg.x + wid.x) * WG + lid;
    if c >= params.n {
        return;
    }
    var norm = FAR;
    if c < params.k {
        norm = 0.0;
        for (var j = 0u; j < D4; j++) {
            let v = vec4<f32>(codebook_at(c, 4u * j), codebook_at(c, 4u * j + 1u),
                              codebook_at(c, 4u * j + 2u), codebook_at(c, 4u * j + 3u));
            norm += dot(v, v);
            // Exact: scaling by −2 only changes the exponent.
            prepared_out[c * ROW + j] = -2.0 * v;
        }
    } else {
        for (var j = 0u; j < D4; j++) {
            prepared_out[c * ROW + j] = vec4<f32>(0.0);
        }
    }
    prepared_out[c * ROW + D4] = vec4<f32>(norm, 0.0, 0.0, 0.0);
}

// The invocation's 4 subvectors, chunk by chunk: column k of xj holds component 4j + k of each,
// so `xj[k] * m` is one FMA per subvector and lane. Module-scope so the score functions below
// can take nothing but the centroid index.
var<private> x0: mat4x4<f32>;
var<private> x1: mat4x4<f32>;
var<private> x2: mat4x4<f32>;
var<private> x3: mat4x4<f32>;
var<private> best: vec4<f32>;
var<private> best_index: vec4<u32>;
// The bound tile of prepared rows (at most 16 KiB, the portable workgroup limit).
var<workgroup> tile: array<vec4<f32>, 1024>;

// Chunk j of the 4 rows `i`, transposed into the layout of x0..x3.
fn data_chunks(i: vec4<u32>, j: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(data_chunk(i.x, j), data_chunk(i.y, j), data_chunk(i.z, j),
                                 data_chunk(i.w, j)));
}

// acc + Σ_k x[k]·m[k] over the components 4j + k < d.
fn dot_chunk(acc: vec4<f32>, x: mat4x4<f32>, m: vec4<f32>, j: u32) -> vec4<f32> {
    var a = fma(x[0], vec4<f32>(m.x), acc);
    if 4u * j + 1u < D {
        a = fma(x[1], vec4<f32>(m.y), a);
    }
    if 4u * j + 2u < D {
        a = fma(x[2], vec4<f32>(m.z), a);
    }
    if 4u * j + 3u < D {
        a = fma(x[3], vec4<f32>(m.w), a);
    }
    return a;
}

// Scores centroid c of the bound tile for the 4 subvectors. c must be a constant (see top).
fn score(c: u32) {
    let row = c * ROW;
    var s = vec4<f32>(tile[row + D4].x);
    s = dot_chunk(s, x0, tile[row], 0u);
    if D4 > 1u {
        s = dot_chunk(s, x1, tile[row + 1u], 1u);
    }
    if D4 > 2u {
        s = dot_chunk(s, x2, tile[row + 2u], 2u);
    }
    if D4 > 3u {
        s = dot_chunk(s, x3, tile[row + 3u], 3u);
    }
    // Strictly less: the lower index wins exact ties.
    let better = s < best;
    best = select(best, s, better);
    best_index = select(best_index, vec4<u32>(params.base + c), better);
}

fn score4(c: u32) {
    score(c);
    score(c + 1u);
    score(c + 2u);
    score(c + 3u);
}

fn score16(c: u32) {
    score4(c);
    score4(c + 4u);
    score4(c + 8u);
    score4(c + 12u);
}

fn score32(c: u32) {
    score16(c);
    score16(c + 16u);
}

fn score64(c: u32) {
    score32(c);
    score32(c + 32u);
}

fn score128(c: u32) {
    score64(c);
    score64(c + 64u);
}

fn score256(c: u32) {
    score128(c);
    score128(c + 128u);
}

fn store(i: u32, index: u32, value: f32) {
    if i < params.n {
        indices[i] = index;
        distances[i] = value;
    }
}

@compute @workgroup_size(WG)
fn assign_nearest(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG * 4u + lid + vec4<u32>(0u, 1u, 2u, 3u) * WG;
    // Rows past the window load the last row instead of branching; they are never stored.
    let r = min(i, vec4<u32>(params.n - 1u));
    x0 = data_chunks(r, 0u);
    if D4 > 1u {
        x1 = data_chunks(r, 1u);
    }
    if D4 > 2u {
        x2 = data_chunks(r, 2u);
    }
    if D4 > 3u {
        x3 = data_chunks(r, 3u);
    }
    // Selects, not branches: a branch on a uniform-buffer value would make every load of the
    // tile below a gather.
    let first = (params.flags & FIRST_TILE) != 0u;
    let carried = vec4<f32>(distances[r.x], distances[r.y], distances[r.z], distances[r.w]);
    let carried_index = vec4<u32>(indices[r.x], indices[r.y], indices[r.z], indices[r.w]);
    best = select(carried, vec4<f32>(FAR), first);
    best_index = select(carried_index, vec4<u32>(0u), first);

    for (var t = 0u; t < (KT * ROW + WG - 1u) / WG; t++) {
        let e = t * WG + lid;
        if e < KT * ROW {
            tile[e] = prepared[e];
        }
    }
    workgroupBarrier();
    // KT as a sum of powers of two, each block at a constant offset.
    if (KT & 256u) != 0u {
        score256(0u);
    }
    if (KT & 128u) != 0u {
        score128(KT & 256u);
    }
    if (KT & 64u) != 0u {
        score64(KT & 384u);
    }
    if (KT & 32u) != 0u {
        score32(KT & 448u);
    }
    if (KT & 16u) != 0u {
        score16(KT & 480u);
    }

    var norm_x = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        norm_x = fma(x0[k], x0[k], norm_x);
        norm_x = fma(x1[k], x1[k], norm_x);
        norm_x = fma(x2[k], x2[k], norm_x);
        norm_x = fma(x3[k], x3[k], norm_x);
    }
    let last = (params.flags & LAST_TILE) != 0u;
    let out = select(best, max(norm_x + best, vec4<f32>(0.0)), last);
    store(i.x, best_index.x, out.x);
    store(i.y, best_index.y, out.y);
    store(i.z, best_index.z, out.z);
    store(i.w, best_index.w, out.w);
}

@compute @workgroup_size(WG)
fn assign_nearest_wide(@builtin(local_invocation_index) lid: u32,
                       @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    let r = min(i, params.n - 1u);
    var x: array<vec4<f32>, 16>;
    var norm_x = 0.0;
    for (var j = 0u; j < D4; j++) {
        x[j] = data_chunk(r, j);
        norm_x += dot(x[j], x[j]);
    }
    var wide_best = FAR;
    var wide_index = 0u;
    for (var c = 0u; c < params.k; c++) {
        let row = c * ROW;
        var s = prepared[row + D4].x;
        for (var j = 0u; j < D4; j++) {
            let m = prepared[row + j];
            s = fma(x[j].x, m.x, s);
            s = fma(x[j].y, m.y, s);
            s = fma(x[j].z, m.z, s);
            s = fma(x[j].w, m.w, s);
        }
        if s < wide_best {
            wide_best = s;
            wide_index = c;
        }
    }
    if i < params.n {
        indices[i] = wide_index;
        distances[i] = max(norm_x + wide_best, 0.0);
    }
}
