//! The one error type of the library.

/// Everything that can go wrong in a quantnoise call.
///
/// Bad arguments are reported before anything reaches the device; device-side failures
/// (validation, out-of-memory, device loss) are captured with wgpu error scopes and
/// returned here instead of panicking. After any error the [`crate::Context`] stays usable,
/// except after [`Error::DeviceLost`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor or buffer length does not match the shape it is used with.
    #[error("shape mismatch: {what}: expected {expected} elements, got {got}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// Elements the shape requires.
        expected: u64,
        /// Elements provided.
        got: u64,
    },
    /// The number of columns is not a multiple of the block size.
    #[error("cols = {cols} is not a multiple of block_size = {block_size}")]
    BlockSizeMismatch {
        /// Columns of the weight viewed as (rows, cols).
        cols: u64,
        /// Requested block size.
        block_size: u64,
    },
    /// An argument is outside its valid range.
    #[error("invalid argument {name} = {value}: {why}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// Offending value, formatted.
        value: String,
        /// What the valid range is.
        why: &'static str,
    },
    /// A buffer is too small for the tensor it is supposed to hold.
    #[error(
        "buffer too small for {what}: needs {needed} bytes from offset {offset}, buffer has {size}"
    )]
    BufferTooSmall {
        /// Which argument.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Offset into the buffer.
        offset: u64,
        /// Buffer size in bytes.
        size: u64,
    },
    /// A tensor has the wrong element type for this op.
    #[error("{what}: expected dtype {expected:?}, got {got:?}")]
    DTypeMismatch {
        /// Which argument.
        what: &'static str,
        /// Expected element type.
        expected: crate::DType,
        /// Provided element type.
        got: crate::DType,
    },
    /// An op would read and write the same buffer (any regions of it: wgpu forbids binding a
    /// buffer writable and again in the same dispatch) or the same host storage.
    #[error("{what}: inputs and outputs must live in different buffers")]
    Aliasing {
        /// Which arguments.
        what: &'static str,
    },
    /// Tensors of different contexts (or a device tensor on the CPU context) were mixed.
    #[error("{what}: tensor does not belong to this context ({why})")]
    WrongContext {
        /// Which argument.
        what: &'static str,
        /// Details.
        why: &'static str,
    },
    /// The adapter lacks a feature this call needs.
    #[error("unsupported on {adapter}: {feature}")]
    Unsupported {
        /// The feature, e.g. "shader-f16".
        feature: &'static str,
        /// Adapter description.
        adapter: String,
    },
    /// Non-finite values were found where finite ones are required.
    #[error("{what}: {count} non-finite value(s) (NaN or infinity)")]
    NonFinite {
        /// Which tensor.
        what: &'static str,
        /// How many values were not finite.
        count: u64,
    },
    /// No adapter matched the request.
    #[error("no adapter found: {0}")]
    NoAdapter(String),
    /// Device creation failed.
    #[error("could not create a device: {0}")]
    RequestDevice(String),
    /// wgpu reported a validation error.
    #[error("wgpu validation error in {op}: {message}")]
    Validation {
        /// The op that was running.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// The device ran out of memory.
    #[error("out of device memory in {op}: {message}")]
    OutOfMemory {
        /// The op that was running.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// An internal driver error.
    #[error("internal device error in {op}: {message}")]
    Internal {
        /// The op that was running.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost; the context can no longer be used.
    #[error("device lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("buffer readback failed: {0}")]
    Readback(String),
}

/// Result alias of the library.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid(
    name: &'static str,
    value: impl std::fmt::Display,
    why: &'static str,
) -> Error {
    Error::InvalidArgument {
        name,
        value: value.to_string(),
        why,
    }
}
