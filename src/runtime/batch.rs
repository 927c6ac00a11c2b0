//! One op's GPU work: dispatches and copies recorded into one command encoder, submitted once,
//! with error scopes around it and one readback path.

use std::sync::mpsc;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::runtime::gpu::{DeviceGuard, ErrorScopes, Gpu};
use crate::runtime::timing::PassSlot;
use crate::runtime::window::grid;
use crate::tensor::{DType, Storage, Tensor};

/// Usage of scratch buffers: written by kernels, copied to staging for readback.
pub(crate) const SCRATCH: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);
const UNIFORM: wgpu::BufferUsages = wgpu::BufferUsages::UNIFORM.union(wgpu::BufferUsages::COPY_DST);
/// Written by kernels (or copies) as storage, read by others as uniform buffers.
const UNIFORM_SCRATCH: wgpu::BufferUsages = SCRATCH.union(wgpu::BufferUsages::UNIFORM);
const INDIRECT: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::INDIRECT);
const RESOLVE: wgpu::BufferUsages =
    wgpu::BufferUsages::QUERY_RESOLVE.union(wgpu::BufferUsages::COPY_SRC);
const STAGING: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// The first `size` bytes of a (pooled, hence possibly larger) buffer as a binding, so that
/// `arrayLength` in the shader sees the real length.
pub(crate) fn sized(buffer: &wgpu::Buffer, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: 0,
        size: wgpu::BufferSize::new(size),
    })
}

/// Handle of a readback registered with [`Batch::read`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Readback(usize);

pub(crate) struct Batch<'g> {
    gpu: &'g Gpu,
    op: &'static str,
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    pooled: Vec<wgpu::Buffer>,
    pooled_textures: Vec<wgpu::Texture>,
    /// The textures [`Batch::texture_of`] filled: source buffer, offset and texels.
    texel_copies: Vec<(wgpu::Buffer, u64, u64, wgpu::Texture)>,
    readbacks: Vec<(wgpu::Buffer, u64)>,
    scopes: ErrorScopes,
    /// The device-timing window this submission's passes were timed in, their timestamp
    /// slots, and whether some pass was not (the window's slots used up, or a pass outside
    /// that window).
    timed_window: Option<u64>,
    timed_passes: Vec<u32>,
    untimed: bool,
    // Dropped last: the scopes are popped while the device is still held.
    _guard: DeviceGuard,
}

impl<'g> Batch<'g> {
    pub(crate) fn new(gpu: &'g Gpu, op: &'static str) -> Result<Self> {
        gpu.check_alive()?;
        let guard = gpu.lock();
        let scopes = ErrorScopes::push(&gpu.device);
        let encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
        Ok(Self {
            gpu,
            op,
            encoder,
            pass: None,
            pooled: Vec::new(),
            pooled_textures: Vec::new(),
            texel_copies: Vec::new(),
            readbacks: Vec::new(),
            scopes,
            timed_window: None,
            timed_passes: Vec::new(),
            untimed: false,
            _guard: guard,
        })
    }

    /// A pooled uniform buffer holding `value`.
    pub(crate) fn uniform<T: Pod>(&mut self, value: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(value);
        let buffer = self.gpu.acquire(UNIFORM, bytes.len() as u64);
        self.gpu.queue.write_buffer(&buffer, 0, bytes);
        self.pooled.push(buffer.clone());
        buffer
    }

    /// A pooled device-only buffer of at least `size` bytes, zero-filled.
    pub(crate) fn scratch(&mut self, size: u64) -> wgpu::Buffer {
        let buffer = self.gpu.acquire(SCRATCH, size);
        self.end_pass();
        self.encoder.clear_buffer(&buffer, 0, None);
        self.pooled.push(buffer.clone());
        buffer
    }

    /// A pooled device-only buffer of at least `size` bytes with unspecified contents (for
    /// outputs a kernel writes whole before anything reads them).
    pub(crate) fn scratch_uncleared(&mut self, size: u64) -> wgpu::Buffer {
        let buffer = self.gpu.acquire(SCRATCH, size);
        self.pooled.push(buffer.clone());
        buffer
    }

    /// [`Batch::scratch_uncleared`] that kernels may also bind as uniform buffers.
    pub(crate) fn uniform_scratch(&mut self, size: u64) -> wgpu::Buffer {
        let buffer = self.gpu.acquire(UNIFORM_SCRATCH, size);
        self.pooled.push(buffer.clone());
        buffer
    }

    /// [`Batch::scratch`] as a tensor of `len` elements of `dtype` (a kernel's temporary output).
    pub(crate) fn scratch_tensor(&mut self, len: u64, dtype: DType) -> Tensor {
        Tensor {
            storage: Storage::Gpu {
                buffer: self.scratch(len * dtype.size()),
                offset: 0,
                device: self.gpu.id,
            },
            len,
            dtype,
        }
    }

    /// A pooled device-only buffer holding `bytes`.
    pub(crate) fn storage_init(&mut self, bytes: &[u8]) -> wgpu::Buffer {
        let buffer = self.gpu.acquire(SCRATCH, bytes.len() as u64);
        self.gpu.queue.write_buffer(&buffer, 0, bytes);
        self.pooled.push(buffer.clone());
        buffer
    }

    fn end_pass(&mut self) {
        self.pass = None;
    }

    /// Records one dispatch of `groups` workgroups (on a 2-D grid) with bindings 0, 1, 2, ...
    pub(crate) fn dispatch(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[wgpu::BindingResource<'_>],
        groups: u64,
    ) -> Result<()> {
        let numbered: Vec<_> = bindings
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| (i as u32, r))
            .collect();
        self.dispatch_at(pipeline, &numbered, groups)
    }

    /// Records one dispatch with explicitly numbered bindings.
    pub(crate) fn dispatch_at(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[(u32, wgpu::BindingResource<'_>)],
        groups: u64,
    ) -> Result<()> {
        let (x, y) = grid(groups)?;
        self.bind(pipeline, bindings).dispatch_workgroups(x, y, 1);
        Ok(())
    }

    /// Records one dispatch whose workgroup counts the device reads from `args` at `offset`
    /// (three u32: x, y, z; `args` needs `INDIRECT` usage, see [`Batch::indirect_args`]).
    pub(crate) fn dispatch_indirect(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[(u32, wgpu::BindingResource<'_>)],
        args: &wgpu::Buffer,
        offset: u64,
    ) {
        self.bind(pipeline, bindings)
            .dispatch_workgroups_indirect(args, offset);
    }

    /// A pooled buffer of at least `size` bytes that kernels write dispatch arguments into.
    pub(crate) fn indirect_args(&mut self, size: u64) -> wgpu::Buffer {
        let buffer = self.gpu.acquire(INDIRECT, size);
        self.pooled.push(buffer.clone());
        buffer
    }

    /// The pass with `pipeline` and a bind group of `bindings` set.
    fn bind(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[(u32, wgpu::BindingResource<'_>)],
    ) -> &mut wgpu::ComputePass<'static> {
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: *i,
                resource: r.clone(),
            })
            .collect();
        let bind_group = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(self.op),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        if self.pass.is_none() {
            let slot = self.gpu.pass_slot();
            let timestamp_writes = match &slot {
                PassSlot::Slot {
                    query_set,
                    slot,
                    window,
                } if *self.timed_window.get_or_insert(*window) == *window => {
                    self.timed_passes.push(*slot);
                    Some(wgpu::ComputePassTimestampWrites {
                        query_set,
                        beginning_of_pass_write_index: Some(2 * slot),
                        end_of_pass_write_index: Some(2 * slot + 1),
                    })
                }
                PassSlot::Full { window } => {
                    self.timed_window.get_or_insert(*window);
                    self.untimed = true;
                    None
                }
                // A pass before the window opened, or in another window than earlier passes.
                _ => {
                    self.untimed = true;
                    None
                }
            };
            let pass = self
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        let pass = self.pass.as_mut().expect("begun above");
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass
    }

    /// Records a buffer-to-buffer copy (offsets and size multiples of 4).
    pub(crate) fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) {
        self.end_pass();
        self.encoder
            .copy_buffer_to_buffer(src, src_offset, dst, dst_offset, Some(size));
    }

    /// A view of a pooled 1×1 rgba32float texture (zeros), bound where a kernel declares a
    /// texture it does not read.
    pub(crate) fn stand_in_texture(&mut self) -> wgpu::TextureView {
        let texture = self
            .gpu
            .acquire_texture(wgpu::TextureFormat::Rgba32Float, 1, 1);
        self.pooled_textures.push(texture.clone());
        texture.create_view(&wgpu::TextureViewDescriptor::default())
    }

    /// A pooled texture ([`Gpu::acquire_texture`]) holding `texels` texels of `src` from
    /// `offset` (a multiple of the texel size), row-major at `width` texels per row (`width` ×
    /// texel bytes a multiple of 256): copied as the whole rows, then the last partial one.
    /// The same range of the same buffer again (the k-means E-step's data, then its M-step's)
    /// is the texture already copied in this batch: callers must not write a buffer they read
    /// through textures within one batch.
    pub(crate) fn texture_of(
        &mut self,
        src: &wgpu::Buffer,
        offset: u64,
        format: wgpu::TextureFormat,
        texels: u64,
        width: u64,
    ) -> wgpu::Texture {
        let copied = self.texel_copies.iter().find(|(b, o, t, tex)| {
            b == src
                && *o == offset
                && *t == texels
                && tex.format() == format
                && tex.width() as u64 == width.min(texels)
        });
        if let Some((.., texture)) = copied {
            return texture.clone();
        }
        let height = texels.div_ceil(width);
        let texture = self
            .gpu
            .acquire_texture(format, width.min(texels) as u32, height as u32);
        self.pooled_textures.push(texture.clone());
        self.end_pass();
        let texel_bytes = texture.format().block_copy_size(None).unwrap_or(16) as u64;
        let rows = texels / width;
        let rest = texels % width;
        let mut copy = |offset: u64, y: u64, width: u64, height: u64| {
            self.encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: src,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset,
                        // Needed (a multiple of 256) only for several rows.
                        bytes_per_row: (height > 1).then_some((width * texel_bytes) as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: y as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: height as u32,
                    depth_or_array_layers: 1,
                },
            );
        };
        if rows > 0 {
            copy(offset, 0, width, rows);
        }
        if rest > 0 {
            copy(offset + rows * width * texel_bytes, rows, rest, 1);
        }
        self.texel_copies
            .push((src.clone(), offset, texels, texture.clone()));
        texture
    }

    /// Copies `size` bytes of `buffer` from `offset` back to the host at [`Batch::finish`].
    pub(crate) fn read(&mut self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Readback {
        self.end_pass();
        let padded = size.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let staging = self.gpu.acquire(STAGING, padded);
        self.encoder
            .copy_buffer_to_buffer(buffer, offset, &staging, 0, Some(padded));
        self.readbacks.push((staging, size));
        Readback(self.readbacks.len() - 1)
    }

    /// Resolves the timestamp query pairs `2·slot, 2·slot + 1` of `set`, one pair per
    /// [`wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT`] bytes in the order of `slots`, and reads them
    /// back.
    pub(crate) fn read_timestamp_pairs(&mut self, set: &wgpu::QuerySet, slots: &[u32]) -> Readback {
        const STRIDE: u64 = wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;
        let bytes = slots.len() as u64 * STRIDE;
        let resolved = self.gpu.acquire(RESOLVE, bytes);
        self.pooled.push(resolved.clone());
        self.end_pass();
        for (i, &slot) in slots.iter().enumerate() {
            self.encoder.resolve_query_set(
                set,
                2 * slot..2 * slot + 2,
                &resolved,
                i as u64 * STRIDE,
            );
        }
        self.read(&resolved, 0, bytes)
    }

    /// Submits, waits when something is read back, and returns the bytes of each readback.
    pub(crate) fn finish(mut self) -> Result<Vec<Vec<u8>>> {
        self.end_pass();
        let gpu = self.gpu;
        let index = gpu.queue.submit([self.encoder.finish()]);
        gpu.op_timed(
            self.timed_window,
            std::mem::take(&mut self.timed_passes),
            !self.untimed,
        );
        let scoped = self.scopes.pop(self.op);
        let result = scoped.and_then(|_| {
            if self.readbacks.is_empty() {
                return Ok(Vec::new());
            }
            let (tx, rx) = mpsc::channel();
            for (i, (staging, size)) in self.readbacks.iter().enumerate() {
                let tx = tx.clone();
                let padded = size.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
                staging.map_async(wgpu::MapMode::Read, 0..padded, move |r| {
                    let _ = tx.send((i, r));
                });
            }
            gpu.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index),
                    timeout: None,
                })
                .map_err(|e| Error::DeviceLost(e.to_string()))?;
            gpu.check_alive()?;
            drop(tx);
            for (_, r) in rx.iter() {
                r.map_err(|e| Error::Readback(e.to_string()))?;
            }
            let mut out = Vec::with_capacity(self.readbacks.len());
            for (staging, size) in &self.readbacks {
                let padded = size.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
                let view = staging
                    .get_mapped_range(0..padded)
                    .map_err(|e| Error::Readback(e.to_string()))?;
                out.push(view[..*size as usize].to_vec());
                drop(view);
                staging.unmap();
            }
            Ok(out)
        });
        for buffer in self.pooled.drain(..) {
            gpu.release(buffer);
        }
        for texture in self.pooled_textures.drain(..) {
            gpu.release_texture(texture);
        }
        // After a failure a staging buffer may still be mapped or pending: drop it instead.
        if result.is_ok() {
            for (staging, _) in self.readbacks.drain(..) {
                gpu.release(staging);
            }
        }
        result
    }

    /// Bytes of a readback from the output of [`Batch::finish`].
    pub(crate) fn take(out: &mut [Vec<u8>], r: Readback) -> Vec<u8> {
        std::mem::take(&mut out[r.0])
    }
}
