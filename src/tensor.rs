//! Tensors: flat arrays on a device buffer (owned or the caller's) or in host memory for the
//! CPU backend.

use std::sync::{Arc, Mutex};

use half::f16;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float (IEEE binary16).
    F16,
    /// 32-bit unsigned integer (bit-packed masks).
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(&self) -> u64 {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Storage {
    /// `device` is the id of the [`crate::Context`] device that created or adopted it.
    Gpu {
        buffer: wgpu::Buffer,
        offset: u64,
        device: u64,
    },
    Cpu(Arc<Mutex<Vec<u8>>>),
}

/// A flat array of `len` elements of one [`DType`].
///
/// Create one with [`crate::Context::upload`], [`crate::Context::empty`] or adopt a caller's
/// buffer with [`crate::Context::wrap_buffer`]; read it back with
/// [`crate::Context::read_f32`]. Cloning a tensor clones the handle, not the data.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub(crate) storage: Storage,
    pub(crate) len: u64,
    pub(crate) dtype: DType,
}

/// Tensors are equal when they are the same view of the same memory (handle identity, not
/// contents).
impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        let same = match (&self.storage, &other.storage) {
            (
                Storage::Gpu {
                    buffer: a,
                    offset: oa,
                    ..
                },
                Storage::Gpu {
                    buffer: b,
                    offset: ob,
                    ..
                },
            ) => a == b && oa == ob,
            (Storage::Cpu(a), Storage::Cpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same && self.len == other.len && self.dtype == other.dtype
    }
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes of data.
    pub fn size_bytes(&self) -> u64 {
        self.len * self.dtype.size()
    }

    /// The device buffer and byte offset, when the tensor lives on a device.
    pub fn wgpu_buffer(&self) -> Option<(&wgpu::Buffer, u64)> {
        match &self.storage {
            Storage::Gpu { buffer, offset, .. } => Some((buffer, *offset)),
            Storage::Cpu(_) => None,
        }
    }

    /// Whether one op may not read one tensor and write the other: on a device, any two
    /// regions of the same buffer (wgpu forbids a buffer bound writable and also bound again in
    /// one dispatch); on the host, the same storage.
    pub(crate) fn conflicts(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Gpu { buffer: a, .. }, Storage::Gpu { buffer: b, .. }) => a == b,
            (Storage::Cpu(a), Storage::Cpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Host data that can be uploaded into a tensor.
pub trait Element: bytemuck::Pod {
    /// The tensor element type.
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
}

impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

/// Converts raw little-endian tensor bytes to f64 values.
pub(crate) fn bytes_to_f64(bytes: &[u8], dtype: DType) -> Vec<f64> {
    match dtype {
        DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(bytes)
            .iter()
            .map(|&x| x as f64)
            .collect(),
        DType::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(bytes)
            .iter()
            .map(|x| x.to_f64())
            .collect(),
        DType::U32 => bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
            .iter()
            .map(|&x| x as f64)
            .collect(),
    }
}

/// Converts f64 values to tensor bytes of `dtype` (rounding to nearest).
pub(crate) fn f64_to_bytes(values: &[f64], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => {
            bytemuck::cast_slice(&values.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_vec()
        }
        DType::F16 => bytemuck::cast_slice(
            &values
                .iter()
                .map(|&x| f16::from_f32(x as f32))
                .collect::<Vec<_>>(),
        )
        .to_vec(),
        DType::U32 => {
            bytemuck::cast_slice(&values.iter().map(|&x| x as u32).collect::<Vec<_>>()).to_vec()
        }
    }
}
