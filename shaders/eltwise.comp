#version 450
// Element-wise ops on F32 rows: add (out = a + b) or the SiLU-gated product
// (out = silu(a) * b). In place is allowed.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer A { float af[]; };
layout(std430, binding = 1) readonly buffer B { float bf[]; };
layout(std430, binding = 2) writeonly buffer O { float of[]; };
layout(push_constant) uniform P {
    uint a_off;
    uint a_stride;
    uint b_off;
    uint b_stride;
    uint o_off;
    uint o_stride;
    uint cols;
} p;

void main() {
    const uint c = gl_GlobalInvocationID.x;
    const uint r = gl_WorkGroupID.y;
    if (c >= p.cols) return;
    const float a = af[p.a_off + r * p.a_stride + c];
    const float b = bf[p.b_off + r * p.b_stride + c];
#if defined(OP_ADD)
    of[p.o_off + r * p.o_stride + c] = a + b;
#elif defined(OP_SILU_MUL)
    of[p.o_off + r * p.o_stride + c] = a / (1.0 + exp(-a)) * b;
#else
#error "define OP_ADD or OP_SILU_MUL"
#endif
}
