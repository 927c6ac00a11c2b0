//! Conformance of the fused noise forward and its bit-packed mask on every target.

mod common;

use common::*;
use libtest_mimic::Failed;
use proptest::prelude::*;
use quantnoise::cpu;
use quantnoise::{
    DType, Error, Noise, NoiseSeed, NoiseSpec, Observer, QParams, QuantScheme, WeightShape,
};

fn main() {
    run(
        &[
            ("forward_random_chains_f32", forward_random_f32),
            ("forward_random_chains_f16", forward_random_f16),
            ("mask_rate_and_independence", mask_rate),
            ("masks_differ_by_step_seed_stage", masks_differ),
            ("weight_is_never_modified", weight_untouched),
            ("conv_layouts", conv_layouts),
            ("bad_inputs_are_typed_errors", bad_inputs),
            ("pq_noise_chains", pq_noise_chains),
        ],
        true,
    )
}

/// Runs one random case: forward + mask on the target, the f64 reference on the same resolved
/// spec, comparison with tolerances.
fn check_case(t: &Target, dtype: DType, bs_index: usize, case_seed: u64) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(case_seed);
    let bs = BLOCK_SIZES[bs_index];
    let shape = random_shape(&mut rng, bs, 37, 23);
    let spec = random_spec(&mut rng, bs, shape.rows());
    let seed = NoiseSeed::new(rng.next_u64(), rng.below(1000));
    let w = rng.weights(shape.numel(), 0.5);
    let weight = upload_as(ctx, &w, dtype);
    let out = poisoned(ctx, shape.numel(), dtype);
    let mask = poisoned(ctx, spec.mask_words(&shape)?, DType::U32);
    let resolved = ctx.noise_forward(&weight, &out, shape, &spec, seed, Some(&mask))?;
    ensure(resolved.is_resolved(), || {
        "forward returned an unresolved spec".into()
    })?;
    // The reference sees exactly what the device saw: the stored (possibly f16-rounded) input.
    let w64: Vec<f64> = ctx.read_f32(&weight)?.iter().map(|&x| x as f64).collect();
    let want = cpu::noise::noise_forward(&w64, &shape, &resolved, seed);
    let ties = tie_tolerance(&w64, &shape, &resolved, seed, 1e-3);
    let (atol, rtol) = match dtype {
        DType::F16 => (1e-4, 2e-3),
        _ => (1e-7, 1e-5),
    };
    compare(&ctx.read_f32(&out)?, &want, atol, rtol, &ties).map_err(|e| {
        format!(
            "{shape:?} {spec:?} {seed:?}: {}",
            e.message().unwrap_or_default()
        )
    })?;
    let want_mask = cpu::noise::noise_mask(&shape, &resolved, seed);
    ensure(ctx.read_u32(&mask)? == want_mask, || {
        format!("mask differs from the reference for {shape:?} {spec:?}")
    })
}

fn random_cases(t: &Target, dtype: DType, cases: u32) -> Result<(), Failed> {
    property(cases, (0..BLOCK_SIZES.len(), any::<u64>()), |(bs, seed)| {
        check_case(t, dtype, bs, seed)
    })
}

fn forward_random_f32(t: &Target) -> Result<(), Failed> {
    random_cases(t, DType::F32, 40)
}

fn forward_random_f16(t: &Target) -> Result<(), Failed> {
    if !t.ctx.features().shader_f16 {
        // Expected failure: the adapter has no shader-f16; the op must say so, not crash.
        let w = t.ctx.upload(&[half::f16::ONE; 8])?;
        let out = t.ctx.empty(8, DType::F16)?;
        let r = t.ctx.noise_forward(
            &w,
            &out,
            WeightShape::matrix(2, 4),
            &NoiseSpec::proxy(4, 0.5),
            NoiseSeed::new(1, 1),
            None,
        );
        return expect_err(&t.ctx, r, |e| matches!(e, Error::Unsupported { .. }));
    }
    random_cases(t, DType::F16, 20)
}

fn selected_fraction(words: &[u32], blocks: u64) -> u64 {
    (0..blocks)
        .filter(|b| words[(b / 32) as usize] >> (b % 32) & 1 == 1)
        .count() as u64
}

/// Selection rate within a 5-sigma binomial bound; two stages select independently.
fn mask_rate(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let shape = WeightShape::Linear {
        out_features: 300,
        in_features: 1000,
    };
    let (p1, p2) = (0.3, 0.55);
    let spec = NoiseSpec::proxy(5, p1).then(Noise::Proxy {
        p: p2,
        rescale: false,
    });
    let blocks = shape.numel() / 5;
    let w = Rng(7).weights(shape.numel(), 1.0);
    let weight = ctx.upload(&w)?;
    let out = ctx.empty(shape.numel(), DType::F32)?;
    let mask = poisoned(ctx, spec.mask_words(&shape)?, DType::U32);
    ctx.noise_forward(
        &weight,
        &out,
        shape,
        &spec,
        NoiseSeed::new(0xC0FFEE, 3),
        Some(&mask),
    )?;
    let words = ctx.read_u32(&mask)?;
    let per_stage = blocks.div_ceil(32) as usize;
    let (s1, s2) = (&words[..per_stage], &words[per_stage..]);
    let within = |count: u64, p: f64| {
        let n = blocks as f64;
        (count as f64 - n * p).abs() <= 5.0 * (n * p * (1.0 - p)).sqrt()
    };
    let c1 = selected_fraction(s1, blocks);
    let c2 = selected_fraction(s2, blocks);
    let both: Vec<u32> = s1.iter().zip(s2).map(|(a, b)| a & b).collect();
    let c12 = selected_fraction(&both, blocks);
    ensure(within(c1, p1), || {
        format!("stage 0 selected {c1} of {blocks} at p = {p1}")
    })?;
    ensure(within(c2, p2), || {
        format!("stage 1 selected {c2} of {blocks} at p = {p2}")
    })?;
    ensure(within(c12, p1 * p2), || {
        format!("both stages selected {c12} of {blocks}, expected p1·p2")
    })?;
    // The output agrees with the mask: zeroed exactly where either stage selected.
    let got = ctx.read_f32(&out)?;
    for b in 0..blocks {
        let sel = (s1[(b / 32) as usize] | s2[(b / 32) as usize]) >> (b % 32) & 1 == 1;
        let zero = got[(b * 5) as usize..(b * 5 + 5) as usize]
            .iter()
            .all(|&x| x == 0.0);
        ensure(sel == zero, || {
            format!("block {b}: selected {sel}, zeroed {zero}")
        })?;
    }
    Ok(())
}

fn mask_of(
    t: &Target,
    spec: &NoiseSpec,
    shape: WeightShape,
    seed: NoiseSeed,
) -> Result<Vec<u32>, Failed> {
    let w = Rng(1).weights(shape.numel(), 1.0);
    let weight = t.ctx.upload(&w)?;
    let out = t.ctx.empty(shape.numel(), DType::F32)?;
    let mask = poisoned(&t.ctx, spec.mask_words(&shape)?, DType::U32);
    t.ctx
        .noise_forward(&weight, &out, shape, spec, seed, Some(&mask))?;
    Ok(t.ctx.read_u32(&mask)?)
}

fn masks_differ(t: &Target) -> Result<(), Failed> {
    let shape = WeightShape::matrix(16, 64);
    let spec = NoiseSpec::proxy(4, 0.5).then(Noise::Proxy {
        p: 0.5,
        rescale: false,
    });
    let base = mask_of(t, &spec, shape, NoiseSeed::new(11, 5))?;
    let half = base.len() / 2;
    ensure(base[..half] != base[half..], || {
        "two stages drew the same mask".into()
    })?;
    ensure(
        base == mask_of(t, &spec, shape, NoiseSeed::new(11, 5))?,
        || "same seed and step gave another mask".into(),
    )?;
    ensure(
        base != mask_of(t, &spec, shape, NoiseSeed::new(11, 6))?,
        || "next step gave the same mask".into(),
    )?;
    ensure(
        base != mask_of(t, &spec, shape, NoiseSeed::new(12, 5))?,
        || "another seed gave the same mask".into(),
    )?;
    // Steps beyond 2^32 and seeds beyond 2^32 use their high words.
    ensure(
        base != mask_of(t, &spec, shape, NoiseSeed::new(11, 5 + (1 << 32)))?,
        || "step high word ignored".into(),
    )?;
    ensure(
        base != mask_of(t, &spec, shape, NoiseSeed::new(11 + (1 << 32), 5))?,
        || "seed high word ignored".into(),
    )
}

fn weight_untouched(t: &Target) -> Result<(), Failed> {
    let shape = WeightShape::matrix(33, 40);
    let w = Rng(3).weights(shape.numel(), 1.0);
    let weight = t.ctx.upload(&w)?;
    let out = t.ctx.empty(shape.numel(), DType::F32)?;
    let spec = NoiseSpec::proxy(8, 0.5).then(Noise::IntN {
        p: 0.5,
        bits: 4,
        scheme: QuantScheme::Observe(Observer::MinMax),
    });
    for step in 0..6 {
        t.ctx
            .noise_forward(&weight, &out, shape, &spec, NoiseSeed::new(9, step), None)?;
    }
    ensure(t.ctx.read_f32(&weight)? == w, || {
        "noise_forward modified the weight".into()
    })
}

/// Conv weights: blocks along the flattened in·kh·kw filter, incl. 1×1 convs (fairseq crashes)
/// and fairseq's whole-kernel blocks (block_size = kh·kw).
fn conv_layouts(t: &Target) -> Result<(), Failed> {
    for (shape, bs) in [
        (
            WeightShape::Conv2d {
                out_channels: 6,
                in_channels: 8,
                kh: 1,
                kw: 1,
            },
            4,
        ),
        (
            WeightShape::Conv2d {
                out_channels: 5,
                in_channels: 3,
                kh: 3,
                kw: 3,
            },
            9,
        ),
        (
            WeightShape::Conv2d {
                out_channels: 7,
                in_channels: 2,
                kh: 5,
                kw: 5,
            },
            5,
        ),
    ] {
        let w = Rng(bs as u64).weights(shape.numel(), 1.0);
        let weight = t.ctx.upload(&w)?;
        let out = poisoned(&t.ctx, shape.numel(), DType::F32);
        let spec = NoiseSpec::proxy(bs, 0.4);
        let seed = NoiseSeed::new(5, 1);
        let resolved = t
            .ctx
            .noise_forward(&weight, &out, shape, &spec, seed, None)?;
        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        compare(
            &t.ctx.read_f32(&out)?,
            &cpu::noise::noise_forward(&w64, &shape, &resolved, seed),
            1e-7,
            1e-6,
            &[],
        )?;
        // Whole blocks are zeroed or kept together.
        let got = t.ctx.read_f32(&out)?;
        for block in got.chunks(bs as usize) {
            let zeros = block.iter().filter(|&&x| x == 0.0).count();
            ensure(zeros == 0 || zeros == block.len(), || {
                format!("partly zeroed block {block:?}")
            })?;
        }
    }
    Ok(())
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let shape = WeightShape::matrix(4, 8);
    let w = ctx.upload(&Rng(2).weights(32, 1.0))?;
    let out = ctx.empty(32, DType::F32)?;
    let seed = NoiseSeed::new(1, 1);
    let fwd =
        |shape: WeightShape, spec: &NoiseSpec| ctx.noise_forward(&w, &out, shape, spec, seed, None);
    let int = |p: f64, bits: u8, q: QParams| NoiseSpec {
        block_size: 4,
        stages: vec![Noise::IntN {
            p,
            bits,
            scheme: QuantScheme::Given(q),
        }],
    };
    expect_err(
        ctx,
        fwd(WeightShape::matrix(4, 9), &NoiseSpec::proxy(1, 0.1)),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    )?;
    expect_err(
        ctx,
        fwd(WeightShape::matrix(2, 16), &NoiseSpec::proxy(3, 0.1)),
        |e| {
            matches!(
                e,
                Error::BlockSizeMismatch {
                    cols: 16,
                    block_size: 3
                }
            )
        },
    )?;
    expect_err(ctx, fwd(shape, &NoiseSpec::proxy(0, 0.1)), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "block_size",
                ..
            }
        )
    })?;
    for p in [-0.1, 1.5, f64::NAN] {
        expect_err(ctx, fwd(shape, &NoiseSpec::proxy(4, p)), |e| {
            matches!(e, Error::InvalidArgument { name: "p", .. })
        })?;
    }
    expect_err(ctx, fwd(shape, &NoiseSpec::proxy(4, 1.0)), |e| {
        matches!(e, Error::InvalidArgument { name: "p", .. })
    })?;
    for bits in [0u8, 9] {
        expect_err(
            ctx,
            fwd(shape, &int(0.5, bits, QParams::per_tensor(0.1, 0))),
            |e| matches!(e, Error::InvalidArgument { name: "bits", .. }),
        )?;
    }
    for s in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        expect_err(
            ctx,
            fwd(shape, &int(0.5, 8, QParams::per_tensor(s, 0))),
            |e| matches!(e, Error::InvalidArgument { name: "scale", .. }),
        )?;
    }
    expect_err(
        ctx,
        fwd(shape, &int(0.5, 4, QParams::per_tensor(0.1, 16))),
        |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    name: "zero_point",
                    ..
                }
            )
        },
    )?;
    expect_err(
        ctx,
        fwd(
            shape,
            &int(
                0.5,
                4,
                QParams {
                    scale: vec![0.1; 3],
                    zero_point: vec![0; 3],
                },
            ),
        ),
        |e| matches!(e, Error::InvalidArgument { .. }),
    )?;
    let too_many = NoiseSpec {
        block_size: 4,
        stages: vec![
            Noise::Proxy {
                p: 0.1,
                rescale: false
            };
            5
        ],
    };
    expect_err(ctx, fwd(shape, &too_many), |e| {
        matches!(e, Error::InvalidArgument { name: "stages", .. })
    })?;
    let small_mask = ctx.empty(1, DType::U32)?;
    let two = NoiseSpec::proxy(4, 0.1).then(Noise::Proxy {
        p: 0.2,
        rescale: false,
    });
    expect_err(
        ctx,
        ctx.noise_forward(&w, &out, shape, &two, seed, Some(&small_mask)),
        |e| matches!(e, Error::ShapeMismatch { what: "mask", .. }),
    )?;
    expect_err(
        ctx,
        ctx.noise_forward(&w, &w, shape, &NoiseSpec::proxy(4, 0.1), seed, None),
        |e| matches!(e, Error::Aliasing { .. }),
    )?;
    let out16 = ctx.empty(32, DType::F16)?;
    expect_err(
        ctx,
        ctx.noise_forward(&w, &out16, shape, &NoiseSpec::proxy(4, 0.1), seed, None),
        |e| matches!(e, Error::DTypeMismatch { .. }),
    )?;
    let mut bad = Rng(2).weights(32, 1.0);
    bad[5] = f32::NAN;
    bad[17] = f32::INFINITY;
    let wb = ctx.upload(&bad)?;
    let observed = NoiseSpec::int_n(4, 0.5, 8, Observer::MinMax);
    expect_err(
        ctx,
        ctx.noise_forward(&wb, &out, shape, &observed, seed, None),
        |e| matches!(e, Error::NonFinite { count: 2, .. }),
    )?;
    if t.is_gpu() {
        let host = t.cpu.upload(&[0.0f32; 32])?;
        expect_err(
            ctx,
            ctx.noise_forward(&host, &out, shape, &NoiseSpec::proxy(4, 0.1), seed, None),
            |e| matches!(e, Error::WrongContext { .. }),
        )?;
    }
    Ok(())
}

/// ϕ_PQ and PqMean, alone and inside chains: a selected block becomes its nearest centroid
/// (near-ties between f32 and f64 distances may pick either centroid), the other stages act
/// around it, and the mask covers the PQ stage like any other.
fn pq_noise_chains(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(2024);
    for case in 0..8u64 {
        let bs = [4u32, 5, 8, 9][case as usize % 4];
        let shape = random_shape(&mut rng, bs, 30, 12);
        let k = 1 + rng.below(40);
        let cb_host = rng.weights(k * bs as u64, 0.5);
        let codebook = ctx.upload(&cb_host)?;
        let pq = Noise::Pq {
            p: 0.6,
            codebook: codebook.clone(),
        };
        let zero = Noise::Proxy {
            p: 0.3,
            rescale: false,
        };
        let int8 = Noise::IntN {
            p: 0.5,
            bits: 8,
            scheme: QuantScheme::Observe(Observer::MinMax),
        };
        let stages = match case % 4 {
            0 => vec![pq],
            1 => vec![int8, pq, zero],
            2 => vec![zero, Noise::PqMean { p: 0.5 }],
            _ => vec![pq, zero],
        };
        let spec = NoiseSpec {
            block_size: bs,
            stages,
        };
        let seed = NoiseSeed::new(case, 3);
        let w = rng.weights(shape.numel(), 0.5);
        let weight = ctx.upload(&w)?;
        let out = poisoned(ctx, shape.numel(), DType::F32);
        let mask = poisoned(ctx, spec.mask_words(&shape)?, DType::U32);
        let resolved = ctx.noise_forward(&weight, &out, shape, &spec, seed, Some(&mask))?;
        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        let codebooks: Vec<Vec<f64>> = resolved
            .stages
            .iter()
            .map(|s| match s {
                Noise::Pq { codebook, .. } => ctx
                    .read_f32(codebook)
                    .unwrap()
                    .iter()
                    .map(|&x| x as f64)
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let want = cpu::noise::noise_forward_with(&w64, &shape, &resolved, seed, &codebooks);
        let got = ctx.read_f32(&out)?;
        let pq_stage = resolved
            .stages
            .iter()
            .position(|s| matches!(s, Noise::Pq { .. }))
            .unwrap();
        let prefix = NoiseSpec {
            block_size: bs,
            stages: resolved.stages[..pq_stage].to_vec(),
        };
        let before =
            cpu::noise::noise_forward_with(&w64, &shape, &prefix, seed, &codebooks[..pq_stage]);
        let cbk = &codebooks[pq_stage];
        let d = bs as usize;
        for b in 0..(shape.numel() as usize / d) {
            let (g, wnt) = (&got[b * d..(b + 1) * d], &want[b * d..(b + 1) * d]);
            if g.iter()
                .zip(wnt)
                .all(|(x, y)| (*x as f64 - y).abs() <= 1e-6 * (1.0 + y.abs()))
            {
                continue;
            }
            // Accept another centroid only at a near-tie of the block's distances.
            let x = &before[b * d..(b + 1) * d];
            let dist = |c: usize| -> f64 {
                x.iter()
                    .zip(&cbk[c * d..(c + 1) * d])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum()
            };
            let best = (0..cbk.len() / d).map(dist).fold(f64::INFINITY, f64::min);
            let ok = (0..cbk.len() / d).any(|c| {
                dist(c) <= best + 1e-5 * (1.0 + best)
                    && g.iter()
                        .zip(&cbk[c * d..(c + 1) * d])
                        .all(|(p, q)| (*p as f64 - q).abs() <= 1e-6)
            });
            ensure(ok, || {
                format!("case {case} block {b}: got {g:?}, want {wnt:?}")
            })?;
        }
        ensure(
            ctx.read_u32(&mask)? == cpu::noise::noise_mask(&shape, &resolved, seed),
            || format!("case {case}: mask"),
        )?;
    }
    // Bad PQ inputs.
    let shape = WeightShape::matrix(4, 8);
    let w = ctx.upload(&Rng(1).weights(32, 1.0))?;
    let out = ctx.empty(32, DType::F32)?;
    let odd = ctx.upload(&[1.0f32; 7])?;
    let spec = NoiseSpec {
        block_size: 4,
        stages: vec![Noise::Pq {
            p: 0.5,
            codebook: odd,
        }],
    };
    expect_err(
        ctx,
        ctx.noise_forward(&w, &out, shape, &spec, NoiseSeed::new(1, 1), None),
        |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    name: "codebook.len()",
                    ..
                }
            )
        },
    )?;
    let spec = NoiseSpec {
        block_size: 4,
        stages: vec![Noise::Pq {
            p: 0.5,
            codebook: out.clone(),
        }],
    };
    expect_err(
        ctx,
        ctx.noise_forward(&w, &out, shape, &spec, NoiseSeed::new(1, 1), None),
        |e| matches!(e, Error::Aliasing { .. }),
    )
}
