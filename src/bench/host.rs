//! The host CPU of a benchmark run. On a CPU adapter (lavapipe, llvmpipe, WARP) it is the
//! device: the same kernels' ratios to the FMA ceiling were a third to a half lower on an AVX2
//! host than on AVX-512 ones, so a report says which it came from.

use serde_json::{Value, json};

/// What the report records of the host CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCpu {
    /// The model name (Linux `/proc/cpuinfo`), if known.
    pub model: Option<String>,
    /// `std::env::consts::ARCH`.
    pub arch: &'static str,
    /// Logical CPUs available to this process.
    pub logical_cpus: usize,
    /// The SIMD extensions present among those CPU adapters compile for (x86-64: `avx2`,
    /// `fma`, `avx512f`, `avx512vl`; aarch64: `neon`).
    pub simd: Vec<&'static str>,
}

impl HostCpu {
    /// Reads the running host.
    pub fn detect() -> HostCpu {
        HostCpu {
            model: model_name(),
            arch: std::env::consts::ARCH,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            simd: simd(),
        }
    }

    /// The `_meta.host` object of the JSON report.
    pub fn to_json(&self) -> Value {
        json!({
            "cpu_model": self.model,
            "arch": self.arch,
            "logical_cpus": self.logical_cpus,
            "simd": self.simd,
        })
    }
}

impl std::fmt::Display for HostCpu {
    /// E.g. `AMD EPYC, x86_64, 2 logical CPUs, avx2 fma`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {}, {} logical CPUs, {}",
            self.model.as_deref().unwrap_or("unknown model"),
            self.arch,
            self.logical_cpus,
            match self.simd.is_empty() {
                true => "no SIMD extension detected".to_string(),
                false => self.simd.join(" "),
            }
        )
    }
}

fn model_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(key, _)| matches!(key.trim(), "model name" | "Model" | "Hardware"))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(target_arch = "x86_64")]
fn simd() -> Vec<&'static str> {
    let mut s = Vec::new();
    if std::arch::is_x86_feature_detected!("avx2") {
        s.push("avx2");
    }
    if std::arch::is_x86_feature_detected!("fma") {
        s.push("fma");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        s.push("avx512f");
    }
    if std::arch::is_x86_feature_detected!("avx512vl") {
        s.push("avx512vl");
    }
    s
}

#[cfg(target_arch = "aarch64")]
fn simd() -> Vec<&'static str> {
    match std::arch::is_aarch64_feature_detected!("neon") {
        true => vec!["neon"],
        false => vec![],
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd() -> Vec<&'static str> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_host() {
        let h = HostCpu::detect();
        assert_eq!(h.arch, std::env::consts::ARCH);
        assert!(h.logical_cpus >= 1);
        let j = h.to_json();
        assert_eq!(j["logical_cpus"], json!(h.logical_cpus));
        assert_eq!(j["simd"].as_array().map(Vec::len), Some(h.simd.len()));
        // The extensions are listed in a fixed order, each once.
        let mut sorted = h.simd.clone();
        sorted.dedup();
        assert_eq!(sorted, h.simd);
        assert!(
            h.to_string()
                .contains(&format!("{} logical CPUs", h.logical_cpus))
        );
    }

    #[test]
    fn display_without_model_or_simd() {
        let h = HostCpu {
            model: None,
            arch: "x86_64",
            logical_cpus: 2,
            simd: vec![],
        };
        assert_eq!(
            h.to_string(),
            "unknown model, x86_64, 2 logical CPUs, no SIMD extension detected"
        );
        assert_eq!(h.to_json()["cpu_model"], Value::Null);
    }
}
