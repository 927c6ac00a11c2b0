//! Conformance of the product-quantization decode on every target. A decode is a copy, so every
//! target must match the reference bit for bit.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::{Context, DType, Error, PqLayer, Tensor, WeightShape, cpu};

fn main() {
    run(
        &[
            ("random_layers_decode_exactly", random_layers),
            ("many_windows", many_windows),
            ("out_of_range_indices_clamp", clamped),
            ("bad_inputs_are_typed_errors", bad_inputs),
            ("encode_batched_layers", encode_layers),
            ("centroid_gradients", centroid_gradients),
            ("indices_pack_to_u8", pack_u8),
        ],
        true,
    )
}

const BLOCK_SIZES: [u32; 5] = [1, 3, 4, 8, 9];
const CENTROIDS: [u32; 5] = [1, 2, 7, 256, 4096];

/// A random Linear, Embedding, 1×1 or k×k Conv2d shape whose cols are a multiple of `bs`.
fn random_layer_shape(rng: &mut Rng, bs: u32) -> WeightShape {
    let bs = bs as u64;
    match rng.below(4) {
        0 => WeightShape::Linear {
            out_features: 1 + rng.below(40),
            in_features: bs * (1 + rng.below(20)),
        },
        1 => WeightShape::Embedding {
            num_embeddings: 1 + rng.below(50),
            dim: bs * (1 + rng.below(16)),
        },
        2 => WeightShape::Conv2d {
            out_channels: 1 + rng.below(20),
            in_channels: bs * (1 + rng.below(12)),
            kh: 1,
            kw: 1,
        },
        _ => {
            let k = [3, 5][rng.below(2) as usize];
            // bs | k·k (1, or 9 with 3×3: fairseq's whole-kernel blocks) allows any in_channels.
            let in_channels = if (k * k) % bs == 0 {
                1 + rng.below(8)
            } else {
                bs * (1 + rng.below(4))
            };
            WeightShape::Conv2d {
                out_channels: 1 + rng.below(16),
                in_channels,
                kh: k,
                kw: k,
            }
        }
    }
}

/// Uploads a random layer; returns it with its host codebook and assignments.
fn random_layer(
    ctx: &Context,
    rng: &mut Rng,
    shape: WeightShape,
    bs: u32,
    k: u32,
) -> (PqLayer, Vec<f32>, Vec<u32>) {
    let blocks = shape.numel() / bs as u64;
    let codebook = rng.weights(k as u64 * bs as u64, 1.0);
    let assignments: Vec<u32> = (0..blocks).map(|_| rng.below(k as u64) as u32).collect();
    let layer = PqLayer::new(
        shape,
        bs,
        ctx.upload(&codebook).unwrap(),
        ctx.upload(&assignments).unwrap(),
    )
    .unwrap();
    (layer, codebook, assignments)
}

/// Decodes into a poisoned output and requires the reference's bits exactly.
fn check_decode(
    t: &Target,
    layer: &PqLayer,
    codebook: &[f32],
    assignments: &[u32],
) -> Result<(), Failed> {
    let out = poisoned(&t.ctx, layer.shape.numel(), DType::F32);
    t.ctx.pq_decode(layer, &out)?;
    let got = t.ctx.read_f32(&out)?;
    let want = cpu::pq::decode(codebook, assignments, layer.block_size as usize);
    ensure(got.len() == want.len(), || {
        format!("length {} vs {}", got.len(), want.len())
    })?;
    let bad: Vec<_> = got
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (g, w))| g.to_bits() != w.to_bits())
        .map(|(i, (g, w))| format!("[{i}] got {g} want {w}"))
        .collect();
    ensure(bad.is_empty(), || {
        format!(
            "{:?} bs={} K={}: {} mismatches, first: {:?}",
            layer.shape,
            layer.block_size,
            layer.n_centroids,
            bad.len(),
            &bad[..bad.len().min(5)]
        )
    })
}

/// Every block size × K on a random layer shape each.
fn random_layers(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(0x5EED_0001);
    for bs in BLOCK_SIZES {
        for k in CENTROIDS {
            for _ in 0..2 {
                let shape = random_layer_shape(&mut rng, bs);
                let (layer, c, a) = random_layer(&t.ctx, &mut rng, shape, bs, k);
                ensure(layer.n_centroids == k, || {
                    format!("PqLayer::new inferred K = {}", layer.n_centroids)
                })?;
                check_decode(t, &layer, &c, &a)?;
            }
        }
    }
    // The allocating variant.
    let (layer, c, a) = random_layer(&t.ctx, &mut rng, WeightShape::matrix(5, 12), 4, 7);
    let got = t.ctx.read_f32(&t.ctx.pq_decoded(&layer)?)?;
    ensure(got == cpu::pq::decode(&c, &a, 4), || {
        "pq_decoded differs from the reference".into()
    })
}

/// Layers spanning several 16 KiB windows (and block counts not a multiple of 64).
fn many_windows(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(77);
    for (shape, bs, k) in [
        (WeightShape::matrix(300, 72), 8, 256),
        (WeightShape::matrix(301, 63), 9, 4096),
        (WeightShape::matrix(1000, 11), 1, 7),
        (
            WeightShape::Conv2d {
                out_channels: 129,
                in_channels: 17,
                kh: 3,
                kw: 3,
            },
            9,
            33,
        ),
    ] {
        let (layer, c, a) = random_layer(&t.ctx, &mut rng, shape, bs, k);
        check_decode(t, &layer, &c, &a)?;
    }
    Ok(())
}

/// Indices ≥ K decode to centroid K − 1.
fn clamped(t: &Target) -> Result<(), Failed> {
    let (bs, k) = (3u32, 5u32);
    let codebook: Vec<f32> = (0..k * bs).map(|i| i as f32 + 0.5).collect();
    let assignments = [0, 4, 5, 6, 1000, u32::MAX, 2, 1 << 31];
    let layer = PqLayer::new(
        WeightShape::matrix(2, 12),
        bs,
        t.ctx.upload(&codebook)?,
        t.ctx.upload(&assignments)?,
    )?;
    let got = t.ctx.read_f32(&t.ctx.pq_decoded(&layer)?)?;
    let want: Vec<f32> = [0, 4, 4, 4, 4, 4, 2, 4]
        .iter()
        .flat_map(|&a| codebook[a * 3..a * 3 + 3].to_vec())
        .collect();
    ensure(got == want, || format!("got {got:?}, want {want:?}"))?;
    check_decode(t, &layer, &codebook, &assignments)
}

fn layer(shape: WeightShape, bs: u32, codebook: &Tensor, assignments: &Tensor, k: u32) -> PqLayer {
    PqLayer {
        shape,
        block_size: bs,
        codebook: codebook.clone(),
        assignments: assignments.clone(),
        n_centroids: k,
    }
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    // A valid layer: 2×8 weight, bs 4 (4 blocks), K = 2.
    let shape = WeightShape::matrix(2, 8);
    let c = ctx.upload(&[1.0f32; 8])?;
    let a = ctx.upload(&[0u32, 1, 1, 0])?;
    let out = ctx.empty(16, DType::F32)?;
    ctx.pq_decode(&layer(shape, 4, &c, &a, 2), &out)?;
    let invalid = |name: &'static str| move |e: &Error| matches!(e, Error::InvalidArgument { name: n, .. } if *n == name);
    let shape_mismatch = |what: &'static str| move |e: &Error| matches!(e, Error::ShapeMismatch { what: w, .. } if *w == what);
    let dtype = |what: &'static str| move |e: &Error| matches!(e, Error::DTypeMismatch { what: w, .. } if *w == what);
    let decode = |l: PqLayer| ctx.pq_decode(&l, &out);

    // K out of range.
    expect_err(
        ctx,
        decode(layer(shape, 4, &c, &a, 0)),
        invalid("n_centroids"),
    )?;
    expect_err(
        ctx,
        decode(layer(shape, 4, &c, &a, 65537)),
        invalid("n_centroids"),
    )?;
    // Block size.
    expect_err(
        ctx,
        decode(layer(shape, 0, &c, &a, 2)),
        invalid("block_size"),
    )?;
    expect_err(ctx, decode(layer(shape, 3, &c, &a, 2)), |e| {
        matches!(e, Error::BlockSizeMismatch { .. })
    })?;
    // Codebook length (K·bs) and assignment count (blocks).
    expect_err(
        ctx,
        decode(layer(shape, 4, &c, &a, 3)),
        shape_mismatch("codebook"),
    )?;
    expect_err(
        ctx,
        decode(layer(shape, 2, &c, &a, 4)),
        shape_mismatch("assignments"),
    )?;
    // Dtypes.
    let c_u32 = ctx.upload(&[0u32; 8])?;
    let a_f32 = ctx.upload(&[0.0f32; 4])?;
    expect_err(
        ctx,
        decode(layer(shape, 4, &c_u32, &a, 2)),
        dtype("codebook"),
    )?;
    expect_err(
        ctx,
        decode(layer(shape, 4, &c, &a_f32, 2)),
        dtype("assignments"),
    )?;
    let good = layer(shape, 4, &c, &a, 2);
    expect_err(
        ctx,
        ctx.pq_decode(&good, &ctx.empty(16, DType::F16)?),
        dtype("out"),
    )?;
    expect_err(
        ctx,
        ctx.pq_decode(&good, &ctx.empty(16, DType::U32)?),
        dtype("out"),
    )?;
    expect_err(
        ctx,
        ctx.pq_decode(&good, &ctx.empty(15, DType::F32)?),
        shape_mismatch("out"),
    )?;
    // PqLayer::new: the codebook must hold whole centroids, then the layer is validated.
    expect_err(
        ctx,
        PqLayer::new(shape, 4, ctx.upload(&[1.0f32; 6])?, a.clone()),
        invalid("codebook.len()"),
    )?;
    expect_err(
        ctx,
        PqLayer::new(shape, 4, c.clone(), ctx.upload(&[0u32; 3])?),
        shape_mismatch("assignments"),
    )?;
    // Aliasing: the output is the codebook (K·bs = numel = 16).
    let aliased = |e: &Error| matches!(e, Error::Aliasing { .. });
    let c16 = ctx.upload(&[1.0f32; 16])?;
    expect_err(
        ctx,
        ctx.pq_decode(&layer(shape, 4, &c16, &a, 4), &c16.clone()),
        |e| aliased(e),
    )?;
    if t.is_gpu() {
        // The output is another view of the assignments' buffer (bs 1: numel = blocks).
        let a8 = ctx.upload(&[0u32; 8])?;
        let l = layer(WeightShape::matrix(2, 4), 1, &c, &a8, 8);
        let (buffer, offset) = a8.wgpu_buffer().unwrap();
        let view = ctx.wrap_buffer(buffer, offset, 8, DType::F32)?;
        expect_err(ctx, ctx.pq_decode(&l, &view), |e| aliased(e))?;
        // Host tensors on a device context.
        let cpu = &t.cpu;
        let host_layer = layer(
            shape,
            4,
            &cpu.upload(&[1.0f32; 8])?,
            &cpu.upload(&[0u32; 4])?,
            2,
        );
        let wrong = |e: &Error| matches!(e, Error::WrongContext { .. });
        expect_err(ctx, ctx.pq_decode(&host_layer, &out), |e| wrong(e))?;
        expect_err(
            ctx,
            ctx.pq_decode(&good, &cpu.empty(16, DType::F32)?),
            |e| wrong(e),
        )?;
        // Device tensors on the CPU context.
        expect_err(
            cpu,
            cpu.pq_decode(&good, &cpu.empty(16, DType::F32)?),
            |e| wrong(e),
        )?;
    }
    Ok(())
}

/// pq_encode over several layers at once: every block is assigned to its nearest centroid (up
/// to near-ties), no centroid is unused, and decoding gives back the codebook rows.
fn encode_layers(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(77);
    let layers = [
        (
            WeightShape::Linear {
                out_features: 64,
                in_features: 96,
            },
            8u32,
        ),
        (
            WeightShape::Conv2d {
                out_channels: 16,
                in_channels: 8,
                kh: 3,
                kw: 3,
            },
            9,
        ),
        (
            WeightShape::Embedding {
                num_embeddings: 100,
                dim: 20,
            },
            4,
        ),
    ];
    let data: Vec<Vec<f32>> = layers
        .iter()
        .map(|(s, _)| rng.weights(s.numel(), 0.1))
        .collect();
    let tensors: Vec<Tensor> = data.iter().map(|w| ctx.upload(w).unwrap()).collect();
    let specs: Vec<_> = layers
        .iter()
        .zip(&tensors)
        .map(|((shape, bs), w)| quantnoise::pq::PqEncodeLayer {
            weight: w,
            shape: *shape,
            block_size: *bs,
        })
        .collect();
    let options = quantnoise::KmeansOptions {
        n_iter: 10,
        seed: 3,
        ..quantnoise::KmeansOptions::new(16)
    };
    let encoded = ctx.pq_encode(&specs, &options)?;
    for ((layer, w), (shape, bs)) in encoded.iter().zip(&data).zip(&layers) {
        let d = *bs as usize;
        ensure(layer.shape == *shape && layer.n_centroids == 16, || {
            "layer metadata".into()
        })?;
        let codebook: Vec<f64> = ctx
            .read_f32(&layer.codebook)?
            .iter()
            .map(|&x| x as f64)
            .collect();
        let a = ctx.read_u32(&layer.assignments)?;
        let mut used = [false; 16];
        a.iter().for_each(|&i| used[i as usize] = true);
        ensure(used.iter().all(|&u| u), || "a centroid is unused".into())?;
        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        let (want, want_dist) = cpu::assign::assign(&w64, &codebook, d);
        for (b, (&got, &best)) in a.iter().zip(&want).enumerate() {
            let c = &codebook[got as usize * d..(got as usize + 1) * d];
            let dist: f64 = w64[b * d..(b + 1) * d]
                .iter()
                .zip(c)
                .map(|(x, y)| (x - y) * (x - y))
                .sum();
            ensure(
                got == best || (dist - want_dist[b]).abs() <= 1e-5 * (1.0 + want_dist[b]),
                || format!("block {b} not nearest"),
            )?;
        }
        let decoded = ctx.read_f32(&ctx.pq_decoded(layer)?)?;
        let want_w: Vec<f32> = a
            .iter()
            .flat_map(|&i| {
                codebook[i as usize * d..(i as usize + 1) * d]
                    .iter()
                    .map(|&x| x as f32)
            })
            .collect();
        ensure(decoded == want_w, || {
            "decode differs from the codebook rows".into()
        })?;
    }
    Ok(())
}

/// Centroid gradients (mean and sum) against the f64 reference; an unused centroid gets 0.
fn centroid_gradients(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let shape = WeightShape::Linear {
        out_features: 300,
        in_features: 40,
    };
    let (bs, k) = (5u32, 7u32);
    let blocks = shape.numel() / bs as u64;
    let mut rng = Rng(12);
    // Centroid 3 has no block.
    let a: Vec<u32> = (0..blocks)
        .map(|_| [0, 1, 2, 4, 5, 6][rng.below(6) as usize])
        .collect();
    let grad = rng.weights(shape.numel(), 1.0);
    let layer = PqLayer::new(
        shape,
        bs,
        ctx.upload(&rng.weights((k * bs) as u64, 1.0))?,
        ctx.upload(&a)?,
    )?;
    let g = ctx.upload(&grad)?;
    let g64: Vec<f64> = grad.iter().map(|&x| x as f64).collect();
    for reduction in [
        quantnoise::pq::CentroidGrad::Mean,
        quantnoise::pq::CentroidGrad::Sum,
    ] {
        let got = ctx.read_f32(&ctx.pq_centroid_grad(&layer, &g, reduction)?)?;
        let want = cpu::pq::centroid_grad(&g64, &a, bs as usize, k as usize, reduction);
        compare(&got, &want, 1e-5, 1e-5, &[])
            .map_err(|e| format!("{reduction:?}: {}", e.message().unwrap_or_default()))?;
        ensure(
            got[3 * bs as usize..4 * bs as usize]
                .iter()
                .all(|&x| x == 0.0),
            || "unused centroid: gradient not 0".into(),
        )?;
    }
    let short = ctx.upload(&grad[..100])?;
    expect_err(
        ctx,
        ctx.pq_centroid_grad(&layer, &short, Default::default()),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    )
}

/// u8 packing of indices (odd lengths, many windows on the small-window targets) equals the
/// reference, and its bytes are the indices.
fn pack_u8(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let mut rng = Rng(31);
    for n in [1u64, 5, 1023, 70_001] {
        let a: Vec<u32> = (0..n).map(|_| rng.below(256) as u32).collect();
        let packed = ctx.read_u32(&ctx.pack_indices_u8(&ctx.upload(&a)?, 256)?)?;
        ensure(packed == cpu::pq::pack_u8(&a, 256), || {
            format!("n = {n}: packing differs")
        })?;
        let bytes: &[u8] = bytemuck::cast_slice(&packed);
        ensure(
            bytes[..n as usize]
                .iter()
                .zip(&a)
                .all(|(b, i)| *b as u32 == *i),
            || "bytes are not the indices".into(),
        )?;
    }
    let idx = ctx.upload(&[1u32, 2, 3])?;
    expect_err(ctx, ctx.pack_indices_u8(&idx, 257), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "n_centroids",
                ..
            }
        )
    })
}
