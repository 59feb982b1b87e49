#version 450
// Ends attention: out = weighted value sum / softmax sum for every (head,
// token) state left by attention_segment (zero when no key was visible).
layout(local_size_x = 64) in;

layout(std430, binding = 0) writeonly buffer O { float of[]; };
layout(std430, binding = 3) readonly buffer State { float st[]; };
layout(push_constant) uniform P {
    uint o_off;
    uint o_stride;
    uint n_heads;
    uint head_dim;
} p;

void main() {
    const uint h = gl_WorkGroupID.x;
    const uint t = gl_WorkGroupID.y;
    const uint hd = p.head_dim;
    const uint sb = (t * p.n_heads + h) * (hd + 2u);
    const float sum = st[sb + 1u];
    const float inv = sum > 0.0 ? 1.0 / sum : 0.0;
    const uint ob = p.o_off + t * p.o_stride + h * hd;
    for (uint d = gl_LocalInvocationID.x; d < hd; d += 64u) of[ob + d] = st[sb + 2u + d] * inv;
}
