//! k-means over subvectors, batched over many problems (e.g. every layer of a model): seeded
//! initialisation (uniform sampling or k-means++), Lloyd iterations with the E-step of
//! [`crate::assign`] and a deterministic M-step, repair of empty clusters, early stop.
//! Shader: `shaders/kmeans.wgsl`; reference: [`crate::cpu::kmeans`].
//!
//! One driver runs on both backends through the same `Engine` steps; on a device every problem's
//! step of an iteration is recorded in one submission, its E-step optionally with Hamerly
//! bounds (`kmeans/bounds.rs`), and the objective's distances computed by the M-step.

use crate::error::{Error, Result, invalid};
use crate::philox::{draw_normal, draw_u64, draw_unit};
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::tensor::{DType, Tensor};

/// Subvectors per partial sum of the objective and of the k-means++ weights (`TILE` of
/// `sum_partials`).
pub(crate) const SUM_TILE: u64 = 1024;
/// Repair rounds allowed per E-step before giving up on empty clusters.
const MAX_REPAIRS: u32 = 64;

/// How the initial centroids are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmeansInit {
    /// K distinct subvectors drawn uniformly without replacement.
    Uniform,
    /// k-means++: each next centroid drawn with probability proportional to the squared
    /// distance to the nearest centroid chosen so far (D² sampling, all points used).
    PlusPlus,
}

/// Whether the device E-step uses Hamerly bounds: only the subvectors whose nearest centroid
/// may have changed are then scored against the whole codebook. The results are the same bits
/// either way ([`KmeansResult::scored`] shows the work saved); bounds are used for dim ≤ 16 and
/// ignored by the CPU reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmeansBounds {
    /// Every E-step scores every subvector.
    Off,
    /// Bounds from the first E-step on.
    On,
    /// Bounds once the objective's relative decrease stays below 1 % (two E-steps in a row),
    /// and plain E-steps again for good if more than a quarter (CPU adapters, with the
    /// per-invocation [`crate::AccessPattern`]) or half (GPUs) of the subvectors still need
    /// rescoring at two bounded E-steps in a row. On lavapipe a bounded E-step costs about
    /// 0.6 + 1.5 × the rescored fraction of a plain one, whose data loads are texel fetches;
    /// clustered data settles far below that, uniform data does not.
    Auto,
}

/// Which assignments (and counts) [`KmeansResult`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmeansAssignments {
    /// One more E-step after the last iteration: every subvector's nearest centroid in the
    /// final codebook, and its objective as the last entry of [`KmeansResult::objective`].
    Final,
    /// Those of the last iteration's E-step, without the extra pass over the data: the final
    /// centroids are exactly the means of these members (fairseq's EM keeps these too, and a
    /// k-means that only trains a codebook, such as faiss's, does the same work). A subvector
    /// may then lie nearer another final centroid. With `n_iter = 0`, as [`Self::Final`].
    LastStep,
}

/// Options of [`Context::kmeans`].
#[derive(Clone, Copy, Debug)]
pub struct KmeansOptions {
    /// Number of centroids K (≥ 1, ≤ N).
    pub n_centroids: u32,
    /// Maximum Lloyd iterations (default 20, fairseq's).
    pub n_iter: u32,
    /// Initialisation.
    pub init: KmeansInit,
    /// Seed of the initialisation and of the repair perturbations.
    pub seed: u64,
    /// Early stop when the objective's relative decrease falls below this (0 disables).
    pub tol: f64,
    /// Hamerly bounds in the device E-step (default [`KmeansBounds::Auto`]).
    pub bounds: KmeansBounds,
    /// Which assignments the result holds (default [`KmeansAssignments::Final`]).
    pub assignments: KmeansAssignments,
}

impl KmeansOptions {
    /// `n_centroids` centroids, 20 iterations, k-means++, seed 0, tol 1e-6, automatic bounds,
    /// assignments to the final codebook.
    pub fn new(n_centroids: u32) -> Self {
        Self {
            n_centroids,
            n_iter: 20,
            init: KmeansInit::PlusPlus,
            seed: 0,
            tol: 1e-6,
            bounds: KmeansBounds::Auto,
            assignments: KmeansAssignments::Final,
        }
    }
}

/// One clustering problem: `data` holds N subvectors of `dim` f32 each, row-major.
#[derive(Clone, Copy, Debug)]
pub struct KmeansProblem<'a> {
    /// N × dim subvectors.
    pub data: &'a Tensor,
    /// Subvector dimension, 1..=64.
    pub dim: u32,
}

/// Result of one problem.
#[derive(Clone, Debug)]
pub struct KmeansResult {
    /// K × dim centroids (f32).
    pub codebook: Tensor,
    /// Centroid of every subvector (u32): its nearest one in the final codebook, or with
    /// [`KmeansAssignments::LastStep`] its nearest at the last E-step.
    pub assignments: Tensor,
    /// Subvectors per centroid under `assignments`; none is zero.
    pub counts: Vec<u32>,
    /// Σ squared distances at every E-step: entry i before the i-th M-step, then (with
    /// [`KmeansAssignments::Final`]) one for the final codebook, so `iterations + 1` entries
    /// (`iterations` with [`KmeansAssignments::LastStep`]). On a device each distance is Σ (x − c)²
    /// in f32 and the sum runs in f32 over blocks of at most 1024 rows (on CPU adapters the
    /// blocks of one run of rows are then added in f32), then in f64: within 4e-6 (relative) of
    /// the exact sum for dim ≤ 16.
    pub objective: Vec<f64>,
    /// Lloyd iterations run (fewer than `n_iter` after an early stop).
    pub iterations: u32,
    /// Empty clusters repaired along the way.
    pub repairs: u32,
    /// Per E-step (as `objective`), the fraction of (subvector, centroid) pairs the
    /// nearest-centroid search scored: 1 without bounds, less where [`KmeansBounds`] proved
    /// subvectors' centroids unchanged.
    pub scored: Vec<f64>,
}

/// Progress report passed to the callback of [`Context::kmeans_with_progress`].
#[derive(Clone, Debug)]
pub struct KmeansProgress {
    /// Iteration just finished (0-based).
    pub iteration: u32,
    /// Objective of each problem at this iteration's E-step (`None` once it stopped).
    pub objective: Vec<Option<f64>>,
}

/// What one E-step (plus M-step) reports for a problem.
#[derive(Clone, Debug)]
pub(crate) struct StepOut {
    pub counts: Vec<u32>,
    pub objective: f64,
    /// Fraction of (subvector, centroid) pairs the E-step scored.
    pub scored: f64,
}

/// The primitive steps the k-means driver needs, per problem index.
pub(crate) trait Engine {
    /// Subvector dimension of problem `p`.
    fn dim(&self, p: usize) -> u32;
    /// Centroid `first + i` ← subvector `rows[i]`.
    fn init_rows(&mut self, p: usize, first: u32, rows: &[u64]) -> Result<()>;
    /// k-means++: folds centroid `c` into every point's squared distance to its nearest chosen
    /// centroid (`first`: the first one) and returns the partial sums of those distances per
    /// [`SUM_TILE`] points.
    fn pp_round(&mut self, p: usize, c: u32, first: bool) -> Result<Vec<f64>>;
    /// k-means++: the squared distances of the points of one tile.
    fn pp_tile(&mut self, p: usize, tile: u64) -> Result<Vec<f64>>;
    /// E-step under the current codebook (assignments, counts, objective) and M-step into a
    /// pending codebook, for every problem in `active`.
    fn step(&mut self, active: &[usize]) -> Result<Vec<StepOut>>;
    /// The pending codebook becomes current.
    fn accept(&mut self, p: usize);
    /// Empty cluster `empty` ← centroid `from` + ε; `from` ← itself − ε.
    fn split(&mut self, p: usize, empty: u32, from: u32, eps: &[f32]) -> Result<()>;
    /// Squared distance of every subvector to its centroid at the last E-step.
    fn distances(&mut self, p: usize) -> Result<Vec<f64>>;
}

impl KmeansProblem<'_> {
    /// Checks the problem; returns N.
    pub fn validate(&self, k: u32) -> Result<u64> {
        if !(1..=crate::assign::MAX_DIM).contains(&self.dim) {
            return Err(invalid("dim", self.dim, "must be in 1..=64"));
        }
        check_dtype("data", DType::F32, self.data.dtype)?;
        let d = self.dim as u64;
        if self.data.len == 0 || !self.data.len.is_multiple_of(d) {
            return Err(invalid(
                "data.len()",
                self.data.len,
                "must be a positive multiple of dim",
            ));
        }
        let n = self.data.len / d;
        if k == 0 {
            return Err(invalid("n_centroids", 0, "must be at least 1"));
        }
        if n < k as u64 {
            return Err(invalid(
                "n_centroids",
                k,
                "more centroids than subvectors (N < K)",
            ));
        }
        Ok(n)
    }
}

impl Context {
    /// k-means of every problem with the same options.
    pub fn kmeans(
        &self,
        problems: &[KmeansProblem<'_>],
        options: &KmeansOptions,
    ) -> Result<Vec<KmeansResult>> {
        self.kmeans_with_progress(problems, options, &mut |_| {})
    }

    /// [`Context::kmeans`] calling `progress` after every iteration.
    pub fn kmeans_with_progress(
        &self,
        problems: &[KmeansProblem<'_>],
        options: &KmeansOptions,
        progress: &mut dyn FnMut(&KmeansProgress),
    ) -> Result<Vec<KmeansResult>> {
        if options.tol.is_nan() || options.tol < 0.0 {
            return Err(invalid("tol", options.tol, "must be >= 0"));
        }
        let mut ns = Vec::with_capacity(problems.len());
        for p in problems {
            self.check_owned(p.data, "data")?;
            let n = p.validate(options.n_centroids)?;
            // The min/max observer counts non-finite values in one device pass.
            let shape = crate::WeightShape::matrix(n, p.dim as u64);
            self.observe(p.data, &shape, crate::Observer::MinMax, 8)?;
            ns.push(n);
        }
        match &self.backend {
            Backend::Cpu => {
                let mut engine = crate::cpu::kmeans::CpuEngine::new(problems, options.n_centroids)?;
                let runs = drive(&mut engine, &ns, options, progress)?;
                engine.into_results(self, runs)
            }
            Backend::Gpu(g) => {
                let mut engine = gpu::GpuEngine::new(self, g, problems, options)?;
                let runs = drive(&mut engine, &ns, options, progress)?;
                Ok(engine.into_results(runs))
            }
        }
    }
}

/// Per-problem bookkeeping of the driver.
#[derive(Clone, Debug, Default)]
pub(crate) struct Run {
    pub counts: Vec<u32>,
    pub objective: Vec<f64>,
    pub iterations: u32,
    pub repairs: u32,
    pub scored: Vec<f64>,
}

/// K distinct indices below `n` (Floyd's sampling driven by Philox), in draw order.
fn distinct_rows(seed: u64, n: u64, k: u64) -> Vec<u64> {
    let mut chosen = std::collections::HashSet::with_capacity(k as usize);
    let mut rows = Vec::with_capacity(k as usize);
    for (draw, j) in (n - k..n).enumerate() {
        let t = draw_u64(seed, 1, draw as u64) % (j + 1);
        let pick = if chosen.contains(&t) { j } else { t };
        chosen.insert(pick);
        rows.push(pick);
    }
    rows
}

fn init_plus_plus(engine: &mut dyn Engine, p: usize, n: u64, k: u32, seed: u64) -> Result<()> {
    engine.init_rows(p, 0, &[draw_u64(seed, 2, 0) % n])?;
    for c in 1..k {
        let partials = engine.pp_round(p, c - 1, c == 1)?;
        let total: f64 = partials.iter().sum();
        let row = if total > 0.0 {
            let mut r = draw_unit(seed, 2, c as u64) * total;
            let tile = partials.iter().position(|&s| {
                if r < s {
                    true
                } else {
                    r -= s;
                    false
                }
            });
            let tile = tile.unwrap_or(partials.len() - 1) as u64;
            let mins = engine.pp_tile(p, tile)?;
            let i = mins
                .iter()
                .position(|&m| {
                    if r < m {
                        true
                    } else {
                        r -= m;
                        false
                    }
                })
                .unwrap_or_else(|| mins.iter().rposition(|&m| m > 0.0).unwrap_or(0));
            tile * SUM_TILE + i as u64
        } else {
            // Every point sits on a chosen centroid: fall back to a uniform draw.
            draw_u64(seed, 2, c as u64) % n
        };
        engine.init_rows(p, c, &[row])?;
    }
    Ok(())
}

/// fairseq's repair: each empty cluster takes the centroid of the currently most populated
/// cluster plus a small seeded perturbation ε, which keeps it minus ε.
fn split_largest(
    engine: &mut dyn Engine,
    p: usize,
    out: &StepOut,
    empties: &[u32],
    seed: u64,
    iteration: u32,
    run: &mut Run,
) -> Result<()> {
    let mut counts = out.counts.clone();
    let n: u64 = counts.iter().map(|&c| c as u64).sum();
    let dim = engine.dim(p);
    // A thousandth of the rms distance per component (fairseq's absolute 1e-6 is lost in f32
    // rounding for large weights).
    let scale = 1e-3 * (out.objective / (n.max(1) as f64 * dim as f64)).sqrt() + 1e-12;
    for &e in empties {
        let from = (0..counts.len())
            .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
            .unwrap_or(0);
        let base = ((iteration as u64) << 32) | (e as u64 * dim as u64);
        let eps: Vec<f32> = (0..dim as u64)
            .map(|j| (draw_normal(seed, 3, base + j) * scale) as f32)
            .collect();
        engine.split(p, e, from as u32, &eps)?;
        counts[e as usize] = counts[from] / 2;
        counts[from] -= counts[e as usize];
        run.repairs += 1;
    }
    Ok(())
}

/// Fallback repair: empty cluster i takes the subvector with the i-th largest distance to its
/// centroid (ties to the lowest index).
fn reseed_farthest(
    engine: &mut dyn Engine,
    p: usize,
    empties: &[u32],
    run: &mut Run,
) -> Result<()> {
    let dist = engine.distances(p)?;
    let mut order: Vec<usize> = (0..dist.len()).filter(|&i| dist[i] > 0.0).collect();
    order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    for (&e, &row) in empties.iter().zip(&order) {
        engine.init_rows(p, e, &[row as u64])?;
        run.repairs += 1;
    }
    Ok(())
}

/// Runs the E-step (with repairs) on `active`; returns their step outputs.
fn step_repaired(
    engine: &mut dyn Engine,
    active: &[usize],
    runs: &mut [Run],
    seed: u64,
    iteration: u32,
) -> Result<Vec<StepOut>> {
    let mut outs = engine.step(active)?;
    for attempt in 0..=MAX_REPAIRS {
        let mut again = Vec::new();
        for (slot, &p) in active.iter().enumerate() {
            let out = &outs[slot];
            let empties: Vec<u32> = (0..out.counts.len() as u32)
                .filter(|&c| out.counts[c as usize] == 0)
                .collect();
            if empties.is_empty() {
                continue;
            }
            if attempt == MAX_REPAIRS {
                return Err(Error::InvalidArgument {
                    name: "data",
                    value: format!(
                        "{} empty clusters after {MAX_REPAIRS} repairs",
                        empties.len()
                    ),
                    why: "fewer distinct subvectors than centroids",
                });
            }
            if attempt == 0 {
                split_largest(engine, p, out, &empties, seed, iteration, &mut runs[p])?;
            } else {
                // Splitting did not fill them (e.g. duplicated points, which a split cannot
                // separate): re-seed each at one of the points farthest from their centroids.
                reseed_farthest(engine, p, &empties, &mut runs[p])?;
            }
            again.push((slot, p));
        }
        if again.is_empty() {
            break;
        }
        let redo: Vec<usize> = again.iter().map(|&(_, p)| p).collect();
        for ((slot, _), out) in again.iter().zip(engine.step(&redo)?) {
            outs[*slot] = out;
        }
    }
    Ok(outs)
}

/// The driver shared by both backends.
pub(crate) fn drive(
    engine: &mut dyn Engine,
    ns: &[u64],
    options: &KmeansOptions,
    progress: &mut dyn FnMut(&KmeansProgress),
) -> Result<Vec<Run>> {
    let k = options.n_centroids;
    let mut runs = vec![Run::default(); ns.len()];
    for (p, &n) in ns.iter().enumerate() {
        let seed = options.seed.wrapping_add(p as u64);
        match options.init {
            KmeansInit::Uniform => engine.init_rows(p, 0, &distinct_rows(seed, n, k as u64))?,
            KmeansInit::PlusPlus => init_plus_plus(engine, p, n, k, seed)?,
        }
    }
    let mut active: Vec<usize> = (0..ns.len()).collect();
    for it in 0..options.n_iter {
        if active.is_empty() {
            break;
        }
        let outs = step_repaired(engine, &active, &mut runs, options.seed, it)?;
        let mut report = vec![None; ns.len()];
        let mut still = Vec::new();
        for (&p, out) in active.iter().zip(outs) {
            engine.accept(p);
            let run = &mut runs[p];
            run.objective.push(out.objective);
            run.scored.push(out.scored);
            run.counts = out.counts;
            run.iterations += 1;
            report[p] = Some(out.objective);
            let converged = run.objective.len() >= 2 && {
                let prev = run.objective[run.objective.len() - 2];
                prev <= 0.0 || (prev - out.objective) / prev < options.tol
            };
            if !converged {
                still.push(p);
            }
        }
        progress(&KmeansProgress {
            iteration: it,
            objective: report,
        });
        active = still;
    }
    if options.assignments == KmeansAssignments::LastStep && options.n_iter > 0 {
        return Ok(runs);
    }
    // Final E-step: assignments, counts and objective of the final codebook.
    let all: Vec<usize> = (0..ns.len()).collect();
    let outs = step_repaired(engine, &all, &mut runs, options.seed, options.n_iter)?;
    for (run, out) in runs.iter_mut().zip(outs) {
        run.objective.push(out.objective);
        run.scored.push(out.scored);
        run.counts = out.counts;
    }
    Ok(runs)
}

mod bounds;
pub(crate) mod gpu;
