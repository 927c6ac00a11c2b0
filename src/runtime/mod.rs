//! The host runtime: adapter choice, device adoption, pipeline cache, pooled buffers, batched
//! encoding, chunked dispatch over bound windows, readback.

pub mod adapter;
pub(crate) mod batch;
pub mod context;
pub mod elementwise;
pub mod gpu;
pub mod shaders;
pub(crate) mod texels;
pub mod timing;
pub(crate) mod window;
