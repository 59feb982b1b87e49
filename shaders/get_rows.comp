#version 450
// Embedding lookup: out[i] = dequantized row ids[i] of the table. One
// invocation per 32-element unit; workgroup y is the output row.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer W { uint wq[]; };
layout(std430, binding = 2) writeonly buffer O { float of[]; };
layout(std430, binding = 4) readonly buffer Params { int params[]; };
layout(push_constant) uniform P {
    uint w_off;       // bytes
    uint w_row_bytes;
    uint o_off;       // floats
    uint o_stride;
    uint k;           // columns
    uint ids_off;     // words into params
    uint n_rows;      // rows of the table (ids are checked on the host too)
} p;

#include "dequant.glsl"

void main() {
    const uint u = gl_GlobalInvocationID.x;
    const uint i = gl_WorkGroupID.y;
    if (u * 32u >= p.k) return;
    const uint id = uint(params[p.ids_off + i]);
    if (id >= p.n_rows) return;
    float v[32];
    dequant_unit(p.w_off + id * p.w_row_bytes, u, p.k, v);
    const uint n_out = min(32u, p.k - u * 32u);
    const uint ob = p.o_off + i * p.o_stride + u * 32u;
    for (uint j = 0u; j < n_out; ++j) of[ob + j] = v[j];
}
