// Fused Quant-Noise forward: dst = psi(src | mask). One pass over the weights; the mask lives
// in registers. Entry points: noise_vec4 (vec4 body), noise_tail (the last n % 4 elements),
// noise_mask (optional bit-packed mask, one u32 word per invocation).

override WG: u32 = 64u;
// vec4s per invocation, strided by WG inside a workgroup tile.
override VPT: u32 = 4u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<Elem>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<Elem>>;
@group(0) @binding(3) var<storage, read> qp: array<vec4<f32>>;

@group(0) @binding(1) var<storage, read> src_tail: array<Elem>;
@group(0) @binding(2) var<storage, read_write> dst_tail: array<Elem>;
@group(0) @binding(2) var<storage, read_write> mask_words: array<u32>;

fn noise4(w: vec4<f32>, first: u32) -> vec4<f32> {
    var v = w;
    for (var s = 0u; s < params.n_stages; s++) {
        let sel = select4(s, first);
        for (var k = 0u; k < 4u; k++) {
            v[k] = noise_one(v[k], s, first + k, sel[k]);
        }
    }
    return v;
}

@compute @workgroup_size(WG)
fn noise_vec4(@builtin(local_invocation_index) lid: u32,
              @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let n4 = params.n / 4u;
    let base = (wid.y * nwg.x + wid.x) * WG * VPT + lid;
    for (var j = 0u; j < VPT; j++) {
        let v = base + j * WG;
        if v < n4 {
            dst[v] = vec4<Elem>(noise4(vec4<f32>(src[v]), params.offset + v * 4u));
        }
    }
}

@compute @workgroup_size(4)
fn noise_tail(@builtin(local_invocation_index) lid: u32) {
    let i = (params.n / 4u) * 4u + lid;
    if i < params.n {
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
