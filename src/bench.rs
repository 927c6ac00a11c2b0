//! The benchmark report behind `quantnoise bench`: every kernel measured on one
//! [`Context`] against a ceiling measured in the same run: the copy kernels ([`crate::copy`])
//! moving the same bytes for the memory-bound kernels, the FMA kernels ([`crate::fma`]) for the
//! compute-bound ones (nearest-centroid assignment and k-means of product quantization).
//!
//! # Method
//!
//! * Data: an f32 weight of 4096×4096 (64 MiB; 1024×1024 with [`BenchOptions::quick`]) of
//!   uniform values in `[−1, 1)`, blocks of 8, `p = 0.1`, one fixed seed. intN stages use
//!   [`QuantScheme::Given`] per-tensor parameters of the range `[−0.75, 0.75]` (so no observer
//!   is timed, and a quarter of the weights lie outside the representable range, which the
//!   clamped STE zeroes).
//! * PQ data: N = 1,000,000 subvectors of d = 8 f32 (100,000 with [`BenchOptions::quick`]),
//!   uniform in `[−1, 1)` from [`pq_values`] (a counter-based generator that
//!   `benches/faiss_compare.py` reproduces bit for bit), K = 256 centroids. The assignment's
//!   codebook is K rows of the data (rows `i·⌊N/K⌋`). k-means runs with
//!   [`KmeansInit::Uniform`], seed [`PQ_KMEANS_SEED`] and `tol = 0` (so exactly `n_iter`
//!   iterations), with the default [`KmeansBounds::Auto`]; `kmeans_…_bounded` and
//!   `kmeans_…_plain` run the same with Hamerly bounds always on and off (the same results),
//!   and `kmeans_…_laststep` with [`KmeansAssignments::LastStep`] (no final E-step: the work
//!   of a k-means that only trains the codebook, such as faiss's `Kmeans.train`).
//!   `kmeans_20iter_blobs_…` run on clustered data of the same size ([`pq_blobs`]), where the
//!   bounds pay.
//! * Validation first: every case runs once and its output is checked (against the float64 CPU
//!   reference, bit-exactly for copies and observers; assignment indices on a subsample of
//!   subvectors, a different index accepted only where its distance ties the nearest one
//!   within f32 rounding; k-means: every count positive and summing to N, the objective
//!   non-increasing, `n_iter` iterations run; FMA: against the host recurrence on a
//!   subsample). A case that fails is reported with its error and never timed.
//! * Calibration: each case's dispatches per sample `K` is chosen so one sample takes at least
//!   [`BenchOptions::min_sample`] (20 ms), from the fastest of a few single-op estimates (one
//!   when it takes over two samples' time; no extra warm-up when the check took over a
//!   second, e.g. a k-means).
//! * Measurement, interleaved: `rounds` rounds, each taking one sample of every case
//!   (round-robin, the starting case rotating each round), so slow drifts of the machine hit
//!   every case alike. A sample submits `K` back-to-back ops then [`Context::synchronize`]s,
//!   timed with [`Instant`]; its value is the elapsed time divided by `K`. The reported time is
//!   the median of the samples. (A k-means op reads back counts and objective every iteration,
//!   so it is synchronous by itself.)
//! * Device time: where the adapter has timestamp queries, each sample also records the device
//!   time of its ops ([`Context::device_time`]: GPU timestamps at the beginning and end of
//!   every compute pass, summed over the sample, divided by `K`), reported as
//!   `device_median_s` next to the wall-clock median. On a fast GPU a small op takes less
//!   device time than the host needs to encode and submit it: wall-clock time then measures
//!   the host's submission path, device time the kernels. Throughputs and ratios below use
//!   the wall-clock time.
//! * The CPU reference cases (`cpu_…`, via [`Context::cpu`]) are slow: each takes a few
//!   single-op samples after the device rounds. Their data are the same as the device case's,
//!   or its first subvectors when the case name says a smaller N.
//!
//! # Throughput and baselines
//!
//! `bytes` is the traffic an op needs at least: every tensor element it must read plus every
//! one it writes (copy, noise forward and masked STE: 2 tensors; clamped STE also reads the
//! weight: 3; the observer reads the weight only; assignment: the data, the codebook, and an
//! index and a distance per subvector; k-means: the data once per E-step; FMA: its output);
//! uniforms and parameter tables are not counted. `gb_per_s = bytes / median_s / 1e9`.
//!
//! `flops` (compute-bound cases only) counts an FMA as two operations: FMA kernel
//! `2 · 4 · chains · iters · invocations` (2²⁰ invocations, `chains · iters` = 1024 for every
//! variant: 8.6 GFLOP); assignment `2 · d · N · K` (one multiply-add per
//! component of every subvector-centroid pair, the distance expansion's other terms not
//! counted); k-means the same per E-step, `n_iter + 1` E-steps (the final one gives the
//! assignment of the final codebook), M-steps, initialisation and repairs not counted.
//! `gflops = flops / median_s / 1e9`. `items` counts the work in the case's natural unit
//! (`subvectors` for an assignment, `subvector_iterations` = N · n_iter for k-means), reported
//! as `{unit}_per_s`.
//!
//! `ratio_to_baseline` is always *this case's throughput ÷ its baseline's throughput*, in the
//! unit named by `ratio_metric`:
//! * memory-bound device cases (copies included) are compared with the **fastest copy
//!   variant** of the run (named in `_meta.baseline`), in GB/s: 1.0 means the kernel runs at
//!   the copy roofline;
//! * compute-bound device cases (FMA kernels included) are compared with the **fastest FMA
//!   kernel** of the run (`fma_ceiling_c4`, `_c8` or `_c16`: 4, 8 or 16 independent vec4
//!   chains per invocation; named in `_meta.compute_baseline`), in GFLOP/s;
//! * a CPU case is compared with the device case of the same op (`cpu_noise_proxy_…` with
//!   `noise_proxy_…` in GB/s, `cpu_assign_…` and `cpu_kmeans_…` with the device assignment and
//!   k-means in items per second): e.g. 0.05 means the device kernel is 20× faster than the
//!   reference.
//!
//! # JSON
//!
//! [`Report::to_json`] writes one object keyed by case name; each case holds `kind`,
//! `median_s`, `bytes`, `gb_per_s`, `baseline`, `ratio_to_baseline`, `ratio_metric`, plus
//! `min_s`, `max_s`, `samples` (their count), `samples_s` (each sample's seconds per op, in
//! round order), `device_median_s` and `device_samples_s` (the same from device time; null and
//! empty without timestamp queries), `dispatches_per_sample` and `validation` (what was
//! checked; for matmul, noisy-Linear and decoded-tile PQ cases also the kernel configuration
//! each product ran with);
//! compute-bound cases add `flops` and `gflops`, PQ cases `items`, `item_unit` and
//! `{item_unit}_per_s`. A case that failed validation holds only `error`. The key `"_meta"`
//! holds the run's metadata: `adapter`, `backend`, `device_type`, `driver`, `date_utc`
//! (RFC 3339), `host` (the host CPU: `cpu_model`, `arch`, `logical_cpus`, `simd`; on a CPU
//! adapter it is the device), `quantnoise_version`, `quick`, `rounds`, `cpu_rounds`,
//! `command_line`, `filter`, `shape`, `block_size`, `min_sample_s`, `baseline`,
//! `compute_baseline`, `pq` (N, d, K, the data (with `data_sum`, the f64 sum of its values in
//! order, a checksum; `blobs_sum` the same for the clustered data), the k-means settings, the
//! FMA kernel's size), `features`, `max_window_bytes`, `failed` (names of the cases that failed
//! validation) and `units`.

use std::time::{Duration, Instant, SystemTime};

use half::f16;
use serde_json::{Map, Value, json};

use crate::Context;
use crate::assign::{AssignProblem, Assignment};
use crate::copy::CopyVariant;
use crate::error::{Error, Result};
use crate::fma::FmaVariant;
use crate::kmeans::{KmeansAssignments, KmeansBounds, KmeansInit, KmeansOptions, KmeansProblem};
use crate::noise::{Noise, NoiseSpec, QuantScheme, SteMode};
use crate::observer::{Observer, QParams, affine_params};
use crate::philox::NoiseSeed;
use crate::shape::WeightShape;
use crate::tensor::{DType, Tensor};
pub use host::HostCpu;

mod host;
mod int8;
mod matmul;
mod pq_matmul;

/// Options of [`run`].
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// 1024×1024 weights, N = 100,000 PQ subvectors and fewer rounds (a quick look, not a
    /// measurement to quote).
    pub quick: bool,
    /// Interleaved rounds of the device cases (default: 15, or 5 with `quick`).
    pub rounds: Option<usize>,
    /// Samples of each CPU reference case (default: 3).
    pub cpu_rounds: Option<usize>,
    /// Least duration of one sample (default 20 ms).
    pub min_sample: Duration,
    /// The command line that started the run, recorded in the report.
    pub command_line: String,
    /// Print one progress line per case per phase to stderr.
    pub progress: bool,
    /// Only the cases whose name contains one of these substrings (empty: every case), plus
    /// the baselines they are compared with.
    pub filter: Vec<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            quick: false,
            rounds: None,
            cpu_rounds: None,
            min_sample: Duration::from_millis(20),
            command_line: String::new(),
            progress: true,
            filter: Vec::new(),
        }
    }
}

impl BenchOptions {
    /// Interleaved rounds of the device cases.
    pub fn rounds(&self) -> usize {
        self.rounds
            .unwrap_or(if self.quick { 5 } else { 15 })
            .max(1)
    }

    /// Samples of each CPU reference case.
    pub fn cpu_rounds(&self) -> usize {
        self.cpu_rounds.unwrap_or(3).max(1)
    }

    /// Subvectors of the PQ cases: 1,000,000, or 100,000 with `quick`.
    pub fn pq_n(&self) -> u64 {
        if self.quick { 100_000 } else { PQ_N }
    }

    /// Whether the filter selects the case `name`.
    pub fn selects(&self, name: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|f| name.contains(f.as_str()))
    }
}

/// What a case measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseKind {
    /// A copy kernel (a baseline candidate of the memory-bound cases).
    Copy,
    /// An FMA kernel (a baseline candidate of the compute-bound cases).
    Ceiling,
    /// A quantnoise kernel on the device.
    Device,
    /// The CPU reference backend.
    Cpu,
}

/// The measurement of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// Case name, e.g. `noise_proxy_4096x4096_b8`.
    pub name: String,
    /// What the case measures.
    pub kind: CaseKind,
    /// Bytes one op moves (see the module docs).
    pub bytes: u64,
    /// Floating-point operations of one op, for compute-bound cases (see the module docs).
    pub flops: Option<u64>,
    /// Work items of one op and their unit (e.g. `subvectors`), for the PQ cases.
    pub items: Option<(u64, &'static str)>,
    /// Seconds per op of each sample, in measurement order.
    pub samples: Vec<f64>,
    /// Ops submitted per sample (`K`).
    pub dispatches_per_sample: u32,
    /// Median seconds per op.
    pub median_s: f64,
    /// Device seconds per op of each sample, from GPU timestamps ([`Context::device_time`]:
    /// the summed duration of the sample's compute passes divided by `K`); empty
    /// where the adapter has no timestamp queries, and for CPU cases.
    pub device_samples: Vec<f64>,
    /// Name of the case it is compared with (`None` when that case could not be measured).
    pub baseline: Option<String>,
    /// This case's throughput divided by its baseline's, in [`CaseResult::ratio_metric`].
    pub ratio_to_baseline: Option<f64>,
    /// The throughput compared with the baseline: `gb_per_s`, `gflops` or `{unit}_per_s`.
    pub ratio_metric: String,
    /// What validation checked, e.g. `max |err| 0 over 16777216 values`.
    pub validation: String,
}

impl CaseResult {
    /// Throughput in 1e9 bytes per second.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.median_s / 1e9
    }

    /// Throughput in 1e9 floating-point operations per second (compute-bound cases).
    pub fn gflops(&self) -> Option<f64> {
        self.flops.map(|f| f as f64 / self.median_s / 1e9)
    }

    /// Work items per second (PQ cases).
    pub fn items_per_s(&self) -> Option<f64> {
        self.items.map(|(n, _)| n as f64 / self.median_s)
    }

    /// The value of metric `name` (`gb_per_s`, `gflops` or `{unit}_per_s`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "gb_per_s" => Some(self.gb_per_s()),
            "gflops" => self.gflops(),
            _ => match self.items {
                Some((_, unit)) if name == format!("{unit}_per_s") => self.items_per_s(),
                _ => None,
            },
        }
    }

    /// Fastest sample (seconds per op).
    pub fn min_s(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// Slowest sample (seconds per op).
    pub fn max_s(&self) -> f64 {
        self.samples.iter().copied().fold(0.0, f64::max)
    }

    /// Median device seconds per op, where measured.
    pub fn device_median_s(&self) -> Option<f64> {
        (!self.device_samples.is_empty()).then(|| median(&self.device_samples))
    }
}

/// A case that failed validation (and so was not timed).
#[derive(Clone, Debug)]
pub struct CaseFailure {
    /// Case name.
    pub name: String,
    /// Why it failed.
    pub error: String,
}

/// The outcome of [`run`].
#[derive(Clone, Debug)]
pub struct Report {
    /// [`Context::describe`] of the device.
    pub adapter: String,
    /// wgpu backend, e.g. `Vulkan`.
    pub backend: String,
    /// Adapter device type, e.g. `Cpu` for a software rasteriser.
    pub device_type: String,
    /// Driver name and info.
    pub driver: String,
    /// Start of the run, RFC 3339 UTC.
    pub date_utc: String,
    /// The host CPU (on a CPU adapter, the device itself).
    pub host: HostCpu,
    /// Options of the run (the resolved round counts are in `rounds` and `cpu_rounds`).
    pub options: BenchOptions,
    /// Device rounds.
    pub rounds: usize,
    /// CPU reference samples.
    pub cpu_rounds: usize,
    /// Weight shape `(rows, cols)`.
    pub shape: (u64, u64),
    /// Subvectors of the device PQ cases (N).
    pub pq_n: u64,
    /// Sum of the PQ data's values (in f64, in order): a checksum for other implementations.
    pub pq_data_sum: f64,
    /// The same checksum of the clustered PQ data ([`pq_blobs`]).
    pub pq_blobs_sum: f64,
    /// Optional features enabled on the device.
    pub features: crate::KernelFeatures,
    /// Largest bound window in bytes.
    pub max_window_bytes: u64,
    /// Measured cases, in the order they were defined.
    pub cases: Vec<CaseResult>,
    /// Cases that failed validation.
    pub failures: Vec<CaseFailure>,
}

impl Report {
    /// The fastest copy case: the baseline of every memory-bound device case.
    pub fn baseline(&self) -> Option<&CaseResult> {
        fastest(&self.cases, CaseKind::Copy)
    }

    /// The fastest FMA case: the baseline of every compute-bound device case.
    pub fn compute_baseline(&self) -> Option<&CaseResult> {
        fastest(&self.cases, CaseKind::Ceiling)
    }

    /// The case called `name`.
    pub fn case(&self, name: &str) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// The report as a JSON object keyed by case name plus `"_meta"` (see the module docs).
    pub fn to_json(&self) -> String {
        let mut root = Map::new();
        let f = &self.features;
        root.insert(
            "_meta".into(),
            json!({
                "adapter": self.adapter,
                "backend": self.backend,
                "device_type": self.device_type,
                "driver": self.driver,
                "date_utc": self.date_utc,
                "host": self.host.to_json(),
                "quantnoise_version": env!("CARGO_PKG_VERSION"),
                "quick": self.options.quick,
                "rounds": self.rounds,
                "cpu_rounds": self.cpu_rounds,
                "command_line": self.options.command_line,
                "filter": self.options.filter,
                "shape": [self.shape.0, self.shape.1],
                "block_size": BLOCK,
                "p": P,
                "min_sample_s": self.options.min_sample.as_secs_f64(),
                "baseline": self.baseline().map(|b| b.name.clone()),
                "compute_baseline": self.compute_baseline().map(|b| b.name.clone()),
                "pq": {
                    "n": self.pq_n,
                    "dim": PQ_DIM,
                    "k": PQ_K,
                    "data": format!("pq_values(n * dim, {PQ_DATA_SEED:#x}): uniform in [-1, 1)"),
                    "data_seed": PQ_DATA_SEED,
                    "data_sum": self.pq_data_sum,
                    "blobs_sum": self.pq_blobs_sum,
                    "assign_codebook": "rows i * floor(n / k) of the data",
                    "kmeans_init": "uniform",
                    "kmeans_seed": PQ_KMEANS_SEED,
                    "kmeans_tol": 0.0,
                    "kmeans_bounds": "auto (_bounded: on, _plain: off)",
                    "kmeans_assignments": "final (_laststep: last_step)",
                    "blobs_data": "pq_blobs(n, data_seed): 400 clusters",
                    "fma_invocations": FMA_INVOCATIONS,
                    "fma_chain_iters": FMA_CHAIN_ITERS,
                },
                "features": {
                    "shader_f16": f.shader_f16,
                    "subgroups": f.subgroups,
                    "timestamp_query": f.timestamp_query,
                    "float32_atomics": f.float32_atomics,
                },
                "max_window_bytes": self.max_window_bytes,
                "failed": self.failures.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                "units": {
                    "median_s": "seconds per op, median over the samples",
                    "samples_s": "seconds per op of each sample, in round order (device cases: \
                                  one per round, so two cases' samples pair up by round)",
                    "device_median_s": "median over the samples of the device time per op \
                                        (GPU timestamps around each compute pass; null without \
                                        timestamp queries)",
                    "device_samples_s": "device seconds per op of each sample, in round order",
                    "bytes": "bytes read plus bytes written by one op (at least)",
                    "gb_per_s": "bytes / median_s / 1e9",
                    "flops": "floating-point operations of one op, an FMA counting 2",
                    "gflops": "flops / median_s / 1e9",
                    "items": "work items of one op, in item_unit",
                    "ratio_to_baseline": "ratio_metric / the baseline case's ratio_metric",
                },
            }),
        );
        for c in &self.cases {
            let mut case = json!({
                "kind": format!("{:?}", c.kind).to_lowercase(),
                "median_s": c.median_s,
                "min_s": c.min_s(),
                "max_s": c.max_s(),
                "bytes": c.bytes,
                "gb_per_s": c.gb_per_s(),
                "baseline": c.baseline,
                "ratio_to_baseline": c.ratio_to_baseline,
                "ratio_metric": c.ratio_metric,
                "samples": c.samples.len(),
                "samples_s": c.samples,
                "device_median_s": c.device_median_s(),
                "device_samples_s": c.device_samples,
                "dispatches_per_sample": c.dispatches_per_sample,
                "validation": c.validation,
            });
            let fields = case.as_object_mut().expect("an object");
            if let (Some(flops), Some(gflops)) = (c.flops, c.gflops()) {
                fields.insert("flops".into(), json!(flops));
                fields.insert("gflops".into(), json!(gflops));
            }
            if let (Some((n, unit)), Some(per_s)) = (c.items, c.items_per_s()) {
                fields.insert("items".into(), json!(n));
                fields.insert("item_unit".into(), json!(unit));
                fields.insert(format!("{unit}_per_s"), json!(per_s));
            }
            root.insert(c.name.clone(), case);
        }
        for c in &self.failures {
            root.insert(c.name.clone(), json!({ "error": c.error }));
        }
        serde_json::to_string_pretty(&Value::Object(root)).expect("a JSON value always serialises")
    }

    /// A human-readable table of the cases.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} — {}x{} f32, PQ N = {} x {PQ_DIM}, K = {PQ_K}, {} rounds{} — {}\n",
            self.adapter,
            self.shape.0,
            self.shape.1,
            self.pq_n,
            self.rounds,
            if self.options.quick { " (quick)" } else { "" },
            self.date_utc
        );
        s += &format!("host CPU: {}\n", self.host);
        if let Some(b) = self.baseline() {
            s += &format!(
                "baseline of memory-bound device cases: {} ({:.2} GB/s)\n",
                b.name,
                b.gb_per_s()
            );
        }
        if let Some(b) = self.compute_baseline() {
            s += &format!(
                "baseline of compute-bound device cases: {} ({:.2} GFLOP/s)\n",
                b.name,
                b.gflops().unwrap_or(f64::NAN)
            );
        }
        let width = self
            .cases
            .iter()
            .map(|c| c.name.len())
            .chain(self.failures.iter().map(|c| c.name.len()))
            .max()
            .unwrap_or(4);
        s += &format!(
            "{:<width$}  {:>11}  {:>9}  {:>9}  {:>9}  {:>12}  {:>8}  {:>4}  {}\n",
            "case", "median ms", "device ms", "GB/s", "GFLOP/s", "M items/s", "ratio", "K", "vs"
        );
        for c in &self.cases {
            let ratio = c
                .ratio_to_baseline
                .map_or("-".into(), |r| format!("{r:.3}"));
            let vs = match &c.baseline {
                Some(b) => format!("{b} ({})", c.ratio_metric),
                None => "-".into(),
            };
            s += &format!(
                "{:<width$}  {:>11.3}  {:>9}  {:>9.3}  {:>9}  {:>12}  {:>8}  {:>4}  {}\n",
                c.name,
                c.median_s * 1e3,
                c.device_median_s()
                    .map_or("-".into(), |d| format!("{:.3}", d * 1e3)),
                c.gb_per_s(),
                c.gflops().map_or("-".into(), |g| format!("{g:.2}")),
                c.items_per_s()
                    .map_or("-".into(), |v| format!("{:.3}", v / 1e6)),
                ratio,
                c.dispatches_per_sample,
                vs
            );
        }
        for c in &self.failures {
            s += &format!("{:<width$}  FAILED VALIDATION: {}\n", c.name, c.error);
        }
        s
    }
}

/// The fastest case of `kind`: by GB/s for copies, by GFLOP/s for FMA kernels.
fn fastest(cases: &[CaseResult], kind: CaseKind) -> Option<&CaseResult> {
    let key = |c: &CaseResult| {
        if kind == CaseKind::Ceiling {
            c.gflops().unwrap_or(0.0)
        } else {
            c.gb_per_s()
        }
    };
    cases
        .iter()
        .filter(|c| c.kind == kind)
        .max_by(|a, b| key(a).total_cmp(&key(b)))
}

const BLOCK: u32 = 8;
const P: f64 = 0.1;
const CLIP: f64 = 0.75;
const SEED: NoiseSeed = NoiseSeed {
    seed: 0x005e_ed0f_9a11,
    step: 7,
};

/// Subvectors of the PQ cases (without `quick`).
pub const PQ_N: u64 = 1_000_000;
/// Subvector dimension of the PQ cases.
pub const PQ_DIM: u32 = 8;
/// Centroids of the PQ cases.
pub const PQ_K: u32 = 256;
/// Seed of the PQ data ([`pq_values`]).
pub const PQ_DATA_SEED: u64 = 0x0051_ab5e_ed00;
/// Seed of the k-means cases' initialisation ([`KmeansOptions::seed`]).
pub const PQ_KMEANS_SEED: u64 = 7;
/// Invocations of one FMA op.
pub const FMA_INVOCATIONS: u64 = 1 << 20;
/// Chains × iterations of every invocation of one FMA op (the same work for every variant:
/// `FMA_CHAIN_ITERS / chains` iterations), so one op is `8 · FMA_CHAIN_ITERS ·
/// FMA_INVOCATIONS` FLOPs (8.6 GFLOP).
pub const FMA_CHAIN_ITERS: u32 = 1024;
/// Subvectors whose assignment is checked against the reference.
const ASSIGN_CHECKED: u64 = 20_000;
/// Largest N of the CPU reference cases (their data: the first subvectors).
const CPU_PQ_MAX_N: u64 = 1_000_000;

/// `n` deterministic values uniform in `[−1, 1)`: value `i` is the SplitMix64 output of the
/// state `seed + (i + 1) · 0x9E3779B97F4A7C15` (wrapping), its top 24 bits scaled to `[0, 1)`,
/// times 2, minus 1. Counter-based, so other languages reproduce it exactly (see
/// `benches/faiss_compare.py`).
pub fn pq_values(n: u64, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Clustered PQ data: `n` subvectors of [`PQ_DIM`], subvector `i` around centre `i·7919 mod
/// 400` of 400 centres from [`pq_values`]`(400·d, seed)`, plus per component 0.05 × the sum of
/// 3 values of [`pq_values`]`(3·n·d, seed + 1)` (the `kmeans_20iter_blobs_…` cases: data where
/// k-means' assignments settle, unlike uniform data).
pub fn pq_blobs(n: u64, seed: u64) -> Vec<f32> {
    let d = PQ_DIM as usize;
    let centres = pq_values(400 * d as u64, seed);
    let noise = pq_values(3 * n * d as u64, seed.wrapping_add(1));
    (0..n as usize * d)
        .map(|e| {
            let (i, j) = (e / d, e % d);
            let jitter: f32 = noise[3 * e..3 * e + 3].iter().sum();
            centres[(i * 7919 % 400) * d + j] + 0.05 * jitter
        })
        .collect()
}

/// The k-means options of the `kmeans_{n_iter}iter_…` cases.
pub fn pq_kmeans_options(n_iter: u32) -> KmeansOptions {
    KmeansOptions {
        n_centroids: PQ_K,
        n_iter,
        init: KmeansInit::Uniform,
        seed: PQ_KMEANS_SEED,
        tol: 0.0,
        bounds: KmeansBounds::Auto,
        assignments: KmeansAssignments::Final,
    }
}

/// The assignment cases' codebook: rows `i·⌊n/K⌋` of `data` (`n` rows of [`PQ_DIM`]).
pub fn pq_codebook(data: &[f32]) -> Vec<f32> {
    let d = PQ_DIM as usize;
    let stride = data.len() / d / PQ_K as usize;
    (0..PQ_K as usize)
        .flat_map(|i| data[i * stride * d..(i * stride + 1) * d].iter().copied())
        .collect()
}

type Op<'a> = Box<dyn Fn() -> Result<()> + 'a>;
/// `Ok(Ok(summary))`: valid; `Ok(Err(why))`: wrong output; `Err`: the op failed.
type Check<'a> = Box<dyn Fn() -> Result<std::result::Result<String, String>> + 'a>;

struct Case<'a> {
    name: String,
    kind: CaseKind,
    bytes: u64,
    flops: Option<u64>,
    items: Option<(u64, &'static str)>,
    op: Op<'a>,
    check: Check<'a>,
}

fn tolerances(f16: bool) -> (f64, f64) {
    if f16 { (1e-4, 2e-3) } else { (1e-7, 1e-5) }
}

/// A noise forward case: `out = ψ(weight)`, checked against the reference on `host` (the
/// weight's stored values).
#[allow(clippy::too_many_arguments)]
fn forward_case<'a>(
    ctx: &'a Context,
    shape: WeightShape,
    name: String,
    spec: NoiseSpec,
    weight: &'a Tensor,
    out: &'a Tensor,
    host: &'a [f64],
    f16: bool,
) -> Case<'a> {
    let step = match &spec.stages[0] {
        Noise::IntN {
            scheme: QuantScheme::Given(q),
            ..
        } => q.scale[0] as f64,
        _ => 0.0,
    };
    let spec2 = spec.clone();
    let (atol, rtol) = tolerances(f16);
    Case {
        name,
        kind: CaseKind::Device,
        bytes: 2 * weight.size_bytes(),
        flops: None,
        items: None,
        op: Box::new(move || {
            ctx.noise_forward(weight, out, shape, &spec, SEED, None)
                .map(|_| ())
        }),
        check: Box::new(move || {
            ctx.noise_forward(weight, out, shape, &spec2, SEED, None)?;
            let want = crate::cpu::noise::noise_forward(host, &shape, &spec2, SEED);
            Ok(compare(&ctx.read_f32(out)?, &want, atol, rtol, step))
        }),
    }
}

/// An STE backward case, checked against the reference on `hosts` (gradient, weight).
#[allow(clippy::too_many_arguments)]
fn backward_case<'a>(
    ctx: &'a Context,
    shape: WeightShape,
    name: String,
    spec: NoiseSpec,
    mode: SteMode,
    grad: &'a Tensor,
    weight: &'a Tensor,
    out: &'a Tensor,
    hosts: (&'a [f64], &'a [f64]),
    f16: bool,
) -> Case<'a> {
    let spec2 = spec.clone();
    let (atol, rtol) = tolerances(f16);
    let tensors = if mode == SteMode::Clamped { 3 } else { 2 };
    Case {
        name,
        kind: CaseKind::Device,
        bytes: tensors * grad.size_bytes(),
        flops: None,
        items: None,
        op: Box::new(move || ctx.ste_backward(grad, weight, out, shape, &spec, SEED, mode)),
        check: Box::new(move || {
            ctx.ste_backward(grad, weight, out, shape, &spec2, SEED, mode)?;
            let want = crate::cpu::ste::ste_backward(hosts.0, hosts.1, &shape, &spec2, SEED, mode);
            Ok(compare(&ctx.read_f32(out)?, &want, atol, rtol, 0.0))
        }),
    }
}

/// The FMA kernel `variant` over `out` ([`FMA_CHAIN_ITERS`]` / chains` iterations), checked
/// against the host recurrence on a subsample of invocations.
fn fma_case<'a>(ctx: &'a Context, variant: FmaVariant, out: &'a Tensor) -> Case<'a> {
    let iters = FMA_CHAIN_ITERS / variant.chains();
    Case {
        name: format!("fma_ceiling_c{}", variant.chains()),
        kind: CaseKind::Ceiling,
        bytes: out.size_bytes(),
        flops: Some(variant.flops(out.len(), iters)),
        items: None,
        op: Box::new(move || ctx.fma_kernel(variant, out, iters)),
        check: Box::new(move || {
            ctx.write(out, &vec![f32::NAN; out.len() as usize])?;
            ctx.fma_kernel(variant, out, iters)?;
            let got = ctx.read_f32(out)?;
            let stride = (got.len() / 4096).max(1);
            let (mut max_rel, mut exact, mut checked) = (0.0f64, 0usize, 0usize);
            for i in (0..got.len()).step_by(stride) {
                let want = variant.reference(i as u32, iters);
                let rel = ((got[i] as f64 - want as f64) / want as f64).abs();
                // NaN fails too. 1e-4: the rounding of an unfused multiply-add, accumulated.
                if rel.is_nan() || rel > 1e-4 {
                    return Ok(Err(format!(
                        "invocation {i}: got {}, expected {want}",
                        got[i]
                    )));
                }
                max_rel = max_rel.max(rel);
                exact += usize::from(got[i] == want);
                checked += 1;
            }
            Ok(Ok(format!(
                "{checked} of {} values vs the host recurrence: {exact} bit-exact, max rel err \
                 {max_rel:.1e}",
                got.len()
            )))
        }),
    }
}

/// Squared L2 distance in f64.
fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Checks a device assignment of `data` to `codebook` (rows of [`PQ_DIM`]) against the
/// reference on about [`ASSIGN_CHECKED`] evenly spaced subvectors. A different index passes
/// only where its distance ties the nearest one within f32 rounding of the distance expansion
/// (`1e-5 · (|x|² + |c|²)`); the returned distance must match the nearest distance within the
/// same tolerance.
fn check_assignment(
    data: &[f32],
    codebook: &[f32],
    indices: &[u32],
    distances: &[f32],
) -> std::result::Result<String, String> {
    let d = PQ_DIM as usize;
    let n = data.len() / d;
    if indices.len() != n || distances.len() != n {
        return Err(format!(
            "{} indices and {} distances for {n} subvectors",
            indices.len(),
            distances.len()
        ));
    }
    let rows: Vec<usize> = (0..n)
        .step_by((n / ASSIGN_CHECKED as usize).max(1))
        .collect();
    let sub: Vec<f64> = rows
        .iter()
        .flat_map(|&r| data[r * d..(r + 1) * d].iter().map(|&x| x as f64))
        .collect();
    let cb: Vec<f64> = codebook.iter().map(|&x| x as f64).collect();
    let k = cb.len() / d;
    let (want_idx, want_dist) = crate::cpu::assign::assign(&sub, &cb, d);
    let (mut ties, mut max_err) = (0usize, 0.0f64);
    for (j, &r) in rows.iter().enumerate() {
        let (got, want) = (indices[r] as usize, want_idx[j] as usize);
        if got >= k {
            return Err(format!("subvector {r}: index {got} of {k} centroids"));
        }
        let x = &sub[j * d..(j + 1) * d];
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
        let tol = 1e-5 * (norm(x) + norm(&cb[want * d..(want + 1) * d])) + 1e-7;
        if got != want {
            let excess = sq_dist(x, &cb[got * d..(got + 1) * d]) - want_dist[j];
            if excess > tol {
                return Err(format!(
                    "subvector {r}: centroid {got}, expected {want} ({excess:.3e} farther, \
                     tolerance {tol:.1e})"
                ));
            }
            ties += 1;
        }
        let err = (distances[r] as f64 - want_dist[j]).abs();
        if err.is_nan() || err > tol {
            return Err(format!(
                "subvector {r}: distance {}, expected {} (|err| {err:.3e} > {tol:.1e})",
                distances[r], want_dist[j]
            ));
        }
        max_err = max_err.max(err);
    }
    if ties * 100 > rows.len() {
        return Err(format!(
            "{ties} of {} indices differ (all near-ties, but too many)",
            rows.len()
        ));
    }
    Ok(format!(
        "{} of {n} subvectors vs the reference: {ties} near-tie(s) with another index, \
         max |distance err| {max_err:.2e}",
        rows.len()
    ))
}

/// The assignment of `data` (`host`: its values) to `codebook`, into `out`.
fn assign_case<'a>(
    ctx: &'a Context,
    name: String,
    data: (&'a Tensor, &'a [f32]),
    codebook: (&'a Tensor, &'a [f32]),
    out: &'a Assignment,
) -> Case<'a> {
    let n = data.0.len() / PQ_DIM as u64;
    let d = PQ_DIM as u64;
    let k = PQ_K as u64;
    let elem = data.0.dtype().size();
    let problem = AssignProblem {
        data: data.0,
        codebook: codebook.0,
        dim: PQ_DIM,
    };
    Case {
        name,
        kind: CaseKind::Device,
        bytes: n * d * elem + k * d * elem + n * 8,
        flops: Some(2 * d * n * k),
        items: Some((n, "subvectors")),
        op: Box::new(move || ctx.assign_into(&[problem], std::slice::from_ref(out))),
        check: Box::new(move || {
            ctx.write(&out.indices, &vec![u32::MAX; n as usize])?;
            ctx.assign_into(&[problem], std::slice::from_ref(out))?;
            let indices = ctx.read_u32(&out.indices)?;
            let distances = ctx.read_f32(&out.distances)?;
            Ok(check_assignment(data.1, codebook.1, &indices, &distances))
        }),
    }
}

/// Checks a k-means result of `n` subvectors after `n_iter` iterations with `tol = 0` and
/// `e_steps` E-steps (`n_iter`, plus one with [`KmeansAssignments::Final`]).
fn check_kmeans(
    r: &crate::KmeansResult,
    n: u64,
    n_iter: u32,
    e_steps: u32,
) -> std::result::Result<String, String> {
    let sum: u64 = r.counts.iter().map(|&c| c as u64).sum();
    if r.counts.len() != PQ_K as usize || sum != n || r.counts.contains(&0) {
        return Err(format!(
            "{} counts summing to {sum} (min {:?}), expected {PQ_K} positive counts summing to {n}",
            r.counts.len(),
            r.counts.iter().min()
        ));
    }
    if r.iterations != n_iter || r.objective.len() != e_steps as usize {
        return Err(format!(
            "{} iterations and {} objectives, expected {n_iter} and {e_steps} (tol = 0)",
            r.iterations,
            r.objective.len(),
        ));
    }
    for (i, w) in r.objective.windows(2).enumerate() {
        // f32 partial sums: allow a relative 1e-6 of rounding.
        if w[1].is_nan() || w[1] > w[0] * (1.0 + 1e-6) {
            return Err(format!(
                "objective rose at E-step {}: {} -> {}",
                i + 1,
                w[0],
                w[1]
            ));
        }
    }
    Ok(format!(
        "objective {:.6e} -> {:.6e} over {} E-steps, non-increasing; counts sum to {n} \
         (min {}, max {}); {} repair(s); pairs scored per E-step: mean {:.3}, last {:.3}",
        r.objective[0],
        r.objective[r.objective.len() - 1],
        r.objective.len(),
        r.counts.iter().min().unwrap_or(&0),
        r.counts.iter().max().unwrap_or(&0),
        r.repairs,
        r.scored.iter().sum::<f64>() / r.scored.len().max(1) as f64,
        r.scored.last().unwrap_or(&1.0),
    ))
}

/// k-means of `data` with [`pq_kmeans_options`]`(n_iter)`, `bounds` and `assignments`.
fn kmeans_case<'a>(
    ctx: &'a Context,
    name: String,
    n_iter: u32,
    (bounds, assignments): (KmeansBounds, KmeansAssignments),
    data: &'a Tensor,
) -> Case<'a> {
    let n = data.len() / PQ_DIM as u64;
    let d = PQ_DIM as u64;
    let problem = KmeansProblem { data, dim: PQ_DIM };
    let options = KmeansOptions {
        bounds,
        assignments,
        ..pq_kmeans_options(n_iter)
    };
    let e_steps = n_iter + u32::from(assignments == KmeansAssignments::Final);
    Case {
        name,
        kind: CaseKind::Device,
        bytes: e_steps as u64 * n * d * 4,
        flops: Some(e_steps as u64 * 2 * d * n * PQ_K as u64),
        items: Some((n * n_iter as u64, "subvector_iterations")),
        op: Box::new(move || ctx.kmeans(&[problem], &options).map(|_| ())),
        check: Box::new(move || {
            let r = ctx.kmeans(&[problem], &options)?;
            Ok(check_kmeans(&r[0], n, n_iter, e_steps))
        }),
    }
}

/// Deterministic uniform values in `[−1, 1)` (xorshift64*).
fn values(n: u64, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn int_spec(bits: u8) -> NoiseSpec {
    let (s, z) = affine_params(-CLIP, CLIP, bits);
    NoiseSpec {
        block_size: BLOCK,
        stages: vec![Noise::IntN {
            p: P,
            bits,
            scheme: QuantScheme::Given(QParams::per_tensor(s, z)),
        }],
    }
}

/// Compares a device output with the reference: every value within `atol + rtol·|want|`,
/// except (with `step > 0`, for intN rounding ties computed differently in f32 and f64) at
/// most 1 in 10⁴ values off by at most one quantization step.
fn compare(
    got: &[f32],
    want: &[f64],
    atol: f64,
    rtol: f64,
    step: f64,
) -> std::result::Result<String, String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    let (mut max_err, mut off) = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        if err.is_nan() {
            return Err(format!("value {i}: got {g}, expected {w}"));
        }
        let tol = atol + rtol * w.abs();
        if err > tol {
            if step == 0.0 || err > step * 1.001 + tol {
                return Err(format!(
                    "value {i}: got {g}, expected {w} (|err| {err:.3e} > {tol:.3e})"
                ));
            }
            off += 1;
        } else {
            max_err = max_err.max(err);
        }
    }
    if off as f64 > got.len() as f64 * 1e-4 {
        return Err(format!(
            "{off} of {} values off by one quantization step (rounding ties?)",
            got.len()
        ));
    }
    Ok(format!(
        "max |err| {max_err:.2e} over {} values, {off} one-step tie(s)",
        got.len()
    ))
}

/// `YYYY-MM-DDThh:mm:ssZ` of a system time.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Wall time of `iters` ops submitted back to back, then a synchronize (the report's samples and
/// the criterion benches' `iter_custom` measure this way).
pub fn time_ops(ctx: &Context, iters: u64, op: impl Fn() -> Result<()>) -> Result<Duration> {
    let t = Instant::now();
    for _ in 0..iters {
        op()?;
    }
    ctx.synchronize()?;
    Ok(t.elapsed())
}

/// One sample: `k` ops back to back, then a synchronize; seconds per op.
fn sample(ctx: &Context, op: &Op, k: u32) -> Result<f64> {
    Ok(time_ops(ctx, k as u64, op)?.as_secs_f64() / k as f64)
}

/// [`sample`] with the device time per op of the same ops (where the adapter has timestamp
/// queries and every submission was timed).
fn timed_sample(ctx: &Context, op: &Op, k: u32) -> Result<(f64, Option<f64>)> {
    let (wall, device) = ctx.device_time(|| sample(ctx, op, k))?;
    Ok((
        wall,
        device.and_then(|d| d.complete()).map(|t| t / k as f64),
    ))
}

fn per_sample(min_sample: Duration, per_op: f64) -> u32 {
    (min_sample.as_secs_f64() / per_op.max(1e-9))
        .ceil()
        .clamp(1.0, 4096.0) as u32
}

/// Runs the benchmark report on `ctx`, a device context (the CPU reference is measured as one
/// of the cases). Device errors abort the run; a case whose output is wrong is recorded in
/// [`Report::failures`] and not timed.
pub fn run(ctx: &Context, options: &BenchOptions) -> Result<Report> {
    if ctx.is_cpu() {
        return Err(Error::NoAdapter(
            "the benchmark report measures a device; the CPU reference is measured as one of its cases".into(),
        ));
    }
    let date_utc = rfc3339_utc(SystemTime::now());
    let progress = |line: String| {
        if options.progress {
            eprintln!("{line}");
        }
    };
    let (rows, cols) = if options.quick {
        (1024u64, 1024u64)
    } else {
        (4096, 4096)
    };
    let shape = WeightShape::matrix(rows, cols);
    let n = shape.numel();
    let tag = format!("{rows}x{cols}");
    progress(format!(
        "[setup] {} — {tag} f32 weights ({} MiB)",
        ctx.describe(),
        (n * 4) >> 20
    ));

    let w = values(n, 1);
    let g = values(n, 2);
    let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
    let weight = ctx.upload(&w)?;
    let grad = ctx.upload(&g)?;
    let out = ctx.empty(n, DType::F32)?;

    // PQ data, the assignment's codebook and outputs, the FMA kernel's output.
    let pq_n = options.pq_n();
    let pq_tag = format!("{pq_n}x{PQ_DIM}_k{PQ_K}");
    let pq_host = pq_values(pq_n * PQ_DIM as u64, PQ_DATA_SEED);
    let pq_cb_host = pq_codebook(&pq_host);
    let pq_data = ctx.upload(&pq_host)?;
    let pq_blobs_host = pq_blobs(pq_n, PQ_DATA_SEED);
    let pq_blobs_sum = pq_blobs_host.iter().map(|&x| x as f64).sum();
    let pq_blobs = ctx.upload(&pq_blobs_host)?;
    drop(pq_blobs_host);
    let pq_cb = ctx.upload(&pq_cb_host)?;
    let pq_out = Assignment {
        indices: ctx.empty(pq_n, DType::U32)?,
        distances: ctx.empty(pq_n, DType::F32)?,
    };
    let fma_out = ctx.empty(FMA_INVOCATIONS, DType::F32)?;
    // The same PQ data and codebook stored as f16 (host: the rounded values).
    let pq_f16 = if ctx.features().shader_f16 {
        let round = |v: &[f32]| -> Vec<f16> { v.iter().map(|&x| f16::from_f32(x)).collect() };
        let (x, c) = (round(&pq_host), round(&pq_cb_host));
        let widen = |v: &[f16]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
        Some((ctx.upload(&x)?, widen(&x), ctx.upload(&c)?, widen(&c)))
    } else {
        None
    };
    progress(format!(
        "[setup] PQ: {pq_n} subvectors of {PQ_DIM} f32, K = {PQ_K}"
    ));

    let proxy = NoiseSpec::proxy(BLOCK, P);
    let int8 = int_spec(8);
    let int4 = int_spec(4);

    // f16 data (cases below).
    let f16_data = if ctx.features().shader_f16 {
        let w16: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
        let g16: Vec<f16> = g.iter().map(|&x| f16::from_f32(x)).collect();
        let host = |v: &[f16]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
        Some((
            ctx.upload(&w16)?,
            ctx.upload(&g16)?,
            ctx.empty(n, DType::F16)?,
            host(&w16),
            host(&g16),
        ))
    } else {
        progress("[setup] no shader-f16 on this adapter: f16 cases skipped".into());
        None
    };

    let mut cases: Vec<Case> = Vec::new();
    // Copies.
    for variant in CopyVariant::benchmarked() {
        let (weight, out) = (&weight, &out);
        cases.push(Case {
            name: format!("{}_{tag}", variant.name()),
            kind: CaseKind::Copy,
            bytes: 2 * n * 4,
            flops: None,
            items: None,
            op: Box::new(move || ctx.copy_kernel(variant, weight, out)),
            check: Box::new(move || {
                ctx.write(out, &vec![f32::NAN; n as usize])?;
                ctx.copy_kernel(variant, weight, out)?;
                Ok(if ctx.read_raw(out)? == ctx.read_raw(weight)? {
                    Ok(format!("bit-exact over {n} values"))
                } else {
                    Err("copy differs from its source".into())
                })
            }),
        });
    }
    // Noise forward, f32.
    let forward = |name, spec, weight, out, host, f16| {
        forward_case(ctx, shape, name, spec, weight, out, host, f16)
    };
    cases.push(forward(
        format!("noise_proxy_{tag}_b{BLOCK}"),
        proxy.clone(),
        &weight,
        &out,
        &w64,
        false,
    ));
    cases.push(forward(
        format!("noise_int8_{tag}_b{BLOCK}"),
        int8.clone(),
        &weight,
        &out,
        &w64,
        false,
    ));
    cases.push(forward(
        format!("noise_int4_{tag}_b{BLOCK}"),
        int4.clone(),
        &weight,
        &out,
        &w64,
        false,
    ));
    // STE backward.
    let backward = |name, spec, mode, grad, weight, out, hosts, f16| {
        backward_case(ctx, shape, name, spec, mode, grad, weight, out, hosts, f16)
    };
    cases.push(backward(
        format!("ste_masked_{tag}_b{BLOCK}"),
        proxy.clone(),
        SteMode::Masked,
        &grad,
        &weight,
        &out,
        (&g64, &w64),
        false,
    ));
    cases.push(backward(
        format!("ste_clamped_{tag}_b{BLOCK}_int8"),
        int8.clone(),
        SteMode::Clamped,
        &grad,
        &weight,
        &out,
        (&g64, &w64),
        false,
    ));
    // Observer.
    {
        let (weight, w64) = (&weight, &w64);
        cases.push(Case {
            name: format!("observer_minmax_{tag}"),
            kind: CaseKind::Device,
            bytes: n * 4,
            flops: None,
            items: None,
            op: Box::new(move || ctx.observe(weight, &shape, Observer::MinMax, 8).map(|_| ())),
            check: Box::new(move || {
                let got = ctx.observe(weight, &shape, Observer::MinMax, 8)?;
                let want = crate::cpu::observer::observe(w64, &shape, Observer::MinMax, 8)?;
                Ok(if got == want {
                    Ok(format!("equal to the reference: {got:?}"))
                } else {
                    Err(format!("{got:?}, expected {want:?}"))
                })
            }),
        });
    }
    // f16 variants.
    if let Some((w16, g16, out16, w16h, g16h)) = &f16_data {
        cases.push(forward(
            format!("noise_proxy_f16_{tag}_b{BLOCK}"),
            proxy.clone(),
            w16,
            out16,
            w16h,
            true,
        ));
        cases.push(forward(
            format!("noise_int8_f16_{tag}_b{BLOCK}"),
            int8.clone(),
            w16,
            out16,
            w16h,
            true,
        ));
        cases.push(backward(
            format!("ste_masked_f16_{tag}_b{BLOCK}"),
            proxy.clone(),
            SteMode::Masked,
            g16,
            w16,
            out16,
            (g16h, w16h),
            true,
        ));
    }

    // Compute ceiling and PQ.
    for variant in FmaVariant::ALL {
        cases.push(fma_case(ctx, variant, &fma_out));
    }
    cases.push(assign_case(
        ctx,
        format!("assign_{pq_tag}"),
        (&pq_data, &pq_host),
        (&pq_cb, &pq_cb_host),
        &pq_out,
    ));
    if let Some((x, xh, c, ch)) = &pq_f16 {
        cases.push(assign_case(
            ctx,
            format!("assign_f16_{pq_tag}"),
            (x, xh),
            (c, ch),
            &pq_out,
        ));
    }
    let variants = [
        ((KmeansBounds::Auto, KmeansAssignments::Final), ""),
        ((KmeansBounds::On, KmeansAssignments::Final), "_bounded"),
        ((KmeansBounds::Off, KmeansAssignments::Final), "_plain"),
        (
            (KmeansBounds::Auto, KmeansAssignments::LastStep),
            "_laststep",
        ),
    ];
    for n_iter in [1, 20] {
        for (variant, suffix) in variants {
            cases.push(kmeans_case(
                ctx,
                format!("kmeans_{n_iter}iter_{pq_tag}{suffix}"),
                n_iter,
                variant,
                &pq_data,
            ));
        }
    }
    for (variant, suffix) in variants {
        cases.push(kmeans_case(
            ctx,
            format!("kmeans_20iter_blobs_{pq_tag}{suffix}"),
            20,
            variant,
            &pq_blobs,
        ));
    }
    cases.extend(int8::cases(ctx, options)?);

    cases.extend(matmul::cases(ctx, options)?);
    cases.extend(pq_matmul::cases(ctx, options)?);

    // The CPU reference cases (measured after the device rounds): name and device baseline.
    let cpu_n = pq_n.min(CPU_PQ_MAX_N);
    let cpu_tag = format!("{cpu_n}x{PQ_DIM}_k{PQ_K}");
    let cpu_cases = [
        (
            format!("cpu_noise_proxy_{tag}_b{BLOCK}"),
            format!("noise_proxy_{tag}_b{BLOCK}"),
        ),
        (format!("cpu_assign_{cpu_tag}"), format!("assign_{pq_tag}")),
        (
            format!("cpu_kmeans_1iter_{cpu_tag}"),
            format!("kmeans_1iter_{pq_tag}"),
        ),
    ];
    let cpu_selected: Vec<bool> = cpu_cases.iter().map(|c| options.selects(&c.0)).collect();

    // The filter: the selected cases, the device baselines of the selected CPU cases, and the
    // ceilings (copies, FMA kernels) of what remains.
    let keep: Vec<bool> = cases
        .iter()
        .map(|c| {
            options.selects(&c.name)
                || cpu_cases
                    .iter()
                    .zip(&cpu_selected)
                    .any(|(cpu, &sel)| sel && cpu.1 == c.name)
        })
        .collect();
    let kept_kind = |compute: bool| {
        cases
            .iter()
            .zip(&keep)
            .any(|(c, &k)| k && c.flops.is_some() == compute)
    };
    let (need_copy, need_fma) = (kept_kind(false), kept_kind(true));
    let cases: Vec<Case> = cases
        .into_iter()
        .zip(keep)
        .filter(|(c, k)| {
            *k || (c.kind == CaseKind::Copy && need_copy)
                || (c.kind == CaseKind::Ceiling && need_fma)
        })
        .map(|(c, _)| c)
        .collect();
    if cases.is_empty() && !cpu_selected.contains(&true) {
        return Err(Error::InvalidArgument {
            name: "filter",
            value: options.filter.join(","),
            why: "selects no case",
        });
    }

    // Validation.
    let mut failures = Vec::new();
    let mut live = Vec::new();
    for case in cases {
        let t = Instant::now();
        match (case.check)() {
            Ok(Ok(summary)) => {
                progress(format!("[validate] {}: ok ({summary})", case.name));
                live.push((case, summary, t.elapsed().as_secs_f64()));
            }
            Ok(Err(why)) => {
                progress(format!(
                    "[validate] {}: WRONG OUTPUT, not timed: {why}",
                    case.name
                ));
                failures.push(CaseFailure {
                    name: case.name,
                    error: format!("wrong output: {why}"),
                });
            }
            Err(e) => {
                progress(format!("[validate] {}: FAILED, not timed: {e}", case.name));
                failures.push(CaseFailure {
                    name: case.name,
                    error: e.to_string(),
                });
            }
        }
    }

    // Calibration.
    ctx.synchronize()?;
    let mut ks = Vec::with_capacity(live.len());
    let min_sample = options.min_sample.as_secs_f64();
    for (case, _, check_s) in &live {
        // An op whose check took over a second (a k-means, or a check slowed by its
        // reference) was warmed up by it: its first estimate comes without a warm-up.
        if *check_s <= 1.0 {
            sample(ctx, &case.op, 1)?; // warm-up
        }
        // The fastest of a few estimates, so that a disturbed one does not shrink K (one is
        // enough for an op that takes two samples' time: K = 1 either way).
        let mut per_op = f64::INFINITY;
        for _ in 0..3 {
            per_op = per_op.min(sample(ctx, &case.op, 1)?);
            if per_op > 2.0 * min_sample {
                break;
            }
        }
        let mut k = per_sample(options.min_sample, per_op);
        if k > 1 {
            per_op = per_op.min(sample(ctx, &case.op, k)?);
            k = per_sample(options.min_sample, per_op);
        }
        progress(format!(
            "[calibrate] {}: {:.3} ms per op, K = {k}",
            case.name,
            per_op * 1e3
        ));
        ks.push(k);
    }

    // Interleaved measurement.
    let rounds = options.rounds();
    let mut samples = vec![Vec::with_capacity(rounds); live.len()];
    let mut device_samples = vec![Vec::with_capacity(rounds); live.len()];
    for r in 0..rounds {
        let t = Instant::now();
        for j in 0..live.len() {
            let i = (r + j) % live.len();
            let (wall, device) = timed_sample(ctx, &live[i].0.op, ks[i])?;
            samples[i].push(wall);
            device_samples[i].extend(device);
        }
        progress(format!(
            "[measure] round {}/{rounds} ({:.1} s)",
            r + 1,
            t.elapsed().as_secs_f64()
        ));
    }

    let mut results: Vec<CaseResult> = live
        .iter()
        .zip(samples)
        .zip(device_samples)
        .zip(&ks)
        .map(
            |((((case, validation, _), samples), device_samples), &k)| CaseResult {
                name: case.name.clone(),
                kind: case.kind,
                bytes: case.bytes,
                flops: case.flops,
                items: case.items,
                median_s: median(&samples),
                samples,
                // A device time in every round, or none (so rounds pair up).
                device_samples: if device_samples.len() == rounds {
                    device_samples
                } else {
                    Vec::new()
                },
                dispatches_per_sample: k,
                baseline: None,
                ratio_to_baseline: None,
                ratio_metric: String::new(),
                validation: validation.clone(),
            },
        )
        .collect();
    drop(live);

    // CPU reference cases.
    let cpu_rounds = options.cpu_rounds();
    {
        let cpu = Context::cpu();
        let (cw, cout) = (cpu.upload(&w)?, cpu.empty(n, DType::F32)?);
        let cdata = cpu.upload(&pq_host[..(cpu_n * PQ_DIM as u64) as usize])?;
        let ccb = cpu.upload(&pq_cb_host)?;
        let cassign = Assignment {
            indices: cpu.empty(cpu_n, DType::U32)?,
            distances: cpu.empty(cpu_n, DType::F32)?,
        };
        let assign_problem = AssignProblem {
            data: &cdata,
            codebook: &ccb,
            dim: PQ_DIM,
        };
        let kmeans_problem = KmeansProblem {
            data: &cdata,
            dim: PQ_DIM,
        };
        let kmeans1 = pq_kmeans_options(1);
        let (d, k) = (PQ_DIM as u64, PQ_K as u64);
        // (op, bytes, flops, items), in the order of `cpu_cases`.
        type CpuDef<'a> = (Op<'a>, u64, Option<u64>, Option<(u64, &'static str)>);
        let defs: [CpuDef; 3] = [
            (
                Box::new(|| {
                    cpu.noise_forward(&cw, &cout, shape, &proxy, SEED, None)
                        .map(|_| ())
                }),
                2 * n * 4,
                None,
                None,
            ),
            (
                Box::new(|| cpu.assign_into(&[assign_problem], std::slice::from_ref(&cassign))),
                cpu_n * d * 4 + k * d * 4 + cpu_n * 8,
                Some(2 * d * cpu_n * k),
                Some((cpu_n, "subvectors")),
            ),
            (
                Box::new(|| cpu.kmeans(&[kmeans_problem], &kmeans1).map(|_| ())),
                2 * cpu_n * d * 4,
                Some(2 * 2 * d * cpu_n * k),
                Some((cpu_n, "subvector_iterations")),
            ),
        ];
        for (((name, _), &selected), (op, bytes, flops, items)) in
            cpu_cases.iter().zip(&cpu_selected).zip(defs)
        {
            if !selected {
                continue;
            }
            let mut cpu_samples = Vec::with_capacity(cpu_rounds);
            for r in 0..cpu_rounds {
                cpu_samples.push(sample(&cpu, &op, 1)?);
                progress(format!(
                    "[measure] {name}: sample {}/{cpu_rounds}: {:.3} s",
                    r + 1,
                    cpu_samples[r]
                ));
            }
            results.push(CaseResult {
                name: name.clone(),
                kind: CaseKind::Cpu,
                bytes,
                flops,
                items,
                median_s: median(&cpu_samples),
                samples: cpu_samples,
                device_samples: Vec::new(),
                dispatches_per_sample: 1,
                baseline: None,
                ratio_to_baseline: None,
                ratio_metric: String::new(),
                validation: "the reference itself".into(),
            });
        }
    }

    // Baselines: see the module docs.
    let best_copy = fastest(&results, CaseKind::Copy).map(|c| (c.name.clone(), c.gb_per_s()));
    let best_fma =
        fastest(&results, CaseKind::Ceiling).and_then(|c| Some((c.name.clone(), c.gflops()?)));
    let chosen: Vec<(String, Option<(String, f64)>)> = results
        .iter()
        .map(|c| match c.kind {
            CaseKind::Cpu => {
                let metric = c
                    .items
                    .map_or("gb_per_s".to_string(), |(_, unit)| format!("{unit}_per_s"));
                let base = cpu_cases
                    .iter()
                    .find(|cpu| cpu.0 == c.name)
                    .and_then(|cpu| results.iter().find(|r| r.name == cpu.1))
                    .and_then(|r| Some((r.name.clone(), r.metric(&metric)?)));
                (metric, base)
            }
            _ if c.flops.is_some() => ("gflops".to_string(), best_fma.clone()),
            _ => ("gb_per_s".to_string(), best_copy.clone()),
        })
        .collect();
    for (c, (metric, base)) in results.iter_mut().zip(chosen) {
        if let (Some((name, value)), Some(own)) = (base, c.metric(&metric)) {
            c.baseline = Some(name);
            c.ratio_to_baseline = Some(own / value);
        }
        c.ratio_metric = metric;
    }
    for c in &results {
        progress(format!(
            "[result] {}: {:.3} ms{}, {:.3} GB/s{}{}, ratio {}",
            c.name,
            c.median_s * 1e3,
            c.device_median_s()
                .map_or(String::new(), |d| format!(" (device {:.3} ms)", d * 1e3)),
            c.gb_per_s(),
            c.gflops()
                .map_or(String::new(), |g| format!(", {g:.2} GFLOP/s")),
            c.items_per_s().map_or(String::new(), |v| format!(
                ", {:.3} M {}/s",
                v / 1e6,
                c.items.map_or("", |i| i.1)
            )),
            c.ratio_to_baseline
                .map_or("-".into(), |r| format!("{r:.3} ({})", c.ratio_metric))
        ));
    }

    let (device_type, driver) = match ctx.wgpu() {
        Some((device, _)) => {
            let info = device.adapter_info();
            (
                format!("{:?}", info.device_type),
                format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
            )
        }
        None => ("-".into(), "-".into()),
    };
    Ok(Report {
        adapter: ctx.describe(),
        backend: ctx
            .wgpu_backend()
            .map_or("Cpu".into(), |b| format!("{b:?}")),
        device_type,
        driver,
        date_utc,
        host: HostCpu::detect(),
        options: options.clone(),
        rounds,
        cpu_rounds,
        shape: (rows, cols),
        pq_n,
        pq_data_sum: pq_host.iter().map(|&x| x as f64).sum(),
        pq_blobs_sum,
        features: ctx.features(),
        max_window_bytes: ctx.max_window_bytes(),
        cases: results,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29
        assert_eq!(rfc3339_utc(t), "2000-02-29T01:01:01Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_599); // end of 2024
        assert_eq!(rfc3339_utc(t), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn pq_data_matches_the_python_generator() {
        // Values of `pq_values` in benches/faiss_compare.py (numpy).
        let want = [
            0.443_730_711_936_950_7,
            -0.221_365_094_184_875_5,
            -0.339_627_981_185_913_1,
            0.878_015_637_397_766_1,
            0.340_777_993_202_209_5,
            0.063_073_754_310_607_91,
            -0.196_614_384_651_184_08,
            -0.196_705_341_339_111_33,
        ];
        let got = pq_values(8, PQ_DATA_SEED);
        assert_eq!(got, want.map(|x: f64| x as f32));
        let sum: f64 = pq_values(1000, 3).iter().map(|&x| x as f64).sum();
        assert!((sum - -3.129_681_348_800_659).abs() < 1e-9, "{sum}");
        let cb = pq_codebook(&pq_values(512 * PQ_DIM as u64, 1));
        assert_eq!(cb.len(), (PQ_K * PQ_DIM) as usize);
    }

    #[test]
    fn pq_checks() {
        let d = PQ_DIM as usize;
        // Two centroids, four subvectors: 0 and 1 near centroid 0, 2 near 1, 3 equidistant.
        let cb = [vec![0.0f32; d], vec![1.0f32; d]].concat();
        let data = [
            vec![0.1f32; d],
            vec![0.2f32; d],
            vec![0.9f32; d],
            vec![0.5f32; d],
        ]
        .concat();
        let dist = |v: f32, c: f32| (v - c) * (v - c) * d as f32;
        let distances = [
            dist(0.1, 0.0),
            dist(0.2, 0.0),
            dist(0.9, 1.0),
            dist(0.5, 0.0),
        ];
        assert!(check_assignment(&data, &cb, &[0, 0, 1, 0], &distances).is_ok());
        assert!(check_assignment(&data, &cb, &[0, 1, 1, 0], &distances).is_err());
        assert!(check_assignment(&data, &cb, &[0, 0, 2, 0], &distances).is_err());
        let mut off = distances;
        off[2] += 0.01;
        assert!(check_assignment(&data, &cb, &[0, 0, 1, 0], &off).is_err());
        // The tie may go either way, in at most 1 % of the subvectors.
        assert!(check_assignment(&data, &cb, &[0, 0, 1, 1], &distances).is_err());
        let many: Vec<f32> = (0..99).flat_map(|_| data.iter().copied()).collect();
        let many_dist: Vec<f32> = (0..99).flat_map(|_| distances).collect();
        let mut idx: Vec<u32> = (0..99).flat_map(|_| [0, 0, 1, 0]).collect();
        idx[3] = 1;
        assert!(check_assignment(&many, &cb, &idx, &many_dist).is_ok());

        let ctx = Context::cpu();
        let result = |counts: Vec<u32>, objective: Vec<f64>| crate::KmeansResult {
            codebook: ctx.empty(1, DType::F32).unwrap(),
            assignments: ctx.empty(1, DType::U32).unwrap(),
            iterations: objective.len() as u32 - 1,
            scored: vec![1.0; objective.len()],
            counts,
            objective,
            repairs: 0,
        };
        let k = PQ_K as usize;
        let ok = result(vec![4; k], vec![3.0, 2.0, 2.0]);
        assert!(check_kmeans(&ok, 4 * k as u64, 2, 3).is_ok());
        assert!(check_kmeans(&ok, 4 * k as u64 + 1, 2, 3).is_err());
        assert!(check_kmeans(&ok, 4 * k as u64, 3, 4).is_err());
        assert!(check_kmeans(&ok, 4 * k as u64, 2, 2).is_err());
        let rising = result(vec![4; k], vec![3.0, 2.0, 2.1]);
        assert!(check_kmeans(&rising, 4 * k as u64, 2, 3).is_err());
        let mut counts = vec![4; k];
        counts[0] = 0;
        counts[1] = 8;
        assert!(check_kmeans(&result(counts, vec![3.0, 2.0, 1.0]), 4 * k as u64, 2, 3).is_err());
    }

    #[test]
    fn medians_and_compare() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(compare(&[1.0, 2.0], &[1.0, 2.0], 1e-7, 1e-5, 0.0).is_ok());
        assert!(compare(&[1.0, 2.5], &[1.0, 2.0], 1e-7, 1e-5, 0.0).is_err());
        assert!(compare(&[f32::NAN], &[1.0], 1e-7, 1e-5, 0.0).is_err());
        let v = values(1000, 3);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
    }
}
