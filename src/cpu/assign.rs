//! Reference of the nearest-centroid assignment.

/// For each `d`-dimensional row of `data`, the index of the nearest row of `codebook` (squared
/// L2 in f64, ties to the lowest index) and that squared distance.
pub fn assign(data: &[f64], codebook: &[f64], d: usize) -> (Vec<u32>, Vec<f64>) {
    data.chunks(d)
        .map(|x| {
            codebook
                .chunks(d)
                .map(|c| x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
                .enumerate()
                .fold((0u32, f64::INFINITY), |best, (i, dist)| {
                    if dist < best.1 {
                        (i as u32, dist)
                    } else {
                        best
                    }
                })
        })
        .unzip()
}
