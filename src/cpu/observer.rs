//! Reference of the observers.

use crate::error::{Error, Result};
use crate::observer::{
    HISTOGRAM_BINS, Observer, QParams, affine_params, histogram_bin, histogram_search,
};
use crate::shape::WeightShape;

fn finite_range(w: &[f64]) -> Result<(f64, f64)> {
    let bad = w.iter().filter(|x| !x.is_finite()).count();
    if bad > 0 {
        return Err(Error::NonFinite {
            what: "weight",
            count: bad as u64,
        });
    }
    Ok(w.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        }))
}

/// Quantization parameters of `w` for `bits` bits by `observer`.
pub fn observe(w: &[f64], shape: &WeightShape, observer: Observer, bits: u8) -> Result<QParams> {
    crate::noise::check_bits(bits)?;
    let (lo, hi) = finite_range(w)?;
    Ok(match observer {
        Observer::MinMax => {
            let (s, z) = affine_params(lo, hi, bits);
            QParams::per_tensor(s, z)
        }
        Observer::MinMaxPerChannel => {
            let (scale, zero_point) = w
                .chunks(shape.cols() as usize)
                .map(|row| {
                    let (lo, hi) = finite_range(row).expect("checked above");
                    affine_params(lo, hi, bits)
                })
                .unzip();
            QParams { scale, zero_point }
        }
        Observer::Histogram => {
            let (lo, hi) = (lo as f32, hi as f32);
            let mut counts = vec![0u64; HISTOGRAM_BINS];
            for &x in w {
                counts[histogram_bin(x as f32, lo, hi)] += 1;
            }
            let (s, z) = histogram_search(&counts, lo, hi, bits);
            QParams::per_tensor(s, z)
        }
    })
}
