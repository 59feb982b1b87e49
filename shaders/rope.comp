#version 450
// Rotary embedding of adjacent pairs, in place. The host writes the
// (cos, sin) of every (token, pair), magnitude factor included, so results
// match the CPU backend bit for bit in the angles and do not depend on the
// device's sin/cos accuracy for large arguments.
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer X { float xf[]; };
layout(std430, binding = 4) readonly buffer Params { float params[]; };
layout(push_constant) uniform P {
    uint x_off;
    uint x_stride;
    uint n_heads;
    uint head_dim;
    uint n_pairs;     // rope_dim / 2
    uint table_off;   // words into params: [token][pair] (cos, sin)
} p;

void main() {
    const uint i = gl_GlobalInvocationID.x;  // head * n_pairs + pair
    const uint t = gl_WorkGroupID.y;
    if (i >= p.n_heads * p.n_pairs) return;
    const uint h = i / p.n_pairs;
    const uint pair = i - h * p.n_pairs;
    const uint tb = p.table_off + 2u * (t * p.n_pairs + pair);
    const float c = params[tb];
    const float s = params[tb + 1u];
    const uint xb = p.x_off + t * p.x_stride + h * p.head_dim + 2u * pair;
    const float a = xf[xb];
    const float b = xf[xb + 1u];
    xf[xb] = a * c - b * s;
    xf[xb + 1u] = a * s + b * c;
}
