// AVX2 int8-activation kernels for Q4_K and Q5_K against Q8_K activations,
// eight rows at a time with one row per vector lane (matmul_rows8_avx2.h).
// For each (row, token) output, super-block by super-block in order:
//   isum = sum over the 8 sub-blocks of sc[s] * (their 32 integer products)
//   msum = sum over the 8 sub-blocks of mn[s] * (their 32 activations)
//   acc  = fma(d * d_x, float(isum), acc)
//   corr = fma(dmin * d_x, float(msum), corr)
// and y = acc - corr. The integer sums are exact, so the paths below agree
// bit for bit whatever the batch, token tile, row group or row split:
//  - GEMV (fewer than kGemmMinTokens tokens): each row's super-block decoded
//    in registers and applied to the tokens, then the eight rows' sums folded
//    into lanes by horizontal adds;
//  - GEMM: the group decoded once for the whole k into a per-thread panel,
//    transposed (lane i of vector c = row i's quants 4c..4c+3), with the
//    sub-block scales and mins laid out per lane, then swept by token tiles.
#include "backend/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "backend/cpu/matmul_rows8_avx2.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace avx2;

template <bool kFiveBit>
struct Q45Rows8 {
    using Block = typename std::conditional<kFiveBit, BlockQ5_K, BlockQ4_K>::type;

    // A row's super-block: sub-block s's 32 quants (at most 5 bits) in q[s].
    static inline void quants(const Block& blk, __m256i (&q)[8]) {
        const __m256i low4 = _mm256_set1_epi8(0x0F);
        __m256i high = _mm256_setzero_si256();
        if constexpr (kFiveBit) high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh));
        EKV_UNROLL
        for (int c = 0; c < 4; ++c) {  // 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high)
            const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * c));
            __m256i lo = _mm256_and_si256(bytes, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
            if constexpr (kFiveBit) {  // bits 2c, 2c+1 of each qh byte; `high` is pre-shifted by 2c
                const __m256i one = _mm256_set1_epi8(1);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(high, one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 1), one), 4));
                high = _mm256_srli_epi16(high, 2);
            }
            q[2 * c] = lo;
            q[2 * c + 1] = hi;
        }
    }

    // mn[0..7] as 16 int16, each repeated twice (one per 16 activations).
    static inline __m256i mins_pairs(const uint8_t* mn) {
        uint64_t m8;
        std::memcpy(&m8, mn, 8);
        const __m128i m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(m8)));
        return _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
    }

    // A token's super-block sums applied to its acc and corr.
    static inline void apply(__m256i isum, __m256i msum, __m256 d, __m256 dmin, float xd, __m256* acc, __m256* corr) {
        const __m256 dx = _mm256_set1_ps(xd);
        *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(isum), *acc);
        *corr = _mm256_fmadd_ps(_mm256_mul_ps(dmin, dx), _mm256_cvtepi32_ps(msum), *corr);
    }

    template <int NT>
    static inline void start_tokens(const MatmulJob& job, int t0, const BlockQ8_K* (&x)[NT], __m256 (&acc)[NT],
                                    __m256 (&corr)[NT]) {
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = reinterpret_cast<const BlockQ8_K*>(act_row(job, t0 + j));
            acc[j] = _mm256_setzero_ps();
            corr[j] = _mm256_setzero_ps();
        }
    }

    template <int NT>
    static inline void store_tokens(const MatmulJob& job, int64_t r, int n, int t0, const __m256 (&acc)[NT],
                                    const __m256 (&corr)[NT]) {
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) store_lanes(job, r, n, t0 + j, _mm256_sub_ps(acc[j], corr[j]));
    }

    // ---- GEMV ---------------------------------------------------------------
    template <int NT>
    static void gemv_group(const MatmulJob& job, int64_t r, int n, int t0) {
        const Block* w[kLanes];
        group_rows(job, r, n, w);
        const BlockQ8_K* x[NT];
        __m256 acc[NT], corr[NT];
        start_tokens<NT>(job, t0, x, acc, corr);
        const char* ahead = reinterpret_cast<const char*>(w[0]) + prefetch_lead(job.w_row_bytes, n);
        const size_t slice = static_cast<size_t>(n) * sizeof(Block);
        const int64_t nb = job.k_dim / kQK_K;
        for (int64_t b = 0; b < nb; ++b) {
            prefetch_group_slice(ahead, b, slice);
            __m256i isum[NT][kLanes], msum[NT][kLanes];  // per row: 8 partial sums
            EKV_UNROLL
            for (int i = 0; i < kLanes; ++i) {
                const Block& blk = w[i][b];
                const ScalesMins sm = unpack_scales_mins(blk.scales);
                const __m256i mins16 = mins_pairs(sm.mn);
                __m256i q[8];
                quants(blk, q);
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const BlockQ8_K& xb = x[j][b];
                    __m256i s = _mm256_setzero_si256();
                    EKV_UNROLL
                    for (int k = 0; k < 8; ++k) {
                        const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs + 32 * k));
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xq), _mm256_set1_epi16(sm.sc[k])));
                    }
                    isum[j][i] = s;
                    msum[j][i] = _mm256_madd_epi16(mins16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums)));
                }
            }
            __m256 d, dmin;
            gather_half_pairs(w, b, &d, &dmin);
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) apply(fold_rows(isum[j]), fold_rows(msum[j]), d, dmin, x[j][b].d, &acc[j], &corr[j]);
        }
        store_tokens<NT>(job, r, n, t0, acc, corr);
    }

    static void gemv_all(const MatmulJob& job, int64_t r0, int64_t r1) {
        for_token_tiles<3>(job.ntok, [&](auto nt, int t0) {
            for_row_groups(r0, r1, [&](int64_t r, int n) { gemv_group<decltype(nt)::value>(job, r, n, t0); });
        });
    }

    // ---- GEMM ---------------------------------------------------------------
    // Panel per super-block: 64 transposed quant vectors (sub-block s's words
    // at 8 s), 8 scale vectors (lane i: row i's sc[s] as two int16), 4 min
    // vectors (lane i: row i's mn[2p], mn[2p+1]), then d and dmin (8 floats
    // each): kPanelVectors vectors.
    static constexpr int kPanelVectors = 64 + 8 + 4 + 2;

    static inline void decode_panel(const Block* const (&w)[kLanes], int64_t b, __m256i* p) {
        alignas(32) int16_t sc[8][kLanes][2];  // [s][row]: the scale twice
        alignas(32) int16_t mn[4][kLanes][2];  // [pair][row]: mn[2p], mn[2p+1]
        __m256i q[kLanes][8];
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) {
            quants(w[i][b], q[i]);
            const ScalesMins sm = unpack_scales_mins(w[i][b].scales);
            for (int s = 0; s < 8; ++s) sc[s][i][0] = sc[s][i][1] = sm.sc[s];
            for (int k = 0; k < 4; ++k) {
                mn[k][i][0] = sm.mn[2 * k];
                mn[k][i][1] = sm.mn[2 * k + 1];
            }
        }
        EKV_UNROLL
        for (int s = 0; s < 8; ++s) {
            __m256i v[kLanes];
            EKV_UNROLL
            for (int i = 0; i < kLanes; ++i) v[i] = q[i][s];
            transpose_words(v, p + 8 * s);
        }
        std::memcpy(p + 64, sc, sizeof(sc));
        std::memcpy(p + 72, mn, sizeof(mn));
        __m256 d, dmin;
        gather_half_pairs(w, b, &d, &dmin);
        _mm256_store_ps(reinterpret_cast<float*>(p + 76), d);
        _mm256_store_ps(reinterpret_cast<float*>(p + 77), dmin);
    }

    // The eight rows' isum and msum against one token's super-block.
    // Quants of at most 5 bits times |x| <= 127: 8 products fit an int16
    // lane (<= 31496), so four maddubs results add up before widening.
    static inline void panel_sums(const __m256i* p, const BlockQ8_K& xb, __m256i* isum, __m256i* msum) {
        __m256i s32 = _mm256_setzero_si256();
        EKV_UNROLL
        for (int s = 0; s < 8; ++s) {
            const __m256i* qv = p + 8 * s;
            const int8_t* xq = xb.qs + 32 * s;
            EKV_UNROLL
            for (int g = 0; g < 2; ++g) {
                __m256i m[4];
                EKV_UNROLL
                for (int c = 0; c < 4; ++c) {
                    m[c] = _mm256_maddubs_epi16(_mm256_load_si256(qv + 4 * g + c), broadcast_word(xq + 16 * g + 4 * c));
                }
                const __m256i sum16 = _mm256_add_epi16(_mm256_add_epi16(m[0], m[1]), _mm256_add_epi16(m[2], m[3]));
                s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(sum16, _mm256_load_si256(p + 64 + s)));
            }
        }
        *isum = s32;
        // The activations' sums per sub-block (bsums are per 16), as int16
        // pairs broadcast against each row's pair of mins.
        const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.bsums)),
                                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.bsums + 8)));
        alignas(16) int32_t pairs[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(pairs), bs);
        __m256i m32 = _mm256_setzero_si256();
        EKV_UNROLL
        for (int k = 0; k < 4; ++k) m32 = _mm256_add_epi32(m32, _mm256_madd_epi16(_mm256_load_si256(p + 72 + k), _mm256_set1_epi32(pairs[k])));
        *msum = m32;
    }

    template <int NT>
    static void sweep(const MatmulJob& job, const __m256i* panel, int64_t r, int n, int t0) {
        const BlockQ8_K* x[NT];
        __m256 acc[NT], corr[NT];
        start_tokens<NT>(job, t0, x, acc, corr);
        const int64_t nb = job.k_dim / kQK_K;
        for (int64_t b = 0; b < nb; ++b) {
            const __m256i* p = panel + kPanelVectors * b;
            const __m256 d = _mm256_load_ps(reinterpret_cast<const float*>(p + 76));
            const __m256 dmin = _mm256_load_ps(reinterpret_cast<const float*>(p + 77));
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                __m256i isum, msum;
                panel_sums(p, x[j][b], &isum, &msum);
                apply(isum, msum, d, dmin, x[j][b].d, &acc[j], &corr[j]);
            }
        }
        store_tokens<NT>(job, r, n, t0, acc, corr);
    }

    static bool gemm(const MatmulJob& job, int64_t r0, int64_t r1) {
        return panel_gemm<Block, kPanelVectors>(
            job, r0, r1, job.k_dim / kQK_K, decode_panel,
            [&](auto nt, const __m256i* panel, int64_t r, int n, int t0) { sweep<decltype(nt)::value>(job, panel, r, n, t0); });
    }

    static void rows(const MatmulJob& job, int64_t r0, int64_t r1) {
        if (job.ntok >= kGemmMinTokens && gemm(job, r0, r1)) return;
        gemv_all(job, r0, r1);
    }
};

}  // namespace

RowsKernel avx2_int8_q45k_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_K: return Q45Rows8<false>::rows;
        case DType::Q5_K: return Q45Rows8<true>::rows;
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
RowsKernel avx2_int8_q45k_rows_kernel(DType) { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
