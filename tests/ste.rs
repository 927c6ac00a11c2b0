//! Conformance of the straight-through backward on every target.

mod common;

use common::*;
use libtest_mimic::Failed;
use proptest::prelude::*;
use quantnoise::cpu;
use quantnoise::{
    DType, Error, Noise, NoiseSeed, NoiseSpec, QParams, QuantScheme, SteMode, WeightShape,
};

const MODES: [SteMode; 3] = [SteMode::Identity, SteMode::Masked, SteMode::Clamped];

fn main() {
    run(
        &[
            ("backward_random_chains_f32", backward_random_f32),
            ("backward_random_chains_f16", backward_random_f16),
            ("masked_matches_forward_mask", masked_matches_forward),
            ("clamped_zeroes_out_of_range", clamped_range),
            ("bad_inputs_are_typed_errors", bad_inputs),
        ],
        true,
    )
}

fn check_case(
    t: &Target,
    dtype: DType,
    bs_index: usize,
    mode_index: usize,
    case_seed: u64,
) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(case_seed);
    let bs = BLOCK_SIZES[bs_index];
    let mode = MODES[mode_index];
    let shape = random_shape(&mut rng, bs, 37, 23);
    let spec = random_spec(&mut rng, bs, shape.rows());
    let seed = NoiseSeed::new(rng.next_u64(), rng.below(1000));
    let w = upload_as(ctx, &rng.weights(shape.numel(), 0.5), dtype);
    let g = upload_as(ctx, &rng.weights(shape.numel(), 2.0), dtype);
    let out = poisoned(ctx, shape.numel(), dtype);
    let resolved = ctx.resolve(&w, &shape, &spec)?;
    ctx.ste_backward(&g, &w, &out, shape, &resolved, seed, mode)?;
    let as64 = |t: &quantnoise::Tensor| -> Result<Vec<f64>, Failed> {
        Ok(ctx.read_f32(t)?.iter().map(|&x| x as f64).collect())
    };
    let want = cpu::ste::ste_backward(&as64(&g)?, &as64(&w)?, &shape, &resolved, seed, mode);
    let rtol = if dtype == DType::F16 { 2e-3 } else { 1e-6 };
    compare(&ctx.read_f32(&out)?, &want, 1e-7, rtol, &[]).map_err(|e| {
        format!(
            "{mode:?} {shape:?} {spec:?}: {}",
            e.message().unwrap_or_default()
        )
        .into()
    })
}

fn random_cases(t: &Target, dtype: DType, cases: u32) -> Result<(), Failed> {
    property(
        cases,
        (0..BLOCK_SIZES.len(), 0..MODES.len(), any::<u64>()),
        |(bs, mode, seed)| check_case(t, dtype, bs, mode, seed),
    )
}

fn backward_random_f32(t: &Target) -> Result<(), Failed> {
    random_cases(t, DType::F32, 40)
}

fn backward_random_f16(t: &Target) -> Result<(), Failed> {
    if !t.ctx.features().shader_f16 {
        let g = t.ctx.upload(&[half::f16::ONE; 8])?;
        let out = t.ctx.empty(8, DType::F16)?;
        let r = t.ctx.ste_backward(
            &g,
            &g,
            &out,
            WeightShape::matrix(2, 4),
            &NoiseSpec::proxy(4, 0.5),
            NoiseSeed::new(1, 1),
            SteMode::Masked,
        );
        return expect_err(&t.ctx, r, |e| matches!(e, Error::Unsupported { .. }));
    }
    random_cases(t, DType::F16, 20)
}

/// The masked backward zeroes exactly the blocks the forward zeroed and scales the rest by
/// 1/(1−p): with a rescaling proxy, grad_w = d(noisy)/dW · grad for every element.
fn masked_matches_forward(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let shape = WeightShape::Linear {
        out_features: 45,
        in_features: 72,
    };
    let spec = NoiseSpec::proxy(8, 0.35);
    let seed = NoiseSeed::new(77, 12);
    let mut rng = Rng(4);
    let w = rng.weights(shape.numel(), 1.0);
    let weight = ctx.upload(&w)?;
    let noisy = poisoned(ctx, shape.numel(), DType::F32);
    let resolved = ctx.noise_forward(&weight, &noisy, shape, &spec, seed, None)?;
    let ones = ctx.upload(&vec![1.0f32; shape.numel() as usize])?;
    let grad = poisoned(ctx, shape.numel(), DType::F32);
    ctx.ste_backward(
        &ones,
        &weight,
        &grad,
        shape,
        &resolved,
        seed,
        SteMode::Masked,
    )?;
    let (noisy, grad) = (ctx.read_f32(&noisy)?, ctx.read_f32(&grad)?);
    for i in 0..w.len() {
        let ratio = noisy[i] / w[i];
        ensure(
            (ratio - grad[i]).abs() <= 1e-5 * grad[i].abs().max(1.0),
            || {
                format!(
                    "element {i}: noisy/w = {ratio}, masked gradient factor {}",
                    grad[i]
                )
            },
        )?;
    }
    Ok(())
}

/// Clamped: gradient passes inside [−s·z, s·(2^bits−1−z)] and is 0 outside, also per channel.
fn clamped_range(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let shape = WeightShape::matrix(3, 8);
    let q = QParams {
        scale: vec![0.1, 0.2, 0.05],
        zero_point: vec![8, 0, 15],
    };
    let spec = NoiseSpec {
        block_size: 4,
        stages: vec![Noise::IntN {
            p: 0.5,
            bits: 4,
            scheme: QuantScheme::Given(q.clone()),
        }],
    };
    let w: Vec<f32> = (0..24).map(|i| (i % 8) as f32 * 0.4 - 1.5).collect();
    let weight = ctx.upload(&w)?;
    let g = ctx.upload(&[3.0f32; 24])?;
    let out = poisoned(ctx, 24, DType::F32);
    ctx.ste_backward(
        &g,
        &weight,
        &out,
        shape,
        &spec,
        NoiseSeed::new(1, 2),
        SteMode::Clamped,
    )?;
    let got = ctx.read_f32(&out)?;
    for (i, (&x, &gi)) in w.iter().zip(&got).enumerate() {
        let (lo, hi) = q.range(i / 8, 4);
        let want = if x >= lo && x <= hi { 3.0 } else { 0.0 };
        ensure(gi == want, || {
            format!("w[{i}] = {x} in [{lo}, {hi}]: gradient {gi}, want {want}")
        })?;
    }
    ensure(got.contains(&0.0) && got.contains(&3.0), || {
        "test data should hit both sides".into()
    })
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let shape = WeightShape::matrix(4, 8);
    let a = ctx.upload(&Rng(1).weights(32, 1.0))?;
    let b = ctx.upload(&Rng(2).weights(32, 1.0))?;
    let out = ctx.empty(32, DType::F32)?;
    let short = ctx.empty(31, DType::F32)?;
    let spec = NoiseSpec::proxy(4, 0.2);
    let seed = NoiseSeed::new(3, 3);
    expect_err(
        ctx,
        ctx.ste_backward(&a, &b, &short, shape, &spec, seed, SteMode::Masked),
        |e| {
            matches!(
                e,
                Error::ShapeMismatch {
                    what: "grad_weight",
                    ..
                }
            )
        },
    )?;
    expect_err(
        ctx,
        ctx.ste_backward(&a, &b, &a, shape, &spec, seed, SteMode::Masked),
        |e| matches!(e, Error::Aliasing { .. }),
    )?;
    expect_err(
        ctx,
        ctx.ste_backward(
            &a,
            &b,
            &out,
            shape,
            &NoiseSpec::proxy(3, 0.2),
            seed,
            SteMode::Masked,
        ),
        |e| matches!(e, Error::BlockSizeMismatch { .. }),
    )?;
    expect_err(
        ctx,
        ctx.ste_backward(
            &a,
            &b,
            &out,
            shape,
            &NoiseSpec::proxy(4, f64::NAN),
            seed,
            SteMode::Masked,
        ),
        |e| matches!(e, Error::InvalidArgument { name: "p", .. }),
    )?;
    let out16 = ctx.empty(32, DType::F16)?;
    expect_err(
        ctx,
        ctx.ste_backward(&a, &b, &out16, shape, &spec, seed, SteMode::Identity),
        |e| matches!(e, Error::DTypeMismatch { .. }),
    )
}
