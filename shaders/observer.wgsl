// Observers: min/max (per tensor or per row, with a count of non-finite values) and a
// 2048-bin histogram over the tensor's [min, max]. Two-pass reductions, no float atomics.

override WG: u32 = 256u;
// Elements per invocation in minmax_partial.
override EPT: u32 = 16u;
const BINS: u32 = 2048u;

struct ObserverParams {
    // Elements in this window.
    n: u32,
    // minmax_partial / minmax_rows: first output slot of this window.
    out_base: u32,
    cols: u32,
    // minmax_reduce: partials to reduce.
    n_parts: u32,
    // minmax_rows: position of the window's first element inside its row.
    lead: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// min, max, count of non-finite values.
struct Range {
    lo: f32,
    hi: f32,
    bad: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: ObserverParams;
@group(0) @binding(1) var<storage, read> src: array<Elem>;
@group(0) @binding(2) var<storage, read_write> ranges: array<Range>;

@group(0) @binding(1) var<storage, read> parts: array<Range>;
@group(0) @binding(2) var<storage, read_write> total: array<Range>;

@group(0) @binding(2) var<storage, read> tensor_range: array<Range>;
@group(0) @binding(3) var<storage, read_write> hist: array<atomic<u32>, BINS>;

var<workgroup> wg_lo: array<f32, WG>;
var<workgroup> wg_hi: array<f32, WG>;
var<workgroup> wg_bad: array<u32, WG>;
var<workgroup> wg_hist: array<atomic<u32>, BINS>;

const BIG: f32 = 3.0e38;

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7F800000u) != 0x7F800000u;
}

fn fold(r: Range, x: f32) -> Range {
    if !is_finite(x) {
        return Range(r.lo, r.hi, r.bad + 1u, 0u);
    }
    return Range(min(r.lo, x), max(r.hi, x), r.bad, 0u);
}

// Tree reduction of the workgroup's ranges; the result is in slot 0.
fn reduce_workgroup(lid: u32, r: Range) -> Range {
    wg_lo[lid] = r.lo;
    wg_hi[lid] = r.hi;
    wg_bad[lid] = r.bad;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            wg_lo[lid] = min(wg_lo[lid], wg_lo[lid + stride]);
            wg_hi[lid] = max(wg_hi[lid], wg_hi[lid + stride]);
            wg_bad[lid] = wg_bad[lid] + wg_bad[lid + stride];
        }
        workgroupBarrier();
    }
    return Range(wg_lo[0], wg_hi[0], wg_bad[0], 0u);
}

fn tile_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// One Range per tile of WG * EPT elements.
@compute @workgroup_size(WG)
fn minmax_partial(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_index(wid, nwg);
    var r = Range(BIG, -BIG, 0u, 0u);
    for (var j = 0u; j < EPT; j++) {
        let i = tile * WG * EPT + j * WG + lid;
        if i < params.n {
            r = fold(r, f32(src[i]));
        }
    }
    let t = reduce_workgroup(lid, r);
    if lid == 0u {
        ranges[params.out_base + tile] = t;
    }
}

// One Range per row touched by the window (rows may be cut at window edges: the host merges
// the pieces). Row k of the window covers local elements [k·cols − lead, (k+1)·cols − lead).
@compute @workgroup_size(WG)
fn minmax_rows(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = tile_index(wid, nwg);
    let start = max(row * params.cols, params.lead) - params.lead;
    let end = min((row + 1u) * params.cols - params.lead, params.n);
    if start >= end {
        return;
    }
    var r = Range(BIG, -BIG, 0u, 0u);
    for (var i = start + lid; i < end; i += WG) {
        r = fold(r, f32(src[i]));
    }
    let t = reduce_workgroup(lid, r);
    if lid == 0u {
        ranges[params.out_base + row] = t;
    }
}

// Reduces n_parts partial ranges into total[0]; one workgroup.
@compute @workgroup_size(WG)
fn minmax_reduce(@builtin(local_invocation_index) lid: u32) {
    var r = Range(BIG, -BIG, 0u, 0u);
    for (var i = lid; i < params.n_parts; i += WG) {
        let p = parts[i];
        r = Range(min(r.lo, p.lo), max(r.hi, p.hi), r.bad + p.bad, 0u);
    }
    let t = reduce_workgroup(lid, r);
    if lid == 0u {
        total[0] = t;
    }
}

// Adds this window's elements to the histogram over [tensor_range.lo, tensor_range.hi].
// The bin formula matches observer::histogram_bin on the host.
@compute @workgroup_size(WG)
fn histogram(@builtin(local_invocation_index) lid: u32,
             @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var b = lid; b < BINS; b += WG) {
        atomicStore(&wg_hist[b], 0u);
    }
    workgroupBarrier();
    let lo = tensor_range[0].lo;
    let width = tensor_range[0].hi - lo;
    let tile = tile_index(wid, nwg);
    for (var j = 0u; j < EPT; j++) {
        let i = tile * WG * EPT + j * WG + lid;
        if i < params.n {
            let x = f32(src[i]);
            var bin = 0u;
            if width > 0.0 {
                bin = min(u32(max((x - lo) / width * f32(BINS), 0.0)), BINS - 1u);
            }
            atomicAdd(&wg_hist[bin], 1u);
        }
    }
    workgroupBarrier();
    for (var b = lid; b < BINS; b += WG) {
        let c = atomicLoad(&wg_hist[b]);
        if c > 0u {
            atomicAdd(&hist[b], c);
        }
    }
}
