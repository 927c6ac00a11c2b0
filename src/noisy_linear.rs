//! One noisy Linear layer: `Y = X·ψ(W)ᵀ + b` with the Quant-Noise chain ψ fused into the
//! weight loader of the matmul (`shaders/noisy_linear.wgsl` + `shaders/matmul.wgsl`,
//! [`Family::NoisyLinear`]), and its backward `dX = dY·ψ(W)` (ψ again in the loader) and
//! `dW = STE(dYᵀ·X)` (the straight-through factor of [`SteMode`] in the epilogue). ψ(W) is
//! never written to memory.
//!
//! **Mask.** The loader takes the selection of every block from one of two [`MaskSource`]s
//! ([`Context::with_mask_source`]; a specialisation constant of the pipeline, not a branch): the bit-packed mask that the
//! standalone kernel's `noise_mask` entry point (`shaders/noise.wgsl`) writes for the same
//! `(seed, step)` in the same submission (one bit per block and stage, `1/(32·block_size)` of
//! the weight's size), or the same Philox4x32-10 draws regenerated in the loader from
//! `(seed, step, stage, block)`. Both give the standalone kernel's mask bit for bit; the loader
//! then applies the arithmetic of `noise_one` (`shaders/noise_chain.wgsl`), so the noisy
//! weights equal [`Context::noise_forward`]'s output up to f32 rounding of the quantizer's
//! arithmetic. The dW epilogue always reads the precomputed mask.
//!
//! **ϕ_PQ.** A chain whose first stage is [`Noise::Pq`] (or [`Noise::PqMean`], resolved to a
//! one-centroid `Pq`) on an f32 weight with `block_size ≤ 64` is fused too: the assignment
//! kernel ([`crate::assign`]) computes the nearest centroid of every block of W (one u32 per
//! block) in the same submission, and the loader substitutes `codebook[index]` for the selected
//! blocks before the later stages. The distances are those of the assignment kernel, so at
//! near-ties the chosen centroid may differ from the standalone `pq_noise` kernel's.
//!
//! **Unfused path.** PQ stages after the first, PQ on f16 weights, and the CPU backend take
//! [`Context::noisy_linear_forward_unfused`]: ψ(W) into a temporary tensor with
//! [`Context::noise_forward`], then the dense products ([`crate::matmul`]). dW needs only the
//! masks and is fused for every chain on a device.

use crate::assign::{AssignProblem, Assignment, record_assign};
use crate::error::Result;
use crate::matmul::{Bound, Hooks, LinearShape, Product, record, with_config};
use crate::noise::{Noise, NoiseSpec, SteMode, chain_params, check_len, record_mask};
use crate::philox::NoiseSeed;
use crate::runtime::batch::{Batch, sized};
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::{device_buffer, window_binding};
use crate::runtime::gpu::{Gpu, UNIFORM_TABLE_BYTES};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::Window;
use crate::tensor::{DType, Tensor};

/// Where the fused weight loader takes the noise selections from. Both give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskSource {
    /// The standalone `noise_mask` kernel writes the bit-packed mask in the same submission;
    /// the loader reads one bit per block and stage.
    Precomputed,
    /// The loader draws each selection again with Philox from `(seed, step, stage, block)`:
    /// no mask pass (unless the caller asks for the mask), more arithmetic per loaded weight.
    Regenerated,
}

impl MaskSource {
    /// The source of a new [`Context`] (see [`Context::with_mask_source`]): the faster one on
    /// lavapipe (`noisy_linear_fwd_1024` vs `noisy_linear_fwd_regen_1024`
    /// in the bench report).
    pub const DEFAULT: MaskSource = MaskSource::Precomputed;
}

fn ste_code(mode: SteMode) -> u32 {
    match mode {
        SteMode::Identity => 0,
        SteMode::Masked => 1,
        SteMode::Clamped => 2,
    }
}

/// Whether the fused kernel can run `product` for a resolved chain on a `dtype` weight.
fn fusable(spec: &NoiseSpec, product: Product, dtype: DType) -> bool {
    if product == Product::BackwardWeight {
        return true;
    }
    let pq0 = matches!(spec.stages.first(), Some(Noise::Pq { .. }));
    let later_pq = spec.stages.iter().skip(1).any(Noise::is_pq);
    !later_pq
        && (!pq0 || (dtype == DType::F32 && spec.block_size <= crate::assign::MAX_DIM))
        && !matches!(spec.stages.first(), Some(Noise::PqMean { .. }))
}

/// What the fused kernel does with the noise: ψ on the loaded weight, or the STE factor on
/// the dW outputs.
#[derive(Clone, Copy)]
enum Fused {
    Noise,
    Ste(SteMode),
}

/// One fused product: the product bound to its tensors, the clean weight, the resolved chain
/// and its seed.
struct FusedOp<'a> {
    bound: Bound<'a>,
    weight: &'a Tensor,
    resolved: &'a NoiseSpec,
    seed: NoiseSeed,
}

/// Records the mask pass (if needed), the assignment of a ϕ_PQ first stage (forward and dX)
/// and one fused product into a fresh batch and submits it.
fn run_fused(
    g: &Gpu,
    precision: Precision,
    op: &FusedOp<'_>,
    fused: Fused,
    source: MaskSource,
    mask_out: Option<&Tensor>,
) -> Result<()> {
    let (bound, resolved) = (&op.bound, op.resolved);
    let shape = bound.shape;
    let wshape = shape.weight_shape();
    let words = resolved.mask_words(&wshape)?;
    let (base, table) = chain_params(&wshape, resolved, op.seed);
    let (noise_b, ste_c, mode, source) = match fused {
        Fused::Noise => (1, 0, 0, source),
        Fused::Ste(m) => (0, 1, ste_code(m), MaskSource::Precomputed),
    };
    let mask_pass = words > 0 && (source == MaskSource::Precomputed || mask_out.is_some());
    let codebook = match (fused, resolved.stages.first()) {
        (Fused::Noise, Some(Noise::Pq { codebook, .. })) => Some(codebook),
        _ => None,
    };
    let blocks = shape.w_len() / resolved.block_size as u64;
    with_config(g, Family::NoisyLinear, bound, |config| {
        let mut batch = Batch::new(g, "noisy_linear")?;
        let dummy = batch.scratch(16);
        let qp = batch.storage_init(bytemuck::cast_slice(&table));
        let mask = match mask_out {
            Some(m) => m.clone(),
            None if mask_pass => batch.scratch_tensor(words, DType::U32),
            None => batch.scratch_tensor(4, DType::U32),
        };
        if mask_pass {
            record_mask(g, &mut batch, precision, &base, &mask)?;
        }
        // The loader and the dW epilogue read a uniform copy of the mask when it fits one
        // uniform table (MASK_UB in the shader), else a stand-in.
        let mask_ub = batch.uniform_scratch(g.uniform_table_binding());
        let mask_copy = (mask_pass && g.uniform_tables && words * 4 <= UNIFORM_TABLE_BYTES)
            .then(|| device_buffer(&mask, "mask").ok())
            .flatten()
            .filter(|(b, _)| b.usage().contains(wgpu::BufferUsages::COPY_SRC));
        if let Some((b, offset)) = mask_copy {
            batch.copy(b, offset, &mask_ub, 0, words * 4);
        }
        // ϕ_PQ: one buffer holds the blocks' indices, then a copy of the codebook's f32 bits
        // (one storage binding, see pq_data in the shader).
        let assignment = match codebook {
            Some(codebook) => {
                let data = batch.scratch_tensor(blocks + codebook.len, DType::U32);
                let a = Assignment {
                    indices: Tensor {
                        len: blocks,
                        ..data.clone()
                    },
                    distances: batch.scratch_tensor(blocks, DType::F32),
                };
                let problem = AssignProblem {
                    data: op.weight,
                    codebook,
                    dim: resolved.block_size,
                };
                record_assign(g, &mut batch, &problem, &a)?;
                let (src, src_offset) = device_buffer(codebook, "codebook")?;
                let (dst, _) = device_buffer(&data, "pq data")?;
                batch.copy(src, src_offset, dst, blocks * 4, codebook.len * 4);
                Some(data)
            }
            None => None,
        };
        let params = batch.uniform(&base.window(0, shape.w_len(), mode));
        let whole = |t: &'_ Tensor| {
            let w = Window {
                start: 0,
                len: t.len,
            };
            (w, (t.len * t.dtype.size()).next_multiple_of(4))
        };
        let bind = |t, what| {
            let (w, bytes) = whole(t);
            window_binding(t, &w, bytes, what)
        };
        let weight_binding = if mode == 2 {
            bind(op.weight, "weight")?
        } else {
            dummy.as_entire_binding()
        };
        let pq_binding = match &assignment {
            Some(data) => bind(data, "pq data")?,
            None => dummy.as_entire_binding(),
        };
        let hooks = Hooks {
            family: Family::NoisyLinear,
            overrides: vec![
                ("NOISE_B", noise_b),
                ("STE_C", ste_c),
                ("MODE", mode),
                ("STAGES", resolved.stages.len() as u32),
                ("BS", resolved.block_size),
                ("LAYOUT", resolved.layout_bits(0)),
                ("MASK_SOURCE", (source == MaskSource::Regenerated) as u32),
                ("PQ0", assignment.is_some() as u32),
                ("MASK_UB", mask_copy.is_some() as u32),
            ],
            bindings: vec![
                (5, params.as_entire_binding()),
                (6, qp.as_entire_binding()),
                (7, bind(&mask, "mask")?),
                (8, weight_binding),
                (9, pq_binding),
                (10, sized(&mask_ub, g.uniform_table_binding())),
            ],
            b_computed: false,
            // pq_data is read by the loader's ϕ_PQ only, the clean weight by the clamped STE.
            b_only: &[9],
            c_only: &[8],
        };
        record(g, &mut batch, precision, config, bound, &hooks, &dummy)?;
        batch.finish().map(|_| ())
    })
}

impl Context {
    /// A handle on the same device whose fused noisy Linear ops take the loader's mask from
    /// `source` (contexts start with [`MaskSource::DEFAULT`]).
    pub fn with_mask_source(&self, source: MaskSource) -> Context {
        Context {
            mask_source: source,
            ..self.clone()
        }
    }

    /// Where this handle's fused noisy Linear ops take the loader's mask from.
    pub fn mask_source(&self) -> MaskSource {
        self.mask_source
    }

    /// The forward of a noisy Linear layer: `y = x · ψ(weight)ᵀ (+ bias)` with the noise chain
    /// `spec` drawn from `seed` (shapes and dtypes as [`Context::linear_forward`]), ψ fused
    /// into the weight loader with the mask of [`Context::mask_source`]. Observers run first;
    /// the returned spec carries their parameters (pass it to
    /// [`Context::noisy_linear_backward`]). If `mask` is given (u32,
    /// [`NoiseSpec::mask_words`] words), the bit-packed selection mask is written there, as by
    /// [`Context::noise_forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn noisy_linear_forward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        shape: LinearShape,
        spec: &NoiseSpec,
        seed: NoiseSeed,
        mask: Option<&Tensor>,
    ) -> Result<NoiseSpec> {
        shape.validate()?;
        let wshape = shape.weight_shape();
        spec.validate(&wshape)?;
        let bound = Bound::new(Product::Forward, shape, (x, weight, y), bias);
        let precision = bound.check(self, None)?;
        if let Some(m) = mask {
            self.check_owned(m, "mask")?;
            check_dtype("mask", DType::U32, m.dtype)?;
            check_len("mask", spec.mask_words(&wshape)?, m.len)?;
        }
        let Backend::Gpu(g) = &self.backend else {
            return self.noisy_linear_forward_unfused(x, weight, bias, y, shape, spec, seed, mask);
        };
        let resolved = self.resolve(weight, &wshape, spec)?;
        if !fusable(&resolved, Product::Forward, weight.dtype) {
            self.noisy_linear_forward_unfused(x, weight, bias, y, shape, &resolved, seed, mask)?;
            return Ok(resolved);
        }
        let op = FusedOp {
            bound,
            weight,
            resolved: &resolved,
            seed,
        };
        run_fused(g, precision, &op, Fused::Noise, self.mask_source, mask)?;
        Ok(resolved)
    }

    /// The same result as [`Context::noisy_linear_forward`] in two passes: ψ(weight) into a
    /// temporary tensor ([`Context::noise_forward`]), then [`Context::linear_forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn noisy_linear_forward_unfused(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        shape: LinearShape,
        spec: &NoiseSpec,
        seed: NoiseSeed,
        mask: Option<&Tensor>,
    ) -> Result<NoiseSpec> {
        shape.validate()?;
        let noisy = self.empty(shape.w_len(), weight.dtype)?;
        let resolved =
            self.noise_forward(weight, &noisy, shape.weight_shape(), spec, seed, mask)?;
        self.linear_forward(x, &noisy, bias, y, shape)?;
        Ok(resolved)
    }

    /// The backward of a noisy Linear layer: `grad_x = grad_y · ψ(weight)` (ψ fused into the
    /// weight loader with the mask of [`Context::mask_source`], drawn again from `seed`) and
    /// `grad_w = STE(grad_yᵀ · x)` (the factor of `mode` fused into the epilogue), each
    /// computed if its output is given. `spec` must be the one the forward returned (resolved),
    /// `seed` the forward's.
    #[allow(clippy::too_many_arguments)]
    pub fn noisy_linear_backward(
        &self,
        grad_y: &Tensor,
        x: &Tensor,
        weight: &Tensor,
        grad_x: Option<&Tensor>,
        grad_w: Option<&Tensor>,
        shape: LinearShape,
        spec: &NoiseSpec,
        seed: NoiseSeed,
        mode: SteMode,
    ) -> Result<()> {
        shape.validate()?;
        let wshape = shape.weight_shape();
        spec.validate(&wshape)?;
        let resolved = self.resolve(weight, &wshape, spec)?;
        if let Some(gx) = grad_x {
            let bound = Bound::new(Product::BackwardInput, shape, (grad_y, weight, gx), None);
            let precision = bound.check(self, None)?;
            match &self.backend {
                Backend::Gpu(g) if fusable(&resolved, bound.product, weight.dtype) => {
                    let op = FusedOp {
                        bound,
                        weight,
                        resolved: &resolved,
                        seed,
                    };
                    run_fused(g, precision, &op, Fused::Noise, self.mask_source, None)?
                }
                _ => {
                    let noisy = self.empty(shape.w_len(), weight.dtype)?;
                    self.noise_forward(weight, &noisy, wshape, &resolved, seed, None)?;
                    self.linear_backward_input(grad_y, &noisy, gx, shape)?;
                }
            }
        }
        if let Some(gw) = grad_w {
            let bound = Bound::new(Product::BackwardWeight, shape, (grad_y, x, gw), None);
            let precision = bound.check(self, Some((weight, "weight", shape.w_len())))?;
            match &self.backend {
                Backend::Gpu(g) => {
                    let op = FusedOp {
                        bound,
                        weight,
                        resolved: &resolved,
                        seed,
                    };
                    run_fused(g, precision, &op, Fused::Ste(mode), self.mask_source, None)?
                }
                Backend::Cpu => {
                    let noisy_grad = self.empty(shape.w_len(), weight.dtype)?;
                    self.linear_backward_weight(grad_y, x, &noisy_grad, shape)?;
                    self.ste_backward(&noisy_grad, weight, gw, wshape, &resolved, seed, mode)?;
                }
            }
        }
        Ok(())
    }
}
