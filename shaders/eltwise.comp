#version 450
// Element-wise ops on F32 rows: add (out = a + b), the SiLU-gated product
// (out = silu(a) * b), the GELU-gated product (out = gelu_tanh(a) * b,
// Gemma's GeGLU) or a scale (out = a * s, b unused). In place is allowed.
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
    float s;          // OP_SCALE's factor
} p;

void main() {
    const uint c = gl_GlobalInvocationID.x;
    const uint r = gl_WorkGroupID.y;
    if (c >= p.cols) return;
    const float a = af[p.a_off + r * p.a_stride + c];
#if defined(OP_SCALE)
    of[p.o_off + r * p.o_stride + c] = a * p.s;
#elif defined(OP_GELU_ERF)
    // Exact GELU, a * Phi(a) = 0.5 a (1 + erf(a / sqrt 2)); GLSL has no erf.
    // Abramowitz & Stegun 7.1.26: |error| < 1.5e-7 on erf, about a float's
    // rounding of Phi, with exp underflowing to the right limit for large |a|.
    const float z = abs(a) * 0.70710678118654752;
    const float t = 1.0 / (1.0 + 0.3275911 * z);
    const float poly =
        t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    const float q = poly * exp(-z * z);  // erfc(|a| / sqrt 2)
    of[p.o_off + r * p.o_stride + c] = a * (a < 0.0 ? 0.5 * q : 1.0 - 0.5 * q);
#else
    const float b = bf[p.b_off + r * p.b_stride + c];
#if defined(OP_ADD)
    of[p.o_off + r * p.o_stride + c] = a + b;
#elif defined(OP_SILU_MUL)
    of[p.o_off + r * p.o_stride + c] = a / (1.0 + exp(-a)) * b;
#elif defined(OP_GELU_MUL)
    // 0.5 a (1 + tanh(u)) = a / (1 + exp(-2u)): no tanh, whose overflow
    // behaviour for large |u| the SPIR-V spec leaves to the driver; exp
    // overflowing to +inf gives the right limit (-0).
    const float u = 0.7978845608028654 * (a + 0.044715 * a * a * a);  // sqrt(2/pi) (a + 0.044715 a^3)
    of[p.o_off + r * p.o_stride + c] = a / (1.0 + exp(-2.0 * u)) * b;
#else
#error "define OP_ADD, OP_SILU_MUL, OP_GELU_MUL or OP_SCALE"
#endif
#endif
}
