//! Bench cases of the Linear products ([`crate::matmul`]) and the fused noisy Linear
//! ([`crate::noisy_linear`]). Compute-bound: `flops = 2·rows·K·N` per product, compared with
//! the FMA ceiling of the same run. Each is checked on a sample of 64 outputs against an f64
//! dot product of the inputs (noisy cases: of the device's standalone ψ(W), read back), within
//! `1e-7·(R + 2)·Σ|a·b|` (+ `1e-3·|y|` for f16 outputs) for a reduction of length R.
//!
//! Shapes: S = 1024 (256 with `quick`) for the square cases, and X of (batch, 4096) times a
//! 4096 × 4096 weight (1024 with `quick`) for the `_b16` / `_b32` / `_b512` cases (batch 512 → 128 with
//! `quick`). The noisy cases use the chain of the noise cases (`intN`, 8 bits, blocks of 8,
//! p = 0.1, given per-tensor parameters) and the STE `Masked`: `noisy_linear_fwd` / `_bwd`
//! with the precomputed mask, `_regen` with the mask regenerated in the loader, `_unfused`
//! the standalone noise kernel then the dense product. `noisy_linear_pq_*` use one ϕ_PQ stage
//! (p = 0.1, K = 256 centroids of 8, a weight whose blocks lie near centroids): fused (the
//! assignment kernel, then the loader) and unfused (the standalone `pq_noise` kernel).

use std::rc::Rc;

use super::{BLOCK, BenchOptions, Case, CaseKind, P, int_spec, values};
use crate::Context;
use crate::error::Result;
use crate::matmul::{LinearShape, Product, config_in_use};
use crate::noise::{Noise, NoiseSpec, SteMode};
use crate::noisy_linear::MaskSource;
use crate::philox::NoiseSeed;
use crate::runtime::shaders::Family;
use crate::tensor::{DType, Tensor};

const SAMPLES: u64 = 64;

/// The operands of one product kind on the host (as stored) and on the device.
struct Data {
    shape: LinearShape,
    dtype: DType,
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
    xt: Tensor,
    wt: Tensor,
    dyt: Tensor,
}

fn stored(v: Vec<f32>, dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F16 => v
            .into_iter()
            .map(|x| half::f16::from_f32(x).to_f32())
            .collect(),
        _ => v,
    }
}

fn upload(ctx: &Context, v: &[f32], dtype: DType) -> Result<Tensor> {
    match dtype {
        DType::F16 => ctx.upload(
            &v.iter()
                .map(|&x| half::f16::from_f32(x))
                .collect::<Vec<_>>(),
        ),
        _ => ctx.upload(v),
    }
}

fn read(ctx: &Context, t: &Tensor) -> Result<Vec<f32>> {
    match t.dtype() {
        DType::F16 => Ok(ctx.read_f16(t)?.iter().map(|x| x.to_f32()).collect()),
        _ => ctx.read_f32(t),
    }
}

impl Data {
    fn new(ctx: &Context, shape: LinearShape, dtype: DType, seed: u64) -> Result<Rc<Data>> {
        Self::with_weight(ctx, shape, dtype, seed, values(shape.w_len(), seed + 1))
    }

    fn with_weight(
        ctx: &Context,
        shape: LinearShape,
        dtype: DType,
        seed: u64,
        w: Vec<f32>,
    ) -> Result<Rc<Data>> {
        let x = stored(values(shape.x_len(), seed), dtype);
        let w = stored(w, dtype);
        let dy = stored(values(shape.y_len(), seed + 2), dtype);
        Ok(Rc::new(Data {
            xt: upload(ctx, &x, dtype)?,
            wt: upload(ctx, &w, dtype)?,
            dyt: upload(ctx, &dy, dtype)?,
            shape,
            dtype,
            x,
            w,
            dy,
        }))
    }
}

/// Checks `len` outputs sampled with a fixed stride: `want(i)` gives (value, Σ|a·b|).
fn sample_check(
    got: &[f32],
    reduction: u64,
    f16: bool,
    want: impl Fn(usize) -> (f64, f64),
) -> std::result::Result<String, String> {
    let stride = (got.len() as u64 / SAMPLES).max(1) as usize;
    let mut worst = 0.0f64;
    let mut n = 0;
    for i in (0..got.len()).step_by(stride).take(SAMPLES as usize + 1) {
        let (w, bound) = want(i);
        let tol = 1e-7 * (reduction + 2) as f64 * bound + if f16 { 1e-3 * w.abs() } else { 0.0 };
        let err = (got[i] as f64 - w).abs();
        if err.is_nan() || err > tol {
            return Err(format!(
                "output {i}: got {}, expected {w} (tol {tol:.2e})",
                got[i]
            ));
        }
        worst = worst.max(err / tol.max(1e-30));
        n += 1;
    }
    Ok(format!(
        "{n} sampled outputs of {} vs f64 dot products: max err {worst:.2} of the tolerance",
        got.len()
    ))
}

fn dot(a: impl Iterator<Item = f64>, b: impl Iterator<Item = f64>) -> (f64, f64) {
    a.zip(b)
        .fold((0.0, 0.0), |(s, m), (x, y)| (s + x * y, m + (x * y).abs()))
}

/// Y = X·Wᵀ with `w` as the weight values (ψ(W) for the noisy cases).
fn forward_want(d: &Data, w: &[f32], i: usize) -> (f64, f64) {
    let (k, n) = (d.shape.in_features as usize, d.shape.out_features as usize);
    let (r, j) = (i / n, i % n);
    dot(
        d.x[r * k..(r + 1) * k].iter().map(|&v| v as f64),
        w[j * k..(j + 1) * k].iter().map(|&v| v as f64),
    )
}

fn dx_want(d: &Data, w: &[f32], i: usize) -> (f64, f64) {
    let (k, n) = (d.shape.in_features as usize, d.shape.out_features as usize);
    let (r, p) = (i / k, i % k);
    dot(
        d.dy[r * n..(r + 1) * n].iter().map(|&v| v as f64),
        (0..n).map(|j| w[j * k + p] as f64),
    )
}

fn dw_want(d: &Data, i: usize) -> (f64, f64) {
    let (k, n) = (d.shape.in_features as usize, d.shape.out_features as usize);
    let rows = d.shape.total_rows() as usize;
    let (j, p) = (i / k, i % k);
    dot(
        (0..rows).map(|r| d.dy[r * n + j] as f64),
        (0..rows).map(|r| d.x[r * k + p] as f64),
    )
}

/// A case's validation text with the kernel configuration each of its products (of `dtype`
/// tensors) ran with (the autotuner picks one per kernel family, precision and shape bucket, so
/// two cases of a ratio may differ in more than the work).
fn with_configs(
    ctx: &Context,
    family: Family,
    (shape, dtype): (LinearShape, DType),
    products: &[(&str, Product)],
    check: std::result::Result<String, String>,
) -> std::result::Result<String, String> {
    if ctx.is_cpu() {
        return check;
    }
    check.map(|m| {
        let configs: Vec<String> = products
            .iter()
            .map(
                |&(what, p)| match config_in_use(ctx, family, p, shape, dtype) {
                    Some(c) => format!("{what}{c}"),
                    None => format!("{what}not tuned"),
                },
            )
            .collect();
        format!("{m}; kernel: {}", configs.join("; "))
    })
}

fn forward_case<'a>(ctx: &'a Context, name: String, d: Rc<Data>) -> Result<Case<'a>> {
    let y = Rc::new(ctx.empty(d.shape.y_len(), d.dtype)?);
    let (d2, y2) = (d.clone(), y.clone());
    Ok(Case {
        name,
        kind: CaseKind::Device,
        bytes: (d.shape.x_len() + d.shape.w_len() + d.shape.y_len()) * d.dtype.size(),
        flops: Some(d.shape.flops()),
        items: None,
        op: Box::new(move || ctx.linear_forward(&d.xt, &d.wt, None, &y, d.shape)),
        check: Box::new(move || {
            let d = &d2;
            ctx.linear_forward(&d.xt, &d.wt, None, &y2, d.shape)?;
            let got = read(ctx, &y2)?;
            let check = sample_check(&got, d.shape.in_features, d.dtype == DType::F16, |i| {
                forward_want(d, &d.w, i)
            });
            Ok(with_configs(
                ctx,
                Family::Matmul,
                (d.shape, d.dtype),
                &[("", Product::Forward)],
                check,
            ))
        }),
    })
}

fn backward_case<'a>(
    ctx: &'a Context,
    name: String,
    d: Rc<Data>,
    dx: bool,
    dw: bool,
) -> Result<Case<'a>> {
    let gx = Rc::new(ctx.empty(d.shape.x_len(), d.dtype)?);
    let gw = Rc::new(ctx.empty(d.shape.w_len(), d.dtype)?);
    let run = {
        let (d, gx, gw) = (d.clone(), gx.clone(), gw.clone());
        move || -> Result<()> {
            if dx {
                ctx.linear_backward_input(&d.dyt, &d.wt, &gx, d.shape)?;
            }
            if dw {
                ctx.linear_backward_weight(&d.dyt, &d.xt, &gw, d.shape)?;
            }
            Ok(())
        }
    };
    let run = Rc::new(run);
    let run2 = run.clone();
    let s = d.shape;
    Ok(Case {
        name,
        kind: CaseKind::Device,
        bytes: (s.x_len() + s.w_len() + s.y_len()) * d.dtype.size() * (dx as u64 + dw as u64),
        flops: Some(s.flops() * (dx as u64 + dw as u64)),
        items: None,
        op: Box::new(move || run()),
        check: Box::new(move || {
            run2()?;
            let f16 = d.dtype == DType::F16;
            let mut out = Vec::new();
            if dx {
                match sample_check(&read(ctx, &gx)?, s.out_features, f16, |i| {
                    dx_want(&d, &d.w, i)
                }) {
                    Ok(m) => out.push(format!("dx: {m}")),
                    Err(e) => return Ok(Err(format!("dx: {e}"))),
                }
            }
            if dw {
                match sample_check(&read(ctx, &gw)?, s.total_rows(), f16, |i| dw_want(&d, i)) {
                    Ok(m) => out.push(format!("dw: {m}")),
                    Err(e) => return Ok(Err(format!("dw: {e}"))),
                }
            }
            let mut products = Vec::new();
            if dx {
                products.push(("dx ", Product::BackwardInput));
            }
            if dw {
                products.push(("dw ", Product::BackwardWeight));
            }
            Ok(with_configs(
                ctx,
                Family::Matmul,
                (s, d.dtype),
                &products,
                Ok(out.join("; ")),
            ))
        }),
    })
}

/// What a noisy-Linear case times.
#[derive(Clone, Copy)]
enum NoisyOp {
    /// The fused forward, the loader's mask from this source.
    Fused(MaskSource),
    /// ψ(W) by the standalone kernel, then the dense forward.
    Unfused,
    /// The fused backward: dX (the loader's mask from this source) and dW (masked STE).
    Backward(MaskSource),
}

/// The noisy cases of the intN chain (`noisy_linear_*`) and of ϕ_PQ (`noisy_linear_pq_*`).
fn noisy_cases<'a>(ctx: &'a Context, options: &BenchOptions, s: u64) -> Result<Vec<Case<'a>>> {
    use MaskSource::{Precomputed, Regenerated};
    let shape = LinearShape::new(1, s, s, s);
    let int = [
        (format!("noisy_linear_fwd_{s}"), NoisyOp::Fused(Precomputed)),
        (
            format!("noisy_linear_fwd_regen_{s}"),
            NoisyOp::Fused(Regenerated),
        ),
        (
            format!("noisy_linear_bwd_{s}"),
            NoisyOp::Backward(Precomputed),
        ),
        (
            format!("noisy_linear_bwd_regen_{s}"),
            NoisyOp::Backward(Regenerated),
        ),
        (format!("noisy_linear_unfused_fwd_{s}"), NoisyOp::Unfused),
    ];
    let pq = [
        (
            format!("noisy_linear_pq_fwd_{s}"),
            NoisyOp::Fused(MaskSource::DEFAULT),
        ),
        (format!("noisy_linear_pq_unfused_fwd_{s}"), NoisyOp::Unfused),
    ];
    let selected = |ops: &[(String, NoisyOp)]| -> Vec<(String, NoisyOp)> {
        ops.iter()
            .filter(|o| options.selects(&o.0))
            .cloned()
            .collect()
    };
    let mut cases = Vec::new();
    let ops = selected(&int);
    if !ops.is_empty() {
        let d = Data::new(ctx, shape, DType::F32, 40)?;
        cases.extend(noisy_group(ctx, d, &int_spec(8), ops)?);
    }
    let ops = selected(&pq);
    if !ops.is_empty() {
        // K = 256 centroids of 8; every weight block a centroid plus a little noise (as after
        // PQ training), so that no assignment is a near-tie and the check is exact.
        let k = 256;
        let codebook = values(k * BLOCK as u64, 50);
        let jitter = values(shape.w_len(), 51);
        let w: Vec<f32> = (0..shape.w_len() as usize)
            .map(|i| {
                let c = (i / BLOCK as usize).wrapping_mul(2_654_435_761) % k as usize;
                codebook[c * BLOCK as usize + i % BLOCK as usize] + 0.01 * jitter[i]
            })
            .collect();
        let spec = NoiseSpec {
            block_size: BLOCK,
            stages: vec![Noise::Pq {
                p: P,
                codebook: ctx.upload(&codebook)?,
            }],
        };
        let d = Data::with_weight(ctx, shape, DType::F32, 40, w)?;
        cases.extend(noisy_group(ctx, d, &spec, ops)?);
    }
    Ok(cases)
}

/// The cases `ops` of one chain on one weight, checked against the products with the
/// standalone kernel's ψ(W).
fn noisy_group<'a>(
    ctx: &'a Context,
    d: Rc<Data>,
    spec: &NoiseSpec,
    ops: Vec<(String, NoisyOp)>,
) -> Result<Vec<Case<'a>>> {
    let shape = d.shape;
    let seed = NoiseSeed::new(7, 3);
    // ψ(W) by the standalone kernel, for the checks.
    let noisy_w = {
        let t = ctx.empty(shape.w_len(), DType::F32)?;
        ctx.noise_forward(&d.wt, &t, shape.weight_shape(), spec, seed, None)?;
        Rc::new(ctx.read_f32(&t)?)
    };
    let y = Rc::new(ctx.empty(shape.y_len(), DType::F32)?);
    let gx = Rc::new(ctx.empty(shape.x_len(), DType::F32)?);
    let gw = Rc::new(ctx.empty(shape.w_len(), DType::F32)?);
    let bytes = (shape.x_len() + shape.w_len() + shape.y_len()) * 4;
    let mut cases = Vec::new();
    for (name, op) in ops {
        let run = {
            let (d, y, gx, gw, spec) = (d.clone(), y.clone(), gx.clone(), gw.clone(), spec.clone());
            Rc::new(move || -> Result<()> {
                let (x, w, s) = (&d.xt, &d.wt, d.shape);
                match op {
                    NoisyOp::Fused(source) => ctx
                        .with_mask_source(source)
                        .noisy_linear_forward(x, w, None, &y, s, &spec, seed, None)
                        .map(|_| ()),
                    NoisyOp::Unfused => ctx
                        .noisy_linear_forward_unfused(x, w, None, &y, s, &spec, seed, None)
                        .map(|_| ()),
                    NoisyOp::Backward(source) => {
                        ctx.with_mask_source(source).noisy_linear_backward(
                            &d.dyt,
                            x,
                            w,
                            Some(&gx),
                            Some(&gw),
                            s,
                            &spec,
                            seed,
                            SteMode::Masked,
                        )
                    }
                }
            })
        };
        let run2 = run.clone();
        let (d, y, gx, gw, spec, nw) = (
            d.clone(),
            y.clone(),
            gx.clone(),
            gw.clone(),
            spec.clone(),
            noisy_w.clone(),
        );
        let products = if matches!(op, NoisyOp::Backward(_)) {
            2
        } else {
            1
        };
        cases.push(Case {
            name,
            kind: CaseKind::Device,
            bytes: products * bytes,
            flops: Some(products * shape.flops()),
            items: None,
            op: Box::new(move || run()),
            check: Box::new(move || {
                run2()?;
                if !matches!(op, NoisyOp::Backward(_)) {
                    let check = sample_check(&ctx.read_f32(&y)?, shape.in_features, false, |i| {
                        forward_want(&d, &nw, i)
                    });
                    // The unfused path runs the dense kernel after the noise kernel.
                    let family = match op {
                        NoisyOp::Unfused => Family::Matmul,
                        _ => Family::NoisyLinear,
                    };
                    return Ok(with_configs(
                        ctx,
                        family,
                        (shape, DType::F32),
                        &[("", Product::Forward)],
                        check,
                    ));
                }
                let w64: Vec<f64> = d.w.iter().map(|&v| v as f64).collect();
                let factor = crate::cpu::ste::ste_backward(
                    &vec![1.0; w64.len()],
                    &w64,
                    &shape.weight_shape(),
                    &spec,
                    seed,
                    SteMode::Masked,
                );
                let dx = sample_check(&ctx.read_f32(&gx)?, shape.out_features, false, |i| {
                    dx_want(&d, &nw, i)
                });
                let dw = sample_check(&ctx.read_f32(&gw)?, shape.total_rows(), false, |i| {
                    let (v, b) = dw_want(&d, i);
                    (v * factor[i], b * factor[i].abs())
                });
                let check = match (dx, dw) {
                    (Ok(a), Ok(b)) => Ok(format!("dx: {a}; dw (masked STE): {b}")),
                    (Err(e), _) => Err(format!("dx: {e}")),
                    (_, Err(e)) => Err(format!("dw: {e}")),
                };
                let products = [
                    ("dx ", Product::BackwardInput),
                    ("dw ", Product::BackwardWeight),
                ];
                Ok(with_configs(
                    ctx,
                    Family::NoisyLinear,
                    (shape, DType::F32),
                    &products,
                    check,
                ))
            }),
        });
    }
    Ok(cases)
}

/// Every selected matmul and noisy-Linear case.
pub(super) fn cases<'a>(ctx: &'a Context, options: &BenchOptions) -> Result<Vec<Case<'a>>> {
    let (s, wide, big) = if options.quick {
        (256u64, 1024u64, 128u64)
    } else {
        (1024, 4096, 512)
    };
    let mut out = Vec::new();
    let mut dtypes = vec![DType::F32];
    if ctx.features().shader_f16 {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        let t = if dtype == DType::F16 { "f16" } else { "f32" };
        let name = format!("matmul_{t}_{s}");
        if options.selects(&name) {
            out.push(forward_case(
                ctx,
                name,
                Data::new(ctx, LinearShape::new(1, s, s, s), dtype, 10)?,
            )?);
        }
        // Batch 16: the dense side of the PQ matmul's batch-16 comparison.
        for b in [16, 32, big] {
            let name = format!("matmul_{t}_{wide}x{wide}_b{b}");
            if options.selects(&name) {
                let d = Data::new(ctx, LinearShape::new(1, b, wide, wide), dtype, 20)?;
                out.push(forward_case(ctx, name, d)?);
            }
        }
    }
    let bwd = [
        (format!("matmul_bwd_dx_f32_{s}"), true, false),
        (format!("matmul_bwd_dw_f32_{s}"), false, true),
        (format!("matmul_bwd_f32_{s}"), true, true),
    ];
    if bwd.iter().any(|b| options.selects(&b.0)) {
        let d = Data::new(ctx, LinearShape::new(1, s, s, s), DType::F32, 30)?;
        for (name, dx, dw) in bwd {
            if options.selects(&name) {
                out.push(backward_case(ctx, name, d.clone(), dx, dw)?);
            }
        }
    }
    out.extend(noisy_cases(ctx, options, s)?);
    Ok(out)
}
