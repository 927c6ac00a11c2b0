//! Observers: quantization parameters (scale, zero-point) of a weight, computed on the
//! device. Shader: `shaders/observer.wgsl`; reference: [`crate::cpu::observer`].
//!
//! Conventions (PyTorch's affine observers, generalised to any bit width):
//! with `qmax = 2^bits − 1`, a range `[lo, hi]` is first widened to contain 0, then
//! `s = (hi − lo) / qmax` (at least `f32::EPSILON`) and `z = clamp(round(−lo / s), 0, qmax)`.

use crate::error::{Result, invalid};

/// Bins of the [`Observer::Histogram`] histogram.
pub const HISTOGRAM_BINS: usize = 2048;

/// How an observer computes the quantization range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Observer {
    /// One range for the whole tensor: its min and max.
    MinMax,
    /// One range per output channel (row): the row's min and max.
    MinMaxPerChannel,
    /// One range for the whole tensor, the clipping range minimising the L2 quantization
    /// error over a 2048-bin histogram (like PyTorch's `HistogramObserver`).
    Histogram,
}

/// Affine quantization parameters, per tensor (one entry) or per row.
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    /// Scale `s > 0`, one per tensor or one per row.
    pub scale: Vec<f32>,
    /// Zero-point `z ∈ [0, 2^bits − 1]`, same length as `scale`.
    pub zero_point: Vec<i32>,
}

impl QParams {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f32, zero_point: i32) -> Self {
        Self {
            scale: vec![scale],
            zero_point: vec![zero_point],
        }
    }

    /// Whether there is one entry per row.
    pub fn is_per_channel(&self) -> bool {
        self.scale.len() != 1
    }

    /// Checks ranges against a bit width and the number of rows.
    pub fn validate(&self, bits: u8, rows: u64) -> Result<()> {
        crate::noise::check_bits(bits)?;
        let n = self.scale.len() as u64;
        if n != 1 && n != rows {
            return Err(invalid(
                "scale.len()",
                n,
                "must be 1 (per tensor) or rows (per channel)",
            ));
        }
        if self.zero_point.len() != self.scale.len() {
            return Err(invalid(
                "zero_point.len()",
                self.zero_point.len(),
                "must equal scale.len()",
            ));
        }
        let qmax = (1i32 << bits) - 1;
        if let Some(s) = self.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(invalid("scale", s, "must be finite and > 0"));
        }
        if let Some(z) = self.zero_point.iter().find(|z| !(0..=qmax).contains(*z)) {
            return Err(invalid("zero_point", z, "must be in [0, 2^bits - 1]"));
        }
        Ok(())
    }

    /// Representable range `[−s·z, s·(qmax − z)]` of entry `i`, computed in f32 exactly as the
    /// shaders do.
    pub fn range(&self, i: usize, bits: u8) -> (f32, f32) {
        let qmax = ((1u32 << bits) - 1) as f32;
        let (s, z) = (self.scale[i], self.zero_point[i] as f32);
        (-z * s, (qmax - z) * s)
    }
}

/// Scale and zero-point of the range `[lo, hi]` (widened to contain 0) for `bits` bits.
pub fn affine_params(lo: f64, hi: f64, bits: u8) -> (f32, i32) {
    let qmax = ((1u32 << bits) - 1) as f64;
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let scale = ((hi - lo) / qmax).max(f32::EPSILON as f64) as f32;
    let zp = (-lo / scale as f64).round_ties_even().clamp(0.0, qmax) as i32;
    (scale, zp)
}

/// The bin of value `x` in a histogram of `HISTOGRAM_BINS` bins over `[min, max]`, computed in
/// f32 exactly as `shaders/observer.wgsl` does.
pub fn histogram_bin(x: f32, min: f32, max: f32) -> usize {
    let width = max - min;
    if width <= 0.0 {
        return 0;
    }
    let t = (x - min) / width * HISTOGRAM_BINS as f32;
    (t.max(0.0) as usize).min(HISTOGRAM_BINS - 1)
}

/// Searches the clipping range of a histogram over `[min, max]` that minimises the L2
/// quantization error (each bin represented by its centre): the best of a coarse 64 × 64 grid
/// of (first bin, last bin) ranges, then refined by moving either end while the error drops,
/// with steps halving down to one bin. Deterministic; O(64² · bins) work.
pub fn histogram_search(counts: &[u64], min: f32, max: f32, bits: u8) -> (f32, i32) {
    let bins = counts.len();
    let (min, max) = (min as f64, max as f64);
    let width = (max - min) / bins as f64;
    if width <= 0.0 || bins < 2 {
        return affine_params(min, max, bits);
    }
    let qmax = ((1u32 << bits) - 1) as f64;
    let edges =
        |first: usize, last: usize| (min + first as f64 * width, min + (last + 1) as f64 * width);
    let cost = |first: usize, last: usize| -> f64 {
        let (lo, hi) = edges(first, last);
        let (s, z) = affine_params(lo, hi, bits);
        let (s, z) = (s as f64, z as f64);
        counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| {
                let x = min + (k as f64 + 0.5) * width;
                let q = ((x / s + z).round_ties_even().clamp(0.0, qmax) - z) * s;
                *c as f64 * (x - q) * (x - q)
            })
            .sum()
    };
    let grid = 64.min(bins);
    let step = bins / grid;
    let mut best = (cost(0, bins - 1), 0, bins - 1);
    for i in 0..grid {
        for j in i..grid {
            let (first, last) = (i * step, ((j + 1) * step).min(bins) - 1);
            let c = cost(first, last);
            if c < best.0 {
                best = (c, first, last);
            }
        }
    }
    let mut delta = step.max(2) / 2;
    while delta > 0 {
        let mut improved = true;
        while improved {
            improved = false;
            let (_, first, last) = best;
            let moves = [
                (first.checked_sub(delta), Some(last)),
                (Some(first + delta), Some(last)),
                (Some(first), last.checked_sub(delta)),
                (Some(first), Some(last + delta)),
            ];
            for (f, l) in moves {
                if let (Some(f), Some(l)) = (f, l)
                    && f <= l
                    && l < bins
                {
                    let c = cost(f, l);
                    if c < best.0 {
                        best = (c, f, l);
                        improved = true;
                    }
                }
            }
        }
        delta /= 2;
    }
    let (lo, hi) = edges(best.1, best.2);
    affine_params(lo, hi, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_params_cover_the_range() {
        let (s, z) = affine_params(-1.0, 3.0, 8);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64);
        let (s, z) = affine_params(0.5, 3.0, 4);
        assert!((s - 0.2).abs() < 1e-7);
        assert_eq!(z, 0);
    }

    #[test]
    fn histogram_search_clips_outliers() {
        // 10,000 values evenly in [-1, 1] and one outlier at 8: with 4 bits, min-max costs
        // ≈ 10⁴·0.6²/12 ≈ 300 in squared error, clipping to [-1, 1] ≈ 15 + (8 − 1)² ≈ 64.
        let mut counts = vec![0u64; HISTOGRAM_BINS];
        let (min, max) = (-1.0f32, 8.0f32);
        for i in 0..10_000 {
            let x = -1.0 + 2.0 * (i as f32 + 0.5) / 10_000.0;
            counts[histogram_bin(x, min, max)] += 1;
        }
        counts[histogram_bin(8.0, min, max)] += 1;
        let (s, _) = histogram_search(&counts, min, max, 4);
        let (s_minmax, _) = affine_params(min as f64, max as f64, 4);
        assert!(s < s_minmax / 4.0, "scale {s} vs min-max {s_minmax}");
    }
}

// ---------------------------------------------------------------------------------------------
// Host side of the device observers.

use crate::error::Error;
use crate::noise::{check_len, host_values, precision_of};
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::Family;
use crate::runtime::window::windows;
use crate::shape::WeightShape;
use crate::tensor::Tensor;

const OBS_WG: u32 = 256;
const OBS_EPT: u32 = 256;

/// Mirror of `ObserverParams` in `shaders/observer.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ObserverParams {
    n: u32,
    out_base: u32,
    cols: u32,
    n_parts: u32,
    lead: u32,
    _pad: [u32; 3],
}

/// Mirror of `Range`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Range {
    lo: f32,
    hi: f32,
    bad: u32,
    _pad: u32,
}

fn finite(r: &Range) -> Result<()> {
    if r.bad > 0 {
        return Err(Error::NonFinite {
            what: "weight",
            count: r.bad as u64,
        });
    }
    Ok(())
}

impl Context {
    /// Quantization parameters of `weight` for `bits` bits, computed on the device by
    /// `observer` (the histogram's range search runs on the host over the 2048 device-computed
    /// bins). Non-finite weights are an error.
    pub fn observe(
        &self,
        weight: &Tensor,
        shape: &WeightShape,
        observer: Observer,
        bits: u8,
    ) -> Result<QParams> {
        crate::noise::check_bits(bits)?;
        self.check_owned(weight, "weight")?;
        check_len("weight", shape.numel(), weight.len)?;
        let precision = precision_of(weight, "weight")?;
        shape.blocks(1)?;
        match &self.backend {
            Backend::Cpu => crate::cpu::observer::observe(
                &host_values(weight, "weight")?,
                shape,
                observer,
                bits,
            ),
            Backend::Gpu(g) => {
                g.require(precision)?;
                let key = |entry| PipelineKey {
                    family: Family::Observer,
                    precision,
                    entry,
                    overrides: vec![("WG", OBS_WG), ("EPT", OBS_EPT)],
                };
                match observer {
                    Observer::MinMaxPerChannel => observe_rows(g, weight, shape, bits, &key),
                    _ => observe_tensor(g, weight, observer, bits, &key),
                }
            }
        }
    }
}

fn scalar_window<'t>(
    t: &'t Tensor,
    w: &crate::runtime::window::Window,
) -> Result<wgpu::BindingResource<'t>> {
    window_binding(t, w, (w.len * t.dtype.size()).next_multiple_of(4), "weight")
}

fn observe_tensor(
    g: &Gpu,
    weight: &Tensor,
    observer: Observer,
    bits: u8,
    key: &dyn Fn(&'static str) -> PipelineKey,
) -> Result<QParams> {
    let tile = (OBS_WG * OBS_EPT) as u64;
    let wins = windows(weight.len, weight.dtype.size(), 1, g.max_window)?;
    let n_parts: u64 = wins.iter().map(|w| w.len.div_ceil(tile)).sum();
    let mut batch = Batch::new(g, "observe")?;
    let parts = batch.scratch(n_parts * 16);
    let total = batch.scratch(16);
    let partial = g.pipeline(key("minmax_partial"))?;
    let mut out_base = 0;
    for w in &wins {
        let u = batch.uniform(&ObserverParams {
            n: w.len as u32,
            out_base: out_base as u32,
            ..Default::default()
        });
        let groups = w.len.div_ceil(tile);
        batch.dispatch(
            &partial,
            &[
                u.as_entire_binding(),
                scalar_window(weight, w)?,
                parts.as_entire_binding(),
            ],
            groups,
        )?;
        out_base += groups;
    }
    let u = batch.uniform(&ObserverParams {
        n_parts: n_parts as u32,
        ..Default::default()
    });
    batch.dispatch(
        &g.pipeline(key("minmax_reduce"))?,
        &[
            u.as_entire_binding(),
            parts.as_entire_binding(),
            total.as_entire_binding(),
        ],
        1,
    )?;
    let hist = if observer == Observer::Histogram {
        let hist = batch.scratch(HISTOGRAM_BINS as u64 * 4);
        let pipeline = g.pipeline(key("histogram"))?;
        for w in &wins {
            let u = batch.uniform(&ObserverParams {
                n: w.len as u32,
                ..Default::default()
            });
            let bindings = [
                u.as_entire_binding(),
                scalar_window(weight, w)?,
                total.as_entire_binding(),
                hist.as_entire_binding(),
            ];
            batch.dispatch(&pipeline, &bindings, w.len.div_ceil(tile))?;
        }
        Some(batch.read(&hist, 0, HISTOGRAM_BINS as u64 * 4))
    } else {
        None
    };
    let r = batch.read(&total, 0, 16);
    let mut out = batch.finish()?;
    let range: Range = bytemuck::pod_read_unaligned(&Batch::take(&mut out, r));
    finite(&range)?;
    let (s, z) = match hist {
        None => affine_params(range.lo as f64, range.hi as f64, bits),
        Some(h) => {
            let counts: Vec<u64> =
                bytemuck::pod_collect_to_vec::<u8, u32>(&Batch::take(&mut out, h))
                    .iter()
                    .map(|&c| c as u64)
                    .collect();
            histogram_search(&counts, range.lo, range.hi, bits)
        }
    };
    Ok(QParams::per_tensor(s, z))
}

fn observe_rows(
    g: &Gpu,
    weight: &Tensor,
    shape: &WeightShape,
    bits: u8,
    key: &dyn Fn(&'static str) -> PipelineKey,
) -> Result<QParams> {
    let cols = shape.cols();
    let wins = windows(weight.len, weight.dtype.size(), 1, g.max_window)?;
    // Rows touched by each window: a row cut by a window edge yields one piece per window.
    let spans: Vec<(u64, u64)> = wins
        .iter()
        .map(|w| (w.start / cols, (w.start + w.len - 1) / cols + 1))
        .collect();
    let pieces: u64 = spans.iter().map(|(a, b)| b - a).sum();
    let mut batch = Batch::new(g, "observe per channel")?;
    let ranges = batch.scratch(pieces * 16);
    let pipeline = g.pipeline(key("minmax_rows"))?;
    let mut out_base = 0;
    for (w, (first, end)) in wins.iter().zip(&spans) {
        let u = batch.uniform(&ObserverParams {
            n: w.len as u32,
            out_base: out_base as u32,
            cols: cols as u32,
            lead: (w.start - first * cols) as u32,
            ..Default::default()
        });
        batch.dispatch(
            &pipeline,
            &[
                u.as_entire_binding(),
                scalar_window(weight, w)?,
                ranges.as_entire_binding(),
            ],
            end - first,
        )?;
        out_base += end - first;
    }
    let r = batch.read(&ranges, 0, pieces * 16);
    let mut out = batch.finish()?;
    let pieces: Vec<Range> = bytemuck::pod_collect_to_vec(&Batch::take(&mut out, r));
    let mut rows = vec![
        Range {
            lo: f32::INFINITY,
            hi: f32::NEG_INFINITY,
            bad: 0,
            _pad: 0
        };
        shape.rows() as usize
    ];
    let owners = spans.iter().flat_map(|&(a, b)| a..b);
    for (piece, row) in pieces.iter().zip(owners) {
        let r = &mut rows[row as usize];
        *r = Range {
            lo: r.lo.min(piece.lo),
            hi: r.hi.max(piece.hi),
            bad: r.bad + piece.bad,
            _pad: 0,
        };
    }
    let bad: u64 = rows.iter().map(|r| r.bad as u64).sum();
    if bad > 0 {
        return Err(Error::NonFinite {
            what: "weight",
            count: bad,
        });
    }
    let (scale, zero_point) = rows
        .iter()
        .map(|r| affine_params(r.lo as f64, r.hi as f64, bits))
        .unzip();
    Ok(QParams { scale, zero_point })
}
