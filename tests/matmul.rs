//! Conformance of the dense Linear products (`Context::linear_forward`, `linear_backward_input`,
//! `linear_backward_weight`) on every target, against the f64 reference.
//!
//! Tolerance: f32 accumulation over a reduction of length R has error at most about
//! `R·u·Σ|a·b|` (u = 2⁻²⁴), so each output must be within `1e-7·(R + 2)·Σ|a·b|` of the f64
//! value (the inputs are exactly representable), plus half an f16 ulp of the value (`1e-3·|y|`)
//! for f16 outputs.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::matmul::{
    LinearShape, MatmulConfig, Product, Tuning, set_tuning, tuned, with_tuning,
};
use quantnoise::{Context, DType, Error, cpu};

fn main() {
    // No autotuning unless a test asks for it (per thread, with `with_tuning`): the tests run
    // on several threads at once.
    set_tuning(Tuning::Off).expect("valid tuning");
    run(
        &[
            ("random_shapes_f32", random_f32),
            ("random_shapes_f16", random_f16),
            ("long_reduction", long_reduction),
            ("every_tuning_candidate", every_candidate),
            ("broadcast_kernel", broadcast_kernel),
            ("bad_inputs_are_typed_errors", bad_inputs),
        ],
        true,
    )
}

/// (batch, rows, in_features, out_features): ones, primes, non-multiples of the tiles, batch > 1.
const SHAPES: [(u64, u64, u64, u64); 7] = [
    (1, 1, 1, 1),
    (1, 7, 13, 5),
    (3, 5, 17, 11),
    (2, 33, 31, 67),
    (1, 65, 64, 64),
    (4, 1, 29, 3),
    (1, 97, 41, 23),
];

fn values(rng: &mut Rng, n: u64, dtype: DType) -> Vec<f32> {
    let v = rng.weights(n, 0.5);
    match dtype {
        DType::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
        _ => v,
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn read(ctx: &Context, t: &quantnoise::Tensor) -> Vec<f32> {
    match t.dtype() {
        DType::F16 => ctx
            .read_f16(t)
            .unwrap()
            .iter()
            .map(|x| x.to_f32())
            .collect(),
        _ => ctx.read_f32(t).unwrap(),
    }
}

fn check(
    what: &str,
    got: &[f32],
    want: &[f64],
    bound: &[f64],
    reduction: u64,
    dtype: DType,
) -> Result<(), Failed> {
    ensure(got.len() == want.len(), || format!("{what}: length"))?;
    let rel = if dtype == DType::F16 { 1e-3 } else { 0.0 };
    let mut bad = Vec::new();
    for i in 0..got.len() {
        let tol = 1e-7 * (reduction + 2) as f64 * bound[i] + rel * want[i].abs() + 1e-30;
        let g = got[i] as f64;
        let err = (g - want[i]).abs();
        if err.is_nan() || err > tol {
            bad.push(format!("[{i}] got {g} want {} (tol {tol:.2e})", want[i]));
        }
    }
    ensure(bad.is_empty(), || {
        format!(
            "{what}: {} mismatches, first {:?}",
            bad.len(),
            &bad[..bad.len().min(4)]
        )
    })
}

/// Runs the three products of `s` on `t` with `dtype` and checks them.
fn products(
    t: &Target,
    s: LinearShape,
    dtype: DType,
    rng: &mut Rng,
    bias: bool,
) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let (k, n) = (s.in_features as usize, s.out_features as usize);
    let xv = values(rng, s.x_len(), dtype);
    let wv = values(rng, s.w_len(), dtype);
    let bv = values(rng, s.out_features, dtype);
    let dyv = values(rng, s.y_len(), dtype);
    let (x, w, b, dy) = (
        upload_as(ctx, &xv, dtype),
        upload_as(ctx, &wv, dtype),
        upload_as(ctx, &bv, dtype),
        upload_as(ctx, &dyv, dtype),
    );
    let y = poisoned(ctx, s.y_len(), dtype);
    let dx = poisoned(ctx, s.x_len(), dtype);
    let dw = poisoned(ctx, s.w_len(), dtype);
    ctx.linear_forward(&x, &w, bias.then_some(&b), &y, s)?;
    ctx.linear_backward_input(&dy, &w, &dx, s)?;
    ctx.linear_backward_weight(&dy, &x, &dw, s)?;
    let (x64, w64, b64, dy64) = (f64s(&xv), f64s(&wv), f64s(&bv), f64s(&dyv));
    let bias64 = bias.then_some(b64.as_slice());
    let want = cpu::matmul::linear_forward(&x64, &w64, bias64, k, n);
    let bound =
        cpu::matmul::linear_forward(&abs(&x64), &abs(&w64), bias.then_some(&abs(&b64)[..]), k, n);
    check(
        &format!("{s:?} y"),
        &read(ctx, &y),
        &want,
        &bound,
        s.in_features,
        dtype,
    )?;
    let want = cpu::matmul::backward_input(&dy64, &w64, k, n);
    let bound = cpu::matmul::backward_input(&abs(&dy64), &abs(&w64), k, n);
    check(
        &format!("{s:?} dx"),
        &read(ctx, &dx),
        &want,
        &bound,
        s.out_features,
        dtype,
    )?;
    let want = cpu::matmul::backward_weight(&dy64, &x64, k, n);
    let bound = cpu::matmul::backward_weight(&abs(&dy64), &abs(&x64), k, n);
    check(
        &format!("{s:?} dw"),
        &read(ctx, &dw),
        &want,
        &bound,
        s.total_rows(),
        dtype,
    )
}

fn random_f32(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(11);
    for (i, &(b, m, k, n)) in SHAPES.iter().enumerate() {
        products(
            t,
            LinearShape::new(b, m, k, n),
            DType::F32,
            &mut rng,
            i % 2 == 0,
        )?;
    }
    Ok(())
}

fn random_f16(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(12);
    if t.is_gpu() && !t.ctx.features().shader_f16 {
        let s = LinearShape::new(1, 2, 3, 4);
        let x = upload_as(&t.ctx, &[1.0; 6], DType::F16);
        let w = upload_as(&t.ctx, &[1.0; 12], DType::F16);
        let y = t.ctx.empty(8, DType::F16)?;
        return expect_err(&t.ctx, t.ctx.linear_forward(&x, &w, None, &y, s), |e| {
            matches!(e, Error::Unsupported { .. })
        });
    }
    for (i, &(b, m, k, n)) in SHAPES.iter().enumerate() {
        products(
            t,
            LinearShape::new(b, m, k, n),
            DType::F16,
            &mut rng,
            i % 2 == 1,
        )?;
    }
    Ok(())
}

/// K and the batch reduction above 1000 (W kept within the 16 KiB window).
fn long_reduction(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(13);
    products(
        t,
        LinearShape::new(1, 9, 1001, 3),
        DType::F32,
        &mut rng,
        true,
    )?;
    products(
        t,
        LinearShape::new(5, 211, 7, 5),
        DType::F32,
        &mut rng,
        false,
    )
}

/// Every autotuning candidate (forced on this thread: other tests run meanwhile) gives results
/// within the same tolerance. (Not on the windowed targets: the same pipelines, and compiling
/// every candidate is slow on lavapipe.)
fn every_candidate(t: &Target) -> Result<(), Failed> {
    if t.name.contains("window=") {
        return Ok(());
    }
    let mut rng = Rng(14);
    // wgpu's GL backend on llvmpipe compiles each pipeline variant for seconds: there, one
    // candidate of each kind (the shader's GLSL translation of every kind is still checked).
    let gl = t.name.starts_with("Gl");
    let mut kinds = std::collections::HashSet::new();
    for c in MatmulConfig::CANDIDATES {
        if gl && !kinds.insert((c.k_fast, c.spread, c.k_split > 1, c.broadcast)) {
            continue;
        }
        with_tuning(Tuning::Fixed(c), || {
            products(
                t,
                LinearShape::new(2, 37, 45, 70),
                DType::F32,
                &mut rng,
                true,
            )
        })?
        .map_err(|e| format!("{c:?}: {e:?}"))?;
    }
    // Auto: times the candidates, then uses the winner.
    with_tuning(Tuning::Auto, || {
        products(
            t,
            LinearShape::new(1, 19, 23, 29),
            DType::F32,
            &mut rng,
            true,
        )
    })??;
    with_tuning(Tuning::Auto, || auto_per_precision(t, &mut rng))?
}

/// Under Auto, f16 products of a shape bucket are tuned apart from the f32 ones: the f32 winner
/// may be a kernel without f16 (on lavapipe the broadcast kernel wins this shape), which an f16
/// product of the same bucket reused and failed with before. (Only where the adapter has f16.)
fn auto_per_precision(t: &Target, rng: &mut Rng) -> Result<(), Failed> {
    if !t.is_gpu() || !t.ctx.features().shader_f16 {
        return Ok(());
    }
    let s = LinearShape::new(1, 64, 512, 256);
    let (m, n, k) = (s.total_rows(), s.out_features, s.in_features);
    products(t, s, DType::F32, rng, true)?;
    let forward = |dtype| tuned(&t.ctx, Product::Forward, dtype, m, n, k);
    ensure(forward(DType::F32).is_some(), || "f32 not tuned".into())?;
    ensure(forward(DType::F16).is_none(), || {
        format!("f16 took the f32 winner {:?}", forward(DType::F16))
    })?;
    products(t, s, DType::F16, rng, true)?;
    ensure(forward(DType::F16).is_some_and(|c| !c.broadcast), || {
        format!("f16 winner {:?}", forward(DType::F16))
    })
}

/// The broadcast kernel on shapes past its blocks: M not a multiple of its 32 rows, N of its
/// 256 columns, K (and dW's reduction over the rows) over several dispatches of 3 sub-slabs of
/// 64 and not a multiple of 64. On a second device of the adapter with 1 MiB windows, X spans
/// two windows (dW adds the second window's sums), and a product whose partial sums cannot fit
/// a window adds them in C. Where its weight blocks cannot fit a window (16 KiB), a typed
/// error. The shapes take both stagings of A and both packings of B (aligned vec4s or not).
fn broadcast_kernel(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(15);
    let fixed = |f: &mut dyn FnMut() -> Result<(), Failed>| {
        with_tuning(Tuning::Fixed(MatmulConfig::BROADCAST), f)?
    };
    if t.name.contains("window=") {
        let s = LinearShape::new(1, 3, 4, 5);
        let (x, w, y) = (
            t.ctx.upload(&[0.5f32; 12])?,
            t.ctx.upload(&[0.5f32; 20])?,
            t.ctx.empty(15, DType::F32)?,
        );
        return fixed(&mut || {
            expect_err(&t.ctx, t.ctx.linear_forward(&x, &w, None, &y, s), |e| {
                matches!(e, Error::InvalidArgument { .. })
            })
        });
    }
    // On GL, whose driver compiles each of the kernel's long pipelines for many seconds, the
    // first shape only.
    let shapes = [
        LinearShape::new(1, 70, 300, 520),
        LinearShape::new(3, 71, 193, 257),
    ];
    let count = if t.name.starts_with("Gl") { 1 } else { 2 };
    for (i, s) in shapes.into_iter().take(count).enumerate() {
        fixed(&mut || products(t, s, DType::F32, &mut rng, i == 0))?;
    }
    if let Some(wide) = windowed_target(t, 1 << 20)? {
        let s = LinearShape::new(1, 600, 450, 40);
        fixed(&mut || products(&wide, s, DType::F32, &mut rng, true))?;
        // The forward's partial sums (41 blocks of 32 rows, 32 KiB each) exceed the 1 MiB
        // window: its two dispatches add in Y itself. dW (K = 1300) keeps them apart.
        let s = LinearShape::new(1, 1300, 200, 8);
        fixed(&mut || products(&wide, s, DType::F32, &mut rng, true))?;
    }
    Ok(())
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let s = LinearShape::new(2, 3, 4, 5);
    let x = ctx.upload(&[0.5f32; 24])?;
    let w = ctx.upload(&[0.5f32; 20])?;
    let y = ctx.empty(30, DType::F32)?;
    let shape_err = |e: &Error| matches!(e, Error::ShapeMismatch { .. });
    let bad_x = ctx.upload(&[0.5f32; 23])?;
    expect_err(ctx, ctx.linear_forward(&bad_x, &w, None, &y, s), shape_err)?;
    let short_bias = ctx.upload(&[1.0f32; 4])?;
    expect_err(
        ctx,
        ctx.linear_forward(&x, &w, Some(&short_bias), &y, s),
        |e| matches!(e, Error::ShapeMismatch { what: "bias", .. }),
    )?;
    let u = ctx.empty(20, DType::U32)?;
    expect_err(ctx, ctx.linear_forward(&x, &u, None, &y, s), |e| {
        matches!(e, Error::DTypeMismatch { .. })
    })?;
    let w16 = upload_as(ctx, &[0.5; 20], DType::F16);
    expect_err(ctx, ctx.linear_forward(&x, &w16, None, &y, s), |e| {
        matches!(e, Error::DTypeMismatch { .. })
    })?;
    let dx = ctx.empty(24, DType::F32)?;
    expect_err(
        ctx,
        ctx.linear_backward_input(&y, &w, &dx, LinearShape::new(2, 3, 4, 6)),
        shape_err,
    )?;
    expect_err(ctx, ctx.linear_backward_weight(&y, &x, &x, s), |e| {
        matches!(e, Error::ShapeMismatch { .. } | Error::Aliasing { .. })
    })?;
    let dw = ctx.empty(20, DType::F32)?;
    expect_err(
        ctx,
        ctx.linear_backward_weight(&y, &x, &dw, LinearShape::new(0, 3, 4, 5)),
        |e| matches!(e, Error::InvalidArgument { .. }),
    )?;
    // A tensor of another context.
    let other = if t.is_gpu() {
        Context::cpu()
    } else {
        t.ctx.clone()
    };
    if t.is_gpu() {
        let foreign = other.upload(&[0.5f32; 24])?;
        expect_err(ctx, ctx.linear_forward(&foreign, &w, None, &y, s), |e| {
            matches!(e, Error::WrongContext { .. })
        })?;
    }
    Ok(())
}
