//! Dense products of a Linear layer (`shaders/matmul.wgsl`, [`Family::Matmul`]; reference
//! [`crate::cpu::matmul`]): `Y = X·Wᵀ + b`, `dX = dY·W` and `dW = dYᵀ·X` (summed over the
//! batch), with W the `(out_features, in_features)` row-major weight of `nn.Linear` and X of
//! `(batch, rows, in_features)`. f32, or f16 storage with f32 accumulation on adapters with
//! `shader-f16` ([`Error::Unsupported`] elsewhere); all tensors of one call share one dtype.
//!
//! The kernel is tiled and register-blocked: a workgroup computes a `BM × BN` tile of the output,
//! each invocation a `4·VM × 4·VN` block held in vec4 registers, staging `BK`-deep tiles of
//! both operands in workgroup memory; tile and workgroup sizes are `override` constants
//! ([`MatmulConfig`]). Any sizes work (edge tiles are bounds-checked); the batch is folded into
//! the rows. [`MatmulConfig::BROADCAST`] selects a second kernel, shaped for CPU adapters (one
//! column and 32 rows per invocation, operands broadcast from workgroup memory and packed
//! uniform blocks; see its docs).
//!
//! **Large tensors.** X, Y, dY and dX may exceed one storage binding
//! ([`Context::max_window_bytes`], 128 MiB on most adapters): they are processed in windows of
//! whole rows (dW accumulates window by window), each bound from the aligned offset below its
//! first row. The weight (and dW, and the bias) must fit in one binding; a
//! larger weight is an [`Error::InvalidArgument`] naming the limit.
//!
//! **Autotuning.** With [`Tuning::Auto`] (the default) the first call of each product on a
//! device, precision (f32 or f16) and shape bucket (powers of two of M, N, K) times every
//! candidate of [`MatmulConfig::CANDIDATES`] (a compiling run of each, then up to three rounds
//! over them, the fastest run of each counting; device time from GPU timestamps where the
//! adapter has them, see [`Context::device_time`]) and keeps the fastest candidate for later
//! calls (cached in this module, keyed by the device, the kernel family — dense, fused noisy
//! Linear or PQ-decoded —, the precision and the bucket; candidates that cannot run the
//! product, such as the f32-only broadcast kernel for f16, are left out); with the environment
//! variable `QUANTNOISE_TUNE_LOG` set (not to `0`) it prints each candidate's time to stderr.
//! [`set_tuning`] turns it off ([`Tuning::Off`]: always [`MatmulConfig::DEFAULT`]) or forces
//! one configuration, for the whole process; [`with_tuning`] does so for the calling thread
//! while a closure runs. Every candidate accumulates in f32 with k ascending (split-K and the
//! broadcast kernel add the sums of consecutive k ranges, in order), so they agree up to
//! rounding; the tests check each one against the f64 reference with the same tolerance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{Error, Result, invalid};
use crate::noise::{check_len, host_values, precision_of, store_host};
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::device_buffer;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::shape::WeightShape;
use crate::tensor::{DType, Tensor};

mod bcast;

/// The shape of a Linear layer's products: X is `(batch, rows, in_features)`, W
/// `(out_features, in_features)`, Y `(batch, rows, out_features)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearShape {
    /// Leading batch dimension (folded into the rows).
    pub batch: u64,
    /// Rows per batch entry (M).
    pub rows: u64,
    /// Input features (K).
    pub in_features: u64,
    /// Output features (N).
    pub out_features: u64,
}

impl LinearShape {
    /// A shape; every dimension must be positive (checked by the ops).
    pub fn new(batch: u64, rows: u64, in_features: u64, out_features: u64) -> Self {
        Self {
            batch,
            rows,
            in_features,
            out_features,
        }
    }

    /// All rows: `batch · rows`.
    pub fn total_rows(&self) -> u64 {
        self.batch * self.rows
    }

    /// Elements of X (and dX).
    pub fn x_len(&self) -> u64 {
        self.total_rows() * self.in_features
    }

    /// Elements of Y (and dY).
    pub fn y_len(&self) -> u64 {
        self.total_rows() * self.out_features
    }

    /// Elements of W (and dW).
    pub fn w_len(&self) -> u64 {
        self.out_features * self.in_features
    }

    /// The weight's [`WeightShape::Linear`].
    pub fn weight_shape(&self) -> WeightShape {
        WeightShape::Linear {
            out_features: self.out_features,
            in_features: self.in_features,
        }
    }

    /// Floating-point operations of one product (each is `2 · rows · K · N`, an FMA counting
    /// as two).
    pub fn flops(&self) -> u64 {
        2 * self.total_rows() * self.in_features * self.out_features
    }

    /// Checks that every dimension is positive and that indices fit in u32.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("batch", self.batch),
            ("rows", self.rows),
            ("in_features", self.in_features),
            ("out_features", self.out_features),
        ] {
            if v == 0 {
                return Err(invalid(name, v, "must be positive"));
            }
        }
        for (name, v) in [
            ("x elements", self.x_len()),
            ("y elements", self.y_len()),
            ("w elements", self.w_len()),
        ] {
            if v >= u32::MAX as u64 {
                return Err(invalid(
                    name,
                    v,
                    "tensors hold fewer than 2^32 - 1 elements",
                ));
            }
        }
        Ok(())
    }
}

/// Tile and workgroup sizes of the kernel (its `override` constants): `wg_m × wg_n`
/// invocations, each computing `4·vm × 4·vn` outputs, K-tiles of `bk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulConfig {
    /// Invocations along the rows.
    pub wg_m: u32,
    /// Invocations along the columns.
    pub wg_n: u32,
    /// vec4s of rows per invocation (1..=4).
    pub vm: u32,
    /// vec4s of columns per invocation (1..=4).
    pub vn: u32,
    /// K-tile depth (a multiple of 4).
    pub bk: u32,
    /// Stage row-major tiles 4 consecutive k per slot with consecutive invocations along k
    /// (coalesced global loads on GPUs) instead of along the rows (the `K_FAST` override).
    pub k_fast: bool,
    /// Spread an invocation's register block over the tile, its vec4s `wg_m` (`wg_n`) vec4s
    /// apart, instead of contiguous (the `SPREAD` override): neighbouring invocations then read
    /// neighbouring vec4s of workgroup memory, which GPUs serve without bank conflicts when
    /// `vm` or `vn` is above 1.
    pub spread: bool,
    /// Split-K: the reduction of each output tile is cut into up to this many chunks computed
    /// by separate workgroups (their f32 partial sums then added in chunk order by a second
    /// pass), for products with few output tiles and a long K (1: none). Used for f32
    /// forward and input-gradient products; f16 products and dW ignore it.
    pub k_split: u32,
    /// The broadcast kernel instead of the tiled one (see [`MatmulConfig::BROADCAST`]); the
    /// tile fields are then ignored.
    pub broadcast: bool,
}

impl MatmulConfig {
    /// The configuration used without autotuning: 64 invocations, 128 × 128 tiles, 16 × 16
    /// outputs per invocation, K-tiles of 8 (the fastest measured on lavapipe, 1024³).
    pub const DEFAULT: MatmulConfig = MatmulConfig::tiled(8, 8, 4, 4, 8, false);

    /// The broadcast kernel (`matmul_bcast`), shaped for CPU adapters such as lavapipe: one
    /// invocation per output column and 32 rows, the rows' operand staged in workgroup memory
    /// and read at constant addresses (one broadcast load each there), the column's operand
    /// from 64 KiB uniform blocks that a packing pass fills first, up to 192 k per dispatch in
    /// straight-line code; the partial sums of a window's earlier dispatches kept as vec4s in
    /// a scratch buffer (about the size of the output window, where it fits one). f32 only, on
    /// devices with 64 KiB uniform bindings.
    pub const BROADCAST: MatmulConfig = MatmulConfig {
        broadcast: true,
        ..MatmulConfig::DEFAULT
    };

    /// [`MatmulConfig::tiled`] with spread register blocks and k-fast staging (GPU-shaped).
    const fn gpu(wg_m: u32, wg_n: u32, vm: u32, vn: u32, bk: u32) -> Self {
        let mut c = MatmulConfig::tiled(wg_m, wg_n, vm, vn, bk, true);
        c.spread = true;
        c
    }

    /// This configuration with split-K in `k_split` chunks.
    const fn split(mut self, k_split: u32) -> Self {
        self.k_split = k_split;
        self
    }

    /// The candidates [`Tuning::Auto`] times.
    pub const CANDIDATES: [MatmulConfig; 17] = [
        MatmulConfig::DEFAULT,
        MatmulConfig::BROADCAST,
        // 256 × 128 tiles of 128 invocations: on lavapipe at 1024³ as fast as the default or
        // faster, and each weight tile of a fused noisy forward is loaded (its noise computed)
        // half as often.
        MatmulConfig::tiled(16, 8, 4, 4, 8, false),
        MatmulConfig::tiled(8, 4, 4, 4, 16, false),
        MatmulConfig::tiled(8, 8, 2, 4, 16, false),
        MatmulConfig::tiled(16, 16, 2, 2, 8, false),
        // GPU-shaped: 128 × 128 tiles of 256 invocations, coalesced staging.
        MatmulConfig::tiled(16, 16, 2, 2, 16, true),
        MatmulConfig::tiled(8, 8, 4, 4, 8, true),
        // Smaller tiles: enough workgroups to fill a GPU of 100+ multiprocessors at 1024²
        // outputs (64 × 64: 256 workgroups) and for few rows (32 × 32).
        MatmulConfig::tiled(16, 16, 1, 1, 16, true),
        MatmulConfig::tiled(8, 8, 2, 2, 16, true),
        MatmulConfig::tiled(8, 8, 1, 1, 16, true),
        // Few rows (a small batch): 32 × 256 tiles.
        MatmulConfig::tiled(2, 32, 4, 2, 8, false),
        // GPU-shaped with 8 × 8 and 8 × 4 register blocks spread over 128 × 128 and 128 × 64
        // tiles (conflict-free workgroup-memory reads).
        MatmulConfig::gpu(16, 16, 2, 2, 16),
        MatmulConfig::gpu(16, 16, 2, 2, 8),
        MatmulConfig::gpu(16, 16, 2, 1, 16),
        // Few rows and long K (a small batch on a GPU of 100+ multiprocessors): split-K over
        // 32 × 64 and 64 × 64 tiles.
        MatmulConfig::gpu(8, 16, 1, 1, 16).split(8),
        MatmulConfig::tiled(16, 16, 1, 1, 16, true).split(4),
    ];

    /// A configuration from its fields, in declaration order.
    const fn tiled(wg_m: u32, wg_n: u32, vm: u32, vn: u32, bk: u32, k_fast: bool) -> Self {
        MatmulConfig {
            wg_m,
            wg_n,
            vm,
            vn,
            bk,
            k_fast,
            spread: false,
            k_split: 1,
            broadcast: false,
        }
    }

    /// Rows of a workgroup tile.
    pub fn tile_m(&self) -> u32 {
        4 * self.vm * self.wg_m
    }

    /// Columns of a workgroup tile.
    pub fn tile_n(&self) -> u32 {
        4 * self.vn * self.wg_n
    }

    /// Checks the ranges the shader supports (and the portable 16 KiB of workgroup memory and
    /// 256 invocations).
    pub fn validate(&self) -> Result<()> {
        if !(1..=4).contains(&self.vm) || !(1..=4).contains(&self.vn) {
            return Err(invalid(
                "MatmulConfig vm/vn",
                format!("{}/{}", self.vm, self.vn),
                "must be in 1..=4",
            ));
        }
        let threads = self.wg_m * self.wg_n;
        if threads == 0 || threads > 256 {
            return Err(invalid(
                "MatmulConfig wg_m·wg_n",
                threads,
                "must be in 1..=256",
            ));
        }
        let bytes = 4 * self.bk * (self.tile_m() + self.tile_n());
        if self.bk == 0 || !self.bk.is_multiple_of(4) || bytes > 16384 {
            return Err(invalid(
                "MatmulConfig bk",
                self.bk,
                "must be a positive multiple of 4, with 4·bk·(tile_m + tile_n) <= 16384 bytes",
            ));
        }
        if !(1..=64).contains(&self.k_split) {
            return Err(invalid(
                "MatmulConfig k_split",
                self.k_split,
                "must be in 1..=64",
            ));
        }
        Ok(())
    }

    fn overrides(&self) -> Vec<(&'static str, u32)> {
        vec![
            ("WG_M", self.wg_m),
            ("WG_N", self.wg_n),
            ("VM", self.vm),
            ("VN", self.vn),
            ("BK", self.bk),
            ("K_FAST", self.k_fast as u32),
            ("SPREAD", self.spread as u32),
        ]
    }
}

impl std::fmt::Display for MatmulConfig {
    /// E.g. `8×8 invocations of 16×16 outputs, K-tiles of 8` (`, k-fast staging`,
    /// `, spread blocks` and `, K split in 8` when set).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.broadcast {
            return write!(f, "broadcast kernel: 256 columns × 32 rows per workgroup");
        }
        write!(
            f,
            "{}×{} invocations of {}×{} outputs, K-tiles of {}{}{}{}",
            self.wg_m,
            self.wg_n,
            4 * self.vm,
            4 * self.vn,
            self.bk,
            if self.k_fast { ", k-fast staging" } else { "" },
            if self.spread { ", spread blocks" } else { "" },
            if self.k_split > 1 {
                format!(", K split in {}", self.k_split)
            } else {
                String::new()
            }
        )
    }
}

/// How the kernel configuration of a product is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// Always [`MatmulConfig::DEFAULT`].
    Off,
    /// Time the candidates once per device and shape bucket; use the cached winner.
    Auto,
    /// Always this configuration.
    Fixed(MatmulConfig),
}

static TUNING: Mutex<Tuning> = Mutex::new(Tuning::Auto);

/// Timed runs of each candidate under [`Tuning::Auto`] (the fastest counts), unless they
/// take more than [`TUNING_BUDGET_S`] seconds together.
const TUNING_RUNS: usize = 3;
const TUNING_BUDGET_S: f64 = 0.5;
/// Shortest timing of a candidate (see [`time_once`]).
const TUNING_MIN_S: f64 = 1e-3;

/// Winners of [`Tuning::Auto`]: (device id, kernel family, product, precision, log2 bucket of
/// M, N, K). The family is part of the key: the fused noisy Linear loader does more work per
/// staged weight, which favours taller tiles than the dense product. So is the precision: some
/// candidates run f32 products only (the broadcast kernel).
type TuneKey = (u64, Family, Product, Precision, [u32; 3]);
static WINNERS: Mutex<Option<HashMap<TuneKey, MatmulConfig>>> = Mutex::new(None);

/// Sets how every later product chooses its configuration (process-wide).
pub fn set_tuning(tuning: Tuning) -> Result<()> {
    if let Tuning::Fixed(c) = tuning {
        c.validate()?;
    }
    *TUNING.lock().unwrap() = tuning;
    Ok(())
}

thread_local! {
    /// This thread's override of [`TUNING`] (see [`with_tuning`]).
    static THREAD_TUNING: std::cell::Cell<Option<Tuning>> = const { std::cell::Cell::new(None) };
}

/// The current [`Tuning`]: this thread's [`with_tuning`] override, else the process-wide one.
pub fn tuning() -> Tuning {
    THREAD_TUNING
        .get()
        .unwrap_or_else(|| *TUNING.lock().unwrap())
}

/// Runs `f` with `tuning` for the products this thread records in it, whatever other threads
/// set meanwhile (e.g. timing or testing one configuration while other work runs); the
/// previous override is restored afterwards, also when `f` panics.
pub fn with_tuning<R>(tuning: Tuning, f: impl FnOnce() -> R) -> Result<R> {
    if let Tuning::Fixed(c) = tuning {
        c.validate()?;
    }
    struct Restore(Option<Tuning>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_TUNING.set(self.0);
        }
    }
    let _restore = Restore(THREAD_TUNING.replace(Some(tuning)));
    Ok(f())
}

/// The configuration [`Tuning::Auto`] picked for a dense product of `dtype` tensors (f32 or
/// f16) on `ctx`'s device and the bucket of (M, N, K), if it ran.
pub fn tuned(
    ctx: &Context,
    product: Product,
    dtype: DType,
    m: u64,
    n: u64,
    k: u64,
) -> Option<MatmulConfig> {
    tuned_in(ctx, Family::Matmul, product, dtype, (m, n, k))
}

/// [`tuned`] for the products of a kernel family (dense or fused noisy Linear).
fn tuned_in(
    ctx: &Context,
    family: Family,
    product: Product,
    dtype: DType,
    (m, n, k): (u64, u64, u64),
) -> Option<MatmulConfig> {
    let g = ctx.gpu()?;
    WINNERS
        .lock()
        .unwrap()
        .as_ref()?
        .get(&(
            g.id,
            family,
            product,
            Precision::of(dtype)?,
            bucket(m, n, k),
        ))
        .copied()
}

/// The configuration a product of `family`, `shape` and output `dtype` on `ctx` runs with
/// under the calling thread's [`tuning`] (`None` under [`Tuning::Auto`] before the product ran
/// once, or on the CPU backend): for reports.
pub(crate) fn config_in_use(
    ctx: &Context,
    family: Family,
    product: Product,
    shape: LinearShape,
    dtype: DType,
) -> Option<MatmulConfig> {
    ctx.gpu()?;
    match tuning() {
        Tuning::Off => Some(MatmulConfig::DEFAULT),
        Tuning::Fixed(c) => Some(c),
        Tuning::Auto => tuned_in(ctx, family, product, dtype, product.mnk(shape)),
    }
}

fn bucket(m: u64, n: u64, k: u64) -> [u32; 3] {
    [m, n, k].map(|v| v.next_power_of_two().trailing_zeros())
}

/// The three products of a Linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Product {
    /// `Y = X·Wᵀ + b`.
    Forward,
    /// `dX = dY·W`.
    BackwardInput,
    /// `dW = dYᵀ·X`.
    BackwardWeight,
}

/// Mirror of `MatmulParams` in `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    k_chunk: u32,
    splits: u32,
    k_first: u32,
    col_first: u32,
    row_first: u32,
    pad: [u32; 3],
}

/// One product bound to tensors: C (m × n) = op(A) · op(B).
pub(crate) struct Bound<'t> {
    pub product: Product,
    pub shape: LinearShape,
    pub a: &'t Tensor,
    pub b: &'t Tensor,
    pub c: &'t Tensor,
    pub bias: Option<&'t Tensor>,
}

impl Product {
    /// (M, N, K) of this product of a Linear layer of `shape`: C is M × N, the reduction K long.
    pub(crate) fn mnk(self, s: LinearShape) -> (u64, u64, u64) {
        match self {
            Product::Forward => (s.total_rows(), s.out_features, s.in_features),
            Product::BackwardInput => (s.total_rows(), s.in_features, s.out_features),
            Product::BackwardWeight => (s.out_features, s.in_features, s.total_rows()),
        }
    }
}

impl<'t> Bound<'t> {
    /// (M, N, K) of the product: C is M × N, the reduction K long.
    pub(crate) fn mnk(&self) -> (u64, u64, u64) {
        self.product.mnk(self.shape)
    }

    /// Binds `product` to `a`, `b` (inputs), `c` (output) and the bias (forward only).
    pub(crate) fn new(
        product: Product,
        shape: LinearShape,
        (a, b, c): (&'t Tensor, &'t Tensor, &'t Tensor),
        bias: Option<&'t Tensor>,
    ) -> Self {
        Bound {
            product,
            shape,
            a,
            b,
            c,
            bias,
        }
    }

    /// [`check_tensors`] on this product's tensors, named and sized after the product: inputs
    /// `a`, `b`, the bias and `extra` in that order, output `c`. Returns the precision.
    pub(crate) fn check(
        &self,
        ctx: &Context,
        extra: Option<(&Tensor, &'static str, u64)>,
    ) -> Result<Precision> {
        let s = self.shape;
        let [a, b, c] = match self.product {
            Product::Forward => [("x", s.x_len()), ("weight", s.w_len()), ("y", s.y_len())],
            Product::BackwardInput => [
                ("grad_y", s.y_len()),
                ("weight", s.w_len()),
                ("grad_x", s.x_len()),
            ],
            Product::BackwardWeight => [
                ("grad_y", s.y_len()),
                ("x", s.x_len()),
                ("grad_w", s.w_len()),
            ],
        };
        let mut inputs = vec![(self.a, a.0, a.1), (self.b, b.0, b.1)];
        if let Some(bias) = self.bias {
            inputs.push((bias, "bias", s.out_features));
        }
        inputs.extend(extra);
        check_tensors(ctx, &inputs, (self.c, c.0, c.1))
    }
}

/// The extra pipeline constants and bindings of a family's hooks (none for dense products).
pub(crate) struct Hooks<'h> {
    pub family: Family,
    pub overrides: Vec<(&'static str, u32)>,
    pub bindings: Vec<(u32, wgpu::BindingResource<'h>)>,
    /// The hooks compute op(B) from its indices (`B_RAW = 0`, forward only): B is never read
    /// and is bound to the placeholder.
    pub b_computed: bool,
    /// Bindings of `bindings` that only `b_hook4` reads, and those that only `c_hook` reads
    /// (the broadcast kernel calls them from different entry points, each of which must be
    /// given exactly the bindings it reads).
    pub b_only: &'static [u32],
    pub c_only: &'static [u32],
}

impl Hooks<'_> {
    pub(crate) fn dense() -> Self {
        Self {
            family: Family::Matmul,
            overrides: Vec::new(),
            bindings: Vec::new(),
            b_computed: false,
            b_only: &[],
            c_only: &[],
        }
    }

    /// The bindings without those numbered in `except`.
    pub(crate) fn bindings_without(&self, except: &[u32]) -> Vec<(u32, wgpu::BindingResource<'_>)> {
        self.bindings
            .iter()
            .filter(|(i, _)| !except.contains(i))
            .cloned()
            .collect()
    }
}

/// Rows per window: every row-major operand of `widths` columns (elements of `elem` bytes)
/// must fit one binding together with up to `align` bytes of lead-in (windows are bound from
/// the aligned offset below their first element).
fn rows_per_window(widths: &[u64], elem: u64, max_bytes: u64, align: u64) -> Result<u64> {
    let widest = widths.iter().copied().max().unwrap_or(1) * elem;
    let rows = max_bytes.saturating_sub(align) / widest;
    if rows == 0 {
        return Err(invalid(
            "row bytes",
            widest,
            "one row must fit one storage binding (max_window_bytes)",
        ));
    }
    Ok(rows)
}

/// A binding of elements `start .. start + len` of `t`, bound from the aligned offset at or
/// below the first element; returns it and the first element's index in the binding.
fn range_binding<'t>(
    t: &'t Tensor,
    start: u64,
    len: u64,
    align: u64,
    what: &'static str,
) -> Result<(wgpu::BindingResource<'t>, u32)> {
    let (buffer, offset) = device_buffer(t, what)?;
    let size = t.dtype.size();
    let from = offset + start * size;
    if from + len * size > buffer.size() {
        return Err(Error::BufferTooSmall {
            what,
            needed: len * size,
            offset: from,
            size: buffer.size(),
        });
    }
    let bound = from / align * align;
    let lead = from - bound;
    let bytes = (lead + len * size)
        .next_multiple_of(4)
        .min(buffer.size() - bound);
    Ok((
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: bound,
            size: wgpu::BufferSize::new(bytes),
        }),
        (lead / size) as u32,
    ))
}

/// Whether [`MatmulConfig::k_split`] applies to a product: f32 forward and input gradient.
fn split_applies(product: Product, precision: Precision) -> bool {
    precision == Precision::F32 && product != Product::BackwardWeight
}

/// The transposition flags (TRANS_A, TRANS_B) of a product, and the rows of one window
/// (checking that the whole-bound operand fits one binding).
fn layout(g: &Gpu, p: &Bound<'_>, hooks: &Hooks<'_>) -> Result<(u32, u32, u64)> {
    let s = p.shape;
    let (kf, nf) = (s.in_features, s.out_features);
    let elem = p.a.dtype.size();
    // The whole-bound operand.
    let whole = match p.product {
        Product::Forward | Product::BackwardInput => p.b,
        Product::BackwardWeight => p.c,
    };
    let align = g.limits.min_storage_buffer_offset_alignment as u64;
    let lead = device_buffer(whole, "weight")?.1 % align;
    if !hooks.b_computed && lead + whole.size_bytes() > g.max_window {
        return Err(invalid(
            "weight bytes",
            whole.size_bytes(),
            "the weight (and dW) must fit one storage binding (max_window_bytes)",
        ));
    }
    let (trans_a, trans_b, widths) = match p.product {
        Product::Forward => (0, 1, [kf, nf]),
        Product::BackwardInput => (0, 0, [nf, kf]),
        Product::BackwardWeight => (1, 0, [nf, kf]),
    };
    Ok((
        trans_a,
        trans_b,
        rows_per_window(&widths, elem, g.max_window, align)?,
    ))
}

/// One window of rows `r0 .. r0 + wr`: (M, N, K) and the bindings of A, B and C with the index
/// of their first element.
type WindowBindings<'t> = ((u64, u64, u64), [(wgpu::BindingResource<'t>, u32); 3]);

fn window<'t>(
    p: &Bound<'t>,
    hooks: &Hooks<'_>,
    (r0, wr): (u64, u64),
    align: u64,
    dummy: &'t wgpu::Buffer,
) -> Result<WindowBindings<'t>> {
    let (kf, nf) = (p.shape.in_features, p.shape.out_features);
    Ok(match p.product {
        Product::Forward => (
            (wr, nf, kf),
            [
                range_binding(p.a, r0 * kf, wr * kf, align, "x")?,
                if hooks.b_computed {
                    (dummy.as_entire_binding(), 0)
                } else {
                    range_binding(p.b, 0, nf * kf, align, "weight")?
                },
                range_binding(p.c, r0 * nf, wr * nf, align, "y")?,
            ],
        ),
        Product::BackwardInput => (
            (wr, kf, nf),
            [
                range_binding(p.a, r0 * nf, wr * nf, align, "grad_y")?,
                range_binding(p.b, 0, nf * kf, align, "weight")?,
                range_binding(p.c, r0 * kf, wr * kf, align, "grad_x")?,
            ],
        ),
        Product::BackwardWeight => (
            (nf, kf, wr),
            [
                range_binding(p.a, r0 * nf, wr * nf, align, "grad_y")?,
                range_binding(p.b, r0 * kf, wr * kf, align, "x")?,
                range_binding(p.c, 0, nf * kf, align, "grad_w")?,
            ],
        ),
    })
}

/// Calls `f` on each window of `per` rows in order: its first row and [`window`]'s bindings.
fn each_window<'t>(
    p: &Bound<'t>,
    hooks: &Hooks<'_>,
    (per, align): (u64, u64),
    dummy: &'t wgpu::Buffer,
    mut f: impl FnMut(u64, WindowBindings<'t>) -> Result<()>,
) -> Result<()> {
    let rows = p.shape.total_rows();
    let mut r0 = 0;
    while r0 < rows {
        let wr = per.min(rows - r0);
        f(r0, window(p, hooks, (r0, wr), align, dummy)?)?;
        r0 += wr;
    }
    Ok(())
}

/// The bias binding (the placeholder without one).
fn bias_binding<'t>(
    p: &Bound<'t>,
    align: u64,
    dummy: &'t wgpu::Buffer,
) -> Result<wgpu::BindingResource<'t>> {
    Ok(match p.bias {
        Some(b) => range_binding(b, 0, p.shape.out_features, align, "bias")?.0,
        None => dummy.as_entire_binding(),
    })
}

/// The pipeline constants of a product other than the kernel configuration's.
fn product_overrides(
    p: &Bound<'_>,
    hooks: &Hooks<'_>,
    trans_a: u32,
    trans_b: u32,
) -> Vec<(&'static str, u32)> {
    let mut o = vec![
        ("TRANS_A", trans_a),
        ("TRANS_B", trans_b),
        ("HAS_BIAS", p.bias.is_some() as u32),
    ];
    if hooks.b_computed {
        o.push(("B_RAW", 0));
    }
    o.extend(hooks.overrides.iter().copied());
    o
}

/// Records one product (every window) into `batch` with configuration `config`.
pub(crate) fn record(
    g: &Gpu,
    batch: &mut Batch,
    precision: Precision,
    config: MatmulConfig,
    p: &Bound<'_>,
    hooks: &Hooks<'_>,
    dummy: &wgpu::Buffer,
) -> Result<()> {
    if config.broadcast {
        return bcast::record(g, batch, precision, p, hooks, dummy);
    }
    let rows = p.shape.total_rows();
    let nf = p.shape.out_features;
    let kf = p.shape.in_features;
    let align = g.limits.min_storage_buffer_offset_alignment as u64;
    let (trans_a, trans_b, mut per) = layout(g, p, hooks)?;
    // Split-K (f32 forward and input gradient): K chunks of whole K-tiles, their partial sums
    // (splits × rows × N f32 per window) in one binding.
    let (kk, nn) = match p.product {
        Product::Forward => (kf, nf),
        _ => (nf, kf),
    };
    let bk = config.bk as u64;
    let (k_chunk, splits) = if config.k_split > 1 && split_applies(p.product, precision) {
        let chunk = kk.div_ceil(config.k_split as u64).next_multiple_of(bk);
        (chunk, kk.div_ceil(chunk))
    } else {
        (kk, 1)
    };
    if splits > 1 {
        per = per.min(g.max_window / (splits * nn * 4));
        if per == 0 {
            return Err(invalid(
                "matmul split-K partials",
                splits * nn * 4,
                "one row of partial sums must fit one storage binding",
            ));
        }
    }
    let mut overrides = config.overrides();
    overrides.extend(product_overrides(p, hooks, trans_a, trans_b));
    let pipeline = |entry: &'static str, accumulate: u32, split: u32| {
        let mut o = overrides.clone();
        o.extend([("ACCUMULATE", accumulate), ("SPLIT", split)]);
        g.pipeline(PipelineKey {
            family: hooks.family,
            precision,
            entry,
            overrides: o,
        })
    };
    let split_on = (splits > 1) as u32;
    let first = pipeline("matmul", 0, split_on)?;
    // The second pass of split-K is the dense family's: the hooks of split products (forward
    // and input gradient) leave the outputs as they are, and the noise acts in the first pass.
    let reduce = if splits > 1 {
        Some(g.pipeline(PipelineKey {
            family: Family::Matmul,
            precision,
            entry: "matmul_reduce",
            overrides: vec![("HAS_BIAS", p.bias.is_some() as u32)],
        })?)
    } else {
        None
    };
    let partials = reduce
        .as_ref()
        .map(|_| batch.scratch_uncleared(splits * per.min(rows) * nn * 4));
    let later = if p.product == Product::BackwardWeight && rows > per {
        Some(pipeline("matmul", 1, 0)?)
    } else {
        None
    };
    let bias = bias_binding(p, align, dummy)?;
    each_window(p, hooks, (per, align), dummy, |r0, window| {
        let ((m, n, k), [(a, a_off), (b, b_off), (c, c_off)]) = window;
        let tiles_n = n.div_ceil(config.tile_n() as u64);
        let tiles = tiles_n * m.div_ceil(config.tile_m() as u64) * splits;
        let u = batch.uniform(&MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            tiles_n: tiles_n as u32,
            tiles: tiles as u32,
            a_off,
            b_off,
            c_off,
            // Without split-K one chunk covers this window's K (dW: its rows).
            k_chunk: if splits > 1 { k_chunk } else { k } as u32,
            splits: splits as u32,
            ..Default::default()
        });
        let pipe = match (&later, r0) {
            (Some(later), 1..) => later,
            _ => &first,
        };
        let hooked = |a, b, c| {
            let mut bindings = vec![
                (0, u.as_entire_binding()),
                (1, a),
                (2, b),
                (3, c),
                (4, bias.clone()),
            ];
            bindings.extend(hooks.bindings.iter().cloned());
            bindings
        };
        match (&reduce, &partials) {
            (Some(reduce), Some(partials)) => {
                // The partials are C of the first pass and A of the second.
                let sums = crate::runtime::batch::sized(partials, splits * m * n * 4);
                batch.dispatch_at(pipe, &hooked(a, b, sums.clone()), tiles)?;
                let bindings = [
                    (0, u.as_entire_binding()),
                    (1, sums),
                    (3, c),
                    (4, bias.clone()),
                ];
                batch.dispatch_at(reduce, &bindings, (m * n).div_ceil(256))?;
            }
            _ => batch.dispatch_at(pipe, &hooked(a, b, c), tiles)?,
        }
        Ok(())
    })
}

/// Runs `op(config)` (one whole product `p` of kernel `family`, submitted) with the
/// configuration the current [`Tuning`] gives, timing the candidates first under
/// [`Tuning::Auto`].
pub(crate) fn with_config(
    g: &Gpu,
    family: Family,
    p: &Bound<'_>,
    op: impl Fn(MatmulConfig) -> Result<()>,
) -> Result<()> {
    let (m, n, k) = p.mnk();
    let precision = precision_of(p.c, "y")?;
    let key = (g.id, family, p.product, precision, bucket(m, n, k));
    let config = match tuning() {
        Tuning::Off => MatmulConfig::DEFAULT,
        Tuning::Fixed(c) => c,
        Tuning::Auto => {
            let cached = WINNERS
                .lock()
                .unwrap()
                .get_or_insert_with(HashMap::new)
                .get(&key)
                .copied();
            match cached {
                Some(c) => c,
                None => {
                    // A first run of every candidate compiles it and warms the device up; then
                    // rounds over all candidates, the fastest run of each counting (a clock
                    // ramp or a disturbance then hits every candidate alike).
                    // Split-K candidates where it does not apply would time a duplicate.
                    let splits = split_applies(p.product, precision);
                    let live: Vec<MatmulConfig> = MatmulConfig::CANDIDATES
                        .into_iter()
                        .filter(|&c| (c.k_split == 1 || splits) && op(c).is_ok())
                        .collect();
                    let mut fastest = vec![f64::INFINITY; live.len()];
                    let mut spent = vec![0.0; live.len()];
                    for _ in 0..TUNING_RUNS {
                        for (i, &c) in live.iter().enumerate() {
                            if spent[i] > TUNING_BUDGET_S {
                                continue;
                            }
                            let s = time_once(g, || op(c))?;
                            fastest[i] = fastest[i].min(s);
                            spent[i] += s;
                        }
                    }
                    let mut best: Option<(f64, MatmulConfig)> = None;
                    for (&c, &s) in live.iter().zip(&fastest) {
                        if tune_log() {
                            eprintln!(
                                "quantnoise tune: {family:?} {:?} {m}×{n}×{k}: {:.3} ms  {c}",
                                p.product,
                                s * 1e3
                            );
                        }
                        if best.is_none_or(|(b, _)| s < b) {
                            best = Some((s, c));
                        }
                    }
                    let c = best.map_or(MatmulConfig::DEFAULT, |b| b.1);
                    WINNERS
                        .lock()
                        .unwrap()
                        .get_or_insert_with(HashMap::new)
                        .insert(key, c);
                    // The winner's output is the last one written.
                    c
                }
            }
        }
    };
    op(config)
}

/// Whether [`Tuning::Auto`] prints each candidate's time to stderr (`QUANTNOISE_TUNE_LOG`
/// set to anything but `0`).
fn tune_log() -> bool {
    std::env::var_os("QUANTNOISE_TUNE_LOG").is_some_and(|v| v != "0")
}

/// Seconds of one run of `op`: its device time where the adapter has timestamp queries (and
/// no other timing window is open), else the wall-clock time from an idle device to its end.
/// A run shorter than [`TUNING_MIN_S`] is timed again as the mean of enough back-to-back runs
/// to fill that time (up to 16): a device idling between short runs lowers its clocks.
fn time_once(g: &Gpu, op: impl Fn() -> Result<()>) -> Result<f64> {
    let single = time_runs(g, &op, 1)?;
    if single >= TUNING_MIN_S {
        return Ok(single);
    }
    let reps = ((TUNING_MIN_S / single.max(1e-7)).ceil() as usize).clamp(2, 16);
    time_runs(g, &op, reps)
}

/// Mean seconds of `reps` back-to-back runs of `op` (see [`time_once`]).
fn time_runs(g: &Gpu, op: &impl Fn() -> Result<()>, reps: usize) -> Result<f64> {
    let runs = || (0..reps).try_for_each(|_| op());
    if g.features.timestamp_query {
        match g.time_device(runs) {
            Ok(((), Some(t))) if t.untimed == 0 && !t.submissions.is_empty() => {
                return Ok(t.total() / reps as f64);
            }
            Ok(_)
            | Err(Error::InvalidArgument {
                name: "device_time",
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    g.wait_idle()?;
    let t = Instant::now();
    (0..reps).try_for_each(|_| op())?;
    g.wait_idle()?;
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

/// Checks the tensors of a product: ownership, dtype (all equal, float), lengths, aliasing.
/// Returns the precision.
pub(crate) fn check_tensors(
    ctx: &Context,
    inputs: &[(&Tensor, &'static str, u64)],
    output: (&Tensor, &'static str, u64),
) -> Result<Precision> {
    let precision = precision_of(output.0, output.1)?;
    for &(t, what, len) in inputs.iter().chain(std::iter::once(&output)) {
        ctx.check_owned(t, what)?;
        check_dtype(what, output.0.dtype, t.dtype)?;
        check_len(what, len, t.len)?;
    }
    for &(t, _, _) in inputs {
        if output.0.conflicts(t) {
            return Err(Error::Aliasing {
                what: "matmul inputs/output",
            });
        }
    }
    if let Backend::Gpu(g) = &ctx.backend {
        g.require(precision)?;
    }
    Ok(precision)
}

impl Context {
    /// `y = x · weightᵀ (+ bias)`: x `(batch, rows, in_features)`, weight `(out_features,
    /// in_features)`, bias `(out_features)`, y `(batch, rows, out_features)`, all f32 or all
    /// f16. Returns once the work is submitted.
    pub fn linear_forward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        shape: LinearShape,
    ) -> Result<()> {
        shape.validate()?;
        let p = Bound::new(Product::Forward, shape, (x, weight, y), bias);
        let precision = p.check(self, None)?;
        let (k, n) = (shape.in_features as usize, shape.out_features as usize);
        match &self.backend {
            Backend::Cpu => {
                let b = bias.map(|b| host_values(b, "bias")).transpose()?;
                let out = crate::cpu::matmul::linear_forward(
                    &host_values(x, "x")?,
                    &host_values(weight, "weight")?,
                    b.as_deref(),
                    k,
                    n,
                );
                store_host(y, &out, "y")
            }
            Backend::Gpu(g) => self.run_product(g, precision, &p),
        }
    }

    /// `grad_x = grad_y · weight` (shapes as [`Context::linear_forward`]).
    pub fn linear_backward_input(
        &self,
        grad_y: &Tensor,
        weight: &Tensor,
        grad_x: &Tensor,
        shape: LinearShape,
    ) -> Result<()> {
        shape.validate()?;
        let p = Bound::new(
            Product::BackwardInput,
            shape,
            (grad_y, weight, grad_x),
            None,
        );
        let precision = p.check(self, None)?;
        let (k, n) = (shape.in_features as usize, shape.out_features as usize);
        match &self.backend {
            Backend::Cpu => {
                let out = crate::cpu::matmul::backward_input(
                    &host_values(grad_y, "grad_y")?,
                    &host_values(weight, "weight")?,
                    k,
                    n,
                );
                store_host(grad_x, &out, "grad_x")
            }
            Backend::Gpu(g) => self.run_product(g, precision, &p),
        }
    }

    /// `grad_w = grad_yᵀ · x`, summed over the batch and rows (shapes as
    /// [`Context::linear_forward`]).
    pub fn linear_backward_weight(
        &self,
        grad_y: &Tensor,
        x: &Tensor,
        grad_w: &Tensor,
        shape: LinearShape,
    ) -> Result<()> {
        shape.validate()?;
        let p = Bound::new(Product::BackwardWeight, shape, (grad_y, x, grad_w), None);
        let precision = p.check(self, None)?;
        let (k, n) = (shape.in_features as usize, shape.out_features as usize);
        match &self.backend {
            Backend::Cpu => {
                let out = crate::cpu::matmul::backward_weight(
                    &host_values(grad_y, "grad_y")?,
                    &host_values(x, "x")?,
                    k,
                    n,
                );
                store_host(grad_w, &out, "grad_w")
            }
            Backend::Gpu(g) => self.run_product(g, precision, &p),
        }
    }

    fn run_product(&self, g: &Gpu, precision: Precision, p: &Bound<'_>) -> Result<()> {
        with_config(g, Family::Matmul, p, |config| {
            let mut batch = Batch::new(g, "matmul")?;
            let dummy = batch.scratch(16);
            record(g, &mut batch, precision, config, p, &Hooks::dense(), &dummy)?;
            batch.finish().map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_tuning_overrides_and_restores() {
        let fixed = Tuning::Fixed(MatmulConfig::CANDIDATES[1]);
        let outer = tuning();
        let seen = with_tuning(fixed, || {
            let inner = with_tuning(Tuning::Off, tuning).unwrap();
            let other = std::thread::spawn(tuning).join().unwrap();
            (tuning(), inner, other)
        })
        .unwrap();
        assert_eq!(seen, (fixed, Tuning::Off, outer));
        assert_eq!(tuning(), outer);
        // Restored after a panic too.
        let caught = std::panic::catch_unwind(|| with_tuning(fixed, || panic!("in the closure")));
        assert!(caught.is_err());
        assert_eq!(tuning(), outer);
        // An invalid configuration is refused before the closure runs.
        let bad = Tuning::Fixed(MatmulConfig {
            vm: 9,
            ..MatmulConfig::DEFAULT
        });
        assert!(with_tuning(bad, || unreachable!()).is_err());
    }

    #[test]
    fn configs_and_buckets() {
        for c in MatmulConfig::CANDIDATES {
            c.validate().unwrap();
        }
        assert_eq!(MatmulConfig::DEFAULT.tile_m(), 128);
        let too_big = MatmulConfig {
            bk: 64,
            ..MatmulConfig::DEFAULT
        };
        assert!(too_big.validate().is_err());
        assert!(set_tuning(Tuning::Fixed(too_big)).is_err());
        assert_eq!(bucket(1, 1000, 1024), [0, 10, 10]);
        assert_eq!(bucket(1025, 3, 4), [11, 2, 2]);
    }

    #[test]
    fn windows_of_rows() {
        // 1000 f32 columns, 64 KiB windows, 256-byte lead-in: 16 rows.
        assert_eq!(rows_per_window(&[1000, 10], 4, 65536, 256).unwrap(), 16);
        assert!(rows_per_window(&[20000], 4, 65536, 256).is_err());
    }

    #[test]
    fn shapes() {
        let s = LinearShape::new(2, 3, 4, 5);
        assert_eq!(
            (s.x_len(), s.y_len(), s.w_len(), s.flops()),
            (24, 30, 20, 240)
        );
        s.validate().unwrap();
        assert!(LinearShape::new(1, 0, 4, 5).validate().is_err());
    }
}
