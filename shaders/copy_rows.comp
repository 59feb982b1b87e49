#version 450
// Stores F32 rows into F16 or F32 rows (the KV cache). F16 destinations are
// written a 32-bit word at a time; a word shared with a neighbour (rows of
// odd width) is updated with atomics so neighbours never race.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer S { float sf[]; };
#if defined(DST_F16)
layout(std430, binding = 1) buffer D { uint du[]; };
#else
layout(std430, binding = 1) writeonly buffer D { float df[]; };
#endif
// The destination offset is a per-step value (the cache row), so it is read
// from the params arena: a decode step's recorded commands stay the same.
layout(std430, binding = 4) readonly buffer Params { uint params[]; };
layout(push_constant) uniform P {
    uint s_off;       // floats
    uint s_stride;
    uint d_param;     // params word holding the destination offset (elements of its type)
    uint d_stride;
    uint cols;
} p;

#if defined(DST_F16)
// Round to nearest even, as core/fp16.h f32_to_f16 (packHalf2x16 leaves the
// rounding to the implementation).
uint f32_to_f16(float f) {
    const uint x = floatBitsToUint(f);
    const uint sign = (x >> 16) & 0x8000u;
    const uint absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u);
    if (absx >= 0x477ff000u) return sign | 0x7c00u;
    if (absx < 0x38800000u) {
        if (absx < 0x33000000u) return sign;
        const uint e = absx >> 23;
        const uint m = (absx & 0x7fffffu) | 0x800000u;
        const uint shift = 126u - e;
        uint h = m >> shift;
        const uint rem = m & ((1u << shift) - 1u);
        const uint mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (h & 1u) != 0u)) ++h;
        return sign | h;
    }
    uint h = (absx >> 13) - ((127u - 15u) << 10);
    const uint rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) ++h;
    return sign | h;
}
#endif

void main() {
    const uint r = gl_WorkGroupID.y;
    const uint sb = p.s_off + r * p.s_stride;
    const uint d_off = params[p.d_param];
#if defined(DST_F16)
    const uint first = d_off + r * p.d_stride;  // half index of element 0
    const uint end = first + p.cols;
    const uint word = (first >> 1) + gl_GlobalInvocationID.x;
    if (word * 2u >= end) return;
    uint bits = 0u;
    uint mask = 0u;  // halves of the word this row owns
    for (uint hlf = 0u; hlf < 2u; ++hlf) {
        const uint e = word * 2u + hlf;
        if (e >= first && e < end) {
            bits |= f32_to_f16(sf[sb + (e - first)]) << (16u * hlf);
            mask |= 0xFFFFu << (16u * hlf);
        }
    }
    if (mask == 0xFFFFFFFFu) {
        du[word] = bits;
    } else {
        atomicAnd(du[word], ~mask);
        atomicOr(du[word], bits);
    }
#else
    const uint c = gl_GlobalInvocationID.x;
    if (c < p.cols) df[d_off + r * p.d_stride + c] = sf[sb + c];
#endif
}
