// The noise chain shared by shaders/noise.wgsl and shaders/ste.wgsl: parameters, block
// selection and the noise functions. The including file declares `params: Params` (uniform)
// and `qp: array<vec4<f32>>` (scale, 1/scale, zero-point, unused).

// Specialisation constants of the vec4 entry points (0, resp. 0xFFFFFFFF: read from params):
// with them the per-group loops have constant trip counts and unroll, which software
// rasterisers need to come near memory speed. The host sets all three.
override BS: u32 = 0u;
override GPT: u32 = 0u;
override STAGES: u32 = 0xFFFFFFFFu;
// Bit s set: stage s is intN; bit 4 + s: its parameters are per channel; bits 8..: the STE
// mode (0xFFFFFFFF: read all of it from params). Software rasterisers execute a branch on a
// uniform-buffer value like a divergent one, so the kernels branch on constants instead.
override LAYOUT: u32 = 0xFFFFFFFFu;

fn stage_kind(stage: u32) -> u32 {
    if LAYOUT == 0xFFFFFFFFu {
        return params.stages[stage].kind;
    }
    return (LAYOUT >> stage) & 1u;
}

fn stage_per_channel(stage: u32) -> bool {
    if LAYOUT == 0xFFFFFFFFu {
        return params.stages[stage].per_channel != 0u;
    }
    return ((LAYOUT >> (4u + stage)) & 1u) != 0u;
}

fn ste_mode() -> u32 {
    if LAYOUT == 0xFFFFFFFFu {
        return params.mode;
    }
    return LAYOUT >> 8u;
}

fn block_size() -> u32 {
    return select(params.block_size, BS, BS != 0u);
}

// 1 (the coalesced access pattern): the vec4s of a workgroup's groups are interleaved, the j-th
// vec4 of invocation `lid` being vec4 j·WG + lid of the workgroup's span, so that consecutive
// invocations read consecutive vec4s; each vec4 then draws its group's Philox numbers itself.
// 0: each invocation takes its groups' vec4s in a row, one Philox call per group and stage.
override COALESCED: u32 = 0u;

// Window vec4 of the j-th vec4 of invocation `lid` under the coalesced pattern.
fn coalesced_vec4(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, j: u32) -> u32 {
    let span = WG * groups_per_invocation() * block_size();
    return (wid.y * nwg.x + wid.x) * span + j * WG + lid;
}

fn groups_per_invocation() -> u32 {
    return select(params.gpt, GPT, GPT != 0u);
}

fn stage_count() -> u32 {
    return select(params.n_stages, STAGES, STAGES != 0xFFFFFFFFu);
}

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
    // Philox groups (4 blocks = block_size vec4s) per invocation of the vec4 entry points.
    gpt: u32,
    // Index of stages[0] in the whole chain (the Philox counter's stage word): the host runs a
    // chain containing PQ stages as segments.
    stage_base: u32,
    // pq_noise: centroids in the codebook.
    pq_k: u32,
    _pad: u32,
    stages: array<Stage, 4>,
}

fn stage_lanes(stage: u32, group: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(group, params.stage_base + stage, params.step.x, params.step.y), params.seed);
}

// Selection bits of the 4 blocks of Philox group `group` (one Philox call per stage):
// bit 4·stage + b is block 4·group + b.
fn group_mask(group: u32) -> u32 {
    var mask = 0u;
    for (var s = 0u; s < stage_count(); s++) {
        let r = stage_lanes(s, group);
        let sel = (r >> vec4<u32>(8u)) < vec4<u32>(params.stages[s].threshold);
        let bits = select(0u, 1u, sel.x) | select(0u, 2u, sel.y) | select(0u, 4u, sel.z) | select(0u, 8u, sel.w);
        mask |= bits << (4u * s);
    }
    return mask;
}

fn is_selected(mask: u32, stage: u32, block_in_group: u32) -> bool {
    return ((mask >> (4u * stage + block_in_group)) & 1u) != 0u;
}

// Selection of the 4 elements of vec4 `k` of a group (whole-vector operations: no dynamic
// component indexing, which software rasterisers turn into memory traffic).
fn selected4(mask: u32, stage: u32, k: u32, bs: u32) -> vec4<bool> {
    if bs % 4u == 0u {
        // The 4 elements share one block.
        return vec4<bool>(is_selected(mask, stage, (4u * k) / bs));
    }
    let block = (vec4<u32>(4u * k) + vec4<u32>(0u, 1u, 2u, 3u)) / vec4<u32>(bs);
    return ((vec4<u32>(mask) >> (vec4<u32>(4u * stage) + block)) & vec4<u32>(1u)) != vec4<u32>(0u);
}

// Quantization parameters of 4 consecutive elements starting at global index `first`:
// (scale, 1/scale, zero-point) as three vec4s.
struct Qp4 {
    scale: vec4<f32>,
    inv: vec4<f32>,
    zero: vec4<f32>,
}

fn qp4(stage: u32, first: u32) -> Qp4 {
    let st = params.stages[stage];
    if !stage_per_channel(stage) {
        let q = qp[st.qp_base];
        return Qp4(vec4<f32>(q.x), vec4<f32>(q.y), vec4<f32>(q.z));
    }
    let rows = (vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u)) / vec4<u32>(params.cols) + vec4<u32>(st.qp_base);
    let a = qp[rows.x];
    let b = qp[rows.y];
    let c = qp[rows.z];
    let d = qp[rows.w];
    return Qp4(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y), vec4<f32>(a.z, b.z, c.z, d.z));
}

// Forward noise of stage `stage` on 4 consecutive elements starting at global index `first`.
fn noise4(w: vec4<f32>, stage: u32, first: u32, selected: vec4<bool>) -> vec4<f32> {
    let st = params.stages[stage];
    if stage_kind(stage) == KIND_PROXY {
        return w * select(vec4<f32>(st.keep_scale), vec4<f32>(0.0), selected);
    }
    if !any(selected) {
        return w;
    }
    let q = qp4(stage, first);
    let quantized = (clamp(round(w * q.inv + q.zero), vec4<f32>(0.0), vec4<f32>(st.qmax)) - q.zero) * q.scale;
    return select(w, quantized, selected);
}

// Windows of the vec4 entry points start on group boundaries: the window's groups are
// [offset / (4·bs), +n / (4·bs)), its tail the last n mod 4·bs elements.
fn window_groups() -> u32 {
    return params.n / (4u * params.block_size);
}

fn group_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, gi: u32) -> u32 {
    return ((wid.y * nwg.x + wid.x) * WG + lid) * groups_per_invocation() + gi;
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
