//! Batched nearest-centroid assignment (the k-means E-step) over many problems — e.g. every
//! layer of a model — recorded in one submission. Shader: `shaders/assign.wgsl`; reference:
//! [`crate::cpu::assign`].

use crate::error::{Result, invalid};
use crate::noise::host_values;
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::{Window, windows};
use crate::tensor::{DType, Tensor};

/// Largest subvector dimension.
pub const MAX_DIM: u32 = 64;
const WG: u32 = 64;
/// Subvectors per invocation (`SPT` in the shader).
const SPT: u64 = 4;

/// One assignment problem: `data` holds N subvectors of `dim` f32 each, row-major;
/// `codebook` holds K centroids of `dim`.
#[derive(Clone, Copy, Debug)]
pub struct AssignProblem<'a> {
    /// N × dim subvectors.
    pub data: &'a Tensor,
    /// K × dim centroids.
    pub codebook: &'a Tensor,
    /// Subvector dimension, 1..=64.
    pub dim: u32,
}

/// Result of one problem: per subvector, the nearest centroid and its squared distance.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// Centroid index per subvector (u32).
    pub indices: Tensor,
    /// Squared L2 distance to that centroid (f32).
    pub distances: Tensor,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct AssignParams {
    n: u32,
    k: u32,
    d: u32,
    _pad: u32,
}

impl AssignProblem<'_> {
    /// Checks the problem; returns (N, K).
    pub fn validate(&self) -> Result<(u64, u64)> {
        if !(1..=MAX_DIM).contains(&self.dim) {
            return Err(invalid("dim", self.dim, "must be in 1..=64"));
        }
        check_dtype("data", DType::F32, self.data.dtype)?;
        check_dtype("codebook", DType::F32, self.codebook.dtype)?;
        let d = self.dim as u64;
        for (what, t) in [("data.len()", self.data), ("codebook.len()", self.codebook)] {
            if t.len == 0 || t.len % d != 0 {
                return Err(invalid(what, t.len, "must be a positive multiple of dim"));
            }
        }
        Ok((self.data.len / d, self.codebook.len / d))
    }
}

impl Context {
    /// Nearest centroid of every subvector of every problem, all recorded in one submission.
    pub fn assign(&self, problems: &[AssignProblem<'_>]) -> Result<Vec<Assignment>> {
        let mut out = Vec::with_capacity(problems.len());
        for p in problems {
            let (n, _) = p.validate()?;
            self.check_owned(p.data, "data")?;
            self.check_owned(p.codebook, "codebook")?;
            out.push(Assignment {
                indices: self.empty(n, DType::U32)?,
                distances: self.empty(n, DType::F32)?,
            });
        }
        self.assign_into(problems, &out)?;
        Ok(out)
    }

    /// Like [`Context::assign`], writing into caller-provided outputs.
    pub fn assign_into(
        &self,
        problems: &[AssignProblem<'_>],
        outputs: &[Assignment],
    ) -> Result<()> {
        crate::noise::check_len("outputs", problems.len() as u64, outputs.len() as u64)?;
        for (p, o) in problems.iter().zip(outputs) {
            let (n, _) = p.validate()?;
            for (t, what) in [
                (p.data, "data"),
                (p.codebook, "codebook"),
                (&o.indices, "indices"),
                (&o.distances, "distances"),
            ] {
                self.check_owned(t, what)?;
            }
            check_dtype("indices", DType::U32, o.indices.dtype)?;
            check_dtype("distances", DType::F32, o.distances.dtype)?;
            crate::noise::check_len("indices", n, o.indices.len)?;
            crate::noise::check_len("distances", n, o.distances.len)?;
        }
        match &self.backend {
            Backend::Cpu => {
                for (p, o) in problems.iter().zip(outputs) {
                    let data = host_values(p.data, "data")?;
                    let cb = host_values(p.codebook, "codebook")?;
                    let (idx, dist) = crate::cpu::assign::assign(&data, &cb, p.dim as usize);
                    crate::noise::store_host(
                        &o.indices,
                        &idx.iter().map(|&i| i as f64).collect::<Vec<_>>(),
                        "indices",
                    )?;
                    crate::noise::store_host(&o.distances, &dist, "distances")?;
                }
                Ok(())
            }
            Backend::Gpu(g) => {
                let mut batch = Batch::new(g, "assign")?;
                for (p, o) in problems.iter().zip(outputs) {
                    record_assign(g, &mut batch, p, o)?;
                }
                batch.finish().map(|_| ())
            }
        }
    }
}

/// Records one problem's dispatches: windows of whole subvectors, each starting at a multiple
/// of 64 subvectors so that the outputs' windows are aligned too.
pub(crate) fn record_assign(
    g: &Gpu,
    batch: &mut Batch,
    p: &AssignProblem<'_>,
    o: &Assignment,
) -> Result<()> {
    let (n, k) = p.validate()?;
    let d = p.dim as u64;
    if k * d * 4 > g.max_binding {
        return Err(invalid(
            "codebook bytes",
            k * d * 4,
            "the codebook must fit in one storage binding",
        ));
    }
    let pipeline = g.pipeline(PipelineKey {
        family: Family::Assign,
        precision: Precision::F32,
        entry: "assign_nearest",
        overrides: vec![("WG", WG), ("D4", p.dim.div_ceil(4))],
    })?;
    let codebook = window_binding(
        p.codebook,
        &Window {
            start: 0,
            len: k * d,
        },
        k * d * 4,
        "codebook",
    )?;
    for w in windows(n, d * 4, 64, g.max_window)? {
        let u = batch.uniform(&AssignParams {
            n: w.len as u32,
            k: k as u32,
            d: p.dim,
            _pad: 0,
        });
        let data = window_binding(
            p.data,
            &Window {
                start: w.start * d,
                len: w.len * d,
            },
            w.len * d * 4,
            "data",
        )?;
        let bindings = [
            u.as_entire_binding(),
            data,
            codebook.clone(),
            window_binding(&o.indices, &w, w.len * 4, "indices")?,
            window_binding(&o.distances, &w, w.len * 4, "distances")?,
        ];
        batch.dispatch(&pipeline, &bindings, w.len.div_ceil(WG as u64 * SPT))?;
    }
    Ok(())
}
