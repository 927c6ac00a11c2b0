// Fused Quant-Noise forward: dst = psi(src | mask). One pass over the weights; the mask lives
// in registers. Entry points: noise_vec4 (vec4 body), noise_tail (the last n % 4 elements),
// noise_mask (optional bit-packed mask, one u32 word per invocation).

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<Elem>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<Elem>>;
@group(0) @binding(3) var<storage, read> qp: array<vec4<f32>>;

@group(0) @binding(1) var<storage, read> src_tail: array<Elem>;
@group(0) @binding(2) var<storage, read_write> dst_tail: array<Elem>;
@group(0) @binding(2) var<storage, read_write> mask_words: array<u32>;

@group(0) @binding(1) var<storage, read> pq_codebook: array<f32>;
@group(0) @binding(2) var<storage, read_write> pq_values: array<Elem>;

// Each invocation takes `gpt` Philox groups: consecutive ones, one Philox call per stage and
// group, then block_size contiguous vec4s; or, with COALESCED, the same number of vec4s
// interleaved with the workgroup's other invocations.
@compute @workgroup_size(WG)
fn noise_vec4(@builtin(local_invocation_index) lid: u32,
              @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let bs = block_size();
    let first_group = params.offset / (4u * bs);
    if COALESCED == 1u {
        for (var j = 0u; j < groups_per_invocation() * bs; j++) {
            let v4 = coalesced_vec4(lid, wid, nwg, j);
            let g = v4 / bs;
            if g >= window_groups() {
                return;
            }
            noise_at(v4, group_mask(first_group + g), v4 % bs, bs);
        }
        return;
    }
    for (var gi = 0u; gi < groups_per_invocation(); gi++) {
        let g = group_index(lid, wid, nwg, gi);
        if g >= window_groups() {
            return;
        }
        let mask = group_mask(first_group + g);
        for (var k = 0u; k < bs; k++) {
            noise_at(g * bs + k, mask, k, bs);
        }
    }
}

// Vec4 v4 of the window, the k-th of its group, whose blocks' selections are in `mask`.
fn noise_at(v4: u32, mask: u32, k: u32, bs: u32) {
    let first = params.offset + v4 * 4u;
    var v = vec4<f32>(src[v4]);
    for (var s = 0u; s < stage_count(); s++) {
        v = noise4(v, s, first, selected4(mask, s, k, bs));
    }
    dst[v4] = vec4<Elem>(v);
}

// The window's last n mod 4·block_size elements, one Philox call per element and stage.
@compute @workgroup_size(64)
fn noise_tail(@builtin(local_invocation_index) lid: u32) {
    for (var i = window_groups() * 4u * params.block_size + lid; i < params.n; i += 64u) {
        var v = f32(src_tail[i]);
        for (var s = 0u; s < params.n_stages; s++) {
            v = noise_one(v, s, params.offset + i, select1(s, params.offset + i));
        }
        dst_tail[i] = Elem(v);
    }
}

@compute @workgroup_size(WG)
fn noise_mask(@builtin(local_invocation_index) lid: u32,
              @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let local = (wid.y * nwg.x + wid.x) * WG + lid;
    if local >= params.n {
        return;
    }
    let word = params.offset + local;
    let stage = word / params.words_per_stage;
    let first_block = (word % params.words_per_stage) * 32u;
    var bits = 0u;
    for (var g = 0u; g < 8u; g++) {
        let r = stage_lanes(stage, (first_block >> 2u) + g);
        for (var k = 0u; k < 4u; k++) {
            let b = first_block + g * 4u + k;
            if b < params.n_blocks && (r[k] >> 8u) < params.stages[stage].threshold {
                bits |= 1u << (g * 4u + k);
            }
        }
    }
    mask_words[local] = bits;
}

const MAX_BLOCK: u32 = 64u;

// phi_PQ of stage 0 (params.stage_base in the chain), in place: every selected block of the
// window becomes its nearest centroid (squared L2 summed directly, ties to the lowest index).
@compute @workgroup_size(WG)
fn pq_noise(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let bs = params.block_size;
    let b = (wid.y * nwg.x + wid.x) * WG + lid;
    if b >= params.n / bs || !select1(0u, params.offset + b * bs) {
        return;
    }
    var x: array<f32, MAX_BLOCK>;
    for (var j = 0u; j < bs; j++) {
        x[j] = f32(pq_values[b * bs + j]);
    }
    var best = 3.0e38;
    var best_c = 0u;
    for (var c = 0u; c < params.pq_k; c++) {
        var dist = 0.0;
        for (var j = 0u; j < bs; j++) {
            let diff = x[j] - pq_codebook[c * bs + j];
            dist += diff * diff;
        }
        if dist < best {
            best = dist;
            best_c = c;
        }
    }
    for (var j = 0u; j < bs; j++) {
        pq_values[b * bs + j] = Elem(pq_codebook[best_c * bs + j]);
    }
}
