#version 450
// out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias, biased variance
// (Whisper's LayerNorm). One workgroup per row, two passes (the mean, then
// the squared deviations from it): one-pass variance loses its digits on the
// large activations of a deep encoder. In place (out == x) is allowed: each
// invocation rewrites only what it read.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer X { float xf[]; };
layout(std430, binding = 1) readonly buffer Wt { float wf[]; };
layout(std430, binding = 2) writeonly buffer O { float of[]; };
layout(std430, binding = 3) readonly buffer Bias { float bf[]; };
layout(push_constant) uniform P {
    uint x_off;
    uint x_stride;
    uint w_off;
    uint b_off;
    uint o_off;
    uint o_stride;
    uint n;
    float eps;
} p;

shared float partial[64];

// The workgroup's sum of v (every invocation gets it).
float workgroup_sum(float v) {
    const uint tid = gl_LocalInvocationID.x;
    partial[tid] = v;
    barrier();
    for (uint w = 32u; w > 0u; w >>= 1) {
        if (tid < w) partial[tid] += partial[tid + w];
        barrier();
    }
    const float total = partial[0];
    barrier();  // partial is reused by the next call
    return total;
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint xb = p.x_off + gl_WorkGroupID.x * p.x_stride;
    const uint ob = p.o_off + gl_WorkGroupID.x * p.o_stride;
    float s = 0.0;
    for (uint i = tid; i < p.n; i += 64u) s += xf[xb + i];
    const float mean = workgroup_sum(s) / float(p.n);
    float ss = 0.0;
    for (uint i = tid; i < p.n; i += 64u) {
        const float d = xf[xb + i] - mean;
        ss += d * d;
    }
    const float inv = 1.0 / sqrt(workgroup_sum(ss) / float(p.n) + p.eps);
    for (uint i = tid; i < p.n; i += 64u) of[ob + i] = (xf[xb + i] - mean) * inv * wf[p.w_off + i] + bf[p.b_off + i];
}
