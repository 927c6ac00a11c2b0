//! Hamerly bounds on the device for the k-means E-step: per subvector a lower bound on the
//! distance to every other centroid, so that only the subvectors whose nearest centroid may
//! have changed are scored against the whole codebook. Exact: the assignments, distances (hence
//! objective) and codebooks are those of the plain E-step, bit for bit (the rounding margins
//! are in `shaders/assign.wgsl`). Kernels: `bound_drift`, `bound_check`, `bound_args` and
//! `rescan_tile{N}` of `shaders/assign.wgsl`.

use crate::assign::{
    AssignParams, AssignProblem, Assignment, DISTANCES, Rows, SPT, WG, record_prepare, record_tiles,
};
use crate::error::Result;
use crate::kmeans::gpu::whole;
use crate::runtime::batch::{Batch, sized};
use crate::runtime::context::Context;
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::Gpu;
use crate::runtime::window::{Window, windows};
use crate::tensor::{DType, Tensor};

/// The bounds of one problem, kept on the device between E-steps.
pub(crate) struct Bounds {
    /// Per subvector: a lower bound on the distance to every centroid but its own (0: none).
    lower: Tensor,
    /// The codebook the bounds hold for (K × d).
    last: Tensor,
    /// Per window, the (window-relative) subvectors to rescan, from the window's start.
    list: Tensor,
}

impl Bounds {
    pub(crate) fn new(ctx: &Context, n: u64, k: u64, d: u64) -> Result<Self> {
        Ok(Self {
            lower: ctx.empty(n, DType::F32)?,
            last: ctx.empty(k * d, DType::F32)?,
            list: ctx.empty(n, DType::U32)?,
        })
    }

    /// Records an E-step of `p` into `o` (which holds the previous assignments): with
    /// `bounded`, Hamerly's; otherwise [`crate::assign::record_assign`]'s. Either way the
    /// distances are then rewritten by one kernel (see `shaders/assign.wgsl`), so both give
    /// the same bits. `p.dim` must be at most 16.
    pub(crate) fn record(
        &self,
        g: &Gpu,
        batch: &mut Batch,
        p: &AssignProblem<'_>,
        o: &Assignment,
        bounded: bool,
    ) -> Result<()> {
        let prepared = record_prepare(g, batch, p)?;
        let (n, k) = p.validate()?;
        let d = p.dim as u64;
        let wins = windows(n, d * 4, 64, g.max_window)?;
        let counts_bytes = wins.len() as u64 * 4;
        let counts = batch.scratch(counts_bytes);
        let state = batch.scratch(16);
        let whole_prepared = || sized(&prepared.buffer, prepared.bytes());
        let params = |batch: &mut Batch, n: u64, window: usize, flags: u32| {
            batch.uniform(&AssignParams {
                n: n as u32,
                k: k as u32,
                flags,
                window: window as u32,
                ..Default::default()
            })
        };
        let check = prepared.pipeline(g, "bound_check", 0, false)?;
        let mut record_check = |batch: &mut Batch, flags: u32| -> Result<()> {
            for (i, w) in wins.iter().enumerate() {
                let u = params(batch, w.len, i, flags);
                let data = Window {
                    start: w.start * d,
                    len: w.len * d,
                };
                batch.dispatch_at(
                    &check,
                    &[
                        (0, u.as_entire_binding()),
                        (1, window_binding(p.data, &data, data.len * 4, "data")?),
                        (3, window_binding(&o.indices, w, w.len * 4, "indices")?),
                        (4, window_binding(&o.distances, w, w.len * 4, "distances")?),
                        (5, whole_prepared()),
                        (7, window_binding(&self.lower, w, w.len * 4, "lower")?),
                        (8, window_binding(&self.list, w, w.len * 4, "list")?),
                        (9, sized(&counts, counts_bytes)),
                        (10, sized(&state, 16)),
                    ],
                    w.len.div_ceil(WG as u64 * SPT),
                )?;
            }
            Ok(())
        };

        if !bounded {
            for w in &wins {
                record_tiles(g, batch, p, o, &prepared, w, Rows::All)?;
            }
            return record_check(batch, DISTANCES);
        }
        let u = params(batch, 0, 0, 0);
        batch.dispatch_at(
            &prepared.pipeline(g, "bound_drift", 0, false)?,
            &[
                (0, u.as_entire_binding()),
                (2, whole(p.codebook)?),
                (5, whole_prepared()),
                (10, sized(&state, 16)),
                (11, whole(&self.last)?),
            ],
            1,
        )?;
        record_check(batch, 0)?;
        let args = batch.indirect_args(wins.len() as u64 * 12);
        let u = params(batch, wins.len() as u64, 0, 0);
        batch.dispatch_at(
            &prepared.pipeline(g, "bound_args", 0, false)?,
            &[
                (0, u.as_entire_binding()),
                (9, sized(&counts, counts_bytes)),
                (12, sized(&args, wins.len() as u64 * 12)),
            ],
            (wins.len() as u64).div_ceil(WG as u64),
        )?;
        for (i, w) in wins.iter().enumerate() {
            let rows = Rows::Listed {
                window: i as u32,
                bindings: [
                    window_binding(&self.lower, w, w.len * 4, "lower")?,
                    window_binding(&self.list, w, w.len * 4, "list")?,
                    sized(&counts, counts_bytes),
                    sized(&state, 16),
                ],
                args: &args,
            };
            record_tiles(g, batch, p, o, &prepared, w, rows)?;
        }
        record_check(batch, DISTANCES)
    }
}
