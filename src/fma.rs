//! FMA-throughput kernels (`shaders/fma.wgsl`, [`Family::Fma`]): every invocation runs
//! [`FmaVariant::chains`] independent vec4 chains `x ← fma(x, mul, add)` for `iters` iterations
//! (the loop unrolled by hand, [`FmaVariant::unroll`] steps per trip) and writes one value (the
//! sum of its chains), so nothing is optimised away. They read no
//! memory and write 4 bytes per invocation, so the faster of them is the honest compute ceiling
//! of the compute-bound kernels (assignment, k-means) in the benchmark report
//! ([`crate::bench`]), as the copy kernels ([`crate::copy`]) are the ceiling of the
//! memory-bound ones.
//!
//! One op does [`FmaVariant::flops`] = `2 · 4 · chains · iters · invocations` floating-point
//! operations (an FMA counts as two).

use crate::error::{Result, invalid};
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype, wrong_context};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::PipelineKey;
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::windows;
use crate::tensor::{DType, Storage, Tensor};

/// Invocations per workgroup of the FMA kernels (the `WG` override).
pub const FMA_WG: u32 = 64;

/// The multiplier of every chain, per vec4 component (below 1, so every chain converges).
pub const FMA_MUL: [f32; 4] = [0.9990, 0.9993, 0.9996, 0.9999];

/// The addend of every chain, per vec4 component.
pub const FMA_ADD: [f32; 4] = [1e-3, 2e-3, 3e-3, 4e-3];

/// An FMA kernel: its entry point in `shaders/fma.wgsl`, its number of chains and its unroll
/// factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FmaVariant {
    /// `fma_chains4`: 4 independent vec4 chains per invocation, 8 steps per loop trip.
    Chains4,
    /// `fma_chains8`: 8 independent vec4 chains per invocation, 4 steps per loop trip.
    Chains8,
    /// `fma_chains16`: 16 independent vec4 chains per invocation, 4 steps per loop trip.
    Chains16,
}

impl FmaVariant {
    /// Every variant.
    pub const ALL: [FmaVariant; 3] = [
        FmaVariant::Chains4,
        FmaVariant::Chains8,
        FmaVariant::Chains16,
    ];

    /// Entry point in `shaders/fma.wgsl`.
    pub fn entry(&self) -> &'static str {
        match self {
            FmaVariant::Chains4 => "fma_chains4",
            FmaVariant::Chains8 => "fma_chains8",
            FmaVariant::Chains16 => "fma_chains16",
        }
    }

    /// Independent vec4 chains per invocation.
    pub fn chains(&self) -> u32 {
        match self {
            FmaVariant::Chains4 => 4,
            FmaVariant::Chains8 => 8,
            FmaVariant::Chains16 => 16,
        }
    }

    /// Steps of every chain per loop trip: `iters` must be a multiple of it.
    pub fn unroll(&self) -> u32 {
        match self {
            FmaVariant::Chains4 => 8,
            FmaVariant::Chains8 | FmaVariant::Chains16 => 4,
        }
    }

    /// Floating-point operations of one op over `invocations` invocations: `2 · 4 · chains ·
    /// iters · invocations`.
    pub fn flops(&self, invocations: u64, iters: u32) -> u64 {
        2 * 4 * self.chains() as u64 * iters as u64 * invocations
    }

    /// What invocation `i` writes, computed on the host in f32 with fused multiply-adds in the
    /// kernel's order (a device that fuses its `fma` gives exactly this value).
    pub fn reference(&self, i: u32, iters: u32) -> f32 {
        let mut chains: Vec<[f32; 4]> = (0..self.chains()).map(|c| chain_start(i, c)).collect();
        for _ in 0..iters {
            for x in &mut chains {
                for j in 0..4 {
                    x[j] = x[j].mul_add(FMA_MUL[j], FMA_ADD[j]);
                }
            }
        }
        let s = pairwise(&chains);
        (s[0] + s[1]) + (s[2] + s[3])
    }
}

impl std::fmt::Display for FmaVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.entry())
    }
}

/// The shader's sum of the chains: pairwise, `((x0 + x1) + (x2 + x3)) + …`.
fn pairwise(x: &[[f32; 4]]) -> [f32; 4] {
    if x.len() == 1 {
        return x[0];
    }
    let (l, r) = x.split_at(x.len() / 2);
    let (l, r) = (pairwise(l), pairwise(r));
    std::array::from_fn(|j| l[j] + r[j])
}

/// `chain_start` of the shader: distinct values in `[0, 1)`.
fn chain_start(i: u32, c: u32) -> [f32; 4] {
    let b = i.wrapping_mul(16).wrapping_add(c).wrapping_mul(4);
    std::array::from_fn(|j| (b.wrapping_add(j as u32) & 1023) as f32 / 1024.0)
}

/// Mirror of `FmaParams` in `shaders/fma.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct FmaParams {
    n: u32,
    iters: u32,
    _pad: [u32; 2],
    mul: [f32; 4],
    add: [f32; 4],
}

impl Context {
    /// Runs the FMA kernel `variant` with one invocation per element of `out` (an f32 tensor
    /// that fits one bound window, [`Context::max_window_bytes`]), each running `iters`
    /// iterations of its chains (a multiple of [`FmaVariant::unroll`]) and writing its value
    /// into `out` (a compute-ceiling benchmark; see [`crate::fma`]). Like every op it returns
    /// once the work is submitted. On the CPU backend it computes [`FmaVariant::reference`] of
    /// every element.
    pub fn fma_kernel(&self, variant: FmaVariant, out: &Tensor, iters: u32) -> Result<()> {
        check_dtype("out", DType::F32, out.dtype)?;
        if !iters.is_multiple_of(variant.unroll()) {
            return Err(invalid(
                "iters",
                iters,
                "must be a multiple of the variant's unroll factor",
            ));
        }
        if out.len > u32::MAX as u64 {
            return Err(invalid(
                "out.len()",
                out.len,
                "at most 2^32 - 1 invocations",
            ));
        }
        if out.len == 0 {
            return Ok(());
        }
        match (&self.backend, &out.storage) {
            (Backend::Cpu, Storage::Cpu(d)) => {
                let mut d = d.lock().unwrap();
                let values: Vec<f32> = (0..out.len as u32)
                    .map(|i| variant.reference(i, iters))
                    .collect();
                d.copy_from_slice(bytemuck::cast_slice(&values));
                Ok(())
            }
            (Backend::Gpu(g), Storage::Gpu { .. }) => {
                let wins = windows(out.len, 4, 1, g.max_window)?;
                let [w] = wins.as_slice() else {
                    return Err(invalid(
                        "out.len()",
                        out.len,
                        "the FMA kernels bind one window: at most max_window_bytes",
                    ));
                };
                let pipeline = g.pipeline(PipelineKey {
                    family: Family::Fma,
                    precision: Precision::F32,
                    entry: variant.entry(),
                    overrides: vec![("WG", FMA_WG)],
                })?;
                let mut batch = Batch::new(g, "fma_kernel")?;
                let uniform = batch.uniform(&FmaParams {
                    n: w.len as u32,
                    iters,
                    mul: FMA_MUL,
                    add: FMA_ADD,
                    ..Default::default()
                });
                let bindings = [
                    uniform.as_entire_binding(),
                    window_binding(out, w, w.len * 4, "out")?,
                ];
                batch.dispatch(&pipeline, &bindings, w.len.div_ceil(FMA_WG as u64))?;
                batch.finish().map(|_| ())
            }
            _ => Err(wrong_context("fma_kernel")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_flops_and_reference() {
        for v in FmaVariant::ALL {
            assert!(Family::Fma.entry_points().contains(&v.entry()));
        }
        assert_eq!(FmaVariant::Chains4.flops(10, 3), 2 * 4 * 4 * 3 * 10);
        assert_eq!(
            pairwise(&[[1.0; 4], [2.0; 4], [3.0; 4], [4.0; 4]]),
            [10.0; 4]
        );
        // Zero iterations: the sum of the chains' starting values.
        let start: f32 = (0..4)
            .flat_map(|c| chain_start(5, c))
            .collect::<Vec<_>>()
            .chunks(4)
            .map(|x| x.iter().sum::<f32>())
            .sum();
        assert!((FmaVariant::Chains4.reference(5, 0) - start).abs() < 1e-4);
        // Many iterations: every chain near its fixed point add / (1 - mul).
        let fixed: f32 = (0..4).map(|j| FMA_ADD[j] / (1.0 - FMA_MUL[j])).sum();
        let r = FmaVariant::Chains16.reference(7, 200_000);
        assert!(
            (r - 16.0 * fixed).abs() < 1e-2 * 16.0 * fixed,
            "{r} vs {}",
            16.0 * fixed
        );
    }

    #[test]
    fn cpu_backend_computes_the_reference() {
        let ctx = Context::cpu();
        let out = ctx.empty(9, DType::F32).unwrap();
        ctx.fma_kernel(FmaVariant::Chains4, &out, 16).unwrap();
        let got = ctx.read_f32(&out).unwrap();
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, FmaVariant::Chains4.reference(i as u32, 16));
        }
        assert!(ctx.fma_kernel(FmaVariant::Chains4, &out, 12).is_err());
        let u = ctx.empty(4, DType::U32).unwrap();
        assert!(ctx.fma_kernel(FmaVariant::Chains4, &u, 8).is_err());
    }

    /// Every variant matches the host reference on every adapter found (none: nothing to
    /// check), within the rounding of an unfused multiply-add.
    #[test]
    fn device_matches_the_reference() {
        let n = 1000u32;
        for ctx in Context::all_adapters(crate::BackendChoice::from_env().unwrap(), None) {
            let ctx = ctx.unwrap();
            let out = ctx.empty(n as u64, DType::F32).unwrap();
            for v in FmaVariant::ALL {
                ctx.fma_kernel(v, &out, 296).unwrap();
                let got = ctx.read_f32(&out).unwrap();
                for (i, g) in got.iter().enumerate() {
                    let want = v.reference(i as u32, 296);
                    assert!(
                        (g - want).abs() <= 1e-4 * want.abs(),
                        "{} {v} invocation {i}: {g} vs {want}",
                        ctx.describe()
                    );
                }
            }
        }
    }
}
