#version 450
// KIVI quantization of cached rows (layouts: sdk/src/core/kivi.h).
// KEYS: one key group (G token rows, per-channel ranges over the group).
// VALUES: one value row per workgroup row y (per-token ranges over groups of
// G channels). Every output word is written by exactly one invocation, so no
// atomics: invocation i builds code word i (all the channels whose codes
// share it) and, separately, range word i (an f16 pair).
//
// As the CPU reference, codes are computed against the f16-rounded scale and
// minimum that are stored, so code * scale + min is the nearest
// representable value.
layout(local_size_x = 64) in;

#if defined(SRC_F16)
layout(std430, binding = 0) readonly buffer S { uint su[]; };
float src_at(uint e) { return unpackHalf2x16(su[e >> 1])[e & 1u]; }
#else
layout(std430, binding = 0) readonly buffer S { float sf[]; };
float src_at(uint e) { return sf[e]; }
#endif
layout(std430, binding = 1) buffer D { uint dw[]; };

layout(push_constant) uniform P {
    uint src_off;     // elements: row 0 of the source
    uint src_stride;  // elements between source rows
    uint dst_off;     // words: the key group row / value row 0
    uint dst_stride;  // words between value rows (VALUES)
    uint kv_width;
    uint head_dim;
    uint group;       // G
    uint nbits;
    uint code_words;  // words of one token's code row
} p;

float f16_round(float x) { return unpackHalf2x16(packHalf2x16(vec2(x, 0.0))).x; }

// The stored (scale, min) of a range and the code of x against them.
vec2 range_of(float lo, float hi) {
    const float qmax = float((1u << p.nbits) - 1u);
    return vec2(f16_round((hi - lo) / qmax), f16_round(lo));
}
uint code_of(float x, vec2 sm) {
    if (!(sm.x > 0.0)) return 0u;
    const float qmax = float((1u << p.nbits) - 1u);
    float v = (x - sm.y) / sm.x;
    if (!(v >= 0.0)) v = 0.0;
    v = min(v, qmax);
    return uint(v + 0.5);
}

// Channel held by slot k (byte k / per_byte, code k % per_byte) of code word w.
uint channel_of(uint w, uint k, uint per_byte) {
    const uint run = p.head_dim * p.nbits / 8u;  // bytes of one head's codes
    const uint byte_index = 4u * w + k / per_byte;
    return (byte_index / run) * p.head_dim + byte_index % run + run * (k % per_byte);
}
uint shift_of(uint k, uint per_byte) { return 8u * (k / per_byte) + p.nbits * (k % per_byte); }

#if defined(MODE_KEYS)
vec2 key_range(uint ch) {
    float lo = src_at(p.src_off + ch), hi = lo;
    for (uint t = 1u; t < p.group; ++t) {
        const float x = src_at(p.src_off + t * p.src_stride + ch);
        lo = min(lo, x);
        hi = max(hi, x);
    }
    return range_of(lo, hi);
}

void main() {
    const uint i = gl_GlobalInvocationID.x;
    const uint per_byte = 8u / p.nbits;
    if (i < p.code_words) {
        vec2 sm[16];  // at most 4 bytes x 4 codes (2-bit)
        const uint slots = 4u * per_byte;
        for (uint k = 0u; k < slots; ++k) sm[k] = key_range(channel_of(i, k, per_byte));
        for (uint t = 0u; t < p.group; ++t) {
            uint word = 0u;
            for (uint k = 0u; k < slots; ++k) {
                const float x = src_at(p.src_off + t * p.src_stride + channel_of(i, k, per_byte));
                word |= code_of(x, sm[k]) << shift_of(k, per_byte);
            }
            dw[p.dst_off + t * p.code_words + i] = word;
        }
    }
    const uint pairs = p.kv_width / 2u;
    if (i < pairs) {
        const vec2 a = key_range(2u * i), b = key_range(2u * i + 1u);
        const uint scales = p.dst_off + p.group * p.code_words;
        dw[scales + i] = packHalf2x16(vec2(a.x, b.x));
        dw[scales + pairs + i] = packHalf2x16(vec2(a.y, b.y));
    }
}
#else  // MODE_VALUES
vec2 value_range(uint row_off, uint g) {
    float lo = src_at(row_off + g * p.group), hi = lo;
    for (uint c = 1u; c < p.group; ++c) {
        const float x = src_at(row_off + g * p.group + c);
        lo = min(lo, x);
        hi = max(hi, x);
    }
    return range_of(lo, hi);
}

void main() {
    const uint i = gl_GlobalInvocationID.x;
    const uint row = gl_WorkGroupID.y;
    const uint row_off = p.src_off + row * p.src_stride;
    const uint dst = p.dst_off + row * p.dst_stride;
    const uint per_byte = 8u / p.nbits;
    if (i < p.code_words) {
        uint word = 0u;
        uint cached = 0xFFFFFFFFu;
        vec2 sm = vec2(0.0);
        for (uint k = 0u; k < 4u * per_byte; ++k) {
            const uint ch = channel_of(i, k, per_byte);
            if (ch / p.group != cached) {
                cached = ch / p.group;
                sm = value_range(row_off, cached);
            }
            word |= code_of(src_at(row_off + ch), sm) << shift_of(k, per_byte);
        }
        dw[dst + i] = word;
    }
    if (i < p.kv_width / p.group) dw[dst + p.code_words + i] = packHalf2x16(value_range(row_off, i));
}
#endif
