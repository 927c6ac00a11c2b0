// Hooks of the dense `matmul` family (see matmul.wgsl): the identity.

fn b_hook(w: f32, e: u32) -> f32 {
    return w;
}

fn c_hook(c: f32, e: u32) -> f32 {
    return c;
}
