//! Adapter discovery and ranking.

use std::str::FromStr;

use crate::error::{Error, Result};

/// Which backend a [`crate::Context`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// The best adapter of any backend (discrete > integrated > virtual > CPU-type), or the CPU
    /// reference when there is none.
    Auto,
    /// Vulkan.
    Vulkan,
    /// Metal.
    Metal,
    /// DirectX 12.
    Dx12,
    /// OpenGL / GLES.
    Gl,
    /// The CPU reference implementation (no wgpu).
    Cpu,
}

impl FromStr for BackendChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "" | "auto" => BackendChoice::Auto,
            "vulkan" | "vk" => BackendChoice::Vulkan,
            "metal" | "mtl" => BackendChoice::Metal,
            "dx12" | "d3d12" => BackendChoice::Dx12,
            "gl" | "gles" | "opengl" => BackendChoice::Gl,
            "cpu" => BackendChoice::Cpu,
            _ => {
                return Err(crate::error::invalid(
                    "QUANTNOISE_BACKEND",
                    s,
                    "vulkan|metal|dx12|gl|cpu|auto",
                ));
            }
        })
    }
}

impl BackendChoice {
    /// The backend named by `QUANTNOISE_BACKEND`, or `Auto` when unset.
    pub fn from_env() -> Result<Self> {
        match std::env::var("QUANTNOISE_BACKEND") {
            Ok(v) => v.parse(),
            Err(_) => Ok(BackendChoice::Auto),
        }
    }

    pub(crate) fn wgpu_backends(&self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::all(),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
            BackendChoice::Cpu => wgpu::Backends::empty(),
        }
    }
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

/// Every compute-capable adapter of the chosen backends, best first.
pub(crate) fn adapters(choice: BackendChoice) -> Vec<wgpu::Adapter> {
    if choice == BackendChoice::Cpu {
        return Vec::new();
    }
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = choice.wgpu_backends();
    let instance = wgpu::Instance::new(desc);
    let mut found: Vec<wgpu::Adapter> =
        pollster::block_on(instance.enumerate_adapters(choice.wgpu_backends()))
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .collect();
    found.sort_by_key(|a| {
        let info = a.get_info();
        (type_rank(info.device_type), backend_rank(info.backend))
    });
    found
}
