//! Size accounting of PQ layers and models, host-side (see [`pq_size`]).

use std::fmt;

use super::{MIB, check_centroids};
use crate::error::Result;
use crate::shape::WeightShape;

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
    use crate::error::Error;

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
