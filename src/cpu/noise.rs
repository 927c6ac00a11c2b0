//! Reference of the noise forward and of the bit-packed mask.

use crate::noise::{Noise, NoiseSpec, QuantScheme};
use crate::observer::QParams;
use crate::philox::{NoiseSeed, selection_threshold};
use crate::shape::WeightShape;

/// `(clamp(round(w/s + z), 0, qmax) − z)·s` with round half to even, in f64.
pub fn fake_quant(w: f64, scale: f32, zero_point: i32, bits: u8) -> f64 {
    let (s, z) = (scale as f64, zero_point as f64);
    let qmax = ((1u32 << bits) - 1) as f64;
    ((w / s + z).round_ties_even().clamp(0.0, qmax) - z) * s
}

/// The quantization parameters of a resolved intN stage.
///
/// # Panics
/// If the stage still has an observer (resolve the spec first).
pub(crate) fn given(scheme: &QuantScheme) -> &QParams {
    match scheme {
        QuantScheme::Given(q) => q,
        QuantScheme::Observe(_) => panic!("noise spec must be resolved before the reference runs"),
    }
}

/// Index into a stage's parameters for flat element `i`.
pub(crate) fn qp_entry(q: &QParams, i: u64, cols: u64) -> usize {
    if q.is_per_channel() {
        (i / cols) as usize
    } else {
        0
    }
}

/// Whether flat element `i` lies in a selected block of stage `stage`.
pub fn selected(seed: &NoiseSeed, spec: &NoiseSpec, stage: usize, i: u64) -> bool {
    let threshold = selection_threshold(spec.stages[stage].p());
    seed.selected(stage as u32, i / spec.block_size as u64, threshold)
}

/// The nearest row of `codebook` (rows of `d`) to `x`, squared L2 in f64, ties to the lowest.
pub fn nearest(x: &[f64], codebook: &[f64], d: usize) -> usize {
    codebook
        .chunks(d)
        .map(|c| x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
        .enumerate()
        .fold((0, f64::INFINITY), |best, (i, dist)| {
            if dist < best.1 { (i, dist) } else { best }
        })
        .0
}

/// `W_noise = ψ(W | J)` for a resolved spec (every intN stage with given parameters, every
/// `PqMean` replaced by its one-row `Pq`). `codebooks[s]` holds stage s's centroids (f64) for
/// its `Pq` stages (empty otherwise).
pub fn noise_forward_with(
    w: &[f64],
    shape: &WeightShape,
    spec: &NoiseSpec,
    seed: NoiseSeed,
    codebooks: &[Vec<f64>],
) -> Vec<f64> {
    let cols = shape.cols();
    let bs = spec.block_size as usize;
    let mut out = w.to_vec();
    for (b, block) in out.chunks_mut(bs).enumerate() {
        let first = (b * bs) as u64;
        for (s, stage) in spec.stages.iter().enumerate() {
            let sel = selected(&seed, spec, s, first);
            match stage {
                Noise::Proxy { p, rescale } => {
                    for v in block.iter_mut() {
                        *v = if sel {
                            0.0
                        } else if *rescale {
                            *v / (1.0 - p)
                        } else {
                            *v
                        };
                    }
                }
                Noise::IntN { bits, scheme, .. } if sel => {
                    let q = given(scheme);
                    for (j, v) in block.iter_mut().enumerate() {
                        let e = qp_entry(q, first + j as u64, cols);
                        *v = fake_quant(*v, q.scale[e], q.zero_point[e], *bits);
                    }
                }
                Noise::Pq { .. } if sel => {
                    let c = nearest(block, &codebooks[s], bs);
                    block.copy_from_slice(&codebooks[s][c * bs..(c + 1) * bs]);
                }
                Noise::PqMean { .. } if sel => panic!("resolve PqMean before the reference runs"),
                _ => {}
            }
        }
    }
    out
}

/// [`noise_forward_with`] for specs without PQ stages.
pub fn noise_forward(
    w: &[f64],
    shape: &WeightShape,
    spec: &NoiseSpec,
    seed: NoiseSeed,
) -> Vec<f64> {
    noise_forward_with(w, shape, spec, seed, &vec![Vec::new(); spec.stages.len()])
}

/// The bit-packed mask: for each stage, `⌈blocks/32⌉` words; bit `j` of word `k` is block
/// `32k + j`.
pub fn noise_mask(shape: &WeightShape, spec: &NoiseSpec, seed: NoiseSeed) -> Vec<u32> {
    let blocks = shape.numel() / spec.block_size as u64;
    let words = blocks.div_ceil(32);
    let mut out = vec![0u32; (words * spec.stages.len() as u64) as usize];
    for (s, stage) in spec.stages.iter().enumerate() {
        let threshold = selection_threshold(stage.p());
        for b in 0..blocks {
            if seed.selected(s as u32, b, threshold) {
                out[(s as u64 * words + b / 32) as usize] |= 1 << (b % 32);
            }
        }
    }
    out
}
