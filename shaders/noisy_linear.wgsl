// Hooks of the fused noisy Linear (`noisy_linear` family = philox.wgsl + noise_chain.wgsl +
// this file + matmul.wgsl): the noise ψ of the chain applied to every weight element as the
// B tile is staged (forward Y = X·ψ(W)ᵀ and backward dX = dY·ψ(W)), and the straight-through
// factor applied to every output of dW = dYᵀ·X. ψ(W) is never written to memory.
//
// The selection of block b of stage s is bit b of the bit-packed mask (stage-major, words_per_
// stage words per stage) that the standalone kernel's `noise_mask` entry (shaders/noise.wgsl,
// one Philox4x32-10 call per 4 blocks) writes for the same (seed, step) just before: the mask is
// the standalone kernel's, bit for bit. The noise of an element is the arithmetic of `noise_one`
// in noise_chain.wgsl (the standalone kernel's per-element noise) on 4 elements at a time; the
// STE factor `ste_factor` below mirrors `ste_one` of shaders/ste.wgsl.

// noise_chain.wgsl's group_index (unused here) reads the element-wise kernels' workgroup size.
override WG: u32 = 64u;
// 1: B is the weight (flat index = global weight index): apply ψ while staging.
override NOISE_B: u32 = 0u;
// 1: C is dW (flat index = global weight index): multiply by the STE factor (MODE).
override STE_C: u32 = 0u;
// STE mode of the dW epilogue: 0 identity, 1 masked, 2 clamped.
override MODE: u32 = 0u;

@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<storage, read> qp: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> mask_bits: array<u32>;
// The clean weight (clamped STE only).
@group(0) @binding(8) var<storage, read> ste_weight: array<Elem>;

// Block size, stage count and stage kinds come from the BS, STAGES and LAYOUT specialisation
// constants (noise_chain.wgsl): lavapipe runs a branch on a uniform value like a divergent one.
fn block_selected(stage: u32, e: u32) -> bool {
    let block = e / block_size();
    let word = mask_bits[stage * params.words_per_stage + block / 32u];
    return ((word >> (block % 32u)) & 1u) != 0u;
}

// ψ of 4 consecutive elements of one weight row (flat indices e): at most two mask words
// and one quantization entry per stage for the 4, the same arithmetic as noise_one.
fn b_hook4(w: vec4<f32>, e: vec4<u32>) -> vec4<f32> {
    if NOISE_B == 0u {
        return w;
    }
    let block = e / vec4<u32>(block_size());
    let word = block / vec4<u32>(32u);
    // 1 where the element's block lies in the second word (w1).
    let second = vec4<u32>(word != vec4<u32>(word.x));
    let shift = block % vec4<u32>(32u);
    var v = w;
    for (var s = 0u; s < stage_count(); s++) {
        let base = s * params.words_per_stage;
        let w0 = (vec4<u32>(mask_bits[base + word.x]) >> shift) & vec4<u32>(1u);
        let w1 = (vec4<u32>(mask_bits[base + word.w]) >> shift) & vec4<u32>(1u);
        let selected = (w0 * (vec4<u32>(1u) - second) + w1 * second) != vec4<u32>(0u);
        let st = params.stages[s];
        if stage_kind(s) == KIND_PROXY {
            v = v * select(vec4<f32>(st.keep_scale), vec4<f32>(0.0), selected);
        } else {
            let q = qp[qp_index(s, e.x)];
            let quantized = (clamp(round(v * q.y + q.z), vec4<f32>(0.0), vec4<f32>(st.qmax)) - q.z) * q.x;
            v = select(v, quantized, selected);
        }
    }
    return v;
}

// The STE factor of one element for stage `stage` (as ste_one in shaders/ste.wgsl).
fn ste_factor(w: f32, stage: u32, index: u32, selected: bool) -> f32 {
    let st = params.stages[stage];
    if MODE == 1u {
        return select(st.ste_scale, 0.0, selected);
    }
    if MODE == 2u && stage_kind(stage) == KIND_INTN {
        let q = qp[qp_index(stage, index)];
        let inside = w >= -q.z * q.x && w <= (st.qmax - q.z) * q.x;
        return select(0.0, 1.0, inside);
    }
    return 1.0;
}

fn c_hook(c: f32, e: u32) -> f32 {
    if STE_C == 0u || MODE == 0u {
        return c;
    }
    var w = 0.0;
    if MODE == 2u {
        w = f32(ste_weight[e]);
    }
    var g = c;
    for (var s = 0u; s < stage_count(); s++) {
        g *= ste_factor(w, s, e, block_selected(s, e));
    }
    return g;
}
