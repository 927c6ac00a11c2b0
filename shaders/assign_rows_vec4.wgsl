// The data of `shaders/assign.wgsl` where d is a multiple of 4: subvector i is vec4s
// i·d/4 .. (i + 1)·d/4 − 1. On lavapipe a load at a per-invocation address is a loop over the
// SIMD lanes whatever it moves, so a vec4 costs what one element does in `assign_rows.wgsl`.

// f32, or f16 in the f16 variant of the family (arithmetic stays f32).
@group(0) @binding(1) var<storage, read> data: array<vec4<Elem>>;

// Chunk j of subvector i: components 4j .. 4j + 3 (0 past d: with a constant j the branch
// folds away).
fn data_chunk(i: u32, j: u32) -> vec4<f32> {
    if 4u * j < D {
        return vec4<f32>(data[i * D4 + j]);
    }
    return vec4<f32>(0.0);
}

// Prepared vec4 e of the bound tile.
fn prepared_row(e: u32) -> vec4<f32> {
    return prepared[e];
}
