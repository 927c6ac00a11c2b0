//! A training framework that owns its wgpu device hands its own buffers to quantnoise.
//!
//! ```text
//! cargo run --release --example adopt_device
//! ```
//!
//! The "framework" below creates the instance, adapter, device and queue itself, keeps two
//! tensors in each of two buffers (at aligned offsets), wraps those regions as quantnoise
//! tensors without copying, runs the noise forward and the straight-through backward, and reads
//! the results back with its own staging buffer. The results are checked against the CPU
//! reference.
//!
//! One rule of wgpu shapes the layout: within one call, a buffer that an op writes cannot also
//! be one it reads (even at other offsets), so the inputs (W, dL/dW_noise) and the outputs
//! (W_noise, dL/dW) live in different buffers.

use std::process::ExitCode;

use quantnoise::{
    Context, DType, Noise, NoiseSeed, NoiseSpec, Observer, QuantScheme, SteMode, WeightShape,
};

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
    println!(
        "framework device: {:?}/{}",
        adapter.get_info().backend,
        adapter.get_info().name
    );

    // quantnoise runs on the same device and queue (both are cheap clones).
    let ctx = Context::from_wgpu(device.clone(), queue.clone());
    println!("quantnoise:       {}", ctx.describe());

    // --- The framework's buffers ----------------------------------------------------------
    let shape = WeightShape::Linear {
        out_features: 256,
        in_features: 512,
    };
    let n = shape.numel();
    let bytes = n * 4;
    // Storage offsets must be multiples of the device's alignment (256 bytes on most devices).
    let align = device.limits().min_storage_buffer_offset_alignment as u64;
    let grad_offset = bytes.next_multiple_of(align);
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
    let inputs = buffer("inputs: W | dL/dW_noise", grad_offset + bytes);
    let outputs = buffer("outputs: W_noise | dL/dW", grad_offset + bytes);

    let w: Vec<f32> = (0..n).map(|i| 0.05 * ((i as f32) * 0.618).sin()).collect();
    let g: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.414).cos()).collect();
    queue.write_buffer(&inputs, 0, bytemuck::cast_slice(&w));
    queue.write_buffer(&inputs, grad_offset, bytemuck::cast_slice(&g));

    // --- Wrap and run ---------------------------------------------------------------------
    let weight = ctx.wrap_buffer(&inputs, 0, n, DType::F32)?;
    let grad_weight = ctx.wrap_buffer(&outputs, grad_offset, n, DType::F32)?;
    let noisy = ctx.wrap_buffer(&outputs, 0, n, DType::F32)?;
    let grad_noisy = ctx.wrap_buffer(&inputs, grad_offset, n, DType::F32)?;

    // int8 noise (per-channel min/max) on 25 % of the blocks, then zeroing on 10 %.
    let spec = NoiseSpec::int_n(8, 0.25, 8, Observer::MinMaxPerChannel).then(Noise::Proxy {
        p: 0.1,
        rescale: true,
    });
    let seed = NoiseSeed::new(7, 0);
    let resolved = ctx.noise_forward(&weight, &noisy, shape, &spec, seed, None)?;
    // ... the framework's forward and backward use `noisy` and fill `grad_noisy` ...
    ctx.ste_backward(
        &grad_noisy,
        &weight,
        &grad_weight,
        shape,
        &resolved,
        seed,
        SteMode::Masked,
    )?;

    // --- Read back with the framework's own staging buffer --------------------------------
    let got_noisy = read_back(&device, &queue, &outputs, 0, bytes)?;
    let got_grad = read_back(&device, &queue, &outputs, grad_offset, bytes)?;

    // --- Check against the CPU reference --------------------------------------------------
    let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
    let want_noisy = quantnoise::cpu::noise::noise_forward(&w64, &shape, &resolved, seed);
    let want_grad =
        quantnoise::cpu::ste::ste_backward(&g64, &w64, &shape, &resolved, seed, SteMode::Masked);
    // Relative 1e-5; one quantization step (rescaled by the proxy stage) where w/s + z is
    // within 1e-3 of a .5 tie, since the device computes w·(1/s) in f32.
    let Noise::IntN {
        scheme: QuantScheme::Given(q),
        ..
    } = &resolved.stages[0]
    else {
        unreachable!()
    };
    let cols = shape.cols() as usize;
    let tie_step = |i: usize| {
        let (s, z) = (q.scale[i / cols] as f64, q.zero_point[i / cols] as f64);
        let t = w64[i] / s + z;
        if (t - t.floor() - 0.5).abs() < 1e-3 {
            s / (1.0 - 0.1) * (1.0 + 1e-5)
        } else {
            0.0
        }
    };
    let mismatches = |got: &[f32], want: &[f64], ties: bool| {
        (0..got.len())
            .filter(|&i| {
                let d = (got[i] as f64 - want[i]).abs();
                !(d <= 1e-5 * want[i].abs() || (ties && d <= tie_step(i)))
            })
            .count()
    };
    let bad_noisy = mismatches(&got_noisy, &want_noisy, true);
    let bad_grad = mismatches(&got_grad, &want_grad, false);
    println!("W_noise: {bad_noisy} of {n} values differ; dL/dW: {bad_grad} of {n} differ");
    Ok(bad_noisy == 0 && bad_grad == 0)
}

/// Copies `size` bytes at `offset` of `buffer` into a mappable buffer and reads them.
fn read_back(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: u64,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("framework staging"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
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
