// FMA-throughput kernel: the compute ceiling of the benchmark report (the baseline of its
// compute-bound cases, as the copy kernels are the baseline of the memory-bound ones).
//
// Every invocation runs CHAINS independent vec4 chains x <- fma(x, mul, add) for `iters`
// iterations (2 * 4 * CHAINS * iters FLOPs) and writes the sum of its chains, so nothing is
// optimised away. `mul` and `add` come from a uniform, so the compiler cannot fold the chains,
// and with |mul| < 1 every chain converges to add / (1 - mul): no overflow, no denormals.

override WG: u32 = 64u;

struct FmaParams {
    // Invocations that write a value (the length of `out`).
    n: u32,
    // Iterations of every chain.
    iters: u32,
    _pad0: u32,
    _pad1: u32,
    // x <- fma(x, mul, add), component-wise.
    mul: vec4<f32>,
    add: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: FmaParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// The start of chain `c` of invocation `i`: distinct values in [0, 1).
fn chain_start(i: u32, c: u32) -> vec4<f32> {
    let b = (i * 8u + c) * 4u;
    return vec4<f32>(vec4<u32>(b, b + 1u, b + 2u, b + 3u) & vec4<u32>(1023u)) / 1024.0;
}

// Four independent vec4 chains per invocation.
@compute @workgroup_size(WG)
fn fma_chains4(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if i >= params.n {
        return;
    }
    let m = params.mul;
    let a = params.add;
    var x0 = chain_start(i, 0u);
    var x1 = chain_start(i, 1u);
    var x2 = chain_start(i, 2u);
    var x3 = chain_start(i, 3u);
    for (var t = 0u; t < params.iters; t++) {
        x0 = fma(x0, m, a);
        x1 = fma(x1, m, a);
        x2 = fma(x2, m, a);
        x3 = fma(x3, m, a);
    }
    let s = (x0 + x1) + (x2 + x3);
    out[i] = (s.x + s.y) + (s.z + s.w);
}

// Eight independent vec4 chains per invocation (more FMAs in flight per invocation).
@compute @workgroup_size(WG)
fn fma_chains8(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if i >= params.n {
        return;
    }
    let m = params.mul;
    let a = params.add;
    var x0 = chain_start(i, 0u);
    var x1 = chain_start(i, 1u);
    var x2 = chain_start(i, 2u);
    var x3 = chain_start(i, 3u);
    var x4 = chain_start(i, 4u);
    var x5 = chain_start(i, 5u);
    var x6 = chain_start(i, 6u);
    var x7 = chain_start(i, 7u);
    for (var t = 0u; t < params.iters; t++) {
        x0 = fma(x0, m, a);
        x1 = fma(x1, m, a);
        x2 = fma(x2, m, a);
        x3 = fma(x3, m, a);
        x4 = fma(x4, m, a);
        x5 = fma(x5, m, a);
        x6 = fma(x6, m, a);
        x7 = fma(x7, m, a);
    }
    let s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
    out[i] = (s.x + s.y) + (s.z + s.w);
}
