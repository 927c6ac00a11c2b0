//! Quickstart: run the Quant-Noise kernels on the best adapter and check them against the CPU
//! reference.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! For a 1024×1024 `nn.Linear` weight it runs three noise forwards —
//! (a) proxy noise p = 0.1, block 8; (b) int8 noise with the MinMax observer; (c) a chain int4
//! (histogram observer) then proxy — each with its bit-packed mask, then the straight-through
//! backward in the three STE modes. Every result is compared with the float64 CPU reference
//! (`Context::cpu()`, same calls). Tolerances:
//!
//! * mask bits, proxy zeros and observer parameters of MinMax: exact;
//! * every other value: relative 1e-5;
//! * one quantization step is allowed only where `w/s + z` lies within 1e-3 of a .5 tie
//!   (the device computes `w·(1/s)`, the reference `w/s` in float64);
//! * histogram observer: scale within 1 %, zero-point within 1 (the device computes bin indices
//!   with f32 division, which a GPU may round differently by one bin).
//!
//! It exits with a non-zero status if anything does not match.

use std::process::ExitCode;
use std::time::Instant;

use half::f16;
use quantnoise::{
    Context, DType, Noise, NoiseSeed, NoiseSpec, Observer, QParams, QuantScheme, SteMode,
    WeightShape,
};

const REL_TOL: f64 = 1e-5;
const TIE_WINDOW: f64 = 1e-3;

fn main() -> ExitCode {
    match run() {
        Ok(0) => {
            println!("\nPASS: every result matches the CPU reference");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            println!("\nFAIL: {failures} check(s) did not match the CPU reference");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("\nFAIL: quantnoise error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> quantnoise::Result<usize> {
    // 1. The device: the best adapter (QUANTNOISE_BACKEND=vulkan|metal|dx12|gl|cpu to choose).
    let ctx = Context::new()?;
    let cpu = Context::cpu();
    println!("adapter:  {}", ctx.describe());
    println!("features: {:?}", ctx.features());
    if ctx.is_cpu() {
        println!("(no GPU adapter: the checks below compare the CPU reference with itself)");
    }

    // 2. A Linear weight, roughly normal with std 0.02 like a transformer's initialisation.
    let shape = WeightShape::Linear {
        out_features: 1024,
        in_features: 1024,
    };
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let w: Vec<f32> = (0..shape.numel()).map(|_| 0.02 * rng.normal()).collect();
    let grad: Vec<f32> = (0..shape.numel())
        .map(|_| rng.uniform() * 2.0 - 1.0)
        .collect();
    let seed = NoiseSeed::new(42, 1000); // (run seed, training step)
    println!("weight:   {shape:?}, {} f32 values", shape.numel());

    let cases = [
        ("(a) proxy p=0.1, block 8", NoiseSpec::proxy(8, 0.1)),
        (
            "(b) int8 p=0.25, MinMax observer, block 8",
            NoiseSpec::int_n(8, 0.25, 8, Observer::MinMax),
        ),
        (
            "(c) int4 p=0.25 (Histogram observer) then proxy p=0.1, block 8",
            NoiseSpec::int_n(8, 0.25, 4, Observer::Histogram).then(Noise::Proxy {
                p: 0.1,
                rescale: true,
            }),
        ),
    ];

    let mut checks = Checks::default();
    let weight = ctx.upload(&w)?;
    let grad_noisy = ctx.upload(&grad)?;
    let weight_ref = cpu.upload(&w)?;
    let grad_noisy_ref = cpu.upload(&grad)?;

    for (name, spec) in &cases {
        println!("\n{name}");
        let blocks = shape.numel() / spec.block_size as u64;
        let mask_words = spec.mask_words(&shape)?;
        println!(
            "  {blocks} blocks, mask {mask_words} u32 words ({} stage(s))",
            spec.stages.len()
        );

        // Noise forward on the device, with the bit-packed mask.
        let noisy = ctx.empty(shape.numel(), DType::F32)?;
        let mask = ctx.empty(mask_words, DType::U32)?;
        let (resolved, first, warm) = time_twice(&ctx, || {
            ctx.noise_forward(&weight, &noisy, shape, spec, seed, Some(&mask))
        })?;
        println!("  noise_forward        {}", timing(first, warm));

        // The same call on the CPU reference. Observers are checked on their own, then the
        // reference runs with the device's parameters so the values compare the kernel alone.
        let resolved_ref = cpu.resolve(&weight_ref, &shape, spec)?;
        check_observers(&mut checks, spec, &resolved, &resolved_ref);
        let noisy_ref = cpu.empty(shape.numel(), DType::F32)?;
        let mask_ref = cpu.empty(mask_words, DType::U32)?;
        cpu.noise_forward(
            &weight_ref,
            &noisy_ref,
            shape,
            &resolved,
            seed,
            Some(&mask_ref),
        )?;

        let (got_mask, want_mask) = (ctx.read_u32(&mask)?, cpu.read_u32(&mask_ref)?);
        let differing = got_mask
            .iter()
            .zip(&want_mask)
            .filter(|(a, b)| a != b)
            .count();
        checks.record(
            "mask bits (exact)",
            differing == 0,
            format!("{differing} differing words"),
        );
        for (stage, noise) in spec.stages.iter().enumerate() {
            let words = &got_mask[(stage as u64 * blocks.div_ceil(32)) as usize..]
                [..blocks.div_ceil(32) as usize];
            let selected: u64 = words.iter().map(|w| w.count_ones() as u64).sum();
            let fraction = selected as f64 / blocks as f64;
            let p = noise.p();
            let sigma = (p * (1.0 - p) / blocks as f64).sqrt();
            checks.record(
                &format!("stage {stage} selected fraction"),
                (fraction - p).abs() <= 5.0 * sigma,
                format!(
                    "{fraction:.4} of blocks vs p = {p} (±5σ = {:.4})",
                    5.0 * sigma
                ),
            );
        }

        let allowed = tie_allowance(&w, &shape, &resolved, seed);
        let ties = allowed.iter().filter(|&&a| a > 0.0).count();
        let what = match ties {
            0 => "noisy weight".to_string(),
            n => format!("noisy weight ({n} values within {TIE_WINDOW} of a tie)"),
        };
        let (got, want) = (ctx.read_f32(&noisy)?, cpu.read_f32(&noisy_ref)?);
        checks.compare(&what, &got, &want, &allowed, REL_TOL);

        // Straight-through backward in each mode, with the spec the forward returned.
        for mode in [SteMode::Identity, SteMode::Masked, SteMode::Clamped] {
            let grad_w = ctx.empty(shape.numel(), DType::F32)?;
            let ((), first, warm) = time_twice(&ctx, || {
                ctx.ste_backward(&grad_noisy, &weight, &grad_w, shape, &resolved, seed, mode)
            })?;
            println!(
                "  ste_backward {:<8}{}",
                format!("{mode:?}"),
                timing(first, warm)
            );
            let grad_w_ref = cpu.empty(shape.numel(), DType::F32)?;
            cpu.ste_backward(
                &grad_noisy_ref,
                &weight_ref,
                &grad_w_ref,
                shape,
                &resolved,
                seed,
                mode,
            )?;
            let (got, want) = (ctx.read_f32(&grad_w)?, cpu.read_f32(&grad_w_ref)?);
            checks.compare(&format!("dL/dW, STE {mode:?}"), &got, &want, &[], REL_TOL);
        }
    }

    f16_step(&ctx, &cpu, shape, &w, &grad, seed, &mut checks)?;
    Ok(checks.failures)
}

/// One proxy-noise step with an f16 weight, where the adapter has `shader-f16`.
fn f16_step(
    ctx: &Context,
    cpu: &Context,
    shape: WeightShape,
    w: &[f32],
    grad: &[f32],
    seed: NoiseSeed,
    checks: &mut Checks,
) -> quantnoise::Result<()> {
    println!("\n(d) f16 weight, proxy p=0.1, block 8");
    let w16: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
    let g16: Vec<f16> = grad.iter().map(|&x| f16::from_f32(x)).collect();
    let spec = NoiseSpec::proxy(8, 0.1);
    let weight = ctx.upload(&w16)?;
    let noisy = ctx.empty(shape.numel(), DType::F16)?;
    if !ctx.features().shader_f16 {
        // Without shader-f16 (e.g. GL) an f16 call is a typed error, not a panic.
        let err = ctx
            .noise_forward(&weight, &noisy, shape, &spec, seed, None)
            .unwrap_err();
        let ok = matches!(err, quantnoise::Error::Unsupported { .. });
        checks.record("f16 without shader-f16", ok, format!("returns: {err}"));
        return Ok(());
    }
    let grad_noisy = ctx.upload(&g16)?;
    let grad_w = ctx.empty(shape.numel(), DType::F16)?;
    let (resolved, first, warm) = time_twice(ctx, || {
        ctx.noise_forward(&weight, &noisy, shape, &spec, seed, None)
    })?;
    println!("  noise_forward        {}", timing(first, warm));
    let ((), first, warm) = time_twice(ctx, || {
        ctx.ste_backward(
            &grad_noisy,
            &weight,
            &grad_w,
            shape,
            &resolved,
            seed,
            SteMode::Masked,
        )
    })?;
    println!("  ste_backward Masked  {}", timing(first, warm));

    let (weight_ref, grad_noisy_ref) = (cpu.upload(&w16)?, cpu.upload(&g16)?);
    let noisy_ref = cpu.empty(shape.numel(), DType::F16)?;
    let grad_w_ref = cpu.empty(shape.numel(), DType::F16)?;
    cpu.noise_forward(&weight_ref, &noisy_ref, shape, &resolved, seed, None)?;
    cpu.ste_backward(
        &grad_noisy_ref,
        &weight_ref,
        &grad_w_ref,
        shape,
        &resolved,
        seed,
        SteMode::Masked,
    )?;
    // f16 keeps 11 significant bits: allow one unit in the last place (2^-10 relative).
    let f16_tol = 2f64.powi(-10);
    checks.compare(
        "f16 noisy weight (rel 2^-10)",
        &ctx.read_f32(&noisy)?,
        &cpu.read_f32(&noisy_ref)?,
        &[],
        f16_tol,
    );
    checks.compare(
        "f16 dL/dW, STE Masked (rel 2^-10)",
        &ctx.read_f32(&grad_w)?,
        &cpu.read_f32(&grad_w_ref)?,
        &[],
        f16_tol,
    );
    Ok(())
}

/// Compares the observer parameters the device computed (`device`) with the reference's, for
/// each intN stage of `spec` that has an observer.
fn check_observers(
    checks: &mut Checks,
    spec: &NoiseSpec,
    device: &NoiseSpec,
    reference: &NoiseSpec,
) {
    for (stage, noise) in spec.stages.iter().enumerate() {
        let Noise::IntN {
            scheme: QuantScheme::Observe(observer),
            ..
        } = noise
        else {
            continue;
        };
        let (Some(q), Some(r)) = (
            given(&device.stages[stage]),
            given(&reference.stages[stage]),
        ) else {
            continue;
        };
        let detail = format!(
            "device s={:e} z={}, reference s={:e} z={}",
            q.scale[0], q.zero_point[0], r.scale[0], r.zero_point[0]
        );
        if *observer == Observer::Histogram {
            checks.record(
                &format!("stage {stage} {observer:?} observer (s ±1 %, z ±1)"),
                close_params(q, r),
                detail,
            );
        } else {
            checks.record(
                &format!("stage {stage} {observer:?} observer (exact)"),
                q == r,
                detail,
            );
        }
    }
}

fn given(noise: &Noise) -> Option<&QParams> {
    match noise {
        Noise::IntN {
            scheme: QuantScheme::Given(q),
            ..
        } => Some(q),
        _ => None,
    }
}

fn close_params(q: &QParams, r: &QParams) -> bool {
    q.scale.len() == r.scale.len()
        && q.scale
            .iter()
            .zip(&r.scale)
            .all(|(a, b)| ((a - b) / b).abs() <= 0.01)
        && q.zero_point
            .iter()
            .zip(&r.zero_point)
            .all(|(a, b)| (a - b).abs() <= 1)
}

/// Per element, the difference allowed on top of the relative tolerance: one quantization step
/// (times the rescaling of later proxy stages) for each intN stage whose input `v` has
/// `v/s + z` within [`TIE_WINDOW`] of a .5 tie. The input of stage `k` is the reference output
/// of stages `0..k`.
fn tie_allowance(w: &[f32], shape: &WeightShape, spec: &NoiseSpec, seed: NoiseSeed) -> Vec<f64> {
    let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    let mut allowed = vec![0.0; w.len()];
    for (k, stage) in spec.stages.iter().enumerate() {
        let Noise::IntN {
            scheme: QuantScheme::Given(q),
            ..
        } = stage
        else {
            continue;
        };
        let later_scale: f64 = spec.stages[k + 1..]
            .iter()
            .map(|s| match s {
                Noise::Proxy { p, rescale: true } => 1.0 / (1.0 - p),
                _ => 1.0,
            })
            .product();
        let prefix = NoiseSpec {
            block_size: spec.block_size,
            stages: spec.stages[..k].to_vec(),
        };
        let input = quantnoise::cpu::noise::noise_forward(&w64, shape, &prefix, seed);
        for (i, v) in input.iter().enumerate() {
            let e = if q.is_per_channel() {
                i / shape.cols() as usize
            } else {
                0
            };
            let (s, z) = (q.scale[e] as f64, q.zero_point[e] as f64);
            let t = v / s + z;
            if (t - t.floor() - 0.5).abs() < TIE_WINDOW {
                allowed[i] += s * later_scale * (1.0 + REL_TOL);
            }
        }
    }
    allowed
}

/// Runs `op` twice, each time waiting for the device; returns its result and both wall times
/// (a kernel's first call also compiles its pipeline).
fn time_twice<T>(
    ctx: &Context,
    mut op: impl FnMut() -> quantnoise::Result<T>,
) -> quantnoise::Result<(T, f64, f64)> {
    let start = Instant::now();
    op()?;
    ctx.synchronize()?;
    let first = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let out = op()?;
    ctx.synchronize()?;
    Ok((out, first, start.elapsed().as_secs_f64()))
}

fn timing(first: f64, warm: f64) -> String {
    format!("{:9.3} ms   (first call {:.3} ms)", warm * 1e3, first * 1e3)
}

/// Results of the checks, printed as they are recorded.
#[derive(Default)]
struct Checks {
    failures: usize,
}

impl Checks {
    fn record(&mut self, what: &str, ok: bool, detail: String) {
        println!("  [{}] {what}: {detail}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            self.failures += 1;
        }
    }

    /// Element `i` matches if `|got − want| ≤ rel·|want|` or `≤ allowed[i]` (when given); so a
    /// reference zero must be an exact zero unless a tie is allowed there.
    fn compare(&mut self, what: &str, got: &[f32], want: &[f32], allowed: &[f64], rel: f64) {
        let (mut bad, mut tie_steps, mut worst) = (0usize, 0usize, 0f64);
        let mut first_bad = None;
        for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
            let (g, r) = (g as f64, r as f64);
            let diff = (g - r).abs();
            if diff <= rel * r.abs() {
                if r != 0.0 {
                    worst = worst.max(diff / r.abs());
                }
            } else if allowed.get(i).is_some_and(|&a| diff <= a) {
                tie_steps += 1;
            } else {
                bad += 1;
                first_bad.get_or_insert((i, g, r));
            }
        }
        let ok = bad == 0 && got.len() == want.len();
        let ties = if tie_steps > 0 {
            format!(", {tie_steps} one step apart at a .5 tie")
        } else {
            String::new()
        };
        let detail = match first_bad {
            None => format!("{} values, max relative error {worst:.1e}{ties}", got.len()),
            Some((i, g, r)) => format!(
                "{bad} of {} values differ, first at {i}: {g} vs {r}",
                got.len()
            ),
        };
        self.record(what, ok, detail);
    }
}

/// A small seeded generator (xorshift64), enough for test data.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (sum of 12 uniforms − 6).
    fn normal(&mut self) -> f32 {
        (0..12).map(|_| self.uniform()).sum::<f32>() - 6.0
    }
}
