//! One noisy Linear layer (Quant-Noise on the weight) run by a framework that owns its wgpu
//! device: forward `Y = X·ψ(W)ᵀ + b` and backward `dX = dY·ψ(W)`, `dW = STE(dYᵀ·X)` on the
//! framework's own buffers, checked against the CPU reference.
//!
//! ```text
//! cargo run --release --example noisy_linear
//! ```
//!
//! Inputs (X, W, b, dY) live in one buffer and outputs (Y, dX, dW) in another, each tensor at
//! an aligned offset: within one call, a buffer an op writes cannot also be one it reads.

use std::process::ExitCode;

use quantnoise::matmul::{LinearShape, Tuning, set_tuning};
use quantnoise::{Context, DType, NoiseSeed, NoiseSpec, SteMode};

fn main() -> ExitCode {
    match run() {
        Ok(true) => {
            println!("PASS");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("FAIL: results differ from the CPU reference");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    // --- The framework's own device -------------------------------------------------------
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let Some(adapter) = adapters.into_iter().find(|a| {
        a.get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
    }) else {
        return Err("no wgpu adapter with compute shaders".into());
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("my framework"),
        ..Default::default()
    }))?;
    let ctx = Context::from_wgpu(device.clone(), queue.clone());
    // One kernel configuration: autotuning would compile and time every candidate on the
    // first call of each product (seconds on a software rasteriser, for a layer this small).
    set_tuning(Tuning::Off)?;
    println!("device: {}", ctx.describe());

    // --- One Linear layer: X (4, 16, 128) → Y (4, 16, 64) ------------------------------------
    let shape = LinearShape::new(4, 16, 128, 64);
    let x: Vec<f32> = (0..shape.x_len())
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    let w: Vec<f32> = (0..shape.w_len())
        .map(|i| 0.1 * ((i as f32) * 0.61).cos())
        .collect();
    let b: Vec<f32> = (0..shape.out_features).map(|i| 0.01 * i as f32).collect();
    let dy: Vec<f32> = (0..shape.y_len())
        .map(|i| ((i as f32) * 0.23).cos())
        .collect();

    let align = device.limits().min_storage_buffer_offset_alignment as u64;
    let offsets = |lens: &[u64]| {
        let mut at = 0;
        let mut out = Vec::new();
        for &l in lens {
            out.push(at);
            at = (at + 4 * l).next_multiple_of(align);
        }
        (out, at)
    };
    let (in_off, in_size) = offsets(&[
        shape.x_len(),
        shape.w_len(),
        shape.out_features,
        shape.y_len(),
    ]);
    let (out_off, out_size) = offsets(&[shape.y_len(), shape.x_len(), shape.w_len()]);
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = |label, size| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let inputs = buffer("inputs: X | W | b | dY", in_size);
    let outputs = buffer("outputs: Y | dX | dW", out_size);
    for (data, off) in [
        (&x, in_off[0]),
        (&w, in_off[1]),
        (&b, in_off[2]),
        (&dy, in_off[3]),
    ] {
        queue.write_buffer(&inputs, off, bytemuck::cast_slice(data));
    }

    // --- Wrap the framework's buffers and run the layer -----------------------------------
    let t_x = ctx.wrap_buffer(&inputs, in_off[0], shape.x_len(), DType::F32)?;
    let t_w = ctx.wrap_buffer(&inputs, in_off[1], shape.w_len(), DType::F32)?;
    let t_b = ctx.wrap_buffer(&inputs, in_off[2], shape.out_features, DType::F32)?;
    let t_dy = ctx.wrap_buffer(&inputs, in_off[3], shape.y_len(), DType::F32)?;
    let t_y = ctx.wrap_buffer(&outputs, out_off[0], shape.y_len(), DType::F32)?;
    let t_dx = ctx.wrap_buffer(&outputs, out_off[1], shape.x_len(), DType::F32)?;
    let t_dw = ctx.wrap_buffer(&outputs, out_off[2], shape.w_len(), DType::F32)?;

    // Blocks of 8 along in_features; 20 % of them zeroed (unselected weights scaled by 1/0.8).
    let spec = NoiseSpec::proxy(8, 0.2);
    let seed = NoiseSeed::new(42, 3);
    let resolved =
        ctx.noisy_linear_forward(&t_x, &t_w, Some(&t_b), &t_y, shape, &spec, seed, None)?;
    ctx.noisy_linear_backward(
        &t_dy,
        &t_x,
        &t_w,
        Some(&t_dx),
        Some(&t_dw),
        shape,
        &resolved,
        seed,
        SteMode::Masked,
    )?;
    let got = read_back(&device, &queue, &outputs, out_size)?;

    // --- The same layer on the CPU reference ----------------------------------------------
    let cpu = Context::cpu();
    let (cx, cw, cb, cdy) = (
        cpu.upload(&x)?,
        cpu.upload(&w)?,
        cpu.upload(&b)?,
        cpu.upload(&dy)?,
    );
    let cy = cpu.empty(shape.y_len(), DType::F32)?;
    let cdx = cpu.empty(shape.x_len(), DType::F32)?;
    let cdw = cpu.empty(shape.w_len(), DType::F32)?;
    let r = cpu.noisy_linear_forward(&cx, &cw, Some(&cb), &cy, shape, &spec, seed, None)?;
    cpu.noisy_linear_backward(
        &cdy,
        &cx,
        &cw,
        Some(&cdx),
        Some(&cdw),
        shape,
        &r,
        seed,
        SteMode::Masked,
    )?;

    let mut ok = true;
    for (name, t, off) in [
        ("Y", &cy, out_off[0]),
        ("dX", &cdx, out_off[1]),
        ("dW", &cdw, out_off[2]),
    ] {
        let want = cpu.read_f32(t)?;
        let start = (off / 4) as usize;
        let dev = &got[start..start + want.len()];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = dev
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let zeros = want.iter().filter(|v| **v == 0.0).count();
        println!(
            "{name}: {} values, max |device − reference| = {diff:.2e} (max |value| {scale:.3}), \
             {zeros} exact zeros",
            want.len()
        );
        ok &= diff <= 1e-4 * scale.max(1.0);
    }
    println!("Y[0, 0, ..4] = {:?}", &got[..4]);
    Ok(ok)
}

/// Reads the whole `buffer` back through a staging buffer of the framework.
fn read_back(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
    size: u64,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("framework staging"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    queue.submit([encoder.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |r| tx.send(r).unwrap());
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let data = bytemuck::pod_collect_to_vec(&staging.slice(..).get_mapped_range()?[..]);
    staging.unmap();
    Ok(data)
}
