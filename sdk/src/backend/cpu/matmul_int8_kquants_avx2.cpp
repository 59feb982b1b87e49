// AVX2 int8-activation kernels for the K-quant weight formats (Q4_K, Q5_K,
// Q6_K) against Q8_K activations. Integer products are scaled by the 6/8-bit
// sub-block scales in int32 and converted to float once per 256-element
// super-block.
#include "backend/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "backend/cpu/matmul_avx2_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace avx2;

// sum_s mn[s] * (bsums[2s] + bsums[2s+1]) as 8 int32 lanes (to be summed).
static inline __m256i mins_dot_bsums(__m256i mins16, const int16_t* bsums) {
    return _mm256_madd_epi16(mins16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums)));
}

// mn[0..7] as 16 int16 with each value repeated twice (one per group of 16).
static inline __m256i widen_mins_pairs(const uint8_t* mn) {
    uint64_t m8;
    std::memcpy(&m8, mn, 8);
    const __m128i m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(m8)));
    return _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
}

// Q4_K and Q5_K share everything but the fifth bit.
template <bool kFiveBit>
struct Q45K {
    using Block = typename std::conditional<kFiveBit, BlockQ5_K, BlockQ4_K>::type;

    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const Block* w = reinterpret_cast<const Block*>(weight_row(job, r));
            const BlockQ8_K* x[NT];
            __m256 acc[NT];
            float corr[NT];
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = reinterpret_cast<const BlockQ8_K*>(act_row(job, t0 + j));
                acc[j] = _mm256_setzero_ps();
                corr[j] = 0.0f;
            }
            const __m256i low4 = _mm256_set1_epi8(0x0F);
            const int64_t nb = job.k_dim / kQK_K;
            for (int64_t i = 0; i < nb; ++i) {
                const Block& blk = w[i];
                prefetch_weights(job, &blk, static_cast<int>(sizeof(Block)));
                const ScalesMins sm = unpack_scales_mins(blk.scales);
                const __m256i mins16 = widen_mins_pairs(sm.mn);
                __m256i high = _mm256_setzero_si256();
                if constexpr (kFiveBit) high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(fifth_bits(blk)));
                __m256i isum[NT];
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) isum[j] = _mm256_setzero_si256();
                EKV_UNROLL
                for (int c = 0; c < 4; ++c) {  // 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high)
                    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * c));
                    __m256i lo = _mm256_and_si256(bytes, low4);
                    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
                    if constexpr (kFiveBit) {  // bit 2c / 2c+1 of each qh byte; `high` is pre-shifted by 2c
                        const __m256i one = _mm256_set1_epi8(1);
                        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(high, one), 4));
                        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 1), one), 4));
                        high = _mm256_srli_epi16(high, 2);
                    }
                    const __m256i s_lo = _mm256_set1_epi16(sm.sc[2 * c]);
                    const __m256i s_hi = _mm256_set1_epi16(sm.sc[2 * c + 1]);
                    EKV_UNROLL
                    for (int j = 0; j < NT; ++j) {
                        const int8_t* xq = x[j][i].qs + 64 * c;
                        const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
                        const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
                        isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xa), s_lo));
                        isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xb), s_hi));
                    }
                }
                const float d = half_to_float(blk.d);
                const float dmin = half_to_float(blk.dmin);
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const BlockQ8_K& xb = x[j][i];
                    acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
                    const int msum = hsum_epi32(mins_dot_bsums(mins16, xb.bsums));
                    corr[j] += (dmin * xb.d) * static_cast<float>(msum);
                }
            }
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) *out_at(job, t0 + j, r) = hsum_ps(acc[j]) - corr[j];
        }
    };

    static const uint8_t* fifth_bits(const BlockQ4_K&) { return nullptr; }
    static const uint8_t* fifth_bits(const BlockQ5_K& b) { return b.qh; }
};

// Q6_K: 6-bit unsigned quants (offset 32 folded in through the block sums),
// signed 8-bit scale per 16 elements.
template <int NT>
struct Q6KTile {
    static void run(const MatmulJob& job, int64_t r, int t0) {
        const BlockQ6_K* w = reinterpret_cast<const BlockQ6_K*>(weight_row(job, r));
        const BlockQ8_K* x[NT];
        __m256 acc[NT];
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = reinterpret_cast<const BlockQ8_K*>(act_row(job, t0 + j));
            acc[j] = _mm256_setzero_ps();
        }
        const __m256i low4 = _mm256_set1_epi8(0x0F);
        const __m256i low2 = _mm256_set1_epi8(0x03);
        const int64_t nb = job.k_dim / kQK_K;
        for (int64_t i = 0; i < nb; ++i) {
            const BlockQ6_K& blk = w[i];
            prefetch_weights(job, &blk, static_cast<int>(sizeof(BlockQ6_K)));
            const __m256i scales16 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)));
            __m256i isum[NT];
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                // -32 * sum_s sc[s] * bsums[s]: the offset of the unsigned quants.
                const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][i].bsums));
                isum[j] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(scales16, bs), 5));
            }
            EKV_UNROLL
            for (int half = 0; half < 2; ++half) {
                const uint8_t* ql = blk.ql + 64 * half;
                const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
                const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
                const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * half));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4));
                EKV_UNROLL
                for (int m = 0; m < 4; ++m) {
                    const int s = 8 * half + 2 * m;  // scales of elements [0,16) and [16,32) of this chunk
                    const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(blk.scales[s + 1]), _mm_set1_epi16(blk.scales[s]));
                    EKV_UNROLL
                    for (int j = 0; j < NT; ++j) {
                        const __m256i xq =
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][i].qs + 128 * half + 32 * m));
                        isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[m], xq), sc));
                    }
                }
            }
            const float d = half_to_float(blk.d);
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j][i].d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
            }
        }
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) *out_at(job, t0 + j, r) = hsum_ps(acc[j]);
    }
};

}  // namespace

RowsKernel avx2_int8_kquant_rows_kernel(DType t) {
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
RowsKernel avx2_int8_kquant_rows_kernel(DType) { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
