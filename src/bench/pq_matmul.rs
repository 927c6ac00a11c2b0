//! Bench cases of the product-quantized matmul family ([`crate::pq_matmul`]): compressed
//! inference with a 4096 × 4096 Linear weight (1024 × 1024 with [`BenchOptions::quick`]),
//! `d = 8`, `Kc = 256`, u8 indices, against the dense f32 (and f16) matvec of the same
//! (decoded) weight.
//!
//! Every case rotates among enough weight buffers that no cache holds its weights between
//! two ops (at full size at least 128 MiB of weights per case, 4× a 32 MiB last-level cache):
//! [`PQ_ROTATION`] index buffers for the PQ cases (2 MiB each), [`DENSE_ROTATION`] f32 weights
//! (64 MiB each), [`DENSE_F16_ROTATION`] f16 weights (32 MiB each). Every op is checked first
//! on 256 sampled outputs against the f64 product of the decoded weight (the integer cases:
//! against the exact integer accumulator). The validation line also reports the bytes of
//! weights read per output.
//!
//! Cases (`{n}` = 4096 or 1024): `pq_matvec_lut_{n}_b1`, `dense_matvec_f32_{n}_b1`,
//! `dense_matvec_f16_{n}_b1` (with shader-f16; these three in the context's
//! [`AccessPattern`]), the same LUT and f16 cases in each pattern
//! (`pq_matvec_lut_perrow_{n}_b1`, `pq_matvec_lut_split_{n}_b1`, `dense_matvec_f16_perrow_…`,
//! `dense_matvec_f16_split_…`), `pq_matvec_lut_{n}_b16`, `pq_matmul_{n}_b16`,
//! `pq_matmul_{n}_b32` and `pq_matmul_{n}_b512` ([`PqMatmulMethod::Auto`]: on GPUs the
//! decoded-tile matmul at all three; on CPU-type adapters the LUT at 16 and 32 and, at 512, the
//! decoded tiles where the device has 64 KiB uniform bindings), `pq_matmul_rows_{n}_b512`
//! (the rows kernel), `pq_matmul_tiled_{n}_b512` (the dense matmul with decoded weight tiles; the
//! validation names its configuration), `dense_matvec_f32_{n}_b16` (the dense matrix–vector kernel on 16 rows, reading the
//! weight once per 4 rows: not a tiled matmul; the dense matmul comparison is the `matmul`
//! family's), `pq_matmul_int8_{n}_b16`, `pq_matmul_int8_{n}_b512` (the integer path).

use std::cell::Cell;
use std::rc::Rc;

use half::f16;

use super::{BenchOptions, Case, CaseKind};
use crate::error::{Error, Result};
use crate::matmul::{LinearShape, Product, config_in_use};
use crate::pq_matmul::{
    ActQuant, CodebookFormat, IndexFormat, PqKernel, PqMatmulMethod, PqOutput, PqWeight, pq_kernel,
};
use crate::runtime::shaders::Family;
use crate::tensor::{DType, Tensor};
use crate::{AccessPattern, Context};

/// Index buffers the PQ cases rotate among.
pub const PQ_ROTATION: usize = 64;
/// f32 weights the dense f32 cases rotate among.
pub const DENSE_ROTATION: usize = 3;
/// f16 weights the dense f16 case rotates among.
pub const DENSE_F16_ROTATION: usize = 4;
const D: u32 = 8;
const KC: u32 = 256;
/// Outputs checked per case.
const CHECKED: usize = 256;

/// The float PQ cases: base name, batch, method.
const PQ_FLOAT_CASES: [(&str, usize, PqMatmulMethod); 9] = [
    ("pq_matvec_lut", 1usize, PqMatmulMethod::Lut),
    // Both layouts of the sums, whatever the adapter's default.
    (
        "pq_matvec_lut_perrow",
        1,
        PqMatmulMethod::LutWith(AccessPattern::PerInvocation),
    ),
    (
        "pq_matvec_lut_split",
        1,
        PqMatmulMethod::LutWith(AccessPattern::Coalesced),
    ),
    ("pq_matvec_lut", 16, PqMatmulMethod::Lut),
    ("pq_matmul", 16, PqMatmulMethod::Auto),
    ("pq_matmul", 32, PqMatmulMethod::Auto),
    ("pq_matmul", 512, PqMatmulMethod::Auto),
    ("pq_matmul_rows", 512, PqMatmulMethod::Rows),
    ("pq_matmul_tiled", 512, PqMatmulMethod::Tiled),
];

/// The dense matrix–vector cases: base name, batch, f16 weights, access pattern.
const DENSE_CASES: [(&str, usize, bool, AccessPattern); 5] = [
    ("dense_matvec_f32", 1usize, false, AccessPattern::Auto),
    ("dense_matvec_f16", 1, true, AccessPattern::Auto),
    (
        "dense_matvec_f16_perrow",
        1,
        true,
        AccessPattern::PerInvocation,
    ),
    ("dense_matvec_f16_split", 1, true, AccessPattern::Coalesced),
    ("dense_matvec_f32", 16, false, AccessPattern::Auto),
];

/// Batches of the integer cases (`pq_matmul_int8`).
const INT8_BATCHES: [usize; 2] = [16, 512];

/// Host data shared by the cases: activations, codebook, indices, decoded weight.
struct HostData {
    n: usize,
    x: Vec<f32>,
    codebook: Vec<f32>,
    w: Vec<f32>,
}

/// Deterministic values in `[−1, 1)`.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    super::pq_values(n as u64, seed)
}

/// `(row, col)` pairs spread over `m × n`.
fn sampled(m: usize, n: usize) -> Vec<(usize, usize)> {
    (0..CHECKED)
        .map(|i| ((i * 7919) % m, (i * 104_729 + i / 3) % n))
        .collect()
}

/// Checks sampled outputs of `y` (`m × n`) against `x · wᵀ` in f64 (f32 accumulation bound).
fn check_sampled(
    y: &[f32],
    h: &HostData,
    m: usize,
    w: &[f32],
    weight_bytes_per_output: f64,
) -> std::result::Result<String, String> {
    let (n, k) = (h.n, h.n);
    let mut max_err = 0.0f64;
    for (i, j) in sampled(m, n) {
        let (mut s, mut a) = (0.0f64, 0.0f64);
        for t in 0..k {
            let v = h.x[i * k + t] as f64 * w[j * k + t] as f64;
            s += v;
            a += v.abs();
        }
        let tol = 2e-7 * (k as f64).sqrt() * a + 1e-6;
        let err = (y[i * n + j] as f64 - s).abs();
        if err.is_nan() || err > tol {
            return Err(format!(
                "output ({i}, {j}): got {}, expected {s} (tolerance {tol:.2e})",
                y[i * n + j]
            ));
        }
        max_err = max_err.max(err);
    }
    Ok(format!(
        "{CHECKED} sampled outputs vs the f64 product: max |err| {max_err:.2e}; weight bytes \
         read per output: {weight_bytes_per_output:.3}"
    ))
}

/// Round-robin over `n` items.
fn next(counter: &Cell<usize>, n: usize) -> usize {
    let i = counter.get();
    counter.set(i + 1);
    i % n
}

/// The cases of the family selected by `options` (nothing is allocated for the others).
pub(super) fn cases<'a>(ctx: &'a Context, options: &BenchOptions) -> Result<Vec<Case<'a>>> {
    let n = if options.quick { 1024usize } else { 4096 };
    let f16_ok = ctx.features().shader_f16;
    let name = |base: &str, b: usize| format!("{base}_{n}_b{b}");
    let sel = |base: &str, b: usize| options.selects(&name(base, b));
    let pq_float_selected = PQ_FLOAT_CASES.iter().any(|c| sel(c.0, c.1));
    let any = pq_float_selected
        || DENSE_CASES.iter().any(|c| sel(c.0, c.1))
        || INT8_BATCHES.iter().any(|&m| sel("pq_matmul_int8", m));
    if !any {
        return Ok(Vec::new());
    }
    let max_m = 512;
    let nsub = n / D as usize;
    let x = uniform(max_m * n, 0x51);
    let codebook: Vec<f32> = uniform(KC as usize * D as usize, 0x52)
        .iter()
        .map(|v| v * 0.1)
        .collect();
    let idx: Vec<u32> = super::pq_values((n * nsub) as u64, 0x53)
        .iter()
        .map(|&v| (((v + 1.0) * 0.5 * KC as f32) as u32).min(KC - 1))
        .collect();
    let w = crate::cpu::pq::decode(&codebook, &idx, D as usize);
    let packed = crate::cpu::pq::pack_u8(&idx, KC);
    let host = Rc::new(HostData { n, x, codebook, w });
    let x_t = Rc::new(ctx.upload(&host.x)?);
    let weight_of = |indices: Tensor, codebook: Tensor, format| PqWeight {
        out_features: n as u64,
        in_features: n as u64,
        block_size: D,
        n_centroids: KC,
        codebook,
        codebook_format: format,
        indices,
        index_format: IndexFormat::U8,
    };
    let pq_float = if pq_float_selected {
        let cb = ctx.upload(&host.codebook)?;
        let ws: Result<Vec<PqWeight>> = (0..PQ_ROTATION)
            .map(|_| {
                Ok(weight_of(
                    ctx.upload(&packed)?,
                    cb.clone(),
                    CodebookFormat::F32,
                ))
            })
            .collect();
        Some(Rc::new(ws?))
    } else {
        None
    };
    let mut out: Vec<Case<'a>> = Vec::new();
    let weight_bytes = (n * nsub) as u64 + KC as u64 * D as u64 * 4;
    let nn = n as u64;

    // PQ float cases.
    for &(base, m, method) in &PQ_FLOAT_CASES {
        if !sel(base, m) {
            continue;
        }
        let ws = pq_float.clone().expect("built when selected");
        let x = ctx.upload(&host.x[..m * n])?;
        let y = Rc::new(ctx.empty((m * n) as u64, DType::F32)?);
        let counter = Cell::new(0usize);
        let (ws2, y2, h) = (ws.clone(), y.clone(), host.clone());
        let x2 = x.clone();
        // The kernel the library runs here. The rows kernel reads the indices once per
        // workgroup of up to 64 batch rows, the 32 × 32 tiles once per 32 rows, the LUT gather
        // once per group of 4 batch rows (1 row below batch 4); the decoded tiles once per row
        // tile of the configuration that ran (known after the check).
        let g = ctx
            .gpu()
            .ok_or_else(|| Error::NoAdapter("the PQ cases measure a device".into()))?;
        let kernel = pq_kernel(g, m as u64, &ws[0], method);
        let decoded = kernel == PqKernel::Decoded;
        let tiled = kernel != PqKernel::Lut;
        let reads = match kernel {
            PqKernel::Lut if m >= 4 => m.div_ceil(4),
            PqKernel::Lut => m,
            PqKernel::Tiled32 => m.div_ceil(32),
            _ => m.div_ceil(64),
        };
        let mm = m as u64;
        out.push(Case {
            name: name(base, m),
            kind: CaseKind::Device,
            bytes: weight_bytes + 4 * mm * nn * 2,
            flops: tiled.then_some(2 * mm * nn * nn),
            items: Some((mm * nn, "outputs")),
            op: Box::new(move || {
                let w = &ws[next(&counter, PQ_ROTATION)];
                ctx.pq_matmul(&x, mm, w, None, &y, method)
            }),
            check: Box::new(move || {
                ctx.write(&y2, &vec![f32::NAN; m * n])?;
                ctx.pq_matmul(&x2, mm, &ws2[0], None, &y2, method)?;
                let shape = LinearShape::new(1, mm, nn, nn);
                let config = decoded
                    .then(|| {
                        config_in_use(ctx, Family::PqLinear, Product::Forward, shape, DType::F32)
                    })
                    .flatten();
                let reads = config.map_or(reads, |c| m.div_ceil(c.tile_m() as usize));
                let per_output = weight_bytes as f64 * reads as f64 / (m * n) as f64;
                let kernel = config.map_or(String::new(), |c| format!("; kernel: {c}"));
                Ok(check_sampled(&ctx.read_f32(&y2)?, &h, m, &h.w, per_output)
                    .map(|summary| summary + &kernel))
            }),
        });
    }

    // Dense f32 / f16 matvec.
    for &(base, m, half, layout) in &DENSE_CASES {
        if !sel(base, m) || (half && !f16_ok) {
            continue;
        }
        let (rot, ws, w_host): (usize, Vec<Tensor>, Vec<f32>) = if half {
            let w16: Vec<f16> = host.w.iter().map(|&v| f16::from_f32(v)).collect();
            let back = w16.iter().map(|v| v.to_f32()).collect();
            let ws: Result<Vec<Tensor>> =
                (0..DENSE_F16_ROTATION).map(|_| ctx.upload(&w16)).collect();
            (DENSE_F16_ROTATION, ws?, back)
        } else {
            let ws: Result<Vec<Tensor>> =
                (0..DENSE_ROTATION).map(|_| ctx.upload(&host.w)).collect();
            (DENSE_ROTATION, ws?, host.w.clone())
        };
        let ws = Rc::new(ws);
        let x = ctx.upload(&host.x[..m * n])?;
        let y = Rc::new(ctx.empty((m * n) as u64, DType::F32)?);
        let counter = Cell::new(0usize);
        let (ws2, y2, h, x2) = (ws.clone(), y.clone(), host.clone(), x.clone());
        let elem = if half { 2 } else { 4 };
        let mm = m as u64;
        let reads = if m >= 4 { mm.div_ceil(4) } else { mm };
        out.push(Case {
            name: name(base, m),
            kind: CaseKind::Device,
            // One weight read per group of 4 batch rows (dense_matvec's MB = 4 above 3 rows).
            bytes: reads * nn * nn * elem + 4 * mm * nn * 2,
            flops: None,
            items: Some((mm * nn, "outputs")),
            op: Box::new(move || {
                let w = &ws[next(&counter, rot)];
                ctx.dense_matvec_with(&x, mm, w, nn, nn, None, &y, layout)
            }),
            check: Box::new(move || {
                ctx.write(&y2, &vec![f32::NAN; m * n])?;
                ctx.dense_matvec_with(&x2, mm, &ws2[0], nn, nn, None, &y2, layout)?;
                Ok(check_sampled(
                    &ctx.read_f32(&y2)?,
                    &h,
                    m,
                    &w_host,
                    (reads * nn * elem) as f64 / mm as f64,
                ))
            }),
        });
    }
    drop(x_t);

    // Integer path.
    for m in INT8_BATCHES {
        if !sel("pq_matmul_int8", m) {
            continue;
        }
        let (cq, sc) = crate::cpu::pq_matmul::quantize_codebook_int8(&host.codebook, D as usize);
        let cq_t = ctx.upload(&cq)?;
        let ws: Result<Vec<PqWeight>> = (0..PQ_ROTATION)
            .map(|_| {
                Ok(weight_of(
                    ctx.upload(&packed)?,
                    cq_t.clone(),
                    CodebookFormat::Int8 { scale: sc },
                ))
            })
            .collect();
        let ws = Rc::new(ws?);
        let (xw, sx, zx) = crate::cpu::pq_matmul::quantize_activations_int8(&host.x[..m * n], m, n);
        let act = ActQuant {
            scale: sx,
            zero_point: zx,
        };
        let xq = ctx.upload(&xw)?;
        let y = Rc::new(ctx.empty((m * n) as u64, DType::F32)?);
        let counter = Cell::new(0usize);
        let (ws2, y2, xq2) = (ws.clone(), y.clone(), xq.clone());
        let xi = crate::cpu::pq_matmul::unpack_i8_rows(&xw, m, n);
        let ci = crate::cpu::pq_matmul::unpack_i8_rows(&cq, KC as usize, D as usize);
        let idx2 = idx.clone();
        let mm = m as u64;
        let per_output = (weight_bytes - KC as u64 * D as u64 * 3) as f64 * m.div_ceil(32) as f64
            / (m * n) as f64;
        out.push(Case {
            name: name("pq_matmul_int8", m),
            kind: CaseKind::Device,
            bytes: weight_bytes + mm * nn + 4 * mm * nn,
            flops: Some(2 * mm * nn * nn),
            items: Some((mm * nn, "outputs")),
            op: Box::new(move || {
                let w = &ws[next(&counter, PQ_ROTATION)];
                ctx.pq_matmul_int8(&xq, mm, act, w, None, PqOutput::Dequantized(&y))
            }),
            check: Box::new(move || {
                ctx.write(&y2, &vec![f32::NAN; m * n])?;
                ctx.pq_matmul_int8(&xq2, mm, act, &ws2[0], None, PqOutput::Dequantized(&y2))?;
                let got = ctx.read_f32(&y2)?;
                let s = sx as f64 * sc as f64;
                let mut max_err = 0.0f64;
                for (i, j) in sampled(m, n) {
                    let mut acc = 0i64;
                    for t in 0..n {
                        let c = ci
                            [idx2[j * nsub + t / D as usize] as usize * D as usize + t % D as usize]
                            as i64;
                        acc += (xi[i * n + t] as i64 - zx as i64) * c;
                    }
                    let want = acc as f64 * s;
                    let err = (got[i * n + j] as f64 - want).abs();
                    if err.is_nan() || err > 1e-5 * want.abs() + 1e-6 {
                        return Ok(Err(format!(
                            "output ({i}, {j}): got {}, expected {want}",
                            got[i * n + j]
                        )));
                    }
                    max_err = max_err.max(err);
                }
                Ok(Ok(format!(
                    "{CHECKED} sampled outputs vs the exact integer accumulator: max |err| \
                     {max_err:.2e}; weight bytes read per output: {per_output:.3}"
                )))
            }),
        });
    }
    Ok(out)
}
