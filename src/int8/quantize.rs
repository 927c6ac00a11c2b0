//! Quantization and dequantization of packed [`QTensor`]s (`quantize` / `dequantize` in
//! `shaders/int8.wgsl`; reference: [`crate::cpu::int8`]), and their host upload / read-back.
//!
//! # Quantization
//!
//! `q = clamp(round_half_even(x / s + z), lo, hi)` with the type's range `[lo, hi]`
//! (`[−128, 127]` or `[0, 255]`), computed in f32 on the device (saturating: out-of-range values
//! and ±∞ give `lo` / `hi`; NaN gives an unspecified code on a device, the zero-point on the CPU
//! backend). Dequantization is `x = s · (q − z)` (one f32 rounding, so bit-exact against the f64
//! reference rounded to f32). Near a rounding tie the f32 division may round the other way than
//! the f64 reference (a one-code difference); with a power-of-two scale it is exact.
//!
//! Parameters come from the existing observers ([`crate::Observer`] via
//! [`Context::observe`] with 8 bits, converted by [`int8_qparams`] to the type and to a
//! [`QScheme`]) or from the caller ([`check_qparams`] states the valid ranges): per tensor
//! (one entry) or per channel (one entry per row; for a weight that is its output channel,
//! [`crate::WeightShape::rows`]).

use super::{
    INT8_WG, QScheme, QTensor, QType, bind_span, check_qparams, check_shape, host_u32,
    int8_qparams, rows_per_chunk, store_bytes,
};
use crate::error::{Error, Result, invalid};
use crate::noise::check_len;
use crate::observer::{Observer, QParams};
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::shape::WeightShape;
use crate::tensor::{DType, Tensor};

/// Packed words (4 values each) per invocation of `quantize` (the `WPI` override).
pub const QUANTIZE_WPI: u32 = 4;

/// Mirror of `QuantParams` in `shaders/int8.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct QuantParams {
    rows: u32,
    cols: u32,
    wpr: u32,
    x_skip: u32,
    q_skip: u32,
    row0: u32,
    _pad: [u32; 2],
}

fn scale_bytes(q: &QParams) -> Vec<u8> {
    bytemuck::cast_slice(&q.scale).to_vec()
}

fn zero_bytes(q: &QParams) -> Vec<u8> {
    bytemuck::cast_slice(&q.zero_point).to_vec()
}

fn quant_key(entry: &'static str, qtype: QType, q: &QParams) -> PipelineKey {
    PipelineKey {
        family: Family::Int8,
        precision: Precision::F32,
        entry,
        overrides: vec![
            ("WG", INT8_WG),
            ("SIGNED", qtype.is_signed() as u32),
            ("PER_CHANNEL", q.is_per_channel() as u32),
            ("WPI", QUANTIZE_WPI),
        ],
    }
}

/// The device side of [`Context::quantize_into`] (`quantize`: the f32 matrix `f` into `q`) and
/// [`Context::dequantize`] (`dequantize`: `q` into `f`), row chunk by row chunk so that each
/// chunk of both fits one bound window. `f_what` and `q_what` name the two in errors.
fn dispatch_rows(
    g: &Gpu,
    quantize: bool,
    f: &Tensor,
    f_what: &'static str,
    q: &QTensor,
    q_what: &'static str,
) -> Result<()> {
    let (entry, words_per_invocation) = if quantize {
        ("quantize", QUANTIZE_WPI)
    } else {
        ("dequantize", 1)
    };
    let (rows, cols, wpr) = (q.rows, q.cols, q.words_per_row());
    let pipeline = g.pipeline(quant_key(entry, q.qtype, &q.qparams))?;
    let chunk = rows_per_chunk(g, &[cols * 4, wpr * 4])?;
    let mut batch = Batch::new(g, entry)?;
    let scales = batch.storage_init(&scale_bytes(&q.qparams));
    let zeros = batch.storage_init(&zero_bytes(&q.qparams));
    let mut row0 = 0;
    while row0 < rows {
        let n = chunk.min(rows - row0);
        let (fb, x_skip) = bind_span(g, f, row0 * cols, n * cols, g.max_window, f_what)?;
        let (qb, q_skip) = bind_span(g, &q.data, row0 * wpr, n * wpr, g.max_window, q_what)?;
        let u = batch.uniform(&QuantParams {
            rows: n as u32,
            cols: cols as u32,
            wpr: wpr as u32,
            x_skip,
            q_skip,
            row0: row0 as u32,
            _pad: [0; 2],
        });
        // Binding 3 is read, binding 4 written.
        let (input, output) = if quantize { (fb, qb) } else { (qb, fb) };
        batch.dispatch_at(
            &pipeline,
            &[
                (0, u.as_entire_binding()),
                (1, scales.as_entire_binding()),
                (2, zeros.as_entire_binding()),
                (3, input),
                (4, output),
            ],
            (n * wpr).div_ceil((INT8_WG * words_per_invocation) as u64),
        )?;
        row0 += n;
    }
    batch.finish().map(|_| ())
}

impl Context {
    /// Quantizes the f32 (rows, cols) row-major matrix `x` to a new packed [`QTensor`] of
    /// `qtype` with `qparams` (per tensor, or one entry per row; see [`check_qparams`]).
    pub fn quantize(
        &self,
        x: &Tensor,
        rows: u64,
        cols: u64,
        qtype: QType,
        qparams: &QParams,
    ) -> Result<QTensor> {
        check_shape(rows, cols)?;
        check_qparams(qparams, qtype, rows)?;
        let out = QTensor {
            data: self.empty(rows * 4 * cols.div_ceil(16), DType::U32)?,
            rows,
            cols,
            qtype,
            qparams: qparams.clone(),
        };
        self.quantize_into(x, &out)?;
        Ok(out)
    }

    /// Quantizes `x` (f32, `out.rows · out.cols` values) into `out` with `out`'s type and
    /// parameters (padding bytes are written as zeros).
    pub fn quantize_into(&self, x: &Tensor, out: &QTensor) -> Result<()> {
        out.check("out")?;
        self.check_owned(x, "x")?;
        self.check_owned(&out.data, "out")?;
        check_dtype("x", DType::F32, x.dtype)?;
        check_len("x", out.len(), x.len)?;
        if x.conflicts(&out.data) {
            return Err(Error::Aliasing { what: "x and out" });
        }
        let cols = out.cols;
        match &self.backend {
            Backend::Cpu => {
                let xs = crate::noise::host_values(x, "x")?;
                let q = crate::cpu::int8::quantize(&xs, cols as usize, out.qtype, &out.qparams);
                let words = crate::cpu::int8::pack(&q, cols as usize);
                store_bytes(&out.data, bytemuck::cast_slice(&words), "out")
            }
            Backend::Gpu(g) => dispatch_rows(g, true, x, "x", out, "out"),
        }
    }

    /// Quantizes a weight (or any f32 tensor viewed as `shape`'s matrix) with parameters
    /// computed by `observer` ([`Context::observe`] at 8 bits, converted by
    /// [`int8_qparams`]): per tensor for [`Observer::MinMax`] / [`Observer::Histogram`], per
    /// output channel (row) for [`Observer::MinMaxPerChannel`].
    pub fn quantize_observed(
        &self,
        x: &Tensor,
        shape: &WeightShape,
        observer: Observer,
        qtype: QType,
        scheme: QScheme,
    ) -> Result<QTensor> {
        check_dtype("x", DType::F32, x.dtype)?;
        let observed = self.observe(x, shape, observer, 8)?;
        let q = int8_qparams(&observed, qtype, scheme)?;
        self.quantize(x, shape.rows(), shape.cols(), qtype, &q)
    }

    /// Dequantizes `q` into `out` (f32, `q.rows · q.cols` values): `x = s · (q − z)`.
    pub fn dequantize(&self, q: &QTensor, out: &Tensor) -> Result<()> {
        q.check("q")?;
        self.check_owned(&q.data, "q")?;
        self.check_owned(out, "out")?;
        check_dtype("out", DType::F32, out.dtype)?;
        check_len("out", q.len(), out.len)?;
        if out.conflicts(&q.data) {
            return Err(Error::Aliasing { what: "q and out" });
        }
        let (rows, cols) = (q.rows, q.cols);
        match &self.backend {
            Backend::Cpu => {
                let words = host_u32(&q.data, "q")?;
                let v = crate::cpu::int8::unpack(&words, rows as usize, cols as usize, q.qtype);
                let x = crate::cpu::int8::dequantize(&v, cols as usize, &q.qparams);
                crate::noise::store_host(out, &x, "out")
            }
            Backend::Gpu(g) => dispatch_rows(g, false, out, "out", q, "q"),
        }
    }

    /// Packs host values (each in `qtype`'s range) into a new [`QTensor`].
    pub fn upload_quantized(
        &self,
        values: &[i32],
        rows: u64,
        cols: u64,
        qtype: QType,
        qparams: &QParams,
    ) -> Result<QTensor> {
        check_shape(rows, cols)?;
        check_qparams(qparams, qtype, rows)?;
        check_len("values", rows * cols, values.len() as u64)?;
        let (lo, hi) = qtype.range();
        if let Some(v) = values.iter().find(|v| !(lo..=hi).contains(*v)) {
            return Err(invalid("values", v, "outside the type's range"));
        }
        let words = crate::cpu::int8::pack(values, cols as usize);
        Ok(QTensor {
            data: self.upload(&words)?,
            rows,
            cols,
            qtype,
            qparams: qparams.clone(),
        })
    }

    /// Reads a [`QTensor`]'s values back (row-major, padding dropped).
    pub fn read_quantized(&self, q: &QTensor) -> Result<Vec<i32>> {
        q.check("q")?;
        let words = self.read_u32(&q.data)?;
        Ok(crate::cpu::int8::unpack(
            &words,
            q.rows as usize,
            q.cols as usize,
            q.qtype,
        ))
    }
}
