//! Conformance of the int8 family (quantize, dequantize, exact int8 matmul, calibration) on
//! every target.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::int8::{
    ActivationCalibrator, CalibrationMode, MatmulKernel, MatmulTiles, MatmulVariant, QScheme,
    QTensor, QType, int8_qparams,
};
use quantnoise::{DType, Error, Observer, QParams, WeightShape, cpu};

fn main() {
    run(
        &[
            ("quantize_random_round_trip", quantize_random),
            ("quantize_exact_ties_and_saturation", exact_ties),
            ("quantize_observed_matches_reference", quantize_observed),
            ("matmul_acc_bit_exact", matmul_acc_exact),
            ("matmul_f32_within_tolerance", matmul_f32),
            ("calibration_fixes_activation_params", calibration),
            ("bad_inputs_are_typed_errors", bad_inputs),
        ],
        true,
    )
}

const QTYPES: [QType; 2] = [QType::I8, QType::U8];

fn random_qparams(rng: &mut Rng, qtype: QType, rows: u64, per_channel: bool) -> QParams {
    let n = if per_channel { rows } else { 1 };
    let (lo, hi) = qtype.range();
    QParams {
        scale: (0..n)
            .map(|_| (0.002 + rng.uniform() * 0.05) as f32)
            .collect(),
        zero_point: (0..n)
            .map(|_| lo + rng.below((hi - lo + 1) as u64) as i32)
            .collect(),
    }
}

/// Checks quantized values against the f64 reference: equal, or one code apart where the
/// reference's `x / s + z` lies within a relative 1e-5 of a rounding tie (f32 division).
fn check_codes(
    got: &[i32],
    x: &[f32],
    cols: usize,
    qtype: QType,
    q: &QParams,
) -> Result<(), Failed> {
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let want = cpu::int8::quantize(&x64, cols, qtype, q);
    let mut bad = Vec::new();
    for i in 0..got.len() {
        if got[i] == want[i] {
            continue;
        }
        let e = if q.is_per_channel() { i / cols } else { 0 };
        let t = x64[i] / q.scale[e] as f64 + q.zero_point[e] as f64;
        let near_tie = ((t - t.floor()) - 0.5).abs() < 1e-5 * t.abs().max(1.0);
        if !(near_tie && (got[i] - want[i]).abs() == 1) {
            bad.push(format!(
                "[{i}] x {} t {t}: got {} want {}",
                x[i], got[i], want[i]
            ));
        }
    }
    ensure(bad.is_empty(), || {
        format!(
            "{} wrong codes, first {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        )
    })
}

/// Padding bytes past `cols` in each row's last word are zero.
fn check_padding(words: &[u32], rows: usize, cols: usize) -> Result<(), Failed> {
    let wpr = 4 * cols.div_ceil(16);
    ensure(words.len() == rows * wpr, || {
        format!("{} words, want {}", words.len(), rows * wpr)
    })?;
    for r in 0..rows {
        for (j, &w) in words[r * wpr..(r + 1) * wpr].iter().enumerate() {
            // Bytes of this word past `cols` must be zero.
            let valid = cols.saturating_sub(4 * j).min(4);
            let mask = if valid == 4 {
                0
            } else {
                u32::MAX << (8 * valid)
            };
            ensure(w & mask == 0, || {
                format!("row {r} word {j}: padding bytes of {w:#010x} not zero")
            })?;
        }
    }
    Ok(())
}

/// Dequantized values equal the f64 reference rounded to f32.
fn check_dequant(t: &Target, q: &QTensor, codes: &[i32], cols: usize) -> Result<(), Failed> {
    let out = poisoned(&t.ctx, q.len(), DType::F32);
    t.ctx.dequantize(q, &out)?;
    let got = t.ctx.read_f32(&out)?;
    let want = cpu::int8::dequantize(codes, cols, &q.qparams);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        ensure(g.to_bits() == (*w as f32).to_bits(), || {
            format!("dequantize [{i}]: got {g}, want {w}")
        })?;
    }
    Ok(())
}

fn quantize_random(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(0x1a7e);
    let shapes = [
        (1u64, 1u64),
        (1, 7),
        (3, 5),
        (17, 13),
        (2, 256),
        (29, 101),
        (64, 67),
    ];
    for (case, &(rows, cols)) in shapes.iter().enumerate() {
        for qtype in QTYPES {
            for per_channel in [false, true] {
                let q = random_qparams(&mut rng, qtype, rows, per_channel);
                // Values mostly inside the range, some outside (saturation).
                let x = rng.weights(rows * cols, 3.0);
                let xt = t.ctx.upload(&x)?;
                let out = QTensor {
                    data: poisoned(&t.ctx, rows * 4 * cols.div_ceil(16), DType::U32),
                    rows,
                    cols,
                    qtype,
                    qparams: q.clone(),
                };
                t.ctx.quantize_into(&xt, &out)?;
                let ctx_msg = format!("case {case} ({rows}, {cols}) {qtype:?} pc={per_channel}");
                let words = t.ctx.read_u32(&out.data)?;
                check_padding(&words, rows as usize, cols as usize)
                    .map_err(|e| format!("{ctx_msg}: {}", e.message().unwrap_or_default()))?;
                let codes = t.ctx.read_quantized(&out)?;
                check_codes(&codes, &x, cols as usize, qtype, &q)
                    .map_err(|e| format!("{ctx_msg}: {}", e.message().unwrap_or_default()))?;
                check_dequant(t, &out, &codes, cols as usize)
                    .map_err(|e| format!("{ctx_msg}: {}", e.message().unwrap_or_default()))?;
                // The allocating entry point agrees.
                let again = t.ctx.quantize(&xt, rows, cols, qtype, &q)?;
                ensure(t.ctx.read_quantized(&again)? == codes, || {
                    format!("{ctx_msg}: quantize and quantize_into differ")
                })?;
            }
        }
    }
    Ok(())
}

/// Exact ties `x / s + z = k + 0.5` (power-of-two scales, so the f32 division is exact) round to
/// even; out-of-range values and infinities saturate.
fn exact_ties(t: &Target) -> Result<(), Failed> {
    for qtype in QTYPES {
        let rows = 3u64;
        let q = QParams {
            scale: vec![0.5, 0.25, 2.0],
            zero_point: match qtype {
                QType::I8 => vec![0, -7, 5],
                QType::U8 => vec![0, 128, 3],
            },
        };
        let mut x = Vec::new();
        let mut want = Vec::new();
        let (lo, hi) = qtype.range();
        for r in 0..rows as usize {
            let (s, z) = (q.scale[r] as f64, q.zero_point[r] as f64);
            let mut row = Vec::new();
            for k in -140i32..140 {
                // x / s + z = k + 0.5 exactly.
                row.push(((k as f64 + 0.5 - z) * s) as f32);
            }
            row.extend([1e6, -1e6, f32::INFINITY, f32::NEG_INFINITY, 3e38, -3e38]);
            for &v in &row {
                let tq = v as f64 / s + z;
                let e = if tq.is_infinite() {
                    tq
                } else {
                    let f = tq.floor();
                    // Half to even.
                    if (f as i64) % 2 == 0 { f } else { f + 1.0 }
                };
                want.push(e.clamp(lo as f64, hi as f64) as i32);
            }
            x.extend(row);
        }
        let cols = x.len() as u64 / rows;
        let xt = t.ctx.upload(&x)?;
        let out = t.ctx.quantize(&xt, rows, cols, qtype, &q)?;
        let got = t.ctx.read_quantized(&out)?;
        for i in 0..got.len() {
            ensure(got[i] == want[i], || {
                format!(
                    "{qtype:?} [{i}] x = {}: got {}, want {}",
                    x[i], got[i], want[i]
                )
            })?;
        }
        // Round half to even really happened (both parities of ties present and kept).
        ensure(got.iter().filter(|&&v| v == hi).count() > 2, || {
            "no saturation seen".into()
        })?;
        check_dequant(t, &out, &got, cols as usize)?;
    }
    Ok(())
}

/// Parameters from the observers (per tensor and per channel, symmetric and affine), device
/// against the CPU reference.
fn quantize_observed(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(0x0b5e);
    let shape = WeightShape::Linear {
        out_features: 23,
        in_features: 45,
    };
    let w = rng.weights(shape.numel(), 0.5);
    let wt = t.ctx.upload(&w)?;
    let wc = t.cpu.upload(&w)?;
    for observer in [Observer::MinMax, Observer::MinMaxPerChannel] {
        for qtype in QTYPES {
            for scheme in [QScheme::Symmetric, QScheme::Affine] {
                let got = t
                    .ctx
                    .quantize_observed(&wt, &shape, observer, qtype, scheme)?;
                let want = t
                    .cpu
                    .quantize_observed(&wc, &shape, observer, qtype, scheme)?;
                let what = format!("{observer:?} {qtype:?} {scheme:?}");
                ensure(got.qparams == want.qparams, || {
                    format!("{what}: params {:?} vs {:?}", got.qparams, want.qparams)
                })?;
                ensure(
                    got.qparams.scale.len() == if observer == Observer::MinMax { 1 } else { 23 },
                    || format!("{what}: wrong granularity"),
                )?;
                if scheme == QScheme::Symmetric {
                    let z0 = if qtype == QType::I8 { 0 } else { 128 };
                    ensure(got.qparams.zero_point.iter().all(|&z| z == z0), || {
                        format!("{what}: symmetric zero-point not {z0}")
                    })?;
                }
                let codes = t.ctx.read_quantized(&got)?;
                check_codes(&codes, &w, 45, qtype, &got.qparams)
                    .map_err(|e| format!("{what}: {}", e.message().unwrap_or_default()))?;
                // The histogram observer's (clipping) parameters are used as given.
                let hist =
                    t.ctx
                        .quantize_observed(&wt, &shape, Observer::Histogram, qtype, scheme)?;
                ensure(hist.qparams.scale.len() == 1, || {
                    format!("{what}: histogram parameters not per tensor")
                })?;
                check_codes(&t.ctx.read_quantized(&hist)?, &w, 45, qtype, &hist.qparams).map_err(
                    |e| format!("{what} histogram: {}", e.message().unwrap_or_default()),
                )?;
                // Observed ranges cover the data: nothing saturates by more than one step.
                let back = cpu::int8::dequantize(&codes, 45, &got.qparams);
                for (i, (&x, b)) in w.iter().zip(&back).enumerate() {
                    let e = if got.qparams.is_per_channel() {
                        i / 45
                    } else {
                        0
                    };
                    let s = got.qparams.scale[e] as f64;
                    ensure((x as f64 - b).abs() <= 0.5 * s + 1e-7, || {
                        format!("{what} [{i}]: {x} dequantized to {b}, step {s}")
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Every kernel, with its default workgroup shape and an odd one.
fn kernels() -> Vec<MatmulKernel> {
    vec![
        MatmulKernel::Tiled(MatmulTiles::default()),
        MatmulKernel::Tiled(MatmulTiles {
            wgx: 4,
            wgy: 3,
            kv: 1,
        }),
        MatmulKernel::Direct { wgn: 64 },
        MatmulKernel::Direct { wgn: 7 },
    ]
}

struct MatmulCase {
    #[allow(dead_code)]
    m: u64,
    n: u64,
    k: u64,
    xq: Vec<i32>,
    wq: Vec<i32>,
    sx: f32,
    zx: i32,
    sw: Vec<f32>,
    bias: Option<Vec<f32>>,
}

fn random_case(rng: &mut Rng, m: u64, n: u64, k: u64, per_channel: bool, bias: bool) -> MatmulCase {
    let byte = |rng: &mut Rng| rng.below(256) as i32 - 128;
    MatmulCase {
        m,
        n,
        k,
        xq: (0..m * k).map(|_| byte(rng)).collect(),
        wq: (0..n * k).map(|_| byte(rng)).collect(),
        sx: (0.01 + rng.uniform() * 0.1) as f32,
        // Extreme zero-points included.
        zx: match rng.below(4) {
            0 => -128,
            1 => 127,
            _ => byte(rng),
        },
        sw: (0..if per_channel { n } else { 1 })
            .map(|_| (0.001 + rng.uniform() * 0.02) as f32)
            .collect(),
        bias: bias.then(|| rng.weights(n, 1.0)),
    }
}

fn shapes() -> Vec<(u64, u64, u64)> {
    vec![
        (1, 1, 1),
        (1, 1, 4),
        (2, 3, 5),
        (7, 1, 13),
        (1, 31, 64),
        (33, 37, 3),
        (32, 32, 65),
        (41, 29, 127),
        (5, 70, 257),
        (67, 9, 1999),
        (13, 43, 2000),
    ]
}

fn linear(t: &Target, c: &MatmulCase) -> Result<quantnoise::Int8Linear, Failed> {
    let wq = t.ctx.upload_quantized(
        &c.wq,
        c.n,
        c.k,
        QType::I8,
        &QParams {
            scale: c.sw.clone(),
            zero_point: vec![0; c.sw.len()],
        },
    )?;
    Ok(t.ctx.int8_linear(wq)?)
}

fn matmul_acc_exact(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(0xacc);
    for (m, n, k) in shapes() {
        let c = random_case(&mut rng, m, n, k, true, false);
        let x = t
            .ctx
            .upload_quantized(&c.xq, m, k, QType::I8, &QParams::per_tensor(c.sx, c.zx))?;
        let w = linear(t, &c)?;
        let want = cpu::int8::matmul_acc(&c.xq, c.zx, &c.wq, k as usize);
        for (variant, kernel) in MatmulVariant::ALL
            .into_iter()
            .flat_map(|v| kernels().into_iter().map(move |k| (v, k)))
        {
            let acc = poisoned(&t.ctx, m * n, DType::U32);
            t.ctx.int8_matmul_acc_with(&x, &w, &acc, variant, kernel)?;
            let got = t.ctx.read_u32(&acc)?;
            for i in 0..got.len() {
                ensure(got[i] as i32 as i64 == want[i], || {
                    format!(
                        "{variant:?} {kernel:?} ({m}, {n}, {k}) zx {}: acc[{}, {}] = {}, want {}",
                        c.zx,
                        i as u64 / n,
                        i as u64 % n,
                        got[i] as i32,
                        want[i]
                    )
                })?;
            }
        }
    }
    Ok(())
}

fn matmul_f32(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(0xf32);
    for (i, (m, n, k)) in shapes().into_iter().enumerate() {
        let per_channel = i % 2 == 0;
        let c = random_case(&mut rng, m, n, k, per_channel, i % 3 != 0);
        let x = t
            .ctx
            .upload_quantized(&c.xq, m, k, QType::I8, &QParams::per_tensor(c.sx, c.zx))?;
        let w = linear(t, &c)?;
        let bias = c.bias.as_ref().map(|b| t.ctx.upload(b)).transpose()?;
        let acc = cpu::int8::matmul_acc(&c.xq, c.zx, &c.wq, k as usize);
        let b64: Option<Vec<f64>> = c
            .bias
            .as_ref()
            .map(|b| b.iter().map(|&v| v as f64).collect());
        let want = cpu::int8::matmul(&acc, n as usize, c.sx, &c.sw, b64.as_deref());
        let mut outs = Vec::new();
        for (variant, kernel) in MatmulVariant::ALL
            .into_iter()
            .flat_map(|v| kernels().into_iter().map(move |k| (v, k)))
        {
            let y = poisoned(&t.ctx, m * n, DType::F32);
            t.ctx
                .int8_matmul_with(&x, &w, bias.as_ref(), &y, variant, kernel)?;
            let got = t.ctx.read_f32(&y)?;
            for j in 0..got.len() {
                let col = j % n as usize;
                let s = c.sx as f64 * c.sw[if per_channel { col } else { 0 }] as f64;
                let b = b64.as_ref().map_or(0.0, |b| b[col]);
                let tol = 2f64.powi(-21) * ((s * acc[j] as f64).abs() + b.abs());
                ensure((got[j] as f64 - want[j]).abs() <= tol, || {
                    format!(
                        "{variant:?} {kernel:?} ({m}, {n}, {k}) [{j}]: {} vs {} (tol {tol})",
                        got[j], want[j]
                    )
                })?;
            }
            outs.push(got);
        }
        for (i, o) in outs.iter().enumerate() {
            ensure(
                outs[0]
                    .iter()
                    .zip(o)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                || format!("({m}, {n}, {k}): kernel/variant {i} differs from the first"),
            )?;
        }
    }
    Ok(())
}

fn calibration(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(0xca1);
    let batches: Vec<Vec<f32>> = (0..3)
        .map(|b| rng.weights(500 + 77 * b, 1.0 + b as f32))
        .collect();
    for mode in [CalibrationMode::MinMax, CalibrationMode::Histogram] {
        for qtype in QTYPES {
            let mut dev = ActivationCalibrator::new(mode, qtype);
            let mut host = ActivationCalibrator::new(mode, qtype);
            for b in &batches {
                dev.observe(&t.ctx, &t.ctx.upload(b)?)?;
                host.observe(&t.cpu, &t.cpu.upload(b)?)?;
            }
            ensure(dev.batches() == 3, || "batches not counted".into())?;
            let fixed = dev.finish()?;
            let what = format!("{mode:?} {qtype:?}");
            ensure(fixed.qparams.scale.len() == 1, || {
                format!("{what}: not per tensor")
            })?;
            if mode == CalibrationMode::MinMax {
                // Device observers are exact: the same parameters as the CPU reference.
                ensure(fixed == host.finish()?, || {
                    format!("{what}: {:?} vs CPU {:?}", fixed, host.finish())
                })?;
                // The range is the union of the batches' (within half a step at each end).
                let all: Vec<f64> = batches.iter().flatten().map(|&v| v as f64).collect();
                let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let (rlo, rhi) = dev.range().unwrap();
                let s = fixed.qparams.scale[0] as f64;
                ensure((rlo - lo).abs() <= s && (rhi - hi).abs() <= s, || {
                    format!("{what}: range ({rlo}, {rhi}) vs data ({lo}, {hi})")
                })?;
            } else {
                let (rlo, rhi) = dev.range().unwrap();
                ensure(rlo < 0.0 && rhi > 0.0, || {
                    format!("{what}: range ({rlo}, {rhi})")
                })?;
            }
            // Later batches use the fixed parameters, whatever their own range.
            let later = rng.weights(4 * 33, 10.0);
            let q = fixed.quantize(&t.ctx, &t.ctx.upload(&later)?, 4, 33)?;
            ensure(q.qparams == fixed.qparams && q.qtype == qtype, || {
                format!("{what}: parameters changed")
            })?;
            check_codes(
                &t.ctx.read_quantized(&q)?,
                &later,
                33,
                qtype,
                &fixed.qparams,
            )?;
        }
    }
    expect_err(
        &t.ctx,
        ActivationCalibrator::new(CalibrationMode::MinMax, QType::I8).finish(),
        |e| matches!(e, Error::InvalidArgument { .. }),
    )
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let x = ctx.upload(&[0.5f32, -1.0, 2.0, 0.25, 1.0, -0.5])?;
    let invalid = |e: &Error| matches!(e, Error::InvalidArgument { .. });
    let shape_err = |e: &Error| matches!(e, Error::ShapeMismatch { .. });
    let dtype_err = |e: &Error| matches!(e, Error::DTypeMismatch { .. });
    let pt = |s: f32, z: i32| QParams::per_tensor(s, z);
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        expect_err(ctx, ctx.quantize(&x, 2, 3, QType::I8, &pt(s, 0)), invalid)?;
    }
    expect_err(
        ctx,
        ctx.quantize(&x, 2, 3, QType::I8, &pt(0.1, 128)),
        invalid,
    )?;
    expect_err(
        ctx,
        ctx.quantize(&x, 2, 3, QType::I8, &pt(0.1, -129)),
        invalid,
    )?;
    expect_err(
        ctx,
        ctx.quantize(&x, 2, 3, QType::U8, &pt(0.1, -1)),
        invalid,
    )?;
    expect_err(
        ctx,
        ctx.quantize(&x, 2, 3, QType::U8, &pt(0.1, 256)),
        invalid,
    )?;
    // Per-channel parameters of the wrong length.
    let three = QParams {
        scale: vec![0.1; 3],
        zero_point: vec![0; 3],
    };
    expect_err(ctx, ctx.quantize(&x, 2, 3, QType::I8, &three), invalid)?;
    expect_err(
        ctx,
        ctx.quantize(&x, 2, 4, QType::I8, &pt(0.1, 0)),
        shape_err,
    )?;
    expect_err(ctx, ctx.quantize(&x, 0, 3, QType::I8, &pt(0.1, 0)), invalid)?;
    let u = ctx.upload(&[1u32, 2, 3, 4, 5, 6])?;
    expect_err(
        ctx,
        ctx.quantize(&u, 2, 3, QType::I8, &pt(0.1, 0)),
        dtype_err,
    )?;
    let q = ctx.quantize(&x, 2, 3, QType::I8, &pt(0.1, 0))?;
    expect_err(ctx, ctx.dequantize(&q, &u), dtype_err)?;
    expect_err(ctx, ctx.dequantize(&q, &ctx.upload(&[0f32; 5])?), shape_err)?;
    // A descriptor whose data has the wrong length.
    let broken = QTensor {
        cols: 17,
        ..q.clone()
    };
    expect_err(
        ctx,
        ctx.dequantize(&broken, &ctx.upload(&[0f32; 34])?),
        shape_err,
    )?;
    // Aliasing: quantizing a tensor into its own buffer.
    let u24 = ctx.upload(&[0u32; 24])?;
    let alias = QTensor {
        data: u24.clone(),
        rows: 6,
        cols: 1,
        qtype: QType::I8,
        qparams: pt(0.1, 0),
    };
    expect_err(ctx, ctx.quantize_into(&u24, &alias), dtype_err)?;
    // Aliasing: the input viewed in the output's buffer (device only: wrap_buffer).
    if let Some((buffer, _)) = u24.wgpu_buffer() {
        let xa = ctx.wrap_buffer(buffer, 0, 6, DType::F32)?;
        expect_err(ctx, ctx.quantize_into(&xa, &alias), |e| {
            matches!(e, Error::Aliasing { .. })
        })?;
    }
    expect_err(
        ctx,
        ctx.upload_quantized(&[1, 300], 1, 2, QType::I8, &pt(0.1, 0)),
        invalid,
    )?;
    expect_err(
        ctx,
        int8_qparams(&pt(0.1, 300), QType::I8, QScheme::Affine),
        invalid,
    )?;
    // Matmul: the weight must be symmetric I8, activations per-tensor I8, shapes must agree.
    let wq = ctx.upload_quantized(&[1, 2, 3, 4, 5, 6], 2, 3, QType::I8, &pt(0.1, 0))?;
    let w = ctx.int8_linear(wq.clone())?;
    let affine_w = ctx.upload_quantized(&[1, 2, 3, 4, 5, 6], 2, 3, QType::I8, &pt(0.1, 3))?;
    expect_err(ctx, ctx.int8_linear(affine_w), invalid)?;
    let uw = ctx.upload_quantized(&[1, 2, 3, 4, 5, 6], 2, 3, QType::U8, &pt(0.1, 0))?;
    expect_err(ctx, ctx.int8_linear(uw), invalid)?;
    let y = ctx.empty(4, DType::F32)?;
    let ux = ctx.upload_quantized(&[1, 2, 3, 4, 5, 6], 2, 3, QType::U8, &pt(0.1, 5))?;
    let v = MatmulVariant::Dp4a;
    expect_err(ctx, ctx.int8_matmul(&ux, &w, None, &y, v), invalid)?;
    let pcx = ctx.upload_quantized(
        &[1, 2, 3, 4, 5, 6],
        2,
        3,
        QType::I8,
        &QParams {
            scale: vec![0.1, 0.2],
            zero_point: vec![0, 0],
        },
    )?;
    expect_err(ctx, ctx.int8_matmul(&pcx, &w, None, &y, v), invalid)?;
    let x4 = ctx.upload_quantized(&[1; 8], 2, 4, QType::I8, &pt(0.1, 0))?;
    expect_err(ctx, ctx.int8_matmul(&x4, &w, None, &y, v), shape_err)?;
    let xi = ctx.upload_quantized(&[1, 2, 3, 4, 5, 6], 2, 3, QType::I8, &pt(0.1, 1))?;
    expect_err(
        ctx,
        ctx.int8_matmul(&xi, &w, None, &ctx.empty(5, DType::F32)?, v),
        shape_err,
    )?;
    expect_err(
        ctx,
        ctx.int8_matmul(&xi, &w, None, &ctx.empty(4, DType::U32)?, v),
        dtype_err,
    )?;
    expect_err(ctx, ctx.int8_matmul_acc(&xi, &w, &y, v), dtype_err)?;
    expect_err(
        ctx,
        ctx.int8_matmul(&xi, &w, Some(&ctx.upload(&[1f32; 3])?), &y, v),
        shape_err,
    )?;
    // Writing the accumulators over the weight's own row sums.
    let x1 = ctx.upload_quantized(&[1, 2, 3], 1, 3, QType::I8, &pt(0.1, 1))?;
    expect_err(ctx, ctx.int8_matmul_acc(&x1, &w, &w.row_sums, v), |e| {
        matches!(e, Error::Aliasing { .. })
    })?;
    expect_err(
        ctx,
        ctx.int8_matmul_with(&xi, &w, None, &y, v, MatmulKernel::Direct { wgn: 0 }),
        invalid,
    )?;
    expect_err(
        ctx,
        ctx.int8_matmul_with(
            &xi,
            &w,
            None,
            &y,
            v,
            MatmulKernel::Tiled(MatmulTiles {
                wgx: 32,
                wgy: 32,
                kv: 1,
            }),
        ),
        invalid,
    )?;
    // The valid call works after all that.
    ctx.int8_matmul(&xi, &w, None, &y, v)?;
    let got = ctx.read_f32(&y)?;
    let want = cpu::int8::matmul(
        &cpu::int8::matmul_acc(&[1, 2, 3, 4, 5, 6], 1, &[1, 2, 3, 4, 5, 6], 3),
        2,
        0.1,
        &[0.1],
        None,
    );
    compare(&got, &want, 1e-6, 1e-6, &[])
}
