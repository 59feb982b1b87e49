#version 450
// out[t][r] = sum_k x[t][k] * w[r][k], shaped for CPU Vulkan implementations
// (lavapipe): every invocation computes ROWS whole rows for a tile of TT
// tokens, with no shared memory, barriers or subgroup operations.
// llvmpipe runs invocations as SIMD lanes but turns each storage-buffer
// load inside a loop into a scalar load per lane, so loads are what cost:
// a unit of x (32 values per token) is loaded once and used for ROWS rows,
// and a weight unit is decoded once and used for TT tokens. The sums follow
// matmul.comp with one lane per row (each unit's dot in order, then added
// to the row's accumulator), so both shapes give the same values.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 16) in;  // 16 * ROWS rows per workgroup (vulkan_ops.cpp)

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
#ifndef ROWS
#define ROWS 4
#endif

void main() {
    const uint t0 = gl_WorkGroupID.y * TT;
    const uint units = (p.k + 31u) / 32u;
    const uint group_rows = gl_WorkGroupSize.x * ROWS;
    for (uint base = gl_WorkGroupID.x * group_rows + gl_LocalInvocationID.x * ROWS; base < p.n;
         base += gl_NumWorkGroups.x * group_rows) {
        float acc[ROWS][TT];
        [[unroll]] for (uint r = 0u; r < ROWS; ++r)
            [[unroll]] for (uint i = 0u; i < TT; ++i) acc[r][i] = 0.0;
        for (uint u = 0u; u < units; ++u) {
            // x past the row's end reads as 0 (plain formats decode 0 there
            // too), so a partial unit adds zeros where matmul.comp stops early.
            float xv[TT][32];
            [[unroll]] for (uint i = 0u; i < TT; ++i) {
                const uint xb = p.x_off + (t0 + i) * p.x_stride + u * 32u;
                [[unroll]] for (uint j = 0u; j < 32u; ++j)
                    xv[i][j] = t0 + i < p.t && u * 32u + j < p.k ? xf[xb + j] : 0.0;
            }
            [[unroll]] for (uint r = 0u; r < ROWS; ++r) {
                // Rows past the end decode the last row (valid bytes) and are not stored.
                const uint row = p.w_off + min(base + r, p.n - 1u) * p.w_row_bytes;
                float v[32];
                dequant_unit(row, u, p.k, v);
                [[unroll]] for (uint i = 0u; i < TT; ++i) {
                    float s = 0.0;
                    [[unroll]] for (uint j = 0u; j < 32u; ++j) s += v[j] * xv[i][j];
                    acc[r][i] += s;
                }
            }
        }
        [[unroll]] for (uint r = 0u; r < ROWS; ++r)
            if (base + r < p.n)
                [[unroll]] for (uint i = 0u; i < TT; ++i)
                    if (t0 + i < p.t) of[p.o_off + (t0 + i) * p.o_stride + base + r] = acc[r][i];
    }
}
