//! Compressed inference with product-quantized weights (paper §3.3): `Y = X · Ŵᵀ (+ b)` where
//! `Ŵ = decode(C, I)` is never materialised. Shader: `shaders/pq_matmul.wgsl`
//! ([`Family::PqMatmul`]); reference: [`crate::cpu::pq_matmul`].
//!
//! # Format ([`PqWeight`])
//!
//! A Linear weight `W` of `N = out_features` rows and `K = in_features` columns is cut into
//! `K / d` subvectors per row (`d = block_size`; subvector `j` of row `n` is `W[n, j·d ..
//! (j+1)·d]`, the blocks of [`crate::PqLayer`] in the same row-major block order), each
//! replaced by one of `Kc` centroids:
//! - the codebook `C` (`Kc × d`, row-major) is f32 ([`CodebookFormat::F32`]), f16
//!   ([`CodebookFormat::F16`], needs `shader-f16` on a device) or int8 with one symmetric scale
//!   ([`CodebookFormat::Int8`]: a u32 tensor, each centroid padded to `ceil(d / 4)` words, byte
//!   `t` of the centroid in byte `t % 4` of word `t / 4`; see
//!   [`crate::cpu::pq_matmul::quantize_codebook_int8`]);
//! - the indices `I`, one per subvector in block order, packed into u32 words: 4 per word
//!   ([`IndexFormat::U8`], `Kc ≤ 256`: exactly what [`Context::pack_indices_u8`] writes) or 2
//!   per word ([`IndexFormat::U16`], `Kc ≤ 65536`, see [`crate::cpu::pq_matmul::pack_u16`]).
//!   An index `≥ Kc` reads centroid `Kc − 1`, as [`Context::pq_decode`] does.
//!
//! # Kernels
//!
//! - [`Context::pq_matmul`] with [`PqMatmulMethod::Tiled`]: with an f32 codebook, the dense
//!   tiled matmul of [`crate::matmul`] (its configurations and autotuning) whose weight tiles
//!   are decoded from the indices and the codebook as they are staged
//!   (`shaders/matmul_pq.wgsl`, [`Family::PqLinear`]); with an f16 or int8 codebook, 32 × 32
//!   output tiles of 4 × 4 register blocks, the weight tile of each K-chunk decoded from the
//!   codebook (copied to workgroup memory when it fits, read from its storage buffer
//!   otherwise).
//! - [`PqMatmulMethod::Rows`] (what [`PqMatmulMethod::Auto`] picks where the table does not
//!   serve and `d % 4 == 0`, except on GPUs with an f32 codebook):
//!   one invocation per batch row, 8 output columns per workgroup; the 8 weight rows are
//!   decoded on the fly from the indices and the codebook (in workgroup memory when it fits),
//!   the same for every invocation, while each invocation reads its own activations as vec4s.
//! - [`PqMatmulMethod::Lut`] (batch 1 and small batches): a first pass builds the lookup table
//!   of the `Kc` dot products `x_j · c` of every group of `d` activations (`K/d × Kc` floats
//!   per batch row in a scratch buffer, 4 batch rows interleaved); the second sums, for every
//!   output, the table entries its indices select: one byte of weights read per `d` weights
//!   (u8 indices), one vec4 table load per index for 4 batch rows. The sums follow the
//!   context's [`AccessPattern`]: one invocation per output row (per-invocation, CPU-type
//!   adapters), or each row split over 32 invocations (coalesced index loads, a fixed-order
//!   tree sum; GPUs). Per-invocation with fewer than 4 batch rows, on Vulkan (not GL), when
//!   `d ≤ 16`, `Kc ≤ 4096` and `K/d % 4 == 0` (and `x` can be copied from), the table lives in
//!   uniform buffers instead, built and summed a slab of subvectors at a time (eight 64 KiB
//!   bindings: 512 subvectors at `Kc = 256`), each slab adding its sums to `y`: on CPU
//!   adapters a uniform buffer is the one place a lookup at a per-lane address is a gather
//!   rather than a loop over the lanes (`pq_matmul/uniform_lut.rs`).
//! - [`Context::pq_matmul_int8`]: int8 activations × int8 centroids with `dot4I8Packed` into
//!   i32, zero-point corrected, then `y = sx·sc·acc (+ b)` or the raw accumulators.
//! - [`Context::dense_matvec`]: the dense baseline `y = W x (+ b)` (f32 or f16 weights), in
//!   the same two layouts.
//!
//! Batch rows are processed in windows when `X` or `Y` exceed one bound window; the codebook
//! and the indices (and the dense weight) are bound whole.

use bytemuck::Pod;

use crate::error::{Error, Result, invalid};
use crate::matmul::{Bound, Hooks, LinearShape, Product, record, with_config};
use crate::noise::precision_of;
use crate::runtime::batch::Batch;
use crate::runtime::context::{AccessPattern, Backend, Context, check_dtype, wrong_context};
use crate::runtime::elementwise::device_buffer;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::tensor::{DType, Storage, Tensor, bytes_to_f64};

mod uniform_lut;

/// Largest block size `d` of the PQ matmul kernels.
pub const MAX_BLOCK_SIZE: u32 = 64;
/// Invocations per workgroup of every kernel of the family.
const WG: u32 = 64;
/// Largest batch for which [`PqMatmulMethod::Auto`] picks the lookup table.
pub const LUT_MAX_BATCH: u64 = 16;
/// Largest batch for which [`PqMatmulMethod::Auto`] keeps the lookup table on CPU-type adapters
/// that would otherwise take the decoded tiles (an f32 codebook, 64 KiB uniform bindings), when
/// `d ≥ 8` and `Kc ≤ 256`: at most one lookup per 8 weights, and a table no dearer to build than
/// K·256 multiply-adds per row. On lavapipe at 4096 × 4096, d = 8, Kc = 256 (ms, table
/// against decoded tiles): 32 rows 52–55 / 122–145, 64 rows 105–115 / 125–181, 80 rows
/// 130–145 / 190–244, 96 rows 165–166 / 156–164, 128 rows 211–215 / 168–169. (Measured before
/// the broadcast kernel kept its partial sums as vec4s, which made the decoded tiles faster; a
/// later sweep was too noisy to move the limit.)
pub const CPU_LUT_MAX_BATCH: u64 = 96;
/// Largest batch for which [`PqMatmulMethod::Auto`] picks the lookup table on GPUs (coalesced
/// access) when the codebook is f32: beyond, the dense matmul with decoded weight tiles. On an
/// H200 the table took 0.33 ms at 16 rows, about twice the dense matmul, and 0.027 ms at one.
pub const GPU_LUT_MAX_BATCH: u64 = 4;
/// Floats of the codebook copy in workgroup memory of the tiled kernel (8 KiB).
const CB_WG_FLOATS: u64 = 2048;
/// Subvectors per invocation of the vec4 LUT build (the `JB` override).
const LUT_JB: u32 = 16;
/// Tile rows / columns of the tiled kernels.
const TILE: u64 = 32;
/// Invocations per workgroup of the split-row kernels, and invocations sharing one row.
const SPLIT_WG: u32 = 256;
const SPLIT_SEG: u32 = 32;

/// Storage of the codebook of a [`PqWeight`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CodebookFormat {
    /// `Kc·d` f32 values.
    F32,
    /// `Kc·d` f16 values (devices need `shader-f16`).
    F16,
    /// int8 values `q`, the centroid being `q · scale`: a u32 tensor of `Kc · ceil(d/4)` words.
    Int8 {
        /// The symmetric per-codebook scale, positive and finite.
        scale: f32,
    },
}

/// Packing of the indices of a [`PqWeight`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexFormat {
    /// One byte per index, 4 per u32 word (`Kc ≤ 256`).
    U8,
    /// 16 bits per index, 2 per u32 word (`Kc ≤ 65536`).
    U16,
}

impl IndexFormat {
    /// Bits per index.
    pub fn bits(&self) -> u32 {
        match self {
            IndexFormat::U8 => 8,
            IndexFormat::U16 => 16,
        }
    }

    /// Indices per u32 word.
    pub fn per_word(&self) -> u64 {
        32 / self.bits() as u64
    }
}

/// A product-quantized Linear weight (see the [module docs](self) for the layouts).
#[derive(Clone, Debug)]
pub struct PqWeight {
    /// Rows `N` of the weight (outputs).
    pub out_features: u64,
    /// Columns `K` of the weight (inputs), a multiple of `block_size`.
    pub in_features: u64,
    /// Subvector dimension `d`, in `1..=64`.
    pub block_size: u32,
    /// Centroids `Kc`.
    pub n_centroids: u32,
    /// The codebook, in `codebook_format`.
    pub codebook: Tensor,
    /// How the codebook is stored.
    pub codebook_format: CodebookFormat,
    /// The packed indices (u32 words), `ceil(N · K/d / per_word)` of them.
    pub indices: Tensor,
    /// How the indices are packed.
    pub index_format: IndexFormat,
}

impl PqWeight {
    /// Subvectors per row, `K / d`.
    pub fn subvectors_per_row(&self) -> u64 {
        self.in_features / self.block_size.max(1) as u64
    }

    /// Checks the shapes, formats and lengths.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_BLOCK_SIZE).contains(&self.block_size) {
            return Err(invalid("block_size", self.block_size, "must be in 1..=64"));
        }
        if self.out_features == 0 || self.in_features == 0 {
            return Err(invalid(
                "weight shape",
                format!("{}x{}", self.out_features, self.in_features),
                "out_features and in_features must be at least 1",
            ));
        }
        if !self.in_features.is_multiple_of(self.block_size as u64) {
            return Err(Error::BlockSizeMismatch {
                cols: self.in_features,
                block_size: self.block_size as u64,
            });
        }
        match self.index_format {
            IndexFormat::U8 if !(1..=256).contains(&self.n_centroids) => {
                return Err(invalid(
                    "n_centroids",
                    self.n_centroids,
                    "u8 indices need 1..=256 centroids",
                ));
            }
            IndexFormat::U16 if !(1..=65536).contains(&self.n_centroids) => {
                return Err(invalid(
                    "n_centroids",
                    self.n_centroids,
                    "u16 indices need 1..=65536 centroids",
                ));
            }
            _ => {}
        }
        let kc = self.n_centroids as u64;
        let d = self.block_size as u64;
        let (dtype, len) = match self.codebook_format {
            CodebookFormat::F32 => (DType::F32, kc * d),
            CodebookFormat::F16 => (DType::F16, kc * d),
            CodebookFormat::Int8 { scale } => {
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(invalid(
                        "codebook scale",
                        scale,
                        "must be positive and finite",
                    ));
                }
                (DType::U32, kc * d.div_ceil(4))
            }
        };
        check_dtype("codebook", dtype, self.codebook.dtype)?;
        check_len("codebook", len, self.codebook.len)?;
        check_dtype("indices", DType::U32, self.indices.dtype)?;
        let count = self.out_features * self.subvectors_per_row();
        check_len(
            "indices",
            count.div_ceil(self.index_format.per_word()),
            self.indices.len,
        )
    }

    /// Bytes of the compressed weight: indices plus codebook.
    pub fn size_bytes(&self) -> u64 {
        self.indices.size_bytes() + self.codebook.size_bytes()
    }

    /// The codebook's values as f64 (int8 values times the scale).
    fn host_codebook(&self) -> Result<Vec<f64>> {
        let raw = host_bytes(&self.codebook, "codebook")?;
        Ok(match self.codebook_format {
            CodebookFormat::Int8 { scale } => {
                let words: Vec<u32> = bytemuck::pod_collect_to_vec(&raw);
                crate::cpu::pq_matmul::unpack_i8_rows(
                    &words,
                    self.n_centroids as usize,
                    self.block_size as usize,
                )
                .iter()
                .map(|&q| q as f64 * scale as f64)
                .collect()
            }
            _ => bytes_to_f64(&raw, self.codebook.dtype),
        })
    }

    /// The unpacked indices.
    fn host_indices(&self) -> Result<Vec<u32>> {
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&host_bytes(&self.indices, "indices")?);
        Ok(crate::cpu::pq_matmul::unpack_indices(
            &words,
            self.index_format.bits(),
            (self.out_features * self.subvectors_per_row()) as usize,
        ))
    }
}

/// How [`Context::pq_matmul`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PqMatmulMethod {
    /// On GPUs (coalesced access) with an f32 codebook: [`PqMatmulMethod::Lut`] up to
    /// [`GPU_LUT_MAX_BATCH`] rows, [`PqMatmulMethod::Tiled`] beyond. On CPU-type adapters
    /// with an f32 codebook beyond [`LUT_MAX_BATCH`] rows ([`CPU_LUT_MAX_BATCH`] when
    /// `d ≥ 8`, `Kc ≤ 256` and the table fits): [`PqMatmulMethod::Tiled`] (there
    /// the dense matmul's broadcast kernel) where the device has 64 KiB uniform bindings, else
    /// [`PqMatmulMethod::Lut`] when `8 · Kc ≤ N` and [`PqMatmulMethod::Tiled`] when not.
    /// Otherwise [`PqMatmulMethod::Lut`] for
    /// batches up to [`LUT_MAX_BATCH`] rows, and on CPU-type adapters for any batch when
    /// `4 · Kc ≤ N` (building the table then costs at most a quarter of the matmul), when the
    /// table of 4 rows fits a bound window; else [`PqMatmulMethod::Rows`] when `d % 4 == 0`,
    /// else [`PqMatmulMethod::Tiled`].
    Auto,
    /// Tiled matmul decoding weight tiles from the codebook: with an f32 codebook the dense
    /// matmul's kernel and autotuning (see the module docs), else 32 × 32 tiles of 4 × 4
    /// register blocks.
    Tiled,
    /// One invocation per batch row, 8 output columns per workgroup, weights decoded with
    /// lane-uniform loads of indices and centroids (block sizes that are a multiple of 4; the
    /// tiled kernel otherwise).
    Rows,
    /// Lookup-table matrix–vector product (falls back to the matmul kernels when the table of
    /// 4 batch rows, `4 · K/d · Kc` floats, does not fit one bound window), its sums in the
    /// context's [`AccessPattern`].
    Lut,
    /// [`PqMatmulMethod::Lut`] with the sums in the given access pattern.
    LutWith(AccessPattern),
}

/// Per-tensor affine int8 quantization of the activations: `x ≈ scale · (q − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    /// `sx`, positive and finite.
    pub scale: f32,
    /// `zx`, in `−128..=127`.
    pub zero_point: i32,
}

/// The output of [`Context::pq_matmul_int8`].
#[derive(Clone, Copy, Debug)]
pub enum PqOutput<'a> {
    /// f32 `y = sx·sc·acc (+ b)`, `M × N`.
    Dequantized(&'a Tensor),
    /// The raw i32 accumulators `Σ (xq − zx)·cq` (wrapping), stored as the bits of a u32
    /// tensor of `M × N` (read with [`Context::read_u32`] and cast to i32); the bias is not
    /// added.
    Raw(&'a Tensor),
}

/// Mirror of `PqmParams` in `shaders/pq_matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    kc: u32,
    nsub: u32,
    x_off: u32,
    y_off: u32,
    x_words: u32,
    scale: f32,
    zx: i32,
    has_bias: u32,
    _pad: u32,
}

fn check_len(what: &'static str, expected: u64, got: u64) -> Result<()> {
    if expected != got {
        return Err(Error::ShapeMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

fn host_bytes(t: &Tensor, what: &'static str) -> Result<Vec<u8>> {
    match &t.storage {
        Storage::Cpu(v) => Ok(v.lock().unwrap().clone()),
        Storage::Gpu { .. } => Err(wrong_context(what)),
    }
}

fn host_f64(t: &Tensor, what: &'static str) -> Result<Vec<f64>> {
    Ok(bytes_to_f64(&host_bytes(t, what)?, t.dtype))
}

fn write_host<T: Pod>(t: &Tensor, values: &[T]) -> Result<()> {
    match &t.storage {
        Storage::Cpu(v) => {
            v.lock()
                .unwrap()
                .copy_from_slice(bytemuck::cast_slice(values));
            Ok(())
        }
        Storage::Gpu { .. } => Err(wrong_context("out")),
    }
}

fn no_alias(out: &Tensor, inputs: &[&Tensor], what: &'static str) -> Result<()> {
    if inputs.iter().any(|t| out.conflicts(t)) {
        return Err(Error::Aliasing { what });
    }
    Ok(())
}

fn check_bias(bias: Option<&Tensor>, n: u64) -> Result<()> {
    if let Some(b) = bias {
        check_dtype("bias", DType::F32, b.dtype)?;
        check_len("bias", n, b.len)?;
    }
    Ok(())
}

/// A binding of elements `[first, first + count)` of `t` starting at the 256-byte boundary at
/// or below them, and the element shift of `first` from that boundary.
fn shifted_binding<'t>(
    t: &'t Tensor,
    first: u64,
    count: u64,
    what: &'static str,
) -> Result<(wgpu::BindingResource<'t>, u32)> {
    let (buffer, offset) = device_buffer(t, what)?;
    let elem = t.dtype.size();
    let start = offset + first * elem;
    let aligned = start / 256 * 256;
    let end = (start + count * elem).next_multiple_of(4);
    if end > buffer.size() {
        return Err(Error::BufferTooSmall {
            what,
            needed: end - start,
            offset: start,
            size: buffer.size(),
        });
    }
    Ok((
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: aligned,
            size: wgpu::BufferSize::new(end - aligned),
        }),
        ((start - aligned) / elem) as u32,
    ))
}

/// A tensor bound whole at its own offset (it must fit one storage binding).
fn whole<'t>(g: &Gpu, t: &'t Tensor, what: &'static str) -> Result<wgpu::BindingResource<'t>> {
    if t.size_bytes() > g.max_binding {
        return Err(invalid(
            what,
            t.size_bytes(),
            "bytes: must fit in one storage binding",
        ));
    }
    let (buffer, offset) = device_buffer(t, what)?;
    let size = t.size_bytes().next_multiple_of(4);
    if offset + size > buffer.size() {
        return Err(Error::BufferTooSmall {
            what,
            needed: size,
            offset,
            size: buffer.size(),
        });
    }
    Ok(wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: wgpu::BufferSize::new(size),
    }))
}

/// The bias binding, or `dummy` without a bias.
fn bias_binding<'a>(
    g: &Gpu,
    bias: Option<&'a Tensor>,
    dummy: &'a wgpu::Buffer,
) -> Result<wgpu::BindingResource<'a>> {
    match bias {
        Some(b) => whole(g, b, "bias"),
        None => Ok(dummy.as_entire_binding()),
    }
}

/// Fails when not even one batch row (`row_bytes`, the larger of an `x` and a `y` row) fits
/// in a bound window (`rows == 0`).
fn check_rows(rows: u64, row_bytes: u64) -> Result<()> {
    if rows == 0 {
        return Err(invalid(
            "row bytes",
            row_bytes,
            "a row of x and of y must fit in one bound window",
        ));
    }
    Ok(())
}

/// The batch windows `(first row, rows)` that cover `m` rows, `rows` (at least 1) at a time.
fn windows(m: u64, rows: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..m)
        .step_by(rows as usize)
        .map(move |m0| (m0, rows.min(m - m0)))
}

/// Batch rows per window so that every `(tensor row bytes)` window plus a 255-byte shift fits
/// in `max_window` bytes.
fn rows_per_window(max_window: u64, row_bytes: &[u64]) -> u64 {
    row_bytes
        .iter()
        .map(|&b| max_window.saturating_sub(256) / b.max(1))
        .min()
        .unwrap_or(0)
}

impl Context {
    /// The operand checks shared by the PQ matmuls, in this order: every tensor belongs to
    /// this context; `x` (`(tensor, name, dtype, len)`) and `y` (`(tensor, dtype, len)`, the
    /// dtype skipped when `None`) have their dtypes and lengths; the bias has `N` elements;
    /// `y` aliases no input (`what` names the check in the error).
    fn check_pq_operands(
        &self,
        (x, x_name, x_dtype, x_len): (&Tensor, &'static str, DType, u64),
        (y, y_dtype, y_len): (&Tensor, Option<DType>, u64),
        weight: &PqWeight,
        bias: Option<&Tensor>,
        what: &'static str,
    ) -> Result<()> {
        for (t, name) in [
            (x, x_name),
            (y, "y"),
            (&weight.codebook, "codebook"),
            (&weight.indices, "indices"),
        ] {
            self.check_owned(t, name)?;
        }
        if let Some(b) = bias {
            self.check_owned(b, "bias")?;
        }
        check_dtype(x_name, x_dtype, x.dtype)?;
        if let Some(dt) = y_dtype {
            check_dtype("y", dt, y.dtype)?;
        }
        check_len(x_name, x_len, x.len)?;
        check_len("y", y_len, y.len)?;
        check_bias(bias, weight.out_features)?;
        let mut inputs = vec![x, &weight.codebook, &weight.indices];
        inputs.extend(bias);
        no_alias(y, &inputs, what)
    }

    /// `y = x · decode(weight)ᵀ (+ bias)`: `x` f32 `m × K` (row-major), `y` f32 `m × N`,
    /// `bias` f32 `N`. The CPU backend computes the f64 reference. `y` must not share a
    /// buffer with the inputs.
    pub fn pq_matmul(
        &self,
        x: &Tensor,
        m: u64,
        weight: &PqWeight,
        bias: Option<&Tensor>,
        y: &Tensor,
        method: PqMatmulMethod,
    ) -> Result<()> {
        weight.validate()?;
        let (n, k) = (weight.out_features, weight.in_features);
        self.check_pq_operands(
            (x, "x", DType::F32, m * k),
            (y, Some(DType::F32), m * n),
            weight,
            bias,
            "pq_matmul inputs/y",
        )?;
        if m == 0 {
            return Ok(());
        }
        match &self.backend {
            Backend::Cpu => {
                let b = bias.map(|b| host_f64(b, "bias")).transpose()?;
                let out = crate::cpu::pq_matmul::pq_matmul(
                    &host_f64(x, "x")?,
                    m as usize,
                    k as usize,
                    &weight.host_codebook()?,
                    weight.block_size as usize,
                    &weight.host_indices()?,
                    n as usize,
                    b.as_deref(),
                );
                let out: Vec<f32> = out.iter().map(|&v| v as f32).collect();
                write_host(y, &out)
            }
            Backend::Gpu(g) => match pq_kernel(g, m, weight, method) {
                PqKernel::Decoded => pq_linear(g, x, m, weight, bias, y),
                kernel => {
                    let mut batch = Batch::new(g, "pq_matmul")?;
                    record_pq_matmul(g, &mut batch, x, m, weight, bias, y, method, kernel)?;
                    batch.finish().map(|_| ())
                }
            },
        }
    }

    /// The integer path: `xq` holds int8 activations (`m` rows of `K` bytes, each row padded
    /// to `ceil(K/4)` u32 words, see [`crate::cpu::pq_matmul::pack_i8_rows`]) quantized with
    /// `act`; `weight` must have an [`CodebookFormat::Int8`] codebook (scale `sc`). Computes
    /// `acc = Σ (xq − zx)·cq` in i32 and writes `out` (see [`PqOutput`]). i32 accumulators
    /// wrap: `K · 255 · 127` must stay below 2³¹ for a meaningful result (K ≤ 66,000).
    pub fn pq_matmul_int8(
        &self,
        xq: &Tensor,
        m: u64,
        act: ActQuant,
        weight: &PqWeight,
        bias: Option<&Tensor>,
        out: PqOutput<'_>,
    ) -> Result<()> {
        weight.validate()?;
        let CodebookFormat::Int8 { scale: sc } = weight.codebook_format else {
            return Err(invalid(
                "codebook_format",
                format!("{:?}", weight.codebook_format),
                "the integer path needs an int8 codebook",
            ));
        };
        if !(act.scale.is_finite() && act.scale > 0.0) {
            return Err(invalid(
                "activation scale",
                act.scale,
                "must be positive and finite",
            ));
        }
        if !(-128..=127).contains(&act.zero_point) {
            return Err(invalid(
                "activation zero_point",
                act.zero_point,
                "must be in -128..=127",
            ));
        }
        let (n, k) = (weight.out_features, weight.in_features);
        let x_words = k.div_ceil(4);
        let (y, raw) = match out {
            PqOutput::Dequantized(t) => {
                check_dtype("y", DType::F32, t.dtype)?;
                (t, false)
            }
            PqOutput::Raw(t) => {
                check_dtype("y", DType::U32, t.dtype)?;
                (t, true)
            }
        };
        // `y`'s dtype was checked above (it depends on the output kind).
        self.check_pq_operands(
            (xq, "xq", DType::U32, m * x_words),
            (y, None, m * n),
            weight,
            bias,
            "pq_matmul_int8 inputs/y",
        )?;
        if m == 0 {
            return Ok(());
        }
        match &self.backend {
            Backend::Cpu => {
                let cq: Vec<u32> =
                    bytemuck::pod_collect_to_vec(&host_bytes(&weight.codebook, "codebook")?);
                let xw: Vec<u32> = bytemuck::pod_collect_to_vec(&host_bytes(xq, "xq")?);
                let acc = crate::cpu::pq_matmul::pq_matmul_int8_acc(
                    &xw,
                    m as usize,
                    k as usize,
                    act.zero_point,
                    &cq,
                    weight.n_centroids as usize,
                    weight.block_size as usize,
                    &weight.host_indices()?,
                    n as usize,
                );
                if raw {
                    return write_host(y, &acc);
                }
                let b = bias.map(|b| host_f64(b, "bias")).transpose()?;
                let s = act.scale as f64 * sc as f64;
                let out: Vec<f32> = acc
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| {
                        (a as f64 * s + b.as_ref().map_or(0.0, |b| b[i % n as usize])) as f32
                    })
                    .collect();
                write_host(y, &out)
            }
            Backend::Gpu(g) => {
                let mut batch = Batch::new(g, "pq_matmul_int8")?;
                let d = weight.block_size;
                let dw = d.div_ceil(4);
                let s = (32 / d).max(1);
                let pipeline = g.pipeline(PipelineKey {
                    family: Family::PqMatmul,
                    precision: Precision::F32,
                    entry: "pq_matmul_i8",
                    overrides: vec![
                        ("WG", WG),
                        ("D", d),
                        ("S", s),
                        ("DW", dw),
                        ("QTILE_LEN", s * dw * 8),
                        ("IDX_BITS", weight.index_format.bits()),
                        ("RAW", raw as u32),
                    ],
                })?;
                let dummy = batch.scratch(16);
                let dummy2 = batch.scratch(16);
                let codebook = whole(g, &weight.codebook, "codebook")?;
                let indices = whole(g, &weight.indices, "indices")?;
                let bias_b = bias_binding(g, bias, &dummy)?;
                let rows = rows_per_window(g.max_window, &[x_words * 4, n * 4]);
                check_rows(rows, x_words.max(n) * 4)?;
                for (m0, mw) in windows(m, rows) {
                    let (xb, x_off) = shifted_binding(xq, m0 * x_words, mw * x_words, "xq")?;
                    let (yb, y_off) = shifted_binding(y, m0 * n, mw * n, "y")?;
                    let u = batch.uniform(&Params {
                        m: mw as u32,
                        n: n as u32,
                        k: k as u32,
                        kc: weight.n_centroids,
                        nsub: (k / d as u64) as u32,
                        x_off,
                        y_off,
                        x_words: x_words as u32,
                        scale: act.scale * sc,
                        zx: act.zero_point,
                        has_bias: bias.is_some() as u32,
                        _pad: 0,
                    });
                    // Both outputs are in the layout: the unused one gets the dummy.
                    let (out_binding, other) = if raw { (9, 6) } else { (6, 9) };
                    let bindings = vec![
                        (0, u.as_entire_binding()),
                        (8, xb),
                        (3, codebook.clone()),
                        (4, indices.clone()),
                        (5, bias_b.clone()),
                        (out_binding, yb),
                        (other, dummy2.as_entire_binding()),
                    ];
                    let groups = mw.div_ceil(TILE) * n.div_ceil(TILE);
                    batch.dispatch_at(&pipeline, &bindings, groups)?;
                }
                batch.finish().map(|_| ())
            }
        }
    }

    /// The dense baseline `y = x · weightᵀ (+ bias)` for small batches: `weight` f32 or f16
    /// (`n × k`, row-major; f16 needs `shader-f16` on a device), `x` f32 `m × k`, `y` f32
    /// `m × n`; `k` must be a multiple of 4. Every tensor is bound whole. Each group of 4
    /// batch rows reads the whole weight (a matrix–vector kernel, not a matmul). The rows are
    /// laid out as the context's [`AccessPattern`] says.
    #[allow(clippy::too_many_arguments)]
    pub fn dense_matvec(
        &self,
        x: &Tensor,
        m: u64,
        weight: &Tensor,
        n: u64,
        k: u64,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<()> {
        self.dense_matvec_with(x, m, weight, n, k, bias, y, AccessPattern::Auto)
    }

    /// [`Context::dense_matvec`] in the given access pattern (ignored by the CPU backend).
    #[allow(clippy::too_many_arguments)]
    pub fn dense_matvec_with(
        &self,
        x: &Tensor,
        m: u64,
        weight: &Tensor,
        n: u64,
        k: u64,
        bias: Option<&Tensor>,
        y: &Tensor,
        access: AccessPattern,
    ) -> Result<()> {
        for (t, what) in [(x, "x"), (y, "y"), (weight, "weight")] {
            self.check_owned(t, what)?;
        }
        if let Some(b) = bias {
            self.check_owned(b, "bias")?;
        }
        if n == 0 || k == 0 || !k.is_multiple_of(4) {
            return Err(invalid(
                "k",
                k,
                "n and k must be at least 1 and k a multiple of 4",
            ));
        }
        check_dtype("x", DType::F32, x.dtype)?;
        check_dtype("y", DType::F32, y.dtype)?;
        let precision = precision_of(weight, "weight")?;
        check_len("x", m * k, x.len)?;
        check_len("weight", n * k, weight.len)?;
        check_len("y", m * n, y.len)?;
        check_bias(bias, n)?;
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        no_alias(y, &inputs, "dense_matvec inputs/y")?;
        if m == 0 {
            return Ok(());
        }
        match &self.backend {
            Backend::Cpu => {
                let b = bias.map(|b| host_f64(b, "bias")).transpose()?;
                let out = crate::cpu::pq_matmul::dense_matmul(
                    &host_f64(x, "x")?,
                    &host_f64(weight, "weight")?,
                    m as usize,
                    n as usize,
                    k as usize,
                    b.as_deref(),
                );
                let out: Vec<f32> = out.iter().map(|&v| v as f32).collect();
                write_host(y, &out)
            }
            Backend::Gpu(g) => {
                let mb = if m >= 4 { 4 } else { 1 };
                let split = access.coalesced(g.coalesced);
                let (entry, overrides) = if split {
                    let o = vec![("WG", SPLIT_WG), ("MB", mb), ("SEG", SPLIT_SEG)];
                    ("dense_matvec_split", o)
                } else {
                    ("dense_matvec", vec![("WG", WG), ("MB", mb)])
                };
                let pipeline = g.pipeline(PipelineKey {
                    family: Family::PqMatmul,
                    precision,
                    entry,
                    overrides,
                })?;
                let mut batch = Batch::new(g, "dense_matvec")?;
                let dummy = batch.scratch(16);
                let u = batch.uniform(&Params {
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    has_bias: bias.is_some() as u32,
                    ..Default::default()
                });
                let mut bindings = vec![
                    (0, u.as_entire_binding()),
                    (1, whole(g, x, "x")?),
                    (2, whole(g, weight, "weight")?),
                    (6, whole(g, y, "y")?),
                ];
                bindings.push((5, bias_binding(g, bias, &dummy)?));
                let rows_per_group = match (split, mb) {
                    (true, _) => (SPLIT_WG / SPLIT_SEG) as u64,
                    (false, 1) => 2 * WG as u64,
                    (false, _) => WG as u64,
                };
                let groups = n.div_ceil(rows_per_group) * m.div_ceil(mb as u64);
                batch.dispatch_at(&pipeline, &bindings, groups)?;
                batch.finish().map(|_| ())
            }
        }
    }
}

/// The kernel [`Context::pq_matmul`] runs on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PqKernel {
    /// The dense tiled matmul with decoded weight tiles ([`pq_linear`]).
    Decoded,
    /// The lookup table (build, then gather).
    Lut,
    /// One invocation per batch row (`pq_matmul_rows`).
    Rows,
    /// 32 × 32 tiles (`pq_matmul_tiled`).
    Tiled32,
}

/// What `method` resolves to for `m` rows of `weight` on `g` (see [`PqMatmulMethod`]).
pub(crate) fn pq_kernel(g: &Gpu, m: u64, weight: &PqWeight, method: PqMatmulMethod) -> PqKernel {
    let traits = DeviceTraits {
        coalesced: g.coalesced,
        uniform_tables: g.uniform_tables,
        max_window: g.max_window,
    };
    choose_kernel(traits, m, weight, method)
}

/// What [`choose_kernel`] needs to know of a device.
#[derive(Clone, Copy, Debug)]
struct DeviceTraits {
    /// A GPU (coalesced access), not a CPU-type adapter.
    coalesced: bool,
    /// 64 KiB uniform bindings.
    uniform_tables: bool,
    /// Bytes of one bound storage window.
    max_window: u64,
}

/// [`pq_kernel`] on the device's traits alone.
fn choose_kernel(g: DeviceTraits, m: u64, weight: &PqWeight, method: PqMatmulMethod) -> PqKernel {
    let kc = weight.n_centroids as u64;
    let n = weight.out_features;
    let f32_codebook = weight.codebook_format == CodebookFormat::F32;
    // The table of the batch rows interleaved by 4 (1 below 4 rows) must fit a bound window.
    let group: u64 = if m >= 4 { 4 } else { 1 };
    let lut_fits = group * weight.subvectors_per_row() * kc * 4 <= g.max_window;
    let cpu_lut_max = if f32_codebook && lut_fits && weight.block_size >= 8 && kc <= 256 {
        CPU_LUT_MAX_BATCH
    } else {
        LUT_MAX_BATCH
    };
    let decoded = f32_codebook
        && match method {
            PqMatmulMethod::Tiled => true,
            PqMatmulMethod::Auto if g.coalesced => m > GPU_LUT_MAX_BATCH,
            // lavapipe, 512 rows: at N = 1024 (Kc = 256) the decoded tiles took 101 ms against
            // 183 ms for the table; at N = 4096 1212 ms against 1051 ms with the tiled kernel,
            // 498 ms against 914 ms with the broadcast kernel (which needs uniform tables).
            PqMatmulMethod::Auto => m > cpu_lut_max && (g.uniform_tables || 8 * kc > n),
            _ => false,
        };
    let lut = match method {
        // Beyond small batches the table still wins while building it (M·K·Kc multiply-adds)
        // costs at most a quarter of the matmul (M·N·K): one lookup replaces d multiply-adds.
        // On GPUs (coalesced access) the table of many rows does not: on an H200 at 512 rows it
        // took 5× the time of the rows kernel.
        PqMatmulMethod::Auto => {
            lut_fits && (m <= LUT_MAX_BATCH || (!g.coalesced && (m <= cpu_lut_max || 4 * kc <= n)))
        }
        PqMatmulMethod::Lut | PqMatmulMethod::LutWith(_) => lut_fits,
        PqMatmulMethod::Tiled | PqMatmulMethod::Rows => false,
    };
    if decoded {
        PqKernel::Decoded
    } else if lut {
        PqKernel::Lut
    } else if weight.block_size.is_multiple_of(4) && method != PqMatmulMethod::Tiled {
        PqKernel::Rows
    } else {
        PqKernel::Tiled32
    }
}

/// Mirror of `PqLinearParams` in `shaders/matmul_pq.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PqLinearParams {
    kc: u32,
    nsub: u32,
    _pad: [u32; 2],
}

/// `y = x · decode(weight)ᵀ (+ bias)` by the dense matmul of [`crate::matmul`] (its
/// configurations and autotuning, under [`Family::PqLinear`]), the weight tiles decoded from
/// the codebook and indices as they are staged (`shaders/matmul_pq.wgsl`).
fn pq_linear(
    g: &Gpu,
    x: &Tensor,
    m: u64,
    weight: &PqWeight,
    bias: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    let shape = LinearShape::new(1, m, weight.in_features, weight.out_features);
    shape.validate()?;
    let bound = Bound::new(Product::Forward, shape, (x, &weight.indices, y), bias);
    with_config(g, Family::PqLinear, &bound, |config| {
        let mut batch = Batch::new(g, "pq_matmul")?;
        let dummy = batch.scratch(16);
        let params = batch.uniform(&PqLinearParams {
            kc: weight.n_centroids,
            nsub: weight.subvectors_per_row() as u32,
            _pad: [0; 2],
        });
        let hooks = Hooks {
            family: Family::PqLinear,
            overrides: vec![
                ("D", weight.block_size),
                ("IDX_BITS", weight.index_format.bits()),
            ],
            bindings: vec![
                (5, params.as_entire_binding()),
                (6, whole(g, &weight.indices, "indices")?),
                (7, whole(g, &weight.codebook, "codebook")?),
            ],
            b_computed: true,
            b_only: &[5, 6, 7],
            c_only: &[],
        };
        record(
            g,
            &mut batch,
            Precision::F32,
            config,
            &bound,
            &hooks,
            &dummy,
        )?;
        batch.finish().map(|_| ())
    })
}

/// Records one PQ matmul with `kernel` (from [`pq_kernel`], not [`PqKernel::Decoded`]; see
/// [`Context::pq_matmul`]; arguments validated).
#[allow(clippy::too_many_arguments)]
fn record_pq_matmul(
    g: &Gpu,
    batch: &mut Batch,
    x: &Tensor,
    m: u64,
    weight: &PqWeight,
    bias: Option<&Tensor>,
    y: &Tensor,
    method: PqMatmulMethod,
    kernel: PqKernel,
) -> Result<()> {
    let (n, k) = (weight.out_features, weight.in_features);
    let d = weight.block_size;
    let kc = weight.n_centroids as u64;
    let nsub = k / d as u64;
    let (precision, cb_fmt, cb_binding) = match weight.codebook_format {
        CodebookFormat::F32 => (Precision::F32, 0, 2),
        CodebookFormat::F16 => (Precision::F16, 0, 2),
        CodebookFormat::Int8 { .. } => (Precision::F32, 1, 3),
    };
    let scale = match weight.codebook_format {
        CodebookFormat::Int8 { scale } => scale,
        _ => 1.0,
    };
    // Table bytes per batch row; the table holds whole groups of 4 batch rows.
    let lut_row = nsub * kc * 4;
    // Batch rows interleaved in the table (G): 4 from 4 rows on (one vec4 load per index for
    // 4 rows), else 1 (a 4× smaller table, which stays in cache).
    let group: u64 = if m >= 4 { 4 } else { 1 };
    let lut = kernel == PqKernel::Lut;
    let split = match method {
        PqMatmulMethod::LutWith(access) => access.coalesced(g.coalesced),
        _ => g.coalesced,
    };
    let rows_kernel = kernel == PqKernel::Rows;
    let s = (32 / d).max(1);
    let bk = s * d;
    let tiles_bytes = if lut || rows_kernel {
        0
    } else {
        2 * bk as u64 * 128
    };
    let wg_limit = (g.limits.max_compute_workgroup_storage_size as u64).min(16384);
    // The LUT build reads each centroid a few times per workgroup: storage (cached) is cheaper
    // than a copy per workgroup there.
    let cb_wg = !lut && kc * d as u64 <= CB_WG_FLOATS && CB_WG_FLOATS * 4 + tiles_bytes <= wg_limit;
    let common = || -> Vec<(&'static str, u32)> {
        vec![
            ("WG", WG),
            ("D", d),
            ("IDX_BITS", weight.index_format.bits()),
            ("CB_FMT", cb_fmt),
            ("CB_WG", cb_wg as u32),
            // One size for every codebook that fits: fewer pipeline variants.
            ("CB_LEN", if cb_wg { CB_WG_FLOATS as u32 } else { 1 }),
            ("DW", d.div_ceil(4)),
        ]
    };
    let dummy = batch.scratch(16);
    let codebook = whole(g, &weight.codebook, "codebook")?;
    let indices = whole(g, &weight.indices, "indices")?;
    let bias_b = bias_binding(g, bias, &dummy)?;
    // The other codebook binding gets a dummy.
    let cb_bindings = [
        (cb_binding, codebook.clone()),
        (5 - cb_binding, dummy.as_entire_binding()),
    ];
    let mut rows = rows_per_window(g.max_window, &[k * 4, n * 4]);
    if lut {
        rows = rows.min(g.max_window / (group * lut_row) * group);
    }
    check_rows(rows, k.max(n) * 4)?;
    let params = |mw: u64, x_off: u32, y_off: u32| Params {
        m: mw as u32,
        n: n as u32,
        k: k as u32,
        kc: kc as u32,
        nsub: nsub as u32,
        x_off,
        y_off,
        x_words: 0,
        scale,
        zx: 0,
        has_bias: bias.is_some() as u32,
        _pad: 0,
    };
    let full_k = kc == 1 << weight.index_format.bits();
    if lut && !split && uniform_lut::fits(g, x, m, weight) {
        let mut overrides = common();
        overrides.retain(|(name, _)| !matches!(*name, "CB_WG" | "CB_LEN"));
        let recording = uniform_lut::Recording {
            params: &params,
            codebook: &cb_bindings,
            indices,
            bias: bias_b,
            overrides,
            precision,
            full_k,
        };
        uniform_lut::record(g, batch, (x, y), m, weight, &recording)?;
    } else if lut {
        // D % 4 == 0: one invocation per centroid and JB subvectors (vec4 activations).
        let vec4_build = d.is_multiple_of(4);
        // Unbatched rows and whole vec4s of centroids: 4 centroids per invocation.
        let quad_build = vec4_build && group == 1 && kc.is_multiple_of(4);
        // Subvectors per build invocation: a CPU lane reuses its centroids over 16; a GPU
        // needs the invocations (Kc/4 · K/d at one row: 32768 for the 4096 × 4096 bench).
        let jb = if split { 1 } else { LUT_JB };
        let mut o = common();
        o.push(("G", group as u32));
        if vec4_build {
            o.push(("JB", jb));
        }
        let build = g.pipeline(PipelineKey {
            family: Family::PqMatmul,
            precision,
            entry: match (vec4_build, quad_build) {
                (true, true) => "pq_lut_build4x4",
                (true, false) => "pq_lut_build4",
                _ => "pq_lut_build",
            },
            overrides: o,
        })?;
        let mut o = common();
        o.retain(|(name, _)| !matches!(*name, "CB_FMT" | "CB_WG" | "CB_LEN" | "DW" | "D" | "WG"));
        o.push(("G", group as u32));
        o.push(("FULL_K", full_k as u32));
        let aligned = nsub.is_multiple_of(4 * weight.index_format.per_word());
        let (entry, wg, rows_per_group) = match (split, aligned) {
            (true, _) => {
                o.push(("SEG", SPLIT_SEG));
                (
                    "pq_lut_gather_split",
                    SPLIT_WG,
                    (SPLIT_WG / SPLIT_SEG) as u64,
                )
            }
            (false, true) => ("pq_lut_gather4", WG, WG as u64),
            (false, false) => ("pq_lut_gather", WG, WG as u64),
        };
        o.push(("WG", wg));
        let gather = g.pipeline(PipelineKey {
            family: Family::PqMatmul,
            precision: Precision::F32,
            entry,
            overrides: o,
        })?;
        // Bound as vec4s by the gathers: whole vec4s.
        let table_bytes = |rows: u64| (rows.div_ceil(group) * group * lut_row).next_multiple_of(16);
        // The builds write every entry of the real rows; padding rows of a group of 4 stay
        // zero.
        let table = if m.is_multiple_of(group) {
            batch.scratch_uncleared(table_bytes(rows.min(m)))
        } else {
            batch.scratch(table_bytes(rows.min(m)))
        };
        for (m0, mw) in windows(m, rows) {
            let (xb, x_off) = shifted_binding(x, m0 * k, mw * k, "x")?;
            let (yb, y_off) = shifted_binding(y, m0 * n, mw * n, "y")?;
            let u = batch.uniform(&params(mw, x_off, y_off));
            let lut_b = crate::runtime::batch::sized(&table, table_bytes(mw));
            let mut b = vec![(0, u.as_entire_binding()), (1, xb), (7, lut_b.clone())];
            b.extend(cb_bindings.iter().cloned());
            let groups = if quad_build {
                (kc / 4).div_ceil(WG as u64) * mw * nsub.div_ceil(jb as u64)
            } else if vec4_build {
                kc.div_ceil(WG as u64) * mw * nsub.div_ceil(jb as u64)
            } else {
                (mw * nsub * kc.div_ceil(4)).div_ceil(WG as u64)
            };
            batch.dispatch_at(&build, &b, groups)?;
            let b = vec![
                (0, u.as_entire_binding()),
                (4, indices.clone()),
                (5, bias_b.clone()),
                (6, yb),
                (7, lut_b.clone()),
                (10, lut_b),
            ];
            let groups = if split {
                n.div_ceil(rows_per_group) * mw.div_ceil(group)
            } else {
                (n * mw.div_ceil(group)).div_ceil(rows_per_group)
            };
            batch.dispatch_at(&gather, &b, groups)?;
        }
    } else {
        // One output tile of `tile_m` batch rows × `tile_n` outputs per workgroup.
        let (pipeline, tile_m, tile_n) = if rows_kernel {
            let mut o = common();
            // 512 or 1024 vec4s (8 or 16 KiB): few pipeline variants.
            let cb4 = (kc * d as u64 / 4).next_power_of_two().max(512);
            let cb_wg = cb4 * 16 <= wg_limit;
            for (name, v) in &mut o {
                if *name == "CB_WG" {
                    *v = cb_wg as u32;
                }
                if *name == "CB_LEN" {
                    *v = 1;
                }
            }
            let wg = if m <= 16 { 16 } else { 64 };
            o.retain(|(name, _)| *name != "WG");
            o.extend([("WG", wg), ("CB4_LEN", if cb_wg { cb4 as u32 } else { 1 })]);
            let pipeline = g.pipeline(PipelineKey {
                family: Family::PqMatmul,
                precision,
                entry: "pq_matmul_rows",
                overrides: o,
            })?;
            (pipeline, wg as u64, 8)
        } else {
            let mut o = common();
            o.extend([("S", s), ("BK", bk), ("TILE_LEN", bk * 8)]);
            let pipeline = g.pipeline(PipelineKey {
                family: Family::PqMatmul,
                precision,
                entry: "pq_matmul_tiled",
                overrides: o,
            })?;
            (pipeline, TILE, TILE)
        };
        for (m0, mw) in windows(m, rows) {
            let (xb, x_off) = shifted_binding(x, m0 * k, mw * k, "x")?;
            let (yb, y_off) = shifted_binding(y, m0 * n, mw * n, "y")?;
            let u = batch.uniform(&params(mw, x_off, y_off));
            let mut b = vec![
                (0, u.as_entire_binding()),
                (1, xb),
                (4, indices.clone()),
                (5, bias_b.clone()),
                (6, yb),
            ];
            b.extend(cb_bindings.iter().cloned());
            let groups = mw.div_ceil(tile_m) * n.div_ceil(tile_n);
            batch.dispatch_at(&pipeline, &b, groups)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendChoice;

    fn weight(ctx: &Context, n: u64, d: u32, kc: u32, format: CodebookFormat) -> PqWeight {
        let k = 4096;
        let words = n * (k / d as u64) / 4;
        PqWeight {
            out_features: n,
            in_features: k,
            block_size: d,
            n_centroids: kc,
            codebook: ctx.empty(kc as u64 * d as u64, DType::F32).unwrap(),
            codebook_format: format,
            indices: ctx.empty(words, DType::U32).unwrap(),
            index_format: IndexFormat::U8,
        }
    }

    #[test]
    fn auto_keeps_the_table_up_to_96_rows_on_cpu_adapters() {
        let ctx = Context::with_backend(BackendChoice::Cpu).unwrap();
        let lavapipe = DeviceTraits {
            coalesced: false,
            uniform_tables: true,
            max_window: 128 << 20,
        };
        let gpu = DeviceTraits {
            coalesced: true,
            ..lavapipe
        };
        let auto = |g, m, w: &PqWeight| choose_kernel(g, m, w, PqMatmulMethod::Auto);
        let w8 = weight(&ctx, 4096, 8, 256, CodebookFormat::F32);
        assert_eq!(auto(lavapipe, 16, &w8), PqKernel::Lut);
        assert_eq!(auto(lavapipe, 96, &w8), PqKernel::Lut);
        assert_eq!(auto(lavapipe, 97, &w8), PqKernel::Decoded);
        assert_eq!(auto(gpu, 4, &w8), PqKernel::Lut);
        assert_eq!(auto(gpu, 5, &w8), PqKernel::Decoded);
        // Not measured beyond 16 rows: more lookups per weight (d = 4), a dearer table
        // (Kc = 512), or a table that does not fit the window.
        let w4 = weight(&ctx, 4096, 4, 256, CodebookFormat::F32);
        assert_eq!(auto(lavapipe, 17, &w4), PqKernel::Decoded);
        let wide = weight(&ctx, 4096, 8, 512, CodebookFormat::F32);
        assert_eq!(auto(lavapipe, 17, &wide), PqKernel::Decoded);
        let small_window = DeviceTraits {
            max_window: 1 << 20,
            ..lavapipe
        };
        assert_eq!(auto(small_window, 17, &w8), PqKernel::Decoded);
        // Narrow layers (4·Kc > N) keep the table up to 96 rows too.
        let narrow = weight(&ctx, 512, 8, 256, CodebookFormat::F32);
        assert_eq!(auto(lavapipe, 96, &narrow), PqKernel::Lut);
        assert_eq!(auto(lavapipe, 97, &narrow), PqKernel::Decoded);
        // f16 codebooks keep their rule: the table up to 16 rows, beyond only when 4·Kc ≤ N.
        let narrow_f16 = weight(&ctx, 512, 8, 256, CodebookFormat::F16);
        assert_eq!(auto(lavapipe, 16, &narrow_f16), PqKernel::Lut);
        assert_eq!(auto(lavapipe, 17, &narrow_f16), PqKernel::Rows);
    }
}
