//! Reference of the straight-through backward.

use crate::cpu::noise::{given, qp_entry, selected};
use crate::noise::{Noise, NoiseSpec, SteMode};
use crate::philox::NoiseSeed;
use crate::shape::WeightShape;

/// `dL/dW` from `dL/dW_noise` (`grad`) and the weight `w`, for a resolved spec.
pub fn ste_backward(
    grad: &[f64],
    w: &[f64],
    shape: &WeightShape,
    spec: &NoiseSpec,
    seed: NoiseSeed,
    mode: SteMode,
) -> Vec<f64> {
    let cols = shape.cols();
    grad.iter()
        .zip(w)
        .enumerate()
        .map(|(i, (&g, &x))| {
            let i = i as u64;
            spec.stages
                .iter()
                .enumerate()
                .fold(g, |g, (s, stage)| match mode {
                    SteMode::Identity => g,
                    SteMode::Masked => {
                        let p = stage.p();
                        if selected(&seed, spec, s, i) || p == 1.0 {
                            0.0
                        } else {
                            g / (1.0 - p)
                        }
                    }
                    SteMode::Clamped => match stage {
                        Noise::IntN { bits, scheme, .. } => {
                            let q = given(scheme);
                            let (lo, hi) = q.range(qp_entry(q, i, cols), *bits);
                            let x = x as f32;
                            if x >= lo && x <= hi { g } else { 0.0 }
                        }
                        Noise::Proxy { .. } | Noise::Pq { .. } | Noise::PqMean { .. } => g,
                    },
                })
        })
        .collect()
}
