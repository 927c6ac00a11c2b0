//! The device runtime: tensors larger than one storage binding, adopting a caller's device and
//! buffers, typed errors for wgpu failures, backend selection.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::copy::CopyVariant;
use quantnoise::{
    BackendChoice, Context, ContextOptions, DType, Error, Noise, NoiseSeed, NoiseSpec, Observer,
    QuantScheme, SteMode, WeightShape, cpu,
};

fn main() {
    assert_backend_parsing();
    run_gpu(
        &[
            ("tensor_larger_than_one_binding", larger_than_binding),
            ("adopted_device_and_buffers", adopted_device),
            ("wrap_buffer_errors", wrap_errors),
            (
                "validation_error_is_typed_and_recoverable",
                validation_error,
            ),
            ("device_time_of_each_op", device_time),
        ],
        false,
    )
}

fn assert_backend_parsing() {
    assert_eq!(
        "vulkan".parse::<BackendChoice>().unwrap(),
        BackendChoice::Vulkan
    );
    assert_eq!("GL".parse::<BackendChoice>().unwrap(), BackendChoice::Gl);
    assert_eq!("cpu".parse::<BackendChoice>().unwrap(), BackendChoice::Cpu);
    assert!(matches!(
        "cuda".parse::<BackendChoice>(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(Context::with_backend(BackendChoice::Cpu).unwrap().is_cpu());
    #[cfg(target_os = "linux")]
    {
        let strict = ContextOptions {
            backend: BackendChoice::Metal,
            cpu_fallback: false,
            ..Default::default()
        };
        assert!(matches!(
            Context::with_options(strict),
            Err(Error::NoAdapter(_))
        ));
        let lenient = ContextOptions {
            backend: BackendChoice::Metal,
            cpu_fallback: true,
            ..Default::default()
        };
        assert!(Context::with_options(lenient).unwrap().is_cpu());
    }
}

/// 160 MiB of f32 (41,943,040 elements) through the adapter's real window (128 MiB on
/// lavapipe): noise forward, mask, STE backward and per-row observer against the reference.
/// WebGPU's default `maxStorageBufferBindingSize`, the binding limit of lavapipe and most
/// integrated GPUs.
const DEFAULT_BINDING: u64 = 128 << 20;

/// The same adapter as `t`, with its bound window capped at [`DEFAULT_BINDING`] when it binds
/// more (discrete GPUs bind 2 GiB or more, beyond what a test should allocate on the host).
fn with_default_binding(t: &Target) -> Result<Context, Failed> {
    if t.ctx.max_window_bytes() <= DEFAULT_BINDING {
        return Ok(t.ctx.clone());
    }
    Context::all_adapters(BackendChoice::from_env()?, Some(DEFAULT_BINDING))
        .into_iter()
        .flatten()
        .find(|c| c.describe() == t.ctx.describe())
        .ok_or_else(|| format!("{} could not be reopened", t.ctx.describe()).into())
}

/// 160 MiB through every op of the noise chain, in windows of at most one binding.
fn larger_than_binding(t: &Target) -> Result<(), Failed> {
    let ctx = &with_default_binding(t)?;
    let shape = WeightShape::Linear {
        out_features: 10240,
        in_features: 4096,
    };
    let bytes = shape.numel() * 4;
    ensure(bytes > ctx.max_window_bytes(), || {
        format!("{bytes} B fits one {} B window", ctx.max_window_bytes())
    })?;
    let w = Rng(123).weights(shape.numel(), 1.0);
    let weight = ctx.upload(&w)?;
    let out = poisoned(ctx, shape.numel(), DType::F32);
    let spec = NoiseSpec::proxy(8, 0.25).then(Noise::IntN {
        p: 0.5,
        bits: 8,
        scheme: QuantScheme::Observe(Observer::MinMaxPerChannel),
    });
    let mask = poisoned(ctx, spec.mask_words(&shape)?, DType::U32);
    let seed = NoiseSeed::new(2026, 11);
    let resolved = ctx.noise_forward(&weight, &out, shape, &spec, seed, Some(&mask))?;
    let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    ensure(
        resolved == t.cpu.resolve(&t.cpu.upload(&w)?, &shape, &spec)?,
        || "per-row observer differs on 160 MiB".into(),
    )?;
    let want = cpu::noise::noise_forward(&w64, &shape, &resolved, seed);
    let ties = tie_tolerance(&w64, &shape, &resolved, seed, 1e-3);
    compare(&ctx.read_f32(&out)?, &want, 1e-7, 1e-5, &ties)?;
    drop(want);
    ensure(
        ctx.read_u32(&mask)? == cpu::noise::noise_mask(&shape, &resolved, seed),
        || "mask differs on 160 MiB".into(),
    )?;
    let grad = poisoned(ctx, shape.numel(), DType::F32);
    // The weight doubles as the incoming gradient: one buffer bound read-only twice is allowed.
    ctx.ste_backward(
        &weight,
        &weight,
        &grad,
        shape,
        &resolved,
        seed,
        SteMode::Masked,
    )?;
    let want = cpu::ste::ste_backward(&w64, &w64, &shape, &resolved, seed, SteMode::Masked);
    compare(&ctx.read_f32(&grad)?, &want, 1e-7, 1e-6, &[])
}

fn storage_buffer(device: &wgpu::Device, size: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("caller's buffer"),
        size,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A framework's own device and buffers (tensors at non-zero offsets, lengths not multiples of
/// 4): results equal the reference and bytes around the output are untouched.
fn adopted_device(t: &Target) -> Result<(), Failed> {
    let (device, queue) = t.ctx.wgpu().ok_or("no device")?;
    let ctx = Context::from_wgpu(device.clone(), queue.clone());
    let align = device.limits().min_storage_buffer_offset_alignment as u64;
    let shape = WeightShape::Conv2d {
        out_channels: 13,
        in_channels: 3,
        kh: 3,
        kw: 3,
    };
    let n = shape.numel();
    let w = Rng(8).weights(n, 1.0);
    let (w_off, out_off) = (align, 3 * align);
    let wbuf = storage_buffer(device, w_off + n * 4 + 64);
    let obuf = storage_buffer(device, out_off + n * 4 + 64);
    queue.write_buffer(&wbuf, w_off, bytemuck::cast_slice(&w));
    queue.write_buffer(&obuf, 0, &vec![0xAB; (out_off + n * 4 + 64) as usize]);
    let weight = ctx.wrap_buffer(&wbuf, w_off, n, DType::F32)?;
    let out = ctx.wrap_buffer(&obuf, out_off, n, DType::F32)?;
    let spec = NoiseSpec::proxy(9, 0.3).then(Noise::IntN {
        p: 0.3,
        bits: 4,
        scheme: QuantScheme::Observe(Observer::MinMax),
    });
    let seed = NoiseSeed::new(4, 4);
    let resolved = ctx.noise_forward(&weight, &out, shape, &spec, seed, None)?;
    let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    let want = cpu::noise::noise_forward(&w64, &shape, &resolved, seed);
    compare(
        &ctx.read_f32(&out)?,
        &want,
        1e-7,
        1e-5,
        &tie_tolerance(&w64, &shape, &resolved, seed, 1e-3),
    )?;
    let whole = ctx.wrap_buffer(&obuf, 0, (out_off + n * 4 + 64) / 4, DType::U32)?;
    let words = ctx.read_u32(&whole)?;
    let before = &words[..(out_off / 4) as usize];
    let after = &words[((out_off + n * 4) / 4) as usize..];
    ensure(
        before.iter().chain(after).all(|&x| x == 0xABAB_ABAB),
        || "bytes outside the output were written".into(),
    )
}

fn wrap_errors(t: &Target) -> Result<(), Failed> {
    let ctx = &t.ctx;
    let (device, _) = ctx.wgpu().ok_or("no device")?;
    let buf = storage_buffer(device, 1024);
    expect_err(ctx, ctx.wrap_buffer(&buf, 4, 16, DType::F32), |e| {
        matches!(e, Error::InvalidArgument { name: "offset", .. })
    })?;
    expect_err(ctx, ctx.wrap_buffer(&buf, 0, 257, DType::F32), |e| {
        matches!(e, Error::BufferTooSmall { .. })
    })?;
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    expect_err(ctx, ctx.wrap_buffer(&staging, 0, 16, DType::F32), |e| {
        matches!(e, Error::InvalidArgument { .. })
    })?;
    expect_err(&t.cpu, t.cpu.wrap_buffer(&buf, 0, 16, DType::F32), |e| {
        matches!(e, Error::WrongContext { .. })
    })
}

/// A caller's buffer without COPY_SRC cannot be read back: wgpu's validation error comes back
/// as `Error::Validation` and the context keeps working. A tensor of another device is refused
/// before it reaches wgpu (which would panic on a foreign resource).
fn validation_error(t: &Target) -> Result<(), Failed> {
    let (device, _) = t.ctx.wgpu().ok_or("no device")?;
    let storage_only = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let tensor = t.ctx.wrap_buffer(&storage_only, 0, 64, DType::F32)?;
    expect_err(&t.ctx, t.ctx.read_f32(&tensor), |e| {
        matches!(e, Error::Validation { .. })
    })?;
    let other = Context::all_adapters(BackendChoice::Auto, None)
        .into_iter()
        .filter_map(|c| c.ok())
        .find(|c| c.describe() == t.ctx.describe())
        .ok_or("could not open a second device")?;
    let foreign = other.upload(&vec![1.0f32; 64])?;
    let out = t.ctx.empty(64, DType::F32)?;
    let r = t.ctx.noise_forward(
        &foreign,
        &out,
        WeightShape::matrix(8, 8),
        &NoiseSpec::proxy(4, 0.5),
        NoiseSeed::new(1, 1),
        None,
    );
    expect_err(&t.ctx, r, |e| matches!(e, Error::WrongContext { .. }))?;
    expect_err(&t.ctx, t.ctx.read_f32(&foreign), |e| {
        matches!(e, Error::WrongContext { .. })
    })?;
    still_usable(&other)
}

/// `Context::device_time` (on a device of its own): one time per submission (one per copy),
/// in order, positive and within the wall time of the window, larger for the copy that moves
/// 65536 times the bytes; submissions beyond the window's 2048 passes are counted as untimed;
/// a nested window is refused; a panic inside closes the window; the CPU backend and adapters
/// without timestamp queries give no time.
fn device_time(t: &Target) -> Result<(), Failed> {
    // A device of its own: a timing window also counts the ops other tests submit meanwhile.
    let own = Context::all_adapters(BackendChoice::Auto, None)
        .into_iter()
        .filter_map(|c| c.ok())
        .find(|c| c.describe() == t.ctx.describe())
        .ok_or("could not open a second device")?;
    let ctx = &own;
    let variant = CopyVariant::benchmarked()[0];
    let (big, small) = (1u64 << 22, 64u64);
    let mut rng = Rng(7);
    let src = ctx.upload(&rng.weights(big, 1.0))?;
    let dst = ctx.empty(big, DType::F32)?;
    let (src_s, dst_s) = (
        ctx.upload(&rng.weights(small, 1.0))?,
        ctx.empty(small, DType::F32)?,
    );
    ctx.copy_kernel(variant, &src, &dst)?; // compiles
    ctx.synchronize()?;
    let start = std::time::Instant::now();
    let ((), time) = ctx.device_time(|| {
        ctx.copy_kernel(variant, &src, &dst)?;
        ctx.copy_kernel(variant, &src_s, &dst_s)?;
        ctx.copy_kernel(variant, &src, &dst)
    })?;
    let wall = start.elapsed().as_secs_f64();
    let Some(time) = time else {
        return ensure(!ctx.features().timestamp_query, || {
            "no device time on an adapter with timestamp queries".into()
        });
    };
    let s = &time.submissions;
    ensure(s.len() == 3 && time.untimed == 0, || {
        format!("3 ops timed, got {time:?}")
    })?;
    ensure(s.iter().all(|&x| x > 0.0 && x <= wall), || {
        format!("op times {s:?} outside (0, {wall}] s")
    })?;
    ensure(s[0] > s[1] && s[2] > s[1], || {
        format!("copying {big} floats took no longer than {small}: {s:?}")
    })?;
    expect_err(ctx, ctx.device_time(|| ctx.device_time(|| Ok(()))), |e| {
        matches!(e, Error::InvalidArgument { .. })
    })?;
    // A panic inside closes the window too.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.device_time(|| -> quantnoise::Result<()> { panic!("inside the window") })
    }));
    ensure(panicked.is_err(), || "the closure did not panic".into())?;
    let ((), time) =
        ctx.device_time(|| (0..2100).try_for_each(|_| ctx.copy_kernel(variant, &src_s, &dst_s)))?;
    let time = time.ok_or("no time for the second window")?;
    ensure(time.submissions.len() == 2048 && time.untimed == 52, || {
        format!(
            "2100 one-pass ops: {} timed and {} untimed, expected 2048 and 52",
            time.submissions.len(),
            time.untimed
        )
    })?;
    let ((), none) = t.cpu.device_time(|| Ok(()))?;
    ensure(none.is_none(), || "a device time on the CPU backend".into())?;
    concurrent_windows(ctx, variant, (&src_s, &dst_s))
}

/// Windows opened and closed by two threads while a third submits untimed work, all on one
/// device: each call either times (finite, non-negative times) or is refused as nested, and
/// no submission straddling two windows is counted in either.
fn concurrent_windows(
    ctx: &Context,
    variant: CopyVariant,
    (src, dst): (&quantnoise::Tensor, &quantnoise::Tensor),
) -> Result<(), Failed> {
    let copies = || (0..3).try_for_each(|_| ctx.copy_kernel(variant, src, dst));
    let timer = || -> Result<usize, String> {
        let mut timed = 0;
        for _ in 0..50 {
            match ctx.device_time(copies) {
                Ok(((), Some(t))) => {
                    if !t.submissions.iter().all(|x| x.is_finite() && *x >= 0.0) {
                        return Err(format!("times {:?}", t.submissions));
                    }
                    timed += 1;
                }
                Ok(((), None)) => return Err("no time".into()),
                Err(Error::InvalidArgument { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(timed)
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(timer);
        let b = s.spawn(timer);
        s.spawn(|| (0..150).try_for_each(|_| copies()));
        (a.join(), b.join())
    });
    let (a, b) = (
        a.map_err(|_| "a timing thread panicked")??,
        b.map_err(|_| "a timing thread panicked")??,
    );
    ensure(a + b > 0, || "no window was ever opened".into())
}
