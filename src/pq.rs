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

    /// Packs centroid indices (u32, each below `n_centroids` ≤ 256) into bytes, 4 per u32
    /// word: index `i` is byte `i` of the result read as a byte array (little-endian words),
    /// the compact format of PQ layers with K ≤ 256. Indices ≥ K clamp to K − 1, as in decode.
    pub fn pack_indices_u8(&self, indices: &Tensor, n_centroids: u32) -> Result<Tensor> {
        self.check_owned(indices, "indices")?;
        check_dtype("indices", DType::U32, indices.dtype)?;
        if !(1..=256).contains(&n_centroids) {
            return Err(invalid(
                "n_centroids",
                n_centroids,
                "u8 packing needs 1..=256 centroids",
            ));
        }
        let n = indices.len;
        let out = self.empty(n.div_ceil(4), DType::U32)?;
        match &self.backend {
            Backend::Cpu => {
                let a: Vec<u32> = host_raw(indices, "indices")?;
                let words = crate::cpu::pq::pack_u8(&a, n_centroids);
                match &out.storage {
                    Storage::Cpu(v) => v
                        .lock()
                        .unwrap()
                        .copy_from_slice(bytemuck::cast_slice(&words)),
                    Storage::Gpu { .. } => return Err(wrong_context("out")),
                }
            }
            Backend::Gpu(g) => {
                let pipeline = g.pipeline(PipelineKey {
                    family: Family::Pq,
                    precision: Precision::F32,
                    entry: "pack_u8",
                    overrides: vec![("WG", WG)],
                })?;
                let mut batch = Batch::new(g, "pack_indices_u8")?;
                for w in windows(n, 4, 256, g.max_window)? {
                    let u = batch.uniform(&[w.len as u32, 0, n_centroids, 0]);
                    let words = Window {
                        start: w.start / 4,
                        len: w.len.div_ceil(4),
                    };
                    let bindings = [
                        u.as_entire_binding(),
                        window_binding(indices, &w, w.len * 4, "indices")?,
                        window_binding(&out, &words, words.len * 4, "packed")?,
                    ];
                    batch.dispatch(&pipeline, &bindings, words.len.div_ceil(WG as u64))?;
                }
                batch.finish()?;
            }
        }
        Ok(out)
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

mod encode;
mod size;

pub use encode::{CentroidGrad, PqEncodeLayer};
pub use size::*;

/// The mean block of a weight cut into blocks of `block_size`, as a one-row codebook (the
/// replacement of [`crate::Noise::PqMean`]): the deterministic segmented reduction of
/// [`Context::pq_centroid_grad`] with every block in segment 0.
pub(crate) fn block_mean(
    ctx: &Context,
    weight: &Tensor,
    shape: &WeightShape,
    block_size: u32,
) -> Result<Tensor> {
    let blocks = shape.blocks(block_size)?;
    let zeros = ctx.upload(&vec![0u32; blocks as usize])?;
    let layer = PqLayer::new(
        *shape,
        block_size,
        ctx.empty(block_size as u64, DType::F32)?,
        zeros,
    )?;
    let mean = ctx.pq_centroid_grad(&layer, &as_f32(ctx, weight)?, CentroidGrad::Mean)?;
    Ok(mean)
}

/// `weight` as f32 (f16 weights are widened on the host: PqMean on f16 weights is rare).
fn as_f32(ctx: &Context, weight: &Tensor) -> Result<Tensor> {
    match weight.dtype {
        DType::F32 => Ok(weight.clone()),
        _ => ctx.upload(&ctx.read_f32(weight)?),
    }
}
