//! A window of a tensor as a texture of vec4 texels, for kernels on CPU adapters. There a texel
//! fetch at a per-invocation address is a gather, where a storage load is a loop over the SIMD
//! lanes (`shaders/assign_rows_tex.wgsl`). On lavapipe, 32 MiB read as vec4s at per-invocation
//! addresses took 29–32 ms from storage and 4.6–5.2 ms from a texture; copying them into the
//! texture took 4.2–4.6 ms (`bench-results/README.md`, 2026-12-08).

use crate::error::Result;
use crate::runtime::batch::Batch;
use crate::runtime::elementwise::device_buffer;
use crate::runtime::gpu::Gpu;
use crate::runtime::window::Window;
use crate::tensor::{DType, Tensor};

/// Texels per texture row (the `TEX_W` override of the shaders that read such textures).
pub(crate) const TEX_W: u64 = 4096;

/// Elements `w.start .. w.start + w.len` of `t` (`w.len` a multiple of 4) copied into a pooled
/// texture of [`TEX_W`] texels per row, row-major, 4 elements per texel (rgba32float for f32,
/// rgba16float for f16), when the device reads per invocation (CPU adapters, see
/// [`crate::AccessPattern`]) and the copy is possible: a float dtype, a buffer with
/// `COPY_SRC` usage, and a texture within the device's limits. `None`: bind the buffer.
pub(crate) fn texel_window(
    g: &Gpu,
    batch: &mut Batch,
    t: &Tensor,
    w: &Window,
) -> Result<Option<wgpu::TextureView>> {
    let format = match t.dtype {
        DType::F32 => wgpu::TextureFormat::Rgba32Float,
        DType::F16 => wgpu::TextureFormat::Rgba16Float,
        DType::U32 => return Ok(None),
    };
    let (buffer, offset) = device_buffer(t, "data")?;
    let texels = w.len / 4;
    let height = texels.div_ceil(TEX_W);
    let copyable = buffer.usage().contains(wgpu::BufferUsages::COPY_SRC);
    if g.coalesced
        || !copyable
        || !w.len.is_multiple_of(4)
        || texels == 0
        || height.max(TEX_W.min(texels)) > g.limits.max_texture_dimension_2d as u64
    {
        return Ok(None);
    }
    let start = offset + w.start * t.dtype.size();
    let texture = batch.texture_of(buffer, start, format, texels, TEX_W);
    Ok(Some(
        texture.create_view(&wgpu::TextureViewDescriptor::default()),
    ))
}
