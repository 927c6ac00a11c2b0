//! A wgpu device with its caches: compiled pipelines, pooled buffers, and the state that turns
//! device errors into [`crate::Error`]s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::runtime::context::AccessPattern;
use crate::runtime::shaders::{Family, Precision};

/// Optional adapter features the kernels can use, as enabled on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFeatures {
    /// `shader-f16`: f16 storage variants of the kernels.
    pub shader_f16: bool,
    /// Subgroup operations.
    pub subgroups: bool,
    /// GPU timestamp queries (benchmarks).
    pub timestamp_query: bool,
    /// Float32 atomics (never used by the portable kernels).
    pub float32_atomics: bool,
}

impl KernelFeatures {
    pub(crate) fn from_wgpu(f: wgpu::Features) -> Self {
        Self {
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            float32_atomics: f.contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
        }
    }

    /// The features to request from an adapter: every one of the above it has.
    pub(crate) fn wanted(available: wgpu::Features) -> wgpu::Features {
        available
            & (wgpu::Features::SHADER_F16
                | wgpu::Features::SUBGROUP
                | wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::SHADER_FLOAT32_ATOMIC)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub family: Family,
    pub precision: Precision,
    pub entry: &'static str,
    pub overrides: Vec<(&'static str, u32)>,
}

/// A device and everything cached on it.
pub(crate) struct Gpu {
    /// Process-unique id: tensors remember the device they belong to.
    pub id: u64,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub description: String,
    pub backend: wgpu::Backend,
    /// Memory-bound kernels use the coalesced access pattern (see
    /// [`crate::runtime::context::AccessPattern`]).
    pub coalesced: bool,
    pub features: KernelFeatures,
    pub limits: wgpu::Limits,
    /// Kernels may read lookup tables from 64 KiB uniform bindings ([`UNIFORM_TABLE_BYTES`]):
    /// the device's limit allows it. On CPU adapters a uniform-buffer load at a per-lane
    /// address is a branch-free gather, where a storage load is a loop over the lanes.
    pub uniform_tables: bool,
    /// Bytes of one bound window (at most the storage binding limit).
    pub max_window: u64,
    /// The device's storage binding limit, for buffers bound whole (e.g. codebooks).
    pub max_binding: u64,
    modules: Mutex<HashMap<(Family, Precision), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    pool: Mutex<HashMap<(wgpu::BufferUsages, u64), Vec<wgpu::Buffer>>>,
    /// Pooled textures of [`Gpu::acquire_texture`], by format and size.
    textures: Mutex<HashMap<(wgpu::TextureFormat, u32, u32), Vec<wgpu::Texture>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// The open device-timing window, if any (see [`Gpu::time_device`]).
    pub(crate) timing: Mutex<Option<crate::runtime::timing::Window>>,
    /// Whether device access goes through [`GL_LOCK`].
    serialised: bool,
}

/// Bytes of one uniform lookup-table binding (see [`Gpu::uniform_tables`]).
pub(crate) const UNIFORM_TABLE_BYTES: u64 = 65536;

impl Gpu {
    /// Bytes of the uniform tables this device's modules declare (`UNIFORM_TABLE_VEC4S`): 64
    /// KiB with [`Gpu::uniform_tables`], else a 16-byte stand-in.
    pub(crate) fn uniform_table_binding(&self) -> u64 {
        if self.uniform_tables {
            UNIFORM_TABLE_BYTES
        } else {
            16
        }
    }
}

/// wgpu's GL backend panics when a thread waits on its context lock for over a second (and
/// EGL contexts of one process are not independent): on GL every device access of this library,
/// on every GL device, is serialised (re-entrantly, per thread).
static GL_LOCK: parking_lot::ReentrantMutex<()> = parking_lot::ReentrantMutex::new(());

/// Held while a thread uses a GL device (see [`GL_LOCK`]); empty on other backends.
pub(crate) type DeviceGuard = Option<parking_lot::ReentrantMutexGuard<'static, ()>>;

impl Gpu {
    pub(crate) fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        description: String,
        backend: wgpu::Backend,
        owned: bool,
        max_window: Option<u64>,
        access: AccessPattern,
    ) -> Self {
        let device_type = device.adapter_info().device_type;
        let coalesced = access.coalesced(device_type != wgpu::DeviceType::Cpu);
        let lost = Arc::new(Mutex::new(None));
        if owned {
            // Our own device: errors outside scopes and device loss are recorded, never panics.
            let l = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                *l.lock().unwrap() = Some(format!("{reason:?}: {msg}"));
            });
            device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
                eprintln!("quantnoise: uncaptured wgpu error: {e}");
            }));
        }
        let limits = device.limits();
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_window = max_window.unwrap_or(binding).min(binding) / 256 * 256;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            features: KernelFeatures::from_wgpu(device.features()),
            coalesced,
            device,
            queue,
            description,
            backend,
            uniform_tables: limits.max_uniform_buffer_binding_size >= UNIFORM_TABLE_BYTES,
            limits,
            max_window,
            max_binding: binding,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pool: Mutex::default(),
            textures: Mutex::default(),
            lost,
            timing: Mutex::default(),
            serialised: backend == wgpu::Backend::Gl,
        }
    }

    /// Waits until all submitted work has finished; a lost device is an error.
    pub(crate) fn wait_idle(&self) -> Result<()> {
        self.check_alive()?;
        let _guard = self.lock();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(e.to_string()))?;
        self.check_alive()
    }

    /// Serialises device access on GL (no-op elsewhere).
    pub(crate) fn lock(&self) -> DeviceGuard {
        self.serialised.then(|| GL_LOCK.lock())
    }

    pub(crate) fn check_alive(&self) -> Result<()> {
        match &*self.lost.lock().unwrap() {
            Some(msg) => Err(Error::DeviceLost(msg.clone())),
            None => Ok(()),
        }
    }

    /// Fails unless the device can run `precision` variants.
    pub(crate) fn require(&self, precision: Precision) -> Result<()> {
        if precision == Precision::F16 && !self.features.shader_f16 {
            return Err(Error::Unsupported {
                feature: "shader-f16",
                adapter: self.description.clone(),
            });
        }
        Ok(())
    }

    /// The compute pipeline of `key`, compiled once per device.
    pub(crate) fn pipeline(&self, key: PipelineKey) -> Result<wgpu::ComputePipeline> {
        self.check_alive()?;
        self.require(key.precision)?;
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let _guard = self.lock();
        let scopes = ErrorScopes::push(&self.device);
        let module = self
            .modules
            .lock()
            .unwrap()
            .entry((key.family, key.precision))
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(key.family.file()),
                        source: wgpu::ShaderSource::Wgsl(
                            key.family
                                .source_with(key.precision, self.uniform_tables)
                                .into(),
                        ),
                    })
            })
            .clone();
        let constants: Vec<(&str, f64)> =
            key.overrides.iter().map(|(k, v)| (*k, *v as f64)).collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key.entry),
                layout: None,
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache: None,
            });
        scopes.pop("pipeline creation")?;
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// A buffer from the pool (size rounded up to a power of two, at least 256 bytes).
    pub(crate) fn acquire(&self, usage: wgpu::BufferUsages, size: u64) -> wgpu::Buffer {
        let size = size.max(256).next_power_of_two();
        if let Some(b) = self
            .pool
            .lock()
            .unwrap()
            .get_mut(&(usage, size))
            .and_then(|v| v.pop())
        {
            return b;
        }
        let _guard = self.lock();
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("quantnoise pooled"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// A pooled `width` × `height` texture of `format` that copies write and kernels sample
    /// (`COPY_DST | TEXTURE_BINDING`): allocating one of tens of MiB costs milliseconds on
    /// lavapipe.
    pub(crate) fn acquire_texture(
        &self,
        format: wgpu::TextureFormat,
        width: u32,
        height: u32,
    ) -> wgpu::Texture {
        if let Some(t) = self
            .textures
            .lock()
            .unwrap()
            .get_mut(&(format, width, height))
            .and_then(|v| v.pop())
        {
            return t;
        }
        let _guard = self.lock();
        self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("quantnoise texels"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
    }

    /// Returns a texture to the pool (queue ordering makes reuse safe, as for buffers).
    pub(crate) fn release_texture(&self, texture: wgpu::Texture) {
        self.textures
            .lock()
            .unwrap()
            .entry((texture.format(), texture.width(), texture.height()))
            .or_default()
            .push(texture);
    }

    /// Returns a buffer to the pool. Queue ordering makes reuse by a later submission safe.
    pub(crate) fn release(&self, buffer: wgpu::Buffer) {
        self.pool
            .lock()
            .unwrap()
            .entry((buffer.usage(), buffer.size()))
            .or_default()
            .push(buffer);
    }
}

/// Validation, out-of-memory and internal error scopes around one op.
pub(crate) struct ErrorScopes {
    guards: Vec<wgpu::ErrorScopeGuard>,
}

impl ErrorScopes {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        Self {
            guards: vec![
                device.push_error_scope(wgpu::ErrorFilter::Validation),
                device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
                device.push_error_scope(wgpu::ErrorFilter::Internal),
            ],
        }
    }

    /// Pops the scopes (innermost first) and returns the first error captured.
    /// (An unpopped `ErrorScopes` is popped in the same order by `Drop`, e.g. on an early
    /// return; wgpu requires scopes to be popped in reverse order.)
    pub(crate) fn pop(mut self, op: &'static str) -> Result<()> {
        let mut first = None;
        while let Some(guard) = self.guards.pop() {
            if let Some(e) = pollster::block_on(guard.pop()) {
                first.get_or_insert(e);
            }
        }
        match first {
            None => Ok(()),
            Some(wgpu::Error::OutOfMemory { source }) => Err(Error::OutOfMemory {
                op,
                message: source.to_string(),
            }),
            Some(wgpu::Error::Validation { description, .. }) => Err(Error::Validation {
                op,
                message: description,
            }),
            Some(wgpu::Error::Internal { description, .. }) => Err(Error::Internal {
                op,
                message: description,
            }),
        }
    }
}

impl Drop for ErrorScopes {
    fn drop(&mut self) {
        while let Some(guard) = self.guards.pop() {
            drop(guard);
        }
    }
}
