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
// `assign_tile{N}` as the k-means bounds' rescan (see below): score the listed subvectors, and
// also track the second- and third-lowest scores (see `score`).
override RESCAN: bool = false;

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
    // Bounds kernels: index of the bound window (its list count and dispatch arguments).
    window: u32,
}

@group(0) @binding(0) var<uniform> params: AssignParams;
// Binding 1, `data`, `data_chunk` and `prepared_row` (what the tile kernels stage) are declared
// by the module's prefix: `assign_rows.wgsl` (any d), `assign_rows_vec4.wgsl` (d a multiple of
// 4) or `assign_rows_tex.wgsl` (textures, on CPU adapters).
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
// Rescans: the second- and third-lowest scores and the second's centroid (bits).
var<private> second: vec4<f32>;
var<private> third: vec4<f32>;
var<private> second_index: vec4<f32>;
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

// acc + Σ_k x[k]·m[k] over the components 4j + k < d: column k of m holds, per subvector,
// its multiplier of component 4j + k (the same centroid for all 4: `splat`).
fn dot_chunk(acc: vec4<f32>, x: mat4x4<f32>, m: mat4x4<f32>, j: u32) -> vec4<f32> {
    var a = fma(x[0], m[0], acc);
    if 4u * j + 1u < D {
        a = fma(x[1], m[1], a);
    }
    if 4u * j + 2u < D {
        a = fma(x[2], m[2], a);
    }
    if 4u * j + 3u < D {
        a = fma(x[3], m[3], a);
    }
    return a;
}

// One centroid chunk as the multipliers of all 4 subvectors.
fn splat(m: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(vec4<f32>(m.x), vec4<f32>(m.y), vec4<f32>(m.z), vec4<f32>(m.w));
}

// Scores centroid c of the tile for the invocation's 4 subvectors; c must be a constant.
fn score(c: u32) {
    let row = c * ROW;
    var s = vec4<f32>(tile[row + D4].x);
    s = dot_chunk(s, x0, splat(tile[row]), 0u);
    if D4 > 1u {
        s = dot_chunk(s, x1, splat(tile[row + 1u]), 1u);
    }
    if D4 > 2u {
        s = dot_chunk(s, x2, splat(tile[row + 2u]), 2u);
    }
    if D4 > 3u {
        s = dot_chunk(s, x3, splat(tile[row + 3u]), 3u);
    }
    // Strictly less: of equal scores the lower index stays.
    let better = s < best;
    if RESCAN {
        // s < best implies s < second; ties go to the lower ranks (the older centroid wins).
        let better2 = s < second;
        let c_index = bitcast<vec4<f32>>(vec4<u32>(params.base + c));
        third = select(min(third, s), second, better2);
        second_index = select(second_index, select(c_index, best_index, better), better2);
        second = select(second, select(s, best, better), better2);
    }
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

// Loads the 4 subvectors `r` into x0..x3.
fn load_rows(r: vec4<u32>) {
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
}

// The running best of the 4 subvectors `r` (none on the first tile).
fn load_best(r: vec4<u32>) {
    best = vec4<f32>(FAR);
    best_index = vec4<f32>(0.0);
    if (params.flags & FIRST_TILE) == 0u {
        best = vec4<f32>(distances[r.x], distances[r.y], distances[r.z], distances[r.w]);
        best_index = bitcast<vec4<f32>>(
            vec4<u32>(indices[r.x], indices[r.y], indices[r.z], indices[r.w]));
    }
}

// Loads the invocation's 4 subvectors and the running best, and stages the bound tile of `kt`
// centroids in workgroup memory.
fn begin_tile(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, kt: u32) {
    rows = (wid.y * nwg.x + wid.x) * WG * 4u + lid + vec4<u32>(0u, 1u, 2u, 3u) * WG;
    // Rows past the window load the last row instead of branching; they are never stored.
    let r = min(rows, vec4<u32>(params.n - 1u));
    load_rows(r);
    load_best(r);
    stage_tile(lid, kt);
}

// Stages the bound tile of `kt` centroids in workgroup memory.
fn stage_tile(lid: u32, kt: u32) {
    // A constant trip count: the loop unrolls.
    for (var t = 0u; t < (kt * ROW + WG - 1u) / WG; t++) {
        let e = t * WG + lid;
        if e < kt * ROW {
            tile[e] = prepared_row(e);
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
    if RESCAN {
        begin_rescan(lid, wid, nwg, 16u);
    } else {
        begin_tile(lid, wid, nwg, 16u);
    }
    score16(0u);
    if RESCAN {
        end_rescan();
    } else {
        end_tile();
    }
}

@compute @workgroup_size(WG)
fn assign_tile32(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    if RESCAN {
        begin_rescan(lid, wid, nwg, 32u);
    } else {
        begin_tile(lid, wid, nwg, 32u);
    }
    score32(0u);
    if RESCAN {
        end_rescan();
    } else {
        end_tile();
    }
}

@compute @workgroup_size(WG)
fn assign_tile64(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    if RESCAN {
        begin_rescan(lid, wid, nwg, 64u);
    } else {
        begin_tile(lid, wid, nwg, 64u);
    }
    score64(0u);
    if RESCAN {
        end_rescan();
    } else {
        end_tile();
    }
}

@compute @workgroup_size(WG)
fn assign_tile128(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    if RESCAN {
        begin_rescan(lid, wid, nwg, 128u);
    } else {
        begin_tile(lid, wid, nwg, 128u);
    }
    score128(0u);
    if RESCAN {
        end_rescan();
    } else {
        end_tile();
    }
}

@compute @workgroup_size(WG)
fn assign_tile256(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    if RESCAN {
        begin_rescan(lid, wid, nwg, 256u);
    } else {
        begin_tile(lid, wid, nwg, 256u);
    }
    score256(0u);
    if RESCAN {
        end_rescan();
    } else {
        end_tile();
    }
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
            s = dot_chunk(s, x[j], splat(prepared[row + j]), j);
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

// ---- Hamerly bounds of the k-means E-step (host: `src/kmeans/bounds.rs`) ----
//
// Per subvector, `lower` holds lower bounds on true distances (not squared): `second` to its
// second-nearest centroid `b` at the last rescan, `rest` to every centroid but its own and b
// (Drake and Hamerly's bounds with b = 2: the second-nearest decays by its own drift, only the
// rest by the largest drift). Per E-step: `bound_drift` measures how far each centroid moved
// since the codebook the bounds hold for (`last`, then updated); `bound_check` bounds the
// distance to the own centroid from above, lowers the other bounds by the drifts, and lists the
// subvectors whose bounds do not prove the own centroid still wins; `bound_args` turns each
// window's list count into indirect dispatch arguments; `assign_tile{N}` with RESCAN score the
// listed subvectors against every tile and reset the bounds from the second- and third-lowest
// scores. The list's order (atomic appends) does not matter: each listed subvector is scored
// on its own. The distances of the objective come from the M-step (the
// `DIST` of `shaders/kmeans.wgsl`), in both E-step paths: compilers may contract or
// reassociate the same float expression differently in different kernels (Mesa's NIR does),
// so only one kernel computing every distance keeps the objectives equal bit for bit.
//
// Rounding (all bounds are conservative): with u = 2^-24, the computed fl(||x||² + s_c) of any
// centroid c differs from the exact ||x − c||² of the stored f32 values by at most
// E = (8d + 16)·u·(||x||² + R²) + 4e-36, R² the largest computed ||c||²: ||c||², the FMA chain
// of s_c and ||x||² carry at most 3d + 1 roundings of terms bounded by (||x|| + ||c||)² ≤
// 2(||x||² + ||c||²) (twice as many if FMA is split, still within 8d + 16); 4e-36 covers flushed
// subnormals. Every derived quantity is shrunk by 1 − 2^-18 (or 2^-20), far more than the few
// roundings (and the few-ulp sqrt) it takes. Drifts are inflated by 1 + 2^-16 (2d + 8 roundings)
// plus 2e-18 (subnormal squares).

// 1 − 2^-18 and 1 − 2^-20 (exact in f32).
const SHRINK: f32 = 0.999996185302734375;
const SHRINK_SQ: f32 = 0.99999904632568359375;

// Per subvector, as one vec4 (on lavapipe each access at a per-invocation address is a loop
// over the SIMD lanes, whatever it moves): the bits of the lower bounds on the distances to
// the second-nearest centroid and to the rest (between rescan tiles: the raw second- and
// third-lowest scores), the second-nearest centroid, 0.
@group(0) @binding(7) var<storage, read_write> lower: array<vec4<u32>>;

fn lower_record(second: f32, rest: f32, b: u32) -> vec4<u32> {
    return vec4<u32>(bitcast<u32>(second), bitcast<u32>(rest), b, 0u);
}
@group(0) @binding(8) var<storage, read_write> list_out: array<u32>;
@group(0) @binding(8) var<storage, read> list: array<u32>;
@group(0) @binding(9) var<storage, read_write> list_count: array<atomic<u32>>;
@group(0) @binding(9) var<storage, read> listed_count: array<u32>;
// [largest drift, second largest, the largest's centroid, R², drift of each centroid] (f32 bits
// but the index).
@group(0) @binding(10) var<storage, read_write> bounds_out: array<u32>;
@group(0) @binding(10) var<storage, read> bounds: array<u32>;
@group(0) @binding(11) var<storage, read_write> last: array<f32>;
@group(0) @binding(12) var<storage, read_write> dispatch_args: array<u32>;

// The rounding margin E of the 4 subvectors (see above).
fn margin(norm_x: vec4<f32>) -> vec4<f32> {
    let r2 = bitcast<f32>(bounds[3]);
    return f32(8u * D + 16u) * 5.9604644775390625e-8 * (norm_x + vec4<f32>(r2)) + 4e-36;
}

// Top two drifts (ties to the lower centroid), their centroid, and the largest ||c||².
var<workgroup> red_drift: array<vec3<f32>, WG>;
var<workgroup> red_arg: array<u32, WG>;

// One workgroup: the drift of every centroid from `last` (then `last` ← the codebook).
@compute @workgroup_size(WG)
fn bound_drift(@builtin(local_invocation_index) lid: u32) {
    var top = vec3<f32>(0.0);
    var arg = 0u;
    for (var c = lid; c < params.k; c += WG) {
        var sq = 0.0;
        for (var j = 0u; j < D; j++) {
            let v = f32(codebook[c * D + j]);
            let diff = v - last[c * D + j];
            sq = fma(diff, diff, sq);
            last[c * D + j] = v;
        }
        let drift = sqrt(sq);
        bounds_out[4u + c] = bitcast<u32>(drift * 1.0000152587890625 + 2e-18);
        // Strictly greater: of equal drifts the lower centroid (seen first) stays.
        if drift > top.x {
            top.y = top.x;
            top.x = drift;
            arg = c;
        } else {
            top.y = max(top.y, drift);
        }
        top.z = max(top.z, prepared[c * ROW + D4].x);
    }
    red_drift[lid] = top;
    red_arg[lid] = arg;
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if lid < stride {
            let a = red_drift[lid];
            let b = red_drift[lid + stride];
            let ia = red_arg[lid];
            let ib = red_arg[lid + stride];
            let b_wins = b.x > a.x || (b.x == a.x && ib < ia);
            let hi = select(a, b, b_wins);
            let lo = select(b, a, b_wins);
            red_drift[lid] = vec3<f32>(hi.x, max(hi.y, lo.x), max(a.z, b.z));
            red_arg[lid] = select(ia, ib, b_wins);
        }
    }
    if lid == 0u {
        let t = red_drift[0];
        bounds_out[0] = bitcast<u32>(t.x * 1.0000152587890625 + 2e-18);
        bounds_out[1] = bitcast<u32>(t.y * 1.0000152587890625 + 2e-18);
        bounds_out[2] = red_arg[0];
        bounds_out[3] = bitcast<u32>(t.z);
    }
}

// Rows appended by this workgroup, and where they start in the window's list.
var<workgroup> wg_listed: atomic<u32>;
var<workgroup> wg_base: u32;

// Reads no subvector: `distances` holds each one's squared distance to its centroid under the
// codebook of the previous E-step (written by the M-step, within (2d + 2)·2^-24 relative), so
// u = that distance + the own centroid's drift bounds the distance now (Hamerly's upper bound).
@compute @workgroup_size(WG)
fn bound_check(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    rows = (wid.y * nwg.x + wid.x) * WG * 4u + lid + vec4<u32>(0u, 1u, 2u, 3u) * WG;
    let valid = rows < vec4<u32>(params.n);
    let r = min(rows, vec4<u32>(params.n - 1u));
    let a = min(vec4<u32>(indices[r.x], indices[r.y], indices[r.z], indices[r.w]),
                vec4<u32>(params.k - 1u));
    // Rows (second, rest, b, 0) of the 4 subvectors, as columns.
    let l = transpose(mat4x4<f32>(bitcast<vec4<f32>>(lower[r.x]), bitcast<vec4<f32>>(lower[r.y]),
                                  bitcast<vec4<f32>>(lower[r.z]), bitcast<vec4<f32>>(lower[r.w])));
    let b_raw = bitcast<vec4<u32>>(l[2]);
    let b = min(b_raw, vec4<u32>(params.k - 1u));
    let old = vec4<f32>(distances[r.x], distances[r.y], distances[r.z], distances[r.w]);
    let u = sqrt(old) * 1.0000152587890625 + 2e-18 +
            vec4<f32>(drift_of(a.x), drift_of(a.y), drift_of(a.z), drift_of(a.w));
    // The second-nearest moved by its own drift, the rest at most by the largest drift but
    // those of the own centroid and the second-nearest.
    let drift_b = vec4<f32>(drift_of(b.x), drift_of(b.y), drift_of(b.z), drift_of(b.w));
    let top = vec4<u32>(bounds[2]);
    let drift_rest = select(vec4<f32>(bitcast<f32>(bounds[0])),
                            vec4<f32>(bitcast<f32>(bounds[1])), a == top | b == top);
    let old_second = l[0];
    let old_rest = l[1];
    let lo_second = max((old_second - drift_b) * SHRINK, vec4<f32>(0.0));
    let lo_rest = max((old_rest - drift_rest) * SHRINK, vec4<f32>(0.0));
    let lo = min(lo_second, lo_rest);
    // Proven: every other centroid's computed score exceeds the own one's (see E above, with
    // ||x||² ≤ (u + R)² ≤ 2u² + 2R²).
    let r2 = vec4<f32>(bitcast<f32>(bounds[3]));
    let kept = lo * lo * SHRINK_SQ > u * u * 1.00000095367431640625 +
               2.0 * margin(2.0 * (u * u + r2));
    let need = valid & !kept;
    let count = u32(need.x) + u32(need.y) + u32(need.z) + u32(need.w);
    var at = 0u;
    if count > 0u {
        at = atomicAdd(&wg_listed, count);
    }
    workgroupBarrier();
    if lid == 0u {
        wg_base = atomicAdd(&list_count[params.window], atomicLoad(&wg_listed));
    }
    workgroupBarrier();
    at += wg_base;
    for (var k = 0u; k < 4u; k++) {
        if valid[k] {
            lower[rows[k]] = lower_record(lo_second[k], lo_rest[k], b_raw[k]);
        }
        if need[k] {
            list_out[at] = rows[k];
            at += 1u;
        }
    }
}

fn drift_of(c: u32) -> f32 {
    return bitcast<f32>(bounds[4u + c]);
}

// One invocation per window: the list's count as `dispatch_workgroups_indirect` arguments
// (a 2-D grid, like the host's).
@compute @workgroup_size(WG)
fn bound_args(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = gid.x;
    if w < params.n {
        let groups = (atomicLoad(&list_count[w]) + WG * 4u - 1u) / (WG * 4u);
        let x = min(groups, 65535u);
        dispatch_args[3u * w] = x;
        dispatch_args[3u * w + 1u] = max((groups + 65534u) / 65535u, 1u);
        dispatch_args[3u * w + 2u] = 1u;
    }
}

// Rescans: which of the invocation's 4 list positions hold a subvector.
var<private> listed: vec4<bool>;

// Like `begin_tile` for the listed subvectors of the window; the running second- and
// third-lowest scores are carried in `lower`.
fn begin_rescan(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, kt: u32) {
    let count = listed_count[params.window];
    let pos = (wid.y * nwg.x + wid.x) * WG * 4u + lid + vec4<u32>(0u, 1u, 2u, 3u) * WG;
    listed = pos < vec4<u32>(count);
    let p = min(pos, vec4<u32>(max(count, 1u) - 1u));
    rows = vec4<u32>(list[p.x], list[p.y], list[p.z], list[p.w]);
    load_rows(rows);
    load_best(rows);
    second = vec4<f32>(FAR);
    third = vec4<f32>(FAR);
    second_index = vec4<f32>(0.0);
    if (params.flags & FIRST_TILE) == 0u {
        let l = transpose(mat4x4<f32>(
            bitcast<vec4<f32>>(lower[rows.x]), bitcast<vec4<f32>>(lower[rows.y]),
            bitcast<vec4<f32>>(lower[rows.z]), bitcast<vec4<f32>>(lower[rows.w])));
        second = l[0];
        third = l[1];
        second_index = l[2];
    }
    stage_tile(lid, kt);
}

// A lower bound on ||x − c|| of every centroid c whose computed score is at least `score`:
// ||x − c||² ≥ fl(||x||² + score) − E.
fn distance_floor(norm_x: vec4<f32>, score: vec4<f32>) -> vec4<f32> {
    let sq = (norm_x + score - margin(norm_x)) * SHRINK_SQ;
    return sqrt(max(sq, vec4<f32>(0.0))) * SHRINK;
}

fn end_rescan() {
    var out = best;
    var lo_second = second;
    var lo_rest = third;
    if (params.flags & LAST_TILE) != 0u {
        let norm_x = norms(x3, norms(x2, norms(x1, norms(x0, vec4<f32>(0.0)))));
        out = max(norm_x + best, vec4<f32>(0.0));
        lo_second = distance_floor(norm_x, second);
        lo_rest = distance_floor(norm_x, third);
    }
    let index = bitcast<vec4<u32>>(best_index);
    let b = bitcast<vec4<u32>>(second_index);
    for (var k = 0u; k < 4u; k++) {
        if listed[k] {
            indices[rows[k]] = index[k];
            distances[rows[k]] = out[k];
            lower[rows[k]] = lower_record(lo_second[k], lo_rest[k], b[k]);
        }
    }
}
