#version 450
// Rotary embedding, in place, of adjacent pairs (2i, 2i+1) or, NeoX style,
// of pairs (i, i + n_pairs) (Gemma, GPT-NeoX: Q/K rows not permuted). The
// host writes the (cos, sin) of every (token, pair), magnitude factor
// included, so results match the CPU backend bit for bit in the angles and
// do not depend on the device's sin/cos accuracy for large arguments.
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
    uint neox;        // 1: pairs (i, i + n_pairs)
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
    const uint head = p.x_off + t * p.x_stride + h * p.head_dim;
    const uint xa = p.neox != 0u ? head + pair : head + 2u * pair;
    const uint xb = p.neox != 0u ? xa + p.n_pairs : xa + 1u;
    const float a = xf[xa];
    const float b = xf[xb];
    xf[xa] = a * c - b * s;
    xf[xb] = a * s + b * c;
}
