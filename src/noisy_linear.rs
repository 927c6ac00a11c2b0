//! One noisy Linear layer: `Y = X·ψ(W)ᵀ + b` with the Quant-Noise chain ψ fused into the
//! weight loader of the matmul (`shaders/noisy_linear.wgsl` + `shaders/matmul.wgsl`,
//! [`Family::NoisyLinear`]), and its backward `dX = dY·ψ(W)` (ψ again in the loader) and
//! `dW = STE(dYᵀ·X)` (the straight-through factor of [`SteMode`] in the epilogue). ψ(W) is
//! never written to memory.
//!
//! The selection of every block comes from the bit-packed mask that the standalone noise
//! kernel's `noise_mask` entry point (`shaders/noise.wgsl`, one Philox4x32-10 call per 4
//! blocks) writes for the same `(seed, step)` in the same submission (one bit per block and
//! stage, `1/(32·block_size)` of the weight's size); the loader then applies `noise_one` of
//! `shaders/noise_chain.wgsl` to each staged weight element. So the mask is bit-identical to
//! [`Context::noise_forward`]'s, and the noisy weights equal its output up to f32 rounding of
//! the quantizer's arithmetic.
//!
//! Chains with a PQ stage ([`Noise::Pq`], [`Noise::PqMean`]) and the CPU backend take the
//! unfused path ([`Context::noisy_linear_forward_unfused`]): ψ(W) into a temporary tensor with
//! [`Context::noise_forward`], then the dense products ([`crate::matmul`]) and, for dW,
//! [`Context::ste_backward`].

use crate::error::Result;
use crate::matmul::{Bound, Hooks, LinearShape, Product, record, with_config};
use crate::noise::{Noise, NoiseSpec, SteMode, chain_params, check_len};
use crate::philox::NoiseSeed;
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::windows;
use crate::tensor::{DType, Tensor};

fn ste_code(mode: SteMode) -> u32 {
    match mode {
        SteMode::Identity => 0,
        SteMode::Masked => 1,
        SteMode::Clamped => 2,
    }
}

fn fusable(spec: &NoiseSpec) -> bool {
    !spec
        .stages
        .iter()
        .any(|s| matches!(s, Noise::Pq { .. } | Noise::PqMean { .. }))
}

/// What the fused kernel does with the noise: ψ on the loaded weight, or the STE factor on
/// the dW outputs.
#[derive(Clone, Copy)]
enum Fused {
    Noise,
    Ste(SteMode),
}

/// Records the mask pass and one fused product into a fresh batch and submits it.
#[allow(clippy::too_many_arguments)]
fn run_fused(
    g: &Gpu,
    precision: Precision,
    bound: &Bound<'_>,
    weight: &Tensor,
    resolved: &NoiseSpec,
    seed: NoiseSeed,
    fused: Fused,
    mask_out: Option<&Tensor>,
) -> Result<()> {
    let shape = bound.shape;
    let wshape = shape.weight_shape();
    let words = resolved.mask_words(&wshape)?;
    let (base, table) = chain_params(&wshape, resolved, seed);
    let s = shape;
    let mnk = match bound.product {
        Product::Forward => (s.total_rows(), s.out_features, s.in_features),
        Product::BackwardInput => (s.total_rows(), s.in_features, s.out_features),
        Product::BackwardWeight => (s.out_features, s.in_features, s.total_rows()),
    };
    let (noise_b, ste_c, mode) = match fused {
        Fused::Noise => (1, 0, 0),
        Fused::Ste(m) => (0, 1, ste_code(m)),
    };
    let mask_pipeline = g.pipeline(PipelineKey {
        family: Family::Noise,
        precision,
        entry: "noise_mask",
        overrides: vec![("WG", crate::runtime::elementwise::WG)],
    })?;
    with_config(g, bound.product, mnk, |config| {
        let mut batch = Batch::new(g, "noisy_linear")?;
        let dummy = batch.scratch(16);
        let qp = batch.storage_init(bytemuck::cast_slice(&table));
        let scratch_mask;
        let mask = match mask_out {
            Some(m) => m,
            None => {
                scratch_mask = Tensor {
                    storage: crate::tensor::Storage::Gpu {
                        buffer: batch.scratch(words.max(1) * 4),
                        offset: 0,
                        device: g.id,
                    },
                    len: words.max(1),
                    dtype: DType::U32,
                };
                &scratch_mask
            }
        };
        if words > 0 {
            for w in windows(words, 4, 1, g.max_window)? {
                let u = batch.uniform(&base.window(w.start, w.len, 0));
                batch.dispatch_at(
                    &mask_pipeline,
                    &[
                        (0, u.as_entire_binding()),
                        (2, window_binding(mask, &w, w.len * 4, "mask")?),
                    ],
                    w.len.div_ceil(crate::runtime::elementwise::WG as u64),
                )?;
            }
        }
        let params = batch.uniform(&base.window(0, shape.w_len(), mode));
        let whole = crate::runtime::window::Window {
            start: 0,
            len: words.max(1),
        };
        let weight_binding = if mode == 2 {
            let wl = crate::runtime::window::Window {
                start: 0,
                len: shape.w_len(),
            };
            window_binding(
                weight,
                &wl,
                (shape.w_len() * weight.dtype.size()).next_multiple_of(4),
                "weight",
            )?
        } else {
            dummy.as_entire_binding()
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
            ],
            bindings: vec![
                (5, params.as_entire_binding()),
                (6, qp.as_entire_binding()),
                (7, window_binding(mask, &whole, whole.len * 4, "mask")?),
                (8, weight_binding),
            ],
        };
        record(g, &mut batch, precision, config, bound, &hooks, &dummy)?;
        batch.finish().map(|_| ())
    })
}

impl Context {
    /// The forward of a noisy Linear layer: `y = x · ψ(weight)ᵀ (+ bias)` with the noise chain
    /// `spec` drawn from `seed` (shapes and dtypes as [`Context::linear_forward`]), ψ fused
    /// into the weight loader. Observers run first; the returned spec carries their parameters
    /// (pass it to [`Context::noisy_linear_backward`]). If `mask` is given (u32,
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
        let g = match &self.backend {
            Backend::Gpu(g) if fusable(spec) => g,
            _ => {
                return self
                    .noisy_linear_forward_unfused(x, weight, bias, y, shape, spec, seed, mask);
            }
        };
        let resolved = self.resolve(weight, &wshape, spec)?;
        run_fused(
            g,
            precision,
            &bound,
            weight,
            &resolved,
            seed,
            Fused::Noise,
            mask,
        )?;
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
    /// weight loader, the mask regenerated from `seed`) and `grad_w = STE(grad_yᵀ · x)` (the
    /// factor of `mode` fused into the epilogue), each computed if its output is given.
    /// `spec` must be the one the forward returned (resolved), `seed` the forward's.
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
                Backend::Gpu(g) if fusable(&resolved) => run_fused(
                    g,
                    precision,
                    &bound,
                    weight,
                    &resolved,
                    seed,
                    Fused::Noise,
                    None,
                )?,
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
                Backend::Gpu(g) if fusable(&resolved) => run_fused(
                    g,
                    precision,
                    &bound,
                    weight,
                    &resolved,
                    seed,
                    Fused::Ste(mode),
                    None,
                )?,
                _ => {
                    let noisy_grad = self.empty(shape.w_len(), weight.dtype)?;
                    self.linear_backward_weight(grad_y, x, &noisy_grad, shape)?;
                    self.ste_backward(&noisy_grad, weight, gw, wshape, &resolved, seed, mode)?;
                }
            }
        }
        Ok(())
    }
}
