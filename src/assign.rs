//! Batched nearest-centroid assignment (the k-means E-step) over many problems — e.g. every
//! layer of a model — recorded in one submission. Shader: `shaders/assign.wgsl`; reference:
//! [`crate::cpu::assign`].

use crate::error::{Result, invalid};
use crate::noise::{host_values, precision_of};
use crate::runtime::batch::{Batch, sized};
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::runtime::elementwise::window_binding;
use crate::runtime::gpu::{Gpu, PipelineKey};
use crate::runtime::shaders::{Family, Precision};
use crate::runtime::texels::{TEX_W, texel_window};
use crate::runtime::window::{Window, windows};
use crate::tensor::{DType, Tensor};

/// Largest subvector dimension.
pub const MAX_DIM: u32 = 64;
/// Workgroup size: on lavapipe larger workgroups share the cost of staging a tile better.
pub(crate) const WG: u32 = 256;
/// Subvectors per invocation (both scoring kernels).
pub(crate) const SPT: u64 = 4;
/// Largest dimension of the tiled kernels; larger ones use `assign_wide`.
const TILED_MAX_DIM: u32 = 16;
/// Centroids per tile, one `assign_tile{N}` entry point each. All are multiples of 16, and 16
/// prepared rows are a multiple of 256 bytes: every tile window is aligned on any adapter.
const TILE_SIZES: [u64; 5] = [16, 32, 64, 128, 256];
/// Prepared vec4s the shader's workgroup tile holds.
const TILE_VEC4: u64 = 1024;
/// Bound on centroids × dimension per tile: a tile is straight-line code, and compile time
/// grows faster than its length (lavapipe, Mesa's shader cache off: ~2.5 s for 256 × 8, ~5 s
/// for 256 × 12; GL llvmpipe: ~8 s for 256 × 8).
const TILE_CODE: u64 = 2304;
/// Below this many data floats (N × dim) only the smallest tile is used: a tile pass costs
/// little there, and compiling the big tiles would cost more than it saves.
const BIG_TILES_MIN: u64 = 1 << 18;
/// The fixed cost of one more tile pass (reading the data, the running best), in centroids:
/// a partial tile is rounded up to a tile size unless that wastes more.
const PASS_COST: u64 = 32;

/// One assignment problem: `data` holds N subvectors of `dim` values each, row-major;
/// `codebook` holds K centroids of `dim`. Both f32, or both f16 (on adapters with
/// `shader-f16`; distances are computed in f32 from the f16 values).
#[derive(Clone, Copy, Debug)]
pub struct AssignProblem<'a> {
    /// N × dim subvectors.
    pub data: &'a Tensor,
    /// K × dim centroids.
    pub codebook: &'a Tensor,
    /// Subvector dimension, 1..=64.
    pub dim: u32,
}

/// Result of one problem: per subvector, the nearest centroid and its squared distance.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// Centroid index per subvector (u32).
    pub indices: Tensor,
    /// Squared L2 distance to that centroid (f32).
    pub distances: Tensor,
}

/// Mirror of `AssignParams` in the shader (padded to 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AssignParams {
    pub n: u32,
    pub k: u32,
    pub base: u32,
    pub flags: u32,
    pub window: u32,
    pub pad: [u32; 3],
}

/// `AssignParams::flags` (see the shader).
const FIRST_TILE: u32 = 1;
const LAST_TILE: u32 = 2;

impl AssignProblem<'_> {
    /// Checks the problem; returns (N, K).
    pub fn validate(&self) -> Result<(u64, u64)> {
        if !(1..=MAX_DIM).contains(&self.dim) {
            return Err(invalid("dim", self.dim, "must be in 1..=64"));
        }
        if !matches!(self.data.dtype, DType::F32 | DType::F16) {
            check_dtype("data", DType::F32, self.data.dtype)?;
        }
        check_dtype("codebook", self.data.dtype, self.codebook.dtype)?;
        let d = self.dim as u64;
        for (what, t) in [("data.len()", self.data), ("codebook.len()", self.codebook)] {
            if t.len == 0 || !t.len.is_multiple_of(d) {
                return Err(invalid(what, t.len, "must be a positive multiple of dim"));
            }
        }
        Ok((self.data.len / d, self.codebook.len / d))
    }
}

impl Context {
    /// Nearest centroid of every subvector of every problem, all recorded in one submission.
    pub fn assign(&self, problems: &[AssignProblem<'_>]) -> Result<Vec<Assignment>> {
        let mut out = Vec::with_capacity(problems.len());
        for p in problems {
            let (n, _) = p.validate()?;
            self.check_owned(p.data, "data")?;
            self.check_owned(p.codebook, "codebook")?;
            out.push(Assignment {
                indices: self.empty(n, DType::U32)?,
                distances: self.empty(n, DType::F32)?,
            });
        }
        self.assign_into(problems, &out)?;
        Ok(out)
    }

    /// Like [`Context::assign`], writing into caller-provided outputs.
    pub fn assign_into(
        &self,
        problems: &[AssignProblem<'_>],
        outputs: &[Assignment],
    ) -> Result<()> {
        crate::noise::check_len("outputs", problems.len() as u64, outputs.len() as u64)?;
        for (p, o) in problems.iter().zip(outputs) {
            let (n, _) = p.validate()?;
            for (t, what) in [
                (p.data, "data"),
                (p.codebook, "codebook"),
                (&o.indices, "indices"),
                (&o.distances, "distances"),
            ] {
                self.check_owned(t, what)?;
            }
            check_dtype("indices", DType::U32, o.indices.dtype)?;
            check_dtype("distances", DType::F32, o.distances.dtype)?;
            crate::noise::check_len("indices", n, o.indices.len)?;
            crate::noise::check_len("distances", n, o.distances.len)?;
        }
        match &self.backend {
            Backend::Cpu => {
                for (p, o) in problems.iter().zip(outputs) {
                    let data = host_values(p.data, "data")?;
                    let cb = host_values(p.codebook, "codebook")?;
                    let (idx, dist) = crate::cpu::assign::assign(&data, &cb, p.dim as usize);
                    crate::noise::store_host(
                        &o.indices,
                        &idx.iter().map(|&i| i as f64).collect::<Vec<_>>(),
                        "indices",
                    )?;
                    crate::noise::store_host(&o.distances, &dist, "distances")?;
                }
                Ok(())
            }
            Backend::Gpu(g) => {
                let mut batch = Batch::new(g, "assign")?;
                for (p, o) in problems.iter().zip(outputs) {
                    record_assign(g, &mut batch, p, o)?;
                }
                batch.finish().map(|_| ())
            }
        }
    }
}

/// Bytes of one prepared centroid row: `dim.div_ceil(4)` vec4 chunks and the norm's vec4.
fn row_bytes(dim: u64) -> u64 {
    (dim.div_ceil(4) + 1) * 16
}

/// The largest tile for N subvectors of `dim`.
fn max_tile(n: u64, dim: u64) -> u64 {
    if n * dim < BIG_TILES_MIN {
        return TILE_SIZES[0];
    }
    let row = row_bytes(dim) / 16;
    TILE_SIZES
        .into_iter()
        .filter(|&t| t * row <= TILE_VEC4 && t * dim <= TILE_CODE)
        .max()
        .unwrap_or(TILE_SIZES[0])
}

/// The tiles (first centroid, centroids) covering `k` centroids: full tiles of `max`, then the
/// rest in tile sizes, rounded up (to padding centroids) unless that wastes more than a pass.
fn tiles(k: u64, max: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < k {
        let rest = k - start;
        let up = rest.next_power_of_two().clamp(TILE_SIZES[0], max);
        let len = if up <= rest || up - rest <= PASS_COST || up == TILE_SIZES[0] {
            up
        } else {
            up / 2
        };
        out.push((start, len));
        start += len;
    }
    out
}

fn tile_entry(len: u64) -> &'static str {
    match len {
        16 => "assign_tile16",
        32 => "assign_tile32",
        64 => "assign_tile64",
        128 => "assign_tile128",
        _ => "assign_tile256",
    }
}

/// A problem's codebook as prepared rows (`assign_prepare`), padded to whole tiles.
pub(crate) struct Prepared {
    /// The prepared rows.
    pub buffer: wgpu::Buffer,
    /// (first centroid, centroids) of each tile; one tile of all K for `assign_wide`.
    tiles: Vec<(u64, u64)>,
    /// Bytes of one prepared row.
    row_bytes: u64,
    /// Whether the tiles are scored by `assign_tile{N}` (d ≤ 16) rather than `assign_wide`.
    pub tiled: bool,
    precision: Precision,
    dim: u32,
}

impl Prepared {
    /// Bytes of all prepared rows.
    pub(crate) fn bytes(&self) -> u64 {
        self.rows() * self.row_bytes
    }

    /// Prepared rows in all tiles.
    pub(crate) fn rows(&self) -> u64 {
        self.tiles.iter().map(|t| t.1).sum()
    }

    /// A pipeline of `shaders/assign.wgsl` for this problem (`tile_rows` > 0: a tile kernel of
    /// that many centroids; `flag`: a boolean override to set, e.g. `RESCAN`; `texels`: the
    /// data is bound as a texture of [`TEX_W`] texels per row, see [`texel_window`]).
    pub(crate) fn pipeline(
        &self,
        g: &Gpu,
        entry: &'static str,
        tile_rows: u64,
        flag: Option<&'static str>,
        texels: bool,
    ) -> Result<wgpu::ComputePipeline> {
        let mut overrides = vec![("WG", WG), ("D", self.dim)];
        if tile_rows > 0 {
            overrides.push(("TILE_ROWS", tile_rows as u32));
        }
        overrides.extend(flag.map(|f| (f, 1)));
        // The data as texels, as vec4s (whole subvectors in whole vec4s), or as elements.
        let family = if texels {
            overrides.push(("TEX_W", TEX_W as u32));
            Family::AssignTexture
        } else if self.dim.is_multiple_of(4) {
            Family::AssignVec4
        } else {
            Family::Assign
        };
        g.pipeline(PipelineKey {
            family,
            precision: self.precision,
            entry,
            overrides,
        })
    }
}

/// Which subvectors of a window the tile kernels score.
pub(crate) enum Rows<'a> {
    /// All of them (`assign_tile{N}`, `assign_wide`).
    All,
    /// The window's listed ones (`RESCAN`, bindings 7..10 as in the shader; the
    /// dispatch arguments at `args`, 12 bytes per window).
    Listed {
        /// Window index (its list count and dispatch arguments).
        window: u32,
        /// Bindings 7 (`lower`), 8 (the window's list), 9 (list counts), 10 (bounds).
        bindings: [wgpu::BindingResource<'a>; 4],
        /// Dispatch arguments of every window.
        args: &'a wgpu::Buffer,
    },
}

/// Records `assign_prepare`: the codebook as prepared rows, padded to whole tiles.
pub(crate) fn record_prepare(
    g: &Gpu,
    batch: &mut Batch,
    p: &AssignProblem<'_>,
) -> Result<Prepared> {
    let (n, k) = p.validate()?;
    let d = p.dim as u64;
    let precision = precision_of(p.data, "data")?;
    g.require(precision)?;
    let elem = p.data.dtype.size();
    let tiled = p.dim <= TILED_MAX_DIM;
    let tiles = if tiled {
        tiles(k, max_tile(n, d))
    } else {
        vec![(0, k)]
    };
    let rows: u64 = tiles.iter().map(|t| t.1).sum();
    let row_bytes = row_bytes(d);
    let codebook_bytes = (k * d * elem).next_multiple_of(4);
    if codebook_bytes > g.max_binding || rows * row_bytes > g.max_binding {
        return Err(invalid(
            "codebook bytes",
            codebook_bytes,
            "the codebook must fit in one storage binding",
        ));
    }
    let prepared = Prepared {
        buffer: batch.scratch(rows * row_bytes),
        tiles,
        row_bytes,
        tiled,
        precision,
        dim: p.dim,
    };
    let u = batch.uniform(&AssignParams {
        n: rows as u32,
        k: k as u32,
        ..Default::default()
    });
    let codebook = window_binding(
        p.codebook,
        &Window {
            start: 0,
            len: k * d,
        },
        codebook_bytes,
        "codebook",
    )?;
    batch.dispatch_at(
        &prepared.pipeline(g, "assign_prepare", 0, None, false)?,
        &[
            (0, u.as_entire_binding()),
            (2, codebook),
            (6, sized(&prepared.buffer, rows * row_bytes)),
        ],
        rows.div_ceil(WG as u64),
    )?;
    Ok(prepared)
}

/// Records one problem's dispatches: `assign_prepare`, then windows of whole subvectors, each
/// starting at a multiple of 64 subvectors so that the outputs' windows are aligned too, and
/// per window one dispatch per tile of the codebook (d > 16: one `assign_wide` dispatch for
/// all of it).
pub(crate) fn record_assign(
    g: &Gpu,
    batch: &mut Batch,
    p: &AssignProblem<'_>,
    o: &Assignment,
) -> Result<()> {
    let prepared = record_prepare(g, batch, p)?;
    let (n, _) = p.validate()?;
    for w in windows(n, p.dim as u64 * p.data.dtype.size(), 64, g.max_window)? {
        record_tiles(g, batch, p, o, &prepared, &w, Rows::All)?;
    }
    Ok(())
}

/// Records the tile dispatches of window `w` over `rows` of it; the running best is carried
/// from tile to tile in the outputs.
pub(crate) fn record_tiles(
    g: &Gpu,
    batch: &mut Batch,
    p: &AssignProblem<'_>,
    o: &Assignment,
    prepared: &Prepared,
    w: &Window,
    rows: Rows<'_>,
) -> Result<()> {
    let (_, k) = p.validate()?;
    let d = p.dim as u64;
    let elem = p.data.dtype.size();
    let data = Window {
        start: w.start * d,
        len: w.len * d,
    };
    let data_bytes = (data.len * elem).next_multiple_of(4);
    // Where d is a multiple of 4 (whole subvectors in whole texels) on CPU adapters, a
    // texture of the window's data.
    let view = if d.is_multiple_of(4) {
        texel_window(g, batch, p.data, &data)?
    } else {
        None
    };
    let texels = view.is_some();
    let data_binding = match &view {
        Some(view) => wgpu::BindingResource::TextureView(view),
        None => window_binding(p.data, &data, data_bytes, "data")?,
    };
    let tiles = &prepared.tiles;
    let mut stand_ins = None;
    for (t, &(start, len)) in tiles.iter().enumerate() {
        let first = if t == 0 { FIRST_TILE } else { 0 };
        let last = if t + 1 == tiles.len() { LAST_TILE } else { 0 };
        let window = match &rows {
            Rows::All => 0,
            Rows::Listed { window, .. } => *window,
        };
        let u = batch.uniform(&AssignParams {
            n: w.len as u32,
            k: k as u32,
            base: start as u32,
            flags: first | last,
            window,
            ..Default::default()
        });
        // The tile's prepared rows: with the data in a texture, the tile kernels stage them
        // from one too (binding 15); `assign_wide` reads the buffer.
        let tile_view;
        let tile = if texels && prepared.tiled {
            let texture = batch.texture_of(
                &prepared.buffer,
                start * prepared.row_bytes,
                wgpu::TextureFormat::Rgba32Float,
                len * prepared.row_bytes / 16,
                TEX_W,
            );
            tile_view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            (15, wgpu::BindingResource::TextureView(&tile_view))
        } else {
            let buffer = wgpu::BufferBinding {
                buffer: &prepared.buffer,
                offset: start * prepared.row_bytes,
                size: wgpu::BufferSize::new(len * prepared.row_bytes),
            };
            (5, wgpu::BindingResource::Buffer(buffer))
        };
        let mut bindings = vec![
            (0, u.as_entire_binding()),
            (1, data_binding.clone()),
            (3, window_binding(&o.indices, w, w.len * 4, "indices")?),
            (4, window_binding(&o.distances, w, w.len * 4, "distances")?),
            tile,
        ];
        match &rows {
            Rows::All if prepared.tiled => {
                // The rescan's bindings, which the plain tiles do not touch.
                let (lower, list) = stand_ins.get_or_insert_with(|| {
                    (batch.storage_init(&[0; 16]), batch.storage_init(&[0; 16]))
                });
                bindings.extend([
                    (7, sized(lower, 16)),
                    (8, sized(list, 16)),
                    (9, sized(list, 16)),
                    (10, sized(list, 16)),
                ]);
                let pipeline = prepared.pipeline(g, tile_entry(len), len, None, texels)?;
                batch.dispatch_at(&pipeline, &bindings, w.len.div_ceil(WG as u64 * SPT))?;
            }
            Rows::All => {
                let pipeline = prepared.pipeline(g, "assign_wide", 0, None, texels)?;
                batch.dispatch_at(&pipeline, &bindings, w.len.div_ceil(WG as u64 * SPT))?;
            }
            Rows::Listed {
                window,
                bindings: extra,
                args,
            } => {
                bindings.extend((7..).zip(extra.iter().cloned()));
                let pipeline =
                    prepared.pipeline(g, tile_entry(len), len, Some("RESCAN"), texels)?;
                batch.dispatch_indirect(&pipeline, &bindings, args, *window as u64 * 12);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_codebook_in_aligned_tile_sizes() {
        for dim in 1..=TILED_MAX_DIM as u64 {
            for n in [1, 1 << 20] {
                let max = max_tile(n, dim);
                assert!(max * row_bytes(dim) <= TILE_VEC4 * 16);
                for k in 1..1200 {
                    let t = tiles(k, max);
                    let rows: u64 = t.iter().map(|t| t.1).sum();
                    assert!(rows >= k && rows - k < max, "k {k} max {max}: {t:?}");
                    let mut start = 0;
                    for &(s, len) in &t {
                        assert_eq!(s, start);
                        assert!(TILE_SIZES.contains(&len) && len <= max);
                        assert_eq!(s * row_bytes(dim) % 256, 0);
                        start += len;
                    }
                }
            }
        }
        assert_eq!(tiles(256, 256), [(0, 256)]);
        assert_eq!(tiles(300, 256), [(0, 256), (256, 64)]);
        assert_eq!(tiles(200, 128), [(0, 128), (128, 64), (192, 16)]);
        assert_eq!(max_tile(1 << 20, 8), 256);
        assert_eq!(max_tile(1 << 20, 16), 128);
        assert_eq!(max_tile(100, 8), 16);
    }

    /// Problems large enough for the big tiles (the conformance tests' are too small for
    /// them), against the f64 reference, on every adapter found (none: nothing to check) but
    /// GL ones: Mesa's GLSL compiler takes ~8 s per big tile, whose WGSL is the same everywhere
    /// (and the conformance tests run the 16-centroid tile on GL).
    #[test]
    fn big_tiles_match_the_reference() {
        let mut seed = 7u64;
        let mut values = |len: u64| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect()
        };
        // Tiles 256 + 64 (padded); 128 + 64 + 16 (padded).
        let specs = [(40_000u64, 300u64, 8u32), (21_000, 200, 13)];
        let host: Vec<_> = specs
            .iter()
            .map(|&(n, k, d)| (values(n * d as u64), values(k * d as u64)))
            .collect();
        for ctx in Context::all_adapters(crate::BackendChoice::from_env().unwrap(), None) {
            let ctx = ctx.unwrap();
            if ctx.wgpu_backend() == Some(wgpu::Backend::Gl) {
                continue;
            }
            let tensors: Vec<_> = host
                .iter()
                .map(|(x, c)| (ctx.upload(x).unwrap(), ctx.upload(c).unwrap()))
                .collect();
            let problems: Vec<_> = tensors
                .iter()
                .zip(&specs)
                .map(|((x, c), s)| AssignProblem {
                    data: x,
                    codebook: c,
                    dim: s.2,
                })
                .collect();
            let out = ctx.assign(&problems).unwrap();
            for (((x, c), &(_, _, d)), o) in host.iter().zip(&specs).zip(&out) {
                let d = d as usize;
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let c64: Vec<f64> = c.iter().map(|&v| v as f64).collect();
                let (want_idx, want_dist) = crate::cpu::assign::assign(&x64, &c64, d);
                let idx = ctx.read_u32(&o.indices).unwrap();
                let dist = ctx.read_f32(&o.distances).unwrap();
                for i in 0..want_idx.len() {
                    let xi = &x64[i * d..(i + 1) * d];
                    let ci = &c64[idx[i] as usize * d..(idx[i] as usize + 1) * d];
                    let chosen: f64 = xi.iter().zip(ci).map(|(a, b)| (a - b) * (a - b)).sum();
                    // |values| < 1: ||x||² + max ||c||² < 2d.
                    let tol = 2e-5 * d as f64;
                    assert!(
                        (chosen - want_dist[i]).abs() <= tol
                            && (dist[i] as f64 - want_dist[i]).abs() <= tol,
                        "{} d {d} subvector {i}: {} ({}) vs {} ({})",
                        ctx.describe(),
                        idx[i],
                        dist[i],
                        want_idx[i],
                        want_dist[i]
                    );
                }
            }
        }
    }
}
