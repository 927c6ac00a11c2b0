//! The one dispatch path of the element-wise noise kernels: every tensor of equal length is cut
//! into the same bound windows, which start on Philox-group boundaries (a group is 4 blocks, so
//! one Philox call per stage serves `4·block_size` elements). Each window runs the kernel's vec4
//! entry point over its whole groups, `gpt` groups per invocation (contiguous, or interleaved
//! with the workgroup's other invocations under the coalesced access pattern), and its scalar
//! tail entry point over the rest.

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::runtime::batch::Batch;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::window::{Window, windows};
use crate::tensor::{Storage, Tensor};

/// Invocations per workgroup of the element-wise kernels.
pub const WG: u32 = 64;
/// Target vec4s per invocation: per-invocation overhead dominates on software rasterisers.
pub const TARGET_VEC4_PER_INVOCATION: u32 = 8;

/// Philox groups per invocation for a block size: about [`TARGET_VEC4_PER_INVOCATION`] vec4s.
pub(crate) fn groups_per_invocation(block_size: u32) -> u32 {
    (TARGET_VEC4_PER_INVOCATION / block_size).max(1)
}

/// An element-wise kernel: its family, precision and entry points, and the specialisation
/// constants of its vec4 entry point (see `shaders/noise_chain.wgsl`).
pub(crate) struct Elementwise {
    pub family: Family,
    pub precision: Precision,
    pub vec4_entry: &'static str,
    pub tail_entry: &'static str,
    pub block_size: u32,
    pub stages: u32,
    pub layout: u32,
}

pub(crate) fn device_buffer<'t>(
    t: &'t Tensor,
    what: &'static str,
) -> Result<(&'t wgpu::Buffer, u64)> {
    match &t.storage {
        Storage::Gpu { buffer, offset, .. } => Ok((buffer, *offset)),
        Storage::Cpu(_) => Err(crate::runtime::context::wrong_context(what)),
    }
}

/// A binding of elements `[w.start, w.start + count)` of `t`, `bytes` long.
pub(crate) fn window_binding<'t>(
    t: &'t Tensor,
    w: &Window,
    bytes: u64,
    what: &'static str,
) -> Result<wgpu::BindingResource<'t>> {
    let (buffer, offset) = device_buffer(t, what)?;
    let start = offset + w.start * t.dtype.size();
    if start + bytes > buffer.size() {
        return Err(Error::BufferTooSmall {
            what,
            needed: bytes,
            offset: start,
            size: buffer.size(),
        });
    }
    Ok(wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: start,
        size: wgpu::BufferSize::new(bytes),
    }))
}

impl Elementwise {
    /// Records the kernel over `tensors` (bindings 1..; all of the same length and dtype),
    /// followed by `extra` bindings. `params(window)` is the uniform (binding 0) of a window.
    pub(crate) fn record<P: Pod>(
        &self,
        gpu: &Gpu,
        batch: &mut Batch,
        tensors: &[(&Tensor, &'static str)],
        extra: &[wgpu::BindingResource],
        params: impl Fn(&Window) -> P,
    ) -> Result<()> {
        let (first, _) = tensors[0];
        let elem = first.dtype.size();
        let group = 4 * self.block_size as u64;
        let key = |entry| PipelineKey {
            family: self.family,
            precision: self.precision,
            entry,
            overrides: vec![("WG", WG)],
        };
        let main = gpu.pipeline(PipelineKey {
            overrides: vec![
                ("WG", WG),
                ("BS", self.block_size),
                ("GPT", groups_per_invocation(self.block_size)),
                ("STAGES", self.stages),
                ("LAYOUT", self.layout),
                ("COALESCED", gpu.coalesced as u32),
            ],
            ..key(self.vec4_entry)
        })?;
        let tail = gpu.pipeline(PipelineKey {
            overrides: vec![],
            ..key(self.tail_entry)
        })?;
        let per_invocation = (WG * groups_per_invocation(self.block_size)) as u64;
        for w in windows(first.len, elem, group, gpu.max_window)? {
            let uniform = batch.uniform(&params(&w));
            let bind = |bytes: u64| -> Result<Vec<wgpu::BindingResource>> {
                let mut b = vec![uniform.as_entire_binding()];
                for (t, what) in tensors {
                    b.push(window_binding(t, &w, bytes, what)?);
                }
                b.extend(extra.iter().cloned());
                Ok(b)
            };
            let groups = w.len / group;
            if groups > 0 {
                batch.dispatch(
                    &main,
                    &bind(groups * group * elem)?,
                    groups.div_ceil(per_invocation),
                )?;
            }
            if w.len % group != 0 {
                batch.dispatch(&tail, &bind((w.len * elem).next_multiple_of(4))?, 1)?;
            }
        }
        Ok(())
    }
}
