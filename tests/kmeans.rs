//! Conformance of k-means (E-step, deterministic M-step, repair, driver) on every target.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::cpu;
use quantnoise::{
    Context, Error, KmeansAssignments, KmeansBounds, KmeansInit, KmeansOptions, KmeansProblem,
    KmeansResult,
};

fn main() {
    run(
        &[
            ("batched_properties", batched_properties),
            ("converged_codebook_is_the_mean", converged_mean),
            ("mixed_magnitudes_mean", mixed_magnitudes_mean),
            ("same_seed_same_bits", same_seed_same_bits),
            ("duplicates_are_repaired", duplicates_repaired),
            ("bad_inputs_are_typed_errors", bad_inputs),
            ("bounds_give_the_plain_bits", bounds_match_plain),
            ("long_runs_objective_is_accurate", long_runs_objective),
            (
                "large_codebook_objective_is_accurate",
                large_codebook_objective,
            ),
            ("same_bits_without_uniform_tables", without_uniform_tables),
            ("last_step_assignments", last_step_assignments),
        ],
        true,
    )
}

/// On a device whose uniform bindings are too small for the M-step's uniform codebook copy
/// (`small_uniform_target`: the distances read the storage codebook, and the modules declare
/// a 1-vec4 table), k-means gives the same bits as on the target's own device.
fn without_uniform_tables(t: &Target) -> Result<(), Failed> {
    // The windowed targets share the adapter: one run per adapter is enough.
    if t.name.contains("window=") {
        return Ok(());
    }
    let Some(small) = small_uniform_target(t)? else {
        return Ok(());
    };
    let d = 8;
    let data = blobs(&mut Rng(91), 20_000, d, 40);
    let options = KmeansOptions {
        seed: 17,
        n_iter: 6,
        ..KmeansOptions::new(64)
    };
    // The codebook's, the assignments' and the objectives' bytes, one after the other.
    let run = |ctx: &Context| -> Result<Vec<u8>, Failed> {
        let x = ctx.upload(&data)?;
        let p = [KmeansProblem {
            data: &x,
            dim: d as u32,
        }];
        let r = &ctx.kmeans(&p, &options)?[0];
        let mut bytes = ctx.read_raw(&r.codebook)?;
        bytes.extend(ctx.read_raw(&r.assignments)?);
        bytes.extend_from_slice(bytemuck::cast_slice(&r.objective));
        Ok(bytes)
    };
    ensure(run(&t.ctx)? == run(&small.ctx)?, || {
        format!("{}: codebook, assignments or objective differ", small.name)
    })
}

/// `KmeansAssignments::LastStep` on uniform data (assignments still moving): the codebook and
/// objectives of `Final` without its last entry; the assignments and counts of the last
/// E-step, i.e. those `Final` returns after one iteration fewer; the codebook the mean of
/// those members. With `n_iter = 0` it runs the E-step anyway.
fn last_step_assignments(t: &Target) -> Result<(), Failed> {
    let (n, d, k) = (3000usize, 6usize, 32u32);
    let data = Rng(57).weights((n * d) as u64, 1.0);
    let x = t.ctx.upload(&data)?;
    let p = [KmeansProblem {
        data: &x,
        dim: d as u32,
    }];
    let options = |n_iter, assignments| KmeansOptions {
        n_iter,
        tol: 0.0,
        seed: 3,
        assignments,
        ..KmeansOptions::new(k)
    };
    let last = &t.ctx.kmeans(&p, &options(5, KmeansAssignments::LastStep))?[0];
    let full = &t.ctx.kmeans(&p, &options(5, KmeansAssignments::Final))?[0];
    let fewer = &t.ctx.kmeans(&p, &options(4, KmeansAssignments::Final))?[0];
    ensure(last.iterations == 5 && last.objective.len() == 5, || {
        format!(
            "{} iterations, {} objectives (want 5, 5)",
            last.iterations,
            last.objective.len()
        )
    })?;
    ensure(last.objective[..] == full.objective[..5], || {
        format!("objectives {:?} vs {:?}", last.objective, full.objective)
    })?;
    ensure(
        t.ctx.read_raw(&last.codebook)? == t.ctx.read_raw(&full.codebook)?,
        || "codebook differs from Final's".into(),
    )?;
    let a = members_and_means(t, &data, d, k, last, 1e-6)?;
    ensure(a == t.ctx.read_u32(&fewer.assignments)?, || {
        "assignments differ from Final's after one iteration fewer".into()
    })?;
    ensure(last.counts == fewer.counts, || "counts differ".into())?;
    ensure(a != t.ctx.read_u32(&full.assignments)?, || {
        "the same assignments as Final's: this data should still be moving".into()
    })?;
    let none = &t.ctx.kmeans(&p, &options(0, KmeansAssignments::LastStep))?[0];
    let none_final = &t.ctx.kmeans(&p, &options(0, KmeansAssignments::Final))?[0];
    ensure(
        none.objective.len() == 1
            && t.ctx.read_u32(&none.assignments)? == t.ctx.read_u32(&none_final.assignments)?,
        || "n_iter = 0: not the initial codebook's assignments".into(),
    )?;
    last_step_early_stop(t, &data, d, k)
}

/// LastStep in a batch where clustered data stops early (tol) and uniform data runs on: each
/// problem keeps the assignments of its own last E-step, its codebook their means.
fn last_step_early_stop(t: &Target, uniform: &[f32], d: usize, k: u32) -> Result<(), Failed> {
    let clustered = blobs(&mut Rng(58), 2000, d, k as usize);
    let (xu, xc) = (t.ctx.upload(uniform)?, t.ctx.upload(&clustered)?);
    let problems = [
        KmeansProblem {
            data: &xu,
            dim: d as u32,
        },
        KmeansProblem {
            data: &xc,
            dim: d as u32,
        },
    ];
    let options = KmeansOptions {
        n_iter: 30,
        tol: 1e-4,
        seed: 4,
        assignments: KmeansAssignments::LastStep,
        ..KmeansOptions::new(k)
    };
    let results = t.ctx.kmeans(&problems, &options)?;
    ensure(results[1].iterations < results[0].iterations, || {
        format!(
            "iterations {} (uniform) and {} (clustered): the clustered data should stop first",
            results[0].iterations, results[1].iterations
        )
    })?;
    for (r, data) in results.iter().zip([uniform, &clustered[..]]) {
        ensure(r.objective.len() == r.iterations as usize, || {
            format!(
                "{} objectives, {} iterations",
                r.objective.len(),
                r.iterations
            )
        })?;
        members_and_means(t, data, d, k, r, 1e-5)?;
    }
    Ok(())
}

/// Checks that `r.counts` are those of `r.assignments`, none zero, and that each centroid is
/// the mean of its members (within `atol` + 1e-5 relative); returns the assignments.
fn members_and_means(
    t: &Target,
    data: &[f32],
    d: usize,
    k: u32,
    r: &KmeansResult,
    atol: f64,
) -> Result<Vec<u32>, Failed> {
    let a = t.ctx.read_u32(&r.assignments)?;
    let mut bincount = vec![0u32; k as usize];
    a.iter().for_each(|&i| bincount[i as usize] += 1);
    ensure(bincount == r.counts && !bincount.contains(&0), || {
        format!("counts {:?} vs assignments' {:?}", r.counts, bincount)
    })?;
    let codebook = t.ctx.read_f32(&r.codebook)?;
    let x64: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    let old: Vec<f64> = codebook.iter().map(|&v| v as f64).collect();
    let (means, _) = cpu::kmeans::means(&x64, d, &a, &old);
    compare(&codebook, &means, atol, 1e-5, &[])?;
    Ok(a)
}

/// Gaussian-ish blobs around `centers` random centres.
fn blobs(rng: &mut Rng, n: usize, d: usize, centers: usize) -> Vec<f32> {
    let c: Vec<f32> = rng.weights((centers * d) as u64, 3.0);
    let mut out = Vec::with_capacity(n * d);
    for i in 0..n {
        let k = i % centers;
        let noise = rng.weights(d as u64, 0.3);
        out.extend((0..d).map(|j| c[k * d + j] + noise[j]));
    }
    out
}

/// The f64 sum of the squared distances of `data` (rows of `d`) to their assigned centroids of
/// the result's final codebook.
fn exact_objective(ctx: &Context, data: &[f32], d: usize, r: &KmeansResult) -> Result<f64, Failed> {
    let codebook = ctx.read_f32(&r.codebook)?;
    Ok(data
        .chunks(d)
        .zip(ctx.read_u32(&r.assignments)?)
        .map(|(row, a)| {
            let c = &codebook[a as usize * d..(a as usize + 1) * d];
            row.iter()
                .zip(c)
                .map(|(&v, &w)| (v as f64 - w as f64).powi(2))
                .sum::<f64>()
        })
        .sum())
}

/// Objective non-increasing, counts sum to N and match the assignments, no empty cluster,
/// assignments nearest under the final codebook (up to near-ties).
fn check_result(
    ctx: &Context,
    data: &[f32],
    d: usize,
    k: usize,
    r: &KmeansResult,
) -> Result<(), Failed> {
    let n = data.len() / d;
    for w in r.objective.windows(2) {
        ensure(w[1] <= w[0] * (1.0 + 1e-5) + 1e-9, || {
            format!("objective increased: {:?}", r.objective)
        })?;
    }
    ensure(r.objective.len() == r.iterations as usize + 1, || {
        "objective length".into()
    })?;
    ensure(
        r.counts.len() == k && r.counts.iter().all(|&c| c > 0),
        || format!("empty cluster in {:?}", r.counts),
    )?;
    ensure(
        r.counts.iter().map(|&c| c as usize).sum::<usize>() == n,
        || "counts do not sum to N".into(),
    )?;
    let a = ctx.read_u32(&r.assignments)?;
    let mut bincount = vec![0u32; k];
    a.iter().for_each(|&i| bincount[i as usize] += 1);
    ensure(bincount == r.counts, || {
        "counts differ from the assignments".into()
    })?;
    let codebook: Vec<f64> = ctx
        .read_f32(&r.codebook)?
        .iter()
        .map(|&x| x as f64)
        .collect();
    let x64: Vec<f64> = data.iter().map(|&x| x as f64).collect();
    let (want, want_dist) = cpu::assign::assign(&x64, &codebook, d);
    for i in 0..n {
        if a[i] != want[i] {
            let c = &codebook[a[i] as usize * d..(a[i] as usize + 1) * d];
            let dist: f64 = x64[i * d..(i + 1) * d]
                .iter()
                .zip(c)
                .map(|(p, q)| (p - q) * (p - q))
                .sum();
            ensure(
                (dist - want_dist[i]).abs() <= 1e-4 * (1.0 + want_dist[i]),
                || format!("subvector {i} not assigned to its nearest centroid"),
            )?;
        }
    }
    Ok(())
}

fn batched_properties(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(42);
    let shapes = [
        (3000usize, 4usize, 16usize),
        (1500, 8, 32),
        (700, 9, 7),
        (257, 1, 5),
    ];
    let data: Vec<Vec<f32>> = shapes
        .iter()
        .map(|&(n, d, _)| blobs(&mut rng, n, d, 12))
        .collect();
    for init in [KmeansInit::Uniform, KmeansInit::PlusPlus] {
        for (k_index, k) in [16u32, 5].into_iter().enumerate() {
            let tensors: Vec<_> = data.iter().map(|x| t.ctx.upload(x).unwrap()).collect();
            let problems: Vec<_> = tensors
                .iter()
                .zip(&shapes)
                .map(|(x, s)| KmeansProblem {
                    data: x,
                    dim: s.1 as u32,
                })
                .collect();
            let options = KmeansOptions {
                init,
                seed: 7 + k_index as u64,
                n_iter: 12,
                ..KmeansOptions::new(k)
            };
            let mut reports = 0;
            let results = t
                .ctx
                .kmeans_with_progress(&problems, &options, &mut |_| reports += 1)?;
            ensure(reports >= 1, || "no progress report".into())?;
            for ((x, s), r) in data.iter().zip(&shapes).zip(&results) {
                check_result(&t.ctx, x, s.1, k as usize, r).map_err(|e| {
                    format!("{init:?} K={k} {s:?}: {}", e.message().unwrap_or_default())
                })?;
            }
        }
    }
    Ok(())
}

/// After convergence each centroid equals the f64 mean of its members (the M-step).
fn converged_mean(t: &Target) -> Result<(), Failed> {
    let (n, d) = (2000usize, 5usize);
    converged_mean_of(t, &blobs(&mut Rng(3), n, d, 30), d, 1e-5)
}

/// The same with blobs of magnitudes 1e3 and 1e-3 side by side (in the same tiles of the
/// M-step): each small centroid must still match its own mean to a relative 1e-5.
fn mixed_magnitudes_mean(t: &Target) -> Result<(), Failed> {
    let (n, d, centers) = (3000usize, 4usize, 12usize);
    let mut data = blobs(&mut Rng(11), n, d, centers);
    for (i, row) in data.chunks_mut(d).enumerate() {
        let scale = if (i % centers) % 2 == 0 { 1e3 } else { 1e-3 };
        row.iter_mut().for_each(|v| *v *= scale);
    }
    converged_mean_of(t, &data, d, 1e-12)
}

fn converged_mean_of(t: &Target, data: &[f32], d: usize, atol: f64) -> Result<(), Failed> {
    let n = data.len() / d;
    let k = 24u32;
    let x = t.ctx.upload(data)?;
    let options = KmeansOptions {
        n_iter: 100,
        tol: 0.0,
        ..KmeansOptions::new(k)
    };
    let r = &t.ctx.kmeans(
        &[KmeansProblem {
            data: &x,
            dim: d as u32,
        }],
        &options,
    )?[0];
    let a = t.ctx.read_u32(&r.assignments)?;
    let codebook = t.ctx.read_f32(&r.codebook)?;
    let x64: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    let old: Vec<f64> = codebook.iter().map(|&v| v as f64).collect();
    let (means, _) = cpu::kmeans::means(&x64, d, &a, &old);
    // Converged: the last two objectives agree and the codebook is the mean of its members.
    let last = &r.objective[r.objective.len() - 2..];
    ensure((last[0] - last[1]).abs() <= 1e-5 * last[0], || {
        format!("not converged: {:?}", last)
    })?;
    ensure(a.len() == n, || "assignment count".into())?;
    compare(&codebook, &means, atol, 1e-5, &[])
}

fn same_seed_same_bits(t: &Target) -> Result<(), Failed> {
    let data = blobs(&mut Rng(9), 1200, 8, 10);
    let x = t.ctx.upload(&data)?;
    let p = [KmeansProblem { data: &x, dim: 8 }];
    let options = KmeansOptions {
        seed: 5,
        ..KmeansOptions::new(32)
    };
    let a = &t.ctx.kmeans(&p, &options)?[0];
    let b = &t.ctx.kmeans(&p, &options)?[0];
    ensure(
        t.ctx.read_raw(&a.codebook)? == t.ctx.read_raw(&b.codebook)?,
        || "codebooks differ between runs".into(),
    )?;
    ensure(
        t.ctx.read_raw(&a.assignments)? == t.ctx.read_raw(&b.assignments)?,
        || "assignments differ".into(),
    )?;
    ensure(a.objective == b.objective, || "objectives differ".into())?;
    let c = &t.ctx.kmeans(&p, &KmeansOptions { seed: 6, ..options })?[0];
    ensure(
        t.ctx.read_raw(&a.codebook)? != t.ctx.read_raw(&c.codebook)?,
        || "another seed gave the same codebook".into(),
    )
}

/// 93 copies of one point and 7 other points, K = 8: uniform sampling picks copies of the
/// same point, splitting cannot separate copies, the repair must still leave no cluster empty.
fn duplicates_repaired(t: &Target) -> Result<(), Failed> {
    let d = 3;
    let mut data = vec![0.5f32; 93 * d];
    data.extend(Rng(1).weights(7 * d as u64, 2.0));
    let x = t.ctx.upload(&data)?;
    for seed in 0..4 {
        let options = KmeansOptions {
            init: KmeansInit::Uniform,
            seed,
            n_iter: 5,
            ..KmeansOptions::new(8)
        };
        let r = &t.ctx.kmeans(
            &[KmeansProblem {
                data: &x,
                dim: d as u32,
            }],
            &options,
        )?[0];
        check_result(&t.ctx, &data, d, 8, r)?;
        // Every point on its centroid: 0 up to the f32 rounding of ||x||² + ||c||² − 2·x·c.
        let last = *r.objective.last().unwrap();
        ensure(last < 1e-4, || {
            format!(
                "8 distinct points, 8 centroids: objective {:?}",
                r.objective
            )
        })?;
    }
    Ok(())
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let x = ctx.upload(&[1.0f32; 40])?;
    let p = |dim| [KmeansProblem { data: &x, dim }];
    expect_err(ctx, ctx.kmeans(&p(4), &KmeansOptions::new(11)), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "n_centroids",
                ..
            }
        )
    })?;
    expect_err(ctx, ctx.kmeans(&p(4), &KmeansOptions::new(0)), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "n_centroids",
                ..
            }
        )
    })?;
    expect_err(ctx, ctx.kmeans(&p(3), &KmeansOptions::new(2)), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "data.len()",
                ..
            }
        )
    })?;
    expect_err(ctx, ctx.kmeans(&p(0), &KmeansOptions::new(2)), |e| {
        matches!(e, Error::InvalidArgument { name: "dim", .. })
    })?;
    let same = ctx.upload(&[2.0f32; 40])?;
    let r = ctx.kmeans(
        &[KmeansProblem {
            data: &same,
            dim: 4,
        }],
        &KmeansOptions::new(3),
    );
    expect_err(ctx, r, |e| {
        matches!(e, Error::InvalidArgument { name: "data", .. })
    })?;
    let mut nan = vec![1.0f32; 40];
    nan[7] = f32::NAN;
    let bad = ctx.upload(&nan)?;
    let r = ctx.kmeans(
        &[KmeansProblem { data: &bad, dim: 4 }],
        &KmeansOptions::new(3),
    );
    expect_err(ctx, r, |e| matches!(e, Error::NonFinite { count: 1, .. }))
}

/// Hamerly bounds (the default) against the plain E-step: the same codebook bits, assignments,
/// counts, objectives and repairs, on problems full of exact ties (points on a small integer
/// lattice), near-duplicates (copies a few ulps apart), few distinct points (repairs), blobs
/// several tiles of centroids wide, d = 1, 16, mixed magnitudes and far from the origin,
/// batched together; on a device, fewer pairs scored on the blobs. The final objective is
/// within 4e-6 of the f64 sum of its squared distances.
fn bounds_match_plain(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(77);
    let lattice: Vec<f32> = (0..2000 * 3).map(|_| rng.below(4) as f32).collect();
    let mut near = Vec::new();
    for base in rng.weights(150 * 8, 1.0).chunks(8) {
        for copy in 0..8u32 {
            near.extend(base.iter().map(|&v| f32::from_bits(v.to_bits() + copy % 3)));
        }
    }
    let mut mixed = blobs(&mut rng, 1500, 2, 10);
    for (i, row) in mixed.chunks_mut(2).enumerate() {
        let scale = if i % 3 == 0 { 1e3 } else { 1e-2 };
        row.iter_mut().for_each(|v| *v *= scale);
    }
    let few: Vec<f32> = rng.weights(45 * 5, 1.0).repeat(9);
    // Far from the origin: ||x||² − 2·x·c + ||c||² cancels, so its rounding (about 1e-2 here)
    // is large against the squared distances (about 0.1), and the bounds' margins are wide.
    let offset: Vec<f32> = blobs(&mut rng, 2000, 4, 20)
        .iter()
        .map(|v| v + 64.0)
        .collect();
    let cases = [
        (lattice, 3u32),
        (few, 5),
        (near, 8),
        (blobs(&mut rng, 3000, 4, 50), 4),
        (blobs(&mut rng, 900, 1, 7), 1),
        (mixed, 2),
        (blobs(&mut rng, 1000, 16, 30), 16),
        (offset, 4),
    ];
    let tensors: Vec<_> = cases
        .iter()
        .map(|(x, _)| t.ctx.upload(x))
        .collect::<Result<_, _>>()?;
    let problems: Vec<_> = tensors
        .iter()
        .zip(&cases)
        .map(|(x, &(_, dim))| KmeansProblem { data: x, dim })
        .collect();
    let mut total_repairs = 0;
    for (k, init) in [(40u32, KmeansInit::Uniform), (7, KmeansInit::PlusPlus)] {
        let options = KmeansOptions {
            init,
            seed: 3,
            n_iter: 15,
            tol: 0.0,
            ..KmeansOptions::new(k)
        };
        let with = |bounds| {
            t.ctx
                .kmeans(&problems, &KmeansOptions { bounds, ..options })
        };
        let plain = with(KmeansBounds::Off)?;
        let (on, auto) = (with(KmeansBounds::On)?, with(KmeansBounds::Auto)?);
        let pairs = on.iter().zip(&plain).chain(auto.iter().zip(&plain));
        for (i, (b, p)) in pairs.enumerate() {
            let i = i % plain.len();
            let what = |f: &str| format!("K={k} problem {i}: {f} differ");
            ensure(b.objective == p.objective, || {
                format!(
                    "{}: {:?} vs {:?}",
                    what("objectives"),
                    b.objective,
                    p.objective
                )
            })?;
            ensure(
                t.ctx.read_raw(&b.codebook)? == t.ctx.read_raw(&p.codebook)?,
                || what("codebooks"),
            )?;
            ensure(
                t.ctx.read_raw(&b.assignments)? == t.ctx.read_raw(&p.assignments)?,
                || what("assignments"),
            )?;
            ensure(
                b.counts == p.counts && b.repairs == p.repairs && b.iterations == p.iterations,
                || what("counts, repairs or iterations"),
            )?;
            let exact = exact_objective(&t.ctx, &cases[i].0, cases[i].1 as usize, b)?;
            let last = *b.objective.last().unwrap();
            ensure((last - exact).abs() <= 4e-6 * exact, || {
                format!("K={k} problem {i}: objective {last} vs {exact}")
            })?;
            total_repairs += b.repairs;
            ensure(p.scored.iter().all(|&s| s == 1.0), || what("plain scored"))?;
            ensure(
                b.scored.len() == b.objective.len()
                    && b.scored.iter().all(|&s| (0.0..=1.0).contains(&s)),
                || format!("K={k} problem {i}: scored {:?}", b.scored),
            )?;
        }
        // The bounds prune: on the blobs (problems 3 and 6), late E-steps score next to nothing.
        let pruned = [&on[3], &on[6], &auto[3], &auto[6]];
        for b in pruned.into_iter().filter(|_| t.is_gpu()) {
            let least = b.scored.iter().copied().fold(1.0, f64::min);
            ensure(least < 0.1, || {
                format!("K={k}: bounds never pruned: {:?}", b.scored)
            })?;
        }
    }
    ensure(total_repairs > 0, || "no repair exercised".into())?;
    Ok(())
}

/// The documented accuracy of the objective on a problem large enough that, on CPU adapters,
/// each M-step run of rows spans several 1024-row blocks of the objective's f32 sum (300k rows
/// over one workgroup of runs per thread on 2 threads): the final objective within 4e-6
/// (relative) of the f64 sum of the squared distances to the final codebook. (Measured here:
/// about 2e-8 on lavapipe, with or without the blocks.)
fn long_runs_objective(t: &Target) -> Result<(), Failed> {
    let x = blobs(&mut Rng(91), 300_000, 4, 12);
    final_objective_matches(t, &x, 4, 8, 5)
}

/// Two iterations of k-means (`k` centroids, seed `seed`) on `x`: the final objective (the
/// M-step's distances) within 4e-6 of the f64 objective of the result.
fn final_objective_matches(
    t: &Target,
    x: &[f32],
    d: usize,
    k: u32,
    seed: u64,
) -> Result<(), Failed> {
    let data = t.ctx.upload(x)?;
    let options = KmeansOptions {
        n_iter: 2,
        tol: 0.0,
        seed,
        ..KmeansOptions::new(k)
    };
    let r = t.ctx.kmeans(
        &[KmeansProblem {
            data: &data,
            dim: d as u32,
        }],
        &options,
    )?;
    let exact = exact_objective(&t.ctx, x, d, &r[0])?;
    let last = *r[0].objective.last().unwrap();
    ensure((last - exact).abs() <= 4e-6 * exact, || {
        format!(
            "objective {last} vs {exact}: {:.2e} relative",
            (last - exact).abs() / exact
        )
    })
}

/// A codebook larger than one uniform binding (K·d = 2100 · 8 > 16384 floats): on CPU adapters
/// the M-step then reads the old centroids from storage rather than from a uniform copy. The
/// final objective (the M-step's distances) against the f64 objective of the result.
fn large_codebook_objective(t: &Target) -> Result<(), Failed> {
    let x = blobs(&mut Rng(93), 9000, 8, 40);
    final_objective_matches(t, &x, 8, 2100, 3)
}
