//! [`Context`]: where ops run — a wgpu device (ours or the caller's) or the CPU reference.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result, invalid};
use crate::runtime::adapter::{BackendChoice, adapters};
use crate::runtime::batch::{Batch, SCRATCH};
use crate::runtime::gpu::{Gpu, KernelFeatures};
use crate::tensor::{DType, Element, Storage, Tensor};

/// Options of [`Context::with_options`].
#[derive(Clone, Copy, Debug)]
pub struct ContextOptions {
    /// Backend to use.
    pub backend: BackendChoice,
    /// Largest bound window in bytes (default: the adapter's storage binding limit). Smaller
    /// values exercise the chunked path on small tensors.
    pub max_window_bytes: Option<u64>,
    /// Fall back to the CPU reference (with a one-line notice) when no adapter exists.
    pub cpu_fallback: bool,
    /// How memory-bound kernels spread elements over invocations (default: by adapter type).
    pub access: AccessPattern,
}

/// How the memory-bound kernels (noise forward, STE backward, matrix–vector products) spread
/// elements over invocations. Both patterns compute the same values with the same random
/// numbers; only the speed differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessPattern {
    /// [`AccessPattern::PerInvocation`] on CPU-type adapters (lavapipe),
    /// [`AccessPattern::Coalesced`] on GPUs.
    #[default]
    Auto,
    /// Each invocation takes a contiguous run of elements (whole Philox groups, whole rows):
    /// what a CPU's SIMD lanes stream best, and the least random-number work. The assignment
    /// (and the k-means E-step) also reads its data through a texture copy where the
    /// dimension is a multiple of 4: on CPU adapters a texel fetch is a gather, a storage
    /// load a loop over the lanes.
    PerInvocation,
    /// Consecutive invocations take consecutive words (GPU subgroups then read whole memory
    /// transactions), at the cost of one Philox call per vec4 instead of per group of blocks.
    /// The matrix–vector kernels split each output row over 32 invocations, summed by a fixed
    /// tree in workgroup memory.
    Coalesced,
}

impl AccessPattern {
    /// Whether this means the coalesced pattern, `auto` being what [`AccessPattern::Auto`]
    /// resolves to.
    pub(crate) fn coalesced(self, auto: bool) -> bool {
        match self {
            AccessPattern::Auto => auto,
            AccessPattern::PerInvocation => false,
            AccessPattern::Coalesced => true,
        }
    }
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            max_window_bytes: None,
            cpu_fallback: true,
            access: AccessPattern::Auto,
        }
    }
}

#[derive(Clone)]
pub(crate) enum Backend {
    Gpu(Arc<Gpu>),
    Cpu,
}

/// Where quantnoise ops run: a wgpu device or the CPU reference implementation, behind the
/// same API. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Context {
    pub(crate) backend: Backend,
    /// Where the fused noisy Linear loader takes its mask from ([`Context::with_mask_source`]).
    pub(crate) mask_source: crate::noisy_linear::MaskSource,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Context({})", self.describe())
    }
}

impl Context {
    /// The best adapter of the backend named by `QUANTNOISE_BACKEND` (default: any), or the CPU
    /// reference with a one-line notice when there is no adapter.
    pub fn new() -> Result<Self> {
        Self::with_options(ContextOptions {
            backend: BackendChoice::from_env()?,
            ..Default::default()
        })
    }

    /// The best adapter of `backend` (no fallback for an explicit GPU backend).
    pub fn with_backend(backend: BackendChoice) -> Result<Self> {
        Self::with_options(ContextOptions {
            backend,
            cpu_fallback: backend == BackendChoice::Auto,
            ..Default::default()
        })
    }

    /// A context with explicit options.
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        if options.backend == BackendChoice::Cpu {
            return Ok(Self::cpu());
        }
        match adapters(options.backend).into_iter().next() {
            Some(adapter) => Self::open(&adapter, &options),
            None if options.cpu_fallback => {
                eprintln!(
                    "quantnoise: no GPU adapter found ({:?}); using the CPU reference backend",
                    options.backend
                );
                Ok(Self::cpu())
            }
            None => Err(Error::NoAdapter(format!("{:?}", options.backend))),
        }
    }

    /// One context per adapter found on `backend` (best first); for conformance tests and
    /// benchmarks across every adapter.
    pub fn all_adapters(
        backend: BackendChoice,
        max_window_bytes: Option<u64>,
    ) -> Vec<Result<Self>> {
        Self::all_adapters_with(ContextOptions {
            backend,
            max_window_bytes,
            ..Default::default()
        })
    }

    /// [`Context::all_adapters`] with every option of [`ContextOptions`] (`cpu_fallback` is
    /// not used).
    pub fn all_adapters_with(options: ContextOptions) -> Vec<Result<Self>> {
        adapters(options.backend)
            .iter()
            .map(|a| Self::open(a, &options))
            .collect()
    }

    /// Creates a device on `adapter` with every optional feature the kernels can use and the
    /// adapter's full limits (wgpu's defaults cap buffers at 256 MiB).
    pub fn from_adapter(adapter: &wgpu::Adapter, max_window_bytes: Option<u64>) -> Result<Self> {
        let options = ContextOptions {
            max_window_bytes,
            ..Default::default()
        };
        Self::open(adapter, &options)
    }

    fn open(adapter: &wgpu::Adapter, options: &ContextOptions) -> Result<Self> {
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("quantnoise"),
            required_features: KernelFeatures::wanted(adapter.features()),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| Error::RequestDevice(e.to_string()))?;
        let description = format!("{:?}/{}", info.backend, info.name);
        let gpu = Gpu::new(
            device,
            queue,
            description,
            info.backend,
            true,
            options.max_window_bytes,
            options.access,
        );
        Ok(Self {
            backend: Backend::Gpu(Arc::new(gpu)),
            mask_source: crate::noisy_linear::MaskSource::DEFAULT,
        })
    }

    /// Adopts a caller's device and queue (e.g. a training framework's). Kernels use whatever
    /// features the device was created with; the caller's error handlers are left in place.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        let description = format!("{:?}/{} (adopted)", info.backend, info.name);
        Self {
            backend: Backend::Gpu(Arc::new(Gpu::new(
                device,
                queue,
                description,
                info.backend,
                false,
                None,
                AccessPattern::Auto,
            ))),
            mask_source: crate::noisy_linear::MaskSource::DEFAULT,
        }
    }

    /// The CPU reference backend (float64 accumulation), with the same API.
    pub fn cpu() -> Self {
        Self {
            backend: Backend::Cpu,
            mask_source: crate::noisy_linear::MaskSource::DEFAULT,
        }
    }

    /// Whether this is the CPU reference backend.
    pub fn is_cpu(&self) -> bool {
        matches!(self.backend, Backend::Cpu)
    }

    /// `Backend/adapter name`, e.g. `Vulkan/llvmpipe (LLVM 15.0.6, 256 bits)`, or `Cpu/reference`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Gpu(g) => g.description.clone(),
            Backend::Cpu => "Cpu/reference".into(),
        }
    }

    /// The wgpu backend, or `None` for the CPU reference.
    pub fn wgpu_backend(&self) -> Option<wgpu::Backend> {
        match &self.backend {
            Backend::Gpu(g) => Some(g.backend),
            Backend::Cpu => None,
        }
    }

    /// Optional features enabled on the device (the CPU reference supports f16).
    pub fn features(&self) -> KernelFeatures {
        match &self.backend {
            Backend::Gpu(g) => g.features,
            Backend::Cpu => KernelFeatures {
                shader_f16: true,
                ..Default::default()
            },
        }
    }

    /// The wgpu device and queue, when on a device.
    pub fn wgpu(&self) -> Option<(&wgpu::Device, &wgpu::Queue)> {
        match &self.backend {
            Backend::Gpu(g) => Some((&g.device, &g.queue)),
            Backend::Cpu => None,
        }
    }

    /// Largest bound window in bytes (0 on the CPU backend).
    pub fn max_window_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Gpu(g) => g.max_window,
            Backend::Cpu => 0,
        }
    }

    pub(crate) fn gpu(&self) -> Option<&Gpu> {
        match &self.backend {
            Backend::Gpu(g) => Some(g),
            Backend::Cpu => None,
        }
    }

    /// Waits until all submitted work on the device has finished (no-op on the CPU backend).
    /// Ops return once their work is submitted unless they read something back.
    pub fn synchronize(&self) -> Result<()> {
        match &self.backend {
            Backend::Gpu(g) => g.wait_idle(),
            Backend::Cpu => Ok(()),
        }
    }

    /// Runs `f` and measures, with GPU timestamp queries, the device time of the work submitted
    /// meanwhile (by any thread): each submission counts the summed duration of its compute
    /// passes. Returns `None` as the time on the CPU backend and on adapters without
    /// `timestamp-query`. Waits for the work to finish. Up to 2048 compute passes are timed
    /// per call; submissions beyond are counted in [`DeviceTime::untimed`]. A nested call on
    /// the same device is an [`Error::InvalidArgument`].
    ///
    /// [`DeviceTime::untimed`]: crate::DeviceTime::untimed
    pub fn device_time<R>(
        &self,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<(R, Option<crate::DeviceTime>)> {
        match &self.backend {
            Backend::Gpu(g) => g.time_device(f),
            Backend::Cpu => Ok((f()?, None)),
        }
    }

    /// Copies host data into a new tensor.
    pub fn upload<T: Element>(&self, data: &[T]) -> Result<Tensor> {
        let t = self.empty(data.len() as u64, T::DTYPE)?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// A new tensor of `len` elements with unspecified contents (zeros in practice). Device
    /// buffers are padded to 16 bytes so kernels can use vec4 access.
    pub fn empty(&self, len: u64, dtype: DType) -> Result<Tensor> {
        if len >= u32::MAX as u64 {
            return Err(invalid(
                "len",
                len,
                "tensors hold fewer than 2^32 - 1 elements",
            ));
        }
        let storage = match &self.backend {
            Backend::Cpu => Storage::Cpu(Arc::new(Mutex::new(vec![
                0u8;
                (len * dtype.size()) as usize
            ]))),
            Backend::Gpu(g) => {
                let size = (len * dtype.size()).next_multiple_of(16).max(16);
                if size > g.limits.max_buffer_size {
                    return Err(invalid(
                        "len",
                        len,
                        "larger than the adapter's max_buffer_size",
                    ));
                }
                let _guard = g.lock();
                let scopes = crate::runtime::gpu::ErrorScopes::push(&g.device);
                let buffer = g.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("quantnoise tensor"),
                    size,
                    usage: SCRATCH,
                    mapped_at_creation: false,
                });
                scopes.pop("allocate tensor")?;
                Storage::Gpu {
                    buffer,
                    offset: 0,
                    device: g.id,
                }
            }
        };
        Ok(Tensor {
            storage,
            len,
            dtype,
        })
    }

    /// Adopts `len` elements of a caller's buffer starting at byte `offset`, without a copy.
    /// The buffer needs `STORAGE` usage (and `COPY_SRC` to be read back with
    /// [`Context::read_f32`]); `offset` must be a multiple of the device's
    /// `min_storage_buffer_offset_alignment`.
    pub fn wrap_buffer(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        len: u64,
        dtype: DType,
    ) -> Result<Tensor> {
        let g = self.gpu().ok_or(Error::WrongContext {
            what: "wrap_buffer",
            why: "the CPU backend has no device",
        })?;
        let align = g.limits.min_storage_buffer_offset_alignment as u64;
        if !offset.is_multiple_of(align) {
            return Err(invalid(
                "offset",
                offset,
                "must be a multiple of min_storage_buffer_offset_alignment",
            ));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(invalid(
                "buffer usage",
                format!("{:?}", buffer.usage()),
                "needs STORAGE",
            ));
        }
        let needed = len * dtype.size();
        if offset + needed > buffer.size() {
            return Err(Error::BufferTooSmall {
                what: "wrap_buffer",
                needed,
                offset,
                size: buffer.size(),
            });
        }
        if len >= u32::MAX as u64 {
            return Err(invalid(
                "len",
                len,
                "tensors hold fewer than 2^32 - 1 elements",
            ));
        }
        Ok(Tensor {
            storage: Storage::Gpu {
                buffer: buffer.clone(),
                offset,
                device: g.id,
            },
            len,
            dtype,
        })
    }

    /// Overwrites a tensor with host data of the same length and type.
    pub fn write<T: Element>(&self, tensor: &Tensor, data: &[T]) -> Result<()> {
        self.check_owned(tensor, "write")?;
        check_dtype("write", T::DTYPE, tensor.dtype)?;
        crate::noise::check_len("write", tensor.len, data.len() as u64)?;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        match (&self.backend, &tensor.storage) {
            (Backend::Cpu, Storage::Cpu(v)) => v.lock().unwrap().copy_from_slice(bytes),
            (Backend::Gpu(g), Storage::Gpu { buffer, offset, .. }) => {
                g.check_alive()?;
                let _guard = g.lock();
                let scopes = crate::runtime::gpu::ErrorScopes::push(&g.device);
                let aligned = bytes.len() / 4 * 4;
                g.queue.write_buffer(buffer, *offset, &bytes[..aligned]);
                if aligned < bytes.len() {
                    // write_buffer needs 4-byte multiples: pad the last word with what is there.
                    let mut last = self.read_bytes(tensor, aligned as u64, 4)?;
                    last[..bytes.len() - aligned].copy_from_slice(&bytes[aligned..]);
                    g.queue
                        .write_buffer(buffer, *offset + aligned as u64, &last);
                }
                scopes.pop("write tensor")?;
            }
            _ => return Err(wrong_context("write")),
        }
        Ok(())
    }

    pub(crate) fn read_bytes(&self, tensor: &Tensor, from: u64, size: u64) -> Result<Vec<u8>> {
        self.check_owned(tensor, "read")?;
        match (&self.backend, &tensor.storage) {
            (Backend::Cpu, Storage::Cpu(v)) => {
                Ok(v.lock().unwrap()[from as usize..(from + size) as usize].to_vec())
            }
            (Backend::Gpu(g), Storage::Gpu { buffer, offset, .. }) => {
                let start = offset + from;
                let aligned_start = start / 4 * 4;
                let end = (start + size).next_multiple_of(4).min(buffer.size());
                let mut batch = Batch::new(g, "read tensor")?;
                let r = batch.read(buffer, aligned_start, end - aligned_start);
                let mut out = batch.finish()?;
                let bytes = Batch::take(&mut out, r);
                let skip = (start - aligned_start) as usize;
                Ok(bytes[skip..skip + size as usize].to_vec())
            }
            _ => Err(wrong_context("read")),
        }
    }

    /// Reads a tensor back as raw little-endian bytes.
    pub fn read_raw(&self, tensor: &Tensor) -> Result<Vec<u8>> {
        self.read_bytes(tensor, 0, tensor.size_bytes())
    }

    /// Reads an f32 or f16 tensor back as f32.
    pub fn read_f32(&self, tensor: &Tensor) -> Result<Vec<f32>> {
        let bytes = self.read_raw(tensor)?;
        match tensor.dtype {
            DType::F32 => Ok(bytemuck::pod_collect_to_vec(&bytes)),
            DType::F16 => Ok(bytemuck::pod_collect_to_vec::<u8, half::f16>(&bytes)
                .iter()
                .map(|x| x.to_f32())
                .collect()),
            DType::U32 => Err(Error::DTypeMismatch {
                what: "read_f32",
                expected: DType::F32,
                got: DType::U32,
            }),
        }
    }

    /// Reads a u32 tensor (e.g. a bit-packed mask) back.
    pub fn read_u32(&self, tensor: &Tensor) -> Result<Vec<u32>> {
        check_dtype("read_u32", DType::U32, tensor.dtype)?;
        Ok(bytemuck::pod_collect_to_vec(&self.read_raw(tensor)?))
    }

    /// Reads an f16 tensor back.
    pub fn read_f16(&self, tensor: &Tensor) -> Result<Vec<half::f16>> {
        check_dtype("read_f16", DType::F16, tensor.dtype)?;
        Ok(bytemuck::pod_collect_to_vec(&self.read_raw(tensor)?))
    }
}

impl Context {
    /// Fails unless `tensor` lives where this context runs: host memory for the CPU backend,
    /// a buffer created or adopted by this very device otherwise (wgpu panics on resources of
    /// another instance, so this is checked before anything reaches wgpu).
    pub(crate) fn check_owned(&self, tensor: &Tensor, what: &'static str) -> Result<()> {
        match (&self.backend, &tensor.storage) {
            (Backend::Cpu, Storage::Cpu(_)) => Ok(()),
            (Backend::Gpu(g), Storage::Gpu { device, .. }) if *device == g.id => Ok(()),
            (Backend::Gpu(_), Storage::Gpu { .. }) => Err(Error::WrongContext {
                what,
                why: "the tensor belongs to another device",
            }),
            _ => Err(wrong_context(what)),
        }
    }
}

pub(crate) fn check_dtype(what: &'static str, expected: DType, got: DType) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::DTypeMismatch {
            what,
            expected,
            got,
        })
    }
}

pub(crate) fn wrong_context(what: &'static str) -> Error {
    Error::WrongContext {
        what,
        why: "device tensors and host tensors cannot be mixed",
    }
}
