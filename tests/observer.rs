//! Conformance of the device observers (min/max per tensor and per row, histogram) on every
//! target.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::{DType, Error, Observer, QParams, WeightShape, cpu};

fn main() {
    run(
        &[
            ("minmax_matches_reference", minmax),
            ("histogram_close_to_reference", histogram),
            ("histogram_clips_outliers", histogram_outliers),
            ("f16_weights", f16_weights),
            ("non_finite_is_an_error", non_finite),
        ],
        true,
    )
}

fn random_weight(t: &Target, seed: u64) -> (WeightShape, Vec<f32>, quantnoise::Tensor) {
    let mut rng = Rng(seed);
    let shape = WeightShape::matrix(1 + rng.below(70), 1 + rng.below(300));
    let scale = 0.01 + rng.uniform() as f32 * 3.0;
    let mut w = rng.weights(shape.numel(), scale);
    if rng.below(2) == 0 {
        // One-sided data: the range must still contain 0.
        w.iter_mut().for_each(|x| *x = x.abs() + 0.1);
    }
    let tensor = t.ctx.upload(&w).unwrap();
    (shape, w, tensor)
}

/// Min/max are exact in f32, so device and reference parameters are identical.
fn minmax(t: &Target) -> Result<(), Failed> {
    for seed in 0..12 {
        let (shape, w, tensor) = random_weight(t, seed);
        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        for observer in [Observer::MinMax, Observer::MinMaxPerChannel] {
            for bits in [1u8, 4, 8] {
                let got = t.ctx.observe(&tensor, &shape, observer, bits)?;
                let want = cpu::observer::observe(&w64, &shape, observer, bits)?;
                ensure(got == want, || {
                    format!("{observer:?} {bits} bits {shape:?}: {got:?} vs {want:?}")
                })?;
                got.validate(bits, shape.rows())?;
            }
        }
    }
    Ok(())
}

/// L2 quantization error of `w` with per-tensor parameters `q`.
fn l2_error(w: &[f32], q: &QParams, bits: u8) -> f64 {
    w.iter()
        .map(|&x| {
            let d = x as f64 - cpu::noise::fake_quant(x as f64, q.scale[0], q.zero_point[0], bits);
            d * d
        })
        .sum()
}

/// Device histograms may bin boundary values differently (f32 division), so the device's range
/// must be as good as the reference's: L2 error within 2 % (plus a floor).
fn histogram(t: &Target) -> Result<(), Failed> {
    for seed in 0..8 {
        let (shape, w, tensor) = random_weight(t, 100 + seed);
        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        for bits in [2u8, 4, 8] {
            let got = t.ctx.observe(&tensor, &shape, Observer::Histogram, bits)?;
            let want = cpu::observer::observe(&w64, &shape, Observer::Histogram, bits)?;
            got.validate(bits, 1)?;
            let (eg, ew) = (l2_error(&w, &got, bits), l2_error(&w, &want, bits));
            ensure(eg <= ew * 1.02 + 1e-12, || {
                format!(
                    "{bits} bits {shape:?}: device L2 {eg} vs reference {ew} ({got:?} / {want:?})"
                )
            })?;
        }
    }
    Ok(())
}

fn histogram_outliers(t: &Target) -> Result<(), Failed> {
    let shape = WeightShape::matrix(64, 256);
    // Bulk in [-2, 2] (std 0.58) and one outlier at 8: min-max spends most levels on empty
    // range (L2 ≈ 600), clipping near the bulk costs the outlier (8 − 2)² but gains far more.
    let mut w = Rng(9).weights(shape.numel(), 1.0);
    w[1234] = 8.0;
    let tensor = t.ctx.upload(&w)?;
    let hist = t.ctx.observe(&tensor, &shape, Observer::Histogram, 4)?;
    let minmax = t.ctx.observe(&tensor, &shape, Observer::MinMax, 4)?;
    let (eh, em) = (l2_error(&w, &hist, 4), l2_error(&w, &minmax, 4));
    ensure(eh < em / 2.0, || {
        format!("histogram L2 {eh} should beat min-max {em} with an outlier")
    })
}

fn f16_weights(t: &Target) -> Result<(), Failed> {
    let shape = WeightShape::matrix(17, 33);
    let w = Rng(5).weights(shape.numel(), 1.0);
    let tensor = upload_as(&t.ctx, &w, DType::F16);
    let r = t
        .ctx
        .observe(&tensor, &shape, Observer::MinMaxPerChannel, 8);
    if !t.ctx.features().shader_f16 {
        return expect_err(&t.ctx, r, |e| matches!(e, Error::Unsupported { .. }));
    }
    let w64: Vec<f64> = t.ctx.read_f32(&tensor)?.iter().map(|&x| x as f64).collect();
    let want = cpu::observer::observe(&w64, &shape, Observer::MinMaxPerChannel, 8)?;
    let got = r?;
    ensure(got == want, || format!("{got:?} vs {want:?}"))
}

fn non_finite(t: &Target) -> Result<(), Failed> {
    let shape = WeightShape::matrix(10, 50);
    let mut w = Rng(6).weights(shape.numel(), 1.0);
    w[3] = f32::NAN;
    w[260] = f32::NEG_INFINITY;
    w[499] = f32::INFINITY;
    let tensor = t.ctx.upload(&w)?;
    for observer in [
        Observer::MinMax,
        Observer::MinMaxPerChannel,
        Observer::Histogram,
    ] {
        let r = t.ctx.observe(&tensor, &shape, observer, 8);
        expect_err(&t.ctx, r, |e| {
            matches!(e, Error::NonFinite { count: 3, .. })
        })?;
    }
    expect_err(
        &t.ctx,
        t.ctx.observe(&tensor, &shape, Observer::MinMax, 0),
        |e| matches!(e, Error::InvalidArgument { name: "bits", .. }),
    )?;
    expect_err(
        &t.ctx,
        t.ctx
            .observe(&tensor, &WeightShape::matrix(10, 49), Observer::MinMax, 8),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    )
}
