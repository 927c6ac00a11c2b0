//! Conformance of the batched nearest-centroid assignment on every target.

mod common;

use common::*;
use libtest_mimic::Failed;
use proptest::prelude::*;
use quantnoise::{AssignProblem, DType, Error, cpu};

fn main() {
    run(
        &[
            ("batched_random_problems", batched_random),
            ("large_codebook_and_dims", large_codebook),
            ("exact_ties_pick_lowest_index", exact_ties),
            ("f16_data_and_codebook", f16_problems),
            ("data_textures_of_many_rows_and_windows", texel_rows),
            ("bad_inputs_are_typed_errors", bad_inputs),
        ],
        true,
    )
}

/// Checks one problem's device result against the f64 reference. Where the device's choice is
/// not the reference's, the two distances must be within `tol` (a near-tie, where f32 rounding
/// may pick either); otherwise indices match exactly. Distances within `tol` too.
fn check(
    data: &[f32],
    codebook: &[f32],
    d: usize,
    idx: &[u32],
    dist: &[f32],
) -> Result<(), Failed> {
    let x64: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    let c64: Vec<f64> = codebook.iter().map(|&v| v as f64).collect();
    let (want_idx, want_dist) = cpu::assign::assign(&x64, &c64, d);
    let k = codebook.len() / d;
    for i in 0..want_idx.len() {
        let x = &x64[i * d..(i + 1) * d];
        let scale: f64 = x.iter().map(|v| v * v).sum::<f64>()
            + c64
                .chunks(d)
                .map(|c| c.iter().map(|v| v * v).sum::<f64>())
                .fold(0.0, f64::max);
        let tol = 1e-5 * scale + 1e-12;
        ensure((idx[i] as usize) < k, || {
            format!("subvector {i}: index {} out of range (K = {k})", idx[i])
        })?;
        if idx[i] != want_idx[i] {
            let c = &c64[idx[i] as usize * d..(idx[i] as usize + 1) * d];
            let chosen: f64 = x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
            ensure((chosen - want_dist[i]).abs() <= tol, || {
                format!(
                    "subvector {i}: index {} (dist {chosen}) vs reference {} (dist {}), beyond tolerance {tol}",
                    idx[i], want_idx[i], want_dist[i]
                )
            })?;
        }
        ensure((dist[i] as f64 - want_dist[i]).abs() <= tol, || {
            format!("subvector {i}: distance {} vs {}", dist[i], want_dist[i])
        })?;
    }
    Ok(())
}

fn run_problems(t: &Target, specs: &[(usize, usize, usize)], seed: u64) -> Result<(), Failed> {
    run_problems_as(t, specs, seed, false)
}

/// With `f16`, data and codebooks are stored as f16 (the reference sees the same rounded values).
fn run_problems_as(
    t: &Target,
    specs: &[(usize, usize, usize)],
    seed: u64,
    f16: bool,
) -> Result<(), Failed> {
    let mut rng = Rng(seed);
    let round = |v: Vec<f32>| -> Vec<f32> {
        if f16 {
            v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
        } else {
            v
        }
    };
    let host: Vec<(Vec<f32>, Vec<f32>, usize)> = specs
        .iter()
        .map(|&(n, k, d)| {
            (
                round(rng.weights((n * d) as u64, 1.0)),
                round(rng.weights((k * d) as u64, 1.0)),
                d,
            )
        })
        .collect();
    let upload = |v: &Vec<f32>| {
        if f16 {
            let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            t.ctx.upload(&h)
        } else {
            t.ctx.upload(v)
        }
    };
    let tensors: Vec<_> = host
        .iter()
        .map(|(x, c, _)| (upload(x).unwrap(), upload(c).unwrap()))
        .collect();
    let problems: Vec<_> = tensors
        .iter()
        .zip(&host)
        .map(|((x, c), h)| AssignProblem {
            data: x,
            codebook: c,
            dim: h.2 as u32,
        })
        .collect();
    let outputs: Vec<_> = specs
        .iter()
        .map(|&(n, _, _)| quantnoise::Assignment {
            indices: poisoned(&t.ctx, n as u64, DType::U32),
            distances: poisoned(&t.ctx, n as u64, DType::F32),
        })
        .collect();
    t.ctx.assign_into(&problems, &outputs)?;
    for ((x, c, d), o) in host.iter().zip(&outputs) {
        check(
            x,
            c,
            *d,
            &t.ctx.read_u32(&o.indices)?,
            &t.ctx.read_f32(&o.distances)?,
        )?;
    }
    Ok(())
}

fn batched_random(t: &Target) -> Result<(), Failed> {
    let problem = (1usize..700, 1usize..300, 1usize..=24);
    property(
        12,
        (prop::collection::vec(problem, 1..4), any::<u64>()),
        |(specs, seed)| {
            run_problems(t, &specs, seed)
                .map_err(|e| format!("{specs:?}: {}", e.message().unwrap_or_default()).into())
        },
    )
}

/// K = 4096 (many workgroup-memory tiles), the paper's d (4, 5, 8, 9) and d = 64.
fn large_codebook(t: &Target) -> Result<(), Failed> {
    run_problems(
        t,
        &[
            (300, 4096, 8),
            (257, 256, 9),
            (130, 33, 64),
            (1000, 256, 4),
            (999, 255, 5),
            (65, 2, 1),
        ],
        99,
    )
}

/// Data of thousands of subvectors with d a multiple of 4: on CPU adapters the assignment
/// reads it through textures of 4096 texels per row (`shaders/assign_rows_tex.wgsl`), here of
/// several whole rows and a partial one; then the same with windows of 1536 to 6208
/// subvectors (one whole row and a partial one per window) where the adapter opens again.
fn texel_rows(t: &Target) -> Result<(), Failed> {
    let specs = [(20001, 256, 8), (5000, 64, 4), (4097, 33, 16)];
    run_problems(t, &specs, 23)?;
    if let Some(w) = windowed_target(t, 100_096)? {
        run_problems(&w, &specs, 29)?;
    }
    Ok(())
}

/// f16 data and codebooks (distances in f32): on adapters with shader-f16 checked like f32
/// (tiled and wide kernels, odd d for the window alignment); elsewhere a typed error.
fn f16_problems(t: &Target) -> Result<(), Failed> {
    let specs = [(300, 256, 8), (257, 100, 9), (130, 33, 20), (77, 5, 3)];
    if t.is_gpu() && !t.ctx.features().shader_f16 {
        let x = t.ctx.upload(&[half::f16::ONE; 8])?;
        let r = t.ctx.assign(&[AssignProblem {
            data: &x,
            codebook: &x,
            dim: 4,
        }]);
        return expect_err(&t.ctx, r, |e| matches!(e, Error::Unsupported { .. }));
    }
    run_problems_as(t, &specs, 17, true)
}

/// Duplicated centroids: exactly equal distances must resolve to the lowest index everywhere.
fn exact_ties(t: &Target) -> Result<(), Failed> {
    let d = 4;
    let base = Rng(5).weights(8 * d as u64, 1.0);
    let mut codebook = base.clone();
    codebook.extend_from_slice(&base);
    let data: Vec<f32> = (0..200)
        .flat_map(|i| base[(i % 8) * d..(i % 8 + 1) * d].to_vec())
        .collect();
    let x = t.ctx.upload(&data)?;
    let c = t.ctx.upload(&codebook)?;
    let r = t.ctx.assign(&[AssignProblem {
        data: &x,
        codebook: &c,
        dim: d as u32,
    }])?;
    let idx = t.ctx.read_u32(&r[0].indices)?;
    let want: Vec<u32> = (0..200).map(|i| (i % 8) as u32).collect();
    ensure(idx == want, || {
        format!("ties did not go to the lowest index: {:?}", &idx[..16])
    })
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let x = ctx.upload(&[1.0f32; 12])?;
    let c = ctx.upload(&[1.0f32; 8])?;
    let p = |dim| AssignProblem {
        data: &x,
        codebook: &c,
        dim,
    };
    expect_err(ctx, ctx.assign(&[p(0)]), |e| {
        matches!(e, Error::InvalidArgument { name: "dim", .. })
    })?;
    expect_err(ctx, ctx.assign(&[p(65)]), |e| {
        matches!(e, Error::InvalidArgument { name: "dim", .. })
    })?;
    expect_err(ctx, ctx.assign(&[p(3)]), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "codebook.len()",
                ..
            }
        )
    })?;
    let u = ctx.upload(&[1u32; 8])?;
    expect_err(
        ctx,
        ctx.assign(&[AssignProblem {
            data: &x,
            codebook: &u,
            dim: 4,
        }]),
        |e| matches!(e, Error::DTypeMismatch { .. }),
    )?;
    // f16 data with an f32 codebook: the two must share a dtype.
    let h = ctx.upload(&[half::f16::ONE; 8])?;
    expect_err(
        ctx,
        ctx.assign(&[AssignProblem {
            data: &h,
            codebook: &c,
            dim: 4,
        }]),
        |e| matches!(e, Error::DTypeMismatch { .. }),
    )
}
