#version 450
// Unfolds a 1-D convolution's input (time = rows, channels = columns) so the
// convolution becomes a matmul: out[t][c * kernel + k] = x[t * stride + k -
// pad][c], zero outside x. One invocation per output element.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer X { float xf[]; };
layout(std430, binding = 2) writeonly buffer O { float of[]; };
layout(push_constant) uniform P {
    uint x_off;
    uint x_stride;
    uint x_rows;
    uint o_off;
    uint o_stride;
    uint channels;
    uint kernel;
    uint stride;
    uint pad;
} p;

void main() {
    const uint i = gl_GlobalInvocationID.x;  // c * kernel + k
    const uint t = gl_WorkGroupID.y;
    if (i >= p.channels * p.kernel) return;
    const uint c = i / p.kernel;
    const uint k = i % p.kernel;
    // Source row t * stride + k - pad, in unsigned arithmetic: rows before 0
    // wrap to huge values and fail the same bound check.
    const uint src = t * p.stride + k - p.pad;
    const bool inside = t * p.stride + k >= p.pad && src < p.x_rows;
    float v = 0.0;
    if (inside) v = xf[p.x_off + src * p.x_stride + c];
    of[p.o_off + t * p.o_stride + i] = v;
}
