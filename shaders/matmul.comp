#version 450
// out[t][r] = sum_k x[t][k] * w[r][k] with w read in its GGUF format.
// A workgroup of 64 invocations computes 64 / LANES rows for a tile of TT
// tokens: the LANES invocations of a row stride over its 32-element units,
// decode each unit once and apply it to every token of the tile, then a
// shared-memory reduction (skipped when LANES == 1) sums their dots.
// LANES is a specialization constant: wide on GPUs (coalesced reads), 1 on
// CPU implementations where every workgroup barrier is expensive.
// ACC_F16 (needs shaderFloat16): each unit's 32-element dot is multiplied
// and summed in float16 (weights and activations rounded to half), then
// added to the f32 accumulator, so the half-precision error stays bounded
// per 32-element unit instead of growing along the row. Products or unit
// sums past the half range (65504) become infinities.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#if defined(ACC_F16)
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define UNIT_T float16_t
#else
#define UNIT_T float
#endif
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint LANES = 16u;

layout(std430, binding = 0) readonly buffer W { uint wq[]; };
layout(std430, binding = 1) readonly buffer X { float xf[]; };
layout(std430, binding = 2) writeonly buffer O { float of[]; };
layout(push_constant) uniform P {
    uint w_off;        // bytes
    uint w_row_bytes;
    uint x_off;        // floats
    uint x_stride;
    uint o_off;
    uint o_stride;
    uint k;            // columns
    uint n;            // rows of w
    uint t;            // tokens
} p;

#include "dequant.glsl"

#define TT 4
shared float partial[TT][64];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint lane = tid % LANES;
    const uint rows_per_group = 64u / LANES;
    const uint t0 = gl_WorkGroupID.y * TT;
    const uint units = (p.k + 31u) / 32u;
    for (uint base = gl_WorkGroupID.x * rows_per_group; base < p.n; base += gl_NumWorkGroups.x * rows_per_group) {
        const uint r = base + tid / LANES;
        float acc[TT];
        [[unroll]] for (uint i = 0u; i < TT; ++i) acc[i] = 0.0;
        if (r < p.n) {
            const uint row = p.w_off + r * p.w_row_bytes;
            for (uint u = lane; u < units; u += LANES) {
                float v[32];
                dequant_unit(row, u, p.k, v);
                const bool whole = u * 32u + 32u <= p.k;  // only plain rows end inside a unit
                [[unroll]] for (uint i = 0u; i < TT; ++i) {
                    if (t0 + i < p.t) {
                        const uint xb = p.x_off + (t0 + i) * p.x_stride + u * 32u;
                        UNIT_T s = UNIT_T(0.0);
                        if (whole) {
                            [[unroll]] for (uint j = 0u; j < 32u; ++j) s += UNIT_T(v[j]) * UNIT_T(xf[xb + j]);
                        } else {
                            for (uint j = 0u; j < p.k - u * 32u; ++j) s += UNIT_T(v[j]) * UNIT_T(xf[xb + j]);
                        }
                        acc[i] += float(s);
                    }
                }
            }
        }
        if (LANES > 1u) {
            for (uint i = 0u; i < TT; ++i) partial[i][tid] = acc[i];
            barrier();
            for (uint w = LANES / 2u; w > 0u; w >>= 1) {
                if (lane < w)
                    for (uint i = 0u; i < TT; ++i) partial[i][tid] += partial[i][tid + w];
                barrier();
            }
            for (uint i = 0u; i < TT; ++i) acc[i] = partial[i][tid];
            barrier();  // partial[] is reused by the next rows
        }
        if (lane == 0u && r < p.n)
            for (uint i = 0u; i < TT && t0 + i < p.t; ++i) of[p.o_off + (t0 + i) * p.o_stride + r] = acc[i];
    }
}
