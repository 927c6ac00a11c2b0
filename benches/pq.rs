//! Criterion benches of product quantization on the best adapter (`Context::new()`, honouring
//! `QUANTNOISE_BACKEND`) at N = 100,000 subvectors of d = 8 f32, K = 256 centroids (the data of
//! the `quantnoise bench --quick` report, [`quantnoise::bench::pq_values`]): the
//! nearest-centroid assignment, and k-means with one Lloyd iteration (uniform initialisation,
//! `tol = 0`: initialisation, one E-step and M-step, and the final E-step). Throughput is in
//! subvectors per op.
//!
//! An assignment measurement submits `iters` ops back to back and then waits for the device;
//! a k-means op reads back counts and objective every iteration, so it waits by itself.
//!
//! `cargo bench --bench pq`; for the report with the FMA ceiling and the CPU reference,
//! `quantnoise bench`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quantnoise::bench::{PQ_DATA_SEED, PQ_DIM, PQ_K, pq_codebook, pq_kmeans_options, pq_values};
use quantnoise::{AssignProblem, Assignment, Context, DType, KmeansProblem};

const N: u64 = 100_000;

/// `iters` ops back to back, then a synchronize ([`quantnoise::bench::time_ops`]).
fn timed(ctx: &Context, iters: u64, op: impl Fn() -> quantnoise::Result<()>) -> Duration {
    quantnoise::bench::time_ops(ctx, iters, op).expect("op failed")
}

fn pq(c: &mut Criterion) {
    let ctx = Context::new().expect("no context");
    eprintln!("quantnoise PQ benches on {}", ctx.describe());
    let host = pq_values(N * PQ_DIM as u64, PQ_DATA_SEED);
    let data = ctx.upload(&host).expect("upload failed");
    let codebook = ctx.upload(&pq_codebook(&host)).expect("upload failed");
    let out = Assignment {
        indices: ctx.empty(N, DType::U32).expect("alloc failed"),
        distances: ctx.empty(N, DType::F32).expect("alloc failed"),
    };
    let assign = AssignProblem {
        data: &data,
        codebook: &codebook,
        dim: PQ_DIM,
    };
    let kmeans = KmeansProblem {
        data: &data,
        dim: PQ_DIM,
    };
    let one_iter = pq_kmeans_options(1);

    let mut group = c.benchmark_group(format!("{N}x{PQ_DIM}_k{PQ_K}"));
    group.throughput(Throughput::Elements(N));
    group.bench_function("assign", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.assign_into(&[assign], std::slice::from_ref(&out))
            })
        })
    });
    group.bench_function("kmeans_1iter", |b| {
        b.iter_custom(|iters| timed(&ctx, iters, || ctx.kmeans(&[kmeans], &one_iter).map(|_| ())))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = pq
}
criterion_main!(benches);
