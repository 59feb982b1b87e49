// AVX2 decoders of the quantized weight formats into f32, for the
// f32-activation kernels (matmul_f32act_quant_avx2.cpp). A weight block is
// decoded 32 elements ("chunk") at a time into four vectors holding
//   w = scale * q          (q centred on zero for the 32-element formats)
// and, for the formats with offsets, one offset m per 32 elements, so that
// the dequantized weight is w + m. For every format but Q6_K the product
// scale * q is exact in f32 (a half scale, times a 6-bit K-quant sub-scale,
// times at most 8 quant bits, fits 24 bits), so the kernels compute the dot
// product of the exactly dequantized weights; Q6_K rounds once per weight.
// The GEMV and the GEMM paths call the same decoders, so they see the same
// bits. Include only from files compiled with -mavx2 -mfma -mf16c.
#pragma once
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cpu/matmul_avx2_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace avx2 {

static inline __m256 broadcast_half(uint16_t h) {
    return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Integers become floats without a conversion instruction: the bits
// kMagicBits + v are the float kMagic + v for |v| < 2^22 (the spacing of
// floats in [2^23, 2^24) is 1), and scale * v = fma(kMagic + v, scale,
// -kMagic * scale) exactly wherever scale * v and kMagic * scale (a scale
// of at most 21 significant bits times 3 * 2^22) are exact: the FMA rounds
// only the exact difference, which is representable. An integer add (more
// vector units run it) replaces the int-to-float conversion; the values,
// and so every result, are the same as converting and multiplying
// (measured: Q5_0/Q5_1 GEMVs 1.15x, the others within noise).
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
constexpr int32_t kMagicBits = 0x4B400000;

static inline __m256 plus_magic(__m256i v, int32_t bias) {
    return _mm256_castsi256_ps(_mm256_add_epi32(v, _mm256_set1_epi32(kMagicBits + bias)));
}

// 32 signed bytes -> 4 x 8 floats times d (exact: |q| < 2^8, d a half;
// c = -kMagic * d). Sign-extends from memory: cheaper than extracting
// quarters of a register.
static inline void s8x32_times(const int8_t* q, __m256 d, __m256 c, __m256 w[4]) {
    EKV_UNROLL
    for (int k = 0; k < 4; ++k) {
        const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * k)));
        w[k] = _mm256_fmadd_ps(plus_magic(v, 0), d, c);
    }
}

// ---- 32-element formats: one chunk per block -----------------------------
// Prep holds the block's scale d broadcast and c = -kMagic * d (exact: 3 *
// 2^22 times a half): the decoders compute d * (q - center) as
// fma(kMagic + q - center, d, c), exact as well (kMagic above).
// The GEMV converts the scales of 8 blocks at once (group_halves,
// group_scales) instead of calling prepare().
struct Prep32 {
    __m256 d;
    __m256 c;
};

static inline void prepare32(uint16_t d, Prep32* p) {
    p->d = broadcast_half(d);
    p->c = _mm256_mul_ps(p->d, _mm256_set1_ps(-kMagic));
}

// The two halves at the start of each of the blocks w[0..8) (d, and m or
// the first quant bytes) as floats: d0..d7 into *d, the second ones into *m.
// 32-bit loads and in-lane shuffles (8 two-byte stores and one wide load
// would stall on store forwarding).
template <class Block>
static inline void group_halves(const Block* w, __m256* d, __m256* m) {
    auto word = [](const Block& b) {
        return _mm_cvtsi32_si128(static_cast<int>(load_u32(reinterpret_cast<const uint8_t*>(&b))));
    };
    const __m128i p01 = _mm_unpacklo_epi32(word(w[0]), word(w[1]));
    const __m128i p23 = _mm_unpacklo_epi32(word(w[2]), word(w[3]));
    const __m128i p45 = _mm_unpacklo_epi32(word(w[4]), word(w[5]));
    const __m128i p67 = _mm_unpacklo_epi32(word(w[6]), word(w[7]));
    // Lanes [p0 p1 p4 p5] and [p2 p3 p6 p7] widen to floats that one in-lane
    // shuffle turns into d0..d7 (and m0..m7).
    const __m256 a = _mm256_cvtph_ps(_mm_unpacklo_epi64(p01, p45));
    const __m256 b = _mm256_cvtph_ps(_mm_unpacklo_epi64(p23, p67));
    *d = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    *m = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

// The scales (first halves) of the blocks w[0..8) as floats, for the
// formats without offsets: gathered by scalar loads into two 64-bit words
// (integer units, idle in these kernels) and widened by one conversion.
template <class Block>
static inline __m256 group_scales(const Block* w) {
    auto half = [](const Block& b) {
        uint16_t h;
        std::memcpy(&h, &b, 2);
        return static_cast<uint64_t>(h);
    };
    const uint64_t lo = half(w[0]) | half(w[1]) << 16 | half(w[2]) << 32 | half(w[3]) << 48;
    const uint64_t hi = half(w[4]) | half(w[5]) << 16 | half(w[6]) << 32 | half(w[7]) << 48;
    return _mm256_cvtph_ps(_mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo)));
}

// Q4_0/Q4_1 nibbles minus 8 as floats times d (c = -kMagic d): element
// j < 16 is the low nibble of qs[j], j >= 16 the high nibble of qs[j - 16].
static inline void nibbles_times(const uint8_t* qs, __m256 d, __m256 c, __m256 w[4]) {
    const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs)));
    const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8)));
    const __m256i low4 = _mm256_set1_epi32(0x0F);
    w[0] = _mm256_fmadd_ps(plus_magic(_mm256_and_si256(b0, low4), -8), d, c);
    w[1] = _mm256_fmadd_ps(plus_magic(_mm256_and_si256(b1, low4), -8), d, c);
    w[2] = _mm256_fmadd_ps(plus_magic(_mm256_srli_epi32(b0, 4), -8), d, c);
    w[3] = _mm256_fmadd_ps(plus_magic(_mm256_srli_epi32(b1, 4), -8), d, c);
}

// Offset of Q4_1/Q5_1 with centred quants: m + center * d (exact: both are
// halves within a few binades of each other).
static inline float centred_offset(uint16_t d, uint16_t m, float center) {
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(d | (static_cast<uint32_t>(m) << 16))));
    return _mm_cvtss_f32(_mm_fmadd_ss(dm, _mm_set_ss(center), _mm_movehdup_ps(dm)));
}

// Byte v of the fifth bits -> 8 lanes holding the bits of kMagic - 16 plus
// 16 * bit k of v (low nibble zero): one load and OR per 8 elements give
// the float kMagic + q - 16, no spreading of bits in registers, no
// conversion.
struct FifthBitTable {
    alignas(32) int32_t lanes[256][8];
    constexpr FifthBitTable() : lanes() {
        for (int v = 0; v < 256; ++v) {
            for (int k = 0; k < 8; ++k) lanes[v][k] = kMagicBits - 16 + ((v >> k) & 1 ? 16 : 0);
        }
    }
};
static constexpr FifthBitTable kFifthBits{};

// Q5_0/Q5_1 quants (nibble as Q4_0, bit j of qh as bit 4 of element j)
// minus 16 as floats times d (c = -16 d).
static inline void q5_times(const uint8_t* qs, const uint8_t* qh, __m256 d, __m256 c, __m256 w[4]) {
    const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs)));
    const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8)));
    const __m256i low4 = _mm256_set1_epi32(0x0F);
    const __m256i nib[4] = {_mm256_and_si256(b0, low4), _mm256_and_si256(b1, low4), _mm256_srli_epi32(b0, 4),
                            _mm256_srli_epi32(b1, 4)};
    EKV_UNROLL
    for (int k = 0; k < 4; ++k) {
        const __m256i high = _mm256_load_si256(reinterpret_cast<const __m256i*>(kFifthBits.lanes[qh[k]]));
        w[k] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_or_si256(nib[k], high)), d, c);
    }
}

struct DecQ4_0 {
    using Block = BlockQ4_0;
    using Prep = Prep32;
    static constexpr int kChunks = 1;
    static constexpr bool kOffset = false;
    static void prepare(const Block& b, Prep* p) { prepare32(b.d, p); }
    static void chunk(const Block& b, const Prep& p, int, __m256 w[4]) {
        nibbles_times(b.qs, p.d, p.c, w);
    }
    static void offsets(const Block&, float*) {}
};

struct DecQ4_1 {
    using Block = BlockQ4_1;
    using Prep = Prep32;
    static constexpr int kChunks = 1;
    static constexpr bool kOffset = true;
    static void prepare(const Block& b, Prep* p) { prepare32(b.d, p); }
    static void chunk(const Block& b, const Prep& p, int, __m256 w[4]) {
        nibbles_times(b.qs, p.d, p.c, w);
    }
    static constexpr float kCenter = 8.0f;
    static void offsets(const Block& b, float* m) { m[0] = centred_offset(b.d, b.m, kCenter); }
};

struct DecQ5_0 {
    using Block = BlockQ5_0;
    using Prep = Prep32;
    static constexpr int kChunks = 1;
    static constexpr bool kOffset = false;
    static void prepare(const Block& b, Prep* p) { prepare32(b.d, p); }
    static void chunk(const Block& b, const Prep& p, int, __m256 w[4]) {
        q5_times(b.qs, b.qh, p.d, p.c, w);
    }
    static void offsets(const Block&, float*) {}
};

struct DecQ5_1 {
    using Block = BlockQ5_1;
    using Prep = Prep32;
    static constexpr int kChunks = 1;
    static constexpr bool kOffset = true;
    static void prepare(const Block& b, Prep* p) { prepare32(b.d, p); }
    static void chunk(const Block& b, const Prep& p, int, __m256 w[4]) {
        q5_times(b.qs, b.qh, p.d, p.c, w);
    }
    static constexpr float kCenter = 16.0f;
    static void offsets(const Block& b, float* m) { m[0] = centred_offset(b.d, b.m, kCenter); }
};

struct DecQ8_0 {
    using Block = BlockQ8_0;
    using Prep = Prep32;
    static constexpr int kChunks = 1;
    static constexpr bool kOffset = false;
    static void prepare(const Block& b, Prep* p) { prepare32(b.d, p); }
    static void chunk(const Block& b, const Prep& p, int, __m256 w[4]) { s8x32_times(b.qs, p.d, p.c, w); }
    static void offsets(const Block&, float*) {}
};

// ---- K-quants: a super-block of 8 chunks, unpacked once by prepare() -----

// Q4_K/Q5_K quants -> 256 bytes in element order: sub-block 2c is the low
// nibbles of qs[32c..32c+32), 2c+1 the high ones; Q5_K adds bit s of qh[l]
// as bit 4 of element l of sub-block s.
static inline void unpack_q45k(const uint8_t* qs, const uint8_t* qh, uint8_t* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i one = _mm256_set1_epi8(1);
    __m256i high = qh ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)) : _mm256_setzero_si256();
    EKV_UNROLL
    for (int c = 0; c < 4; ++c) {
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(bytes, low4), _mm256_slli_epi16(_mm256_and_si256(high, one), 4));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4),
                                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 1), one), 4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c), lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c + 32), hi);
        high = _mm256_srli_epi16(high, 2);
    }
}

struct KPrep {
    alignas(32) uint8_t q[kQK_K];  // quants in element order (Q6_K: q - 32 as int8)
    alignas(32) float scale[16];   // d * sub-block scale (Q4_K/Q5_K: 8 used)
    alignas(32) float neg_magic_scale[8];  // Q4_K/Q5_K: -kMagic * scale
};

// Q4_K and Q5_K: w = (d * sc[s]) * q, offset m[s] = -(dmin * mn[s]).
template <bool kFiveBit>
struct DecQ45K {
    using Block = typename std::conditional<kFiveBit, BlockQ5_K, BlockQ4_K>::type;
    using Prep = KPrep;
    static constexpr int kChunks = 8;
    static constexpr bool kOffset = true;
    static const uint8_t* fifth_bits(const BlockQ4_K&) { return nullptr; }
    static const uint8_t* fifth_bits(const BlockQ5_K& b) { return b.qh; }
    static void prepare(const Block& b, Prep* p) {
        const ScalesMins sm = unpack_scales_mins(b.scales);
        const __m256 scale = _mm256_mul_ps(broadcast_half(b.d), u8x8_to_ps(sm.sc));
        _mm256_store_ps(p->scale, scale);
        _mm256_store_ps(p->neg_magic_scale, _mm256_mul_ps(scale, _mm256_set1_ps(-kMagic)));  // 19 bits: exact
        unpack_q45k(b.qs, fifth_bits(b), p->q);
    }
    static void chunk(const Block&, const Prep& p, int s, __m256 w[4]) {
        const __m256 sc = _mm256_broadcast_ss(p.scale + s);
        const __m256 neg = _mm256_broadcast_ss(p.neg_magic_scale + s);
        EKV_UNROLL
        for (int c = 0; c < 4; ++c) {
            const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p.q + 32 * s + 8 * c)));
            w[c] = _mm256_fmadd_ps(plus_magic(q, 0), sc, neg);
        }
    }
    static void offsets(const Block& b, float* m) {
        const ScalesMins sm = unpack_scales_mins(b.scales);
        const __m256 mn = _mm256_mul_ps(broadcast_half(b.dmin), u8x8_to_ps(sm.mn));
        _mm256_storeu_ps(m, _mm256_sub_ps(_mm256_setzero_ps(), mn));
    }
};

// Q6_K: 16 sub-blocks of 16, w = (d * scales[s]) * (q - 32), no offset.
struct DecQ6K {
    using Block = BlockQ6_K;
    using Prep = KPrep;
    static constexpr int kChunks = 8;
    static constexpr bool kOffset = false;
    static void prepare(const Block& b, Prep* p) {
        const __m256i low4 = _mm256_set1_epi8(0x0F);
        const __m256i low2 = _mm256_set1_epi8(0x03);
        const __m256i bias = _mm256_set1_epi8(32);
        EKV_UNROLL
        for (int half = 0; half < 2; ++half) {  // the interleave of dequantize_row's Q6_K decoder
            const uint8_t* ql = b.ql + 64 * half;
            const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
            const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * half));
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4)),
            };
            EKV_UNROLL
            for (int m = 0; m < 4; ++m) {
                _mm256_store_si256(reinterpret_cast<__m256i*>(p->q + 128 * half + 32 * m), _mm256_sub_epi8(q[m], bias));
            }
        }
        const __m256 d = broadcast_half(b.d);
        _mm256_store_ps(p->scale, _mm256_mul_ps(d, s8x8_to_ps(b.scales)));
        _mm256_store_ps(p->scale + 8, _mm256_mul_ps(d, s8x8_to_ps(b.scales + 8)));
    }
    static void chunk(const Block&, const Prep& p, int s, __m256 w[4]) {
        const __m256 sc0 = _mm256_broadcast_ss(p.scale + 2 * s);
        const __m256 sc1 = _mm256_broadcast_ss(p.scale + 2 * s + 1);
        const uint8_t* q = p.q + 32 * s;
        w[0] = _mm256_mul_ps(s8x8_to_ps(q), sc0);
        w[1] = _mm256_mul_ps(s8x8_to_ps(q + 8), sc0);
        w[2] = _mm256_mul_ps(s8x8_to_ps(q + 16), sc1);
        w[3] = _mm256_mul_ps(s8x8_to_ps(q + 24), sc1);
    }
    static void offsets(const Block&, float*) {}
};

}  // namespace avx2
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
