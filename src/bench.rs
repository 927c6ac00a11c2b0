//! The benchmark report behind `quantnoise bench`: every kernel measured on one
//! [`Context`] against the copy kernels ([`crate::copy`]) moving the same bytes.
//!
//! # Method
//!
//! * Data: an f32 weight of 4096×4096 (64 MiB; 1024×1024 with [`BenchOptions::quick`]) of
//!   uniform values in `[−1, 1)`, blocks of 8, `p = 0.1`, one fixed seed. intN stages use
//!   [`QuantScheme::Given`] per-tensor parameters of the range `[−0.75, 0.75]` (so no observer
//!   is timed, and a quarter of the weights lie outside the representable range, which the
//!   clamped STE zeroes).
//! * Validation first: every case runs once and its output is checked (against the float64 CPU
//!   reference, bit-exactly for copies and observers). A case that fails is reported with its
//!   error and never timed.
//! * Calibration: each case's dispatches per sample `K` is chosen so one sample takes at least
//!   [`BenchOptions::min_sample`] (20 ms), from the fastest of a few single-op estimates.
//! * Measurement, interleaved: `rounds` rounds, each taking one sample of every case
//!   (round-robin, the starting case rotating each round), so slow drifts of the machine hit
//!   every case alike. A sample submits `K` back-to-back ops then [`Context::synchronize`]s,
//!   timed with [`Instant`]; its value is the elapsed time divided by `K`. The reported time is
//!   the median of the samples.
//! * The CPU reference of the proxy forward (`cpu_noise_proxy_…`, via [`Context::cpu`]) is
//!   slow: it takes a few single-op samples after the device rounds.
//!
//! # Throughput and baselines
//!
//! `bytes` is the traffic an op needs at least: every tensor element it must read plus every
//! one it writes (copy, noise forward and masked STE: 2 tensors; clamped STE also reads the
//! weight: 3; the observer reads the weight only); uniforms and parameter tables are not
//! counted. `gb_per_s = bytes / median_s / 1e9`.
//!
//! `ratio_to_baseline` is always *this case's throughput ÷ its baseline's throughput*:
//! * every device case (copies included) is compared with the **fastest copy variant** of the
//!   run (named in `_meta.baseline`): 1.0 means the kernel runs at the copy roofline;
//! * the CPU case is compared with the device proxy forward of the same size
//!   (`noise_proxy_…`): e.g. 0.05 means the device kernel is 20× faster than the reference.
//!
//! # JSON
//!
//! [`Report::to_json`] writes one object keyed by case name; each case holds `median_s`,
//! `bytes`, `gb_per_s`, `baseline`, `ratio_to_baseline`, plus `min_s`, `max_s`, `samples`,
//! `dispatches_per_sample` and `validation` (what was checked). A case that failed validation
//! holds only `error`. The key `"_meta"` holds the run's metadata: `adapter`, `backend`,
//! `device_type`, `driver`, `date_utc` (RFC 3339), `quantnoise_version`, `quick`, `rounds`,
//! `cpu_rounds`, `command_line`, `shape`, `block_size`, `min_sample_s`, `baseline`, `features`,
//! `max_window_bytes`, `failed` (names of the cases that failed validation) and `units`.

use std::time::{Duration, Instant, SystemTime};

use half::f16;
use serde_json::{Map, Value, json};

use crate::Context;
use crate::copy::CopyVariant;
use crate::error::{Error, Result};
use crate::noise::{Noise, NoiseSpec, QuantScheme, SteMode};
use crate::observer::{Observer, QParams, affine_params};
use crate::philox::NoiseSeed;
use crate::shape::WeightShape;
use crate::tensor::{DType, Tensor};

/// Options of [`run`].
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// 1024×1024 weights and fewer rounds (a quick look, not a measurement to quote).
    pub quick: bool,
    /// Interleaved rounds of the device cases (default: 15, or 5 with `quick`).
    pub rounds: Option<usize>,
    /// Samples of the CPU reference case (default: 3).
    pub cpu_rounds: Option<usize>,
    /// Least duration of one sample (default 20 ms).
    pub min_sample: Duration,
    /// The command line that started the run, recorded in the report.
    pub command_line: String,
    /// Print one progress line per case per phase to stderr.
    pub progress: bool,
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

    /// Samples of the CPU reference case.
    pub fn cpu_rounds(&self) -> usize {
        self.cpu_rounds.unwrap_or(3).max(1)
    }
}

/// What a case measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseKind {
    /// A copy kernel (a baseline candidate).
    Copy,
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
    /// Seconds per op of each sample, in measurement order.
    pub samples: Vec<f64>,
    /// Ops submitted per sample (`K`).
    pub dispatches_per_sample: u32,
    /// Median seconds per op.
    pub median_s: f64,
    /// Name of the case it is compared with (`None` when that case could not be measured).
    pub baseline: Option<String>,
    /// This case's throughput divided by its baseline's.
    pub ratio_to_baseline: Option<f64>,
    /// What validation checked, e.g. `max |err| 0 over 16777216 values`.
    pub validation: String,
}

impl CaseResult {
    /// Throughput in 1e9 bytes per second.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.median_s / 1e9
    }

    /// Fastest sample (seconds per op).
    pub fn min_s(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// Slowest sample (seconds per op).
    pub fn max_s(&self) -> f64 {
        self.samples.iter().copied().fold(0.0, f64::max)
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
    /// Options of the run (the resolved round counts are in `rounds` and `cpu_rounds`).
    pub options: BenchOptions,
    /// Device rounds.
    pub rounds: usize,
    /// CPU reference samples.
    pub cpu_rounds: usize,
    /// Weight shape `(rows, cols)`.
    pub shape: (u64, u64),
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
    /// The fastest copy case: the baseline of every device case.
    pub fn baseline(&self) -> Option<&CaseResult> {
        self.cases
            .iter()
            .filter(|c| c.kind == CaseKind::Copy)
            .max_by(|a, b| a.gb_per_s().total_cmp(&b.gb_per_s()))
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
                "quantnoise_version": env!("CARGO_PKG_VERSION"),
                "quick": self.options.quick,
                "rounds": self.rounds,
                "cpu_rounds": self.cpu_rounds,
                "command_line": self.options.command_line,
                "shape": [self.shape.0, self.shape.1],
                "block_size": BLOCK,
                "p": P,
                "min_sample_s": self.options.min_sample.as_secs_f64(),
                "baseline": self.baseline().map(|b| b.name.clone()),
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
                    "bytes": "bytes read plus bytes written by one op",
                    "gb_per_s": "bytes / median_s / 1e9",
                    "ratio_to_baseline": "gb_per_s / the baseline case's gb_per_s",
                },
            }),
        );
        for c in &self.cases {
            root.insert(
                c.name.clone(),
                json!({
                    "kind": format!("{:?}", c.kind).to_lowercase(),
                    "median_s": c.median_s,
                    "min_s": c.min_s(),
                    "max_s": c.max_s(),
                    "bytes": c.bytes,
                    "gb_per_s": c.gb_per_s(),
                    "baseline": c.baseline,
                    "ratio_to_baseline": c.ratio_to_baseline,
                    "samples": c.samples.len(),
                    "dispatches_per_sample": c.dispatches_per_sample,
                    "validation": c.validation,
                }),
            );
        }
        for c in &self.failures {
            root.insert(c.name.clone(), json!({ "error": c.error }));
        }
        serde_json::to_string_pretty(&Value::Object(root)).expect("a JSON value always serialises")
    }

    /// A human-readable table of the cases.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} — {}x{} f32, {} rounds{} — {}\n",
            self.adapter,
            self.shape.0,
            self.shape.1,
            self.rounds,
            if self.options.quick { " (quick)" } else { "" },
            self.date_utc
        );
        if let Some(b) = self.baseline() {
            s += &format!(
                "baseline of device cases: {} ({:.2} GB/s)\n",
                b.name,
                b.gb_per_s()
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
            "{:<width$}  {:>11}  {:>9}  {:>8}  {:>4}  {}\n",
            "case", "median ms", "GB/s", "ratio", "K", "vs"
        );
        for c in &self.cases {
            let ratio = c
                .ratio_to_baseline
                .map_or("-".into(), |r| format!("{r:.3}"));
            let vs = match (c.kind, &c.baseline) {
                (CaseKind::Cpu, Some(b)) => b.as_str(),
                (_, Some(_)) => "fastest copy",
                (_, None) => "-",
            };
            s += &format!(
                "{:<width$}  {:>11.3}  {:>9.3}  {:>8}  {:>4}  {}\n",
                c.name,
                c.median_s * 1e3,
                c.gb_per_s(),
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

const BLOCK: u32 = 8;
const P: f64 = 0.1;
const CLIP: f64 = 0.75;
const SEED: NoiseSeed = NoiseSeed {
    seed: 0x005e_ed0f_9a11,
    step: 7,
};

type Op<'a> = Box<dyn Fn() -> Result<()> + 'a>;
/// `Ok(Ok(summary))`: valid; `Ok(Err(why))`: wrong output; `Err`: the op failed.
type Check<'a> = Box<dyn Fn() -> Result<std::result::Result<String, String>> + 'a>;

struct Case<'a> {
    name: String,
    kind: CaseKind,
    bytes: u64,
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
        op: Box::new(move || ctx.ste_backward(grad, weight, out, shape, &spec, SEED, mode)),
        check: Box::new(move || {
            ctx.ste_backward(grad, weight, out, shape, &spec2, SEED, mode)?;
            let want = crate::cpu::ste::ste_backward(hosts.0, hosts.1, &shape, &spec2, SEED, mode);
            Ok(compare(&ctx.read_f32(out)?, &want, atol, rtol, 0.0))
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

/// One sample: `k` ops back to back, then a synchronize; seconds per op.
fn sample(ctx: &Context, op: &Op, k: u32) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..k {
        op()?;
    }
    ctx.synchronize()?;
    Ok(t.elapsed().as_secs_f64() / k as f64)
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

    // Validation.
    let mut failures = Vec::new();
    let mut live = Vec::new();
    for case in cases {
        match (case.check)() {
            Ok(Ok(summary)) => {
                progress(format!("[validate] {}: ok ({summary})", case.name));
                live.push((case, summary));
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
    for (case, _) in &live {
        sample(ctx, &case.op, 1)?; // warm-up
        // The fastest of a few estimates, so that a disturbed one does not shrink K.
        let mut per_op = f64::INFINITY;
        for _ in 0..3 {
            per_op = per_op.min(sample(ctx, &case.op, 1)?);
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
    for r in 0..rounds {
        let t = Instant::now();
        for j in 0..live.len() {
            let i = (r + j) % live.len();
            samples[i].push(sample(ctx, &live[i].0.op, ks[i])?);
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
        .zip(&ks)
        .map(|(((case, validation), samples), &k)| CaseResult {
            name: case.name.clone(),
            kind: case.kind,
            bytes: case.bytes,
            median_s: median(&samples),
            samples,
            dispatches_per_sample: k,
            baseline: None,
            ratio_to_baseline: None,
            validation: validation.clone(),
        })
        .collect();
    drop(live);

    // CPU reference of the proxy forward.
    let cpu_rounds = options.cpu_rounds();
    let cpu_name = format!("cpu_noise_proxy_{tag}_b{BLOCK}");
    {
        let cpu = Context::cpu();
        let (cw, cout) = (cpu.upload(&w)?, cpu.empty(n, DType::F32)?);
        let op: Op = Box::new(|| {
            cpu.noise_forward(&cw, &cout, shape, &proxy, SEED, None)
                .map(|_| ())
        });
        let mut cpu_samples = Vec::with_capacity(cpu_rounds);
        for r in 0..cpu_rounds {
            cpu_samples.push(sample(&cpu, &op, 1)?);
            progress(format!(
                "[measure] {cpu_name}: sample {}/{cpu_rounds}: {:.3} s",
                r + 1,
                cpu_samples[r]
            ));
        }
        results.push(CaseResult {
            name: cpu_name,
            kind: CaseKind::Cpu,
            bytes: 2 * n * 4,
            median_s: median(&cpu_samples),
            samples: cpu_samples,
            dispatches_per_sample: 1,
            baseline: None,
            ratio_to_baseline: None,
            validation: "the reference itself".into(),
        });
    }

    // Baselines.
    let best_copy = results
        .iter()
        .filter(|c| c.kind == CaseKind::Copy)
        .max_by(|a, b| a.gb_per_s().total_cmp(&b.gb_per_s()))
        .map(|c| (c.name.clone(), c.gb_per_s()));
    let gpu_proxy = results
        .iter()
        .find(|c| c.name == format!("noise_proxy_{tag}_b{BLOCK}"))
        .map(|c| (c.name.clone(), c.gb_per_s()));
    for c in &mut results {
        let base = if c.kind == CaseKind::Cpu {
            &gpu_proxy
        } else {
            &best_copy
        };
        if let Some((name, gbps)) = base {
            c.baseline = Some(name.clone());
            c.ratio_to_baseline = Some(c.gb_per_s() / gbps);
        }
    }
    for c in &results {
        progress(format!(
            "[result] {}: {:.3} ms, {:.3} GB/s, ratio {}",
            c.name,
            c.median_s * 1e3,
            c.gb_per_s(),
            c.ratio_to_baseline
                .map_or("-".into(), |r| format!("{r:.3}"))
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
        options: options.clone(),
        rounds,
        cpu_rounds,
        shape: (rows, cols),
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
