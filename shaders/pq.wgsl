// Product-quantization decode: a gather. Block b of the weight (flat elements b·bs .. (b+1)·bs
// of the row-major (rows, cols) view) is centroid a[b] of the codebook:
//     out[b·bs + j] = codebook[a[b]·bs + j].
// One dispatch covers one window of whole blocks; `assignments` and `out` are bound from the
// window's first block, the codebook whole. An index ≥ K is clamped to K − 1, so a corrupt
// assignment never reads outside the codebook.

override WG: u32 = 64u;
// Elements per invocation, WG apart (consecutive invocations touch consecutive elements).
const EPT: u32 = 4u;

struct PqParams {
    // Elements in this window (blocks · bs), block size, centroids.
    n: u32,
    bs: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: PqParams;
@group(0) @binding(1) var<storage, read> codebook: array<f32>;
@group(0) @binding(2) var<storage, read> assignments: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn pq_decode(@builtin(local_invocation_index) lid: u32,
             @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let first = (wid.y * nwg.x + wid.x) * WG * EPT;
    for (var s = 0u; s < EPT; s++) {
        let i = first + s * WG + lid;
        if i < params.n {
            let b = i / params.bs;
            let j = i - b * params.bs;
            let a = min(assignments[b], params.k - 1u);
            out[i] = codebook[a * params.bs + j];
        }
    }
}

// Packing of indices below 256 into bytes, 4 per u32 word (index i in byte i % 4 of word
// i / 4, little-endian: the byte order of a u8 array). Indices >= K clamp to K - 1.
@group(0) @binding(1) var<storage, read> unpacked: array<u32>;
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;

@compute @workgroup_size(WG)
fn pack_u8(@builtin(local_invocation_index) lid: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let word = (wid.y * nwg.x + wid.x) * WG + lid;
    if word * 4u >= params.n {
        return;
    }
    var bits = 0u;
    for (var j = 0u; j < 4u; j++) {
        let i = word * 4u + j;
        if i < params.n {
            bits |= min(unpacked[i], params.k - 1u) << (8u * j);
        }
    }
    packed[word] = bits;
}
