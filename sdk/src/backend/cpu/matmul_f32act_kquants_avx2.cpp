// AVX2 f32-activation kernels for the K-quant weight formats (Q4_K, Q5_K,
// Q6_K). Per 256-element super-block the quants are unpacked once into a
// stack buffer of bytes in element order and the sub-block scales (and mins)
// into floats; each sub-block's partial sum q . x is computed in f32 and
// scaled by its sub-block scale. Same reproducibility rules as
// matmul_f32act_avx2.cpp: every token of a tile runs a lone token's
// operation sequence, and no multiply and add are left for GCC to contract.
#include "backend/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <type_traits>

#include "backend/cpu/matmul_avx2_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace avx2;

static inline __m256 broadcast_half(uint16_t h) {
    return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Q4_K/Q5_K quants of one super-block -> 256 bytes in element order:
// sub-block 2c is the low nibbles of qs[32c..32c+32), sub-block 2c+1 the high
// ones; Q5_K adds bit s of qh[l] as bit 4 of element l of sub-block s.
static inline void unpack_q45k(const BlockQ4_K& b, uint8_t* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    EKV_UNROLL
    for (int c = 0; c < 4; ++c) {
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c), _mm256_and_si256(bytes, low4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c + 32),
                           _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4));
    }
}

static inline void unpack_q45k(const BlockQ5_K& b, uint8_t* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i one = _mm256_set1_epi8(1);
    __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));  // shifted right by 2c below
    EKV_UNROLL
    for (int c = 0; c < 4; ++c) {
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(bytes, low4),
                                           _mm256_slli_epi16(_mm256_and_si256(high, one), 4));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4),
                                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 1), one), 4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c), lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c + 32), hi);
        high = _mm256_srli_epi16(high, 2);
    }
}

// Q4_K and Q5_K: 8 sub-blocks of 32, w = (d * sc[s]) * q - (dmin * mn[s]).
template <bool kFiveBit>
struct Q45K {
    using Block = typename std::conditional<kFiveBit, BlockQ5_K, BlockQ4_K>::type;

    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const Block* w = reinterpret_cast<const Block*>(weight_row(job, r));
            const int64_t nb = job.k_dim / kQK_K;
            const int64_t n32 = job.k_dim / kQK;
            const float* x[NT];
            const float* xsum[NT];  // per-32 sums of x
            __m256 acc[NT];         // sum of (d * sc) * (q . x), 8 lanes
            __m256 corr[NT];        // -sum of (dmin * mn) * sum(x), one lane per sub-block position
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = token_x(job, t0 + j);
                xsum[j] = job.block_sums + static_cast<size_t>(t0 + j) * static_cast<size_t>(n32);
                acc[j] = _mm256_setzero_ps();
                corr[j] = _mm256_setzero_ps();
            }
            alignas(32) uint8_t q8[kQK_K];
            alignas(32) float scale[8];
            for (int64_t i = 0; i < nb; ++i) {
                const Block& blk = w[i];
                prefetch_weights(job, &blk, static_cast<int>(sizeof(Block)));
                const ScalesMins sm = unpack_scales_mins(blk.scales);
                _mm256_store_ps(scale, _mm256_mul_ps(broadcast_half(blk.d), u8x8_to_ps(sm.sc)));
                const __m256 min = _mm256_mul_ps(broadcast_half(blk.dmin), u8x8_to_ps(sm.mn));
                unpack_q45k(blk, q8);
                // The mins of all 8 sub-blocks against their 8 activation sums at once.
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) corr[j] = _mm256_fnmadd_ps(min, _mm256_loadu_ps(xsum[j] + 8 * i), corr[j]);
                for (int s = 0; s < 8; ++s) {
                    __m256 q[4];
                    EKV_UNROLL
                    for (int c = 0; c < 4; ++c) q[c] = u8x8_to_ps(q8 + 32 * s + 8 * c);
                    const __m256 sc = _mm256_broadcast_ss(scale + s);
                    EKV_UNROLL
                    for (int j = 0; j < NT; ++j) {
                        const float* xb = x[j] + kQK_K * i + kQK * s;
                        __m256 p = _mm256_mul_ps(q[0], _mm256_loadu_ps(xb));
                        p = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xb + 8), p);
                        p = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xb + 16), p);
                        p = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xb + 24), p);
                        acc[j] = _mm256_fmadd_ps(sc, p, acc[j]);
                    }
                }
            }
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) *out_at(job, t0 + j, r) = hsum_ps(acc[j]) + hsum_ps(corr[j]);
        }
    };
};

// Q6_K quants of one super-block -> 256 signed bytes (q - 32) in element
// order (the interleave of dequantize_row's Q6_K decoder).
static inline void unpack_q6k(const BlockQ6_K& b, int8_t* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i low2 = _mm256_set1_epi8(0x03);
    const __m256i bias = _mm256_set1_epi8(32);
    EKV_UNROLL
    for (int half = 0; half < 2; ++half) {
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
            _mm256_store_si256(reinterpret_cast<__m256i*>(out + 128 * half + 32 * m), _mm256_sub_epi8(q[m], bias));
        }
    }
}

// Q6_K: 16 sub-blocks of 16, w = (d * scales[s]) * (q - 32). Even and odd
// sub-blocks accumulate separately (two FMA chains per token).
template <int NT>
struct Q6KTile {
    static void run(const MatmulJob& job, int64_t r, int t0) {
        const BlockQ6_K* w = reinterpret_cast<const BlockQ6_K*>(weight_row(job, r));
        const int64_t nb = job.k_dim / kQK_K;
        const float* x[NT];
        __m256 acc_even[NT], acc_odd[NT];
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = token_x(job, t0 + j);
            acc_even[j] = _mm256_setzero_ps();
            acc_odd[j] = _mm256_setzero_ps();
        }
        alignas(32) int8_t q8[kQK_K];
        alignas(32) float scale[16];
        for (int64_t i = 0; i < nb; ++i) {
            const BlockQ6_K& blk = w[i];
            prefetch_weights(job, &blk, static_cast<int>(sizeof(BlockQ6_K)));
            const __m256 d = broadcast_half(blk.d);
            _mm256_store_ps(scale, _mm256_mul_ps(d, s8x8_to_ps(blk.scales)));
            _mm256_store_ps(scale + 8, _mm256_mul_ps(d, s8x8_to_ps(blk.scales + 8)));
            unpack_q6k(blk, q8);
            for (int s = 0; s < 16; s += 2) {  // two sub-blocks of 16 = 32 elements per step
                __m256 q[4];
                EKV_UNROLL
                for (int c = 0; c < 4; ++c) q[c] = s8x8_to_ps(q8 + 16 * s + 8 * c);
                const __m256 sc0 = _mm256_broadcast_ss(scale + s);
                const __m256 sc1 = _mm256_broadcast_ss(scale + s + 1);
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const float* xb = x[j] + kQK_K * i + 16 * s;
                    __m256 p0 = _mm256_mul_ps(q[0], _mm256_loadu_ps(xb));
                    p0 = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xb + 8), p0);
                    __m256 p1 = _mm256_mul_ps(q[2], _mm256_loadu_ps(xb + 16));
                    p1 = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xb + 24), p1);
                    acc_even[j] = _mm256_fmadd_ps(sc0, p0, acc_even[j]);
                    acc_odd[j] = _mm256_fmadd_ps(sc1, p1, acc_odd[j]);
                }
            }
        }
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) *out_at(job, t0 + j, r) = hsum_ps(_mm256_add_ps(acc_even[j], acc_odd[j]));
    }
};

}  // namespace

RowsKernel avx2_f32act_kquant_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_K: return drive_tiles<Q45K<false>::Tile>;
        case DType::Q5_K: return drive_tiles<Q45K<true>::Tile>;
        case DType::Q6_K: return drive_tiles<Q6KTile>;
        default: return nullptr;
    }
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#else  // built without AVX2 flags (or not x86)

namespace ekv {
namespace cpu {
namespace detail {
RowsKernel avx2_f32act_kquant_rows_kernel(DType) { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
