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

/// `W_noise = ψ(W | J)` for a resolved spec (every intN stage with given parameters).
pub fn noise_forward(
    w: &[f64],
    shape: &WeightShape,
    spec: &NoiseSpec,
    seed: NoiseSeed,
) -> Vec<f64> {
    let cols = shape.cols();
    w.iter()
        .enumerate()
        .map(|(i, &x)| {
            let i = i as u64;
            spec.stages.iter().enumerate().fold(x, |v, (s, stage)| {
                let sel = selected(&seed, spec, s, i);
                match stage {
                    Noise::Proxy { p, rescale } => {
                        if sel {
                            0.0
                        } else if *rescale {
                            v / (1.0 - p)
                        } else {
                            v
                        }
                    }
                    Noise::IntN { bits, scheme, .. } => {
                        if sel {
                            let q = given(scheme);
                            let e = qp_entry(q, i, cols);
                            fake_quant(v, q.scale[e], q.zero_point[e], *bits)
                        } else {
                            v
                        }
                    }
                }
            })
        })
        .collect()
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
