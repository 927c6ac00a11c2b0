// Raw Philox4x32-10 outputs for given (counter, key) pairs: lets tests and users check that
// every backend computes the same bits as the Rust implementation.

@group(0) @binding(0) var<storage, read> counters: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> keys: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> outputs: array<vec4<u32>>;

@compute @workgroup_size(64)
fn philox_batch(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i < arrayLength(&counters) {
        outputs[i] = philox4x32_10(counters[i], keys[i]);
    }
}
