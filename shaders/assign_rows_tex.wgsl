// The data of `shaders/assign.wgsl` on CPU adapters where d is a multiple of 4: the window's
// subvectors copied into a texture of TEX_W texels per row (rgba32float, or rgba16float for f16
// data), subvector i at texels i·d/4 .. (i + 1)·d/4 − 1 in row-major order. On lavapipe a texel
// fetch at a per-invocation address is a gather, where a storage load is a loop over the SIMD
// lanes that moves each component through the stack (about six times dearer, measured).

// Texels per texture row (set by the host).
override TEX_W: u32 = 4096u;

@group(0) @binding(1) var data: texture_2d<f32>;
// The bound tile's prepared rows, copied into a texture the same way (one row of texels).
@group(0) @binding(15) var prepared_tex: texture_2d<f32>;

// Chunk j of subvector i: components 4j .. 4j + 3 (0 past d: with a constant j the branch
// folds away).
fn data_chunk(i: u32, j: u32) -> vec4<f32> {
    if 4u * j < D {
        let t = i * D4 + j;
        return textureLoad(data, vec2<u32>(t % TEX_W, t / TEX_W), 0);
    }
    return vec4<f32>(0.0);
}

// Prepared vec4 e of the bound tile.
fn prepared_row(e: u32) -> vec4<f32> {
    return textureLoad(prepared_tex, vec2<u32>(e % TEX_W, e / TEX_W), 0);
}
