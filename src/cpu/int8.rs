//! Reference of the int8 family ([`crate::int8`]): quantization in f64, the matmul's
//! accumulators in exact integer (i64) arithmetic, its dequantizing epilogue in f64.

use crate::int8::QType;
use crate::observer::QParams;

/// The parameter index of row `r`: 0 per tensor, `r` per channel.
fn index(q: &QParams, r: usize) -> usize {
    if q.is_per_channel() { r } else { 0 }
}

/// Quantizes a row-major (rows, cols) matrix: `q = clamp(round_half_even(x / s + z), lo, hi)`
/// with the type's range `[lo, hi]` (saturating; ±∞ saturate, NaN gives the zero-point).
pub fn quantize(x: &[f64], cols: usize, qtype: QType, q: &QParams) -> Vec<i32> {
    let (lo, hi) = qtype.range();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let e = index(q, i / cols);
            let z = q.zero_point[e];
            if v.is_nan() {
                return z;
            }
            (v / q.scale[e] as f64 + z as f64)
                .round_ties_even()
                .clamp(lo as f64, hi as f64) as i32
        })
        .collect()
}

/// Dequantizes: `x = s · (q − z)`.
pub fn dequantize(values: &[i32], cols: usize, q: &QParams) -> Vec<f64> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let e = index(q, i / cols);
            q.scale[e] as f64 * (v - q.zero_point[e]) as f64
        })
        .collect()
}

/// Packed u32 words per row of `cols` values: `4 · ceil(cols / 16)` (rows are whole
/// `vec4<u32>`s).
pub fn words_per_row(cols: usize) -> usize {
    4 * cols.div_ceil(16)
}

/// Packs a row-major (rows, cols) matrix of 8-bit values: each row in [`words_per_row`]
/// words, element `c` in byte `c % 4` (little-endian) of word `c / 4`, zero bytes past `cols`.
pub fn pack(values: &[i32], cols: usize) -> Vec<u32> {
    let wpr = words_per_row(cols);
    let rows = values.len().checked_div(cols).unwrap_or(0);
    let mut out = vec![0u32; rows * wpr];
    for (i, &v) in values.iter().enumerate() {
        let (r, c) = (i / cols, i % cols);
        out[r * wpr + c / 4] |= ((v as u32) & 0xFF) << (8 * (c % 4));
    }
    out
}

/// Unpacks [`pack`]'s layout back to values of `qtype` (padding bytes are dropped).
pub fn unpack(words: &[u32], rows: usize, cols: usize, qtype: QType) -> Vec<i32> {
    let wpr = words_per_row(cols);
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let b = (words[r * wpr + c / 4] >> (8 * (c % 4))) & 0xFF;
            match qtype {
                QType::I8 => b as u8 as i8 as i32,
                QType::U8 => b as i32,
            }
        })
        .collect()
}

/// The matmul's accumulators: `acc[m, n] = Σ_k (x[m, k] − zx) · w[n, k]` for an (M, K)
/// activation matrix `x` with zero-point `zx` and an (N, K) weight matrix `w`, exactly (i64).
pub fn matmul_acc(x: &[i32], zx: i32, w: &[i32], k: usize) -> Vec<i64> {
    let m = x.len().checked_div(k).unwrap_or(0);
    let n = w.len().checked_div(k).unwrap_or(0);
    let mut out = Vec::with_capacity(m * n);
    for xr in x.chunks(k).take(m) {
        for wr in w.chunks(k).take(n) {
            out.push(
                xr.iter()
                    .zip(wr)
                    .map(|(&a, &b)| (a as i64 - zx as i64) * b as i64)
                    .sum(),
            );
        }
    }
    out
}

/// The matmul's output in f64: `y[m, n] = sx · sw[n] · acc[m, n] + b[n]` (`sw` one scale per
/// output channel, or one for all).
pub fn matmul(acc: &[i64], n: usize, sx: f32, sw: &[f32], bias: Option<&[f64]>) -> Vec<f64> {
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let c = i % n;
            let s = if sw.len() == 1 { sw[0] } else { sw[c] };
            sx as f64 * s as f64 * a as f64 + bias.map_or(0.0, |b| b[c])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_layout_and_round_trip() {
        let v = vec![1, -2, 3, -128, 127, 0, -1];
        let p = pack(&v, 7);
        assert_eq!(p, vec![0x80_03_FE_01, 0x00_FF_00_7F, 0, 0]);
        assert_eq!(words_per_row(16), 4);
        assert_eq!(words_per_row(17), 8);
        assert_eq!(unpack(&p, 1, 7, QType::I8), v);
        let u = vec![255, 0, 7, 128, 1];
        let p = pack(&u, 5);
        assert_eq!(unpack(&p, 1, 5, QType::U8), u);
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let q = QParams::per_tensor(0.5, 0);
        let x = [0.25, 0.75, -0.25, -0.75, 1e9, -1e9, f64::INFINITY];
        assert_eq!(
            quantize(&x, 7, QType::I8, &q),
            vec![0, 2, 0, -2, 127, -128, 127]
        );
        let q = QParams::per_tensor(1.0, 10);
        assert_eq!(quantize(&[-20.0, 2.5], 2, QType::U8, &q), vec![0, 12]);
    }

    #[test]
    fn matmul_reference_small() {
        // x = [[1, 2]], zx = 1, w = [[3, 4], [5, 6]] → (0·3 + 1·4, 0·5 + 1·6).
        assert_eq!(matmul_acc(&[1, 2], 1, &[3, 4, 5, 6], 2), vec![4, 6]);
        let y = matmul(&[4, 6], 2, 0.5, &[1.0, 2.0], Some(&[0.5, -1.0]));
        assert_eq!(y, vec![2.5, 5.0]);
    }
}
