// AVX2 int8-activation kernel for Q6_K against Q8_K activations, and the
// K-quant dispatch (Q4_K and Q5_K: matmul_int8_q45k_rows8_avx2.cpp). Integer
// products are scaled by the 8-bit sub-block scales in int32 and converted to
// float once per 256-element super-block.
#include "backend/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "backend/cpu/matmul_avx2_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace avx2;

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
        case DType::Q4_K: case DType::Q5_K: return avx2_int8_q45k_rows_kernel(t);  // matmul_int8_q45k_rows8_avx2.cpp
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
