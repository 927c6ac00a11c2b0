//! Batched nearest-centroid assignment (the k-means E-step) over many problems — e.g. every
//! layer of a model — recorded in one submission. Shader: `shaders/assign.wgsl`; reference:
//! [`crate::cpu::assign`].

use crate::error::{Result, invalid};
use crate::noise::host_values;
use crate::runtime::batch::{Batch, sized};
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::{Window, windows};
use crate::tensor::{DType, Tensor};

/// Largest subvector dimension.
pub const MAX_DIM: u32 = 64;
const WG: u32 = 64;
/// Subvectors per invocation of `assign_nearest`.
const SPT: u64 = 4;
/// Largest dimension of `assign_nearest`; larger ones use `assign_nearest_wide`.
const TILED_MAX_DIM: u32 = 16;
/// Tiles of `assign_nearest` hold a multiple of this many centroids (the codebook is padded with
/// dummies). 16 prepared rows are a multiple of 256 bytes, so every tile window is aligned.
const TILE_GRANULE: u64 = 16;

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
    base: u32,
    flags: u32,
}

/// `AssignParams::flags` (see the shader).
const FIRST_TILE: u32 = 1;
const LAST_TILE: u32 = 2;

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
            if t.len == 0 || !t.len.is_multiple_of(d) {
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

/// Centroids per tile of `assign_nearest` for dimension `d`: each tile is one dispatch of
/// straight-line code, so its size bounds the pipeline's code size (and compile time).
fn max_tile(d: u32) -> u64 {
    if let Ok(v) = std::env::var("QN_KT") {
        return v.parse().unwrap();
    }
    if d <= 8 { 256 } else { 128 }
}

/// The tiles (first centroid, centroids) covering `k` centroids: full tiles, then the rest
/// rounded up to the granule.
fn tiles(k: u64, d: u32) -> Vec<(u64, u64)> {
    let max = max_tile(d);
    let mut out = Vec::new();
    let mut start = 0;
    while start < k {
        let len = max.min((k - start).next_multiple_of(TILE_GRANULE));
        out.push((start, len));
        start += len;
    }
    out
}

/// Records one problem's dispatches: the prepared codebook (see the shader), then windows of
/// whole subvectors, each starting at a multiple of 64 subvectors so that the outputs' windows
/// are aligned too, and per window one dispatch per codebook tile.
pub(crate) fn record_assign(
    g: &Gpu,
    batch: &mut Batch,
    p: &AssignProblem<'_>,
    o: &Assignment,
) -> Result<()> {
    let (n, k) = p.validate()?;
    let d = p.dim as u64;
    let tiled = p.dim <= TILED_MAX_DIM;
    let tiles = if tiled { tiles(k, p.dim) } else { vec![(0, k)] };
    let rows = tiles.iter().map(|t| t.1).sum::<u64>();
    // Bytes of one prepared row: d.div_ceil(4) vec4 chunks and the norm's vec4.
    let row_bytes = (d.div_ceil(4) + 1) * 16;
    if k * d * 4 > g.max_binding || rows * row_bytes > g.max_binding {
        return Err(invalid(
            "codebook bytes",
            k * d * 4,
            "the codebook must fit in one storage binding",
        ));
    }
    let pipeline = |entry| {
        let mut overrides = vec![("WG", WG), ("D", p.dim)];
        if entry == "assign_nearest" {
            overrides.push(("KT", tiles[0].1 as u32));
        }
        g.pipeline(PipelineKey {
            family: Family::Assign,
            precision: Precision::F32,
            entry,
            overrides,
        })
    };

    let prepared = batch.scratch(rows * row_bytes);
    let u = batch.uniform(&AssignParams {
        n: rows as u32,
        k: k as u32,
        ..Default::default()
    });
    let codebook = window_binding(
        p.codebook,
        &Window {
            start: 0,
            len: k * d,
        },
        k * d * 4,
        "codebook",
    )?;
    batch.dispatch_at(
        &pipeline("assign_prepare")?,
        &[
            (0, u.as_entire_binding()),
            (2, codebook),
            (6, sized(&prepared, rows * row_bytes)),
        ],
        rows.div_ceil(WG as u64),
    )?;

    let (entry, per_group) = if tiled {
        ("assign_nearest", WG as u64 * SPT)
    } else {
        ("assign_nearest_wide", WG as u64)
    };
    for w in windows(n, d * 4, 64, g.max_window)? {
        let data = Window {
            start: w.start * d,
            len: w.len * d,
        };
        for (t, &(start, len)) in tiles.iter().enumerate() {
            let mut flags = 0;
            if t == 0 {
                flags |= FIRST_TILE;
            }
            if t + 1 == tiles.len() {
                flags |= LAST_TILE;
            }
            let u = batch.uniform(&AssignParams {
                n: w.len as u32,
                k: k as u32,
                base: start as u32,
                flags,
            });
            let tile = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &prepared,
                offset: start * row_bytes,
                size: wgpu::BufferSize::new(len * row_bytes),
            });
            // A tile of another size (only the last may differ) is another pipeline.
            let pipeline = if tiled {
                g.pipeline(PipelineKey {
                    family: Family::Assign,
                    precision: Precision::F32,
                    entry,
                    overrides: vec![("WG", WG), ("D", p.dim), ("KT", len as u32)],
                })?
            } else {
                pipeline(entry)?
            };
            batch.dispatch_at(
                &pipeline,
                &[
                    (0, u.as_entire_binding()),
                    (1, window_binding(p.data, &data, data.len * 4, "data")?),
                    (3, window_binding(&o.indices, &w, w.len * 4, "indices")?),
                    (4, window_binding(&o.distances, &w, w.len * 4, "distances")?),
                    (5, tile),
                ],
                w.len.div_ceil(per_group),
            )?;
        }
    }
    Ok(())
}
