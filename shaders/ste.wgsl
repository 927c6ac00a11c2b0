// Straight-through backward of the noise chain: grad_w = grad_noisy * factor(mask, w), with the
// mask regenerated from (seed, step). Modes: 0 identity, 1 masked, 2 clamped.

override WG: u32 = 64u;

const MODE_IDENTITY: u32 = 0u;
const MODE_MASKED: u32 = 1u;
const MODE_CLAMPED: u32 = 2u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> grad: array<vec4<Elem>>;
@group(0) @binding(2) var<storage, read> weight: array<vec4<Elem>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<Elem>>;
@group(0) @binding(4) var<storage, read> qp: array<vec4<f32>>;

@group(0) @binding(1) var<storage, read> grad_tail: array<Elem>;
@group(0) @binding(2) var<storage, read> weight_tail: array<Elem>;
@group(0) @binding(3) var<storage, read_write> out_tail: array<Elem>;

fn in_range(w: f32, stage: u32, index: u32) -> bool {
    let q = qp[qp_index(stage, index)];
    let qmax = params.stages[stage].qmax;
    return w >= -q.z * q.x && w <= (qmax - q.z) * q.x;
}

// Factor of one element for stage `stage`.
fn ste_one(w: f32, stage: u32, index: u32, selected: bool) -> f32 {
    let st = params.stages[stage];
    if ste_mode() == MODE_MASKED {
        return select(st.ste_scale, 0.0, selected);
    }
    if ste_mode() == MODE_CLAMPED && stage_kind(stage) == KIND_INTN {
        return select(0.0, 1.0, in_range(w, stage, index));
    }
    return 1.0;
}

// Same layout as noise_vec4: `gpt` Philox groups per invocation.
// Factors of stage `stage` for 4 consecutive elements starting at global index `first`.
fn ste4(w: vec4<f32>, stage: u32, first: u32, selected: vec4<bool>) -> vec4<f32> {
    let st = params.stages[stage];
    if ste_mode() == MODE_MASKED {
        return select(vec4<f32>(st.ste_scale), vec4<f32>(0.0), selected);
    }
    if ste_mode() == MODE_CLAMPED && stage_kind(stage) == KIND_INTN {
        let q = qp4(stage, first);
        let inside = w >= -q.zero * q.scale & w <= (vec4<f32>(st.qmax) - q.zero) * q.scale;
        return select(vec4<f32>(0.0), vec4<f32>(1.0), inside);
    }
    return vec4<f32>(1.0);
}

@compute @workgroup_size(WG)
fn ste_vec4(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let bs = block_size();
    let first_group = params.offset / (4u * bs);
    if COALESCED == 1u {
        // As noise_vec4: the workgroup's vec4s interleaved, Philox drawn per vec4.
        for (var j = 0u; j < groups_per_invocation() * bs; j++) {
            let v4 = coalesced_vec4(lid, wid, nwg, j);
            let g = v4 / bs;
            if g >= window_groups() {
                return;
            }
            var mask = 0u;
            if ste_mode() != MODE_IDENTITY {
                mask = group_mask(first_group + g);
            }
            ste_at(v4, mask, v4 % bs, bs);
        }
        return;
    }
    for (var gi = 0u; gi < groups_per_invocation(); gi++) {
        let g = group_index(lid, wid, nwg, gi);
        if g >= window_groups() {
            return;
        }
        var mask = 0u;
        if ste_mode() != MODE_IDENTITY {
            mask = group_mask(first_group + g);
        }
        for (var k = 0u; k < bs; k++) {
            ste_at(g * bs + k, mask, k, bs);
        }
    }
}

// Vec4 v4 of the window, the k-th of its group, whose blocks' selections are in `mask`.
fn ste_at(v4: u32, mask: u32, k: u32, bs: u32) {
    var grad_v = vec4<f32>(grad[v4]);
    if ste_mode() != MODE_IDENTITY {
        let first = params.offset + v4 * 4u;
        var w = vec4<f32>(0.0);
        if ste_mode() == MODE_CLAMPED {
            w = vec4<f32>(weight[v4]);
        }
        for (var s = 0u; s < stage_count(); s++) {
            grad_v *= ste4(w, s, first, selected4(mask, s, k, bs));
        }
    }
    out[v4] = vec4<Elem>(grad_v);
}

@compute @workgroup_size(64)
fn ste_tail(@builtin(local_invocation_index) lid: u32) {
    for (var i = window_groups() * 4u * params.block_size + lid; i < params.n; i += 64u) {
        let index = params.offset + i;
        var g = f32(grad_tail[i]);
        let w = f32(weight_tail[i]);
        if ste_mode() != MODE_IDENTITY {
            for (var s = 0u; s < params.n_stages; s++) {
                g *= ste_one(w, s, index, select1(s, index));
            }
        }
        out_tail[i] = Elem(g);
    }
}
