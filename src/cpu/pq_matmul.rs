//! Reference of the product-quantized matmul ([`crate::pq_matmul`]): float64 products of the
//! decoded weight, an exact (wrapping i32) integer path, and the packing helpers of its formats.

/// The `count` indices packed `bits` (8 or 16) per field, `32 / bits` per little-endian u32
/// word (index `p` in field `p % per` of word `p / per`).
pub fn unpack_indices(words: &[u32], bits: u32, count: usize) -> Vec<u32> {
    let per = (32 / bits) as usize;
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    (0..count)
        .map(|p| (words[p / per] >> ((p % per) as u32 * bits)) & mask)
        .collect()
}

/// Indices packed 2 per u32 word (index `i` in the low half of word `i / 2` when `i` is even),
/// indices ≥ `k` clamped to `k − 1`.
pub fn pack_u16(indices: &[u32], k: u32) -> Vec<u32> {
    indices
        .chunks(2)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (j, &i)| w | (i.min(k - 1) << (16 * j)))
        })
        .collect()
}

/// Words per int8 centroid of block size `d`: `ceil(d / 4)`.
pub fn int8_words(d: usize) -> usize {
    d.div_ceil(4)
}

/// Symmetric per-codebook int8 quantization of a `Kc × d` f32 codebook: `scale = max|c| / 127`
/// (1 when the codebook is all zeros), `q = round(c / scale)` clamped to `[−127, 127]`, each
/// centroid packed into `ceil(d / 4)` words (byte `t` in byte `t % 4` of word `t / 4`, padding
/// bytes zero). Returns the words and the scale.
pub fn quantize_codebook_int8(codebook: &[f32], d: usize) -> (Vec<u32>, f32) {
    let max = codebook.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let q: Vec<i8> = codebook
        .iter()
        .map(|&v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (pack_i8_rows(&q, codebook.len() / d, d), scale)
}

/// `rows` rows of `cols` int8 values packed 4 per u32 word, each row padded with zero bytes to
/// `ceil(cols / 4)` words.
pub fn pack_i8_rows(values: &[i8], rows: usize, cols: usize) -> Vec<u32> {
    let w = cols.div_ceil(4);
    let mut out = vec![0u32; rows * w];
    for r in 0..rows {
        for c in 0..cols {
            out[r * w + c / 4] |= (values[r * cols + c] as u8 as u32) << (8 * (c % 4));
        }
    }
    out
}

/// The int8 values of rows packed by [`pack_i8_rows`].
pub fn unpack_i8_rows(words: &[u32], rows: usize, cols: usize) -> Vec<i8> {
    let w = cols.div_ceil(4);
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            (words[r * w + c / 4] >> (8 * (c % 4))) as u8 as i8
        })
        .collect()
}

/// Per-tensor affine int8 quantization of activations (`m × k`): `sx = (max − min) / 255` over
/// the range widened to include 0, `zx = round(−128 − min / sx)` clamped to `[−128, 127]`,
/// `q = clamp(round(x / sx) + zx, −128, 127)`; rows packed by [`pack_i8_rows`]. Returns the
/// words, `sx` and `zx`, so that `x ≈ sx · (q − zx)`.
pub fn quantize_activations_int8(x: &[f32], m: usize, k: usize) -> (Vec<u32>, f32, i32) {
    let lo = x.iter().fold(0.0f32, |a, &v| a.min(v));
    let hi = x.iter().fold(0.0f32, |a, &v| a.max(v));
    let sx = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zx = (-128.0 - lo / sx).round().clamp(-128.0, 127.0) as i32;
    let q: Vec<i8> = x
        .iter()
        .map(|&v| ((v / sx).round() as i32 + zx).clamp(-128, 127) as i8)
        .collect();
    (pack_i8_rows(&q, m, k), sx, zx)
}

/// `Y = X · Wᵀ (+ b)` with `X (m × k)`, `W (n × k)`, row-major, in f64.
pub fn dense_matmul(
    x: &[f64],
    w: &[f64],
    m: usize,
    n: usize,
    k: usize,
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
            y[i * n + j] = dot + bias.map_or(0.0, |b| b[j]);
        }
    }
    y
}

/// `Y = X · decode(C, I)ᵀ (+ b)`: `codebook` is `Kc × d` (already dequantized), `indices`
/// one per subvector of the `n × k` weight in row-major block order (≥ Kc clamps to Kc − 1).
#[allow(clippy::too_many_arguments)]
pub fn pq_matmul(
    x: &[f64],
    m: usize,
    k: usize,
    codebook: &[f64],
    d: usize,
    indices: &[u32],
    n: usize,
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let w = crate::cpu::pq::decode(codebook, indices, d);
    dense_matmul(x, &w, m, n, k, bias)
}

/// The integer path's raw accumulators, exactly as the device computes them: for every
/// `(row i, output j)`, `Σ_t xq[i, t] · cq[I[j, t / d], t % d] − zx · Σ_t cq[…]`, in wrapping
/// i32 arithmetic. `xq_words` are rows packed by [`pack_i8_rows`] (`m × k`), `cq_words` the
/// `kc` centroids packed by [`pack_i8_rows`] (`kc × d`).
#[allow(clippy::too_many_arguments)]
pub fn pq_matmul_int8_acc(
    xq_words: &[u32],
    m: usize,
    k: usize,
    zx: i32,
    cq_words: &[u32],
    kc: usize,
    d: usize,
    indices: &[u32],
    n: usize,
) -> Vec<i32> {
    let xq = unpack_i8_rows(xq_words, m, k);
    let cq = unpack_i8_rows(cq_words, kc, d);
    let w = crate::cpu::pq::decode(&cq, indices, d);
    let mut out = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i32;
            let mut sum = 0i32;
            for t in 0..k {
                let c = w[j * k + t] as i32;
                acc = acc.wrapping_add((xq[i * k + t] as i32).wrapping_mul(c));
                sum = sum.wrapping_add(c);
            }
            out[i * n + j] = acc.wrapping_sub(zx.wrapping_mul(sum));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        let idx = [1u32, 700, 65535, 3, 9];
        assert_eq!(unpack_indices(&pack_u16(&idx, 65536), 16, 5), idx);
        let q = [-128i8, 127, 0, -1, 5, 6, 7];
        let words = pack_i8_rows(&q, 1, 7);
        assert_eq!(words.len(), 2);
        assert_eq!(unpack_i8_rows(&words, 1, 7), q);
        let (cw, s) = quantize_codebook_int8(&[0.5, -1.0, 0.25], 3);
        assert!((s - 1.0 / 127.0).abs() < 1e-9);
        assert_eq!(unpack_i8_rows(&cw, 1, 3), [64, -127, 32]);
    }

    #[test]
    fn int8_accumulator_matches_float_product() {
        // x = [1, 2] (zx = 1 → q = [2, 3]), one centroid [3, -4]: (2-1)·3 + (3-1)·(-4) = -5.
        let xq = pack_i8_rows(&[2, 3], 1, 2);
        let cq = pack_i8_rows(&[3, -4], 1, 2);
        assert_eq!(pq_matmul_int8_acc(&xq, 1, 2, 1, &cq, 1, 2, &[0], 1), [-5]);
    }
}
