//! Host side of the broadcast kernel ([`MatmulConfig::BROADCAST`], `matmul_bcast` and
//! `matmul_bcast_pack` in `shaders/matmul.wgsl`).
//!
//! On lavapipe a load is a loop over the SIMD lanes unless it reads workgroup memory at a
//! compile-time-constant address outside all loops and branches; uniform bindings read at
//! per-lane addresses cost less than storage ones (no bounds check per lane). So each dispatch
//! runs straight-line code over up to 3 sub-slabs of 64 k: the rows' operand is staged in
//! workgroup memory and broadcast, the column's operand comes from 64 KiB uniform blocks that
//! a packing pass fills before each chunk of 3 sub-slabs (one block per 256 columns and 64 k),
//! and partial sums are stored, then added by the later chunks. Whole blocks of rows and
//! columns store without bounds checks (`BC_CHECK` off: a store under a branch is dearer on
//! lavapipe); only a last partial block of rows, or a partial block of columns, checks them.
//!
//! The packing pass is this kernel's weight loader: it applies `b_hook4` (the fused noise of
//! the noisy Linear family, the decoding of the PQ family) while it writes the blocks, so each
//! weight element is transformed once per row window, not once per 32 rows. What it writes is
//! the chunk's blocks (3 · 64 k of every column), never the whole noisy or decoded weight. The
//! last dispatch of a window applies `c_hook` (the STE factors of dW) to the total.
//!
//! Where a window takes several dispatches, the earlier ones keep their sums in a scratch
//! buffer as 8 consecutive vec4s per invocation (`BC_PHASE` 1 and 2) and only the last writes C
//! (phase 3): on lavapipe every access at a per-lane address is a loop over the lanes, one per
//! vec4 as per scalar, so this takes 8 loops per dispatch where C's 32 scalar reads and 32
//! writes took 64. Where that buffer would exceed one storage binding (`max_window_bytes`),
//! every dispatch adds to C (phase 0).

use super::{
    Bound, Hooks, MatmulParams, Product, bias_binding, each_window, layout, product_overrides,
};
use crate::error::{Error, Result, invalid};
use crate::runtime::batch::{Batch, sized};
use crate::runtime::gpu::{Gpu, PipelineKey, UNIFORM_TABLE_BYTES};
use crate::runtime::shaders::Precision;

/// Columns per workgroup (`BC_N`), rows per workgroup (`BC_R`), k per sub-slab (`BC_KS`).
const COLS: u64 = 256;
const ROWS: u64 = 32;
const SLAB: u64 = 64;
/// Sub-slabs per dispatch at most (`BC_S`: one uniform block binding each); fewer where the
/// device has less than 24 KiB of workgroup memory.
const MAX_SLABS: u64 = 3;
/// First binding of the uniform blocks.
const BLOCK_BINDING: u32 = 11;
/// Bytes of partial sums per workgroup (32 rows × 256 columns, f32).
const PART_BYTES: u64 = ROWS * COLS * 4;

/// `BC_PHASE` of dispatch chunk `i` of `chunks` (see `shaders/matmul.wgsl`); `partials`: the
/// window keeps its partial sums apart (several chunks, and a buffer that fits a binding).
fn phase(i: u64, chunks: u64, partials: bool) -> u32 {
    match (partials, i) {
        (false, _) => 0,
        (true, 0) => 1,
        (true, i) if i + 1 < chunks => 2,
        (true, _) => 3,
    }
}

pub(super) fn record(
    g: &Gpu,
    batch: &mut Batch,
    precision: Precision,
    p: &Bound<'_>,
    hooks: &Hooks<'_>,
    dummy: &wgpu::Buffer,
) -> Result<()> {
    let unsupported = |feature| Error::Unsupported {
        feature,
        adapter: g.description.clone(),
    };
    if precision != Precision::F32 {
        return Err(unsupported("f16 storage in the broadcast matmul kernel"));
    }
    if !g.uniform_tables {
        return Err(unsupported(
            "64 KiB uniform bindings (the broadcast matmul kernel)",
        ));
    }
    let align = g.limits.min_storage_buffer_offset_alignment as u64;
    let (trans_a, trans_b, per) = layout(g, p, hooks)?;
    let overrides = product_overrides(p, hooks, trans_a, trans_b);
    let pipeline = |entry: &'static str, extra: &[(&'static str, u32)]| {
        let mut o = overrides.clone();
        o.extend_from_slice(extra);
        g.pipeline(PipelineKey {
            family: hooks.family,
            precision,
            entry,
            overrides: o,
        })
    };
    // Sub-slabs per dispatch: 8 KiB of workgroup memory each.
    let slabs_max = MAX_SLABS.min(g.limits.max_compute_workgroup_storage_size as u64 / 8192);
    if slabs_max == 0 {
        return Err(unsupported(
            "8 KiB of workgroup memory (the broadcast matmul kernel)",
        ));
    }
    let bias = bias_binding(p, align, dummy)?;
    each_window(p, hooks, (per, align), dummy, |r0, window| {
        let ((m, n, k), [(a, a_off), (b, b_off), (c, c_off)]) = window;
        // One aligned vec4 load per staged slot of A and per packed slot of B where the
        // operand's layout allows (see `matmul_bcast_a4` and `matmul_bcast_pack4`).
        let a_vec4 = a_off % 4 == 0 && [k, m][trans_a as usize] % 4 == 0;
        let b_vec4 = !hooks.b_computed && b_off % 4 == 0 && [n, k][trans_b as usize] % 4 == 0;
        let pack = match b_vec4 {
            true => pipeline("matmul_bcast_pack4", &[("ACCUMULATE", 0), ("BC_S", 1)])?,
            false => pipeline("matmul_bcast_pack", &[("ACCUMULATE", 0), ("BC_S", 1)])?,
        };
        let (slabs, col_blocks) = (k.div_ceil(SLAB), n.div_ceil(COLS));
        let params = |first: u64, count: u64, col_first: u64, row_first: u64| MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            tiles_n: col_blocks as u32,
            tiles: (count * col_blocks * COLS * SLAB / 4) as u32,
            a_off,
            b_off,
            c_off,
            k_first: (first * SLAB) as u32,
            col_first: col_first as u32,
            row_first: row_first as u32,
            ..Default::default()
        };
        // The blocks of one dispatch chunk (up to `slabs_max` sub-slabs, every column block):
        // block g = sub-slab · col_blocks + column block, 64 KiB each.
        let chunk_bytes = slabs_max.min(slabs) * col_blocks * UNIFORM_TABLE_BYTES;
        if chunk_bytes > g.max_window {
            return Err(invalid(
                "broadcast matmul weight blocks",
                chunk_bytes,
                "3 sub-slabs of 64 k of every column, 64 KiB per 256 columns, must fit one \
                 storage binding (max_window_bytes)",
            ));
        }
        let blocks = batch.uniform_scratch(chunk_bytes);
        let block = |g: u64| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &blocks,
                offset: g * UNIFORM_TABLE_BYTES,
                size: wgpu::BufferSize::new(UNIFORM_TABLE_BYTES),
            })
        };
        // dW windows after the first add to the sums of the earlier ones (later dispatches of a
        // window always do).
        let accumulate = (p.product == Product::BackwardWeight && r0 > 0) as u32;
        let chunks = slabs.div_ceil(slabs_max);
        // The partial sums of every column block, one binding each.
        let row_blocks = m.div_ceil(ROWS);
        let part_bytes = row_blocks * PART_BYTES;
        let partials = chunks > 1 && part_bytes * col_blocks <= g.max_window;
        // (Unused in phase 0, but bound: a buffer of its own, as it is bound read-write.)
        let part = batch.scratch_uncleared(match partials {
            true => part_bytes * col_blocks,
            false => 16,
        });
        for (chunk, first) in (0..slabs).step_by(slabs_max as usize).enumerate() {
            let count = slabs_max.min(slabs - first);
            let phase = phase(chunk as u64, chunks, partials);
            let u = batch.uniform(&params(first, count, 0, 0));
            let bytes = count * col_blocks * UNIFORM_TABLE_BYTES;
            let mut bindings = vec![
                (0, u.as_entire_binding()),
                (2, b.clone()),
                (3, sized(&blocks, bytes)),
            ];
            bindings.extend(hooks.bindings_without(hooks.c_only));
            batch.dispatch_at(&pack, &bindings, (bytes / 16).div_ceil(256))?;
            let main = |check: bool| {
                let mut o = vec![
                    ("ACCUMULATE", accumulate),
                    ("BC_S", count as u32),
                    ("BC_CHECK", check as u32),
                    ("BC_PHASE", phase),
                ];
                match a_vec4 {
                    true => {
                        o.push(("A4_ROWS", trans_a));
                        pipeline("matmul_bcast_a4", &o)
                    }
                    false => pipeline("matmul_bcast", &o),
                }
            };
            for cb in 0..col_blocks {
                // Whole blocks of rows and columns store without bounds checks; phases 1 and 2
                // store nothing in C (their sums cover whole blocks).
                let whole_rows = match phase {
                    1 | 2 => row_blocks,
                    _ if (cb + 1) * COLS <= n => m / ROWS,
                    _ => 0,
                };
                let parts = [(false, 0, whole_rows), (true, whole_rows, row_blocks)];
                let part_binding = match partials {
                    true => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &part,
                        offset: cb * part_bytes,
                        size: wgpu::BufferSize::new(part_bytes),
                    }),
                    false => part.as_entire_binding(),
                };
                for (check, from, to) in parts {
                    if from == to {
                        continue;
                    }
                    let u = batch.uniform(&params(first, count, cb * COLS, from * ROWS));
                    let mut bindings = vec![
                        (0, u.as_entire_binding()),
                        (1, a.clone()),
                        (2, part_binding.clone()),
                        (3, c.clone()),
                        (4, bias.clone()),
                    ];
                    bindings.extend(hooks.bindings_without(hooks.b_only));
                    for s in 0..MAX_SLABS {
                        // Blocks past this dispatch's sub-slabs are never read.
                        let slab = s.min(count - 1);
                        bindings.push((BLOCK_BINDING + s as u32, block(slab * col_blocks + cb)));
                    }
                    batch.dispatch_at(&main(check)?, &bindings, to - from)?;
                }
            }
        }
        Ok(())
    })
}
