// Hooks of the `pq_linear` family (see matmul.wgsl), for Y = X · Ŵᵀ with the Linear weight Ŵ
// (N × K) product-quantized: Ŵ[n, k] = C[I[n·(K/D) + k/D]·D + k % D], C the f32 codebook of
// KC centroids of D values, I the indices packed IDX_BITS (8 or 16) bits per index into u32
// words, low bits first; an index ≥ KC reads centroid KC − 1 (as pq_matmul.wgsl does). The
// core runs with B_RAW = 0: it never reads B, each staged vec4 of Ŵ is decoded here from its
// flat indices e = n·K + k.

override D: u32 = 8u;
override IDX_BITS: u32 = 8u;

struct PqLinearParams {
    kc: u32,
    // Subvectors per weight row: K / D.
    nsub: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(5) var<uniform> pql: PqLinearParams;
@group(0) @binding(6) var<storage, read> pq_indices: array<u32>;
@group(0) @binding(7) var<storage, read> pq_codebook: array<f32>;

// First codebook element of the centroid of subvector `sub` (row-major block order).
fn pq_centroid_base(sub: u32) -> u32 {
    let per = 32u / IDX_BITS;
    let word = pq_indices[sub / per];
    let idx = (word >> (IDX_BITS * (sub % per))) & ((1u << IDX_BITS) - 1u);
    return min(idx, pql.kc - 1u) * D;
}

fn pq_weight(e: u32) -> f32 {
    let n = e / mm.k;
    let k = e % mm.k;
    return pq_codebook[pq_centroid_base(n * pql.nsub + k / D) + k % D];
}

fn b_hook4(w: vec4<f32>, e: vec4<u32>) -> vec4<f32> {
    let k = e.x % mm.k;
    if k % D + 3u < D && e.w == e.x + 3u {
        // 4 consecutive weights of one subvector: one index.
        let c = pq_centroid_base((e.x / mm.k) * pql.nsub + k / D) + k % D;
        return vec4<f32>(pq_codebook[c], pq_codebook[c + 1u], pq_codebook[c + 2u],
                         pq_codebook[c + 3u]);
    }
    return vec4<f32>(pq_weight(e.x), pq_weight(e.y), pq_weight(e.z), pq_weight(e.w));
}

fn c_hook(c: f32, e: u32) -> f32 {
    return c;
}
