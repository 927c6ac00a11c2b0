//! Conformance of the product-quantized matmul family (tiled matmul, LUT matvec, integer path,
//! dense matvec baseline) on every target. The float results are checked against
//! `X · pq_decode(C, I)ᵀ` with the decode done by the existing op ([`Context::pq_decode`]) and
//! the product in f64; the integer accumulators bit-exactly against the integer reference.

mod common;

use common::Rng;
use common::*;
use libtest_mimic::Failed;
use proptest::prelude::*;
use quantnoise::cpu::pq_matmul as reference;
use quantnoise::matmul::{MatmulConfig, Tuning, set_tuning, with_tuning};
use quantnoise::{
    AccessPattern, ActQuant, CodebookFormat, Context, DType, Error, IndexFormat, PqLayer,
    PqMatmulMethod, PqOutput, PqWeight, Tensor, WeightShape,
};

fn main() {
    // No autotuning of the decoded-tile products (every candidate would compile for every
    // shape bucket; on lavapipe that takes many minutes): `decoded_tiles_every_kind_of_config`
    // forces each kind of configuration instead.
    set_tuning(Tuning::Off).expect("valid tuning");
    run(
        &[
            ("pq_matmul_random_shapes", random_shapes),
            ("pq_matmul_codebook_sizes", codebook_sizes),
            ("pq_matvec_table_slabs", table_slabs),
            ("pq_matvec_without_uniform_tables", without_uniform_tables),
            ("decoded_tiles_every_kind_of_config", decoded_tiles_configs),
            ("pq_matmul_int8_bit_exact", int8_bit_exact),
            ("dense_matvec_f32_f16", dense_matvec),
            ("bad_inputs_are_typed_errors", bad_inputs),
        ],
        true,
    )
}

/// `PqMatmulMethod::Tiled` with an f32 codebook runs the dense matmul's kernel: one candidate
/// configuration of each kind (staging, spread blocks, split-K, the broadcast kernel), on a
/// long K (192 and 270: split in up to 12 chunks) with u8 and u16 indices and a block size
/// that is not a multiple of 4 (so that staged vec4s straddle subvectors).
fn decoded_tiles_configs(t: &Target) -> Result<(), Failed> {
    let mut kinds = std::collections::HashSet::new();
    for c in MatmulConfig::CANDIDATES {
        // The broadcast kernel's weight blocks do not fit the 16 KiB windows, and GL's driver
        // compiles its long pipelines for minutes (the matmul tests run it there).
        if !kinds.insert((c.k_fast, c.spread, c.k_split > 1, c.broadcast))
            || (c.broadcast && (t.name.contains("window=") || slow_compile(t)))
        {
            continue;
        }
        for (d, nsub, u16) in [(8u32, 24u64, false), (9, 30, true)] {
            let p = Problem {
                m: 21,
                n: 70,
                d,
                nsub,
                kc: 256,
                u16,
                cb: 0,
                bias: true,
                method: PqMatmulMethod::Tiled,
            };
            with_tuning(Tuning::Fixed(c), || run_problem(t, &p, 31))?
                .map_err(|e| format!("{c}: {}", e.message().unwrap_or_default()))?;
        }
    }
    Ok(())
}

/// One random problem: shapes and formats.
#[derive(Clone, Copy, Debug)]
struct Problem {
    m: u64,
    n: u64,
    d: u32,
    nsub: u64,
    kc: u32,
    u16: bool,
    /// 0: f32, 1: f16, 2: int8.
    cb: u8,
    bias: bool,
    method: PqMatmulMethod,
}

/// Host data of a problem: activations, f32 codebook values (what the stored codebook
/// decodes to), the stored codebook tensor data, indices.
struct Host {
    x: Vec<f32>,
    codebook: Vec<f32>,
    indices: Vec<u32>,
    bias: Vec<f32>,
}

fn make_weight(ctx: &Context, p: &Problem, rng: &mut Rng) -> (PqWeight, Host) {
    let k = p.nsub * p.d as u64;
    let x = rng.weights(p.m * k, 1.0);
    let raw_cb = rng.weights(p.kc as u64 * p.d as u64, 0.5);
    let count = p.n * p.nsub;
    let indices: Vec<u32> = (0..count).map(|_| rng.below(p.kc as u64) as u32).collect();
    let bias = rng.weights(p.n, 1.0);
    let (codebook_t, format, codebook) = match p.cb {
        0 => (ctx.upload(&raw_cb).unwrap(), CodebookFormat::F32, raw_cb),
        1 => {
            let h: Vec<half::f16> = raw_cb.iter().map(|&v| half::f16::from_f32(v)).collect();
            let back = h.iter().map(|v| v.to_f32()).collect();
            (ctx.upload(&h).unwrap(), CodebookFormat::F16, back)
        }
        _ => {
            let (words, scale) = reference::quantize_codebook_int8(&raw_cb, p.d as usize);
            let q = reference::unpack_i8_rows(&words, p.kc as usize, p.d as usize);
            let back = q.iter().map(|&v| v as f32 * scale).collect();
            (
                ctx.upload(&words).unwrap(),
                CodebookFormat::Int8 { scale },
                back,
            )
        }
    };
    let (packed, index_format) = if p.u16 {
        (reference::pack_u16(&indices, p.kc), IndexFormat::U16)
    } else {
        (
            quantnoise::cpu::pq::pack_u8(&indices, p.kc),
            IndexFormat::U8,
        )
    };
    let weight = PqWeight {
        out_features: p.n,
        in_features: k,
        block_size: p.d,
        n_centroids: p.kc,
        codebook: codebook_t,
        codebook_format: format,
        indices: ctx.upload(&packed).unwrap(),
        index_format,
    };
    (
        weight,
        Host {
            x,
            codebook,
            indices,
            bias,
        },
    )
}

/// `X · decode(C, I)ᵀ (+ b)` with the decode by `pq_decode` on the target and the product in
/// f64, plus each output's `Σ |x||w|` (the scale of its rounding error).
fn expected(t: &Target, p: &Problem, h: &Host) -> Result<(Vec<f64>, Vec<f64>), Failed> {
    let k = p.nsub * p.d as u64;
    let layer = PqLayer::new(
        WeightShape::Linear {
            out_features: p.n,
            in_features: k,
        },
        p.d,
        t.ctx.upload(&h.codebook)?,
        t.ctx.upload(&h.indices)?,
    )?;
    let w = t.ctx.read_f32(&t.ctx.pq_decoded(&layer)?)?;
    let (m, n, k) = (p.m as usize, p.n as usize, k as usize);
    let mut want = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut a) = (0.0f64, 0.0f64);
            for q in 0..k {
                let v = h.x[i * k + q] as f64 * w[j * k + q] as f64;
                s += v;
                a += v.abs();
            }
            let b = if p.bias { h.bias[j] as f64 } else { 0.0 };
            want[i * n + j] = s + b;
            mag[i * n + j] = a + b.abs();
        }
    }
    Ok((want, mag))
}

/// `|got − want| ≤ 2e-6 · Σ|x||w| · sqrt-ish(K) + 1e-6`: f32 accumulation (any order).
fn check_close(got: &[f32], want: &[f64], mag: &[f64], k: u64) -> Result<(), Failed> {
    ensure(got.len() == want.len(), || "length".into())?;
    let rel = 2e-7 * (k as f64).sqrt().max(4.0);
    for (i, (&g, (&w, &a))) in got.iter().zip(want.iter().zip(mag)).enumerate() {
        let tol = rel * a + 1e-6;
        ensure((g as f64 - w).abs() <= tol, || {
            format!("output {i}: got {g}, want {w} (tolerance {tol:.3e})")
        })?;
    }
    Ok(())
}

fn run_problem(t: &Target, p: &Problem, seed: u64) -> Result<(), Failed> {
    let ctx = &t.ctx;
    if p.cb == 1 && t.is_gpu() && !ctx.features().shader_f16 {
        return Ok(()); // covered by bad_inputs (Unsupported).
    }
    let mut rng = Rng(seed);
    let (weight, h) = make_weight(ctx, p, &mut rng);
    let x = ctx.upload(&h.x)?;
    let bias = ctx.upload(&h.bias)?;
    let y = poisoned(ctx, p.m * p.n, DType::F32);
    ctx.pq_matmul(&x, p.m, &weight, p.bias.then_some(&bias), &y, p.method)?;
    let (want, mag) = expected(t, p, &h)?;
    check_close(&ctx.read_f32(&y)?, &want, &mag, weight.in_features)
        .map_err(|e| format!("{p:?}: {}", e.message().unwrap_or_default()).into())
}

/// Whether pipelines compile slowly on this target (wgpu's GL backend on llvmpipe: seconds per
/// pipeline variant): the long tests then run a subset of their cases, still covering every
/// kernel and format.
fn slow_compile(t: &Target) -> bool {
    t.name.starts_with("Gl")
}

fn method(i: u8) -> PqMatmulMethod {
    match i {
        0 => PqMatmulMethod::Auto,
        1 => PqMatmulMethod::Tiled,
        2 => PqMatmulMethod::Lut,
        3 => PqMatmulMethod::Rows,
        4 => PqMatmulMethod::LutWith(AccessPattern::Coalesced),
        _ => PqMatmulMethod::LutWith(AccessPattern::PerInvocation),
    }
}

fn random_shapes(t: &Target) -> Result<(), Failed> {
    let strategy = (
        prop::sample::select(vec![1u64, 2, 3, 5, 7, 13, 33, 40, 96]),
        1u64..70,
        prop::sample::select(vec![4u32, 8, 9]),
        1u64..12,
        1u32..300,
        0u8..3,
        0u8..6,
        any::<bool>(),
        any::<u64>(),
    );
    property(24, strategy, |(m, n, d, nsub, kc, cb, meth, bias, seed)| {
        let p = Problem {
            m,
            n,
            d,
            nsub,
            kc,
            u16: kc > 256 || seed % 3 == 0,
            cb,
            bias,
            method: method(meth),
        };
        run_problem(t, &p, seed)
    })
}

/// Kc from 1 to 4096 with u8 and u16 indices, d up to 20, every method, a batch spanning
/// several windows on the small-window targets.
fn codebook_sizes(t: &Target) -> Result<(), Failed> {
    let cases = [
        (1u32, false, 8u32, 3u64),
        (2, false, 4, 5),
        (255, false, 9, 4),
        (256, false, 8, 8),
        (256, true, 8, 8),
        (257, true, 4, 6),
        (1000, true, 9, 3),
        (4096, true, 8, 4),
        // d > 16: the table builds' per-lane centroid arrays.
        (256, false, 20, 3),
    ];
    let mut combo = 0usize;
    for (i, &(kc, u16, d, nsub)) in cases.iter().enumerate() {
        for (m, meth) in [(1, 2u8), (3, 0), (70, 1), (9, 3), (6, 4), (2, 5)] {
            for cb in [0u8, 2] {
                combo += 1;
                if slow_compile(t) && !combo.is_multiple_of(3) {
                    continue;
                }
                let p = Problem {
                    m,
                    n: 37,
                    d,
                    nsub,
                    kc,
                    u16,
                    cb,
                    bias: true,
                    method: method(meth),
                };
                run_problem(t, &p, 1000 + i as u64)?;
            }
        }
    }
    // f16 codebooks (where the target has them).
    let p = Problem {
        m: 5,
        n: 33,
        d: 8,
        nsub: 6,
        kc: 256,
        u16: false,
        cb: 1,
        bias: false,
        method: PqMatmulMethod::Tiled,
    };
    run_problem(t, &p, 7)?;
    run_problem(
        t,
        &Problem {
            m: 1,
            method: PqMatmulMethod::Lut,
            ..p
        },
        8,
    )
}

/// One to three batch rows whose table spans several slabs on lavapipe (there the table of
/// such rows lives in uniform buffers, built and gathered a slab of subvectors at a time,
/// each slab adding to y): slabs bounded by the table's bindings (Kc = 4096, 1000) and by the
/// activations' (d = 16), d not a multiple of 4, u8 and u16 indices, with a bias.
fn table_slabs(t: &Target) -> Result<(), Failed> {
    let cases = [
        (4096u32, true, 8u32, 44u64, 1u64),
        (1000, true, 4, 132, 3),
        (256, false, 9, 8, 2),
        (16, false, 16, 1028, 1),
    ];
    for (i, &(kc, u16, d, nsub, m)) in cases.iter().enumerate() {
        // The last case's rows (64 KiB) exceed the small-window targets' bound window (which
        // use the coalesced pattern, not this path).
        if nsub * d as u64 * 4 > common::SMALL_WINDOW && t.name.contains("window=") {
            continue;
        }
        let p = Problem {
            m,
            n: 67,
            d,
            nsub,
            kc,
            u16,
            cb: 0,
            bias: true,
            method: PqMatmulMethod::Lut,
        };
        run_problem(t, &p, 2000 + i as u64)?;
    }
    Ok(())
}

/// `table_slabs` on a device whose uniform bindings are too small for the uniform-buffer table
/// (`small_uniform_target`): the storage table, the same results.
fn without_uniform_tables(t: &Target) -> Result<(), Failed> {
    // The windowed targets share the adapter: one run per adapter is enough.
    if t.name.contains("window=") {
        return Ok(());
    }
    match small_uniform_target(t)? {
        Some(small) => table_slabs(&small),
        None => Ok(()),
    }
}

fn int8_bit_exact(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let strategy = (
        prop::sample::select(vec![1u64, 2, 5, 31, 33, 70]),
        1u64..50,
        prop::sample::select(vec![4u32, 8, 9]),
        1u64..10,
        1u32..600,
        any::<u64>(),
    );
    let cases = if slow_compile(t) { 4 } else { 12 };
    property(cases, strategy, |(m, n, d, nsub, kc, seed)| {
        let p = Problem {
            m,
            n,
            d,
            nsub,
            kc,
            u16: kc > 256,
            cb: 2,
            bias: true,
            method: PqMatmulMethod::Auto,
        };
        let mut rng = Rng(seed);
        let (weight, h) = make_weight(ctx, &p, &mut rng);
        let k = weight.in_features;
        let (xw, sx, zx) = reference::quantize_activations_int8(&h.x, m as usize, k as usize);
        let xq = ctx.upload(&xw)?;
        let act = ActQuant {
            scale: sx,
            zero_point: zx,
        };
        let raw = poisoned(ctx, m * n, DType::U32);
        ctx.pq_matmul_int8(&xq, m, act, &weight, None, PqOutput::Raw(&raw))?;
        let got: Vec<i32> = ctx.read_u32(&raw)?.iter().map(|&v| v as i32).collect();
        let CodebookFormat::Int8 { scale: sc } = weight.codebook_format else {
            unreachable!()
        };
        let cw: Vec<u32> = t
            .cpu
            .read_u32(&t.cpu.upload(&ctx.read_u32(&weight.codebook)?)?)?;
        let want = reference::pq_matmul_int8_acc(
            &xw,
            m as usize,
            k as usize,
            zx,
            &cw,
            kc as usize,
            d as usize,
            &h.indices,
            n as usize,
        );
        ensure(got == want, || {
            let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            format!(
                "{p:?}: raw accumulator {i}: got {} want {}",
                got[i], want[i]
            )
        })?;
        // Dequantized output with bias.
        let bias = ctx.upload(&h.bias)?;
        let y = poisoned(ctx, m * n, DType::F32);
        ctx.pq_matmul_int8(&xq, m, act, &weight, Some(&bias), PqOutput::Dequantized(&y))?;
        let s = sx as f64 * sc as f64;
        let want_y: Vec<f64> = want
            .iter()
            .enumerate()
            .map(|(i, &a)| a as f64 * s + h.bias[i % n as usize] as f64)
            .collect();
        compare(&ctx.read_f32(&y)?, &want_y, 1e-5, 1e-5, &[])
            .map_err(|e| format!("{p:?}: {}", e.message().unwrap_or_default()).into())
    })
}

fn dense_matvec(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let cases = [
        (1u64, 1u64, 4u64),
        (1, 37, 260),
        (3, 101, 64),
        (2, 9, 1028),
        (5, 33, 68),
        (4, 7, 132),
    ];
    for (i, &(m, n, k)) in cases.iter().enumerate() {
        let mut rng = Rng(50 + i as u64);
        let x = rng.weights(m * k, 1.0);
        let w = rng.weights(n * k, 1.0);
        let b = rng.weights(n, 1.0);
        for f16 in [false, true] {
            if f16 && t.is_gpu() && !ctx.features().shader_f16 {
                continue;
            }
            let wt = upload_as(ctx, &w, if f16 { DType::F16 } else { DType::F32 });
            let wv: Vec<f64> = if f16 {
                w.iter().map(|&v| half::f16::from_f32(v).to_f64()).collect()
            } else {
                w.iter().map(|&v| v as f64).collect()
            };
            let xv: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let bv: Vec<f64> = b.iter().map(|&v| v as f64).collect();
            let want =
                reference::dense_matmul(&xv, &wv, m as usize, n as usize, k as usize, Some(&bv));
            let mag = reference::dense_matmul(
                &xv.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                &wv.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                m as usize,
                n as usize,
                k as usize,
                Some(&bv.iter().map(|v| v.abs()).collect::<Vec<_>>()),
            );
            let y = poisoned(ctx, m * n, DType::F32);
            let xt = ctx.upload(&x)?;
            let bt = ctx.upload(&b)?;
            for layout in [AccessPattern::PerInvocation, AccessPattern::Coalesced] {
                let y = poisoned(ctx, m * n, DType::F32);
                ctx.dense_matvec_with(&xt, m, &wt, n, k, Some(&bt), &y, layout)?;
                check_close(&ctx.read_f32(&y)?, &want, &mag, k)
                    .map_err(|e| format!("m={m} n={n} k={k} f16={f16} {layout:?}: {e:?}"))?;
            }
            ctx.dense_matvec(&xt, m, &wt, n, k, Some(&bt), &y)?;
            check_close(&ctx.read_f32(&y)?, &want, &mag, k)
                .map_err(|e| format!("m={m} n={n} k={k} f16={f16}: {e:?}"))?;
        }
    }
    Ok(())
}

fn weight_with(ctx: &Context, f: impl FnOnce(&mut PqWeight)) -> PqWeight {
    let mut w = PqWeight {
        out_features: 4,
        in_features: 16,
        block_size: 8,
        n_centroids: 4,
        codebook: ctx.upload(&[0.5f32; 32]).unwrap(),
        codebook_format: CodebookFormat::F32,
        indices: ctx.upload(&[0x0302_0100u32, 0x0001_0203]).unwrap(),
        index_format: IndexFormat::U8,
    };
    f(&mut w);
    w
}

fn bad_inputs(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let x = ctx.upload(&[1.0f32; 32])?;
    let y = ctx.empty(8, DType::F32)?;
    let mm = |w: &PqWeight, x: &Tensor, m: u64, y: &Tensor| {
        ctx.pq_matmul(x, m, w, None, y, PqMatmulMethod::Auto)
    };
    // The valid call works.
    let ok = weight_with(ctx, |_| {});
    mm(&ok, &x, 2, &y)?;
    // Shape mismatches: x, y, bias.
    expect_err(ctx, mm(&ok, &x, 3, &y), |e| {
        matches!(e, Error::ShapeMismatch { what: "x", .. })
    })?;
    let y_bad = ctx.empty(9, DType::F32)?;
    expect_err(ctx, mm(&ok, &x, 2, &y_bad), |e| {
        matches!(e, Error::ShapeMismatch { what: "y", .. })
    })?;
    let b_bad = ctx.upload(&[0.0f32; 3])?;
    expect_err(
        ctx,
        ctx.pq_matmul(&x, 2, &ok, Some(&b_bad), &y, PqMatmulMethod::Auto),
        |e| matches!(e, Error::ShapeMismatch { what: "bias", .. }),
    )?;
    // K not a multiple of d.
    let w = weight_with(ctx, |w| w.in_features = 12);
    expect_err(ctx, mm(&w, &x, 2, &y), |e| {
        matches!(e, Error::BlockSizeMismatch { .. })
    })?;
    // Index count wrong.
    let w = weight_with(ctx, |w| w.indices = ctx.upload(&[0u32; 3]).unwrap());
    expect_err(ctx, mm(&w, &x, 2, &y), |e| {
        matches!(
            e,
            Error::ShapeMismatch {
                what: "indices",
                ..
            }
        )
    })?;
    // Kc > 256 with u8, Kc > 65536 with u16.
    let w = weight_with(ctx, |w| {
        w.n_centroids = 257;
        w.codebook = ctx.upload(&vec![0.5f32; 257 * 8]).unwrap();
    });
    expect_err(ctx, mm(&w, &x, 2, &y), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "n_centroids",
                ..
            }
        )
    })?;
    let w = weight_with(ctx, |w| {
        w.n_centroids = 65537;
        w.index_format = IndexFormat::U16;
        w.block_size = 1;
        w.in_features = 16;
        w.codebook = ctx.upload(&vec![0.5f32; 65537]).unwrap();
        w.indices = ctx.upload(&[0u32; 32]).unwrap();
    });
    expect_err(ctx, mm(&w, &x, 2, &y), |e| {
        matches!(
            e,
            Error::InvalidArgument {
                name: "n_centroids",
                ..
            }
        )
    })?;
    // Codebook scale ≤ 0 (and NaN).
    for scale in [0.0f32, -1.0, f32::NAN] {
        let w = weight_with(ctx, |w| {
            w.codebook_format = CodebookFormat::Int8 { scale };
            w.codebook = ctx.upload(&[0u32; 8]).unwrap();
        });
        expect_err(ctx, mm(&w, &x, 2, &y), |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    name: "codebook scale",
                    ..
                }
            )
        })?;
    }
    // Wrong codebook length / dtype.
    let w = weight_with(ctx, |w| w.codebook = ctx.upload(&[0.5f32; 31]).unwrap());
    expect_err(ctx, mm(&w, &x, 2, &y), |e| {
        matches!(
            e,
            Error::ShapeMismatch {
                what: "codebook",
                ..
            }
        )
    })?;
    let w = weight_with(ctx, |w| w.codebook_format = CodebookFormat::F16);
    expect_err(ctx, mm(&w, &x, 2, &y), |e| {
        matches!(e, Error::DTypeMismatch { .. })
    })?;
    // f16 where the adapter lacks it.
    if t.is_gpu() && !ctx.features().shader_f16 {
        let w = weight_with(ctx, |w| {
            w.codebook_format = CodebookFormat::F16;
            w.codebook = ctx.upload(&[half::f16::ONE; 32]).unwrap();
        });
        expect_err(ctx, mm(&w, &x, 2, &y), |e| {
            matches!(e, Error::Unsupported { .. })
        })?;
        let w16 = ctx.upload(&[half::f16::ONE; 16])?;
        let x4 = ctx.upload(&[1.0f32; 4])?;
        let y4 = ctx.empty(4, DType::F32)?;
        expect_err(ctx, ctx.dense_matvec(&x4, 1, &w16, 4, 4, None, &y4), |e| {
            matches!(e, Error::Unsupported { .. })
        })?;
    }
    // Aliasing output.
    expect_err(ctx, mm(&ok, &x, 1, &x.clone()), |e| {
        matches!(e, Error::ShapeMismatch { .. } | Error::Aliasing { .. })
    })?;
    // Integer path: float codebook, bad zero point, bad activation scale.
    let xq = ctx.upload(&[0u32; 8])?;
    let act = ActQuant {
        scale: 0.1,
        zero_point: 3,
    };
    expect_err(
        ctx,
        ctx.pq_matmul_int8(&xq, 2, act, &ok, None, PqOutput::Dequantized(&y)),
        |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    name: "codebook_format",
                    ..
                }
            )
        },
    )?;
    let w8 = weight_with(ctx, |w| {
        w.codebook_format = CodebookFormat::Int8 { scale: 0.01 };
        w.codebook = ctx.upload(&[0x0102_03ffu32; 8]).unwrap();
    });
    ctx.pq_matmul_int8(&xq, 2, act, &w8, None, PqOutput::Dequantized(&y))?;
    for bad in [
        ActQuant {
            scale: 0.0,
            zero_point: 0,
        },
        ActQuant {
            scale: 1.0,
            zero_point: 128,
        },
    ] {
        expect_err(
            ctx,
            ctx.pq_matmul_int8(&xq, 2, bad, &w8, None, PqOutput::Dequantized(&y)),
            |e| matches!(e, Error::InvalidArgument { .. }),
        )?;
    }
    // Dense: k not a multiple of 4.
    let w3 = ctx.upload(&[1.0f32; 6])?;
    let x3 = ctx.upload(&[1.0f32; 3])?;
    let y2 = ctx.empty(2, DType::F32)?;
    expect_err(ctx, ctx.dense_matvec(&x3, 1, &w3, 2, 3, None, &y2), |e| {
        matches!(e, Error::InvalidArgument { name: "k", .. })
    })
}
