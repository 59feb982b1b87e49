// The int8-activation path's arithmetic, shared by the CUDA kernels and the
// host test: activation quantizers producing the CPU's bytes
// (core/quant.cpp's quantize_row_q8_1f / quantize_row_q8_k: f32 scale,
// round half to even) and the integer block dot products of
// backend/cpu/matmul_int8_scalar.cpp (dp4a on the device, the same sums
// by plain code on the host). row_dot() runs a whole row in the CPU's order;
// the host test compares it bit for bit with the CPU's scalar int8 matmul.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "gguf_blocks.cuh"

namespace ekv::cuda::q8 {

EKV_HD float abs_f(float v) { return v < 0.0f ? -v : (v == 0.0f ? 0.0f : v); }
// fmax semantics for the non-NaN inputs fabs gives (NaN input: the other one).
EKV_HD float max_f(float a, float b) { return a >= b || b != b ? a : b; }

EKV_HD float round_even(float v) {
#if defined(__CUDA_ARCH__)
    return rintf(v);
#else
    return std::nearbyint(v);
#endif
}

// core/quant.cpp's to_i8: saturates instead of being undefined.
EKV_HD int8_t to_i8(float r) {
    if (r >= -128.0f && r <= 127.0f) return static_cast<int8_t>(r);
    return static_cast<int8_t>(r > 0.0f ? 127 : -128);
}

// Sum of the four signed-byte products plus c.
EKV_HD int dot4(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
    return __dp4a(a, b, c);
#else
    for (int k = 0; k < 4; ++k)
        c += static_cast<int>(static_cast<int8_t>(a >> (8 * k))) * static_cast<int>(static_cast<int8_t>(b >> (8 * k)));
    return c;
#endif
}

// Four activation bytes at a 4-byte aligned address.
EKV_HD int load_i32(const int8_t* p) {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const int*>(p);
#else
    int v;
    std::memcpy(&v, p, 4);
    return v;
#endif
}

// ---- activation quantizers (one block per call) -----------------------------

EKV_HD void quantize_q8_1f(const float* x, BlockQ8_1F* y) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = max_f(amax, abs_f(x[j]));
    const float d = blocks::div_rn(amax, 127.0f);
    const float id = d != 0.0f ? blocks::div_rn(1.0f, d) : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
        const int8_t q = to_i8(round_even(blocks::mul_rn(x[j], id)));
        y->qs[j] = q;
        sum += q;
    }
    y->d = d;
    y->s = blocks::mul_rn(d, static_cast<float>(sum));
}

EKV_HD void quantize_q8_k(const float* x, BlockQ8_K* y) {
    float amax = 0.0f;
    for (int j = 0; j < kQK_K; ++j) amax = max_f(amax, abs_f(x[j]));
    const float d = blocks::div_rn(amax, 127.0f);
    const float id = d != 0.0f ? blocks::div_rn(1.0f, d) : 0.0f;
    for (int g = 0; g < kQK_K / 16; ++g) {
        int sum = 0;
        for (int j = 16 * g; j < 16 * g + 16; ++j) {
            const int8_t q = to_i8(round_even(blocks::mul_rn(x[j], id)));
            y->qs[j] = q;
            sum += q;
        }
        y->bsums[g] = static_cast<int16_t>(sum);
    }
    y->d = d;
}

// ---- 32-element weight blocks ------------------------------------------------
//
// unpack(block, w, &d, &o): w[i] packs elements 4i .. 4i+3 as bytes
// (unsigned quants, or signed for Q8_0); the block contributes
// (d * x.d) * isum(w, x.qs) + o * x.s.

// Bits 0..3 of `bits` moved to bit 4 of bytes 0..3.
EKV_HD uint32_t spread4(uint32_t bits) {
    return ((bits & 1u) << 4) | ((bits & 2u) << 11) | ((bits & 4u) << 18) | ((bits & 8u) << 25);
}

EKV_HD void unpack_nibbles(const uint8_t* qs, int* w) {
    EKV_UNROLL
    for (int i = 0; i < 4; ++i) {
        const uint32_t v = blocks::load_u32(qs + 4 * i);
        w[i] = static_cast<int>(v & 0x0F0F0F0Fu);
        w[i + 4] = static_cast<int>((v >> 4) & 0x0F0F0F0Fu);
    }
}

EKV_HD void add_high_bits(const uint8_t* qh4, int* w) {
    const uint32_t qh = blocks::load_u32(qh4);
    EKV_UNROLL
    for (int i = 0; i < 8; ++i) w[i] |= static_cast<int>(spread4((qh >> (4 * i)) & 0xFu));
}

template <DType T>
struct Block32;

template <>
struct Block32<DType::Q4_0> {
    static constexpr int kBytes = sizeof(BlockQ4_0);
    static EKV_HD void unpack(const uint8_t* p, int* w, float* d, float* o) {
        const BlockQ4_0& b = *reinterpret_cast<const BlockQ4_0*>(p);
        unpack_nibbles(b.qs, w);
        *d = blocks::f16_to_f32(b.d);
        *o = blocks::mul_rn(-8.0f, *d);
    }
};
template <>
struct Block32<DType::Q4_1> {
    static constexpr int kBytes = sizeof(BlockQ4_1);
    static EKV_HD void unpack(const uint8_t* p, int* w, float* d, float* o) {
        const BlockQ4_1& b = *reinterpret_cast<const BlockQ4_1*>(p);
        unpack_nibbles(b.qs, w);
        *d = blocks::f16_to_f32(b.d);
        *o = blocks::f16_to_f32(b.m);
    }
};
template <>
struct Block32<DType::Q5_0> {
    static constexpr int kBytes = sizeof(BlockQ5_0);
    static EKV_HD void unpack(const uint8_t* p, int* w, float* d, float* o) {
        const BlockQ5_0& b = *reinterpret_cast<const BlockQ5_0*>(p);
        unpack_nibbles(b.qs, w);
        add_high_bits(b.qh, w);
        *d = blocks::f16_to_f32(b.d);
        *o = blocks::mul_rn(-16.0f, *d);
    }
};
template <>
struct Block32<DType::Q5_1> {
    static constexpr int kBytes = sizeof(BlockQ5_1);
    static EKV_HD void unpack(const uint8_t* p, int* w, float* d, float* o) {
        const BlockQ5_1& b = *reinterpret_cast<const BlockQ5_1*>(p);
        unpack_nibbles(b.qs, w);
        add_high_bits(b.qh, w);
        *d = blocks::f16_to_f32(b.d);
        *o = blocks::f16_to_f32(b.m);
    }
};
template <>
struct Block32<DType::Q8_0> {
    static constexpr int kBytes = sizeof(BlockQ8_0);
    static EKV_HD void unpack(const uint8_t* p, int* w, float* d, float* o) {
        const BlockQ8_0& b = *reinterpret_cast<const BlockQ8_0*>(p);
        EKV_UNROLL
        for (int i = 0; i < 8; ++i) w[i] = static_cast<int>(blocks::load_u32(reinterpret_cast<const uint8_t*>(b.qs) + 4 * i));
        *d = blocks::f16_to_f32(b.d);
        *o = 0.0f;
    }
};

EKV_HD int isum32(const int* w, const BlockQ8_1F& x) {
    int s = 0;
    EKV_UNROLL
    for (int i = 0; i < 8; ++i) s = dot4(w[i], load_i32(x.qs + 4 * i), s);
    return s;
}

// ---- K-quant super-blocks: integer parts of one 32-element slice -------------
//
// Slice s (0..7) of a super-block gives (isum, msum) parts; over the 8
// slices: Q4_K/Q5_K add (d * x.d) * isum and subtract (dmin * x.d) * msum;
// Q6_K adds (d * x.d) * (isum - 32 * msum).

template <bool kFifthBit, class Block>
EKV_HD void k45_slice(const Block& b, const BlockQ8_K& x, int s, int* isum, int* msum) {
    int sc, mn;
    blocks::scale_min_k4(b.scales, s, &sc, &mn);
    const uint8_t* qs = b.qs + 32 * (s / 2);
    const int shift = 4 * (s & 1);
    int sub = 0;
    EKV_UNROLL
    for (int i = 0; i < 8; ++i) {
        uint32_t q = (blocks::load_u32(qs + 4 * i) >> shift) & 0x0F0F0F0Fu;
        if constexpr (kFifthBit) {
            const uint32_t h = blocks::load_u32(reinterpret_cast<const uint8_t*>(b.qh) + 4 * i);
            q |= ((h >> s) & 0x01010101u) << 4;
        }
        sub = dot4(static_cast<int>(q), load_i32(x.qs + 32 * s + 4 * i), sub);
    }
    *isum = sc * sub;
    *msum = mn * (x.bsums[2 * s] + x.bsums[2 * s + 1]);
}

// Slice s = elements 32s .. 32s + 31 = sub-blocks 2s and 2s + 1 of 16.
EKV_HD void q6k_slice(const BlockQ6_K& b, const BlockQ8_K& x, int s, int* isum, int* msum) {
    const int half = s / 4, k = s % 4;
    const uint8_t* ql = b.ql + 64 * half + 32 * (k & 1);
    const uint8_t* qh = b.qh + 32 * half;
    const int lo_shift = 4 * (k >> 1), hi_shift = 2 * k;
    int parts[2] = {0, 0};
    EKV_UNROLL
    for (int i = 0; i < 8; ++i) {
        const uint32_t lo = (blocks::load_u32(ql + 4 * i) >> lo_shift) & 0x0F0F0F0Fu;
        const uint32_t hi = ((blocks::load_u32(qh + 4 * i) >> hi_shift) & 0x03030303u) << 4;
        parts[i / 4] = dot4(static_cast<int>(lo | hi), load_i32(x.qs + 32 * s + 4 * i), parts[i / 4]);
    }
    const int sc0 = b.scales[2 * s], sc1 = b.scales[2 * s + 1];
    *isum = sc0 * parts[0] + sc1 * parts[1];
    *msum = sc0 * x.bsums[2 * s] + sc1 * x.bsums[2 * s + 1];
}

template <DType T>
struct BlockK;
template <>
struct BlockK<DType::Q4_K> {
    static constexpr int kBytes = sizeof(BlockQ4_K);
    static EKV_HD void slice(const uint8_t* p, const BlockQ8_K& x, int s, int* isum, int* msum) {
        k45_slice<false>(*reinterpret_cast<const BlockQ4_K*>(p), x, s, isum, msum);
    }
    // The super-block's float contribution from its summed integer parts.
    static EKV_HD void finish(const uint8_t* p, float xd, int isum, int msum, float* acc, float* corr) {
        const BlockQ4_K& b = *reinterpret_cast<const BlockQ4_K*>(p);
        *acc += blocks::mul_rn(blocks::mul_rn(blocks::f16_to_f32(b.d), xd), static_cast<float>(isum));
        *corr += blocks::mul_rn(blocks::mul_rn(blocks::f16_to_f32(b.dmin), xd), static_cast<float>(msum));
    }
};
template <>
struct BlockK<DType::Q5_K> {
    static constexpr int kBytes = sizeof(BlockQ5_K);
    static EKV_HD void slice(const uint8_t* p, const BlockQ8_K& x, int s, int* isum, int* msum) {
        k45_slice<true>(*reinterpret_cast<const BlockQ5_K*>(p), x, s, isum, msum);
    }
    static EKV_HD void finish(const uint8_t* p, float xd, int isum, int msum, float* acc, float* corr) {
        const BlockQ5_K& b = *reinterpret_cast<const BlockQ5_K*>(p);
        *acc += blocks::mul_rn(blocks::mul_rn(blocks::f16_to_f32(b.d), xd), static_cast<float>(isum));
        *corr += blocks::mul_rn(blocks::mul_rn(blocks::f16_to_f32(b.dmin), xd), static_cast<float>(msum));
    }
};
template <>
struct BlockK<DType::Q6_K> {
    static constexpr int kBytes = sizeof(BlockQ6_K);
    static EKV_HD void slice(const uint8_t* p, const BlockQ8_K& x, int s, int* isum, int* msum) {
        q6k_slice(*reinterpret_cast<const BlockQ6_K*>(p), x, s, isum, msum);
    }
    static EKV_HD void finish(const uint8_t* p, float xd, int isum, int msum, float* acc, float* corr) {
        (void)corr;
        const BlockQ6_K& b = *reinterpret_cast<const BlockQ6_K*>(p);
        *acc += blocks::mul_rn(blocks::mul_rn(blocks::f16_to_f32(b.d), xd), static_cast<float>(isum - 32 * msum));
    }
};

// ---- whole rows in the CPU scalar kernel's order (host test reference) -------

template <DType T>
EKV_HD float row_dot32(const uint8_t* w, const BlockQ8_1F* x, int64_t nb) {
    float acc = 0.0f, corr = 0.0f;
    int q[8];
    for (int64_t b = 0; b < nb; ++b) {
        float d, o;
        Block32<T>::unpack(w + b * Block32<T>::kBytes, q, &d, &o);
        acc += blocks::mul_rn(blocks::mul_rn(d, x[b].d), static_cast<float>(isum32(q, x[b])));
        corr += blocks::mul_rn(o, x[b].s);
    }
    return acc + corr;
}

template <DType T>
EKV_HD float row_dot_k(const uint8_t* w, const BlockQ8_K* x, int64_t nb) {
    float acc = 0.0f, corr = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int isum = 0, msum = 0;
        for (int s = 0; s < 8; ++s) {
            int i, m;
            BlockK<T>::slice(w + b * BlockK<T>::kBytes, x[b], s, &i, &m);
            isum += i;
            msum += m;
        }
        BlockK<T>::finish(w + b * BlockK<T>::kBytes, x[b].d, isum, msum, &acc, &corr);
    }
    return acc - corr;
}

}  // namespace ekv::cuda::q8
