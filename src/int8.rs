//! int8 quantization and exact int8 matrix multiplication (`shaders/int8.wgsl`,
//! [`Family::Int8`](crate::runtime::shaders::Family::Int8); reference: [`crate::cpu::int8`]).
//!
//! # Packed tensors
//!
//! A [`QTensor`] is a (rows, cols) matrix of 8-bit values ([`QType::I8`]: two's complement
//! int8, or [`QType::U8`]) stored in an ordinary [`DType::U32`] [`Tensor`], plus a host-side
//! descriptor: its shape, its [`QType`] and its [`QParams`] (scale and zero-point, one per
//! tensor or one per row). No new [`DType`] is needed. Layout: row by row, each row in
//! `4 · ceil(cols / 16)` words ([`QTensor::words_per_row`]: whole 16-byte `vec4<u32>`s);
//! element `c` of a row is byte `c % 4` of word `c / 4`, little-endian (bits
//! `8·(c % 4) ..= 8·(c % 4) + 7`); the bytes past `cols` in a row are zero. A flat tensor of
//! `len` values is a `(1, len)` matrix, so it is padded with zero bytes to a multiple of 16
//! values (at most 15 bytes). Padding per row keeps every row 16-byte aligned, so the matmul
//! loads 16 values of a row with one `vec4<u32>` load and needs no bounds check inside a row.
//!
//! # Modules
//!
//! [`quantize`]: quantization and dequantization of packed tensors ([`Context::quantize`],
//! [`Context::dequantize`], …). [`matmul`]: the exact int8 matmul ([`Context::int8_matmul`],
//! [`Int8Linear`], the kernels). [`calibrate`]: activation calibration. Every public item of
//! the three is re-exported here.
//!
//! [`Context::quantize`]: crate::Context::quantize
//! [`Context::dequantize`]: crate::Context::dequantize
//! [`Context::int8_matmul`]: crate::Context::int8_matmul

pub mod calibrate;
pub mod matmul;
pub mod quantize;

pub use calibrate::{ActivationCalibrator, CalibratedQuantizer, CalibrationMode};
pub use matmul::{
    Int8Linear, MATMUL_KV, MATMUL_MAX_K, MATMUL_WGN, MATMUL_WGX, MATMUL_WGY, MatmulKernel,
    MatmulTiles, MatmulVariant,
};
pub use quantize::QUANTIZE_WPI;

use crate::error::{Error, Result, invalid};
use crate::noise::check_len;
use crate::observer::QParams;
use crate::runtime::context::{check_dtype, wrong_context};
use crate::runtime::elementwise::device_buffer;
use crate::runtime::gpu::Gpu;
use crate::tensor::{DType, Storage, Tensor};

/// Invocations per workgroup of `quantize`, `dequantize` and `int8_rowsum`.
pub const INT8_WG: u32 = 64;

/// Type of the 8-bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QType {
    /// Signed, two's complement, `[−128, 127]`.
    I8,
    /// Unsigned, `[0, 255]`.
    U8,
}

impl QType {
    /// The representable range `(lo, hi)`.
    pub fn range(&self) -> (i32, i32) {
        match self {
            QType::I8 => (-128, 127),
            QType::U8 => (0, 255),
        }
    }

    /// Whether values are signed.
    pub fn is_signed(&self) -> bool {
        *self == QType::I8
    }
}

/// How [`int8_qparams`] maps an observed range to parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QScheme {
    /// `s = max(|lo|, |hi|) / 127`, `z = 0` (I8) or 128 (U8).
    Symmetric,
    /// The observer's affine parameters, the zero-point shifted by −128 for I8.
    Affine,
}

/// Converts 8-bit parameters of an observer ([`Context::observe`] with `bits = 8`: unsigned
/// affine, `z ∈ [0, 255]`) to parameters of `qtype` under `scheme`, entry by entry (so per
/// tensor stays per tensor and per channel per channel). Symmetric parameters cover the
/// observer's representable range `QParams::range` (within one step of the observed min/max).
///
/// [`Context::observe`]: crate::Context::observe
pub fn int8_qparams(observed: &QParams, qtype: QType, scheme: QScheme) -> Result<QParams> {
    observed.validate(8, observed.scale.len() as u64)?;
    let (scale, zero_point) = (0..observed.scale.len())
        .map(|i| match scheme {
            QScheme::Affine => {
                let z = observed.zero_point[i];
                (
                    observed.scale[i],
                    if qtype.is_signed() { z - 128 } else { z },
                )
            }
            QScheme::Symmetric => {
                let (lo, hi) = observed.range(i, 8);
                let amax = (-lo).max(hi) as f64;
                let s = (amax / 127.0).max(f32::EPSILON as f64) as f32;
                (s, if qtype.is_signed() { 0 } else { 128 })
            }
        })
        .unzip();
    Ok(QParams { scale, zero_point })
}

/// Checks parameters for a `qtype` matrix of `rows` rows: one entry or `rows` entries, as many
/// zero-points as scales, every scale finite and `> 0`, every zero-point in the type's range.
pub fn check_qparams(q: &QParams, qtype: QType, rows: u64) -> Result<()> {
    let n = q.scale.len() as u64;
    if n != 1 && n != rows {
        return Err(invalid(
            "scale.len()",
            n,
            "must be 1 (per tensor) or rows (per channel)",
        ));
    }
    if q.zero_point.len() != q.scale.len() {
        return Err(invalid(
            "zero_point.len()",
            q.zero_point.len(),
            "must equal scale.len()",
        ));
    }
    if let Some(s) = q.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(invalid("scale", s, "must be finite and > 0"));
    }
    let (lo, hi) = qtype.range();
    if let Some(z) = q.zero_point.iter().find(|z| !(lo..=hi).contains(*z)) {
        return Err(invalid(
            "zero_point",
            z,
            "must be in the type's range ([-128, 127] for I8, [0, 255] for U8)",
        ));
    }
    Ok(())
}

fn check_shape(rows: u64, cols: u64) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(invalid(
            "shape",
            format!("({rows}, {cols})"),
            "must not be empty",
        ));
    }
    if rows.saturating_mul(cols) >= u32::MAX as u64 {
        return Err(invalid(
            "shape",
            format!("({rows}, {cols})"),
            "at most 2^32 - 2 values",
        ));
    }
    Ok(())
}

/// A packed (rows, cols) matrix of 8-bit values with its parameters (see the
/// [`int8`](crate::int8) module docs for the layout).
#[derive(Clone, Debug)]
pub struct QTensor {
    /// The packed words: `rows · words_per_row()` elements of [`DType::U32`].
    pub data: Tensor,
    /// Rows.
    pub rows: u64,
    /// Values per row.
    pub cols: u64,
    /// Type of the values.
    pub qtype: QType,
    /// Scale and zero-point, per tensor or per row.
    pub qparams: QParams,
}

impl QTensor {
    /// Packed words per row: `4 · ceil(cols / 16)`.
    pub fn words_per_row(&self) -> u64 {
        4 * self.cols.div_ceil(16)
    }

    /// Number of values, `rows · cols`.
    pub fn len(&self) -> u64 {
        self.rows * self.cols
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the descriptor against its data.
    pub fn check(&self, what: &'static str) -> Result<()> {
        check_shape(self.rows, self.cols)?;
        check_dtype(what, DType::U32, self.data.dtype)?;
        check_len(what, self.rows * self.words_per_row(), self.data.len)?;
        check_qparams(&self.qparams, self.qtype, self.rows)
    }
}

fn host_bytes(t: &Tensor, what: &'static str) -> Result<Vec<u8>> {
    match &t.storage {
        Storage::Cpu(v) => Ok(v.lock().unwrap().clone()),
        Storage::Gpu { .. } => Err(wrong_context(what)),
    }
}

fn store_bytes(t: &Tensor, bytes: &[u8], what: &'static str) -> Result<()> {
    match &t.storage {
        Storage::Cpu(v) => {
            v.lock().unwrap().copy_from_slice(bytes);
            Ok(())
        }
        Storage::Gpu { .. } => Err(wrong_context(what)),
    }
}

fn host_u32(t: &Tensor, what: &'static str) -> Result<Vec<u32>> {
    Ok(bytemuck::pod_collect_to_vec(&host_bytes(t, what)?))
}

/// Binds `count` 4-byte elements of `t` from element `start`: the binding starts at the
/// nearest aligned offset below, and the returned skip is the first element's index in it.
fn bind_span<'t>(
    g: &Gpu,
    t: &'t Tensor,
    start: u64,
    count: u64,
    limit: u64,
    what: &'static str,
) -> Result<(wgpu::BindingResource<'t>, u32)> {
    let (buffer, offset) = device_buffer(t, what)?;
    let align = g.limits.min_storage_buffer_offset_alignment as u64;
    let begin = offset + start * 4;
    let base = begin / align * align;
    let size = (begin + count.max(1) * 4 - base).next_multiple_of(4);
    if base + size > buffer.size() {
        return Err(Error::BufferTooSmall {
            what,
            needed: size,
            offset: base,
            size: buffer.size(),
        });
    }
    if size > limit {
        return Err(invalid(
            what,
            format!("{size} bytes"),
            "larger than one storage binding of the device",
        ));
    }
    Ok((
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: base,
            size: wgpu::BufferSize::new(size),
        }),
        ((begin - base) / 4) as u32,
    ))
}

/// Rows per chunk such that every tensor's rows (of `row_bytes` each) fit one bound window.
fn rows_per_chunk(g: &Gpu, row_bytes: &[u64]) -> Result<u64> {
    let align = g.limits.min_storage_buffer_offset_alignment as u64;
    let avail = g.max_window.saturating_sub(align + 16);
    let r = row_bytes.iter().map(|b| avail / b).min().unwrap_or(0);
    if r == 0 {
        return Err(invalid(
            "cols",
            format!("{row_bytes:?} bytes per row"),
            "a row must fit in one bound window",
        ));
    }
    Ok(r)
}
