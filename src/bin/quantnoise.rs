//! `quantnoise`: adapter listing and the benchmark report.
//!
//! ```text
//! quantnoise info
//! quantnoise bench [--json FILE] [--quick] [--backend vulkan|metal|dx12|gl|auto]
//!                  [--rounds N] [--cpu-rounds N] [--filter NAME[,NAME...]]
//! ```

use std::process::ExitCode;

use quantnoise::bench::{self, BenchOptions};
use quantnoise::{BackendChoice, Context};

const USAGE: &str = "\
usage: quantnoise <command> [options]

commands:
  info                      list every adapter found (and the CPU reference)
  bench [options]           measure every kernel against a ceiling measured in the same run:
                            copy kernels moving the same bytes (memory-bound kernels), FMA
                            kernels (PQ assignment and k-means, in GFLOP/s)
      --json FILE           also write the report as JSON to FILE
      --quick               1024x1024 weights, 100,000 PQ subvectors and 5 rounds instead of
                            4096x4096, 1,000,000 and 15
      --backend NAME        vulkan|metal|dx12|gl|auto (default: the best adapter, or
                            QUANTNOISE_BACKEND when set)
      --rounds N            interleaved rounds of the device cases
      --cpu-rounds N        samples of each CPU reference case (default 3)
      --filter NAMES        only the cases whose name contains one of these comma-separated
                            substrings (e.g. kmeans_20iter,assign_), plus their baselines
  help                      this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("info") => no_more(&args[1..]).and_then(|_| info()),
        Some("bench") => bench_cmd(&args[1..]),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
        None => Err(format!("missing command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("quantnoise: {msg}");
            ExitCode::from(1)
        }
    }
}

fn no_more(args: &[String]) -> Result<(), String> {
    match args.first() {
        Some(a) => Err(format!("unexpected argument `{a}`\n\n{USAGE}")),
        None => Ok(()),
    }
}

fn info() -> Result<(), String> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::all();
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let default = Context::new().map(|c| c.describe()).ok();
    println!("{} adapter(s) found", adapters.len());
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let description = format!("{:?}/{}", info.backend, info.name);
        let chosen = if default.as_deref() == Some(description.as_str()) {
            "  [default]"
        } else {
            ""
        };
        println!("\n[{i}] {description}{chosen}");
        println!("    backend:      {:?}", info.backend);
        println!("    name:         {}", info.name);
        println!("    device type:  {:?}", info.device_type);
        println!(
            "    driver:       {}",
            format!("{} {}", info.driver, info.driver_info).trim()
        );
        let compute = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
        println!(
            "    compute:      {}",
            if compute {
                "yes"
            } else {
                "no (not usable by quantnoise)"
            }
        );
        let limits = adapter.limits();
        println!(
            "    max storage binding: {} bytes ({} MiB); max buffer: {} MiB",
            limits.max_storage_buffer_binding_size,
            limits.max_storage_buffer_binding_size >> 20,
            limits.max_buffer_size >> 20
        );
        if !compute {
            continue;
        }
        match Context::from_adapter(adapter, None) {
            Ok(ctx) => {
                let f = ctx.features();
                let enabled: Vec<&str> = [
                    (f.shader_f16, "shader-f16"),
                    (f.subgroups, "subgroups"),
                    (f.timestamp_query, "timestamp-query"),
                    (f.float32_atomics, "float32-atomics"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect();
                println!(
                    "    features:     {}",
                    if enabled.is_empty() {
                        "none".into()
                    } else {
                        enabled.join(", ")
                    }
                );
                println!("    bound window: {} bytes", ctx.max_window_bytes());
            }
            Err(e) => println!("    device:       could not be created: {e}"),
        }
    }
    println!(
        "\n[cpu] Cpu/reference  (float64 reference implementation, always available{})",
        match default.as_deref() {
            Some("Cpu/reference") => "; [default]: no adapter found",
            _ => "",
        }
    );
    Ok(())
}

fn value<'a>(
    args: &mut impl Iterator<Item = &'a String>,
    flag: &str,
) -> Result<&'a String, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn count(s: &str, flag: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag}: expected a positive integer, got `{s}`")),
    }
}

/// The command line, with arguments holding spaces or quotes single-quoted.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn bench_cmd(args: &[String]) -> Result<(), String> {
    let mut options = BenchOptions {
        command_line: command_line(),
        ..Default::default()
    };
    let mut json = None;
    let mut backend = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = Some(value(&mut it, "--json")?.clone()),
            "--quick" => options.quick = true,
            "--backend" => {
                backend = Some(
                    value(&mut it, "--backend")?
                        .parse::<BackendChoice>()
                        .map_err(|e| e.to_string())?,
                )
            }
            "--rounds" => options.rounds = Some(count(value(&mut it, "--rounds")?, "--rounds")?),
            "--cpu-rounds" => {
                options.cpu_rounds = Some(count(value(&mut it, "--cpu-rounds")?, "--cpu-rounds")?)
            }
            "--filter" => {
                options.filter.extend(
                    value(&mut it, "--filter")?
                        .split(',')
                        .filter(|f| !f.is_empty())
                        .map(String::from),
                );
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unexpected argument `{other}`\n\n{USAGE}")),
        }
    }
    if backend == Some(BackendChoice::Cpu) {
        return Err("bench measures a device: the CPU reference is always one of its cases".into());
    }
    // Fail before the run, not after it, when the report cannot be written.
    let json_file = match &json {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|e| format!("cannot write {path}: {e}"))?,
        )),
        None => None,
    };
    let ctx = match backend {
        Some(b) => Context::with_backend(b),
        None => Context::new(),
    }
    .map_err(|e| e.to_string())?;
    if ctx.is_cpu() {
        return Err(
            "no GPU adapter found: bench needs one (`quantnoise info` lists what was found)".into(),
        );
    }
    let report = bench::run(&ctx, &options).map_err(|e| format!("bench failed: {e}"))?;
    println!("{}", report.table());
    if let Some((path, mut file)) = json_file {
        use std::io::Write;
        writeln!(file, "{}", report.to_json()).map_err(|e| format!("cannot write {path}: {e}"))?;
        eprintln!("wrote {path}");
    }
    if !report.failures.is_empty() {
        let names: Vec<&str> = report.failures.iter().map(|f| f.name.as_str()).collect();
        return Err(format!(
            "{} case(s) failed validation: {}",
            names.len(),
            names.join(", ")
        ));
    }
    Ok(())
}
