//! The conformance harness: every test body runs once per target — the CPU reference and every
//! adapter wgpu finds (named like `[Vulkan/llvmpipe] noise_forward_random`, as in wgpu's own
//! harness), plus a copy of each adapter with a tiny bound window so the chunked path runs on
//! small tensors, and with the coalesced [`AccessPattern`] (so that lavapipe, which defaults to
//! the per-invocation pattern, tests both).
//!
//! With `QUANTNOISE_REQUIRE_GPU=1` (set by CI) a missing adapter is a failing test; otherwise the
//! GPU half is skipped with a loud notice. `QUANTNOISE_BACKEND` (vulkan, gl, ...) limits the
//! adapters to one backend.
#![allow(dead_code)]

use libtest_mimic::{Arguments, Failed, Trial};
use quantnoise::{AccessPattern, BackendChoice, Context, ContextOptions, DType, Tensor};

/// One test body.
pub type Body = fn(&Target) -> Result<(), Failed>;

/// Where a test body runs.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub ctx: Context,
    /// The CPU reference context.
    pub cpu: Context,
}

impl Target {
    pub fn is_gpu(&self) -> bool {
        !self.ctx.is_cpu()
    }
}

/// Bound window of the "windowed" targets: small enough that test tensors span many windows.
/// (16 KiB: the largest granule is 64 subvectors of 64 f32 in the assignment.)
pub const SMALL_WINDOW: u64 = 16384;

fn require_gpu() -> bool {
    std::env::var("QUANTNOISE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Every target: the CPU reference, then each adapter, then each adapter with a small window.
/// Adapters that fail to open are reported as failing trials by [`run`].
pub fn targets(windowed: bool) -> (Vec<Target>, Vec<String>) {
    let cpu = Context::cpu();
    let mut out = vec![Target {
        name: "Cpu/reference".into(),
        ctx: cpu.clone(),
        cpu: cpu.clone(),
    }];
    let mut errors = Vec::new();
    let mut add = |window: Option<u64>, access: AccessPattern, suffix: &str| {
        let backend = BackendChoice::from_env().expect("QUANTNOISE_BACKEND is valid");
        let options = ContextOptions {
            backend,
            max_window_bytes: window,
            access,
            cpu_fallback: false,
        };
        for ctx in Context::all_adapters_with(options) {
            match ctx {
                Ok(ctx) => out.push(Target {
                    name: format!("{}{suffix}", ctx.describe()),
                    ctx,
                    cpu: cpu.clone(),
                }),
                Err(e) => errors.push(e.to_string()),
            }
        }
    };
    add(None, AccessPattern::Auto, "");
    if windowed {
        // The coalesced access pattern (the GPU default) here, so that CPU-type adapters test
        // both patterns.
        add(
            Some(SMALL_WINDOW),
            AccessPattern::Coalesced,
            " window=16KiB coalesced",
        );
    }
    (out, errors)
}

/// WebGL2's uniform binding limit: too small for the kernels' 64 KiB uniform tables.
pub const SMALL_UNIFORM_BINDING: u64 = 16384;

/// `t`'s adapter, found again (to open a second device on it); None on the CPU reference and
/// on GL (whose devices share one EGL display: the suite opens no second one).
fn same_adapter(t: &Target) -> Result<Option<wgpu::Adapter>, Failed> {
    let Some((device, _)) = t.ctx.wgpu() else {
        return Ok(None);
    };
    let info = device.adapter_info();
    if info.backend == wgpu::Backend::Gl {
        return Ok(None);
    }
    let backends = wgpu::Backends::from(info.backend);
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    Ok(Some(
        pollster::block_on(instance.enumerate_adapters(backends))
            .into_iter()
            .find(|a| a.get_info() == info)
            .ok_or("the target's adapter is not found again")?,
    ))
}

/// A target on a second device of `t`'s adapter, requested with uniform bindings of at most
/// [`SMALL_UNIFORM_BINDING`] and adopted (as a framework's device would be), so that the
/// kernels take their paths without uniform tables. None where [`same_adapter`] is.
pub fn small_uniform_target(t: &Target) -> Result<Option<Target>, Failed> {
    let Some(adapter) = same_adapter(t)? else {
        return Ok(None);
    };
    let limits = wgpu::Limits {
        max_uniform_buffer_binding_size: SMALL_UNIFORM_BINDING,
        ..adapter.limits()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: t.ctx.wgpu().map(|(d, _)| d.features()).unwrap_or_default(),
        required_limits: limits,
        ..Default::default()
    }))
    .map_err(|e| format!("request_device: {e}"))?;
    Ok(Some(Target {
        name: format!("{} uniform≤16KiB", t.name),
        ctx: Context::from_wgpu(device, queue),
        cpu: t.cpu.clone(),
    }))
}

/// A target on a second device of `t`'s adapter with windows of `window` bytes. None where
/// [`same_adapter`] is.
pub fn windowed_target(t: &Target, window: u64) -> Result<Option<Target>, Failed> {
    let Some(adapter) = same_adapter(t)? else {
        return Ok(None);
    };
    Ok(Some(Target {
        name: format!("{} window={window}B", t.name),
        ctx: Context::from_adapter(&adapter, Some(window))?,
        cpu: t.cpu.clone(),
    }))
}

/// Runs `tests` on every target and exits with libtest's status.
pub fn run(tests: &[(&'static str, Body)], windowed: bool) -> ! {
    run_on(tests, windowed, true)
}

/// Runs `tests` on the device targets only (tests of the device runtime itself).
pub fn run_gpu(tests: &[(&'static str, Body)], windowed: bool) -> ! {
    run_on(tests, windowed, false)
}

fn run_on(tests: &[(&'static str, Body)], windowed: bool, with_cpu: bool) -> ! {
    let args = Arguments::from_args();
    let (targets, errors) = targets(windowed);
    let mut trials = Vec::new();
    if targets.len() == 1 {
        if require_gpu() {
            trials.push(Trial::test("gpu_adapter_present", || {
                Err("QUANTNOISE_REQUIRE_GPU=1 but wgpu found no adapter: is mesa-vulkan-drivers installed?".into())
            }));
        } else {
            eprintln!(
                "\n*** quantnoise: NO GPU ADAPTER FOUND — only the CPU reference is tested. ***\n"
            );
        }
    }
    for e in errors {
        trials.push(Trial::test("adapter_opens", move || {
            Err(format!("an adapter failed to open: {e}").into())
        }));
    }
    for t in targets.iter().filter(|t| with_cpu || t.is_gpu()) {
        for (name, body) in tests {
            let t = t.clone();
            let body = *body;
            trials.push(Trial::test(format!("[{}] {name}", t.name), move || {
                body(&t)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit()
}

/// SplitMix64: deterministic test data from a seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Random weights: normal-ish (sum of uniforms) times `scale`, never exactly zero.
    pub fn weights(&mut self, n: u64, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let x = ((0..4).map(|_| self.uniform()).sum::<f64>() - 2.0) * scale as f64;
                if x == 0.0 { scale as f64 * 1e-3 } else { x }
            } as f32)
            .collect()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A tensor of `len` elements on `ctx` filled with NaN, so unwritten outputs are caught.
pub fn poisoned(ctx: &Context, len: u64, dtype: DType) -> Tensor {
    let t = ctx.empty(len, dtype).unwrap();
    match dtype {
        DType::F32 => ctx.write(&t, &vec![f32::NAN; len as usize]).unwrap(),
        DType::F16 => ctx.write(&t, &vec![half::f16::NAN; len as usize]).unwrap(),
        DType::U32 => ctx.write(&t, &vec![0xDEAD_BEEFu32; len as usize]).unwrap(),
    }
    t
}

/// Uploads f32 data as `dtype` (F32 or F16).
pub fn upload_as(ctx: &Context, data: &[f32], dtype: DType) -> Tensor {
    match dtype {
        DType::F32 => ctx.upload(data).unwrap(),
        DType::F16 => ctx
            .upload(
                &data
                    .iter()
                    .map(|&x| half::f16::from_f32(x))
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        DType::U32 => panic!("not a float type"),
    }
}

/// `Err` with a message unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// Compares `got` with the f64 reference: `|got − want| ≤ atol + rtol·|want|`, or within
/// `tie_tol[i]` where the reference sits on a rounding tie. Exact zeros must stay exact.
pub fn compare(
    got: &[f32],
    want: &[f64],
    atol: f64,
    rtol: f64,
    tie_tol: &[f64],
) -> Result<(), Failed> {
    ensure(got.len() == want.len(), || {
        format!("length {} vs {}", got.len(), want.len())
    })?;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok = if w == 0.0 {
            g == 0.0 || g.abs() <= tie_tol.get(i).copied().unwrap_or(0.0)
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
                || (g - w).abs() <= tie_tol.get(i).copied().unwrap_or(0.0)
        };
        if !ok {
            bad.push(format!("[{i}] got {g} want {w}"));
        }
    }
    ensure(bad.is_empty(), || {
        format!(
            "{} mismatches, first: {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        )
    })
}

/// Fails unless `r` is an error matching `pred`; then checks that the context still works.
pub fn expect_err<T: std::fmt::Debug>(
    ctx: &Context,
    r: quantnoise::Result<T>,
    pred: impl Fn(&quantnoise::Error) -> bool,
) -> Result<(), Failed> {
    match r {
        Ok(v) => Err(format!("expected an error, got Ok({v:?})").into()),
        Err(e) if pred(&e) => still_usable(ctx),
        Err(e) => Err(format!("unexpected error kind: {e}").into()),
    }
}

/// A small round trip that must succeed after any error.
pub fn still_usable(ctx: &Context) -> Result<(), Failed> {
    let t = ctx
        .upload(&[1.0f32, 2.0, 3.0])
        .map_err(|e| format!("context unusable after error: {e}"))?;
    let back = ctx
        .read_f32(&t)
        .map_err(|e| format!("context unusable after error: {e}"))?;
    ensure(back == [1.0, 2.0, 3.0], || {
        format!("round trip after error gave {back:?}")
    })
}

use quantnoise::{Noise, NoiseSeed, NoiseSpec, Observer, QParams, QuantScheme, WeightShape};

/// Block sizes the random cases draw from (the paper uses 4, 5, 8, 9; 1..3 and 16 are edges).
pub const BLOCK_SIZES: [u32; 8] = [1, 2, 3, 4, 5, 8, 9, 16];

/// A random selection probability, with the ends 0 and 1 drawn often.
pub fn random_p(rng: &mut Rng) -> f64 {
    match rng.below(6) {
        0 => 0.0,
        1 => 1.0,
        _ => rng.uniform(),
    }
}

/// A random noise chain of 1..=3 stages for a weight with `rows` rows.
pub fn random_spec(rng: &mut Rng, block_size: u32, rows: u64) -> NoiseSpec {
    let stages = (0..1 + rng.below(3))
        .map(|_| {
            let p = random_p(rng);
            if rng.below(2) == 0 {
                Noise::Proxy {
                    p,
                    rescale: p < 1.0 && rng.below(3) != 0,
                }
            } else {
                let bits = 1 + rng.below(8) as u8;
                let qmax = (1i32 << bits) - 1;
                let scheme = match rng.below(5) {
                    0 => QuantScheme::Observe(Observer::MinMax),
                    1 => QuantScheme::Observe(Observer::MinMaxPerChannel),
                    2 => QuantScheme::Observe(Observer::Histogram),
                    3 => QuantScheme::Given(QParams::per_tensor(
                        (0.01 + rng.uniform() * 0.2) as f32,
                        rng.below(qmax as u64 + 1) as i32,
                    )),
                    _ => QuantScheme::Given(QParams {
                        scale: (0..rows)
                            .map(|_| (0.01 + rng.uniform() * 0.2) as f32)
                            .collect(),
                        zero_point: (0..rows)
                            .map(|_| rng.below(qmax as u64 + 1) as i32)
                            .collect(),
                    }),
                };
                Noise::IntN { p, bits, scheme }
            }
        })
        .collect();
    NoiseSpec { block_size, stages }
}

/// A random shape whose cols are a multiple of `block_size`, of one of the four layouts.
pub fn random_shape(
    rng: &mut Rng,
    block_size: u32,
    max_rows: u64,
    max_blocks_per_row: u64,
) -> WeightShape {
    let rows = 1 + rng.below(max_rows);
    let cols = block_size as u64 * (1 + rng.below(max_blocks_per_row));
    match rng.below(3) {
        0 => WeightShape::Linear {
            out_features: rows,
            in_features: cols,
        },
        1 => WeightShape::Embedding {
            num_embeddings: rows,
            dim: cols,
        },
        _ => WeightShape::Matrix { rows, cols },
    }
}

/// Per-element tolerance where an intN stage of the f64 reference sits within `window` of a
/// rounding tie (f32 device arithmetic may round the other way there): one quantization step,
/// scaled by the later stages' rescaling.
pub fn tie_tolerance(
    w: &[f64],
    shape: &WeightShape,
    spec: &NoiseSpec,
    seed: NoiseSeed,
    window: f64,
) -> Vec<f64> {
    let mut tol = vec![0.0; w.len()];
    let cols = shape.cols();
    for (s, stage) in spec.stages.iter().enumerate() {
        let Noise::IntN {
            bits,
            scheme: QuantScheme::Given(q),
            ..
        } = stage
        else {
            continue;
        };
        let prefix = NoiseSpec {
            block_size: spec.block_size,
            stages: spec.stages[..s].to_vec(),
        };
        let input = quantnoise::cpu::noise::noise_forward(w, shape, &prefix, seed);
        let later: f64 = spec.stages[s + 1..]
            .iter()
            .map(|st| match st {
                Noise::Proxy { p, rescale: true } => 1.0 / (1.0 - p),
                _ => 1.0,
            })
            .product();
        let qmax = ((1u32 << bits) - 1) as f64;
        for (i, x) in input.iter().enumerate() {
            let e = if q.is_per_channel() {
                i / cols as usize
            } else {
                0
            };
            let t = x / q.scale[e] as f64 + q.zero_point[e] as f64;
            let near_tie = ((t - t.floor()) - 0.5).abs() < window && t > -0.5 && t < qmax + 0.5;
            if near_tie && quantnoise::cpu::noise::selected(&seed, spec, s, i as u64) {
                tol[i] += 1.01 * q.scale[e] as f64 * later;
            }
        }
    }
    // A flipped step feeds later stages: let the whole tolerance carry to the end.
    tol
}

/// Runs `body` on `cases` values of `strategy` with proptest (shrinking on failure), from a
/// fixed RNG so that CI runs the same cases every time.
pub fn property<S>(
    cases: u32,
    strategy: S,
    body: impl Fn(S::Value) -> Result<(), Failed>,
) -> Result<(), Failed>
where
    S: proptest::strategy::Strategy,
    S::Value: std::fmt::Debug,
{
    use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
        .run(&strategy, |v| {
            body(v).map_err(|e| TestCaseError::fail(e.message().unwrap_or_default().to_string()))
        })
        .map_err(|e| Failed::from(e.to_string()))
}
