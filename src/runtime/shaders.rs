//! The WGSL sources of every kernel family and their variants.
//!
//! WGSL has no includes: a family's module is its own file prefixed by the files it uses and by
//! the element-type alias of the variant (`Elem = f32` or, with `enable f16;`, `Elem = f16`).

use crate::tensor::DType;

/// A kernel family: one WGSL file in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `shaders/noise.wgsl`: fused noise forward and the bit-packed mask.
    Noise,
    /// `shaders/ste.wgsl`: straight-through backward.
    Ste,
    /// `shaders/observer.wgsl`: min/max and histogram observers.
    Observer,
    /// `shaders/copy.wgsl`: copy kernels (benchmark baselines).
    Copy,
    /// `shaders/philox_batch.wgsl`: raw Philox4x32-10 outputs (cross-backend checks).
    Philox,
    /// `shaders/assign.wgsl` (+ `assign_rows.wgsl`): nearest-centroid assignment (k-means
    /// E-step) and the k-means bounds, for subvectors of any dimension.
    Assign,
    /// `shaders/assign.wgsl` (+ `assign_rows_vec4.wgsl`): [`Family::Assign`] for dimensions
    /// that are multiples of 4, reading the data as vec4s.
    AssignVec4,
    /// `shaders/assign.wgsl` (+ `assign_rows_tex.wgsl`): [`Family::AssignVec4`] reading the
    /// data from a texture (CPU adapters, where texel fetches are gathers).
    AssignTexture,
    /// `shaders/kmeans.wgsl`: k-means M-step, reductions, k-means++ and repair.
    Kmeans,
    /// `shaders/pq.wgsl`: product-quantization decode (codebook gather).
    Pq,
    /// `shaders/fma.wgsl`: FMA-throughput kernel (the compute ceiling of benchmarks).
    Fma,
    /// `shaders/int8.wgsl`: int8 quantize/dequantize and the exact int8 matmul.
    Int8,
    /// `shaders/matmul.wgsl` (+ `matmul_dense.wgsl`): dense matrix products of a Linear layer.
    Matmul,
    /// `shaders/noisy_linear.wgsl` + `matmul.wgsl`: Linear products with the noise fused into
    /// the weight loader and the STE into the dW epilogue.
    NoisyLinear,
    /// `shaders/pq_matmul.wgsl`: product-quantized matmul / LUT matvec, dense matvec baseline.
    PqMatmul,
    /// `shaders/matmul_pq.wgsl` + `matmul.wgsl`: the tiled matmul with its weight tiles
    /// decoded from a product-quantized codebook and indices (f32).
    PqLinear,
}

/// Element type a module is instantiated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// 32-bit floats: the portable baseline.
    F32,
    /// 16-bit floats in storage (arithmetic in f32); needs `shader-f16`.
    F16,
}

impl Precision {
    /// The precision of tensors of `dtype` (`None` for a non-float dtype).
    pub(crate) fn of(dtype: DType) -> Option<Precision> {
        match dtype {
            DType::F32 => Some(Precision::F32),
            DType::F16 => Some(Precision::F16),
            DType::U32 => None,
        }
    }
}

/// vec4s of a uniform lookup table where the device allows them (64 KiB).
pub(crate) const UNIFORM_TABLE_VEC4S: u64 = crate::runtime::gpu::UNIFORM_TABLE_BYTES / 16;

const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
const NOISE_CHAIN: &str = include_str!("../../shaders/noise_chain.wgsl");
const NOISE: &str = include_str!("../../shaders/noise.wgsl");
const STE: &str = include_str!("../../shaders/ste.wgsl");
const OBSERVER: &str = include_str!("../../shaders/observer.wgsl");
const COPY: &str = include_str!("../../shaders/copy.wgsl");
const PHILOX_BATCH: &str = include_str!("../../shaders/philox_batch.wgsl");
const ASSIGN: &str = include_str!("../../shaders/assign.wgsl");
const ASSIGN_ROWS: &str = include_str!("../../shaders/assign_rows.wgsl");
const ASSIGN_ROWS_VEC4: &str = include_str!("../../shaders/assign_rows_vec4.wgsl");
const ASSIGN_ROWS_TEX: &str = include_str!("../../shaders/assign_rows_tex.wgsl");
const KMEANS: &str = include_str!("../../shaders/kmeans.wgsl");
const PQ: &str = include_str!("../../shaders/pq.wgsl");
const FMA: &str = include_str!("../../shaders/fma.wgsl");
const INT8: &str = include_str!("../../shaders/int8.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const MATMUL_DENSE: &str = include_str!("../../shaders/matmul_dense.wgsl");
const NOISY_LINEAR: &str = include_str!("../../shaders/noisy_linear.wgsl");
const PQ_MATMUL: &str = include_str!("../../shaders/pq_matmul.wgsl");
const MATMUL_PQ: &str = include_str!("../../shaders/matmul_pq.wgsl");

impl Family {
    /// Every family.
    pub const ALL: [Family; 16] = [
        Family::Noise,
        Family::Ste,
        Family::Observer,
        Family::Copy,
        Family::Philox,
        Family::Assign,
        Family::AssignVec4,
        Family::AssignTexture,
        Family::Kmeans,
        Family::Pq,
        Family::Fma,
        Family::Int8,
        Family::Matmul,
        Family::NoisyLinear,
        Family::PqMatmul,
        Family::PqLinear,
    ];

    /// File name under `shaders/`.
    pub fn file(&self) -> &'static str {
        match self {
            Family::Noise => "noise.wgsl",
            Family::Ste => "ste.wgsl",
            Family::Observer => "observer.wgsl",
            Family::Copy => "copy.wgsl",
            Family::Philox => "philox_batch.wgsl",
            Family::Assign | Family::AssignVec4 | Family::AssignTexture => "assign.wgsl",
            Family::Kmeans => "kmeans.wgsl",
            Family::Pq => "pq.wgsl",
            Family::Fma => "fma.wgsl",
            Family::Int8 => "int8.wgsl",
            Family::Matmul => "matmul.wgsl",
            Family::NoisyLinear => "noisy_linear.wgsl",
            Family::PqMatmul => "pq_matmul.wgsl",
            Family::PqLinear => "matmul_pq.wgsl",
        }
    }

    fn parts(&self) -> &'static [&'static str] {
        match self {
            Family::Noise => &[PHILOX, NOISE_CHAIN, NOISE],
            Family::Ste => &[PHILOX, NOISE_CHAIN, STE],
            Family::Observer => &[OBSERVER],
            Family::Copy => &[COPY],
            Family::Philox => &[PHILOX, PHILOX_BATCH],
            Family::Assign => &[ASSIGN_ROWS, ASSIGN],
            Family::AssignVec4 => &[ASSIGN_ROWS_VEC4, ASSIGN],
            Family::AssignTexture => &[ASSIGN_ROWS_TEX, ASSIGN],
            Family::Kmeans => &[KMEANS],
            Family::Pq => &[PQ],
            Family::Fma => &[FMA],
            Family::Int8 => &[INT8],
            Family::Matmul => &[MATMUL_DENSE, MATMUL],
            Family::NoisyLinear => &[PHILOX, NOISE_CHAIN, NOISY_LINEAR, MATMUL],
            Family::PqMatmul => &[PQ_MATMUL],
            Family::PqLinear => &[MATMUL_PQ, MATMUL],
        }
    }

    /// Entry points of the family.
    pub fn entry_points(&self) -> &'static [&'static str] {
        match self {
            Family::Noise => &["noise_vec4", "noise_tail", "noise_mask", "pq_noise"],
            Family::Ste => &["ste_vec4", "ste_tail"],
            Family::Observer => &[
                "minmax_partial",
                "minmax_rows",
                "minmax_reduce",
                "histogram",
            ],
            Family::Copy => &[
                "copy_vec4",
                "copy_vec4_contiguous",
                "copy_vec4_strided",
                "copy_vec4_grid",
            ],
            Family::Philox => &["philox_batch"],
            Family::Assign | Family::AssignVec4 | Family::AssignTexture => &[
                "assign_prepare",
                "assign_tile16",
                "assign_tile32",
                "assign_tile64",
                "assign_tile128",
                "assign_tile256",
                "assign_wide",
                "bound_drift",
                "bound_check",
                "bound_args",
            ],
            Family::Kmeans => &[
                "kmeans_partial",
                "kmeans_reduce",
                "sum_partials",
                "pp_update",
                "split",
                "kmeans_partial_sorted",
                "kmeans_partial_fixed",
                "kmeans_partial_runs",
                "kmeans_partial_runs4",
            ],
            Family::Pq => &["pq_decode", "pack_u8"],
            Family::Fma => &["fma_chains4", "fma_chains8", "fma_chains16"],
            Family::Int8 => &[
                "quantize",
                "dequantize",
                "int8_rowsum",
                "int8_matmul_dp4a",
                "int8_matmul_polyfill",
                "int8_matmul_dp4a_acc",
                "int8_matmul_polyfill_acc",
                "int8_matmul_direct_dp4a",
                "int8_matmul_direct_polyfill",
                "int8_matmul_direct_dp4a_acc",
                "int8_matmul_direct_polyfill_acc",
            ],
            Family::Matmul | Family::NoisyLinear | Family::PqLinear => &[
                "matmul",
                "matmul_reduce",
                "matmul_bcast",
                "matmul_bcast_a4",
                "matmul_bcast_pack",
                "matmul_bcast_pack4",
            ],
            Family::PqMatmul => &[
                "pq_matmul_tiled",
                "pq_lut_build",
                "pq_lut_gather",
                "pq_matmul_i8",
                "dense_matvec",
                "pq_lut_gather4",
                "pq_matmul_rows",
                "pq_lut_build4",
                "pq_lut_build4x4",
                "pq_lut_gather_split",
                "pq_lut_build_ub",
                "pq_lut_gather_ub",
                "dense_matvec_split",
            ],
        }
    }

    /// The precisions the family is built for.
    pub fn precisions(&self) -> &'static [Precision] {
        match self {
            Family::Copy
            | Family::Philox
            | Family::Kmeans
            | Family::Pq
            | Family::Fma
            | Family::Int8
            | Family::PqLinear => &[Precision::F32],
            _ => &[Precision::F32, Precision::F16],
        }
    }

    /// The complete WGSL module of a variant, for a device that allows 64 KiB uniform tables.
    pub fn source(&self, precision: Precision) -> String {
        self.source_with(precision, true)
    }

    /// The complete WGSL module of a variant. `UNIFORM_TABLE_VEC4S`, the length of the uniform
    /// lookup tables kernels may declare, is 4096 (64 KiB) where the device allows uniform
    /// tables, else 1: the kernels then bind a 16-byte stand-in and read storage.
    pub(crate) fn source_with(&self, precision: Precision, uniform_tables: bool) -> String {
        let mut s = String::from(match precision {
            Precision::F32 => "alias Elem = f32;\n",
            Precision::F16 => "enable f16;\nalias Elem = f16;\n",
        });
        let vec4s = if uniform_tables {
            UNIFORM_TABLE_VEC4S
        } else {
            1
        };
        s.push_str(&format!("const UNIFORM_TABLE_VEC4S: u32 = {vec4s}u;\n"));
        for part in self.parts() {
            s.push_str(part);
            s.push('\n');
        }
        s
    }
}
