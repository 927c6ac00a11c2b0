// Hooks of the fused noisy Linear (`noisy_linear` family = philox.wgsl + noise_chain.wgsl +
// this file + matmul.wgsl): the noise ψ of the chain applied to every weight element as the
// B tile is staged (forward Y = X·ψ(W)ᵀ and backward dX = dY·ψ(W)), and the straight-through
// factor applied to every output of dW = dYᵀ·X. ψ(W) is never written to memory.
//
// The selection of block b of stage s comes from one of two sources (MASK_SOURCE):
// 0: bit b of the bit-packed mask (stage-major, words_per_stage words per stage) that the
//    standalone kernel's `noise_mask` entry (shaders/noise.wgsl) writes for the same
//    (seed, step) just before, in the same submission;
// 1: regenerated in the loader: lane b % 4 of the Philox4x32-10 call of group b / 4 and stage s
//    (`stage_lanes`, the very draw noise_mask makes), compared with the stage's threshold.
// Either way the mask is the standalone kernel's, bit for bit. The dW epilogue always reads the
// precomputed mask (one Philox call per output element would cost more than the mask pass).
//
// The noise of an element is the arithmetic of `noise_one` in noise_chain.wgsl (the standalone
// kernel's per-element noise) on 4 elements at a time. With PQ0 = 1, stage 0 is ϕ_PQ: a
// selected block becomes its nearest centroid, whose index the assignment kernel
// (shaders/assign.wgsl) computed for the clean weight in the same submission.
// The STE factor `ste_factor` below mirrors `ste_one` of shaders/ste.wgsl.

// noise_chain.wgsl's group_index (unused here) reads the element-wise kernels' workgroup size.
override WG: u32 = 64u;
// 1: B is the weight (flat index = global weight index): apply ψ while staging.
override NOISE_B: u32 = 0u;
// 1: C is dW (flat index = global weight index): multiply by the STE factor (MODE).
override STE_C: u32 = 0u;
// STE mode of the dW epilogue: 0 identity, 1 masked, 2 clamped.
override MODE: u32 = 0u;
// Selections of the loader: 0 from mask_bits, 1 regenerated with Philox.
override MASK_SOURCE: u32 = 0u;
// 1: stage 0 is ϕ_PQ (centroids from pq_data).
override PQ0: u32 = 0u;

@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<storage, read> qp: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> mask_bits: array<u32>;
// With MASK_UB = 1, a uniform copy of mask_bits (whole: it fits the table): on CPU adapters a
// load at a per-lane address is a gather from a uniform buffer but a loop over the lanes from
// storage. A stand-in otherwise. UNIFORM_TABLE_VEC4S comes from the host's prelude.
@group(0) @binding(10) var<uniform> mask_ub: array<vec4<u32>, UNIFORM_TABLE_VEC4S>;
override MASK_UB: u32 = 0u;

// Word i of the bit-packed mask.
fn mask_word(i: u32) -> u32 {
    if MASK_UB == 1u {
        return mask_ub[i / 4u][i % 4u];
    }
    return mask_bits[i];
}
// The clean weight (clamped STE only).
@group(0) @binding(8) var<storage, read> ste_weight: array<Elem>;
// ϕ_PQ of stage 0: the nearest centroid of every block of the weight (u32), then the
// K × block_size centroids as f32 bits. One binding: with matmul.wgsl's four this module stays
// within WebGPU's default of 8 storage buffers per stage (an adopted device may have no more).
@group(0) @binding(9) var<storage, read> pq_data: array<u32>;

// Block size, stage count and stage kinds come from the BS, STAGES and LAYOUT specialisation
// constants (noise_chain.wgsl): lavapipe runs a branch on a uniform value like a divergent one.
fn block_selected(stage: u32, e: u32) -> bool {
    let block = e / block_size();
    let word = mask_word(stage * params.words_per_stage + block / 32u);
    return ((word >> (block % 32u)) & 1u) != 0u;
}

// Selections by stage `s` of the blocks `block` of 4 consecutive elements of one weight row
// (at most 4 consecutive blocks: two mask words, two Philox groups).
fn selected4_of(s: u32, block: vec4<u32>) -> vec4<bool> {
    if MASK_SOURCE == 1u {
        let g = block / vec4<u32>(4u);
        let t = vec4<u32>(params.stages[s].threshold);
        let r0 = (stage_lanes(s, g.x) >> vec4<u32>(8u)) < t;
        var r1 = r0;
        // With BS % 4 = 0 the 4 elements (4-aligned) share one block: one Philox call.
        if BS % 4u != 0u || BS == 0u {
            r1 = (stage_lanes(s, g.w) >> vec4<u32>(8u)) < t;
        }
        let m0 = select(0u, 1u, r0.x) | select(0u, 2u, r0.y) | select(0u, 4u, r0.z) | select(0u, 8u, r0.w);
        let m1 = select(0u, 1u, r1.x) | select(0u, 2u, r1.y) | select(0u, 4u, r1.z) | select(0u, 8u, r1.w);
        // Lane block % 4 of the element's group (no dynamic component indexing; no select on
        // integer vectors, which GLSL 4.5 lacks).
        let in1 = vec4<u32>(g != vec4<u32>(g.x));
        let bits = vec4<u32>(m0) * (vec4<u32>(1u) - in1) + vec4<u32>(m1) * in1;
        return ((bits >> (block % vec4<u32>(4u))) & vec4<u32>(1u)) != vec4<u32>(0u);
    }
    let word = block / vec4<u32>(32u);
    // 1 where the element's block lies in the second word (w1).
    let second = vec4<u32>(word != vec4<u32>(word.x));
    let shift = block % vec4<u32>(32u);
    let base = s * params.words_per_stage;
    let w0 = (vec4<u32>(mask_word(base + word.x)) >> shift) & vec4<u32>(1u);
    if BS % 4u == 0u && BS != 0u {
        // One block, one word.
        return w0 != vec4<u32>(0u);
    }
    let w1 = (vec4<u32>(mask_word(base + word.w)) >> shift) & vec4<u32>(1u);
    return (w0 * (vec4<u32>(1u) - second) + w1 * second) != vec4<u32>(0u);
}

// The centroids of the blocks of 4 elements (flat indices e, blocks `block`).
fn centroid4(e: vec4<u32>, block: vec4<u32>) -> vec4<f32> {
    let bs = vec4<u32>(block_size());
    let c = vec4<u32>(pq_data[block.x], pq_data[block.y], pq_data[block.z], pq_data[block.w]);
    // The centroids follow the indices of the whole weight (mm.n · mm.k elements in the forward
    // product and in dX alike).
    let at = vec4<u32>((mm.n * mm.k) / block_size()) + c * bs + (e - block * bs);
    return bitcast<vec4<f32>>(vec4<u32>(pq_data[at.x], pq_data[at.y], pq_data[at.z], pq_data[at.w]));
}

// ψ of 4 consecutive elements of one weight row (flat indices e): at most two mask words (or
// Philox groups) and one quantization entry per stage for the 4, the arithmetic of noise_one.
fn b_hook4(w: vec4<f32>, e: vec4<u32>) -> vec4<f32> {
    if NOISE_B == 0u {
        return w;
    }
    let block = e / vec4<u32>(block_size());
    var v = w;
    for (var s = 0u; s < stage_count(); s++) {
        let selected = selected4_of(s, block);
        let st = params.stages[s];
        if PQ0 == 1u && s == 0u {
            if any(selected) {
                v = select(v, centroid4(e, block), selected);
            }
        } else if stage_kind(s) == KIND_PROXY {
            v = v * select(vec4<f32>(st.keep_scale), vec4<f32>(0.0), selected);
        } else {
            // Per-tensor parameters (a constant): one uniform load, not a gather.
            var q = qp[st.qp_base];
            if stage_per_channel(s) {
                q = qp[qp_index(s, e.x)];
            }
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
