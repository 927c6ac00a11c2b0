//! Criterion benches of the Linear-layer products on the best adapter (`Context::new()`,
//! honouring `QUANTNOISE_BACKEND`), at sizes that keep a run short on a software rasteriser:
//!
//! * `linear/…`: Y = X·Wᵀ for X (256, 512), W (512, 512): the dense f32 forward, the fused noisy
//!   forward (proxy noise, block 8, p = 0.1) and the unfused one (noise kernel, then matmul), and
//!   the exact int8 matmul (`dot4I8Packed`) of the same shape. Throughput: multiply-adds ×2
//!   (FLOP, or integer ops for int8) per op.
//! * `matvec/…`: y = W·x for one 1024-vector, W 1024 × 1024: dense f32 against the PQ lookup-table
//!   matvec (d = 8, 256 centroids, u8 indices: 1 bit per weight).
//!
//! Each measurement submits `iters` ops back to back, then waits for the device.
//! `cargo bench --bench matmul`; the report with the FMA ceiling is `quantnoise bench`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quantnoise::bench::pq_values;
use quantnoise::int8::{MatmulVariant, QScheme, QType, int8_qparams};
use quantnoise::{
    CodebookFormat, Context, DType, IndexFormat, LinearShape, NoiseSeed, NoiseSpec, Observer,
    PqMatmulMethod, PqWeight, WeightShape,
};

/// `iters` ops back to back, then a synchronize ([`quantnoise::bench::time_ops`]).
fn timed(ctx: &Context, iters: u64, op: impl Fn() -> quantnoise::Result<()>) -> Duration {
    quantnoise::bench::time_ops(ctx, iters, op).expect("op failed")
}

fn linear(c: &mut Criterion) {
    let ctx = Context::new().expect("no context");
    eprintln!("quantnoise matmul benches on {}", ctx.describe());
    let s = LinearShape::new(1, 256, 512, 512);
    let x = ctx.upload(&pq_values(s.x_len(), 1)).expect("upload");
    let w_host = pq_values(s.w_len(), 2);
    let w = ctx.upload(&w_host).expect("upload");
    let y = ctx.empty(s.y_len(), DType::F32).expect("alloc");
    let noisy_w = ctx.empty(s.w_len(), DType::F32).expect("alloc");
    let spec = NoiseSpec::proxy(8, 0.1);
    let seed = NoiseSeed::new(7, 0);
    let wshape = WeightShape::matrix(s.out_features, s.in_features);

    // int8: per-row symmetric weights, per-tensor affine activations.
    let xq_params = {
        let observed = ctx
            .observe(&x, &WeightShape::matrix(1, s.x_len()), Observer::MinMax, 8)
            .expect("observe");
        int8_qparams(&observed, QType::I8, QScheme::Affine).expect("qparams")
    };
    let xq = ctx
        .quantize(&x, s.rows, s.in_features, QType::I8, &xq_params)
        .expect("quantize");
    let wq = ctx
        .quantize_observed(
            &w,
            &wshape,
            Observer::MinMaxPerChannel,
            QType::I8,
            QScheme::Symmetric,
        )
        .expect("quantize");
    let layer = ctx.int8_linear(wq).expect("int8 layer");

    let mut group = c.benchmark_group(format!(
        "linear_{}x{}x{}",
        s.rows, s.in_features, s.out_features
    ));
    group.throughput(Throughput::Elements(
        2 * s.rows * s.in_features * s.out_features,
    ));
    group.bench_function("f32", |b| {
        b.iter_custom(|iters| timed(&ctx, iters, || ctx.linear_forward(&x, &w, None, &y, s)))
    });
    group.bench_function("noisy_fused", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.noisy_linear_forward(&x, &w, None, &y, s, &spec, seed, None)
                    .map(|_| ())
            })
        })
    });
    group.bench_function("noisy_unfused", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.noise_forward(&w, &noisy_w, wshape, &spec, seed, None)?;
                ctx.linear_forward(&x, &noisy_w, None, &y, s)
            })
        })
    });
    group.bench_function("int8_dp4a", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.int8_matmul(&xq, &layer, None, &y, MatmulVariant::Dp4a)
            })
        })
    });
    group.finish();
}

fn matvec(c: &mut Criterion) {
    let ctx = Context::new().expect("no context");
    let (n, k, d, kc) = (1024u64, 1024u64, 8u32, 256u32);
    let x = ctx.upload(&pq_values(k, 3)).expect("upload");
    let w = ctx.upload(&pq_values(n * k, 4)).expect("upload");
    let y = ctx.empty(n, DType::F32).expect("alloc");
    let codebook = ctx
        .upload(&pq_values(kc as u64 * d as u64, 5))
        .expect("upload");
    let idx: Vec<u32> = (0..n * k / d as u64)
        .map(|i| (i * 2654435761 % kc as u64) as u32)
        .collect();
    let indices = ctx.upload(&idx).expect("upload");
    let pq = PqWeight {
        out_features: n,
        in_features: k,
        block_size: d,
        n_centroids: kc,
        codebook,
        codebook_format: CodebookFormat::F32,
        indices: ctx.pack_indices_u8(&indices, kc).expect("pack"),
        index_format: IndexFormat::U8,
    };
    let mut group = c.benchmark_group(format!("matvec_{n}x{k}"));
    group.throughput(Throughput::Elements(2 * n * k));
    group.bench_function("dense_f32", |b| {
        b.iter_custom(|iters| timed(&ctx, iters, || ctx.dense_matvec(&x, 1, &w, n, k, None, &y)))
    });
    group.bench_function("pq_lut_u8", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.pq_matmul(&x, 1, &pq, None, &y, PqMatmulMethod::Lut)
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = linear, matvec
}
criterion_main!(benches);
