// The noise chain shared by shaders/noise.wgsl and shaders/ste.wgsl: parameters, block
// selection and the noise functions. The including file declares `params: Params` (uniform)
// and `qp: array<vec4<f32>>` (scale, 1/scale, zero-point, unused).

const KIND_PROXY: u32 = 0u;
const KIND_INTN: u32 = 1u;

struct Stage {
    kind: u32,
    // Selected when (philox lane >> 8) < threshold.
    threshold: u32,
    // Forward factor of unselected weights: 1/(1-p) for a rescaling proxy, 1 otherwise.
    keep_scale: f32,
    // 2^bits - 1 (intN).
    qmax: f32,
    // First entry of this stage in qp.
    qp_base: u32,
    // 1 when qp holds one entry per row.
    per_channel: u32,
    // Masked-STE factor of unselected weights: 1/(1-p), or 0 when p = 1.
    ste_scale: f32,
    _pad: u32,
}

struct Params {
    // Elements (or mask words) in this window, and the global index of the first one.
    n: u32,
    offset: u32,
    block_size: u32,
    cols: u32,
    seed: vec2<u32>,
    step: vec2<u32>,
    n_stages: u32,
    // STE mode (ste.wgsl): 0 identity, 1 masked, 2 clamped.
    mode: u32,
    words_per_stage: u32,
    n_blocks: u32,
    stages: array<Stage, 4>,
}

fn stage_lanes(stage: u32, group: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(group, stage, params.step.x, params.step.y), params.seed);
}

// Selection of the blocks of 4 consecutive elements starting at global index `first`.
// They span at most two Philox groups (4 blocks each); the second is drawn only if needed.
fn select4(stage: u32, first: u32) -> vec4<bool> {
    let bs = params.block_size;
    let blocks = vec4<u32>(first, first + 1u, first + 2u, first + 3u) / bs;
    let g0 = blocks.x >> 2u;
    let r0 = stage_lanes(stage, g0);
    var r1 = r0;
    if (blocks.w >> 2u) != g0 {
        r1 = stage_lanes(stage, blocks.w >> 2u);
    }
    let thr = params.stages[stage].threshold;
    var sel: vec4<bool>;
    for (var k = 0u; k < 4u; k++) {
        let b = blocks[k];
        let r = select(r0[b & 3u], r1[b & 3u], (b >> 2u) != g0);
        sel[k] = (r >> 8u) < thr;
    }
    return sel;
}

fn select1(stage: u32, index: u32) -> bool {
    let b = index / params.block_size;
    return (stage_lanes(stage, b >> 2u)[b & 3u] >> 8u) < params.stages[stage].threshold;
}

fn qp_index(stage: u32, index: u32) -> u32 {
    let st = params.stages[stage];
    return st.qp_base + select(0u, index / params.cols, st.per_channel != 0u);
}

fn fake_quant(w: f32, q: vec4<f32>, qmax: f32) -> f32 {
    return (clamp(round(w * q.y + q.z), 0.0, qmax) - q.z) * q.x;
}

// Forward noise of one element at global index `index`.
fn noise_one(w: f32, stage: u32, index: u32, selected: bool) -> f32 {
    let st = params.stages[stage];
    if st.kind == KIND_PROXY {
        return select(w * st.keep_scale, 0.0, selected);
    }
    if selected {
        return fake_quant(w, qp[qp_index(stage, index)], st.qmax);
    }
    return w;
}
