//! Reference of the product-quantization decode.

/// The decoded weight of a PQ layer: block `b` (flat elements `b·block_size ..
/// (b+1)·block_size` of the row-major weight) is row `assignments[b]` of `codebook`
/// (`K × block_size`, row-major). An index `≥ K` decodes to centroid `K − 1`, as on the
/// devices. A copy, so it is exact for any element type.
///
/// # Panics
/// If `block_size` is 0 or `codebook` holds no whole centroid.
pub fn decode<T: Copy>(codebook: &[T], assignments: &[u32], block_size: usize) -> Vec<T> {
    assert!(block_size > 0, "block_size must be at least 1");
    let k = codebook.len() / block_size;
    assert!(k > 0, "the codebook must hold at least one centroid");
    assignments
        .iter()
        .flat_map(|&a| {
            let a = (a as usize).min(k - 1);
            codebook[a * block_size..(a + 1) * block_size]
                .iter()
                .copied()
        })
        .collect()
}

/// Gradient of each of `k` centroids: the mean (or sum) over the blocks assigned to it of the
/// weight gradient `grad` (blocks of `d`), accumulated in f64; 0 for a centroid without blocks.
pub fn centroid_grad(
    grad: &[f64],
    assignments: &[u32],
    d: usize,
    k: usize,
    reduction: crate::pq::CentroidGrad,
) -> Vec<f64> {
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0u64; k];
    for (g, &a) in grad.chunks(d).zip(assignments) {
        if (a as usize) < k {
            counts[a as usize] += 1;
            for (s, v) in sums[a as usize * d..(a as usize + 1) * d].iter_mut().zip(g) {
                *s += v;
            }
        }
    }
    if reduction == crate::pq::CentroidGrad::Mean {
        for (c, &n) in counts.iter().enumerate() {
            for s in &mut sums[c * d..(c + 1) * d] {
                *s = if n > 0 { *s / n as f64 } else { 0.0 };
            }
        }
    }
    sums
}

/// Indices packed 4 per little-endian u32 word (index `i` in byte `i % 4` of word `i / 4`),
/// indices ≥ `k` clamped to `k − 1`.
pub fn pack_u8(indices: &[u32], k: u32) -> Vec<u32> {
    indices
        .chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (j, &i)| w | (i.min(k - 1) << (8 * j)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_rows_and_clamps() {
        let codebook = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            decode(&codebook, &[2, 0, 1, 7], 2),
            [5.0, 6.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }
}
