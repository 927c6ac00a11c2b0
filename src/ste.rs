//! Straight-through backward of the noise chain: `dL/dW` from `dL/dW_noise`, regenerating the
//! mask from `(seed, step)`. Shader: `shaders/ste.wgsl`; reference: [`crate::cpu::ste`].

use crate::error::{Error, Result};
use crate::noise::{
    NoiseSpec, SteMode, chain_params, check_len, host_values, precision_of, store_host,
};
use crate::philox::NoiseSeed;
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::Elementwise;
use crate::runtime::shaders::Family;
use crate::shape::WeightShape;
use crate::tensor::Tensor;

impl SteMode {
    fn code(&self) -> u32 {
        match self {
            SteMode::Identity => 0,
            SteMode::Masked => 1,
            SteMode::Clamped => 2,
        }
    }
}

impl Context {
    /// Writes `dL/dW` to `grad_weight` from `dL/dW_noise` (`grad_noisy`) with the STE `mode`.
    /// `spec` and `seed` must be those of the forward (pass the spec the forward returned, so
    /// observers are not run again); `weight` is read only by [`SteMode::Clamped`].
    #[allow(clippy::too_many_arguments)]
    pub fn ste_backward(
        &self,
        grad_noisy: &Tensor,
        weight: &Tensor,
        grad_weight: &Tensor,
        shape: WeightShape,
        spec: &NoiseSpec,
        seed: NoiseSeed,
        mode: SteMode,
    ) -> Result<()> {
        spec.validate(&shape)?;
        for (t, what) in [
            (grad_noisy, "grad_noisy"),
            (weight, "weight"),
            (grad_weight, "grad_weight"),
        ] {
            self.check_owned(t, what)?;
            check_len(what, shape.numel(), t.len)?;
            check_dtype(what, grad_noisy.dtype, t.dtype)?;
        }
        let precision = precision_of(grad_noisy, "grad_noisy")?;
        if grad_weight.conflicts(grad_noisy) || grad_weight.conflicts(weight) {
            return Err(Error::Aliasing {
                what: "ste_backward inputs/grad_weight",
            });
        }
        if let Backend::Gpu(g) = &self.backend {
            g.require(precision)?;
        }
        let resolved = self.resolve(weight, &shape, spec)?;
        match &self.backend {
            Backend::Cpu => {
                let g = host_values(grad_noisy, "grad_noisy")?;
                let w = host_values(weight, "weight")?;
                let out = crate::cpu::ste::ste_backward(&g, &w, &shape, &resolved, seed, mode);
                store_host(grad_weight, &out, "grad_weight")
            }
            Backend::Gpu(g) => {
                let (base, table) = chain_params(&shape, &resolved, seed);
                let mut batch = Batch::new(g, "ste_backward")?;
                let qp = batch.storage_init(bytemuck::cast_slice(&table));
                let kernel = Elementwise {
                    family: Family::Ste,
                    precision,
                    vec4_entry: "ste_vec4",
                    tail_entry: "ste_tail",
                    block_size: spec.block_size,
                    stages: spec.stages.len() as u32,
                    layout: resolved.layout_bits(mode.code()),
                };
                kernel.record(
                    g,
                    &mut batch,
                    &[
                        (grad_noisy, "grad_noisy"),
                        (weight, "weight"),
                        (grad_weight, "grad_weight"),
                    ],
                    &[qp.as_entire_binding()],
                    |w| base.window(w.start, w.len, mode.code()),
                )?;
                batch.finish().map(|_| ())
            }
        }
    }
}
