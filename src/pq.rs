//! Product-quantized (PQ / iPQ) layers: the compressed format, its decode back to a dense
//! weight, and size accounting. Shader: `shaders/pq.wgsl`; reference: [`crate::cpu::pq`].
//!
//! # Format
//!
//! A [`PqLayer`] stores a weight of [`WeightShape`] as a codebook of `K` centroids of
//! `block_size` values and one centroid index per block. Blocks are those of the noise kernels:
//! the weight is viewed as its row-major `(rows, cols)` matrix and block `b` is the flat elements
//! `b·block_size .. (b+1)·block_size`, i.e. `block_size` consecutive elements of one row.
//!
//! These are exactly fairseq's PQ subvectors (`fairseq/modules/quantization/pq`):
//! - `Linear (out, in)` and `Embedding (num, dim)`: `W[o, k·bs .. (k+1)·bs]`;
//! - `Conv2d (out, in, kh, kw)`: consecutive `bs`-chunks of the row-major flattened `in·kh·kw`
//!   filter of each output channel.
//!
//! Only their ORDER differs: ours is row-major block order (`b = o·cols/bs + k`), while
//! fairseq's EM matrix `(bs, n_subvectors)` orders its columns `k·out + o`. The order changes
//! nothing in k-means but the random initialisation (which columns are sampled), so assignments
//! from fairseq are converted by permuting them, not by changing the codebook.
//!
//! # Size accounting
//!
//! [`pq_size`] and [`PqSizeReport`] count bytes host-side, without a device, the way fairseq's
//! `SizeTracker` does (see [`pq_size`] for the exact rules and the differences).

use std::fmt;

use bytemuck::Pod;

use crate::error::{Error, Result, invalid};
use crate::noise::check_len;
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype, wrong_context};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::{Window, windows};
use crate::shape::WeightShape;
use crate::tensor::{DType, Storage, Tensor};

/// Largest number of centroids of a codebook (16-bit indices).
pub const MAX_CENTROIDS: u32 = 65536;
/// Invocations per workgroup of the decode kernel.
const WG: u32 = 64;
/// Elements per invocation (`EPT` in the shader).
const EPT: u64 = 4;
/// Bytes in a MiB: fairseq's "MB".
pub const MIB: f64 = 1024.0 * 1024.0;

/// A product-quantized weight: `K` centroids of `block_size` values and one centroid index per
/// block (see the [module docs](self) for the block numbering and fairseq's layouts).
///
/// Decode with [`Context::pq_decode`]: `Ŵ[b·bs + j] = codebook[assignments[b]·bs + j]`. An
/// index `≥ K` (only possible from corrupt data: the library never writes one) decodes to
/// centroid `K − 1`: indices live on the device, so they are clamped there instead of being
/// validated on the host, which would need a readback.
#[derive(Clone, Debug)]
pub struct PqLayer {
    /// Shape of the decoded weight; `shape.cols()` must be a multiple of `block_size`.
    pub shape: WeightShape,
    /// Values per block (the subvector dimension `d`), at least 1.
    pub block_size: u32,
    /// `K × block_size` f32 centroids, row-major.
    pub codebook: Tensor,
    /// One u32 centroid index per block, `shape.numel() / block_size` of them, in block order.
    pub assignments: Tensor,
    /// Number of centroids `K`, in `1..=65536`.
    pub n_centroids: u32,
}

/// Mirror of `PqParams` in `shaders/pq.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct PqParams {
    n: u32,
    bs: u32,
    k: u32,
    _pad: u32,
}

fn check_centroids(n_centroids: u32) -> Result<()> {
    if !(1..=MAX_CENTROIDS).contains(&n_centroids) {
        return Err(invalid("n_centroids", n_centroids, "must be in 1..=65536"));
    }
    Ok(())
}

impl PqLayer {
    /// A layer whose `K` is the number of centroids in `codebook` (`codebook.len() /
    /// block_size`), validated with [`PqLayer::validate`].
    pub fn new(
        shape: WeightShape,
        block_size: u32,
        codebook: Tensor,
        assignments: Tensor,
    ) -> Result<Self> {
        shape.blocks(block_size)?;
        let bs = block_size as u64;
        if codebook.len == 0 || !codebook.len.is_multiple_of(bs) {
            return Err(invalid(
                "codebook.len()",
                codebook.len,
                "must be a positive multiple of block_size",
            ));
        }
        let n_centroids = u32::try_from(codebook.len / bs).unwrap_or(u32::MAX);
        let layer = Self {
            shape,
            block_size,
            codebook,
            assignments,
            n_centroids,
        };
        layer.validate()?;
        Ok(layer)
    }

    /// Checks the layer and returns its number of blocks: `cols % block_size == 0`,
    /// `1 ≤ K ≤ 65536`, an f32 codebook of `K·block_size` values and u32 assignments, one per
    /// block.
    pub fn validate(&self) -> Result<u64> {
        let blocks = self.shape.blocks(self.block_size)?;
        check_centroids(self.n_centroids)?;
        check_dtype("codebook", DType::F32, self.codebook.dtype)?;
        check_len(
            "codebook",
            self.n_centroids as u64 * self.block_size as u64,
            self.codebook.len,
        )?;
        check_dtype("assignments", DType::U32, self.assignments.dtype)?;
        check_len("assignments", blocks, self.assignments.len)?;
        Ok(blocks)
    }

    /// Size of this layer stored with `format` centroids, with `other_params` further fp32
    /// parameters (e.g. the bias); see [`pq_size`].
    pub fn size(&self, format: CentroidFormat, other_params: u64) -> Result<PqSize> {
        pq_size(
            self.shape,
            self.block_size,
            self.n_centroids,
            format,
            other_params,
        )
    }
}

/// The host contents of a CPU tensor, as raw elements.
fn host_raw<T: Pod>(t: &Tensor, what: &'static str) -> Result<Vec<T>> {
    match &t.storage {
        Storage::Cpu(v) => Ok(bytemuck::pod_collect_to_vec(&v.lock().unwrap())),
        Storage::Gpu { .. } => Err(wrong_context(what)),
    }
}

impl Context {
    /// Decodes a PQ layer into `out` (f32, `layer.shape.numel()` elements):
    /// `out[b·bs + j] = codebook[min(assignments[b], K − 1)·bs + j]`, a bit-exact copy of the
    /// centroids. `out` must not share a buffer with the codebook or the assignments.
    pub fn pq_decode(&self, layer: &PqLayer, out: &Tensor) -> Result<()> {
        layer.validate()?;
        self.check_owned(&layer.codebook, "codebook")?;
        self.check_owned(&layer.assignments, "assignments")?;
        self.check_owned(out, "out")?;
        check_dtype("out", DType::F32, out.dtype)?;
        check_len("out", layer.shape.numel(), out.len)?;
        if out.conflicts(&layer.codebook) {
            return Err(Error::Aliasing {
                what: "pq_decode codebook/out",
            });
        }
        if out.conflicts(&layer.assignments) {
            return Err(Error::Aliasing {
                what: "pq_decode assignments/out",
            });
        }
        match &self.backend {
            Backend::Cpu => {
                let codebook: Vec<f32> = host_raw(&layer.codebook, "codebook")?;
                let assignments: Vec<u32> = host_raw(&layer.assignments, "assignments")?;
                let decoded =
                    crate::cpu::pq::decode(&codebook, &assignments, layer.block_size as usize);
                match &out.storage {
                    Storage::Cpu(v) => v
                        .lock()
                        .unwrap()
                        .copy_from_slice(bytemuck::cast_slice(&decoded)),
                    Storage::Gpu { .. } => return Err(wrong_context("out")),
                }
                Ok(())
            }
            Backend::Gpu(g) => {
                let mut batch = Batch::new(g, "pq_decode")?;
                record_decode(g, &mut batch, layer, out)?;
                batch.finish().map(|_| ())
            }
        }
    }

    /// [`Context::pq_decode`] into a new f32 tensor of `layer.shape.numel()` elements.
    pub fn pq_decoded(&self, layer: &PqLayer) -> Result<Tensor> {
        layer.validate()?;
        let out = self.empty(layer.shape.numel(), DType::F32)?;
        self.pq_decode(layer, &out)?;
        Ok(out)
    }
}

/// Records one layer's decode: windows of whole blocks, each starting at a multiple of 64
/// blocks so that the assignments' windows are aligned too (64 u32 = 256 bytes); the codebook
/// is bound whole.
pub(crate) fn record_decode(
    g: &Gpu,
    batch: &mut Batch,
    layer: &PqLayer,
    out: &Tensor,
) -> Result<()> {
    let blocks = layer.validate()?;
    let bs = layer.block_size as u64;
    let k = layer.n_centroids as u64;
    if k * bs * 4 > g.max_binding {
        return Err(invalid(
            "codebook bytes",
            k * bs * 4,
            "the codebook must fit in one storage binding",
        ));
    }
    let pipeline = g.pipeline(PipelineKey {
        family: Family::Pq,
        precision: Precision::F32,
        entry: "pq_decode",
        overrides: vec![("WG", WG)],
    })?;
    let codebook = window_binding(
        &layer.codebook,
        &Window {
            start: 0,
            len: k * bs,
        },
        k * bs * 4,
        "codebook",
    )?;
    for w in windows(blocks, bs * 4, 64, g.max_window)? {
        let n = w.len * bs;
        let u = batch.uniform(&PqParams {
            n: n as u32,
            bs: layer.block_size,
            k: layer.n_centroids,
            _pad: 0,
        });
        let bindings = [
            u.as_entire_binding(),
            codebook.clone(),
            window_binding(&layer.assignments, &w, w.len * 4, "assignments")?,
            window_binding(
                out,
                &Window {
                    start: w.start * bs,
                    len: n,
                },
                n * 4,
                "out",
            )?,
        ];
        batch.dispatch(&pipeline, &bindings, n.div_ceil(WG as u64 * EPT))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Size accounting.

/// How the centroids of a codebook are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CentroidFormat {
    /// 4 bytes per value.
    F32,
    /// 2 bytes per value: fairseq's `SizeTracker` assumption.
    F16,
    /// 1 byte per value plus one f32 scale per codebook (symmetric per-codebook int8, the
    /// paper's "iPQ + int8").
    Int8,
}

impl CentroidFormat {
    /// Bytes per stored centroid value.
    pub fn bytes_per_value(self) -> u64 {
        match self {
            CentroidFormat::F32 => 4,
            CentroidFormat::F16 => 2,
            CentroidFormat::Int8 => 1,
        }
    }

    /// Bytes stored once per codebook besides its values (the int8 scale).
    pub fn overhead_bytes(self) -> u64 {
        match self {
            CentroidFormat::Int8 => 4,
            CentroidFormat::F32 | CentroidFormat::F16 => 0,
        }
    }
}

/// Bits of one packed centroid index: `⌈log2 K⌉` (0 for `K = 1`, 8 for `K = 256`, 3 for
/// `K = 7`).
pub fn index_bits(n_centroids: u32) -> u32 {
    32 - n_centroids.saturating_sub(1).leading_zeros()
}

/// Bytes of a compressed layer (or model), by part, and of its fp32 original.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PqSize {
    /// Packed centroid indices.
    pub index_bytes: f64,
    /// Codebooks (values and per-codebook overhead).
    pub centroid_bytes: f64,
    /// Parameters kept in fp32 (biases, norms, unquantized layers).
    pub other_bytes: f64,
    /// The uncompressed model: every parameter, quantized or not, in fp32.
    pub original_bytes: f64,
}

impl PqSize {
    /// Compressed bytes: indices + centroids + other.
    pub fn total(&self) -> f64 {
        self.index_bytes + self.centroid_bytes + self.other_bytes
    }

    /// `original_bytes / total()`.
    pub fn compression_ratio(&self) -> f64 {
        self.original_bytes / self.total()
    }
}

impl std::ops::Add for PqSize {
    type Output = PqSize;

    fn add(self, o: PqSize) -> PqSize {
        PqSize {
            index_bytes: self.index_bytes + o.index_bytes,
            centroid_bytes: self.centroid_bytes + o.centroid_bytes,
            other_bytes: self.other_bytes + o.other_bytes,
            original_bytes: self.original_bytes + o.original_bytes,
        }
    }
}

/// Size of one PQ layer of `shape` with blocks of `block_size` and `n_centroids` centroids
/// stored as `format`, plus `other_params` parameters of the layer kept in fp32 (its bias).
///
/// - index bytes = `⌈blocks · ⌈log2 K⌉ / 8⌉`, `blocks = numel / block_size`: the layer's indices
///   as one bit-packed stream, each index taking the whole number of bits that can address `K`
///   centroids, the stream rounded up to whole bytes. (fairseq's `SizeTracker` counts the
///   fractional `log2 K` bits, unrounded: the same for powers of two, an underestimate for
///   other `K` — e.g. 2.81 instead of 3 bits for `K = 7`.)
/// - centroid bytes = `K · block_size · (4 | 2 | 1)` for f32 / f16 / int8, plus 4 bytes (one
///   f32 scale) for int8.
/// - other bytes = `other_params · 4`.
/// - original bytes = `(numel + other_params) · 4`: the whole fp32 layer, bias included, as
///   fairseq's `SizeTracker` counts it (it sizes the model from every parameter and only
///   replaces the quantized weights).
///
/// With `F16` centroids and `K` a power of two this is fairseq's `SizeTracker` exactly, e.g.
/// `Linear(1024→4096)`, bs 8, K 256, bias 4096: 16.0156 MiB → 0.5195 MiB, 30.83×.
pub fn pq_size(
    shape: WeightShape,
    block_size: u32,
    n_centroids: u32,
    format: CentroidFormat,
    other_params: u64,
) -> Result<PqSize> {
    let blocks = shape.blocks(block_size)?;
    check_centroids(n_centroids)?;
    let index_bits = blocks * index_bits(n_centroids) as u64;
    let centroid_bytes =
        n_centroids as u64 * block_size as u64 * format.bytes_per_value() + format.overhead_bytes();
    Ok(PqSize {
        index_bytes: index_bits.div_ceil(8) as f64,
        centroid_bytes: centroid_bytes as f64,
        other_bytes: (other_params * 4) as f64,
        original_bytes: ((shape.numel() + other_params) * 4) as f64,
    })
}

/// Memory of a layer in bits by the paper's Eq. (3), iPQ with int8 centroids:
/// `M = 8·K·d + log2(K)·m·p + 8·n`.
///
/// The paper views the weight as `W ∈ R^{n×p}` and splits each of its `p` columns (length `n`)
/// into `m` subvectors of dimension `d = n/m`, so `m·p` is the number of subvectors. In our
/// `(rows, cols)` view (PyTorch's `(out, in)`, blocks along `cols`) that is `n = cols`,
/// `p = rows`, `d = block_size`, `m = cols / block_size`, `m·p` = the number of blocks. The
/// terms are: `8·K·d` the int8 codebook, `log2(K)·m·p` the indices (unrounded `log2 K`, as in
/// the paper and fairseq), and `8·n` as transcribed in the project's fairseq notes — a per-`n`
/// int8 overhead we could not check against the paper's text. [`pq_size`] with
/// [`CentroidFormat::Int8`] counts one f32 scale per codebook instead of that term, and whole
/// index bits; use this function only to compare with numbers quoted from the paper.
pub fn paper_eq3_bits(shape: WeightShape, block_size: u32, n_centroids: u32) -> Result<f64> {
    let blocks = shape.blocks(block_size)?;
    check_centroids(n_centroids)?;
    let k = n_centroids as f64;
    let d = block_size as f64;
    let n = shape.cols() as f64;
    Ok(8.0 * k * d + k.log2() * blocks as f64 + 8.0 * n)
}

/// One quantized layer of a [`PqSizeReport`].
#[derive(Clone, Debug, PartialEq)]
pub struct PqSizeRow {
    /// The layer's name, e.g. `encoder.layers.0.fc1`.
    pub name: String,
    /// Weight shape.
    pub shape: WeightShape,
    /// Block size.
    pub block_size: u32,
    /// Number of centroids.
    pub n_centroids: u32,
    /// Centroid storage.
    pub format: CentroidFormat,
    /// The layer's size (its fp32 bias or other parameters included).
    pub size: PqSize,
}

/// Size of a model: its quantized layers, one row each, and its parameters kept in fp32
/// (what fairseq's `SizeTracker` reports after quantizing some layers).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PqSizeReport {
    /// Quantized layers.
    pub rows: Vec<PqSizeRow>,
    /// Parameters not belonging to any row, stored in fp32 (norms, unquantized layers...).
    pub unquantized_params: u64,
}

impl PqSizeReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a quantized layer (see [`pq_size`]); `other_params` are its own fp32 parameters
    /// (the bias).
    pub fn add_layer(
        &mut self,
        name: impl Into<String>,
        shape: WeightShape,
        block_size: u32,
        n_centroids: u32,
        format: CentroidFormat,
        other_params: u64,
    ) -> Result<&PqSizeRow> {
        let size = pq_size(shape, block_size, n_centroids, format, other_params)?;
        self.rows.push(PqSizeRow {
            name: name.into(),
            shape,
            block_size,
            n_centroids,
            format,
            size,
        });
        Ok(self.rows.last().unwrap())
    }

    /// Adds `params` parameters kept in fp32.
    pub fn add_unquantized(&mut self, params: u64) {
        self.unquantized_params += params;
    }

    /// The unquantized parameters' part: in `other_bytes` and `original_bytes`.
    fn unquantized(&self) -> PqSize {
        let bytes = (self.unquantized_params * 4) as f64;
        PqSize {
            other_bytes: bytes,
            original_bytes: bytes,
            ..PqSize::default()
        }
    }

    /// The whole model: every row plus the unquantized parameters.
    pub fn total(&self) -> PqSize {
        self.rows
            .iter()
            .fold(self.unquantized(), |acc, r| acc + r.size)
    }

    /// `total().compression_ratio()`.
    pub fn compression_ratio(&self) -> f64 {
        self.total().compression_ratio()
    }
}

fn shape_text(s: &WeightShape) -> String {
    match *s {
        WeightShape::Matrix { rows, cols } => format!("Matrix({rows}×{cols})"),
        WeightShape::Linear {
            out_features,
            in_features,
        } => format!("Linear({in_features}→{out_features})"),
        WeightShape::Embedding {
            num_embeddings,
            dim,
        } => format!("Embedding({num_embeddings}×{dim})"),
        WeightShape::Conv2d {
            out_channels,
            in_channels,
            kh,
            kw,
        } => format!("Conv2d({in_channels}→{out_channels}, {kh}×{kw})"),
    }
}

/// A table in MiB (fairseq's "MB"): one row per layer, the unquantized parameters, the total.
impl fmt::Display for PqSizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |f: &mut fmt::Formatter<'_>, name: &str, what: &str, s: &PqSize| {
            writeln!(
                f,
                "{name:<24} {what:<36} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>8.2}x",
                s.index_bytes / MIB,
                s.centroid_bytes / MIB,
                s.other_bytes / MIB,
                s.total() / MIB,
                s.original_bytes / MIB,
                s.compression_ratio(),
            )
        };
        writeln!(
            f,
            "{:<24} {:<36} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
            "layer", "quantization", "index", "centroids", "other", "total", "original", "ratio"
        )?;
        for r in &self.rows {
            let what = format!(
                "{} bs={} K={} {:?}",
                shape_text(&r.shape),
                r.block_size,
                r.n_centroids,
                r.format
            );
            line(f, &r.name, &what, &r.size)?;
        }
        if self.unquantized_params > 0 {
            let what = format!("{} params fp32", self.unquantized_params);
            line(f, "(unquantized)", &what, &self.unquantized())?;
        }
        line(
            f,
            "total (MiB)",
            &format!("{} quantized layers", self.rows.len()),
            &self.total(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(in_features: u64, out_features: u64) -> WeightShape {
        WeightShape::Linear {
            out_features,
            in_features,
        }
    }

    /// fairseq's SizeTracker on `Linear(1024→4096)` (bias 4096), bs 8, K 256, fp16 centroids:
    /// `16.0156 MB → 0.5195 MB, 30.83×` (MB = MiB).
    #[test]
    fn size_tracker_linear_1024_4096() {
        let s = pq_size(linear(1024, 4096), 8, 256, CentroidFormat::F16, 4096).unwrap();
        // (4096·1024 + 4096) fp32 parameters.
        assert_eq!(s.original_bytes, 16_793_600.0);
        // 524288 blocks × 8 bits; 256 × 8 fp16 values; the fp32 bias.
        assert_eq!(s.index_bytes, 524_288.0);
        assert_eq!(s.centroid_bytes, 4096.0);
        assert_eq!(s.other_bytes, 16_384.0);
        assert_eq!(s.total(), 544_768.0);
        assert_eq!(format!("{:.4}", s.original_bytes / MIB), "16.0156");
        assert_eq!(format!("{:.4}", s.total() / MIB), "0.5195");
        assert_eq!(format!("{:.2}", s.compression_ratio()), "30.83");
    }

    /// fairseq's SizeTracker on `Linear(1024→1024)` (bias 1024), bs 4, K 256: 15.65×.
    #[test]
    fn size_tracker_linear_1024_1024() {
        let s = pq_size(linear(1024, 1024), 4, 256, CentroidFormat::F16, 1024).unwrap();
        assert_eq!(s.original_bytes, 4_198_400.0);
        assert_eq!(s.total(), 262_144.0 + 2048.0 + 4096.0);
        assert_eq!(format!("{:.2}", s.compression_ratio()), "15.65");
    }

    #[test]
    fn formats_index_bits_and_errors() {
        assert_eq!(
            [1, 2, 3, 4, 7, 8, 255, 256, 257, 4096, 65536].map(index_bits),
            [0, 1, 2, 2, 3, 3, 8, 8, 9, 12, 16]
        );
        let shape = WeightShape::matrix(3, 14);
        let s = |k, f| pq_size(shape, 7, k, f, 0).unwrap();
        // 6 blocks × 3 bits = 18 bits → 3 bytes; 7 × 7 values.
        assert_eq!(s(7, CentroidFormat::F32).index_bytes, 3.0);
        assert_eq!(s(7, CentroidFormat::F32).centroid_bytes, 196.0);
        assert_eq!(s(7, CentroidFormat::F16).centroid_bytes, 98.0);
        assert_eq!(s(7, CentroidFormat::Int8).centroid_bytes, 49.0 + 4.0);
        assert_eq!(s(1, CentroidFormat::F32).index_bytes, 0.0);
        assert_eq!(s(1, CentroidFormat::F32).original_bytes, 168.0);
        assert!(matches!(
            pq_size(shape, 4, 8, CentroidFormat::F16, 0),
            Err(Error::BlockSizeMismatch { .. })
        ));
        for k in [0, 65537] {
            assert!(matches!(
                pq_size(shape, 7, k, CentroidFormat::F16, 0),
                Err(Error::InvalidArgument {
                    name: "n_centroids",
                    ..
                })
            ));
        }
    }

    /// A model report sums its rows and the unquantized parameters; one layer plus nothing
    /// else is that layer.
    #[test]
    fn report_sums_layers() {
        let mut r = PqSizeReport::new();
        r.add_layer("fc1", linear(1024, 4096), 8, 256, CentroidFormat::F16, 4096)
            .unwrap();
        assert_eq!(format!("{:.2}", r.compression_ratio()), "30.83");
        r.add_layer("fc2", linear(4096, 1024), 8, 256, CentroidFormat::F16, 1024)
            .unwrap();
        r.add_unquantized(2 * 1024);
        let t = r.total();
        assert_eq!(
            t.original_bytes,
            ((2 * 4096 * 1024 + 4096 + 1024 + 2048) * 4) as f64
        );
        assert_eq!(t.other_bytes, ((4096 + 1024 + 2048) * 4) as f64);
        assert_eq!(t.index_bytes, 2.0 * 524_288.0);
        assert_eq!(t.centroid_bytes, 2.0 * 4096.0);
        let text = r.to_string();
        assert!(
            text.contains("fc1") && text.contains("(unquantized)"),
            "{text}"
        );
        assert!(text.lines().last().unwrap().starts_with("total"), "{text}");
        assert!(
            r.add_layer("bad", linear(10, 3), 4, 2, CentroidFormat::F16, 0)
                .is_err()
        );
        assert_eq!(r.rows.len(), 2);
    }

    /// Eq. (3): `8·K·d + log2(K)·m·p + 8·n` bits with `n = cols`, `m·p` = blocks.
    #[test]
    fn paper_eq3() {
        let bits = paper_eq3_bits(linear(1024, 4096), 8, 256).unwrap();
        assert_eq!(bits, 8.0 * 256.0 * 8.0 + 8.0 * 524_288.0 + 8.0 * 1024.0);
    }
}
