//! int8 inference of one linear layer: calibrate the activations' parameters on a few
//! batches, quantize the weight per output channel (symmetric), run the exact int8 matmul and
//! compare with the f32 product.

use quantnoise::int8::{ActivationCalibrator, CalibrationMode, MatmulVariant, QScheme, QType};
use quantnoise::{Context, DType, Observer, WeightShape};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = Context::new()?;
    let (batch, inp, out) = (16u64, 300u64, 120u64);
    let value = |i: u64, f: f32| ((i as f32 * f).sin() * 1.3 + (i as f32 * 0.011).cos()) * 0.5;
    let shape = WeightShape::Linear {
        out_features: out,
        in_features: inp,
    };
    let w: Vec<f32> = (0..shape.numel()).map(|i| value(i, 0.37) * 0.1).collect();
    let weight = ctx.upload(&w)?;
    let wq = ctx.quantize_observed(
        &weight,
        &shape,
        Observer::MinMaxPerChannel,
        QType::I8,
        QScheme::Symmetric,
    )?;
    let layer = ctx.int8_linear(wq)?;

    // Calibration: a few batches of activations fix the per-tensor parameters.
    let mut calib = ActivationCalibrator::new(CalibrationMode::MinMax, QType::I8);
    for b in 0..4 {
        let x: Vec<f32> = (0..batch * inp)
            .map(|i| value(i + b * 7919, 0.11))
            .collect();
        calib.observe(&ctx, &ctx.upload(&x)?)?;
    }
    let quantizer = calib.finish()?;
    println!(
        "{}: activation params {:?}",
        ctx.describe(),
        quantizer.qparams
    );

    // Inference on a new batch.
    let x: Vec<f32> = (0..batch * inp).map(|i| value(i + 99, 0.11)).collect();
    let xq = quantizer.quantize(&ctx, &ctx.upload(&x)?, batch, inp)?;
    let y = ctx.empty(batch * out, DType::F32)?;
    ctx.int8_matmul(&xq, &layer, None, &y, MatmulVariant::Dp4a)?;
    let y = ctx.read_f32(&y)?;

    let mut max_err = 0.0f64;
    let mut max_ref = 0.0f64;
    for m in 0..batch as usize {
        for n in 0..out as usize {
            let r: f64 = (0..inp as usize)
                .map(|k| x[m * inp as usize + k] as f64 * w[n * inp as usize + k] as f64)
                .sum();
            max_err = max_err.max((y[m * out as usize + n] as f64 - r).abs());
            max_ref = max_ref.max(r.abs());
        }
    }
    let relative = max_err / max_ref;
    println!(
        "int8 vs f32 product: max |error| {max_err:.4} (max |y| {max_ref:.3}, relative {:.2}%)",
        100.0 * relative
    );
    // Two 8-bit roundings per product term: well under 2 % of the output range, or a bug.
    if relative > 0.02 {
        return Err(format!("FAIL: relative error {:.2}% above 2%", 100.0 * relative).into());
    }
    println!("PASS");
    Ok(())
}
