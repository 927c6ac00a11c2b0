//! The lookup-table matrix–vector product of one to three batch rows with the table in uniform
//! buffers (`pq_lut_build_ub` and `pq_lut_gather_ub` of `shaders/pq_matmul.wgsl`), for CPU
//! adapters whose limits allow uniform tables (`Gpu::uniform_tables`). There the table's
//! lookups, at addresses that differ between lanes, are branch-free gathers from uniform
//! buffers but a per-lane loop from storage. On lavapipe at 4096 × 4096, Kc = 256, d = 8 the
//! gather took 1.2–1.3 ms against 1.7–1.9 ms from storage (`bench-results/README.md`,
//! 2026-12-07).

use crate::error::Result;
use crate::runtime::batch::{Batch, sized};
use crate::runtime::elementwise::device_buffer;
use crate::runtime::gpu::{Gpu, PipelineKey, UNIFORM_TABLE_BYTES};
use crate::runtime::shaders::{Family, Precision, UNIFORM_TABLE_VEC4S};
use crate::tensor::Tensor;

use super::{Params, PqWeight, WG, shifted_binding};

/// vec4s per uniform binding (`UB_VEC4S` in the shader).
const UB_VEC4S: u64 = UNIFORM_TABLE_VEC4S;
/// Uniform bindings' worth of table one slab's build writes.
const TABLE_SLOTS: u64 = 8;
/// Table bindings one gather reads (`UB_SLOTS`; more crash Mesa 22.3's shader compiler, see
/// the shader), so each slab takes `TABLE_SLOTS / UB_SLOTS` gathers.
const UB_SLOTS: u64 = 4;
/// Uniform buffers one gather binds: the table's, the shape and the slab.
const UNIFORMS: u32 = UB_SLOTS as u32 + 2;
/// Bytes of one uniform binding.
const UB_BYTES: u64 = UNIFORM_TABLE_BYTES;
/// Slab subvectors per build invocation (`JB`, a multiple of 4): 16 took 0.40 ms to build the
/// 4096 × 4096 table, 64 0.33 ms.
const BUILD_JB: u32 = 64;

/// Mirror of `SlabParams` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SlabParams {
    first: u32,
    count: u32,
    accumulate: u32,
    q_first: u32,
}

/// Whether `m` rows of `x` times `weight` can take this path on `g` (the caller has chosen the
/// table and the per-invocation pattern).
pub(super) fn fits(g: &Gpu, x: &Tensor, m: u64, weight: &PqWeight) -> bool {
    let copyable =
        device_buffer(x, "x").is_ok_and(|(b, _)| b.usage().contains(wgpu::BufferUsages::COPY_SRC));
    g.uniform_tables
        && m < 4
        && copyable
        && weight.block_size <= 16
        && weight.n_centroids as u64 <= UB_VEC4S
        && weight.subvectors_per_row().is_multiple_of(4)
        && g.limits.max_uniform_buffers_per_shader_stage >= UNIFORMS
}

/// Subvectors per slab: as many groups of 4 as the bindings hold, and activations that fit one
/// binding.
fn slab_len(kc: u64, d: u64) -> u64 {
    let tables = TABLE_SLOTS * (UB_VEC4S / kc) * 4;
    let activations = UB_VEC4S * 4 / d / 4 * 4;
    tables.min(activations)
}

/// What [`record`] needs from the caller's set-up.
pub(super) struct Recording<'a> {
    /// The shape uniform of `m` rows at element offsets `x_off`, `y_off` (bound at 0).
    pub params: &'a dyn Fn(u64, u32, u32) -> Params,
    /// Codebook bindings (both formats' bindings, one a dummy).
    pub codebook: &'a [(u32, wgpu::BindingResource<'a>)],
    /// The packed indices, whole.
    pub indices: wgpu::BindingResource<'a>,
    /// The bias, or a dummy (the shape uniform says which).
    pub bias: wgpu::BindingResource<'a>,
    /// Overrides shared with the other kernels of the family (`WG`, `D`, `IDX_BITS`, ...).
    pub overrides: Vec<(&'static str, u32)>,
    /// The codebook's module (f16 codebooks: the f16 one).
    pub precision: Precision,
    /// `Kc = 2^IDX_BITS`: no index needs clamping (`FULL_K`).
    pub full_k: bool,
}

/// Records `y = x · decode(weight)ᵀ (+ bias)` for `m` (< 4) rows: per row and slab, the
/// activations copied to a uniform buffer, the slab's table built, then gathered into y by one
/// dispatch per `UB_SLOTS` bindings of it (the first writes y with the bias, later ones add to
/// it, in order).
pub(super) fn record(
    g: &Gpu,
    batch: &mut Batch,
    (x, y): (&Tensor, &Tensor),
    m: u64,
    weight: &PqWeight,
    r: &Recording<'_>,
) -> Result<()> {
    let (n, k) = (weight.out_features, weight.in_features);
    let d = weight.block_size as u64;
    let kc = weight.n_centroids as u64;
    let nsub = k / d;
    let mut build = r.overrides.clone();
    build.push(("JB", BUILD_JB));
    let build = g.pipeline(PipelineKey {
        family: Family::PqMatmul,
        precision: r.precision,
        entry: "pq_lut_build_ub",
        overrides: build,
    })?;
    let mut gather = r.overrides.clone();
    gather.push(("FULL_K", r.full_k as u32));
    let gather = g.pipeline(PipelineKey {
        family: Family::PqMatmul,
        precision: r.precision,
        entry: "pq_lut_gather_ub",
        overrides: gather,
    })?;
    let table = batch.uniform_scratch(TABLE_SLOTS * UB_BYTES);
    let activations = batch.uniform_scratch(UB_BYTES);
    let (x_buffer, x_offset) = device_buffer(x, "x")?;
    let len = slab_len(kc, d);
    let groups_per_gather = UB_SLOTS * (UB_VEC4S / kc);
    for row in 0..m {
        let (yb, y_off) = shifted_binding(y, row * n, n, "y")?;
        let u = batch.uniform(&(r.params)(1, 0, y_off));
        for (s, first) in (0..nsub).step_by(len as usize).enumerate() {
            let count = len.min(nsub - first);
            batch.copy(
                x_buffer,
                x_offset + (row * k + first * d) * 4,
                &activations,
                0,
                count * d * 4,
            );
            let slab = |h: u64| SlabParams {
                first: first as u32,
                count: count as u32,
                accumulate: (s > 0 || h > 0) as u32,
                q_first: (h * groups_per_gather) as u32,
            };
            let first_gather = batch.uniform(&slab(0));
            let mut b = vec![
                (0, u.as_entire_binding()),
                (7, sized(&table, TABLE_SLOTS * UB_BYTES)),
                (19, sized(&activations, UB_BYTES)),
                (20, first_gather.as_entire_binding()),
            ];
            b.extend(r.codebook.iter().cloned());
            let groups = kc.div_ceil(WG as u64) * count.div_ceil(BUILD_JB as u64);
            batch.dispatch_at(&build, &b, groups)?;
            for h in 0..(count / 4).div_ceil(groups_per_gather) {
                let params = if h == 0 {
                    first_gather.clone()
                } else {
                    batch.uniform(&slab(h))
                };
                let mut b = vec![
                    (0, u.as_entire_binding()),
                    (4, r.indices.clone()),
                    (5, r.bias.clone()),
                    (6, yb.clone()),
                    (20, params.as_entire_binding()),
                ];
                for i in 0..UB_SLOTS {
                    b.push((
                        11 + i as u32,
                        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &table,
                            offset: (h * UB_SLOTS + i) * UB_BYTES,
                            size: wgpu::BufferSize::new(UB_BYTES),
                        }),
                    ));
                }
                batch.dispatch_at(&gather, &b, n.div_ceil(WG as u64))?;
            }
        }
    }
    Ok(())
}
