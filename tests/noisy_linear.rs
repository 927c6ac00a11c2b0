//! Conformance of the fused noisy Linear layer (`Context::noisy_linear_forward` /
//! `noisy_linear_backward`) on every target.
//!
//! The fused products are compared with the same target's standalone ops: ψ(W) written by
//! `Context::noise_forward` for the spec the fused forward returned (so observers are not run
//! twice), read back and multiplied in f64. The masks must be bit-identical (the fused op's
//! mask with the standalone kernel's and the f64 reference's). dW is checked against the f64
//! `dYᵀ·X` times the STE factor of the f64 reference (`cpu::ste`). Tolerance as in
//! tests/matmul.rs: `1e-7·(R + 2)·Σ|a·b|` for a reduction of length R.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::matmul::{LinearShape, MatmulConfig, Tuning, set_tuning, with_tuning};
use quantnoise::{
    Context, DType, Error, MaskSource, Noise, NoiseSeed, NoiseSpec, Observer, QuantScheme, SteMode,
    Tensor, cpu,
};

fn main() {
    // No autotuning unless a test asks for it (per thread, with `with_tuning`): the tests run
    // on several threads at once.
    set_tuning(Tuning::Off).expect("valid tuning");
    run(
        &[
            ("forward_matches_standalone_noise", forward),
            ("backward_matches_standalone_ops", backward),
            ("split_k_products_match", split_k),
            ("broadcast_kernel_products_match", broadcast),
            ("regenerated_mask_matches_precomputed", regenerated),
            ("fused_pq_first_stage_matches_standalone", fused_pq),
            (
                "pq_chains_the_loader_cannot_express_take_the_unfused_path",
                pq_chain,
            ),
            ("bad_inputs_are_typed_errors", bad_inputs),
            (
                "same_results_without_uniform_tables",
                without_uniform_tables,
            ),
        ],
        true,
    )
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// `got` within `1e-7·(r + 2)·bound` (+ `slack`, where given) of `want`.
fn check(
    what: &str,
    got: &[f32],
    want: &[f64],
    (bound, slack): (&[f64], &[f64]),
    r: u64,
) -> Result<(), Failed> {
    let mut bad = Vec::new();
    for i in 0..got.len() {
        let tol = 1e-7 * (r + 2) as f64 * bound[i] + slack.get(i).copied().unwrap_or(0.0) + 1e-30;
        let err = (got[i] as f64 - want[i]).abs();
        if err.is_nan() || err > tol {
            bad.push(format!(
                "[{i}] got {} want {} (tol {tol:.2e})",
                got[i], want[i]
            ));
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

/// Checks `got` against the f64 `x · noisyᵀ (+ bias)` (`k` in, `n` out features), with the
/// bound from the absolute values; `slack` (per weight, may be empty) is how far a weight may
/// be from `noisy`.
fn check_forward(
    what: &str,
    got: &[f32],
    (x, noisy, slack): (&[f64], &[f64], &[f64]),
    bias: Option<&[f64]>,
    (k, n): (usize, usize),
) -> Result<(), Failed> {
    let want = cpu::matmul::linear_forward(x, noisy, bias, k, n);
    let b_abs = bias.map(abs);
    let bound = cpu::matmul::linear_forward(&abs(x), &abs(noisy), b_abs.as_deref(), k, n);
    let slack = if slack.is_empty() {
        Vec::new()
    } else {
        cpu::matmul::linear_forward(&abs(x), slack, None, k, n)
    };
    check(what, got, &want, (&bound, &slack), k as u64)
}

/// Checks `got` against the f64 `dy · noisy`, as [`check_forward`].
fn check_dx(
    what: &str,
    got: &[f32],
    (dy, noisy, slack): (&[f64], &[f64], &[f64]),
    (k, n): (usize, usize),
) -> Result<(), Failed> {
    let want = cpu::matmul::backward_input(dy, noisy, k, n);
    let bound = cpu::matmul::backward_input(&abs(dy), &abs(noisy), k, n);
    let slack = if slack.is_empty() {
        Vec::new()
    } else {
        cpu::matmul::backward_input(&abs(dy), slack, k, n)
    };
    check(what, got, &want, (&bound, &slack), n as u64)
}

/// Checks `got` against the f64 `dyᵀ·x` times the reference STE factor of `mode`.
fn check_dw(
    what: &str,
    got: &[f32],
    (dy, x, w): (&[f64], &[f64], &[f64]),
    s: LinearShape,
    (resolved, seed, mode): (&NoiseSpec, NoiseSeed, SteMode),
) -> Result<(), Failed> {
    let (k, n) = (s.in_features as usize, s.out_features as usize);
    let plain = cpu::matmul::backward_weight(dy, x, k, n);
    let bound = cpu::matmul::backward_weight(&abs(dy), &abs(x), k, n);
    let ws = s.weight_shape();
    let factor = cpu::ste::ste_backward(&vec![1.0; plain.len()], w, &ws, resolved, seed, mode);
    let want: Vec<f64> = plain.iter().zip(&factor).map(|(a, f)| a * f).collect();
    let bound: Vec<f64> = bound
        .iter()
        .zip(&factor)
        .map(|(a, f)| a * f.abs())
        .collect();
    check(what, got, &want, (&bound, &[]), s.total_rows())
}

/// `noisy_linear_backward` into fresh poisoned `(grad_x, grad_w)`.
fn backward_both(
    ctx: &Context,
    (dy, x, w): (&Tensor, &Tensor, &Tensor),
    s: LinearShape,
    resolved: &NoiseSpec,
    seed: NoiseSeed,
    mode: SteMode,
) -> Result<(Tensor, Tensor), Failed> {
    let dx = poisoned(ctx, s.x_len(), DType::F32);
    let dw = poisoned(ctx, s.w_len(), DType::F32);
    ctx.noisy_linear_backward(dy, x, w, Some(&dx), Some(&dw), s, resolved, seed, mode)?;
    Ok((dx, dw))
}

/// (batch, rows, in_features, out_features, block_size).
const SHAPES: [(u64, u64, u64, u64, u32); 5] = [
    (1, 1, 8, 1, 8),
    (2, 7, 24, 13, 4),
    (1, 33, 45, 17, 9),
    (3, 5, 16, 70, 16),
    (1, 19, 10, 37, 5),
];

struct Case {
    shape: LinearShape,
    spec: NoiseSpec,
    seed: NoiseSeed,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

fn case(rng: &mut Rng, i: usize) -> Case {
    let (bt, m, k, n, bs) = SHAPES[i];
    let shape = LinearShape::new(bt, m, k, n);
    Case {
        spec: random_spec(rng, bs, n),
        seed: NoiseSeed::new(1000 + i as u64, rng.below(5)),
        x: rng.weights(shape.x_len(), 0.5),
        w: rng.weights(shape.w_len(), 0.5),
        b: rng.weights(n, 0.5),
        dy: rng.weights(shape.y_len(), 0.5),
        shape,
    }
}

/// ψ(W) by the standalone kernel on the target, and its mask.
fn standalone(
    t: &Target,
    c: &Case,
    w: &Tensor,
    resolved: &NoiseSpec,
) -> Result<(Vec<f64>, Vec<u32>), Failed> {
    let ws = c.shape.weight_shape();
    let noisy = poisoned(&t.ctx, c.shape.w_len(), DType::F32);
    let mask = t.ctx.empty(resolved.mask_words(&ws)?, DType::U32)?;
    t.ctx
        .noise_forward(w, &noisy, ws, resolved, c.seed, Some(&mask))?;
    Ok((f64s(&t.ctx.read_f32(&noisy)?), t.ctx.read_u32(&mask)?))
}

/// The forward and backward checks on a device whose uniform bindings are too small for the
/// uniform copy of the mask (`small_uniform_target`): the loader reads the mask from storage.
fn without_uniform_tables(t: &Target) -> Result<(), Failed> {
    // The windowed targets share the adapter: one run per adapter is enough.
    if t.name.contains("window=") {
        return Ok(());
    }
    let Some(small) = small_uniform_target(t)? else {
        return Ok(());
    };
    forward(&small)?;
    backward(&small)
}

fn forward(t: &Target) -> Result<(), Failed> {
    forward_cases(t, SHAPES.len())
}

/// The forward check on the first `cases` shapes.
fn forward_cases(t: &Target, cases: usize) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(21);
    for i in 0..cases {
        let c = case(&mut rng, i);
        let s = c.shape;
        let (x, w, b) = (ctx.upload(&c.x)?, ctx.upload(&c.w)?, ctx.upload(&c.b)?);
        let y = poisoned(ctx, s.y_len(), DType::F32);
        let ws = s.weight_shape();
        let mask = poisoned(ctx, c.spec.mask_words(&ws)?, DType::U32);
        let bias = (i % 2 == 0).then_some(&b);
        let resolved =
            ctx.noisy_linear_forward(&x, &w, bias, &y, s, &c.spec, c.seed, Some(&mask))?;
        let (noisy, want_mask) = standalone(t, &c, &w, &resolved)?;
        let got_mask = ctx.read_u32(&mask)?;
        ensure(got_mask == want_mask, || {
            format!("case {i}: mask {got_mask:?} vs standalone {want_mask:?}")
        })?;
        let cpu_mask = cpu::noise::noise_mask(&ws, &resolved, c.seed);
        ensure(got_mask == cpu_mask, || {
            format!("case {i}: mask vs f64 reference")
        })?;
        let (k, n) = (s.in_features as usize, s.out_features as usize);
        let b64 = f64s(&c.b);
        check_forward(
            &format!("case {i} {:?} y", c.spec),
            &ctx.read_f32(&y)?,
            (&f64s(&c.x), &noisy, &[]),
            bias.map(|_| &b64[..]),
            (k, n),
        )?;
    }
    Ok(())
}

fn backward(t: &Target) -> Result<(), Failed> {
    backward_cases(t, SHAPES.len())
}

/// The backward check on the first `cases` shapes.
fn backward_cases(t: &Target, cases: usize) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(22);
    for i in 0..cases {
        let c = case(&mut rng, i);
        let s = c.shape;
        let (x, w, dy) = (ctx.upload(&c.x)?, ctx.upload(&c.w)?, ctx.upload(&c.dy)?);
        let y = ctx.empty(s.y_len(), DType::F32)?;
        let resolved = ctx.noisy_linear_forward(&x, &w, None, &y, s, &c.spec, c.seed, None)?;
        let (noisy, _) = standalone(t, &c, &w, &resolved)?;
        let (k, n) = (s.in_features as usize, s.out_features as usize);
        let (x64, dy64, w64) = (f64s(&c.x), f64s(&c.dy), f64s(&c.w));
        for mode in [SteMode::Identity, SteMode::Masked, SteMode::Clamped] {
            let (dx, dw) = backward_both(ctx, (&dy, &x, &w), s, &resolved, c.seed, mode)?;
            check_dx(
                &format!("case {i} {mode:?} dx"),
                &ctx.read_f32(&dx)?,
                (&dy64, &noisy, &[]),
                (k, n),
            )?;
            check_dw(
                &format!("case {i} {mode:?} dw"),
                &ctx.read_f32(&dw)?,
                (&dy64, &x64, &w64),
                s,
                (&resolved, c.seed, mode),
            )?;
        }
    }
    Ok(())
}

/// The forward and backward checks with a split-K configuration: the noise is applied in the
/// first pass, the partial sums added (and the bias) by the dense family's second pass.
fn split_k(t: &Target) -> Result<(), Failed> {
    let config = MatmulConfig::CANDIDATES
        .into_iter()
        .find(|c| c.k_split > 1)
        .ok_or("no split-K candidate")?;
    // Shapes 1 and 2 split the forward's K (24, 45), shape 2 the input gradient's (17).
    with_tuning(Tuning::Fixed(config), || {
        forward_cases(t, 3)?;
        backward_cases(t, 3)
    })?
}

/// The forward and backward checks, and the fused ϕ_PQ ones, with the broadcast kernel: the
/// noise applied by its packing pass, the STE factors to the total of dW. (Not on the windowed
/// targets: its weight blocks do not fit their 16 KiB windows. On GL, whose driver compiles
/// each of its long pipelines for many seconds, the first 3 shapes without ϕ_PQ.)
fn broadcast(t: &Target) -> Result<(), Failed> {
    if t.name.contains("window=") {
        return Ok(());
    }
    with_tuning(Tuning::Fixed(MatmulConfig::BROADCAST), || {
        if t.name.starts_with("Gl") {
            forward_cases(t, 3)?;
            return backward_cases(t, 3);
        }
        forward(t)?;
        backward(t)?;
        fused_pq(t)
    })?
}

/// A chain with PQ stages (unfused path) gives X·ψ(W)ᵀ with the standalone ψ.
fn pq_chain(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(23);
    let s = LinearShape::new(2, 5, 16, 9);
    let spec = NoiseSpec::proxy(4, 0.3).then(Noise::PqMean { p: 0.5 });
    let seed = NoiseSeed::new(5, 1);
    let (xv, wv) = (rng.weights(s.x_len(), 0.5), rng.weights(s.w_len(), 0.5));
    let (x, w) = (ctx.upload(&xv)?, ctx.upload(&wv)?);
    let y = poisoned(ctx, s.y_len(), DType::F32);
    let resolved = ctx.noisy_linear_forward(&x, &w, None, &y, s, &spec, seed, None)?;
    let noisy = ctx.empty(s.w_len(), DType::F32)?;
    ctx.noise_forward(&w, &noisy, s.weight_shape(), &resolved, seed, None)?;
    let noisy = f64s(&ctx.read_f32(&noisy)?);
    check_forward(
        "pq y",
        &ctx.read_f32(&y)?,
        (&f64s(&xv), &noisy, &[]),
        None,
        (16, 9),
    )?;
    let dy = ctx.upload(&rng.weights(s.y_len(), 0.5))?;
    let (dx, dw) = backward_both(ctx, (&dy, &x, &w), s, &resolved, seed, SteMode::Masked)?;
    ensure(
        ctx.read_f32(&dx)?
            .iter()
            .chain(&ctx.read_f32(&dw)?)
            .all(|v| v.is_finite()),
        || "non-finite gradients".into(),
    )
}

/// The loader's regenerated mask is the precomputed one bit for bit: the forward and dX of
/// both sources are identical (same tiles, same arithmetic), and match the standalone ψ(W).
/// Few shapes (each is new pipelines): blocks of 4 (one Philox call per loaded vec4), 9 and 5
/// (4 elements straddle two Philox groups), chains of 1..=3 stages.
fn regenerated(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(21);
    let cases: Vec<Case> = (0..SHAPES.len()).map(|i| case(&mut rng, i)).collect();
    for i in [1, 2, 4] {
        let c = &cases[i];
        let s = c.shape;
        let (x, w, dy) = (ctx.upload(&c.x)?, ctx.upload(&c.w)?, ctx.upload(&c.dy)?);
        let (mut ys, mut dxs) = (Vec::new(), Vec::new());
        let mut resolved = c.spec.clone();
        for source in [MaskSource::Precomputed, MaskSource::Regenerated] {
            let cx = ctx.with_mask_source(source);
            let y = poisoned(ctx, s.y_len(), DType::F32);
            resolved = cx.noisy_linear_forward(&x, &w, None, &y, s, &c.spec, c.seed, None)?;
            ys.push(ctx.read_f32(&y)?);
            if i != 1 {
                let dx = poisoned(ctx, s.x_len(), DType::F32);
                let id = SteMode::Identity;
                cx.noisy_linear_backward(&dy, &x, &w, Some(&dx), None, s, &resolved, c.seed, id)?;
                dxs.push(ctx.read_f32(&dx)?);
            }
        }
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
        ensure(same(&ys[0], &ys[1]), || {
            format!("case {i} {:?}: y differs between the mask sources", c.spec)
        })?;
        ensure(dxs.is_empty() || same(&dxs[0], &dxs[1]), || {
            format!("case {i} {:?}: dx differs between the mask sources", c.spec)
        })?;
        let (noisy, _) = standalone(t, c, &w, &resolved)?;
        let (k, n) = (s.in_features as usize, s.out_features as usize);
        check_forward(
            &format!("case {i} regenerated y"),
            &ys[1],
            (&f64s(&c.x), &noisy, &[]),
            None,
            (k, n),
        )?;
    }
    Ok(())
}

/// Per weight, how far ψ(W) may be from the standalone kernel's where stage 0 is ϕ_PQ: at a
/// near-tie of a selected block's f64 distances (the assignment kernel and `pq_noise` may
/// pick either centroid) the largest difference between the tied centroids, times `later`
/// (the rescaling of the later stages).
fn pq_tie_slack(
    w: &[f64],
    codebook: &[f64],
    spec: &NoiseSpec,
    seed: NoiseSeed,
    later: f64,
) -> Vec<f64> {
    let d = spec.block_size as usize;
    let mut slack = vec![0.0; w.len()];
    for (b, x) in w.chunks(d).enumerate() {
        if !cpu::noise::selected(&seed, spec, 0, (b * d) as u64) {
            continue;
        }
        let dist: Vec<f64> = codebook
            .chunks(d)
            .map(|c| x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum())
            .collect();
        let best = dist.iter().copied().fold(f64::INFINITY, f64::min);
        let tied: Vec<&[f64]> = codebook
            .chunks(d)
            .zip(&dist)
            .filter(|(_, e)| **e <= best + 1e-5 * (1.0 + best))
            .map(|(c, _)| c)
            .collect();
        for j in 0..d {
            let (lo, hi) = tied
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), c| {
                    (l.min(c[j]), h.max(c[j]))
                });
            slack[b * d + j] = (hi - lo) * later;
        }
    }
    slack
}

/// A chain whose first stage is ϕ_PQ runs in the fused loader (the assignment kernel's indices,
/// the codebook rows substituted while loading): y and dX equal the products with the
/// standalone ψ(W) (up to near-ties of the assignment), the mask the standalone one, dW the
/// STE of the reference. Both mask sources, one each.
fn fused_pq(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(24);
    for case in 0..2u64 {
        let (s, bs) = match case {
            0 => (LinearShape::new(2, 5, 16, 9), 4),
            _ => (LinearShape::new(1, 7, 24, 6), 8),
        };
        let codebook_host = rng.weights(13 * bs as u64, 0.5);
        let codebook = ctx.upload(&codebook_host)?;
        let (stages, later, source) = match case {
            0 => (
                vec![
                    Noise::Pq {
                        p: 0.6,
                        codebook: codebook.clone(),
                    },
                    Noise::Proxy {
                        p: 0.3,
                        rescale: true,
                    },
                ],
                1.0 / 0.7,
                MaskSource::Precomputed,
            ),
            _ => (
                vec![
                    Noise::PqMean { p: 0.5 },
                    Noise::IntN {
                        p: 0.5,
                        bits: 8,
                        scheme: QuantScheme::Observe(Observer::MinMax),
                    },
                ],
                // One centroid: no ties.
                0.0,
                MaskSource::Regenerated,
            ),
        };
        let spec = NoiseSpec {
            block_size: bs,
            stages,
        };
        let seed = NoiseSeed::new(40 + case, 2);
        let (xv, wv, dyv) = (
            rng.weights(s.x_len(), 0.5),
            rng.weights(s.w_len(), 0.5),
            rng.weights(s.y_len(), 0.5),
        );
        let (x, w, dy) = (ctx.upload(&xv)?, ctx.upload(&wv)?, ctx.upload(&dyv)?);
        let ws = s.weight_shape();
        let y = poisoned(ctx, s.y_len(), DType::F32);
        let mask = poisoned(ctx, spec.mask_words(&ws)?, DType::U32);
        let cx = ctx.with_mask_source(source);
        let resolved = cx.noisy_linear_forward(&x, &w, None, &y, s, &spec, seed, Some(&mask))?;
        let c = Case {
            shape: s,
            spec: spec.clone(),
            seed,
            x: xv.clone(),
            w: wv.clone(),
            b: Vec::new(),
            dy: dyv.clone(),
        };
        let (noisy, want_mask) = standalone(t, &c, &w, &resolved)?;
        ensure(ctx.read_u32(&mask)? == want_mask, || {
            format!("pq case {case}: mask vs standalone")
        })?;
        let slack = pq_tie_slack(&f64s(&wv), &f64s(&codebook_host), &resolved, seed, later);
        let (k, n) = (s.in_features as usize, s.out_features as usize);
        check_forward(
            &format!("pq case {case} y"),
            &ctx.read_f32(&y)?,
            (&f64s(&xv), &noisy, &slack),
            None,
            (k, n),
        )?;
        let dx = poisoned(ctx, s.x_len(), DType::F32);
        let dw = poisoned(ctx, s.w_len(), DType::F32);
        let masked = SteMode::Masked;
        cx.noisy_linear_backward(
            &dy,
            &x,
            &w,
            Some(&dx),
            Some(&dw),
            s,
            &resolved,
            seed,
            masked,
        )?;
        check_dx(
            &format!("pq case {case} dx"),
            &ctx.read_f32(&dx)?,
            (&f64s(&dyv), &noisy, &slack),
            (k, n),
        )?;
        check_dw(
            &format!("pq case {case} dw"),
            &ctx.read_f32(&dw)?,
            (&f64s(&dyv), &f64s(&xv), &f64s(&wv)),
            s,
            (&resolved, seed, SteMode::Masked),
        )?;
    }
    Ok(())
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let s = LinearShape::new(1, 3, 8, 2);
    let x = ctx.upload(&[0.5f32; 24])?;
    let w = ctx.upload(&[0.5f32; 16])?;
    let y = ctx.empty(6, DType::F32)?;
    let seed = NoiseSeed::new(1, 0);
    // Block size not dividing in_features.
    expect_err(
        ctx,
        ctx.noisy_linear_forward(&x, &w, None, &y, s, &NoiseSpec::proxy(3, 0.5), seed, None),
        |e| {
            matches!(
                e,
                Error::BlockSizeMismatch { .. } | Error::InvalidArgument { .. }
            )
        },
    )?;
    let spec = NoiseSpec::int_n(4, 0.5, 4, Observer::MinMax);
    let bad_mask = ctx.empty(7, DType::U32)?;
    expect_err(
        ctx,
        ctx.noisy_linear_forward(&x, &w, None, &y, s, &spec, seed, Some(&bad_mask)),
        |e| matches!(e, Error::ShapeMismatch { what: "mask", .. }),
    )?;
    let short = ctx.upload(&[0.5f32; 15])?;
    expect_err(
        ctx,
        ctx.noisy_linear_forward(&x, &short, None, &y, s, &spec, seed, None),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    )?;
    let u = ctx.empty(24, DType::U32)?;
    expect_err(
        ctx,
        ctx.noisy_linear_forward(&u, &w, None, &y, s, &spec, seed, None),
        |e| matches!(e, Error::DTypeMismatch { .. }),
    )?;
    let dx = ctx.empty(24, DType::F32)?;
    expect_err(
        ctx,
        ctx.noisy_linear_backward(
            &y,
            &x,
            &w,
            Some(&dx),
            None,
            LinearShape::new(1, 3, 8, 3),
            &spec,
            seed,
            SteMode::Masked,
        ),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    )?;
    if t.is_gpu() && !ctx.features().shader_f16 {
        let h = |n| upload_as(ctx, &vec![0.5; n], DType::F16);
        let (x, w, y) = (h(24), h(16), h(6));
        expect_err(
            ctx,
            ctx.noisy_linear_forward(&x, &w, None, &y, s, &spec, seed, None),
            |e| matches!(e, Error::Unsupported { .. }),
        )?;
    }
    let _ = Context::cpu();
    Ok(())
}
