//! Hamerly bounds on the device for the k-means E-step (Drake and Hamerly's variant with the
//! second-nearest centroid tracked on its own): per subvector, lower bounds on the distances to
//! the other centroids, so that only the subvectors whose nearest centroid may have changed are
//! scored against the whole codebook, compacted into a list and dispatched indirectly. Exact:
//! the assignments are those of the plain E-step (the rounding margins are in
//! `shaders/assign.wgsl`), hence the codebooks; the objective's distances come from the M-step
//! in both paths. Pays when the assignments settle (clustered data: the E-step all but
//! vanishes); on uniform data (1M × 8, K = 256) a third to a half of the subvectors are
//! rescanned in the later iterations, a bounded E-step then costing 1.1–1.2 plain ones on
//! lavapipe, whose plain E-step reads its data through a texture (see
//! [`AUTO_STOP_PER_INVOCATION`]). Yinyang group bounds (one bound per group of 16 centroids)
//! rescanned fewer pairs but cost more there (`bench-results/README.md`, 2026-12-07). Kernels:
//! `bound_drift`, `bound_check`, `bound_args` and `assign_tile{N}` with `RESCAN` of
//! `shaders/assign.wgsl`.

use crate::assign::{
    AssignParams, AssignProblem, Assignment, Rows, SPT, WG, record_assign, record_prepare,
    record_tiles,
};
use crate::error::Result;
use crate::kmeans::KmeansBounds;
use crate::kmeans::gpu::whole;
use crate::runtime::batch::{Batch, Readback, sized};
use crate::runtime::context::Context;
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::Gpu;
use crate::runtime::window::{Window, windows};
use crate::tensor::{DType, Tensor};

/// [`KmeansBounds::Auto`] starts the bounds once the objective's relative decrease has been
/// below this at two E-steps in a row (one can be a plateau before a repair)...
const AUTO_START: f64 = 0.01;
/// ...and stops them for good when more than this fraction of the subvectors is rescored at two
/// bounded E-steps in a row (not counting the first, which rescores all), with the
/// per-invocation access pattern (CPU adapters): there the plain E-step reads its data through
/// a texture, and a bounded E-step costs about 0.6 + 1.5 × that fraction of a plain one
/// (lavapipe on an AVX2 host, `bench-results/README.md`, 2026-12-08 03:00Z)...
const AUTO_STOP_PER_INVOCATION: f64 = 0.25;
/// ...or more than this one with the coalesced pattern (GPUs): the break-even of lavapipe's
/// storage-load E-step (0.2 + 1.6 × on an AVX-512 host), unmeasured on GPUs.
const AUTO_STOP_COALESCED: f64 = 0.5;

/// Where a problem's E-steps stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Plain E-steps (the bounds hold nothing yet), after this many in a row whose objective
    /// settled.
    Plain(u32),
    /// Bounded E-steps: how many so far, and how many of the last ones in a row rescored more
    /// than the stop threshold.
    Bounded(u32, u32),
    /// Plain E-steps for good.
    Stopped,
}

/// The bounds of one problem, kept on the device between E-steps, and when to use them.
pub(crate) struct Bounds {
    mode: KmeansBounds,
    /// [`KmeansBounds::Auto`]'s stop threshold on this device.
    stop: f64,
    state: State,
    /// The objective of the previous E-step.
    previous: Option<f64>,
    /// Per subvector (a `lower` record of the shader, 4 u32): lower bounds on the distances
    /// to its second-nearest centroid and to the rest, and the second-nearest (0, 0: none).
    lower: Tensor,
    /// The codebook the bounds hold for (K × d).
    last: Tensor,
    /// Per window, the (window-relative) subvectors to rescan, from the window's start.
    list: Tensor,
}

impl Bounds {
    pub(crate) fn new(
        ctx: &Context,
        g: &Gpu,
        n: u64,
        k: u64,
        d: u64,
        mode: KmeansBounds,
    ) -> Result<Self> {
        Ok(Self {
            mode,
            stop: if g.coalesced {
                AUTO_STOP_COALESCED
            } else {
                AUTO_STOP_PER_INVOCATION
            },
            state: if mode == KmeansBounds::On {
                State::Bounded(0, 0)
            } else {
                State::Plain(0)
            },
            previous: None,
            lower: ctx.empty(4 * n, DType::U32)?,
            last: ctx.empty(k * d, DType::F32)?,
            list: ctx.empty(n, DType::U32)?,
        })
    }

    /// Updates the state with the outcome of an E-step: its objective and, when bounded, how
    /// many subvectors were rescored (the bytes of the readback of [`Bounds::record`]).
    /// Returns the fraction of the subvectors (hence of the subvector-centroid pairs) scored.
    pub(crate) fn observe(&mut self, objective: f64, listed: Option<&[u8]>, n: u64) -> f64 {
        let settled = self
            .previous
            .is_some_and(|prev| prev <= 0.0 || (prev - objective) / prev < AUTO_START);
        self.previous = Some(objective);
        let scored = listed.map_or(1.0, |bytes| {
            let rescored: u64 = bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
                .iter()
                .map(|&c| c as u64)
                .sum();
            rescored as f64 / n as f64
        });
        self.state = match (self.state, listed) {
            (State::Plain(calm), _) if self.mode == KmeansBounds::Auto => {
                match (calm + 1) * settled as u32 {
                    2 => State::Bounded(0, 0),
                    calm => State::Plain(calm),
                }
            }
            (State::Bounded(steps, over), Some(_)) => {
                let over = if steps >= 1 && scored > self.stop {
                    over + 1
                } else {
                    0
                };
                if self.mode == KmeansBounds::Auto && over >= 2 {
                    State::Stopped
                } else {
                    State::Bounded(steps + 1, over)
                }
            }
            (state, _) => state,
        };
        scored
    }

    /// Records an E-step of `p` into `o`, which holds the previous E-step's assignments and
    /// the M-step's distances under that codebook (see [`super::gpu::Partials::record`]): the
    /// same assignments as [`crate::assign::record_assign`]. Bounded, it returns the readback
    /// of the rescored counts for [`Bounds::observe`]. `p.dim` must be at most 16.
    pub(crate) fn record(
        &self,
        g: &Gpu,
        batch: &mut Batch,
        p: &AssignProblem<'_>,
        o: &Assignment,
    ) -> Result<Option<Readback>> {
        if !matches!(self.state, State::Bounded(..)) {
            record_assign(g, batch, p, o)?;
            return Ok(None);
        }
        let prepared = record_prepare(g, batch, p)?;
        let (n, k) = p.validate()?;
        // The widest binding per subvector: its f32 data, or its 16-byte `lower` record.
        let wins = windows(n, (p.dim as u64 * 4).max(16), 64, g.max_window)?;
        let counts_bytes = wins.len() as u64 * 4;
        let counts = batch.scratch(counts_bytes);
        let state_bytes = 16 + k * 4;
        let state = batch.scratch(state_bytes);
        let params = |batch: &mut Batch, n: u64, window: usize| {
            batch.uniform(&AssignParams {
                n: n as u32,
                k: k as u32,
                window: window as u32,
                ..Default::default()
            })
        };
        let lower = |w: &Window| {
            let records = Window {
                start: 4 * w.start,
                len: 4 * w.len,
            };
            window_binding(&self.lower, &records, w.len * 16, "lower")
        };

        let u = params(batch, 0, 0);
        batch.dispatch_at(
            &prepared.pipeline(g, "bound_drift", 0, None, false)?,
            &[
                (0, u.as_entire_binding()),
                (2, whole(p.codebook)?),
                (5, sized(&prepared.buffer, prepared.bytes())),
                (10, sized(&state, state_bytes)),
                (11, whole(&self.last)?),
            ],
            1,
        )?;
        let check = prepared.pipeline(g, "bound_check", 0, None, false)?;
        for (i, w) in wins.iter().enumerate() {
            let u = params(batch, w.len, i);
            batch.dispatch_at(
                &check,
                &[
                    (0, u.as_entire_binding()),
                    (3, window_binding(&o.indices, w, w.len * 4, "indices")?),
                    (4, window_binding(&o.distances, w, w.len * 4, "distances")?),
                    (7, lower(w)?),
                    (8, window_binding(&self.list, w, w.len * 4, "list")?),
                    (9, sized(&counts, counts_bytes)),
                    (10, sized(&state, state_bytes)),
                ],
                w.len.div_ceil(WG as u64 * SPT),
            )?;
        }
        let args = batch.indirect_args(wins.len() as u64 * 12);
        let u = params(batch, wins.len() as u64, 0);
        batch.dispatch_at(
            &prepared.pipeline(g, "bound_args", 0, None, false)?,
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
                    lower(w)?,
                    window_binding(&self.list, w, w.len * 4, "list")?,
                    sized(&counts, counts_bytes),
                    sized(&state, state_bytes),
                ],
                args: &args,
            };
            record_tiles(g, batch, p, o, &prepared, w, rows)?;
        }
        Ok(Some(batch.read(&counts, 0, counts_bytes)))
    }
}
