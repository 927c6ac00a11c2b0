// The data of `shaders/assign.wgsl` for any d: subvector i is elements i·d .. i·d + d − 1.

// f32, or f16 in the f16 variant of the family (arithmetic stays f32).
@group(0) @binding(1) var<storage, read> data: array<Elem>;

// Component j of subvector i (0 past d: with a constant j the branch folds away).
fn data_at(i: u32, j: u32) -> f32 {
    if j < D {
        return f32(data[i * D + j]);
    }
    return 0.0;
}

// Chunk j of subvector i: components 4j .. 4j + 3.
fn data_chunk(i: u32, j: u32) -> vec4<f32> {
    let c = 4u * j;
    return vec4<f32>(data_at(i, c), data_at(i, c + 1u), data_at(i, c + 2u), data_at(i, c + 3u));
}

// Prepared vec4 e of the bound tile.
fn prepared_row(e: u32) -> vec4<f32> {
    return prepared[e];
}
