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

// Component j of a row starting at `base` in `buf`, 0 past the row's end.
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

@compute @workgroup_size(WG)
fn assign_nearest(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let first = (wid.y * nwg.x + wid.x) * WG * SPT;
    let tile_len = min(MAX_TILE, TILE_VEC4 / D4);
    var x: array<vec4<f32>, 64>;
    var best: array<f32, SPT>;
    var best_index: array<u32, SPT>;
    var norm_x: array<f32, SPT>;
    for (var s = 0u; s < SPT; s++) {
        let i = first + s * WG + lid;
        var nx = 0.0;
        for (var j = 0u; j < D4; j++) {
            var v = vec4<f32>(0.0);
            if i < params.n {
                v = load4_data(i * params.d, j);
            }
            x[s * MAX_D4 + j] = v;
            nx += dot(v, v);
        }
        norm_x[s] = nx;
        best[s] = 3.0e38;
        best_index[s] = 0u;
    }
    for (var t0 = 0u; t0 < params.k; t0 += tile_len) {
        let count = min(tile_len, params.k - t0);
        workgroupBarrier();
        for (var e = lid; e < count * D4; e += WG) {
            let c = e / D4;
            tile[e] = load4_codebook((t0 + c) * params.d, e % D4);
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
            let nc = tile_norm[c];
            for (var s = 0u; s < SPT; s++) {
                var dot_xc = 0.0;
                for (var j = 0u; j < D4; j++) {
                    dot_xc += dot(x[s * MAX_D4 + j], tile[c * D4 + j]);
                }
                let score = nc - 2.0 * dot_xc;
                if score < best[s] {
                    best[s] = score;
                    best_index[s] = t0 + c;
                }
            }
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
