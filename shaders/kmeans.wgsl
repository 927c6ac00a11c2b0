// k-means on the device without float atomics, bit-reproducible on a given adapter:
// kmeans_partial sums each tile's subvectors per cluster in index order, kmeans_reduce sums the
// tiles in order (the M-step; with DIST the partial kernels also write each subvector's
// squared distance to its centroid of the E-step, the objective); sum_partials reduces a
// vector per workgroup (objectives, k-means++ weights); pp_update keeps each point's squared
// distance to its nearest chosen centroid (k-means++); split repairs an empty cluster from a
// populated one.

override WG: u32 = 64u;
// Subvectors per tile of kmeans_partial and elements per workgroup of sum_partials.
override TILE: u32 = 1024u;
const MAX_D: u32 = 64u;
// kmeans_partial: the subvector dimension (1..=64) as a specialisation constant, so the loops
// over it unroll and the per-cluster sums stay in registers.
override D: u32 = 8u;

struct KmeansParams {
    // Subvectors (or values) in this window.
    n: u32,
    k: u32,
    d: u32,
    // kmeans_partial / sum_partials: global index of this window's first tile.
    tile_base: u32,
    // kmeans_reduce: tiles to reduce; split: the empty cluster.
    n_tiles: u32,
    // pp_update: row of the codebook to measure against; split: the populated cluster.
    row: u32,
    // pp_update: 1 on the first centroid (overwrite instead of min).
    first: u32,
    // kmeans_reduce: 0 mean (an empty cluster keeps its old value), 1 mean (empty: 0), 2 sum.
    mode: u32,
}

@group(0) @binding(0) var<uniform> params: KmeansParams;

// kmeans_partial
@group(0) @binding(1) var<storage, read> data: array<f32>;
@group(0) @binding(2) var<storage, read> assignments: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_sums: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_counts: array<u32>;
// DIST (the k-means M-step): each row's squared distance to its centroid in `centroids`, the
// codebook of the E-step, so that every path's objective comes from this one computation.
@group(0) @binding(5) var<storage, read> centroids: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_dist: array<f32>;
override DIST: bool = false;
// kmeans_partial_runs*, with DIST: each run's sum of its subvectors' distances, in row order
// (the objective's partial sums, so no separate pass over the distances).
@group(0) @binding(7) var<storage, read_write> run_objective: array<f32>;

// Squared distance of window row i to centroid c, as Σ (x − c)² (relative error within
// (2d + 2)·2^-24: every term is a square).
fn row_distance(i: u32, c: u32, d: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < d; j++) {
        let diff = data[i * d + j] - centroids[c * d + j];
        s = fma(diff, diff, s);
    }
    return s;
}

// Each invocation owns clusters lid, lid + WG, ... and adds up, in index order, the tile's
// subvectors assigned to them: the same order on every run, so the same bits.
@compute @workgroup_size(WG)
fn kmeans_partial(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = wid.y * nwg.x + wid.x;
    let start = tile * TILE;
    if start >= params.n {
        return;
    }
    let end = min(start + TILE, params.n);
    let d = D;
    let out_tile = params.tile_base + tile;
    for (var c = lid; c < params.k; c += WG) {
        var sum: array<f32, MAX_D>;
        var count = 0u;
        for (var i = start; i < end; i++) {
            if assignments[i] == c {
                count += 1u;
                for (var j = 0u; j < d; j++) {
                    sum[j] += data[i * d + j];
                }
                if DIST {
                    row_dist[i] = row_distance(i, c, d);
                }
            }
        }
        let base = (out_tile * params.k + c) * d;
        for (var j = 0u; j < d; j++) {
            part_sums[base + j] = sum[j];
        }
        part_counts[out_tile * params.k + c] = count;
    }
}

// kmeans_reduce
@group(0) @binding(1) var<storage, read> red_sums: array<f32>;
@group(0) @binding(2) var<storage, read> red_counts: array<u32>;
@group(0) @binding(3) var<storage, read> old_codebook: array<f32>;
@group(0) @binding(4) var<storage, read_write> new_codebook: array<f32>;
@group(0) @binding(5) var<storage, read_write> counts: array<u32>;

// One invocation per (cluster, component): the tiles in order, then the mean (the M-step: an
// empty cluster keeps its centroid, the host repairs it before use) or, for centroid gradients,
// the mean with 0 for empty clusters, or the sum.
@compute @workgroup_size(WG)
fn kmeans_reduce(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = (wid.y * nwg.x + wid.x) * WG + lid;
    let d = params.d;
    if e >= params.k * d {
        return;
    }
    let c = e / d;
    let j = e % d;
    var sum = 0.0;
    var count = 0u;
    for (var t = 0u; t < params.n_tiles; t++) {
        sum += red_sums[(t * params.k + c) * d + j];
        count += red_counts[t * params.k + c];
    }
    if params.mode == 2u {
        new_codebook[e] = sum;
    } else if count > 0u {
        new_codebook[e] = sum / f32(count);
    } else if params.mode == 1u {
        new_codebook[e] = 0.0;
    } else {
        new_codebook[e] = old_codebook[e];
    }
    if j == 0u {
        counts[c] = count;
    }
}

// sum_partials
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

var<workgroup> wg_sum: array<f32, WG>;

// One partial sum per TILE values: each invocation sums a strided slice, then a tree.
@compute @workgroup_size(WG)
fn sum_partials(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = wid.y * nwg.x + wid.x;
    let start = tile * TILE;
    var s = 0.0;
    for (var i = start + lid; i < min(start + TILE, params.n); i += WG) {
        s += values[i];
    }
    wg_sum[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            wg_sum[lid] += wg_sum[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u && start < params.n {
        sums[params.tile_base + tile] = wg_sum[0];
    }
}

// pp_update
@group(0) @binding(1) var<storage, read> pp_data: array<f32>;
@group(0) @binding(2) var<storage, read> pp_codebook: array<f32>;
@group(0) @binding(3) var<storage, read_write> mins: array<f32>;

@compute @workgroup_size(WG)
fn pp_update(@builtin(local_invocation_index) lid: u32,
             @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if i >= params.n {
        return;
    }
    var dist = 0.0;
    for (var j = 0u; j < params.d; j++) {
        let diff = pp_data[i * params.d + j] - pp_codebook[params.row * params.d + j];
        dist += diff * diff;
    }
    if params.first == 1u {
        mins[i] = dist;
    } else {
        mins[i] = min(mins[i], dist);
    }
}

// split
@group(0) @binding(1) var<storage, read> epsilon: array<f32>;
@group(0) @binding(2) var<storage, read_write> split_codebook: array<f32>;

// Empty cluster n_tiles takes the centroid of populated cluster `row` plus epsilon; `row` keeps
// it minus epsilon (fairseq's repair).
@compute @workgroup_size(64)
fn split(@builtin(local_invocation_index) j: u32) {
    if j < params.d {
        let m = split_codebook[params.row * params.d + j];
        split_codebook[params.n_tiles * params.d + j] = m + epsilon[j];
        split_codebook[params.row * params.d + j] = m - epsilon[j];
    }
}

// kmeans_partial_sorted: the same partial sums as kmeans_partial for tiles of SORT_TILE rows,
// with each row loaded once: the tile's (cluster, row) keys are sorted in workgroup memory
// (bitonic), then each invocation sums the rows of its clusters, a contiguous run of the sorted
// keys, in row order. Deterministic; used when K·d partials per 1024 rows fit.
const SORT_TILE: u32 = 1024u;
const ROW_BITS: u32 = 10u;
var<workgroup> keys: array<u32, SORT_TILE>;

// First position in the sorted keys whose key is >= `key`.
fn lower_bound(key: u32) -> u32 {
    var lo = 0u;
    var hi = SORT_TILE;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if keys[mid] < key {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

@compute @workgroup_size(WG)
fn kmeans_partial_sorted(@builtin(local_invocation_index) lid: u32,
                         @builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = wid.y * nwg.x + wid.x;
    let start = tile * SORT_TILE;
    if start >= params.n {
        return;
    }
    for (var r = lid; r < SORT_TILE; r += WG) {
        var key = 0xFFFFFFFFu;
        if start + r < params.n {
            key = (min(assignments[start + r], params.k) << ROW_BITS) | r;
        }
        keys[r] = key;
    }
    for (var k = 2u; k <= SORT_TILE; k <<= 1u) {
        for (var j = k >> 1u; j > 0u; j >>= 1u) {
            workgroupBarrier();
            for (var i = lid; i < SORT_TILE; i += WG) {
                let p = i ^ j;
                if p > i {
                    let a = keys[i];
                    let b = keys[p];
                    if (a > b) == ((i & k) == 0u) {
                        keys[i] = b;
                        keys[p] = a;
                    }
                }
            }
        }
    }
    workgroupBarrier();
    let out_tile = params.tile_base + tile;
    for (var c = lid; c < params.k; c += WG) {
        let lo = lower_bound(c << ROW_BITS);
        let hi = lower_bound((c + 1u) << ROW_BITS);
        var sum: array<f32, MAX_D>;
        for (var s = lo; s < hi; s++) {
            let row = start + (keys[s] & (SORT_TILE - 1u));
            for (var j = 0u; j < D; j++) {
                sum[j] += data[row * D + j];
            }
            if DIST {
                row_dist[row] = row_distance(row, c, D);
            }
        }
        let base = (out_tile * params.k + c) * D;
        for (var j = 0u; j < D; j++) {
            part_sums[base + j] = sum[j];
        }
        part_counts[out_tile * params.k + c] = hi - lo;
    }
}

// kmeans_partial_fixed: the same partial sums for tiles of TILE rows, each row read twice and
// added with integer atomics in workgroup memory — in fixed point, so the order of the atomic
// additions cannot change the result (integer addition is associative): deterministic without
// float atomics. Cluster c of the tile gets its own scale 2^e, the largest power of two with
// count · max|x| · 2^e ≤ 2^30 over its rows, so no sum overflows and each added value is
// rounded to 2^-e ≤ count · max|x| · 2^-29: relative to the cluster's own magnitude, about as
// fine as an f32 sum of `count` terms. Used when K·d ≤ FIX_KD and K ≤ FIX_K.
const FIX_KD: u32 = 2560u;
const FIX_K: u32 = 512u;
var<workgroup> fix_acc: array<atomic<i32>, FIX_KD>;
var<workgroup> fix_cnt: array<atomic<u32>, FIX_K>;
// Per cluster: during pass 1 the largest |x| of its rows (f32 bits, ordered like the values
// when >= 0, so atomicMax works); from then on its scale's exponent (i32 bits, see above).
var<workgroup> fix_scale: array<atomic<u32>, FIX_K>;

// Cluster c's fixed-point exponent from its count and largest magnitude (see above).
fn fix_exponent(c: u32) -> i32 {
    let big = bitcast<f32>(atomicLoad(&fix_scale[c]));
    if big == 0.0 {
        return 0;
    }
    let bound = f32(atomicLoad(&fix_cnt[c])) * big;
    return clamp(30 - frexp(bound).exp, -126, 126);
}

fn fix_exponent_of(c: u32) -> i32 {
    return bitcast<i32>(atomicLoad(&fix_scale[c]));
}

@compute @workgroup_size(WG)
fn kmeans_partial_fixed(@builtin(local_invocation_index) lid: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = wid.y * nwg.x + wid.x;
    let start = tile * TILE;
    if start >= params.n {
        return;
    }
    let rows = min(TILE, params.n - start);
    let k = params.k;
    // A runtime loop bound: unrolled over D, the atomics made the GL backend's compile slow
    // (46 s for d = 53 on llvmpipe, against 1 s).
    let d = params.d;
    for (var i = lid; i < k * d; i += WG) {
        atomicStore(&fix_acc[i], 0);
    }
    for (var c = lid; c < k; c += WG) {
        atomicStore(&fix_cnt[c], 0u);
        atomicStore(&fix_scale[c], 0u);
    }
    workgroupBarrier();
    // Pass 1: per cluster, the count and the largest magnitude.
    for (var r = lid; r < rows; r += WG) {
        let a = assignments[start + r];
        if a < k {
            var m = 0.0;
            for (var j = 0u; j < d; j++) {
                m = max(m, abs(data[(start + r) * d + j]));
            }
            atomicAdd(&fix_cnt[a], 1u);
            atomicMax(&fix_scale[a], bitcast<u32>(m));
        }
    }
    workgroupBarrier();
    // Once per cluster: the largest magnitude becomes the exponent.
    for (var c = lid; c < k; c += WG) {
        atomicStore(&fix_scale[c], bitcast<u32>(fix_exponent(c)));
    }
    workgroupBarrier();
    // Pass 2: the fixed-point sums.
    for (var r = lid; r < rows; r += WG) {
        let a = assignments[start + r];
        if a < k {
            let e = fix_exponent_of(a);
            var dist = 0.0;
            for (var j = 0u; j < d; j++) {
                let v = data[(start + r) * d + j];
                atomicAdd(&fix_acc[a * d + j], i32(round(ldexp(v, e))));
                if DIST {
                    // `row_distance`, with the value already loaded.
                    let diff = v - centroids[a * d + j];
                    dist = fma(diff, diff, dist);
                }
            }
            if DIST {
                row_dist[start + r] = dist;
            }
        }
    }
    workgroupBarrier();
    let out_tile = params.tile_base + tile;
    for (var i = lid; i < k * d; i += WG) {
        let e = fix_exponent_of(i / d);
        part_sums[out_tile * k * d + i] = ldexp(f32(atomicLoad(&fix_acc[i])), -e);
    }
    for (var c = lid; c < k; c += WG) {
        part_counts[out_tile * k + c] = atomicLoad(&fix_cnt[c]);
    }
}

// Rows per block of a run's objective sum: each block is summed in f32 on its own, so the
// rounding of a long run's objective grows with the block length, not the run's.
const OBJECTIVE_BLOCK: u32 = 1024u;

// kmeans_partial_runs: the same partial sums for adapters where a workgroup runs as SIMD lanes
// of one CPU thread (the per-invocation access pattern). There an atomic on workgroup memory is
// a locked instruction per lane, and `kmeans_partial_fixed` spends most of its time in them.
// Here each invocation owns a run of TILE rows and its own partial slot (K·d sums and K
// counts, tile index = run index), and adds its rows into it in row order: no atomics, no
// workgroup memory, deterministic.
// The first cluster row of run `run`'s partial slot; zeroes the slot's counts.
fn run_slot(run: u32) -> u32 {
    let slot = (params.tile_base + run) * params.k;
    for (var c = 0u; c < params.k; c++) {
        part_counts[slot + c] = 0u;
    }
    return slot;
}

@compute @workgroup_size(WG)
fn kmeans_partial_runs(@builtin(local_invocation_index) lid: u32,
                       @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let run = (wid.y * nwg.x + wid.x) * WG + lid;
    let start = run * TILE;
    if start >= params.n {
        return;
    }
    let end = min(start + TILE, params.n);
    let k = params.k;
    let slot = run_slot(run);
    for (var e = 0u; e < k * D; e++) {
        part_sums[slot * D + e] = 0.0;
    }
    // The run's distances summed in blocks of OBJECTIVE_BLOCK rows, then the blocks' sums.
    var objective = 0.0;
    var block = 0.0;
    for (var i = start; i < end; i++) {
        let a = assignments[i];
        if a < k {
            part_counts[slot + a] += 1u;
            var dist = 0.0;
            for (var j = 0u; j < D; j++) {
                let v = data[i * D + j];
                part_sums[(slot + a) * D + j] += v;
                if DIST {
                    // `row_distance`, with the value already loaded.
                    let diff = v - centroids[a * D + j];
                    dist = fma(diff, diff, dist);
                }
            }
            if DIST {
                row_dist[i] = dist;
                block += dist;
            }
        }
        if DIST && (i - start) % OBJECTIVE_BLOCK == OBJECTIVE_BLOCK - 1u {
            objective += block;
            block = 0.0;
        }
    }
    if DIST {
        run_objective[params.tile_base + run] = objective + block;
    }
}

// kmeans_partial_runs4: kmeans_partial_runs for D % 4 == 0 with every access a vec4 (the same
// sums and distances, in the same order): on lavapipe a per-lane vec4 load costs about what a
// scalar one does, so this takes 15 ms against 25 ms at 1M × 8, K = 256. With CENTROIDS_UB the
// distances read the centroids from a uniform copy of the codebook (K·D ≤ 16384): there a
// load at a per-lane address is a gather rather than a loop over the lanes (11.2 against
// 12.3 ms per M-step at 1M × 8, K = 256).
@group(0) @binding(1) var<storage, read> data4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> part_sums4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> centroids4: array<vec4<f32>>;
// UNIFORM_TABLE_VEC4S comes from the runtime's prelude (1 where the device's uniform bindings
// are smaller than 64 KiB: CENTROIDS_UB is then off and a stand-in is bound).
@group(0) @binding(8) var<uniform> centroids_ub: array<vec4<f32>, UNIFORM_TABLE_VEC4S>;
override CENTROIDS_UB: bool = false;

// With DATA_TEX the rows come from a texture copy of the window's data (TEX_W texels per
// texture row, `src/runtime/texels.rs`): on CPU adapters a texel fetch is a gather, where a
// storage load is a loop over the lanes. Else a 1×1 stand-in is bound.
@group(0) @binding(9) var data_tex: texture_2d<f32>;
override DATA_TEX: bool = false;
override TEX_W: u32 = 4096u;

// vec4 t of the window's data.
fn data_chunk(t: u32) -> vec4<f32> {
    if DATA_TEX {
        return textureLoad(data_tex, vec2<u32>(t % TEX_W, t / TEX_W), 0);
    }
    return data4[t];
}

fn centroid_chunk(i: u32) -> vec4<f32> {
    if CENTROIDS_UB {
        return centroids_ub[i];
    }
    return centroids4[i];
}

@compute @workgroup_size(WG)
fn kmeans_partial_runs4(@builtin(local_invocation_index) lid: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let run = (wid.y * nwg.x + wid.x) * WG + lid;
    let start = run * TILE;
    if start >= params.n {
        return;
    }
    let end = min(start + TILE, params.n);
    let k = params.k;
    let d4 = D / 4u;
    let slot = run_slot(run);
    for (var e = 0u; e < k * d4; e++) {
        part_sums4[slot * d4 + e] = vec4<f32>(0.0);
    }
    // The run's distances summed in blocks of OBJECTIVE_BLOCK rows, then the blocks' sums.
    var objective = 0.0;
    var block = 0.0;
    for (var i = start; i < end; i++) {
        let a = assignments[i];
        if a < k {
            part_counts[slot + a] += 1u;
            var dist = 0.0;
            for (var q = 0u; q < d4; q++) {
                let v = data_chunk(i * d4 + q);
                part_sums4[(slot + a) * d4 + q] += v;
                if DIST {
                    // `row_distance`'s terms in its order.
                    let diff = v - centroid_chunk(a * d4 + q);
                    dist = fma(diff.x, diff.x, dist);
                    dist = fma(diff.y, diff.y, dist);
                    dist = fma(diff.z, diff.z, dist);
                    dist = fma(diff.w, diff.w, dist);
                }
            }
            if DIST {
                row_dist[i] = dist;
                block += dist;
            }
        }
        if DIST && (i - start) % OBJECTIVE_BLOCK == OBJECTIVE_BLOCK - 1u {
            objective += block;
            block = 0.0;
        }
    }
    if DIST {
        run_objective[params.tile_base + run] = objective + block;
    }
}
