#version 450
// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight. One workgroup per row;
// in place (out == x) is allowed: each invocation rewrites only what it read.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer X { float xf[]; };
layout(std430, binding = 1) readonly buffer Wt { float wf[]; };
layout(std430, binding = 2) writeonly buffer O { float of[]; };
layout(push_constant) uniform P {
    uint x_off;
    uint x_stride;
    uint w_off;
    uint o_off;
    uint o_stride;
    uint n;
    float eps;
} p;

shared float partial[64];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint xb = p.x_off + gl_WorkGroupID.x * p.x_stride;
    const uint ob = p.o_off + gl_WorkGroupID.x * p.o_stride;
    float ss = 0.0;
    for (uint i = tid; i < p.n; i += 64u) ss += xf[xb + i] * xf[xb + i];
    partial[tid] = ss;
    barrier();
    for (uint w = 32u; w > 0u; w >>= 1) {
        if (tid < w) partial[tid] += partial[tid + w];
        barrier();
    }
    const float scale = 1.0 / sqrt(partial[0] / float(p.n) + p.eps);
    for (uint i = tid; i < p.n; i += 64u) of[ob + i] = xf[xb + i] * scale * wf[p.w_off + i];
}
