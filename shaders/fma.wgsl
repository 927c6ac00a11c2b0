// FMA-throughput kernels: the compute ceiling of the benchmark report (the baseline of its
// compute-bound cases, as the copy kernels are the baseline of the memory-bound ones).
//
// Every invocation runs C independent vec4 chains x <- fma(x, mul, add) for `iters` iterations
// (2 * 4 * C * iters FLOPs) and writes the sum of its chains, so nothing is optimised away.
// `mul` and `add` come from a uniform, so the compiler cannot fold the chains, and with
// |mul| < 1 every chain converges to add / (1 - mul): no overflow, no denormals.
//
// The loop body is unrolled by hand (U steps of every chain per trip, so `iters` must be a
// multiple of U): on lavapipe a rolled loop costs more than the FMAs it runs, and a loop bound
// by an override is not unrolled by the driver.

override WG: u32 = 64u;

struct FmaParams {
    // Invocations that write a value (the length of `out`).
    n: u32,
    // Iterations of every chain (a multiple of the entry point's unroll factor).
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
    let b = (i * 16u + c) * 4u;
    return vec4<f32>(vec4<u32>(b, b + 1u, b + 2u, b + 3u) & vec4<u32>(1023u)) / 1024.0;
}

// The invocation's index on the 2-D grid of workgroups.
fn invocation(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// The sum of a vec4's components, pairwise.
fn hsum(s: vec4<f32>) -> f32 {
    return (s.x + s.y) + (s.z + s.w);
}

// 4 independent vec4 chains, 8 steps per trip (32 FMAs per trip).
@compute @workgroup_size(WG)
fn fma_chains4(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation(lid, wid, nwg);
    if i >= params.n {
        return;
    }
    let m = params.mul;
    let a = params.add;
    var x0 = chain_start(i, 0u);
    var x1 = chain_start(i, 1u);
    var x2 = chain_start(i, 2u);
    var x3 = chain_start(i, 3u);
    for (var t = 0u; t < params.iters; t += 8u) {
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
    }
    out[i] = hsum((x0 + x1) + (x2 + x3));
}

// 8 independent vec4 chains, 4 steps per trip (32 FMAs per trip).
@compute @workgroup_size(WG)
fn fma_chains8(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation(lid, wid, nwg);
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
    for (var t = 0u; t < params.iters; t += 4u) {
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
    }
    out[i] = hsum(((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)));
}

// 16 independent vec4 chains, 4 steps per trip (64 FMAs per trip).
@compute @workgroup_size(WG)
fn fma_chains16(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation(lid, wid, nwg);
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
    var x8 = chain_start(i, 8u);
    var x9 = chain_start(i, 9u);
    var x10 = chain_start(i, 10u);
    var x11 = chain_start(i, 11u);
    var x12 = chain_start(i, 12u);
    var x13 = chain_start(i, 13u);
    var x14 = chain_start(i, 14u);
    var x15 = chain_start(i, 15u);
    for (var t = 0u; t < params.iters; t += 4u) {
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
        x8 = fma(x8, m, a); x9 = fma(x9, m, a); x10 = fma(x10, m, a); x11 = fma(x11, m, a);
        x12 = fma(x12, m, a); x13 = fma(x13, m, a); x14 = fma(x14, m, a); x15 = fma(x15, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
        x8 = fma(x8, m, a); x9 = fma(x9, m, a); x10 = fma(x10, m, a); x11 = fma(x11, m, a);
        x12 = fma(x12, m, a); x13 = fma(x13, m, a); x14 = fma(x14, m, a); x15 = fma(x15, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
        x8 = fma(x8, m, a); x9 = fma(x9, m, a); x10 = fma(x10, m, a); x11 = fma(x11, m, a);
        x12 = fma(x12, m, a); x13 = fma(x13, m, a); x14 = fma(x14, m, a); x15 = fma(x15, m, a);
        x0 = fma(x0, m, a); x1 = fma(x1, m, a); x2 = fma(x2, m, a); x3 = fma(x3, m, a);
        x4 = fma(x4, m, a); x5 = fma(x5, m, a); x6 = fma(x6, m, a); x7 = fma(x7, m, a);
        x8 = fma(x8, m, a); x9 = fma(x9, m, a); x10 = fma(x10, m, a); x11 = fma(x11, m, a);
        x12 = fma(x12, m, a); x13 = fma(x13, m, a); x14 = fma(x14, m, a); x15 = fma(x15, m, a);
    }
    let lo = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
    let hi = ((x8 + x9) + (x10 + x11)) + ((x12 + x13) + (x14 + x15));
    out[i] = hsum(lo + hi);
}
