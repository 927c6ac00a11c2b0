//! Activation calibration (the paper's §3.3: activations are quantized with fixed per-tensor
//! parameters estimated on a few calibration batches).
//!
//! The user calls [`ActivationCalibrator::observe`] once per calibration batch; each batch's
//! range comes from the existing observers ([`Context::observe`] at 8 bits, per tensor) and is
//! accumulated on the host. [`ActivationCalibrator::finish`] turns the accumulated range into
//! fixed per-tensor affine parameters ([`CalibratedQuantizer`]), used for every later
//! quantization of that activation.
//!
//! The range of a batch is recovered from its observer's parameters as
//! [`QParams::range`] `= [−s·z, s·(255 − z)]`, which contains 0 and lies within half a step
//! `s / 2` of the observed min and max.

use crate::error::{Result, invalid};
use crate::int8::{QScheme, QTensor, QType, int8_qparams};
use crate::observer::{Observer, QParams, affine_params};
use crate::runtime::context::Context;
use crate::shape::WeightShape;
use crate::tensor::Tensor;

/// How batch statistics are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CalibrationMode {
    /// Each batch's min/max ([`Observer::MinMax`]); the final range is their union.
    MinMax,
    /// Each batch's L2-optimal clipping range over a 2048-bin histogram
    /// ([`Observer::Histogram`]); the final range is the mean of the batches' ranges.
    Histogram,
}

/// Accumulates activation statistics over calibration batches.
#[derive(Clone, Debug)]
pub struct ActivationCalibrator {
    mode: CalibrationMode,
    qtype: QType,
    lo: f64,
    hi: f64,
    sum_lo: f64,
    sum_hi: f64,
    batches: u64,
}

impl ActivationCalibrator {
    /// A calibrator for activations to be quantized to `qtype`.
    pub fn new(mode: CalibrationMode, qtype: QType) -> Self {
        Self {
            mode,
            qtype,
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
            sum_lo: 0.0,
            sum_hi: 0.0,
            batches: 0,
        }
    }

    /// Batches observed so far.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// The accumulated range `(lo, hi)` so far (`None` before the first batch).
    pub fn range(&self) -> Option<(f64, f64)> {
        match (self.batches, self.mode) {
            (0, _) => None,
            (_, CalibrationMode::MinMax) => Some((self.lo, self.hi)),
            (b, CalibrationMode::Histogram) => {
                Some((self.sum_lo / b as f64, self.sum_hi / b as f64))
            }
        }
    }

    /// Adds one calibration batch `x` (an f32 or f16 tensor of any length ≥ 1) on `ctx`.
    /// Non-finite values are an error ([`crate::Error::NonFinite`]).
    pub fn observe(&mut self, ctx: &Context, x: &Tensor) -> Result<()> {
        let shape = WeightShape::matrix(1, x.len());
        let observer = match self.mode {
            CalibrationMode::MinMax => Observer::MinMax,
            CalibrationMode::Histogram => Observer::Histogram,
        };
        let q = ctx.observe(x, &shape, observer, 8)?;
        let (lo, hi) = q.range(0, 8);
        let (lo, hi) = (lo as f64, hi as f64);
        self.lo = self.lo.min(lo);
        self.hi = self.hi.max(hi);
        self.sum_lo += lo;
        self.sum_hi += hi;
        self.batches += 1;
        Ok(())
    }

    /// The fixed per-tensor affine parameters of the accumulated range (an error before any
    /// batch was observed).
    pub fn finish(&self) -> Result<CalibratedQuantizer> {
        let (lo, hi) = self
            .range()
            .ok_or_else(|| invalid("batches", 0, "observe at least one calibration batch"))?;
        let (s, z) = affine_params(lo, hi, 8);
        let qparams = int8_qparams(&QParams::per_tensor(s, z), self.qtype, QScheme::Affine)?;
        Ok(CalibratedQuantizer {
            qtype: self.qtype,
            qparams,
        })
    }
}

/// Fixed per-tensor activation parameters from calibration.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibratedQuantizer {
    /// Type of the quantized activations.
    pub qtype: QType,
    /// Per-tensor affine parameters.
    pub qparams: QParams,
}

impl CalibratedQuantizer {
    /// Quantizes an activation batch `x` ((rows, cols), f32) with the fixed parameters.
    pub fn quantize(&self, ctx: &Context, x: &Tensor, rows: u64, cols: u64) -> Result<QTensor> {
        ctx.quantize(x, rows, cols, self.qtype, &self.qparams)
    }
}
