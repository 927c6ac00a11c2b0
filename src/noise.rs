//! Quant-Noise forward: `W_noise = ψ(W | J)` — a random subset of blocks replaced by their
//! quantized value, in one fused pass over the weights. Shader: `shaders/noise.wgsl`;
//! reference: [`crate::cpu::noise`].

use crate::error::{Error, Result, invalid};
use crate::observer::{Observer, QParams};
use crate::shape::WeightShape;

/// Most noise stages one chain may hold.
pub const MAX_STAGES: usize = 4;

/// How the quantization parameters of an [`Noise::IntN`] stage are obtained.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantScheme {
    /// Given by the caller.
    Given(QParams),
    /// Computed on the device from the weight by an observer, at each call.
    Observe(Observer),
}

/// One noise function ϕ, applied to each block independently selected with probability `p`.
#[derive(Clone, Debug, PartialEq)]
pub enum Noise {
    /// ϕ_proxy: a selected block becomes 0. With `rescale` (fairseq's default), unselected
    /// weights are multiplied by `1/(1−p)` so the expected weight is unchanged; `p = 1` with
    /// `rescale` is an error.
    Proxy {
        /// Selection probability in `[0, 1]`.
        p: f64,
        /// Scale unselected weights by `1/(1−p)`.
        rescale: bool,
    },
    /// ϕ_intN: a selected weight becomes `(clamp(round(w/s + z), 0, 2^bits − 1) − z)·s`, with
    /// round half to even, scale `s` and zero-point `z` per tensor or per row.
    IntN {
        /// Selection probability in `[0, 1]`.
        p: f64,
        /// Bits, 1..=8.
        bits: u8,
        /// Where `s` and `z` come from.
        scheme: QuantScheme,
    },
    /// ϕ_PQ: a selected block becomes its nearest centroid (squared L2, ties to the lowest
    /// index) in `codebook` (K × block_size f32, on the same context).
    Pq {
        /// Selection probability in `[0, 1]`.
        p: f64,
        /// The centroids.
        codebook: Tensor,
    },
    /// The paper's alternative to ϕ_PQ: a selected block becomes the mean block of the weight
    /// (computed on the device at each call, like an observer).
    PqMean {
        /// Selection probability in `[0, 1]`.
        p: f64,
    },
}

impl Noise {
    /// Selection probability of this stage.
    pub fn p(&self) -> f64 {
        match self {
            Noise::Proxy { p, .. }
            | Noise::IntN { p, .. }
            | Noise::Pq { p, .. }
            | Noise::PqMean { p } => *p,
        }
    }

    /// Whether the stage replaces whole blocks by centroids (run by its own kernel).
    pub(crate) fn is_pq(&self) -> bool {
        matches!(self, Noise::Pq { .. } | Noise::PqMean { .. })
    }
}

/// A chain of noises applied in order, each with its own independent mask (paper eq. 8).
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSpec {
    /// Elements per block (consecutive along a row).
    pub block_size: u32,
    /// The stages, applied first to last; at most [`MAX_STAGES`].
    pub stages: Vec<Noise>,
}

impl NoiseSpec {
    /// A single proxy (zeroing) noise with fairseq's rescaling.
    pub fn proxy(block_size: u32, p: f64) -> Self {
        Self {
            block_size,
            stages: vec![Noise::Proxy { p, rescale: true }],
        }
    }

    /// A single intN noise with the given observer.
    pub fn int_n(block_size: u32, p: f64, bits: u8, observer: Observer) -> Self {
        Self {
            block_size,
            stages: vec![Noise::IntN {
                p,
                bits,
                scheme: QuantScheme::Observe(observer),
            }],
        }
    }

    /// Appends a stage.
    pub fn then(mut self, noise: Noise) -> Self {
        self.stages.push(noise);
        self
    }

    /// The shaders' `LAYOUT` specialisation constant of a resolved spec: bit `s` when stage
    /// `s` is intN, bit `4 + s` when its parameters are per channel, the STE mode from bit 8.
    pub(crate) fn layout_bits(&self, ste_mode: u32) -> u32 {
        let stage_bits: u32 = self
            .stages
            .iter()
            .enumerate()
            .map(|(s, n)| match n {
                Noise::IntN { scheme, .. } => {
                    let per_channel = matches!(scheme, QuantScheme::Given(q) if q.is_per_channel());
                    (1 << s) | ((per_channel as u32) << (4 + s))
                }
                Noise::Proxy { .. } | Noise::Pq { .. } | Noise::PqMean { .. } => 0,
            })
            .sum();
        stage_bits | (ste_mode << 8)
    }

    /// Whether every intN stage has given quantization parameters and every `PqMean` its
    /// mean (as a one-centroid `Pq`).
    pub fn is_resolved(&self) -> bool {
        self.stages.iter().all(|s| {
            !matches!(
                s,
                Noise::IntN {
                    scheme: QuantScheme::Observe(_),
                    ..
                } | Noise::PqMean { .. }
            )
        })
    }

    /// Checks the spec against a shape; returns the number of blocks.
    pub fn validate(&self, shape: &WeightShape) -> Result<u64> {
        let blocks = shape.blocks(self.block_size)?;
        if self.stages.len() > MAX_STAGES {
            return Err(invalid(
                "stages",
                self.stages.len(),
                "at most 4 noise stages",
            ));
        }
        for stage in &self.stages {
            let p = stage.p();
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid("p", p, "must be in [0, 1]"));
            }
            match stage {
                Noise::Proxy { rescale: true, .. } if p == 1.0 => {
                    return Err(invalid("p", p, "p = 1 with rescale would divide by zero"));
                }
                Noise::IntN { bits, scheme, .. } => {
                    check_bits(*bits)?;
                    if let QuantScheme::Given(q) = scheme {
                        q.validate(*bits, shape.rows())?;
                    }
                }
                Noise::Pq { codebook, .. } => {
                    crate::runtime::context::check_dtype("codebook", DType::F32, codebook.dtype)?;
                    let bs = self.block_size as u64;
                    if codebook.len == 0 || !codebook.len.is_multiple_of(bs) {
                        return Err(invalid(
                            "codebook.len()",
                            codebook.len,
                            "must be a positive multiple of block_size",
                        ));
                    }
                }
                Noise::PqMean { .. } | Noise::Proxy { .. } => {}
            }
        }
        Ok(blocks)
    }

    /// Number of u32 words of the bit-packed mask: one bit per block per stage, stage-major,
    /// each stage padded to whole words.
    pub fn mask_words(&self, shape: &WeightShape) -> Result<u64> {
        let blocks = self.validate(shape)?;
        Ok(self.stages.len() as u64 * blocks.div_ceil(32))
    }
}

pub(crate) fn check_bits(bits: u8) -> Result<()> {
    if (1..=8).contains(&bits) {
        Ok(())
    } else {
        Err(invalid("bits", bits, "must be in 1..=8"))
    }
}

/// The straight-through estimator used by the backward of [`crate::Context::noise_forward`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SteMode {
    /// The paper's STE: `dL/dW = dL/dW_noise`.
    Identity,
    /// Dropout-style: per stage, 0 on selected blocks and `×1/(1−p)` elsewhere.
    Masked,
    /// For intN stages: 1 where the weight lies in the representable range
    /// `[−s·z, s·(2^bits−1−z)]`, 0 outside (proxy stages pass the gradient unchanged).
    Clamped,
}

pub(crate) fn check_len(what: &'static str, expected: u64, got: u64) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected,
            got,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Host side: uniform layout shared with shaders/noise_chain.wgsl, and the op.

use crate::philox::{NoiseSeed, selection_threshold};
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::{Elementwise, WG, window_binding};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::windows;
use crate::tensor::{DType, Storage, Tensor, bytes_to_f64, f64_to_bytes};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StageParams {
    kind: u32,
    threshold: u32,
    keep_scale: f32,
    qmax: f32,
    qp_base: u32,
    per_channel: u32,
    ste_scale: f32,
    _pad: u32,
}

/// Mirror of `Params` in `shaders/noise_chain.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ChainParams {
    n: u32,
    offset: u32,
    block_size: u32,
    cols: u32,
    seed: [u32; 2],
    step: [u32; 2],
    n_stages: u32,
    mode: u32,
    words_per_stage: u32,
    n_blocks: u32,
    gpt: u32,
    stage_base: u32,
    pq_k: u32,
    _pad: u32,
    stages: [StageParams; MAX_STAGES],
}

impl ChainParams {
    /// The uniform of one window of `len` elements (or mask words) from `start`, STE `mode`.
    /// The uniform of stages `first .. first + count` of the chain run on their own (their
    /// Philox counters keep their chain positions).
    pub(crate) fn segment(&self, first: usize, count: usize) -> Self {
        let mut stages = [StageParams::default(); MAX_STAGES];
        stages[..count].copy_from_slice(&self.stages[first..first + count]);
        Self {
            stages,
            n_stages: count as u32,
            stage_base: first as u32,
            ..*self
        }
    }

    pub(crate) fn window(&self, start: u64, len: u64, mode: u32) -> Self {
        Self {
            n: len as u32,
            offset: start as u32,
            mode,
            ..*self
        }
    }
}

/// The uniform of a resolved chain (window fields left 0) and its quantization table
/// `(scale, 1/scale, zero-point, 0)` per entry.
pub(crate) fn chain_params(
    shape: &WeightShape,
    spec: &NoiseSpec,
    seed: NoiseSeed,
) -> (ChainParams, Vec<[f32; 4]>) {
    let blocks = shape.numel() / spec.block_size as u64;
    let mut table = Vec::new();
    let mut params = ChainParams {
        block_size: spec.block_size,
        cols: shape.cols() as u32,
        seed: [seed.seed as u32, (seed.seed >> 32) as u32],
        step: [seed.step as u32, (seed.step >> 32) as u32],
        n_stages: spec.stages.len() as u32,
        words_per_stage: blocks.div_ceil(32) as u32,
        n_blocks: blocks as u32,
        gpt: crate::runtime::elementwise::groups_per_invocation(spec.block_size),
        ..Default::default()
    };
    for (st, stage) in params.stages.iter_mut().zip(&spec.stages) {
        let p = stage.p();
        st.threshold = selection_threshold(p);
        st.ste_scale = if p < 1.0 {
            (1.0 / (1.0 - p)) as f32
        } else {
            0.0
        };
        st.keep_scale = 1.0;
        st.qp_base = table.len() as u32;
        match stage {
            Noise::Proxy { rescale, .. } => {
                st.kind = 0;
                if *rescale {
                    st.keep_scale = (1.0 / (1.0 - p)) as f32;
                }
            }
            Noise::IntN { bits, scheme, .. } => {
                let q = crate::cpu::noise::given(scheme);
                st.kind = 1;
                st.qmax = ((1u32 << bits) - 1) as f32;
                st.per_channel = q.is_per_channel() as u32;
                table.extend(
                    q.scale
                        .iter()
                        .zip(&q.zero_point)
                        .map(|(&s, &z)| [s, 1.0 / s, z as f32, 0.0]),
                );
            }
            // PQ stages run in their own kernel; the element-wise kernels only see their masks.
            Noise::Pq { .. } | Noise::PqMean { .. } => st.kind = 2,
        }
    }
    if table.is_empty() {
        table.push([1.0, 1.0, 0.0, 0.0]);
    }
    (params, table)
}

pub(crate) fn precision_of(t: &Tensor, what: &'static str) -> Result<Precision> {
    Precision::of(t.dtype).ok_or(Error::DTypeMismatch {
        what,
        expected: DType::F32,
        got: t.dtype,
    })
}

/// Host values of a CPU tensor.
pub(crate) fn host_values(t: &Tensor, what: &'static str) -> Result<Vec<f64>> {
    match &t.storage {
        Storage::Cpu(v) => Ok(bytes_to_f64(&v.lock().unwrap(), t.dtype)),
        Storage::Gpu { .. } => Err(crate::runtime::context::wrong_context(what)),
    }
}

/// Stores values into a CPU tensor.
pub(crate) fn store_host(t: &Tensor, values: &[f64], what: &'static str) -> Result<()> {
    match &t.storage {
        Storage::Cpu(v) => {
            v.lock()
                .unwrap()
                .copy_from_slice(&f64_to_bytes(values, t.dtype));
            Ok(())
        }
        Storage::Gpu { .. } => Err(crate::runtime::context::wrong_context(what)),
    }
}

impl Context {
    /// Replaces every [`QuantScheme::Observe`] stage by the parameters its observer computes
    /// on `weight`, and every [`Noise::PqMean`] by a one-centroid [`Noise::Pq`] holding the
    /// weight's mean block (computed on the device).
    pub fn resolve(
        &self,
        weight: &Tensor,
        shape: &WeightShape,
        spec: &NoiseSpec,
    ) -> Result<NoiseSpec> {
        let mut out = spec.clone();
        for stage in &mut out.stages {
            match stage {
                Noise::IntN {
                    bits,
                    scheme: scheme @ QuantScheme::Observe(_),
                    ..
                } => {
                    let QuantScheme::Observe(observer) = *scheme else {
                        unreachable!()
                    };
                    *scheme = QuantScheme::Given(self.observe(weight, shape, observer, *bits)?);
                }
                Noise::PqMean { p } => {
                    let codebook = crate::pq::block_mean(self, weight, shape, spec.block_size)?;
                    *stage = Noise::Pq { p: *p, codebook };
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Quant-Noise forward: writes `ψ(weight | J)` to `out` (never modifying `weight`) and, if
    /// `mask` is given, the bit-packed selection mask (see [`NoiseSpec::mask_words`]).
    /// Observers run first; the returned spec carries the parameters they computed, to pass to
    /// [`Context::ste_backward`].
    ///
    /// Without PQ stages this is one pass over the weight. PQ stages run as their own in-place
    /// pass over `out` (a selected block needs all its values and a codebook search), the other
    /// stages around them in fused segments.
    pub fn noise_forward(
        &self,
        weight: &Tensor,
        out: &Tensor,
        shape: WeightShape,
        spec: &NoiseSpec,
        seed: NoiseSeed,
        mask: Option<&Tensor>,
    ) -> Result<NoiseSpec> {
        spec.validate(&shape)?;
        self.check_owned(weight, "weight")?;
        self.check_owned(out, "out")?;
        if let Some(m) = mask {
            self.check_owned(m, "mask")?;
        }
        for stage in &spec.stages {
            if let Noise::Pq { codebook, .. } = stage {
                self.check_owned(codebook, "codebook")?;
                if codebook.conflicts(out) {
                    return Err(Error::Aliasing {
                        what: "noise_forward codebook/out",
                    });
                }
            }
        }
        check_len("weight", shape.numel(), weight.len)?;
        check_len("out", shape.numel(), out.len)?;
        let precision = precision_of(weight, "weight")?;
        check_dtype("out", weight.dtype, out.dtype)?;
        if weight.conflicts(out) {
            return Err(Error::Aliasing {
                what: "noise_forward weight/out",
            });
        }
        if let Some(m) = mask {
            check_dtype("mask", DType::U32, m.dtype)?;
            check_len("mask", spec.mask_words(&shape)?, m.len)?;
        }
        if let Backend::Gpu(g) = &self.backend {
            g.require(precision)?;
        }
        let resolved = self.resolve(weight, &shape, spec)?;
        match &self.backend {
            Backend::Cpu => {
                let w = host_values(weight, "weight")?;
                let codebooks = resolved
                    .stages
                    .iter()
                    .map(|s| match s {
                        Noise::Pq { codebook, .. } => host_values(codebook, "codebook"),
                        _ => Ok(Vec::new()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let noisy =
                    crate::cpu::noise::noise_forward_with(&w, &shape, &resolved, seed, &codebooks);
                store_host(out, &noisy, "out")?;
                if let Some(m) = mask {
                    let words = crate::cpu::noise::noise_mask(&shape, &resolved, seed);
                    store_host(
                        m,
                        &words.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                        "mask",
                    )?;
                }
            }
            Backend::Gpu(g) => forward_gpu(
                self, g, weight, out, &shape, &resolved, seed, mask, precision,
            )?,
        }
        Ok(resolved)
    }
}

/// Runs of a chain: stages fused in one element-wise pass, or one PQ stage.
fn segments(spec: &NoiseSpec) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (s, stage) in spec.stages.iter().enumerate() {
        match out.last_mut() {
            Some(last) if !stage.is_pq() && !spec.stages[last.start].is_pq() => last.end = s + 1,
            _ => out.push(s..s + 1),
        }
    }
    // The first pass must move the weight to the output: a chain starting with PQ (or empty)
    // starts with an empty fused segment (a copy).
    if out.first().is_none_or(|r| spec.stages[r.start].is_pq()) {
        out.insert(0, 0..0);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn forward_gpu(
    ctx: &Context,
    g: &crate::runtime::gpu::Gpu,
    weight: &Tensor,
    out: &Tensor,
    shape: &WeightShape,
    resolved: &NoiseSpec,
    seed: NoiseSeed,
    mask: Option<&Tensor>,
    precision: Precision,
) -> Result<()> {
    let (base, table) = chain_params(shape, resolved, seed);
    let segs = segments(resolved);
    // A fused segment after a PQ pass reads `out`: it writes a scratch tensor, and the passes
    // alternate between the two.
    let scratch = if segs
        .iter()
        .skip(1)
        .any(|r| !resolved.stages[r.start].is_pq())
    {
        Some(ctx.empty(out.len, out.dtype)?)
    } else {
        None
    };
    let mut batch = Batch::new(g, "noise_forward")?;
    let qp = batch.storage_init(bytemuck::cast_slice(&table));
    let (mut src, mut dst) = (weight, out);
    for (i, seg) in segs.iter().enumerate() {
        let params = base.segment(seg.start, seg.len());
        if seg.len() == 1 && resolved.stages[seg.start].is_pq() {
            let Noise::Pq { codebook, .. } = &resolved.stages[seg.start] else {
                unreachable!()
            };
            record_pq_noise(
                g,
                &mut batch,
                precision,
                src,
                codebook,
                resolved.block_size,
                &params,
            )?;
            continue;
        }
        if i > 0 {
            let next = if std::ptr::eq(src, out) {
                scratch.as_ref().unwrap()
            } else {
                out
            };
            dst = next;
        }
        let sub = NoiseSpec {
            block_size: resolved.block_size,
            stages: resolved.stages[seg.clone()].to_vec(),
        };
        let kernel = Elementwise {
            family: Family::Noise,
            precision,
            vec4_entry: "noise_vec4",
            tail_entry: "noise_tail",
            block_size: resolved.block_size,
            stages: seg.len() as u32,
            layout: sub.layout_bits(0),
        };
        kernel.record(
            g,
            &mut batch,
            &[(src, "weight"), (dst, "out")],
            &[qp.as_entire_binding()],
            |w| params.window(w.start, w.len, 0),
        )?;
        src = dst;
    }
    if !std::ptr::eq(src, out) {
        let (from, from_off) = crate::runtime::elementwise::device_buffer(src, "scratch")?;
        let (to, to_off) = crate::runtime::elementwise::device_buffer(out, "out")?;
        batch.copy(
            from,
            from_off,
            to,
            to_off,
            (out.size_bytes()).next_multiple_of(4),
        );
    }
    if let Some(m) = mask {
        record_mask(g, &mut batch, precision, &base, m)?;
    }
    batch.finish().map(|_| ())
}

/// The pipeline of a scalar entry point of the noise family (workgroups of [`WG`]).
fn noise_pipeline(
    g: &crate::runtime::gpu::Gpu,
    precision: Precision,
    entry: &'static str,
) -> Result<wgpu::ComputePipeline> {
    g.pipeline(crate::runtime::gpu::PipelineKey {
        family: Family::Noise,
        precision,
        entry,
        overrides: vec![("WG", WG)],
    })
}

/// Records the `noise_mask` pass of the chain `base` into `mask` (u32, [`NoiseSpec::mask_words`]
/// words), window by window.
pub(crate) fn record_mask(
    g: &crate::runtime::gpu::Gpu,
    batch: &mut Batch,
    precision: Precision,
    base: &ChainParams,
    mask: &Tensor,
) -> Result<()> {
    let pipeline = noise_pipeline(g, precision, "noise_mask")?;
    for w in windows(mask.len, 4, 1, g.max_window)? {
        let uniform = batch.uniform(&base.window(w.start, w.len, 0));
        let bindings = [
            (0, uniform.as_entire_binding()),
            (2, window_binding(mask, &w, w.len * 4, "mask")?),
        ];
        batch.dispatch_at(&pipeline, &bindings, w.len.div_ceil(WG as u64))?;
    }
    Ok(())
}

/// Records ϕ_PQ of the single stage of `params` in place on `values`, window by window (whole
/// blocks per window).
fn record_pq_noise(
    g: &crate::runtime::gpu::Gpu,
    batch: &mut Batch,
    precision: Precision,
    values: &Tensor,
    codebook: &Tensor,
    block_size: u32,
    params: &ChainParams,
) -> Result<()> {
    let pipeline = noise_pipeline(g, precision, "pq_noise")?;
    let bs = block_size as u64;
    if codebook.len * 4 > g.max_binding {
        return Err(invalid(
            "codebook bytes",
            codebook.len * 4,
            "the codebook must fit in one storage binding",
        ));
    }
    let cb = window_binding(
        codebook,
        &crate::runtime::window::Window {
            start: 0,
            len: codebook.len,
        },
        codebook.len * 4,
        "codebook",
    )?;
    for w in windows(values.len, values.dtype.size(), bs, g.max_window)? {
        let u = batch.uniform(&ChainParams {
            pq_k: (codebook.len / bs) as u32,
            ..params.window(w.start, w.len, 0)
        });
        let bytes = (w.len * values.dtype.size()).next_multiple_of(4);
        let bindings = [
            (0, u.as_entire_binding()),
            (1, cb.clone()),
            (2, window_binding(values, &w, bytes, "out")?),
        ];
        batch.dispatch_at(&pipeline, &bindings, (w.len / bs).div_ceil(WG as u64))?;
    }
    Ok(())
}
