//! # quantnoise
//!
//! GPU kernels (WGSL on wgpu) for training with quantization noise and compressing networks to
//! extreme sizes, after "Training with Quantization Noise for Extreme Model Compression"
//! (Fan, Stock et al., ICLR 2021).
//!
//! Every op runs on any wgpu adapter (Vulkan, Metal, DX12, GL) or on the float64 CPU reference,
//! behind one [`Context`]. Noise masks come from a counter-based RNG (Philox4x32-10), so a mask
//! depends only on `(seed, step, stage, block)` and is bit-identical on every backend.
//!
//! ```no_run
//! use quantnoise::{Context, NoiseSeed, NoiseSpec, SteMode, WeightShape};
//! let ctx = Context::new()?;
//! let shape = WeightShape::Linear { out_features: 256, in_features: 512 };
//! let w: Vec<f32> = (0..shape.numel()).map(|i| (i as f32 * 0.37).sin()).collect();
//! let weight = ctx.upload(&w)?;
//! let noisy = ctx.empty(shape.numel(), quantnoise::DType::F32)?;
//! let spec = NoiseSpec::proxy(8, 0.1);
//! let seed = NoiseSeed::new(42, 0);
//! let resolved = ctx.noise_forward(&weight, &noisy, shape, &spec, seed, None)?;
//! // ... forward with `noisy`, backward gives dL/dW_noise in `grad_noisy` ...
//! # let grad_noisy = ctx.upload(&w)?;
//! let grad_w = ctx.empty(shape.numel(), quantnoise::DType::F32)?;
//! ctx.ste_backward(&grad_noisy, &weight, &grad_w, shape, &resolved, seed, SteMode::Identity)?;
//! # Ok::<(), quantnoise::Error>(())
//! ```
#![warn(missing_docs)]

pub mod assign;
pub mod bench;
pub mod copy;
pub mod cpu;
mod error;
pub mod fma;
pub mod int8;
pub mod kmeans;
pub mod matmul;
pub mod noise;
pub mod noisy_linear;
pub mod observer;
pub mod philox;
pub mod pq;
pub mod pq_matmul;
pub mod runtime;
mod shape;
pub mod ste;
mod tensor;

pub use assign::{AssignProblem, Assignment};
pub use error::{Error, Result};
pub use int8::{Int8Linear, MatmulVariant, QScheme, QTensor, QType};
pub use kmeans::{
    KmeansAssignments, KmeansBounds, KmeansInit, KmeansOptions, KmeansProblem, KmeansResult,
};
pub use matmul::{LinearShape, MatmulConfig, Tuning};
pub use noise::{Noise, NoiseSpec, QuantScheme, SteMode};
pub use noisy_linear::MaskSource;
pub use observer::{Observer, QParams};
pub use philox::NoiseSeed;
pub use pq::{CentroidFormat, PqLayer, PqSize, PqSizeReport, PqSizeRow};
pub use pq_matmul::{ActQuant, CodebookFormat, IndexFormat, PqMatmulMethod, PqOutput, PqWeight};
pub use runtime::adapter::BackendChoice;
pub use runtime::context::{AccessPattern, Context, ContextOptions};
pub use runtime::gpu::KernelFeatures;
pub use runtime::shaders;
pub use runtime::timing::DeviceTime;
pub use shape::WeightShape;
pub use tensor::{DType, Element, Tensor};
