//! Bench cases of the int8 family ([`crate::int8`]):
//!
//! * `matmul_int8_dp4a_{S}` and `matmul_int8_polyfill_{S}`: an (S, S) × (S, S)ᵀ int8 matmul
//!   with the f32 epilogue (per-channel weight scales, a bias), S = 1024 (512 with
//!   [`BenchOptions::quick`]), with the context's default kernel ([`MatmulKernel::auto`]:
//!   direct on CPU adapters, tiled elsewhere); `matmul_int8_dp4a_{tiled|direct}_{S}` runs the
//!   other kernel. `flops` counts **integer** operations, `2·S³` (a multiply-add
//!   counts as two), so the report's GFLOP/s column is giga integer ops per second for these
//!   cases, compared with the f32 FMA ceiling. Checked against the f64 reference (exact i64
//!   accumulators) on 64 rows spread over the output.
//! * `quantize_int8_{R}x{C}`: per-tensor int8 quantization of the report's f32 weight shape
//!   (4096×4096, 1024×1024 with `quick`); `bytes` = 4 read + 1 written per value. Checked
//!   against the reference on every value (one code apart allowed only at f32 rounding ties).

use super::{BenchOptions, Case, CaseKind};
use crate::Context;
use crate::cpu;
use crate::error::Result;
use crate::int8::{MATMUL_WGN, MatmulKernel, MatmulTiles, MatmulVariant, QType};
use crate::observer::QParams;
use crate::tensor::DType;

/// Deterministic bytes in `[−128, 127]` (xorshift).
fn bytes(n: u64, seed: u64) -> Vec<i32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as i32 - 128
        })
        .collect()
}

/// Rows of the matmul output checked against the reference.
const CHECKED_ROWS: u64 = 64;

/// The int8 cases selected by `options`, owning their tensors.
pub(super) fn cases<'a>(ctx: &'a Context, options: &BenchOptions) -> Result<Vec<Case<'a>>> {
    let mut out = Vec::new();
    let s: u64 = if options.quick { 512 } else { 1024 };
    // The context's default kernel (MatmulKernel::auto) for both variants, and the other
    // kernel (named in the case) for dp4a.
    let auto = MatmulKernel::auto(ctx);
    let (other, other_tag) = match auto {
        MatmulKernel::Direct { .. } => (MatmulKernel::Tiled(MatmulTiles::default()), "tiled"),
        MatmulKernel::Tiled(_) => (MatmulKernel::Direct { wgn: MATMUL_WGN }, "direct"),
    };
    let names: Vec<(MatmulVariant, MatmulKernel, String)> = [
        (MatmulVariant::Dp4a, auto, format!("matmul_int8_dp4a_{s}")),
        (
            MatmulVariant::Polyfill,
            auto,
            format!("matmul_int8_polyfill_{s}"),
        ),
        (
            MatmulVariant::Dp4a,
            other,
            format!("matmul_int8_dp4a_{other_tag}_{s}"),
        ),
    ]
    .into_iter()
    .filter(|(_, _, name)| options.selects(name))
    .collect();
    if !names.is_empty() {
        let (m, n, k) = (s, s, s);
        let xq = bytes(m * k, 11);
        let wq = bytes(n * k, 12);
        let (sx, zx) = (0.02f32, -3);
        let sw: Vec<f32> = (0..n).map(|i| 0.001 + (i % 7) as f32 * 1e-4).collect();
        let bias: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = ctx.upload_quantized(&xq, m, k, QType::I8, &QParams::per_tensor(sx, zx))?;
        let w = ctx.int8_linear(ctx.upload_quantized(
            &wq,
            n,
            k,
            QType::I8,
            &QParams {
                scale: sw.clone(),
                zero_point: vec![0; n as usize],
            },
        )?)?;
        let b = ctx.upload(&bias)?;
        let y = ctx.empty(m * n, DType::F32)?;
        // Reference on CHECKED_ROWS rows spread over the output.
        let rows: Vec<u64> = (0..CHECKED_ROWS.min(m))
            .map(|i| i * m / CHECKED_ROWS.min(m))
            .collect();
        let b64: Vec<f64> = bias.iter().map(|&v| v as f64).collect();
        let want: Vec<(u64, Vec<f64>, Vec<i64>)> = rows
            .iter()
            .map(|&r| {
                let xr = &xq[(r * k) as usize..((r + 1) * k) as usize];
                let acc = cpu::int8::matmul_acc(xr, zx, &wq, k as usize);
                let y = cpu::int8::matmul(&acc, n as usize, sx, &sw, Some(&b64));
                (r, y, acc)
            })
            .collect();
        let shared = std::rc::Rc::new((x, w, b, y, want, sw, b64));
        for (variant, kernel, name) in names {
            let (d1, d2) = (shared.clone(), shared.clone());
            out.push(Case {
                name,
                kind: CaseKind::Device,
                bytes: m * k + n * k + m * n * 4,
                flops: Some(MatmulVariant::ops(m, n, k)),
                items: None,
                op: Box::new(move || {
                    let (x, w, b, y, ..) = &*d1;
                    ctx.int8_matmul_with(x, w, Some(b), y, variant, kernel)
                }),
                check: Box::new(move || {
                    let (x, w, b, y, want, sw, b64) = &*d2;
                    ctx.write(y, &vec![f32::NAN; (m * n) as usize])?;
                    ctx.int8_matmul_with(x, w, Some(b), y, variant, kernel)?;
                    let got = ctx.read_f32(y)?;
                    let mut max_rel = 0.0f64;
                    for (r, yr, acc) in want {
                        for c in 0..n as usize {
                            let g = got[(*r * n) as usize + c] as f64;
                            let scale =
                                (sx as f64 * sw[c] as f64 * acc[c] as f64).abs() + b64[c].abs();
                            let err = (g - yr[c]).abs();
                            if err.is_nan() || err > 2f64.powi(-21) * scale {
                                return Ok(Err(format!("y[{r}, {c}] = {g}, reference {}", yr[c])));
                            }
                            max_rel = max_rel.max(err / scale.max(1e-30));
                        }
                    }
                    Ok(Ok(format!(
                        "{kernel:?}: {} rows x {n} within 2^-21 relative of the f64 reference \
                         (exact i64 accumulators), max rel err {max_rel:.2e}; flops = integer \
                         ops 2*M*N*K",
                        want.len()
                    )))
                }),
            });
        }
    }

    let (rows, cols) = if options.quick {
        (1024u64, 1024u64)
    } else {
        (4096, 4096)
    };
    let name = format!("quantize_int8_{rows}x{cols}");
    if options.selects(&name) {
        let xs = super::values(rows * cols, 21);
        let q = QParams::per_tensor(1.5 / 255.0, 0);
        let x = ctx.upload(&xs)?;
        let qt = ctx.quantize(&x, rows, cols, QType::I8, &q)?;
        let data = std::rc::Rc::new((x, qt, xs));
        let (d1, d2) = (data.clone(), data);
        out.push(Case {
            name,
            kind: CaseKind::Device,
            bytes: rows * cols * 5,
            flops: None,
            items: None,
            op: Box::new(move || {
                let (x, qt, _) = &*d1;
                ctx.quantize_into(x, qt)
            }),
            check: Box::new(move || {
                let (x, qt, xs) = &*d2;
                ctx.write(&qt.data, &vec![0xDEAD_BEEFu32; qt.data.len() as usize])?;
                ctx.quantize_into(x, qt)?;
                let got = ctx.read_quantized(qt)?;
                let x64: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
                let want = cpu::int8::quantize(&x64, cols as usize, QType::I8, &qt.qparams);
                let s = qt.qparams.scale[0] as f64;
                let mut ties = 0;
                for i in 0..got.len() {
                    if got[i] != want[i] {
                        let t = x64[i] / s;
                        let near_tie = ((t - t.floor()) - 0.5).abs() < 1e-5 * t.abs().max(1.0);
                        if !(near_tie && (got[i] - want[i]).abs() == 1) {
                            return Ok(Err(format!("q[{i}] = {}, reference {}", got[i], want[i])));
                        }
                        ties += 1;
                    }
                }
                Ok(Ok(format!(
                    "{} codes equal to the reference ({ties} one code apart at f32 rounding ties)",
                    got.len()
                )))
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quick cases validate on every adapter found (none: nothing to check), and the
    /// filter selects them by name.
    #[test]
    fn quick_cases_validate() {
        let options = BenchOptions {
            quick: true,
            ..Default::default()
        };
        for ctx in Context::all_adapters(crate::BackendChoice::from_env().unwrap(), None) {
            let ctx = ctx.unwrap();
            let cases = cases(&ctx, &options).unwrap();
            let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            for want in [
                "matmul_int8_dp4a_512",
                "matmul_int8_polyfill_512",
                "quantize_int8_1024x1024",
            ] {
                assert!(names.contains(&want), "{names:?}");
            }
            assert_eq!(names.len(), 4);
            for c in &cases {
                match (c.check)() {
                    Ok(Ok(_)) => {}
                    other => panic!("{} on {}: {other:?}", c.name, ctx.describe()),
                }
            }
            let only = BenchOptions {
                filter: vec!["quantize_int8".into()],
                ..options.clone()
            };
            let filtered = super::cases(&ctx, &only).unwrap();
            assert_eq!(filtered.len(), 1);
        }
    }

    #[test]
    fn bytes_are_int8() {
        let b = bytes(10_000, 3);
        assert!(b.iter().all(|v| (-128..=127).contains(v)));
        assert!(b.iter().any(|&v| v < -100) && b.iter().any(|&v| v > 100));
    }
}
