// Straight-through backward of the noise chain: grad_w = grad_noisy * factor(mask, w), with the
// mask regenerated from (seed, step). Modes: 0 identity, 1 masked, 2 clamped.

override WG: u32 = 64u;
override VPT: u32 = 4u;

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
    if params.mode == MODE_MASKED {
        return select(st.ste_scale, 0.0, selected);
    }
    if params.mode == MODE_CLAMPED && st.kind == KIND_INTN {
        return select(0.0, 1.0, in_range(w, stage, index));
    }
    return 1.0;
}

@compute @workgroup_size(WG)
fn ste_vec4(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let n4 = params.n / 4u;
    let base = (wid.y * nwg.x + wid.x) * WG * VPT + lid;
    for (var j = 0u; j < VPT; j++) {
        let v = base + j * WG;
        if v < n4 {
            var g = vec4<f32>(grad[v]);
            if params.mode != MODE_IDENTITY {
                let first = params.offset + v * 4u;
                var w = vec4<f32>(0.0);
                if params.mode == MODE_CLAMPED {
                    w = vec4<f32>(weight[v]);
                }
                for (var s = 0u; s < params.n_stages; s++) {
                    let sel = select4(s, first);
                    for (var k = 0u; k < 4u; k++) {
                        g[k] *= ste_one(w[k], s, first + k, sel[k]);
                    }
                }
            }
            out[v] = vec4<Elem>(g);
        }
    }
}

@compute @workgroup_size(4)
fn ste_tail(@builtin(local_invocation_index) lid: u32) {
    let i = (params.n / 4u) * 4u + lid;
    if i < params.n {
        let index = params.offset + i;
        var g = f32(grad_tail[i]);
        let w = f32(weight_tail[i]);
        if params.mode != MODE_IDENTITY {
            for (var s = 0u; s < params.n_stages; s++) {
                g *= ste_one(w, s, index, select1(s, index));
            }
        }
        out_tail[i] = Elem(g);
    }
}
