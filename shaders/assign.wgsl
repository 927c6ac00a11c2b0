// Nearest-centroid assignment (the k-means E-step): for each subvector x of dimension d, the
// index of the codebook row c minimising ||x − c||², ties to the lowest index, and that squared
// distance. Codebook tiles are staged in workgroup memory; each invocation keeps SPT
// subvectors in registers and scores them as ||c||² − 2·x·c.

override WG: u32 = 64u;
// vec4 chunks per subvector, ceil(d / 4) (1..=16): a specialisation constant so loops unroll.
override D4: u32 = 2u;
const SPT: u32 = 4u;
const MAX_D4: u32 = 16u;
const TILE_VEC4: u32 = 960u;
const MAX_TILE: u32 = 128u;

struct AssignParams {
    // Subvectors in this window, centroids, dimension.
    n: u32,
    k: u32,
    d: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: AssignParams;
@group(0) @binding(1) var<storage, read> data: array<f32>;
@group(0) @binding(2) var<storage, read> codebook: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> distances: array<f32>;

var<workgroup> tile: array<vec4<f32>, TILE_VEC4>;
var<workgroup> tile_norm: array<f32, MAX_TILE>;

// Chunk `chunk` (components 4·chunk .. 4·chunk+3) of the row starting at `base`, 0 past d.
fn load4_data(base: u32, chunk: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let j = chunk * 4u + c;
        if j < params.d {
            v[c] = data[base + j];
        }
    }
    return v;
}

fn load4_codebook(base: u32, chunk: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let j = chunk * 4u + c;
        if j < params.d {
            v[c] = codebook[base + j];
        }
    }
    return v;
}

// Each invocation scores 4 subvectors at once: chunk j of the 4 subvectors is a matrix whose
// column k holds component 4j+k of each, so `X_j * c_j` is the vec4 of their partial dot
// products with centroid chunk c_j. Chunks 0..3 live in named registers (d <= 16, the
// common case); larger d uses a private array.
@compute @workgroup_size(WG)
fn assign_nearest(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let first = (wid.y * nwg.x + wid.x) * WG * SPT;
    let tile_len = min(MAX_TILE, TILE_VEC4 / D4);
    var x0 = mat4x4<f32>();
    var x1 = mat4x4<f32>();
    var x2 = mat4x4<f32>();
    var x3 = mat4x4<f32>();
    var norm_x = vec4<f32>(0.0);
    for (var s = 0u; s < SPT; s++) {
        let i = first + s * WG + lid;
        for (var j = 0u; j < D4; j++) {
            var v = vec4<f32>(0.0);
            if i < params.n {
                v = load4_data(i * params.d, j);
            }
            norm_x[s] += dot(v, v);
            for (var k = 0u; k < 4u; k++) {
                switch j {
                    case 0u: { x0[k][s] = v[k]; }
                    case 1u: { x1[k][s] = v[k]; }
                    case 2u: { x2[k][s] = v[k]; }
                    case 3u: { x3[k][s] = v[k]; }
                    default: {}
                }
            }
        }
    }
    var best = vec4<f32>(3.0e38);
    var best_index = vec4<u32>(0u);
    for (var t0 = 0u; t0 < params.k; t0 += tile_len) {
        let count = min(tile_len, params.k - t0);
        workgroupBarrier();
        for (var e = lid; e < count * D4; e += WG) {
            tile[e] = load4_codebook((t0 + e / D4) * params.d, e % D4);
        }
        workgroupBarrier();
        for (var c = lid; c < count; c += WG) {
            var nc = 0.0;
            for (var j = 0u; j < D4; j++) {
                nc += dot(tile[c * D4 + j], tile[c * D4 + j]);
            }
            tile_norm[c] = nc;
        }
        workgroupBarrier();
        for (var c = 0u; c < count; c++) {
            let row = c * D4;
            var acc = x0 * tile[row];
            if D4 > 1u {
                acc += x1 * tile[row + 1u];
            }
            if D4 > 2u {
                acc += x2 * tile[row + 2u];
            }
            if D4 > 3u {
                acc += x3 * tile[row + 3u];
            }
            let score = vec4<f32>(tile_norm[c]) - 2.0 * acc;
            let better = score < best;
            best = select(best, score, better);
            best_index = select(best_index, vec4<u32>(t0 + c), better);
        }
    }
    for (var s = 0u; s < SPT; s++) {
        let i = first + s * WG + lid;
        if i < params.n {
            indices[i] = best_index[s];
            distances[i] = max(norm_x[s] + best[s], 0.0);
        }
    }
}
