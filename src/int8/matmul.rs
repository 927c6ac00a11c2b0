//! The exact int8 matrix multiplication (the `int8_matmul*` and `int8_rowsum` entries of
//! `shaders/int8.wgsl`; reference: [`crate::cpu::int8`]): its kernels, their workgroup shapes,
//! and prepared weights ([`Int8Linear`]).
//!
//! # Exact int8 matmul
//!
//! [`Context::int8_matmul`] computes `Y = sx · sw[n] · acc[m, n] + b[n]` with
//! `acc[m, n] = Σ_k xq[m, k]·wq[n, k] − zx · Σ_k wq[n, k]` (i32, exact for `K ≤ 65536`), where
//! `xq` is an (M, K) int8 activation matrix with per-tensor affine parameters `(sx, zx)` and
//! `wq` an (N, K) int8 weight with symmetric parameters (zero-point 0) per output channel or
//! per tensor. The weight's row sums `Σ_k wq[n, k]` are computed once, by
//! [`Context::int8_linear`]. Padding: a row's padding bytes are zero in the weight, so they add
//! nothing to either sum whatever the activation holds there (the activation's padding bytes
//! are zero too, but the correction does not rely on it). [`Context::int8_matmul_acc`] writes
//! `acc` itself (its i32 bits in a U32 tensor). Two arithmetic variants,
//! [`MatmulVariant::Dp4a`] (`dot4I8Packed`) and [`MatmulVariant::Polyfill`] (each word
//! unpacked once with `unpack4xI8`, then i32 vector dots; the variants are separate entry
//! points sharing one body whose `dp4a` branch is a literal, so the polyfill never executes
//! `dot4I8Packed`), and two kernel layouts ([`MatmulKernel::Tiled`]: workgroup-memory tiles,
//! the GPU default; [`MatmulKernel::Direct`]: no workgroup memory, the default on CPU
//! adapters), all give bit-identical results. Tile sizes are WGSL override constants
//! ([`MatmulTiles`], [`Context::int8_matmul_with`]); shapes travel in a uniform. M is cut
//! into row chunks that fit one bound window; W, its row sums and scales are bound whole (at
//! most one storage binding). The f32 output is within a few f32 roundings of the f64
//! reference: `|y − y_ref| ≤ 2⁻²¹ · (|sx · sw[n] · acc| + |b[n]|)` (the epilogue is
//! `(sx · sw[n]) · f32(acc) + b[n]`).
//!
//! Activations are quantized with fixed per-tensor parameters obtained by calibration
//! ([`calibrate::ActivationCalibrator`](super::calibrate::ActivationCalibrator), as in the
//! paper's §3.3).

use super::{
    INT8_WG, QTensor, QType, bind_span, host_bytes, host_u32, rows_per_chunk, store_bytes,
};
use crate::error::{Error, Result, invalid};
use crate::noise::check_len;
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::gpu::PipelineKey;
use crate::runtime::shaders::{Family, Precision};
use crate::tensor::{DType, Tensor};

/// Invocations along `n` of a matmul workgroup (the `WGX` override); each computes 4 columns.
pub const MATMUL_WGX: u32 = 8;
/// Invocations along `m` of a matmul workgroup (the `WGY` override); each computes 4 rows.
pub const MATMUL_WGY: u32 = 8;
/// `vec4<u32>` words (16 values of k each) per k-step of the matmul (the `KV` override).
pub const MATMUL_KV: u32 = 4;
/// Largest K of the matmul: `|Σ_k (xq − zx)·wq| ≤ 255 · 128 · K` stays below 2³¹.
pub const MATMUL_MAX_K: u64 = 65536;

/// A matmul kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// Packed 4×8-bit dot products (`dot4I8Packed`; native on Vulkan with
    /// `VK_KHR_shader_integer_dot_product`, polyfilled by naga elsewhere).
    Dp4a,
    /// The portable baseline: each word unpacked once with `unpack4xI8`, i32 vector dots.
    Polyfill,
}

impl MatmulVariant {
    /// Both variants.
    pub const ALL: [MatmulVariant; 2] = [MatmulVariant::Dp4a, MatmulVariant::Polyfill];

    /// Entry point writing the dequantized f32 output.
    pub fn entry(&self) -> &'static str {
        match self {
            MatmulVariant::Dp4a => "int8_matmul_dp4a",
            MatmulVariant::Polyfill => "int8_matmul_polyfill",
        }
    }

    /// Entry point writing the raw i32 accumulators.
    pub fn acc_entry(&self) -> &'static str {
        match self {
            MatmulVariant::Dp4a => "int8_matmul_dp4a_acc",
            MatmulVariant::Polyfill => "int8_matmul_polyfill_acc",
        }
    }

    /// Integer operations of an (M, N, K) product: `2 · M · N · K` (a multiply-add counts as
    /// two).
    pub fn ops(m: u64, n: u64, k: u64) -> u64 {
        2 * m * n * k
    }
}

/// Workgroup shape of the matmul (WGSL override constants): `wgx × wgy` invocations, each
/// computing a 4 × 4 register block, so a workgroup computes a `4·wgy × 4·wgx` output tile;
/// `kv` `vec4<u32>` words (16 values of k each) are staged per k-step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulTiles {
    /// Invocations along n (`WGX`).
    pub wgx: u32,
    /// Invocations along m (`WGY`).
    pub wgy: u32,
    /// `vec4<u32>` words per k-step (`KV`).
    pub kv: u32,
}

impl Default for MatmulTiles {
    fn default() -> Self {
        Self {
            wgx: MATMUL_WGX,
            wgy: MATMUL_WGY,
            kv: MATMUL_KV,
        }
    }
}

impl MatmulTiles {
    fn check(&self) -> Result<()> {
        let inv = self.wgx as u64 * self.wgy as u64;
        if self.wgx == 0 || self.wgy == 0 || inv > 256 {
            return Err(invalid(
                "tiles",
                format!("{self:?}"),
                "wgx, wgy >= 1 and wgx * wgy <= 256",
            ));
        }
        // Workgroup memory: (4·wgy + 4·wgx) · (kv + 1) · 16 bytes, at most 16 KiB.
        if self.kv == 0 || (4 * (self.wgx + self.wgy) as u64) * (self.kv as u64 + 1) * 16 > 16384 {
            return Err(invalid(
                "tiles.kv",
                self.kv,
                "kv >= 1 and the staged tiles must fit 16 KiB of workgroup memory",
            ));
        }
        Ok(())
    }
}

/// Invocations of a direct-kernel workgroup (the `WGN` override).
pub const MATMUL_WGN: u32 = 64;

/// Which matmul kernel runs (both give bit-identical results).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// Workgroup-tiled: X and W tiles staged in workgroup memory every k-step, a 4 × 4
    /// register block per invocation. The choice for GPUs.
    Tiled(MatmulTiles),
    /// No workgroup memory and no barriers: a workgroup computes 8 rows × `4·wgn` columns,
    /// the 8 rows' words loaded at workgroup-uniform addresses and each invocation's 4 weight
    /// rows read directly. Faster on CPU rasterisers (lavapipe/llvmpipe), where a uniform load
    /// is one scalar load broadcast to the SIMD lanes and barriers are costly.
    Direct {
        /// Invocations per workgroup (`WGN`), at most 256.
        wgn: u32,
    },
}

impl MatmulKernel {
    /// The default for a context: [`MatmulKernel::Direct`] on CPU adapters and the CPU
    /// backend, [`MatmulKernel::Tiled`] with [`MatmulTiles::default`] elsewhere.
    pub fn auto(ctx: &Context) -> Self {
        let cpu_adapter = match &ctx.backend {
            Backend::Gpu(g) => g.device.adapter_info().device_type == wgpu::DeviceType::Cpu,
            Backend::Cpu => true,
        };
        if cpu_adapter {
            MatmulKernel::Direct { wgn: MATMUL_WGN }
        } else {
            MatmulKernel::Tiled(MatmulTiles::default())
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            MatmulKernel::Tiled(t) => t.check(),
            MatmulKernel::Direct { wgn } if (1..=256).contains(wgn) => Ok(()),
            MatmulKernel::Direct { wgn } => Err(invalid("wgn", wgn, "must be in 1..=256")),
        }
    }

    /// Output tile (rows, columns) of one workgroup.
    pub fn tile(&self) -> (u64, u64) {
        match self {
            MatmulKernel::Tiled(t) => (4 * t.wgy as u64, 4 * t.wgx as u64),
            MatmulKernel::Direct { wgn } => (8, 4 * *wgn as u64),
        }
    }

    fn entry(&self, variant: MatmulVariant, raw: bool) -> &'static str {
        use MatmulVariant::{Dp4a, Polyfill};
        match (self, variant, raw) {
            (MatmulKernel::Tiled(_), v, false) => v.entry(),
            (MatmulKernel::Tiled(_), v, true) => v.acc_entry(),
            (MatmulKernel::Direct { .. }, Dp4a, false) => "int8_matmul_direct_dp4a",
            (MatmulKernel::Direct { .. }, Polyfill, false) => "int8_matmul_direct_polyfill",
            (MatmulKernel::Direct { .. }, Dp4a, true) => "int8_matmul_direct_dp4a_acc",
            (MatmulKernel::Direct { .. }, Polyfill, true) => "int8_matmul_direct_polyfill_acc",
        }
    }

    fn overrides(&self) -> Vec<(&'static str, u32)> {
        match self {
            MatmulKernel::Tiled(t) => vec![("WGX", t.wgx), ("WGY", t.wgy), ("KV", t.kv)],
            MatmulKernel::Direct { wgn } => vec![("WGN", *wgn)],
        }
    }
}

/// An int8 weight ready for [`Context::int8_matmul`]: the packed (N, K) weight (I8, symmetric:
/// every zero-point 0, per output channel or per tensor), its row sums `Σ_k wq[n, k]` (i32 bits
/// in a U32 tensor) and its scales (an f32 tensor of N values).
#[derive(Clone, Debug)]
pub struct Int8Linear {
    /// The packed weight.
    pub weight: QTensor,
    /// `Σ_k wq[n, k]` per output channel, as i32 bits.
    pub row_sums: Tensor,
    /// The scale of each output channel.
    pub scales: Tensor,
}

impl Int8Linear {
    /// Output channels N.
    pub fn out_features(&self) -> u64 {
        self.weight.rows
    }

    /// Input features K.
    pub fn in_features(&self) -> u64 {
        self.weight.cols
    }
}

/// Mirror of `MatmulParams`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    /// Packed words per row (a multiple of 4).
    k4: u32,
    tiles_n: u32,
    x_skip: u32,
    y_skip: u32,
    zx: i32,
    sx: f32,
}

impl Context {
    /// Prepares an int8 weight for [`Context::int8_matmul`]: `weight` must be [`QType::I8`]
    /// with every zero-point 0 (symmetric), per output channel (row) or per tensor, and
    /// `K ≤ MATMUL_MAX_K`. Computes its row sums (on the device) and uploads its scales.
    pub fn int8_linear(&self, weight: QTensor) -> Result<Int8Linear> {
        weight.check("weight")?;
        self.check_owned(&weight.data, "weight")?;
        if weight.qtype != QType::I8 {
            return Err(invalid(
                "weight.qtype",
                format!("{:?}", weight.qtype),
                "the matmul weight must be I8",
            ));
        }
        if let Some(z) = weight.qparams.zero_point.iter().find(|z| **z != 0) {
            return Err(invalid(
                "weight zero_point",
                z,
                "the matmul weight must be symmetric (zero-point 0)",
            ));
        }
        if weight.cols > MATMUL_MAX_K {
            return Err(invalid("K", weight.cols, "at most 65536"));
        }
        let (n, k4) = (weight.rows, weight.words_per_row());
        let scales: Vec<f32> = if weight.qparams.is_per_channel() {
            weight.qparams.scale.clone()
        } else {
            vec![weight.qparams.scale[0]; n as usize]
        };
        let scales = self.upload(&scales)?;
        let row_sums = self.empty(n, DType::U32)?;
        match &self.backend {
            Backend::Cpu => {
                let words = host_u32(&weight.data, "weight")?;
                let v =
                    crate::cpu::int8::unpack(&words, n as usize, weight.cols as usize, QType::I8);
                let sums: Vec<i32> = v
                    .chunks(weight.cols as usize)
                    .map(|r| r.iter().sum())
                    .collect();
                store_bytes(&row_sums, bytemuck::cast_slice(&sums), "row_sums")?;
            }
            Backend::Gpu(g) => {
                let pipeline = g.pipeline(PipelineKey {
                    family: Family::Int8,
                    precision: Precision::F32,
                    entry: "int8_rowsum",
                    overrides: vec![("WG", INT8_WG)],
                })?;
                let (wb, _) = bind_span(g, &weight.data, 0, n * k4, g.max_binding, "weight")?;
                let (sb, _) = bind_span(g, &row_sums, 0, n, g.max_binding, "row_sums")?;
                let mut batch = Batch::new(g, "int8_linear")?;
                let u = batch.uniform(&MatmulParams {
                    n: n as u32,
                    k4: k4 as u32,
                    ..Default::default()
                });
                batch.dispatch_at(
                    &pipeline,
                    &[(0, u.as_entire_binding()), (2, wb), (3, sb)],
                    n.div_ceil(INT8_WG as u64),
                )?;
                batch.finish()?;
            }
        }
        Ok(Int8Linear {
            weight,
            row_sums,
            scales,
        })
    }

    /// `y = sx · sw[n] · acc[m, n] + bias[n]` for int8 activations `x` (I8, per-tensor affine,
    /// (M, K)) and a prepared weight `w` ((N, K)); `y` is an f32 (M, N) row-major tensor, `bias`
    /// an optional f32 tensor of N values. See the [`matmul`](crate::int8::matmul) module docs.
    pub fn int8_matmul(
        &self,
        x: &QTensor,
        w: &Int8Linear,
        bias: Option<&Tensor>,
        y: &Tensor,
        variant: MatmulVariant,
    ) -> Result<()> {
        self.int8_matmul_with(x, w, bias, y, variant, MatmulKernel::auto(self))
    }

    /// [`Context::int8_matmul`] with an explicit kernel (results are identical for every
    /// kernel and workgroup shape; the CPU backend ignores it).
    pub fn int8_matmul_with(
        &self,
        x: &QTensor,
        w: &Int8Linear,
        bias: Option<&Tensor>,
        y: &Tensor,
        variant: MatmulVariant,
        kernel: MatmulKernel,
    ) -> Result<()> {
        check_dtype("y", DType::F32, y.dtype)?;
        if let Some(b) = bias {
            self.check_owned(b, "bias")?;
            check_dtype("bias", DType::F32, b.dtype)?;
            check_len("bias", w.out_features(), b.len)?;
            if b.conflicts(y) {
                return Err(Error::Aliasing { what: "bias and y" });
            }
        }
        self.matmul_common(x, w, bias, y, variant, false, kernel)
    }

    /// The matmul's raw accumulators `acc[m, n] = Σ_k (xq[m, k] − zx) · wq[n, k]` (exact i32,
    /// stored as their bits in the U32 (M, N) tensor `acc`).
    pub fn int8_matmul_acc(
        &self,
        x: &QTensor,
        w: &Int8Linear,
        acc: &Tensor,
        variant: MatmulVariant,
    ) -> Result<()> {
        self.int8_matmul_acc_with(x, w, acc, variant, MatmulKernel::auto(self))
    }

    /// [`Context::int8_matmul_acc`] with an explicit kernel.
    pub fn int8_matmul_acc_with(
        &self,
        x: &QTensor,
        w: &Int8Linear,
        acc: &Tensor,
        variant: MatmulVariant,
        kernel: MatmulKernel,
    ) -> Result<()> {
        check_dtype("acc", DType::U32, acc.dtype)?;
        self.matmul_common(x, w, None, acc, variant, true, kernel)
    }

    #[allow(clippy::too_many_arguments)]
    fn matmul_common(
        &self,
        x: &QTensor,
        w: &Int8Linear,
        bias: Option<&Tensor>,
        y: &Tensor,
        variant: MatmulVariant,
        raw: bool,
        kernel: MatmulKernel,
    ) -> Result<()> {
        kernel.check()?;
        x.check("x")?;
        w.weight.check("weight")?;
        for (t, what) in [
            (&x.data, "x"),
            (&w.weight.data, "weight"),
            (&w.row_sums, "row_sums"),
            (&w.scales, "scales"),
            (y, "y"),
        ] {
            self.check_owned(t, what)?;
        }
        if x.qtype != QType::I8 {
            return Err(invalid(
                "x.qtype",
                format!("{:?}", x.qtype),
                "the matmul activations must be I8",
            ));
        }
        if x.qparams.is_per_channel() {
            return Err(invalid(
                "x.qparams",
                x.qparams.scale.len(),
                "the matmul activations need per-tensor parameters",
            ));
        }
        let (m, n, k) = (x.rows, w.out_features(), x.cols);
        check_len("x.cols (K)", w.in_features(), k)?;
        check_len("row_sums", n, w.row_sums.len)?;
        check_len("scales", n, w.scales.len)?;
        check_len("y", m * n, y.len)?;
        if k > MATMUL_MAX_K {
            return Err(invalid("K", k, "at most 65536"));
        }
        for (t, what) in [
            (&x.data, "x and y"),
            (&w.weight.data, "weight and y"),
            (&w.row_sums, "row_sums and y"),
            (&w.scales, "scales and y"),
        ] {
            if t.conflicts(y) {
                return Err(Error::Aliasing { what });
            }
        }
        let (sx, zx) = (x.qparams.scale[0], x.qparams.zero_point[0]);
        match &self.backend {
            Backend::Cpu => {
                let xv = crate::cpu::int8::unpack(
                    &host_u32(&x.data, "x")?,
                    m as usize,
                    k as usize,
                    QType::I8,
                );
                let wv = crate::cpu::int8::unpack(
                    &host_u32(&w.weight.data, "weight")?,
                    n as usize,
                    k as usize,
                    QType::I8,
                );
                let acc = crate::cpu::int8::matmul_acc(&xv, zx, &wv, k as usize);
                if raw {
                    let bits: Vec<u32> = acc.iter().map(|&a| a as i32 as u32).collect();
                    store_bytes(y, bytemuck::cast_slice(&bits), "acc")
                } else {
                    let sw: Vec<f32> =
                        bytemuck::pod_collect_to_vec(&host_bytes(&w.scales, "scales")?);
                    let b = bias
                        .map(|b| crate::noise::host_values(b, "bias"))
                        .transpose()?;
                    let out = crate::cpu::int8::matmul(&acc, n as usize, sx, &sw, b.as_deref());
                    crate::noise::store_host(y, &out, "y")
                }
            }
            Backend::Gpu(g) => {
                let pipeline = g.pipeline(PipelineKey {
                    family: Family::Int8,
                    precision: Precision::F32,
                    entry: kernel.entry(variant, raw),
                    overrides: kernel.overrides(),
                })?;
                let k4 = x.words_per_row();
                let (tm, tn) = kernel.tile();
                let tiles_n = n.div_ceil(tn);
                let chunk = rows_per_chunk(g, &[k4 * 4, n * 4])?;
                let mut batch = Batch::new(g, "int8_matmul")?;
                let zero_bias;
                let bias_binding = match bias {
                    Some(b) => bind_span(g, b, 0, n, g.max_binding, "bias")?.0,
                    None => {
                        zero_bias = batch.scratch(n * 4);
                        zero_bias.as_entire_binding()
                    }
                };
                let (wb, _) = bind_span(g, &w.weight.data, 0, n * k4, g.max_binding, "weight")?;
                let (sb, _) = bind_span(g, &w.row_sums, 0, n, g.max_binding, "row_sums")?;
                let (cb, _) = bind_span(g, &w.scales, 0, n, g.max_binding, "scales")?;
                let mut row0 = 0;
                while row0 < m {
                    let rows = chunk.min(m - row0);
                    let (xb, x_skip) =
                        bind_span(g, &x.data, row0 * k4, rows * k4, g.max_window, "x")?;
                    if x_skip % 4 != 0 {
                        return Err(invalid(
                            "x offset",
                            x_skip,
                            "packed rows must start on 16-byte boundaries",
                        ));
                    }
                    let (yb, y_skip) = bind_span(g, y, row0 * n, rows * n, g.max_window, "y")?;
                    let u = batch.uniform(&MatmulParams {
                        m: rows as u32,
                        n: n as u32,
                        k4: k4 as u32,
                        tiles_n: tiles_n as u32,
                        x_skip,
                        y_skip,
                        zx,
                        sx,
                    });
                    batch.dispatch(
                        &pipeline,
                        &[
                            u.as_entire_binding(),
                            xb,
                            wb.clone(),
                            sb.clone(),
                            cb.clone(),
                            bias_binding.clone(),
                            yb,
                        ],
                        tiles_n * rows.div_ceil(tm),
                    )?;
                    row0 += rows;
                }
                batch.finish().map(|_| ())
            }
        }
    }
}
