// Nearest-centroid assignment (the k-means E-step): for each subvector x of dimension d, the
// index of the codebook row c minimising ||x − c||², ties to the lowest index, and that squared
// distance. Centroids are scored as ||c||² − 2·x·c; ||x||² is added once at the end.
//
// `assign_prepare` turns the codebook into prepared rows of ROW vec4s: D4 chunks of −2·c (zero
// past d), then ||c||² in the .x of one more vec4. The host pads the rows to whole tiles with
// dummy centroids (no chunks, norm FAR) that never win.
//
// `assign_tile{16,32,64,128,256}` (d <= 16) are written for lavapipe/llvmpipe, where an
// invocation is one SIMD lane. There a load at an address that is a compile-time constant,
// outside all control flow, is one scalar load broadcast to the lanes; any other load (one
// indexed by a loop counter, say) is a loop over the lanes, several times dearer than the FMAs
// it feeds. So one dispatch scores one tile of centroids as straight-line code: the centroid
// index reaches `score` only through inlined calls with literal arguments, never through a
// loop, and the host binds each tile as its own window. The running best is carried from tile
// to tile in the outputs. Each invocation scores 4 subvectors, so every broadcast centroid
// component feeds 4 FMAs per lane.
//
// `assign_wide` (16 < d <= 64) is a plain loop over the centroids, 4 subvectors per invocation.

override WG: u32 = 256u;
// Subvector dimension: a specialisation constant, so branches on it fold away.
override D: u32 = 8u;
// vec4 chunks per subvector.
override D4: u32 = (D + 3u) / 4u;
// vec4s per prepared centroid row: D4 chunks of −2·c, then ||c||² (in .x).
override ROW: u32 = D4 + 1u;
// Centroids per tile of the bound `assign_tile{N}` (N).
override TILE_ROWS: u32 = 16u;

// Larger than any real score: the initial best, and the norm of padding centroids.
const FAR: f32 = 3.0e38;
// AssignParams::flags.
const FIRST_TILE: u32 = 1u;
const LAST_TILE: u32 = 2u;

struct AssignParams {
    // Subvectors in this window (`assign_prepare`: prepared rows to write).
    n: u32,
    // Real centroids (`assign_wide`: all of them are bound).
    k: u32,
    // Index of the bound tile's first centroid.
    base: u32,
    // FIRST_TILE: no running best yet; LAST_TILE: write distances, not raw scores.
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: AssignParams;
// f32, or f16 in the f16 variant of the family (arithmetic stays f32).
@group(0) @binding(1) var<storage, read> data: array<Elem>;
@group(0) @binding(2) var<storage, read> codebook: array<Elem>;
// Between tiles these hold the running best index and raw score (||c||² − 2·x·c).
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> distances: array<f32>;
@group(0) @binding(5) var<storage, read> prepared: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> prepared_out: array<vec4<f32>>;

// Component j of row i (0 past d: with a constant j the branch folds away).
fn codebook_at(i: u32, j: u32) -> f32 {
    if j < D {
        return f32(codebook[i * D + j]);
    }
    return 0.0;
}

fn data_at(i: u32, j: u32) -> f32 {
    if j < D {
        return f32(data[i * D + j]);
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
    var norm = 0.0;
    for (var j = 0u; j < D4; j++) {
        var v = vec4<f32>(0.0);
        if c < params.k {
            v = vec4<f32>(codebook_at(c, 4u * j), codebook_at(c, 4u * j + 1u),
                          codebook_at(c, 4u * j + 2u), codebook_at(c, 4u * j + 3u));
        }
        norm += dot(v, v);
        // Exact: scaling by −2 only changes the exponent.
        prepared_out[c * ROW + j] = -2.0 * v;
    }
    if c >= params.k {
        norm = FAR;
    }
    prepared_out[c * ROW + D4] = vec4<f32>(norm, 0.0, 0.0, 0.0);
}

// The invocation's 4 subvectors, chunk by chunk: column k of xj holds component 4j + k of the
// 4, so `fma(xj[k], vec4(m), acc)` advances 4 dot products. Module-scope, so that `score` takes
// nothing but the centroid index. (Named registers, not an array: a private array indexed in a
// loop is kept in memory, and one unrolled per centroid compiles several times slower.)
var<private> x0: mat4x4<f32>;
var<private> x1: mat4x4<f32>;
var<private> x2: mat4x4<f32>;
var<private> x3: mat4x4<f32>;
var<private> best: vec4<f32>;
// Bit patterns of the u32 indices: a select of u32 vectors is `mix` on uvec4 in GLSL, which core
// GL lacks (GL_EXT_shader_integer_mix); bitcasts are free.
var<private> best_index: vec4<f32>;
// The invocation's 4 rows of the window.
var<private> rows: vec4<u32>;
// The bound tile's prepared rows (at most 16 KiB, the portable workgroup memory limit: the host
// sizes tiles to fit). Loads from it at a constant address are plain broadcasts, while a storage
// load also gets a bounds check (a compare and a branch). Sized exactly: wgpu zero-fills
// workgroup memory at the start of every workgroup.
var<workgroup> tile: array<vec4<f32>, TILE_ROWS * ROW>;

// Chunk j of the 4 rows `i`, in the layout of x0..x3.
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

// Scores centroid c of the tile for the invocation's 4 subvectors; c must be a constant.
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
    // Strictly less: of equal scores the lower index stays.
    let better = s < best;
    best = select(best, s, better);
    best_index = select(best_index, bitcast<vec4<f32>>(vec4<u32>(params.base + c)), better);
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

// Loads the invocation's 4 subvectors and the running best, and stages the bound tile of `kt`
// centroids in workgroup memory.
fn begin_tile(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, kt: u32) {
    rows = (wid.y * nwg.x + wid.x) * WG * 4u + lid + vec4<u32>(0u, 1u, 2u, 3u) * WG;
    // Rows past the window load the last row instead of branching; they are never stored.
    let r = min(rows, vec4<u32>(params.n - 1u));
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
    best = vec4<f32>(FAR);
    best_index = vec4<f32>(0.0);
    if (params.flags & FIRST_TILE) == 0u {
        best = vec4<f32>(distances[r.x], distances[r.y], distances[r.z], distances[r.w]);
        best_index = bitcast<vec4<f32>>(
            vec4<u32>(indices[r.x], indices[r.y], indices[r.z], indices[r.w]));
    }
    // A constant trip count: the loop unrolls.
    for (var t = 0u; t < (kt * ROW + WG - 1u) / WG; t++) {
        let e = t * WG + lid;
        if e < kt * ROW {
            tile[e] = prepared[e];
        }
    }
    workgroupBarrier();
}

fn store(i: u32, index: u32, value: f32) {
    if i < params.n {
        indices[i] = index;
        distances[i] = value;
    }
}

// ||x||² of the 4 subvectors.
fn norms(x: mat4x4<f32>, acc: vec4<f32>) -> vec4<f32> {
    var a = acc;
    for (var k = 0u; k < 4u; k++) {
        a = fma(x[k], x[k], a);
    }
    return a;
}

// Stores the running best; after the last tile, the distance ||x||² + score instead.
fn end_tile() {
    var out = best;
    if (params.flags & LAST_TILE) != 0u {
        // Chunks past d are zero.
        let norm_x = norms(x3, norms(x2, norms(x1, norms(x0, vec4<f32>(0.0)))));
        out = max(norm_x + best, vec4<f32>(0.0));
    }
    let index = bitcast<vec4<u32>>(best_index);
    store(rows.x, index.x, out.x);
    store(rows.y, index.y, out.y);
    store(rows.z, index.z, out.z);
    store(rows.w, index.w, out.w);
}

// One entry point per tile size, each inlining only its own block: behind a branch on a
// constant, every block would still be inlined (and optimised) before the branch folds away,
// several times slower to compile.
@compute @workgroup_size(WG)
fn assign_tile16(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    begin_tile(lid, wid, nwg, 16u);
    score16(0u);
    end_tile();
}

@compute @workgroup_size(WG)
fn assign_tile32(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    begin_tile(lid, wid, nwg, 32u);
    score32(0u);
    end_tile();
}

@compute @workgroup_size(WG)
fn assign_tile64(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    begin_tile(lid, wid, nwg, 64u);
    score64(0u);
    end_tile();
}

@compute @workgroup_size(WG)
fn assign_tile128(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    begin_tile(lid, wid, nwg, 128u);
    score128(0u);
    end_tile();
}

@compute @workgroup_size(WG)
fn assign_tile256(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    begin_tile(lid, wid, nwg, 256u);
    score256(0u);
    end_tile();
}

@compute @workgroup_size(WG)
fn assign_wide(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG * 4u + lid + vec4<u32>(0u, 1u, 2u, 3u) * WG;
    let r = min(i, vec4<u32>(params.n - 1u));
    var x: array<mat4x4<f32>, 16>;
    var norm_x = vec4<f32>(0.0);
    for (var j = 0u; j < D4; j++) {
        x[j] = data_chunks(r, j);
        norm_x = norms(x[j], norm_x);
    }
    var wide_best = vec4<f32>(FAR);
    var wide_index = vec4<f32>(0.0);
    for (var c = 0u; c < params.k; c++) {
        let row = c * ROW;
        var s = vec4<f32>(prepared[row + D4].x);
        for (var j = 0u; j < D4; j++) {
            s = dot_chunk(s, x[j], prepared[row + j], j);
        }
        let better = s < wide_best;
        wide_best = select(wide_best, s, better);
        wide_index = select(wide_index, bitcast<vec4<f32>>(vec4<u32>(c)), better);
    }
    let out = max(norm_x + wide_best, vec4<f32>(0.0));
    let index = bitcast<vec4<u32>>(wide_index);
    store(i.x, index.x, out.x);
    store(i.y, index.y, out.y);
    store(i.z, index.z, out.z);
    store(i.w, index.w, out.w);
}
