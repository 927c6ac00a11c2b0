//! Copy kernels (`shaders/copy.wgsl`, [`Family::Copy`]): `dst = src` over vec4s of f32, in
//! four access patterns. They move exactly the bytes an element-wise kernel moves and do no
//! arithmetic, so the fastest of them is the honest roofline of the element-wise kernels in
//! the benchmark report ([`crate::bench`]).
//!
//! They are benchmark baselines, not a general copy: one dispatch over one bound window of an
//! f32 tensor whose length is a multiple of 4.

use crate::error::{Error, Result, invalid};
use crate::noise::check_len;
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype, wrong_context};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::PipelineKey;
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::windows;
use crate::tensor::{DType, Storage, Tensor};

/// Invocations per workgroup of the copy kernels (the `WG` override), as in the element-wise
/// kernels ([`crate::runtime::elementwise::WG`]).
pub const COPY_WG: u32 = crate::runtime::elementwise::WG;

/// Largest vec4-per-invocation count ([`CopyVariant::vpt`]) accepted.
pub const MAX_VPT: u32 = 64;

/// Access pattern of a copy kernel: its entry point in `shaders/copy.wgsl` and its `VPT`
/// override (vec4s per invocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyVariant {
    /// `copy_vec4`: one vec4 per invocation.
    Vec4,
    /// `copy_vec4_contiguous`: `vpt` consecutive vec4s per invocation.
    Contiguous {
        /// vec4s per invocation (1..=[`MAX_VPT`]).
        vpt: u32,
    },
    /// `copy_vec4_strided`: `vpt` vec4s per invocation, strided by the workgroup size inside a
    /// workgroup tile (the element-wise kernels' pattern).
    Strided {
        /// vec4s per invocation (1..=[`MAX_VPT`]).
        vpt: u32,
    },
    /// `copy_vec4_grid`: `vpt` vec4s per invocation, strided by the whole grid.
    Grid {
        /// vec4s per invocation (1..=[`MAX_VPT`]).
        vpt: u32,
    },
}

impl CopyVariant {
    /// The variants the benchmark report measures: `copy_vec4` and the three multi-vec4
    /// patterns at 4 and 8 vec4s per invocation.
    pub fn benchmarked() -> Vec<CopyVariant> {
        let mut out = vec![CopyVariant::Vec4];
        for vpt in [4, 8] {
            out.extend([
                CopyVariant::Contiguous { vpt },
                CopyVariant::Strided { vpt },
                CopyVariant::Grid { vpt },
            ]);
        }
        out
    }

    /// Entry point in `shaders/copy.wgsl`.
    pub fn entry(&self) -> &'static str {
        match self {
            CopyVariant::Vec4 => "copy_vec4",
            CopyVariant::Contiguous { .. } => "copy_vec4_contiguous",
            CopyVariant::Strided { .. } => "copy_vec4_strided",
            CopyVariant::Grid { .. } => "copy_vec4_grid",
        }
    }

    /// vec4s per invocation (1 for [`CopyVariant::Vec4`]).
    pub fn vpt(&self) -> u32 {
        match *self {
            CopyVariant::Vec4 => 1,
            CopyVariant::Contiguous { vpt }
            | CopyVariant::Strided { vpt }
            | CopyVariant::Grid { vpt } => vpt,
        }
    }

    /// Name used in benchmark reports: the entry point, then `_v{vpt}` for the multi-vec4
    /// patterns, e.g. `copy_vec4`, `copy_vec4_strided_v4`.
    pub fn name(&self) -> String {
        match self {
            CopyVariant::Vec4 => self.entry().to_string(),
            _ => format!("{}_v{}", self.entry(), self.vpt()),
        }
    }

    /// Workgroups of one dispatch over `n4` vec4s.
    fn groups(&self, n4: u64) -> u64 {
        n4.div_ceil((COPY_WG * self.vpt()) as u64)
    }

    fn overrides(&self) -> Vec<(&'static str, u32)> {
        match self {
            CopyVariant::Vec4 => vec![("WG", COPY_WG)],
            _ => vec![("WG", COPY_WG), ("VPT", self.vpt())],
        }
    }
}

impl std::fmt::Display for CopyVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Mirror of `CopyParams` in `shaders/copy.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct CopyParams {
    /// vec4s to copy.
    n: u32,
    _pad: [u32; 3],
}

impl Context {
    /// Copies `src` into `dst` with the copy kernel `variant`, in one dispatch (a benchmark
    /// baseline; see [`crate::copy`]). Both tensors must be f32 of the same length, a multiple
    /// of 4 that fits one bound window ([`Context::max_window_bytes`]), and must not overlap.
    /// Like every op it returns once the work is submitted. On the CPU backend it is a plain
    /// copy.
    pub fn copy_kernel(&self, variant: CopyVariant, src: &Tensor, dst: &Tensor) -> Result<()> {
        check_dtype("src", DType::F32, src.dtype)?;
        check_dtype("dst", DType::F32, dst.dtype)?;
        check_len("dst", src.len, dst.len)?;
        if !src.len.is_multiple_of(4) {
            return Err(invalid(
                "len",
                src.len,
                "copy kernels copy whole vec4s: a multiple of 4 f32 elements",
            ));
        }
        if !(1..=MAX_VPT).contains(&variant.vpt()) {
            return Err(invalid("vpt", variant.vpt(), "must be in 1..=64"));
        }
        if src.conflicts(dst) {
            return Err(Error::Aliasing {
                what: "copy_kernel src/dst",
            });
        }
        if src.len == 0 {
            return Ok(());
        }
        match (&self.backend, &src.storage, &dst.storage) {
            (Backend::Cpu, Storage::Cpu(s), Storage::Cpu(d)) => {
                d.lock().unwrap().copy_from_slice(&s.lock().unwrap());
                Ok(())
            }
            (Backend::Gpu(g), Storage::Gpu { .. }, Storage::Gpu { .. }) => {
                let wins = windows(src.len, 4, 4, g.max_window)?;
                let [w] = wins.as_slice() else {
                    return Err(invalid(
                        "len",
                        src.len,
                        "copy kernels bind one window: at most max_window_bytes",
                    ));
                };
                let pipeline = g.pipeline(PipelineKey {
                    family: Family::Copy,
                    precision: Precision::F32,
                    entry: variant.entry(),
                    overrides: variant.overrides(),
                })?;
                let n4 = w.len / 4;
                let bytes = w.len * 4;
                let mut batch = Batch::new(g, "copy_kernel")?;
                let uniform = batch.uniform(&CopyParams {
                    n: n4 as u32,
                    ..Default::default()
                });
                let bindings = [
                    uniform.as_entire_binding(),
                    window_binding(src, w, bytes, "src")?,
                    window_binding(dst, w, bytes, "dst")?,
                ];
                batch.dispatch(&pipeline, &bindings, variant.groups(n4))?;
                batch.finish().map(|_| ())
            }
            _ => Err(wrong_context("copy_kernel")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_entries() {
        let names: Vec<String> = CopyVariant::benchmarked()
            .iter()
            .map(|v| v.name())
            .collect();
        assert_eq!(names[0], "copy_vec4");
        assert!(names.contains(&"copy_vec4_strided_v8".to_string()));
        for v in CopyVariant::benchmarked() {
            assert!(Family::Copy.entry_points().contains(&v.entry()));
        }
    }

    #[test]
    fn cpu_copy_and_errors() {
        let ctx = Context::cpu();
        let data: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let src = ctx.upload(&data).unwrap();
        let dst = ctx.empty(16, DType::F32).unwrap();
        ctx.copy_kernel(CopyVariant::Grid { vpt: 4 }, &src, &dst)
            .unwrap();
        assert_eq!(ctx.read_f32(&dst).unwrap(), data);
        let odd = ctx.empty(6, DType::F32).unwrap();
        let odd2 = ctx.empty(6, DType::F32).unwrap();
        assert!(ctx.copy_kernel(CopyVariant::Vec4, &odd, &odd2).is_err());
        assert!(ctx.copy_kernel(CopyVariant::Vec4, &src, &src).is_err());
        assert!(
            ctx.copy_kernel(CopyVariant::Strided { vpt: 0 }, &src, &dst)
                .is_err()
        );
    }

    /// Every variant copies exactly on every adapter found (none: nothing to check), with a
    /// length that is not a multiple of any tile; more than one window is an error.
    #[test]
    fn device_copies_are_exact() {
        let n = 4 * 3001;
        let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
        let mut variants = CopyVariant::benchmarked();
        variants.extend([
            CopyVariant::Contiguous { vpt: 3 },
            CopyVariant::Grid { vpt: 1 },
            CopyVariant::Strided { vpt: 16 },
        ]);
        for ctx in Context::all_adapters(crate::BackendChoice::from_env().unwrap(), Some(4096)) {
            let ctx = ctx.unwrap();
            let src = ctx.upload(&data).unwrap();
            let dst = ctx.empty(n as u64, DType::F32).unwrap();
            assert!(
                ctx.copy_kernel(CopyVariant::Vec4, &src, &dst).is_err(),
                "{}: more than one window",
                ctx.describe()
            );
            let small = ctx.upload(&data[..1000]).unwrap();
            let small_dst = ctx.empty(1000, DType::F32).unwrap();
            for v in &variants {
                ctx.write(&small_dst, &vec![f32::NAN; 1000]).unwrap();
                ctx.copy_kernel(*v, &small, &small_dst).unwrap();
                assert_eq!(
                    ctx.read_f32(&small_dst).unwrap(),
                    &data[..1000],
                    "{} {}",
                    ctx.describe(),
                    v
                );
            }
            let f16 = ctx.empty(1000, DType::F16).unwrap();
            assert!(ctx.copy_kernel(CopyVariant::Vec4, &small, &f16).is_err());
            assert!(ctx.copy_kernel(CopyVariant::Vec4, &small, &small).is_err());
        }
    }
}
