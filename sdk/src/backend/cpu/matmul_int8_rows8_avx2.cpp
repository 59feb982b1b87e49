// AVX2 int8-activation kernels for the 32-element block formats (Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0) against Q8_1F activations, eight rows at a time with one
// row per vector lane. For each (row, token) output, block by block in order:
//   isum = the block's 32 integer products summed (exact)
//   acc  = fma(d_w * d_x, float(isum), acc)
//   corr = fma(o_w, s_x, corr)                  (unsigned formats)
// and at the end y = fma(kOffsetFactor, corr, acc), where o_w is the block
// offset divided by the power of two kOffsetFactor (matmul_kernels.h).
//
// With rows in lanes, a block's float work (conversion, scale product, the two
// FMAs) is one vector operation for eight rows instead of eight, and the
// integer sums of the eight rows are folded into one vector by horizontal
// adds. A lane runs the same operations whatever the batch size, the token
// tile, the row group (short groups repeat their last row in the spare lanes)
// or the path, so results are bitwise independent of all of them:
//  - GEMV (fewer than kGemmMinTokens tokens, decode): block by block, the
//    eight rows' quants used as decoded (one token) or through a small buffer
//    (2-3 tokens), the rows ahead prefetched in address order;
//  - GEMM (prefill): the eight rows are decoded once for the whole k into a
//    per-thread panel, transposed so that the sums need no horizontal adds,
//    then swept by tiles of kSweepTokens tokens.
#include "backend/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/matmul_rows8_avx2.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace avx2;

// Each format gives its 32 quants in element order as bytes (unsigned, or
// signed for Q8_0); the scale d is the block's first half, the offset (if
// kOffsetInM) its second, else d itself.
struct Q4_0Rows {
    using Block = BlockQ4_0;
    static constexpr bool kSigned = false;
    static constexpr bool kOffsetInM = false;
    static constexpr float kOffsetFactor = -8.0f;
    static __m256i quants(const Block& b) { return unpack_nibbles16(b.qs); }
};

struct Q4_1Rows {
    using Block = BlockQ4_1;
    static constexpr bool kSigned = false;
    static constexpr bool kOffsetInM = true;
    static constexpr float kOffsetFactor = 1.0f;
    static __m256i quants(const Block& b) { return unpack_nibbles16(b.qs); }
};

struct Q5_0Rows {
    using Block = BlockQ5_0;
    static constexpr bool kSigned = false;
    static constexpr bool kOffsetInM = false;
    static constexpr float kOffsetFactor = -16.0f;
    static __m256i quants(const Block& b) {
        return _mm256_or_si256(unpack_nibbles16(b.qs), bits_to_fifth_bit(load_u32(b.qh)));
    }
};

struct Q5_1Rows {
    using Block = BlockQ5_1;
    static constexpr bool kSigned = false;
    static constexpr bool kOffsetInM = true;
    static constexpr float kOffsetFactor = 1.0f;
    static __m256i quants(const Block& b) {
        return _mm256_or_si256(unpack_nibbles16(b.qs), bits_to_fifth_bit(load_u32(b.qh)));
    }
};

struct Q8_0Rows {
    using Block = BlockQ8_0;
    static constexpr bool kSigned = true;
    static constexpr bool kOffsetInM = false;
    static constexpr float kOffsetFactor = 0.0f;
    static __m256i quants(const Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
};

template <class F>
struct Rows8 {
    using Block = typename F::Block;
    static constexpr bool kOffset = !F::kSigned;
    static constexpr int kBlockBytes = kLanes * 32;  // a decoded block of the group: 32 quants a row

    // Block b's scales of the group's rows into d[8], its offsets into o[8].
    static inline void decode_scales(const Block* const (&w)[kLanes], int64_t b, float* d, float* o) {
        __m256 dv, second;
        gather_half_pairs(w, b, &dv, &second);
        _mm256_store_ps(d, dv);
        if constexpr (kOffset) _mm256_store_ps(o, F::kOffsetInM ? second : dv);
    }

    // One row's 32 quants against a token's block, as 8 partial sums
    // (maddubs takes unsigned x signed: a signed q's sign moves onto x).
    static inline __m256i quant_dot(__m256i q, __m256i xq) {
        if constexpr (F::kSigned) return dot_u8_s8_epi32(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xq, q));
        return dot_u8_s8_epi32(q, xq);
    }

    // The eight rows' block sums against one token's block (lane = row),
    // from the quants decoded into q (32 bytes a row).
    static inline __m256i block_isums(const uint8_t* q, __m256i xq) {
        __m256i v[kLanes];
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) v[i] = quant_dot(_mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32 * i)), xq);
        return fold_rows(v);
    }

    // The same straight from the weights (one token: nothing to reuse).
    static inline __m256i block_isums(const Block* const (&w)[kLanes], int64_t b, __m256i xq) {
        __m256i v[kLanes];
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) v[i] = quant_dot(F::quants(w[i][b]), xq);
        return fold_rows(v);
    }

    // A token's block sums applied: acc and corr of that token.
    static inline void apply_isums(__m256i isums, __m256 dw, __m256 ow, const BlockQ8_1F& xb, __m256* acc,
                                   __m256* corr) {
        *acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), _mm256_cvtepi32_ps(isums), *acc);
        if constexpr (kOffset) *corr = _mm256_fmadd_ps(ow, _mm256_set1_ps(xb.s), *corr);
    }

    template <int NT>
    static inline void start_tokens(const MatmulJob& job, int t0, const BlockQ8_1F* (&x)[NT], __m256 (&acc)[NT],
                                    __m256 (&corr)[NT]) {
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = reinterpret_cast<const BlockQ8_1F*>(act_row(job, t0 + j));
            acc[j] = _mm256_setzero_ps();
            corr[j] = _mm256_setzero_ps();
        }
    }

    template <int NT>
    static inline void store_tokens(const MatmulJob& job, int64_t r, int n, int t0, const __m256 (&acc)[NT],
                                    const __m256 (&corr)[NT]) {
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            store_lanes(job, r, n, t0 + j,
                        kOffset ? _mm256_fmadd_ps(_mm256_set1_ps(F::kOffsetFactor), corr[j], acc[j]) : acc[j]);
        }
    }

    // ---- GEMV: block by block ----------------------------------------------
    template <int NT>
    static void gemv_group(const MatmulJob& job, int64_t r, int n, int t0) {
        const Block* w[kLanes];
        group_rows(job, r, n, w);
        const BlockQ8_1F* x[NT];
        __m256 acc[NT], corr[NT];
        start_tokens<NT>(job, t0, x, acc, corr);
        const size_t slice = static_cast<size_t>(n) * sizeof(Block);
        const char* ahead = reinterpret_cast<const char*>(w[0]) + prefetch_lead(job.w_row_bytes, n);
        alignas(32) uint8_t q[kBlockBytes];
        alignas(32) float d[kLanes], o[kLanes];
        const int64_t nb = job.k_dim / kQK;
        for (int64_t b = 0; b < nb; ++b) {
            prefetch_group_slice(ahead, b, slice);
            decode_scales(w, b, d, o);
            const __m256 dw = _mm256_load_ps(d);
            const __m256 ow = kOffset ? _mm256_load_ps(o) : _mm256_setzero_ps();
            if constexpr (NT > 1) {
                EKV_UNROLL
                for (int i = 0; i < kLanes; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(q + 32 * i), F::quants(w[i][b]));
            }
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                const BlockQ8_1F& xb = x[j][b];
                const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
                apply_isums(NT == 1 ? block_isums(w, b, xq) : block_isums(q, xq), dw, ow, xb, &acc[j], &corr[j]);
            }
        }
        store_tokens<NT>(job, r, n, t0, acc, corr);
    }

    static void gemv_all(const MatmulJob& job, int64_t r0, int64_t r1) {
        for_token_tiles<3>(job.ntok, [&](auto nt, int t0) {
            for_row_groups(r0, r1, [&](int64_t r, int n) { gemv_group<decltype(nt)::value>(job, r, n, t0); });
        });
    }

    // ---- GEMM: the group decoded once, transposed, swept by token tiles ----

    // The eight rows' sums against one token's block from a transposed block
    // (transpose_words). Unsigned quants of at most 5 bits times |x| <= 127:
    // 8 products fit an int16 lane (<= 31496), so four maddubs results add up
    // before widening.
    static inline __m256i transposed_isums(const __m256i* qv, const int8_t* xqs) {
        const __m256i ones = _mm256_set1_epi16(1);
        if constexpr (F::kSigned) {
            __m256i sum = _mm256_setzero_si256();
            EKV_UNROLL
            for (int c = 0; c < 8; ++c) {
                const __m256i w = _mm256_load_si256(qv + c);
                const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(broadcast_word(xqs + 4 * c), w));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, ones));
            }
            return sum;
        } else {
            __m256i half[2];
            EKV_UNROLL
            for (int g = 0; g < 2; ++g) {
                __m256i p[4];
                EKV_UNROLL
                for (int c = 0; c < 4; ++c) {
                    p[c] = _mm256_maddubs_epi16(_mm256_load_si256(qv + 4 * g + c), broadcast_word(xqs + 16 * g + 4 * c));
                }
                half[g] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3])), ones);
            }
            return _mm256_add_epi32(half[0], half[1]);
        }
    }

    // Panel layout: per block the 8 scales and 8 offsets (16 floats), then
    // after all of them the transposed blocks (kBlockBytes each).
    template <int NT>
    static void sweep(const MatmulJob& job, const float* scales, const __m256i* quants, int64_t r, int n, int t0) {
        const BlockQ8_1F* x[NT];
        __m256 acc[NT], corr[NT];
        start_tokens<NT>(job, t0, x, acc, corr);
        const int64_t nb = job.k_dim / kQK;
        for (int64_t b = 0; b < nb; ++b) {
            const __m256 dw = _mm256_load_ps(scales + 16 * b);
            const __m256 ow = kOffset ? _mm256_load_ps(scales + 16 * b + 8) : _mm256_setzero_ps();
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                const BlockQ8_1F& xb = x[j][b];
                apply_isums(transposed_isums(quants + 8 * b, xb.qs), dw, ow, xb, &acc[j], &corr[j]);
            }
        }
        store_tokens<NT>(job, r, n, t0, acc, corr);
    }

    // False when no panel buffer could be had (the caller then runs the GEMV).
    static bool gemm(const MatmulJob& job, int64_t r0, int64_t r1) {
        const int64_t nb = job.k_dim / kQK;
        float* buf = thread_panel_buffer(static_cast<size_t>(nb) * (16 + kBlockBytes / 4));
        if (!buf) return false;
        __m256i* quants = reinterpret_cast<__m256i*>(buf + 16 * nb);  // 64-byte aligned
        for_row_groups(r0, r1, [&](int64_t r, int n) {
            const Block* w[kLanes];
            group_rows(job, r, n, w);
            for (int64_t b = 0; b < nb; ++b) {
                __m256i v[kLanes];
                EKV_UNROLL
                for (int i = 0; i < kLanes; ++i) v[i] = F::quants(w[i][b]);
                transpose_words(v, quants + 8 * b);
                decode_scales(w, b, buf + 16 * b, buf + 16 * b + 8);
            }
            for_token_tiles<kSweepTokens>(job.ntok, [&](auto nt, int t0) {
                sweep<decltype(nt)::value>(job, buf, quants, r, n, t0);
            });
        });
        return true;
    }

    static void rows(const MatmulJob& job, int64_t r0, int64_t r1) {
        if (job.ntok >= kGemmMinTokens && gemm(job, r0, r1)) return;
        gemv_all(job, r0, r1);
    }
};

}  // namespace

RowsKernel avx2_int8_blocks32_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_0: return Rows8<Q4_0Rows>::rows;
        case DType::Q4_1: return Rows8<Q4_1Rows>::rows;
        case DType::Q5_0: return Rows8<Q5_0Rows>::rows;
        case DType::Q5_1: return Rows8<Q5_1Rows>::rows;
        case DType::Q8_0: return Rows8<Q8_0Rows>::rows;
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
RowsKernel avx2_int8_blocks32_rows_kernel(DType) { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
