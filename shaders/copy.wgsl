// Copy kernels moving the same bytes as an element-wise kernel: the honest roofline of
// element-wise kernels in the benchmark report. Four access patterns; the fastest is the
// baseline.

override WG: u32 = 64u;
override VPT: u32 = 4u;

struct CopyParams {
    // vec4 elements to copy.
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

fn tile_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// One vec4 per invocation.
@compute @workgroup_size(WG)
fn copy_vec4(@builtin(local_invocation_index) lid: u32,
             @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = tile_index(wid, nwg) * WG + lid;
    if v < params.n {
        dst[v] = src[v];
    }
}

// VPT consecutive vec4 per invocation.
@compute @workgroup_size(WG)
fn copy_vec4_contiguous(@builtin(local_invocation_index) lid: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let base = (tile_index(wid, nwg) * WG + lid) * VPT;
    for (var j = 0u; j < VPT; j++) {
        let v = base + j;
        if v < params.n {
            dst[v] = src[v];
        }
    }
}

// VPT vec4 per invocation, strided by WG inside a workgroup tile (the element-wise kernels'
// pattern).
@compute @workgroup_size(WG)
fn copy_vec4_strided(@builtin(local_invocation_index) lid: u32,
                     @builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let base = tile_index(wid, nwg) * WG * VPT + lid;
    for (var j = 0u; j < VPT; j++) {
        let v = base + j * WG;
        if v < params.n {
            dst[v] = src[v];
        }
    }
}

// VPT vec4 per invocation, strided by the whole grid.
@compute @workgroup_size(WG)
fn copy_vec4_grid(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = nwg.x * nwg.y * WG;
    let first = tile_index(wid, nwg) * WG + lid;
    for (var j = 0u; j < VPT; j++) {
        let v = first + j * total;
        if v < params.n {
            dst[v] = src[v];
        }
    }
}
