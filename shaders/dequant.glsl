// Reads GGUF weight blocks in place from the word array `wq` (declared by the
// including shader). Every format is decoded in units of 32 consecutive
// elements of a row: a block of the 32-element formats, a sub-block of the
// K-quants, 32 plain values for F32/F16/BF16 (guarded by the row length,
// which need not be a multiple of 32). Byte reads go through 32-bit words so
// no 8/16-bit storage feature is needed; block fields that hold halves sit at
// even offsets in every format, so a half never straddles two words.
// The float expressions follow core/quant.cpp operation by operation.
// Fixed-trip loops are unrolled so v[] stays in registers (CPU
// implementations otherwise spill it to memory per invocation).

uint read_u8(uint b) { return (wq[b >> 2] >> ((b & 3u) * 8u)) & 0xFFu; }
uint read_u16(uint b) { return (wq[b >> 2] >> ((b & 2u) * 8u)) & 0xFFFFu; }
int read_i8(uint b) { return bitfieldExtract(int(read_u8(b)), 0, 8); }
float read_f16(uint b) { return unpackHalf2x16(read_u16(b)).x; }
float read_bf16(uint b) { return uintBitsToFloat(read_u16(b) << 16); }
// Four bytes at an even address: one or two word loads (buffers carry 16
// bytes of slack, so the second load never leaves the buffer).
uint read_u32(uint b) {
    const uint lo = wq[b >> 2];
    return (b & 2u) == 0u ? lo : (lo >> 16) | (wq[(b >> 2) + 1u] << 16);
}

#if defined(W_Q4_K) || defined(W_Q5_K)
// 6-bit scale and minimum of sub-block j of a Q4_K/Q5_K block (scales at sb).
void scale_min_k4(uint sb, uint j, out float sc, out float mn) {
    if (j < 4u) {
        sc = float(read_u8(sb + j) & 63u);
        mn = float(read_u8(sb + j + 4u) & 63u);
    } else {
        sc = float((read_u8(sb + j + 4u) & 0xFu) | ((read_u8(sb + j - 4u) >> 6) << 4));
        mn = float((read_u8(sb + j + 4u) >> 4) | ((read_u8(sb + j) >> 6) << 4));
    }
}
#endif

// v[0..32) = elements 32u .. 32u+31 of the row starting at byte `row`
// (row length k elements; plain formats zero-fill past it).
void dequant_unit(uint row, uint u, uint k, out float v[32]) {
#if defined(W_F32)
    [[unroll]] for (uint j = 0u; j < 32u; ++j) {
        const uint e = u * 32u + j;
        v[j] = e < k ? uintBitsToFloat(wq[(row >> 2) + e]) : 0.0;
    }
#elif defined(W_F16)
    [[unroll]] for (uint j = 0u; j < 32u; ++j) {
        const uint e = u * 32u + j;
        v[j] = e < k ? read_f16(row + 2u * e) : 0.0;
    }
#elif defined(W_BF16)
    [[unroll]] for (uint j = 0u; j < 32u; ++j) {
        const uint e = u * 32u + j;
        v[j] = e < k ? read_bf16(row + 2u * e) : 0.0;
    }
#elif defined(W_Q4_0)
    const uint b = row + u * 18u;
    const float d = read_f16(b);
    [[unroll]] for (uint w = 0u; w < 4u; ++w) {
        const uint q4 = read_u32(b + 2u + 4u * w);
        [[unroll]] for (uint i = 0u; i < 4u; ++i) {
            const uint q = (q4 >> (8u * i)) & 0xFFu;
            v[4u * w + i] = d * float(int(q & 0xFu) - 8);
            v[4u * w + i + 16u] = d * float(int(q >> 4) - 8);
        }
    }
#elif defined(W_Q4_1)
    const uint b = row + u * 20u;
    const float d = read_f16(b);
    const float m = read_f16(b + 2u);
    [[unroll]] for (uint w = 0u; w < 4u; ++w) {
        const uint q4 = read_u32(b + 4u + 4u * w);
        [[unroll]] for (uint i = 0u; i < 4u; ++i) {
            const uint q = (q4 >> (8u * i)) & 0xFFu;
            v[4u * w + i] = d * float(q & 0xFu) + m;
            v[4u * w + i + 16u] = d * float(q >> 4) + m;
        }
    }
#elif defined(W_Q5_0)
    const uint b = row + u * 22u;
    const float d = read_f16(b);
    const uint qh = read_u16(b + 2u) | (read_u16(b + 4u) << 16);
    [[unroll]] for (uint j = 0u; j < 16u; ++j) {
        const uint q = read_u8(b + 6u + j);
        v[j] = d * float(int((q & 0xFu) | (((qh >> j) & 1u) << 4)) - 16);
        v[j + 16u] = d * float(int((q >> 4) | (((qh >> (j + 16u)) & 1u) << 4)) - 16);
    }
#elif defined(W_Q5_1)
    const uint b = row + u * 24u;
    const float d = read_f16(b);
    const float m = read_f16(b + 2u);
    const uint qh = read_u16(b + 4u) | (read_u16(b + 6u) << 16);
    [[unroll]] for (uint j = 0u; j < 16u; ++j) {
        const uint q = read_u8(b + 8u + j);
        v[j] = d * float((q & 0xFu) | (((qh >> j) & 1u) << 4)) + m;
        v[j + 16u] = d * float((q >> 4) | (((qh >> (j + 16u)) & 1u) << 4)) + m;
    }
#elif defined(W_Q8_0)
    const uint b = row + u * 34u;
    const float d = read_f16(b);
    [[unroll]] for (uint j = 0u; j < 32u; j += 4u) {
        const uint q = read_u32(b + 2u + j);
        [[unroll]] for (uint i = 0u; i < 4u; ++i) v[j + i] = float(bitfieldExtract(int(q), int(8u * i), 8)) * d;
    }
#elif defined(W_Q4_K) || defined(W_Q5_K)
#if defined(W_Q4_K)
    const uint b = row + (u >> 3) * 144u;
    const uint qs = b + 16u;
#else
    const uint b = row + (u >> 3) * 176u;
    const uint qh = b + 16u;
    const uint qs = b + 48u;
#endif
    const uint s = u & 7u;  // sub-block: chunk s/2 of 32 bytes, low or high nibbles
    const float d = read_f16(b);
    const float dmin = read_f16(b + 2u);
    float sc, mn;
    scale_min_k4(b + 4u, s, sc, mn);
    const float ds = d * sc;
    const float ms = dmin * mn;
    const uint base = qs + 32u * (s >> 1);
    const uint shift = (s & 1u) * 4u;
    [[unroll]] for (uint w = 0u; w < 8u; ++w) {
        const uint q4 = read_u32(base + 4u * w) >> shift;
#if defined(W_Q5_K)
        const uint h4 = read_u32(qh + 4u * w) >> s;
#endif
        [[unroll]] for (uint i = 0u; i < 4u; ++i) {
            uint q = (q4 >> (8u * i)) & 0xFu;
#if defined(W_Q5_K)
            q |= ((h4 >> (8u * i)) & 1u) << 4;
#endif
            v[4u * w + i] = ds * float(q) - ms;
        }
    }
#elif defined(W_Q6_K)
    const uint b = row + (u >> 3) * 210u;
    const uint s = u & 7u;
    const uint half_ = s >> 2;  // 128-element half of the block
    const uint part = s & 3u;   // which 32 of the half
    const float d = read_f16(b + 208u);
    const uint ql = b + 64u * half_ + (part & 1u) * 32u;
    const uint qh = b + 128u + 32u * half_;
    const uint sc = b + 192u + 8u * half_ + 2u * part;
    const uint lshift = (part >> 1) * 4u;
    const uint hshift = 2u * part;
    const float d0 = d * float(read_i8(sc));
    const float d1 = d * float(read_i8(sc + 1u));
    [[unroll]] for (uint w = 0u; w < 8u; ++w) {
        const uint l4 = read_u32(ql + 4u * w) >> lshift;
        const uint h4 = read_u32(qh + 4u * w) >> hshift;
        [[unroll]] for (uint i = 0u; i < 4u; ++i) {
            const int q = int(((l4 >> (8u * i)) & 0xFu) | (((h4 >> (8u * i)) & 3u) << 4)) - 32;
            v[4u * w + i] = (w < 4u ? d0 : d1) * float(q);
        }
    }
#else
#error "define one weight format W_*"
#endif
}
