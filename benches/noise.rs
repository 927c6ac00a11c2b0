//! Criterion benches of the kernels on the best adapter (`Context::new()`, honouring
//! `QUANTNOISE_BACKEND`) at 1024×1024 f32: the noise forward (proxy, int8), the masked STE
//! backward and the copy baseline moving the same bytes. Throughput is bytes read plus bytes
//! written per op. Each measurement submits `iters` ops back to back and then waits for the
//! device, so it times the kernels, not one round trip per op.
//!
//! `cargo bench --bench noise`; for the full report with baselines, `quantnoise bench`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quantnoise::copy::CopyVariant;
use quantnoise::observer::affine_params;
use quantnoise::{
    Context, DType, Noise, NoiseSeed, NoiseSpec, QParams, QuantScheme, SteMode, Tensor, WeightShape,
};

const ROWS: u64 = 1024;
const COLS: u64 = 1024;

/// `iters` ops back to back, then a synchronize ([`quantnoise::bench::time_ops`]).
fn timed(ctx: &Context, iters: u64, op: impl Fn() -> quantnoise::Result<()>) -> Duration {
    quantnoise::bench::time_ops(ctx, iters, op).expect("op failed")
}

fn kernels(c: &mut Criterion) {
    let ctx = Context::new().expect("no context");
    eprintln!("quantnoise benches on {}", ctx.describe());
    let shape = WeightShape::matrix(ROWS, COLS);
    let n = shape.numel();
    let w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.618_034).sin()).collect();
    let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.414_213).cos()).collect();
    let upload = |v: &[f32]| -> Tensor { ctx.upload(v).expect("upload failed") };
    let (weight, grad) = (upload(&w), upload(&g));
    let out = ctx.empty(n, DType::F32).expect("alloc failed");
    let seed = NoiseSeed::new(42, 1);
    let proxy = NoiseSpec::proxy(8, 0.1);
    let (s, z) = affine_params(-0.75, 0.75, 8);
    let int8 = NoiseSpec {
        block_size: 8,
        stages: vec![Noise::IntN {
            p: 0.1,
            bits: 8,
            scheme: QuantScheme::Given(QParams::per_tensor(s, z)),
        }],
    };

    let mut group = c.benchmark_group(format!("{ROWS}x{COLS}"));
    group.throughput(Throughput::Bytes(2 * n * 4));
    for variant in [
        CopyVariant::Strided { vpt: 4 },
        CopyVariant::Contiguous { vpt: 8 },
    ] {
        group.bench_function(variant.name(), |b| {
            b.iter_custom(|iters| timed(&ctx, iters, || ctx.copy_kernel(variant, &weight, &out)))
        });
    }
    group.bench_function("noise_proxy_b8", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.noise_forward(&weight, &out, shape, &proxy, seed, None)
                    .map(|_| ())
            })
        })
    });
    group.bench_function("noise_int8_b8", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.noise_forward(&weight, &out, shape, &int8, seed, None)
                    .map(|_| ())
            })
        })
    });
    group.bench_function("ste_masked_b8", |b| {
        b.iter_custom(|iters| {
            timed(&ctx, iters, || {
                ctx.ste_backward(&grad, &weight, &out, shape, &proxy, seed, SteMode::Masked)
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
        .measurement_time(Duration::from_secs(2));
    targets = kernels
}
criterion_main!(benches);
