//! The device engine of the k-means driver.

use crate::assign::{AssignProblem, Assignment, record_assign};
use crate::error::{Result, invalid};
use crate::kmeans::bounds::Bounds;
use crate::kmeans::{
    Engine, KmeansBounds, KmeansOptions, KmeansProblem, KmeansResult, Run, SUM_TILE, StepOut,
};
use crate::runtime::batch::{Batch, sized};
use crate::runtime::context::Context;
use crate::runtime::elementwise::{device_buffer, window_binding};
use crate::runtime::gpu::{Gpu, PipelineKey, UNIFORM_TABLE_BYTES};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::texels::{TEX_W, texel_window};
use crate::runtime::window::{Window, windows};
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

/// Mirror of `KmeansParams` in `shaders/kmeans.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct KmeansParams {
    n: u32,
    k: u32,
    d: u32,
    tile_base: u32,
    n_tiles: u32,
    row: u32,
    first: u32,
    mode: u32,
}

/// What `kmeans_reduce` writes per cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduce {
    /// The mean; an empty cluster keeps its old value (the M-step).
    MeanKeep = 0,
    /// The mean; an empty cluster gets 0.
    MeanZero = 1,
    /// The sum.
    Sum = 2,
}

/// Tiles of subvectors of the per-cluster partial sums: K·d floats per tile, so tiles grow
/// with K to keep the partial sums about the size of the data; at most one bound window of
/// subvectors, in multiples of 64 (output alignment).
pub(crate) fn reduce_tile(g: &Gpu, k: u64, d: u64) -> u64 {
    (1024 * (k / 256).max(1))
        .min(g.max_window / (d * 4) / 64 * 64)
        .max(64)
}

/// Scratch of the per-tile partial sums and counts of n subvectors, K clusters.
pub(crate) struct Partials {
    sums: Tensor,
    counts: Tensor,
    tile: u64,
    /// The kernel that sums each tile per cluster.
    kernel: PartialKernel,
    /// [`PartialKernel::Runs`]: each run's sum of its distances (the objective's partial sums,
    /// written with the distances).
    run_objective: Option<Tensor>,
}

/// How `kmeans_partial*` sums a tile's rows per cluster (all deterministic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartialKernel {
    /// `kmeans_partial_fixed`: fixed-point integer atomics in workgroup memory (small K·d).
    Fixed,
    /// `kmeans_partial_sorted`: rows sorted by cluster in workgroup memory, each read once.
    Sorted,
    /// `kmeans_partial`: each invocation scans the tile for its clusters (large K).
    Scan,
    /// `kmeans_partial_runs` (`…_runs4` with vec4 accesses when d % 4 == 0): each invocation
    /// sums its own run of rows into its own slot (CPU adapters, where workgroup atomics are
    /// dear).
    Runs,
}

impl PartialKernel {
    fn entry(self, d: u64) -> &'static str {
        match self {
            PartialKernel::Fixed => "kmeans_partial_fixed",
            PartialKernel::Sorted => "kmeans_partial_sorted",
            PartialKernel::Scan => "kmeans_partial",
            PartialKernel::Runs if d.is_multiple_of(4) => "kmeans_partial_runs4",
            PartialKernel::Runs => "kmeans_partial_runs",
        }
    }

    /// Workgroups of one dispatch over `rows` rows in tiles of `tile`.
    fn groups(self, rows: u64, tile: u64) -> u64 {
        match self {
            // One invocation per tile.
            PartialKernel::Runs => rows.div_ceil(tile * WG as u64),
            _ => rows.div_ceil(tile),
        }
    }
}

/// Rows per tile of `kmeans_partial_sorted` (`SORT_TILE` in the shader).
const SORT_TILE: u64 = 1024;
/// Rows per tile of `kmeans_partial_fixed`.
const FIX_TILE: u64 = 2048;
/// Workgroup accumulators of `kmeans_partial_fixed` (`FIX_KD`, `FIX_K` in the shader).
const FIX_KD: u64 = 2560;
const FIX_K: u64 = 512;
/// Threads a CPU adapter runs workgroups on: lavapipe's `LP_NUM_THREADS` when set, else the
/// machine's CPUs (its default), at least 1 and at most 256.
fn cpu_threads() -> u64 {
    let threads = std::env::var("LP_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u64));
    threads.clamp(1, 256)
}

/// Rows per invocation of `kmeans_partial_runs`: one workgroup of runs per CPU thread (fewer,
/// longer runs leave fewer partials to reduce and to clear: at 1M × 8, K = 256 on 2 threads,
/// 20 plain iterations took 1.56–1.63 s with 128 runs against 1.69–1.78 s with 489), and at
/// least 4·K rows so that the partials stay within a quarter of the data.
fn run_rows(n: u64, k: u64) -> u64 {
    n.div_ceil(WG as u64 * cpu_threads())
        .max(4 * k)
        .next_multiple_of(64)
}

impl Partials {
    pub(crate) fn new(ctx: &Context, g: &Gpu, n: u64, d: u64, k: u64) -> Result<Self> {
        // The sorted kernel's partials take K·d floats per 1024 rows: used while that stays
        // within twice the data and a tile fits a bound window.
        let fits = |tile: u64| {
            let tiles = n.div_ceil(tile);
            tile * d * 4 <= g.max_window
                && tiles * k <= 2 * n.max(tile)
                && tiles * k * d * 4 <= g.max_binding
        };
        // Multiples of 64 rows keep windows aligned for the distances' bindings.
        let run = run_rows(n, k);
        let (kernel, tile) = if !g.coalesced && fits(run) {
            (PartialKernel::Runs, run)
        } else if k * d <= FIX_KD && k <= FIX_K && fits(FIX_TILE) {
            (PartialKernel::Fixed, FIX_TILE)
        } else if fits(SORT_TILE) {
            (PartialKernel::Sorted, SORT_TILE)
        } else {
            (PartialKernel::Scan, reduce_tile(g, k, d))
        };
        let n_tiles = n.div_ceil(tile);
        if n_tiles * k * d * 4 > g.max_binding || k * d * 4 > g.max_binding {
            return Err(invalid(
                "n_centroids",
                k,
                "partial sums of this problem exceed one storage binding",
            ));
        }
        Ok(Self {
            sums: ctx.empty(n_tiles * k * d, DType::F32)?,
            counts: ctx.empty(n_tiles * k, DType::U32)?,
            tile,
            kernel,
            run_objective: match kernel {
                PartialKernel::Runs => Some(ctx.empty(n_tiles, DType::F32)?),
                _ => None,
            },
        })
    }

    /// Partial sums of the distances [`Partials::record`] writes (their total is the
    /// objective), when its kernel sums them along: then no separate pass is needed.
    pub(crate) fn objective_partials(&self) -> Option<&Tensor> {
        self.run_objective.as_ref()
    }

    /// Records the per-cluster reduction of `data` (n × d) under `assignments` into `out`
    /// (K × d) and `counts` (K); `old` serves [`Reduce::MeanKeep`] (required there, and it
    /// must not share a buffer with `out`). Deterministic: tiles in
    /// order, subvectors of a tile in order. With `distances`, also each subvector's squared
    /// distance to its centroid in `old` (the k-means objective).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        g: &Gpu,
        batch: &mut Batch,
        data: &Tensor,
        assignments: &Tensor,
        (n, d, k): (u64, u64, u64),
        old: Option<&Tensor>,
        out: &Tensor,
        counts: &Tensor,
        mode: Reduce,
        distances: Option<&Tensor>,
    ) -> Result<()> {
        // The fixed-point kernel loops over params.d at run time (see the shader).
        let specialised = (self.kernel != PartialKernel::Fixed).then_some(d);
        let entry = self.kernel.entry(d);
        // Without distances, stand-ins the shader does not touch.
        let stand_in = batch.scratch(4);
        let dist = match (distances, old) {
            (Some(out), Some(old)) => Some((old, out)),
            (Some(_), None) => return Err(invalid("old", "None", "distances need the codebook")),
            _ => None,
        };
        // `kmeans_partial_runs4` binds a uniform copy of the codebook (its CENTROIDS_UB) when
        // it computes distances, the device allows uniform tables and the codebook fits one;
        // else a stand-in (of the length the device's modules declare).
        let uniform_codebook = (entry == "kmeans_partial_runs4").then(|| {
            let copy = batch.uniform_scratch(g.uniform_table_binding());
            let source = dist
                .filter(|_| g.uniform_tables && k * d * 4 <= UNIFORM_TABLE_BYTES)
                .and_then(|(old, _)| device_buffer(old, "old").ok())
                .filter(|(b, _)| b.usage().contains(wgpu::BufferUsages::COPY_SRC));
            if let Some((b, offset)) = source {
                batch.copy(b, offset, &copy, 0, k * d * 4);
            }
            (copy, source.is_some())
        });
        let runs4 = entry == "kmeans_partial_runs4";
        let spec = Specialise {
            dist: dist.is_some(),
            centroids_ub: uniform_codebook.as_ref().is_some_and(|(_, used)| *used),
            data_tex: false,
        };
        for w in windows(n, d * 4, self.tile, g.max_window)? {
            let u = batch.uniform(&KmeansParams {
                n: w.len as u32,
                k: k as u32,
                d: d as u32,
                tile_base: (w.start / self.tile) as u32,
                ..Default::default()
            });
            let rows = Window {
                start: w.start * d,
                len: w.len * d,
            };
            // `kmeans_partial_runs4` reads a texture copy of the rows where the device reads
            // per invocation (see `texel_window`), else binds a 1×1 stand-in.
            let view = if runs4 {
                texel_window(g, batch, data, &rows)?
            } else {
                None
            };
            let partial = kmeans_pipeline(
                g,
                entry,
                self.tile,
                specialised,
                Specialise {
                    data_tex: view.is_some(),
                    ..spec
                },
            )?;
            let view = match (runs4, view) {
                (true, None) => Some(batch.stand_in_texture()),
                (_, view) => view,
            };
            let data = window_binding(data, &rows, rows.len * 4, "data")?;
            let (centroids, row_dist) = match dist {
                Some((old, out)) => (
                    whole(old)?,
                    window_binding(out, &w, w.len * 4, "distances")?,
                ),
                None => (data.clone(), sized(&stand_in, 4)),
            };
            let mut bindings = vec![
                u.as_entire_binding(),
                data,
                window_binding(assignments, &w, w.len * 4, "assignments")?,
                whole(&self.sums)?,
                whole(&self.counts)?,
                centroids,
                row_dist,
            ];
            if let Some(objective) = &self.run_objective {
                bindings.push(whole(objective)?);
            }
            if let Some((copy, _)) = &uniform_codebook {
                bindings.push(sized(copy, g.uniform_table_binding()));
            }
            if let Some(view) = &view {
                bindings.push(wgpu::BindingResource::TextureView(view));
            }
            batch.dispatch(&partial, &bindings, self.kernel.groups(w.len, self.tile))?;
        }
        let u = batch.uniform(&KmeansParams {
            k: k as u32,
            d: d as u32,
            n_tiles: n.div_ceil(self.tile) as u32,
            mode: mode as u32,
            ..Default::default()
        });
        // Without `old` the binding is a stand-in the shader does not read in this mode.
        let old = old.unwrap_or(&self.sums);
        let bindings = [
            u.as_entire_binding(),
            whole(&self.sums)?,
            whole(&self.counts)?,
            whole(old)?,
            whole(out)?,
            whole(counts)?,
        ];
        batch.dispatch(
            &kmeans_pipeline(g, "kmeans_reduce", self.tile, None, Specialise::default())?,
            &bindings,
            (k * d).div_ceil(WG as u64),
        )
    }
}

/// The boolean specialisation constants of `kmeans_partial*`.
#[derive(Clone, Copy, Default)]
struct Specialise {
    /// `DATA_TEX` (`kmeans_partial_runs4`): the rows from a texture copy of the data.
    data_tex: bool,
    /// `DIST`: also each row's distance to its old centroid.
    dist: bool,
    /// `CENTROIDS_UB` (`kmeans_partial_runs4`): the old centroids from a uniform copy.
    centroids_ub: bool,
}

/// A pipeline of `shaders/kmeans.wgsl` with its tile size and, for `kmeans_partial*`, the
/// subvector dimension `D` and the flags of `spec` as specialisation constants.
fn kmeans_pipeline(
    g: &Gpu,
    entry: &'static str,
    tile: u64,
    d: Option<u64>,
    spec: Specialise,
) -> Result<wgpu::ComputePipeline> {
    let mut overrides = vec![("WG", WG), ("TILE", tile as u32)];
    overrides.extend(d.map(|d| ("D", d as u32)));
    if spec.dist {
        overrides.push(("DIST", 1));
    }
    if spec.centroids_ub {
        overrides.push(("CENTROIDS_UB", 1));
    }
    if spec.data_tex {
        overrides.push(("DATA_TEX", 1));
        overrides.push(("TEX_W", TEX_W as u32));
    }
    g.pipeline(PipelineKey {
        family: Family::Kmeans,
        precision: Precision::F32,
        entry,
        overrides,
    })
}

/// Device state of one problem.
struct Problem {
    data: Tensor,
    n: u64,
    d: u64,
    k: u64,
    codebook: Tensor,
    pending: Tensor,
    assignment: Assignment,
    counts: Tensor,
    partials: Partials,
    sums: Tensor,
    mins: Option<Tensor>,
    /// Hamerly bounds of the E-step (when on and dim ≤ 16).
    bounds: Option<Bounds>,
}

pub(crate) struct GpuEngine<'a> {
    ctx: &'a Context,
    g: &'a Gpu,
    problems: Vec<Problem>,
}

impl<'a> GpuEngine<'a> {
    pub(crate) fn new(
        ctx: &'a Context,
        g: &'a Gpu,
        problems: &[KmeansProblem<'_>],
        options: &KmeansOptions,
    ) -> Result<Self> {
        let k = options.n_centroids as u64;
        let mut out = Vec::with_capacity(problems.len());
        for p in problems {
            let d = p.dim as u64;
            let n = p.data.len / d;
            out.push(Problem {
                data: p.data.clone(),
                n,
                d,
                k,
                codebook: ctx.empty(k * d, DType::F32)?,
                pending: ctx.empty(k * d, DType::F32)?,
                assignment: Assignment {
                    indices: ctx.empty(n, DType::U32)?,
                    distances: ctx.empty(n, DType::F32)?,
                },
                counts: ctx.empty(k, DType::U32)?,
                partials: Partials::new(ctx, g, n, d, k)?,
                sums: ctx.empty(n.div_ceil(SUM_TILE), DType::F32)?,
                mins: None,
                bounds: if options.bounds != KmeansBounds::Off && d <= 16 {
                    Some(Bounds::new(ctx, g, n, k, d, options.bounds)?)
                } else {
                    None
                },
            });
        }
        Ok(Self {
            ctx,
            g,
            problems: out,
        })
    }

    /// Records per-[`SUM_TILE`] partial sums of `values` (n f32) into `sums`.
    fn record_sums(&self, batch: &mut Batch, values: &Tensor, sums: &Tensor, n: u64) -> Result<()> {
        let pipeline = kmeans_pipeline(
            self.g,
            "sum_partials",
            SUM_TILE,
            None,
            Specialise::default(),
        )?;
        for w in windows(n, 4, SUM_TILE, self.g.max_window)? {
            let u = batch.uniform(&KmeansParams {
                n: w.len as u32,
                tile_base: (w.start / SUM_TILE) as u32,
                ..Default::default()
            });
            let bindings = [
                u.as_entire_binding(),
                window_binding(values, &w, w.len * 4, "values")?,
                whole(sums)?,
            ];
            batch.dispatch(&pipeline, &bindings, w.len.div_ceil(SUM_TILE))?;
        }
        Ok(())
    }

    pub(crate) fn into_results(self, runs: Vec<Run>) -> Vec<KmeansResult> {
        self.problems
            .into_iter()
            .zip(runs)
            .map(|(p, run)| KmeansResult {
                codebook: p.codebook,
                assignments: p.assignment.indices,
                counts: run.counts,
                objective: run.objective,
                iterations: run.iterations,
                repairs: run.repairs,
                scored: run.scored,
            })
            .collect()
    }
}

/// A binding of all of `t` (at least 4 bytes).
pub(crate) fn whole(t: &Tensor) -> Result<wgpu::BindingResource<'_>> {
    window_binding(
        t,
        &Window {
            start: 0,
            len: t.len,
        },
        (t.len * t.dtype.size()).max(4),
        "scratch",
    )
}

fn f32s(bytes: &[u8]) -> Vec<f64> {
    bytemuck::pod_collect_to_vec::<u8, f32>(bytes)
        .iter()
        .map(|&x| x as f64)
        .collect()
}

impl Engine for GpuEngine<'_> {
    fn dim(&self, p: usize) -> u32 {
        self.problems[p].d as u32
    }

    fn init_rows(&mut self, p: usize, first: u32, rows: &[u64]) -> Result<()> {
        let pr = &self.problems[p];
        let (src, src_off) = device_buffer(&pr.data, "data")?;
        let (dst, dst_off) = device_buffer(&pr.codebook, "codebook")?;
        let mut batch = Batch::new(self.g, "kmeans init")?;
        let row_bytes = pr.d * 4;
        for (i, &r) in rows.iter().enumerate() {
            batch.copy(
                src,
                src_off + r * row_bytes,
                dst,
                dst_off + (first as u64 + i as u64) * row_bytes,
                row_bytes,
            );
        }
        batch.finish().map(|_| ())
    }

    fn pp_round(&mut self, p: usize, c: u32, first: bool) -> Result<Vec<f64>> {
        if self.problems[p].mins.is_none() {
            self.problems[p].mins = Some(self.ctx.empty(self.problems[p].n, DType::F32)?);
        }
        let pr = &self.problems[p];
        let mins = pr.mins.as_ref().unwrap();
        let mut batch = Batch::new(self.g, "kmeans++")?;
        let pipeline = kmeans_pipeline(self.g, "pp_update", SUM_TILE, None, Specialise::default())?;
        for w in windows(pr.n, pr.d * 4, 64, self.g.max_window)? {
            let u = batch.uniform(&KmeansParams {
                n: w.len as u32,
                d: pr.d as u32,
                row: c,
                first: first as u32,
                ..Default::default()
            });
            let data = Window {
                start: w.start * pr.d,
                len: w.len * pr.d,
            };
            let bindings = [
                u.as_entire_binding(),
                window_binding(&pr.data, &data, data.len * 4, "data")?,
                whole(&pr.codebook)?,
                window_binding(mins, &w, w.len * 4, "mins")?,
            ];
            batch.dispatch(&pipeline, &bindings, w.len.div_ceil(WG as u64))?;
        }
        self.record_sums(&mut batch, mins, &pr.sums, pr.n)?;
        let (buffer, offset) = device_buffer(&pr.sums, "sums")?;
        let r = batch.read(buffer, offset, pr.sums.len * 4);
        let mut out = batch.finish()?;
        Ok(f32s(&Batch::take(&mut out, r)))
    }

    fn pp_tile(&mut self, p: usize, tile: u64) -> Result<Vec<f64>> {
        let pr = &self.problems[p];
        let start = tile * SUM_TILE;
        let len = SUM_TILE.min(pr.n - start);
        Ok(f32s(&self.ctx.read_bytes(
            pr.mins.as_ref().unwrap(),
            start * 4,
            len * 4,
        )?))
    }

    fn step(&mut self, active: &[usize]) -> Result<Vec<StepOut>> {
        let g = self.g;
        let mut batch = Batch::new(g, "kmeans step")?;
        let mut reads = Vec::with_capacity(active.len());
        for &p in active {
            let pr = &self.problems[p];
            let problem = AssignProblem {
                data: &pr.data,
                codebook: &pr.codebook,
                dim: pr.d as u32,
            };
            let listed = match &pr.bounds {
                Some(b) => b.record(g, &mut batch, &problem, &pr.assignment)?,
                None => {
                    record_assign(g, &mut batch, &problem, &pr.assignment)?;
                    None
                }
            };
            pr.partials.record(
                g,
                &mut batch,
                &pr.data,
                &pr.assignment.indices,
                (pr.n, pr.d, pr.k),
                Some(&pr.codebook),
                &pr.pending,
                &pr.counts,
                Reduce::MeanKeep,
                Some(&pr.assignment.distances),
            )?;
            let sums = match pr.partials.objective_partials() {
                Some(partial) => partial,
                None => {
                    self.record_sums(&mut batch, &pr.assignment.distances, &pr.sums, pr.n)?;
                    &pr.sums
                }
            };
            let (cb, co) = device_buffer(&pr.counts, "counts")?;
            let (sb, so) = device_buffer(sums, "sums")?;
            reads.push((
                batch.read(cb, co, pr.k * 4),
                batch.read(sb, so, sums.len * 4),
                listed,
            ));
        }
        let mut out = batch.finish()?;
        let mut steps = Vec::with_capacity(active.len());
        for (&p, (c, s, listed)) in active.iter().zip(reads) {
            let objective = f32s(&Batch::take(&mut out, s)).iter().sum();
            let pr = &mut self.problems[p];
            let scored = match &mut pr.bounds {
                Some(b) => {
                    let listed = listed.map(|r| Batch::take(&mut out, r));
                    b.observe(objective, listed.as_deref(), pr.n)
                }
                None => 1.0,
            };
            steps.push(StepOut {
                counts: bytemuck::pod_collect_to_vec(&Batch::take(&mut out, c)),
                objective,
                scored,
            });
        }
        Ok(steps)
    }

    fn distances(&mut self, p: usize) -> Result<Vec<f64>> {
        Ok(self
            .ctx
            .read_f32(&self.problems[p].assignment.distances)?
            .iter()
            .map(|&x| x as f64)
            .collect())
    }

    fn accept(&mut self, p: usize) {
        let pr = &mut self.problems[p];
        std::mem::swap(&mut pr.codebook, &mut pr.pending);
    }

    fn split(&mut self, p: usize, empty: u32, from: u32, eps: &[f32]) -> Result<()> {
        let pr = &self.problems[p];
        let mut batch = Batch::new(self.g, "kmeans repair")?;
        let u = batch.uniform(&KmeansParams {
            d: pr.d as u32,
            n_tiles: empty,
            row: from,
            ..Default::default()
        });
        let e = batch.storage_init(bytemuck::cast_slice(eps));
        let pipeline = kmeans_pipeline(self.g, "split", SUM_TILE, None, Specialise::default())?;
        batch.dispatch(
            &pipeline,
            &[
                u.as_entire_binding(),
                sized(&e, eps.len() as u64 * 4),
                whole(&pr.codebook)?,
            ],
            1,
        )?;
        batch.finish().map(|_| ())
    }
}
