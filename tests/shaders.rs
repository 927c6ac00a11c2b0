//! Offline validation of every WGSL kernel variant.
//!
//! Each family × precision is parsed and validated by naga with the capabilities its variant may
//! rely on, then every entry point is translated to SPIR-V, MSL, HLSL and GLSL. When `spirv-val`
//! and `glslangValidator` are installed their verdict on the SPIR-V and GLSL is required too;
//! with `QUANTNOISE_REQUIRE_VALIDATORS=1` (as in CI) a missing validator fails the test.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};
use quantnoise::shaders::{Family, Precision};

/// SPIR-V versions to emit, with the `spirv-val` environment each is checked under: the oldest
/// Vulkan wgpu supports and the version wgpu emits for Vulkan 1.1 devices.
const SPIRV_TARGETS: [((u8, u8), &str); 2] = [((1, 0), "vulkan1.0"), ((1, 3), "vulkan1.1")];

/// GLSL versions wgpu's GL backend may target for compute.
const GLSL_VERSIONS: [glsl::Version; 2] = [
    glsl::Version::Embedded {
        version: 310,
        is_webgl: false,
    },
    glsl::Version::Desktop(430),
];

/// The capabilities a variant may rely on.
fn capabilities(precision: Precision) -> Capabilities {
    match precision {
        // The portable baseline: wgpu with no optional features (no f16, no subgroups, no float
        // atomics, no 64-bit types), which every backend, GL included, exposes.
        Precision::F32 => Capabilities::empty(),
        Precision::F16 => Capabilities::SHADER_FLOAT16,
    }
}

fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::F32 => "f32",
        Precision::F16 => "f16",
    }
}

/// Every family × precision with its source.
fn variants() -> impl Iterator<Item = (Family, Precision, String)> {
    Family::ALL.into_iter().flat_map(|family| {
        family
            .precisions()
            .iter()
            .map(move |&p| (family, p, family.source(p)))
    })
}

/// Parses and validates a variant's whole module.
fn validate(
    family: Family,
    precision: Precision,
    source: &str,
) -> Result<(Module, ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("WGSL parse error:\n{}", e.emit_to_string(source)))?;
    let info = Validator::new(ValidationFlags::all(), capabilities(precision))
        .validate(&module)
        .map_err(|e| format!("naga validation error:\n{}", e.emit_to_string(source)))?;
    let declared: BTreeSet<&str> = module
        .entry_points
        .iter()
        .map(|ep| ep.name.as_str())
        .collect();
    let listed: BTreeSet<&str> = family.entry_points().iter().copied().collect();
    if declared != listed {
        return Err(format!(
            "module declares entry points {declared:?}, Family lists {listed:?}"
        ));
    }
    Ok((module, info))
}

/// Where a backend output is checked: one entry point of one variant.
struct Target {
    family: Family,
    precision: Precision,
    entry_point: &'static str,
}

impl Target {
    fn name(&self) -> String {
        let file = self.family.file().trim_end_matches(".wgsl");
        format!(
            "{file}.{}.{}",
            precision_name(self.precision),
            self.entry_point
        )
    }
}

/// Runs `check` on every entry point of every variant for which `wanted` holds. The module it
/// gets holds only that entry point and what it uses (so globals sharing a binding with another
/// entry point's are gone), with every override at its default. Panics listing all failures.
fn for_each_entry_point(
    wanted: impl Fn(Precision) -> bool,
    mut check: impl FnMut(&Target, &Module, &ModuleInfo) -> Result<(), String>,
) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (family, precision, source) in variants().filter(|v| wanted(v.1)) {
        let (module, info) = match validate(family, precision, &source) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "{}/{}: {e}",
                    family.file(),
                    precision_name(precision)
                ));
                continue;
            }
        };
        for &entry_point in family.entry_points() {
            let target = Target {
                family,
                precision,
                entry_point,
            };
            let result = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((ShaderStage::Compute, entry_point)),
                &naga::back::PipelineConstants::default(),
            )
            .map_err(|e| format!("process_overrides: {e}"))
            .and_then(|(module, info)| check(&target, &module, &info));
            checked += 1;
            if let Err(e) = result {
                failures.push(format!("{}: {e}", target.name()));
            }
        }
    }
    assert!(checked > 0, "no entry point was checked");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Whether an external validator can be run. A missing one fails under
/// `QUANTNOISE_REQUIRE_VALIDATORS=1`, and is otherwise skipped with a notice.
fn have_tool(tool: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    let required = std::env::var("QUANTNOISE_REQUIRE_VALIDATORS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{tool} is not on PATH and QUANTNOISE_REQUIRE_VALIDATORS=1"
    );
    // Written to the stream itself, which the test harness does not capture.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! NOTICE: {tool} is not on PATH; its validation step is SKIPPED !!!!!!!!\n"
    );
    false
}

/// Writes `contents` to a scratch file named `file` and runs `tool args… file` on it.
fn run_tool(tool: &str, args: &[&str], file: &str, contents: &[u8]) -> Result<(), String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shaders");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(file);
    std::fs::write(&path, contents).map_err(|e| e.to_string())?;
    let out = Command::new(tool)
        .args(args)
        .arg(&path)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{tool} {} {} failed ({}):\n{}{}",
        args.join(" "),
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    ))
}

fn spirv(
    module: &Module,
    info: &ModuleInfo,
    entry_point: &str,
    lang_version: (u8, u8),
) -> Result<Vec<u8>, String> {
    let options = spv::Options {
        lang_version,
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry_point.into(),
    };
    let words = spv::write_vec(module, info, &options, Some(&pipeline))
        .map_err(|e| format!("SPIR-V: {e}"))?;
    Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
}

fn metal(module: &Module, info: &ModuleInfo, entry_point: &str) -> Result<String, String> {
    let options = msl::Options {
        lang_version: (2, 0),
        ..Default::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry_point.into())),
        ..Default::default()
    };
    msl::write_string(module, info, &options, &pipeline)
        .map(|(source, _)| source)
        .map_err(|e| format!("MSL: {e}"))
}

fn hlsl(
    module: &Module,
    info: &ModuleInfo,
    entry_point: &str,
    shader_model: hlsl::ShaderModel,
) -> Result<String, String> {
    let options = hlsl::Options {
        shader_model,
        ..Default::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry_point.into())),
    };
    let mut source = String::new();
    hlsl::Writer::new(&mut source, &options, &pipeline)
        .write(module, info, None)
        .map_err(|e| format!("HLSL: {e}"))?;
    Ok(source)
}

fn glsl(
    module: &Module,
    info: &ModuleInfo,
    entry_point: &str,
    version: glsl::Version,
) -> Result<String, String> {
    let options = glsl::Options {
        version,
        ..Default::default()
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry_point.into(),
        multiview: None,
    };
    let mut source = String::new();
    glsl::Writer::new(
        &mut source,
        module,
        info,
        &options,
        &pipeline,
        Default::default(),
    )
    .and_then(|mut w| w.write())
    .map_err(|e| format!("GLSL {version}: {e}"))?;
    Ok(source)
}

#[test]
fn every_variant_parses_and_validates() {
    let failures: Vec<String> = variants()
        .filter_map(|(family, precision, source)| {
            let e = validate(family, precision, &source).err()?;
            Some(format!(
                "{}/{}: {e}",
                family.file(),
                precision_name(precision)
            ))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn f16_variants_need_shader_f16() {
    for (family, _, source) in variants().filter(|v| v.1 == Precision::F16) {
        let module = naga::front::wgsl::parse_str(&source).expect("parses");
        let result =
            Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module);
        assert!(
            result.is_err(),
            "{}: the f16 variant validates without SHADER_FLOAT16",
            family.file()
        );
    }
}

/// The module's global variables for which `wanted` holds.
fn globals(
    module: &Module,
    wanted: impl Fn(&naga::GlobalVariable) -> bool,
) -> Vec<&naga::GlobalVariable> {
    module
        .global_variables
        .iter()
        .map(|(_, g)| g)
        .filter(|g| wanted(g))
        .collect()
}

/// WebGPU's default `maxStorageBuffersPerShaderStage` and `maxUniformBuffersPerShaderStage`:
/// what a device adopted from a framework that asked for default limits allows.
const DEFAULT_STORAGE_BUFFERS: usize = 8;
const DEFAULT_UNIFORM_BUFFERS: usize = 12;

#[test]
fn entry_points_fit_default_binding_limits() {
    for_each_entry_point(
        |_| true,
        |_, module, _| {
            let storage = globals(module, |g| {
                matches!(g.space, naga::AddressSpace::Storage { .. })
            })
            .len();
            let uniform = globals(module, |g| matches!(g.space, naga::AddressSpace::Uniform)).len();
            if storage > DEFAULT_STORAGE_BUFFERS || uniform > DEFAULT_UNIFORM_BUFFERS {
                return Err(format!(
                    "{storage} storage and {uniform} uniform buffers: WebGPU's defaults allow \
                     {DEFAULT_STORAGE_BUFFERS} and {DEFAULT_UNIFORM_BUFFERS}"
                ));
            }
            Ok(())
        },
    );
}

/// Uniform arrays one entry point may read. Mesa 22.3.6's lavapipe wrote into freed heap
/// memory while compiling shaders with six or more loops that each gather from a different
/// uniform array (`bench-results/README.md`, 2026-12-07 12:30Z); four compiled clean under
/// valgrind.
const MAX_UNIFORM_ARRAYS: usize = 4;

#[test]
fn entry_points_read_few_uniform_arrays() {
    for_each_entry_point(
        |_| true,
        |_, module, _| {
            let arrays: Vec<&str> = globals(module, |g| {
                matches!(g.space, naga::AddressSpace::Uniform)
                    && matches!(module.types[g.ty].inner, naga::TypeInner::Array { .. })
            })
            .iter()
            .map(|g| g.name.as_deref().unwrap_or("?"))
            .collect();
            if arrays.len() > MAX_UNIFORM_ARRAYS {
                return Err(format!(
                    "{} uniform arrays ({}): at most {MAX_UNIFORM_ARRAYS}, see \
                     MAX_UNIFORM_ARRAYS",
                    arrays.len(),
                    arrays.join(", ")
                ));
            }
            Ok(())
        },
    );
}

#[test]
fn spirv_validates() {
    let spirv_val = have_tool("spirv-val");
    for_each_entry_point(
        |_| true,
        |target, module, info| {
            for (lang_version, env) in SPIRV_TARGETS {
                let bytes = spirv(module, info, target.entry_point, lang_version)?;
                if spirv_val {
                    let file = format!(
                        "{}.spv{}{}.spv",
                        target.name(),
                        lang_version.0,
                        lang_version.1
                    );
                    run_tool("spirv-val", &["--target-env", env], &file, &bytes)?;
                }
            }
            Ok(())
        },
    );
}

#[test]
fn msl_translates() {
    for_each_entry_point(
        |_| true,
        |target, module, info| metal(module, info, target.entry_point).map(drop),
    );
}

#[test]
fn hlsl_translates() {
    for_each_entry_point(
        |_| true,
        |target, module, info| {
            // Shader model 6.2 is the first with 16-bit types; 5.1 is the oldest wgpu's DX12 accepts.
            let shader_model = match target.precision {
                Precision::F32 => hlsl::ShaderModel::V5_1,
                Precision::F16 => hlsl::ShaderModel::V6_2,
            };
            hlsl(module, info, target.entry_point, shader_model).map(drop)
        },
    );
}

#[test]
fn glsl_validates() {
    let glslang = have_tool("glslangValidator");
    // GL has no f16 (wgpu's GL backend never exposes `shader-f16`), so the F16 variants are not
    // translated to GLSL.
    for_each_entry_point(
        |p| p == Precision::F32,
        |target, module, info| {
            for version in GLSL_VERSIONS {
                let source = glsl(module, info, target.entry_point, version)?;
                if glslang {
                    let tag = if version.is_es() { "es" } else { "core" };
                    let file = format!("{}.{tag}.comp", target.name());
                    run_tool("glslangValidator", &[], &file, source.as_bytes())?;
                }
            }
            Ok(())
        },
    );
}

/// No file under `shaders/` escapes the checks above: each is part of some variant's module.
#[test]
fn every_shader_file_belongs_to_a_family() {
    let sources: Vec<String> = variants().map(|(_, _, source)| source).collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("shader is readable");
        assert!(
            sources.iter().any(|s| s.contains(&text)),
            "{} is not part of any Family's source, so it is never validated",
            path.display()
        );
        seen += 1;
    }
    assert!(seen > 0, "no .wgsl file found in {}", dir.display());
}
