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

#include "backend/cpu/matmul_avx2_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace avx2;

constexpr int kLanes = 8;          // rows per group: one per float lane
constexpr int kGemmMinTokens = 4;  // from here the rows are decoded once for all tokens
constexpr int kSweepTokens = 4;    // tokens per tile of the GEMM sweep

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

// Lane i of the result = the sum of the 8 lanes of v[i] (integer: exact in
// any order).
static inline __m256i fold_to_lanes(__m256i s01, __m256i s23, __m256i s45, __m256i s67) {
    const __m256i t0 = _mm256_hadd_epi32(s01, s23);  // rows 0-3: 4 sums in each 128-bit half
    const __m256i t1 = _mm256_hadd_epi32(s45, s67);  // rows 4-7
    return _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20), _mm256_permute2x128_si256(t0, t1, 0x31));
}

template <class F>
struct Rows8 {
    using Block = typename F::Block;
    static constexpr bool kOffset = !F::kSigned;
    static constexpr int kBlockBytes = kLanes * 32;  // a decoded block of the group: 32 quants a row

    // Block b's scales of the group's rows w into d[8], its offsets into o[8]
    // (halves gathered by integer loads, see group_scales).
    static inline void decode_scales(const Block* const (&w)[kLanes], int64_t b, float* d, float* o) {
        uint64_t half0[2] = {0, 0}, half1[2] = {0, 0};
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) {
            uint16_t h[2];
            std::memcpy(h, &w[i][b], F::kOffsetInM ? 4 : 2);
            half0[i / 4] |= static_cast<uint64_t>(h[0]) << (16 * (i % 4));
            if constexpr (F::kOffsetInM) half1[i / 4] |= static_cast<uint64_t>(h[1]) << (16 * (i % 4));
        }
        auto widen = [](const uint64_t (&v)[2]) {
            return _mm256_cvtph_ps(_mm_set_epi64x(static_cast<long long>(v[1]), static_cast<long long>(v[0])));
        };
        const __m256 dv = widen(half0);
        _mm256_store_ps(d, dv);
        if constexpr (kOffset) _mm256_store_ps(o, F::kOffsetInM ? widen(half1) : dv);
    }

    // Block b of the group's rows: quants into q (kBlockBytes), scales and offsets.
    static inline void decode_block(const Block* const (&w)[kLanes], int64_t b, uint8_t* q, float* d, float* o) {
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(q + 32 * i), F::quants(w[i][b]));
        decode_scales(w, b, d, o);
    }

    // One row's 32 quants against a token's block, as 8 partial sums
    // (maddubs takes unsigned x signed: a signed q's sign moves onto x).
    static inline __m256i quant_dot(__m256i q, __m256i xq) {
        if constexpr (F::kSigned) return dot_u8_s8_epi32(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xq, q));
        return dot_u8_s8_epi32(q, xq);
    }

    // The eight rows' block sums against one token's block (lane = row),
    // from the decoded quants q.
    static inline __m256i block_isums(const uint8_t* q, __m256i xq) {
        auto dot = [&](int i) { return quant_dot(_mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32 * i)), xq); };
        return fold_to_lanes(_mm256_hadd_epi32(dot(0), dot(1)), _mm256_hadd_epi32(dot(2), dot(3)),
                             _mm256_hadd_epi32(dot(4), dot(5)), _mm256_hadd_epi32(dot(6), dot(7)));
    }

    // The same straight from the weights (one token: nothing to reuse).
    static inline __m256i block_isums(const Block* const (&w)[kLanes], int64_t b, __m256i xq) {
        auto dot = [&](int i) { return quant_dot(F::quants(w[i][b]), xq); };
        return fold_to_lanes(_mm256_hadd_epi32(dot(0), dot(1)), _mm256_hadd_epi32(dot(2), dot(3)),
                             _mm256_hadd_epi32(dot(4), dot(5)), _mm256_hadd_epi32(dot(6), dot(7)));
    }

    // A token's block sums applied: acc and corr of that token.
    static inline void apply_isums(__m256i isums, __m256 dw, __m256 ow, const BlockQ8_1F& xb, __m256* acc,
                                   __m256* corr) {
        *acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), _mm256_cvtepi32_ps(isums), *acc);
        if constexpr (kOffset) *corr = _mm256_fmadd_ps(ow, _mm256_set1_ps(xb.s), *corr);
    }

    // A decoded block (q, d, o) applied to the NT tokens' block b.
    template <int NT>
    static inline void apply_block(const uint8_t* q, const float* d, const float* o,
                                   const BlockQ8_1F* const (&x)[NT], int64_t b, __m256 (&acc)[NT],
                                   __m256 (&corr)[NT]) {
        const __m256 dw = _mm256_load_ps(d);
        const __m256 ow = kOffset ? _mm256_load_ps(o) : _mm256_setzero_ps();
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            const BlockQ8_1F& xb = x[j][b];
            const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
            apply_isums(block_isums(q, xq), dw, ow, xb, &acc[j], &corr[j]);
        }
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

    // Rows [r, r + n) of the NT tokens from t0.
    template <int NT>
    static inline void store_tokens(const MatmulJob& job, int64_t r, int n, int t0, const __m256 (&acc)[NT],
                                    const __m256 (&corr)[NT]) {
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            const __m256 y = kOffset ? _mm256_fmadd_ps(_mm256_set1_ps(F::kOffsetFactor), corr[j], acc[j]) : acc[j];
            float* dst = out_at(job, t0 + j, r);
            if (n == kLanes) {
                _mm256_storeu_ps(dst, y);
            } else {
                alignas(32) float lanes[kLanes];
                _mm256_store_ps(lanes, y);
                std::memcpy(dst, lanes, static_cast<size_t>(n) * sizeof(float));
            }
        }
    }

    // The group's row pointers; spare lanes repeat the last row.
    static inline void group_rows(const MatmulJob& job, int64_t r, int n, const Block* (&w)[kLanes]) {
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) {
            w[i] = reinterpret_cast<const Block*>(weight_row(job, r + (i < n ? i : n - 1)));
        }
    }

    // ---- GEMV: block by block, every token of the tile per decoded block ----
    template <int NT>
    static void gemv_group(const MatmulJob& job, int64_t r, int n, int t0) {
        const Block* w[kLanes];
        group_rows(job, r, n, w);
        const BlockQ8_1F* x[NT];
        __m256 acc[NT], corr[NT];
        start_tokens<NT>(job, t0, x, acc, corr);
        // The next groups' bytes, one block-sized slice per block, as one stream.
        const size_t slice = static_cast<size_t>(n) * sizeof(Block);
        const char* ahead = reinterpret_cast<const char*>(w[0]) + prefetch_lead(job.w_row_bytes, n);
        alignas(32) uint8_t q[kBlockBytes];
        alignas(32) float d[kLanes], o[kLanes];
        const int64_t nb = job.k_dim / kQK;
        for (int64_t b = 0; b < nb; ++b) {
            const char* p = ahead + static_cast<size_t>(b) * slice;
            for (size_t off = 0; off < slice; off += 64) prefetch_line(p + off);
            if constexpr (NT == 1) {
                decode_scales(w, b, d, o);
                const BlockQ8_1F& xb = x[0][b];
                const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
                apply_isums(block_isums(w, b, xq), _mm256_load_ps(d), kOffset ? _mm256_load_ps(o) : _mm256_setzero_ps(),
                            xb, &acc[0], &corr[0]);
            } else {
                decode_block(w, b, q, d, o);
                apply_block<NT>(q, d, o, x, b, acc, corr);
            }
        }
        store_tokens<NT>(job, r, n, t0, acc, corr);
    }

    template <int NT>
    static void gemv_rows(const MatmulJob& job, int64_t r0, int64_t r1, int t0) {
        for (int64_t r = r0; r < r1; r += kLanes) gemv_group<NT>(job, r, r1 - r < kLanes ? static_cast<int>(r1 - r) : kLanes, t0);
    }

    static void gemv_all(const MatmulJob& job, int64_t r0, int64_t r1) {
        int t0 = 0;
        for (; t0 + 3 <= job.ntok; t0 += 3) gemv_rows<3>(job, r0, r1, t0);
        if (job.ntok - t0 == 2) gemv_rows<2>(job, r0, r1, t0);
        if (job.ntok - t0 == 1) gemv_rows<1>(job, r0, r1, t0);
    }

    // ---- GEMM: the group decoded once, swept by token tiles ----------------
    // The panel holds each block transposed: vector c (of 8) has, in lane i,
    // row i's quants 4c..4c+3, so a token's 4 activation bytes broadcast to
    // every lane meet all eight rows at once and the sums land in the row
    // lanes without horizontal adds.

    // Block b of the group's rows, transposed, into q (kBlockBytes).
    static inline void decode_block_transposed(const Block* const (&w)[kLanes], int64_t b, uint8_t* q) {
        __m256i v[kLanes];
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) v[i] = F::quants(w[i][b]);
        __m256i t[kLanes], u[kLanes];
        EKV_UNROLL
        for (int i = 0; i < kLanes; i += 2) {  // 32-bit pairs of rows i, i + 1
            t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
            t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
        }
        EKV_UNROLL
        for (int h = 0; h < kLanes; h += 4) {  // 64-bit pairs: rows h..h+3 of words c and c + 4 per vector
            u[h] = _mm256_unpacklo_epi64(t[h], t[h + 2]);
            u[h + 1] = _mm256_unpackhi_epi64(t[h], t[h + 2]);
            u[h + 2] = _mm256_unpacklo_epi64(t[h + 1], t[h + 3]);
            u[h + 3] = _mm256_unpackhi_epi64(t[h + 1], t[h + 3]);
        }
        __m256i* dst = reinterpret_cast<__m256i*>(q);
        EKV_UNROLL
        for (int c = 0; c < 4; ++c) {
            _mm256_store_si256(dst + c, _mm256_permute2x128_si256(u[c], u[c + 4], 0x20));
            _mm256_store_si256(dst + c + 4, _mm256_permute2x128_si256(u[c], u[c + 4], 0x31));
        }
    }

    // The eight rows' sums against one token's block from a transposed block.
    // Unsigned quants of at most 5 bits times |x| <= 127: 8 products fit an
    // int16 lane (<= 31496), so four maddubs results add up before widening.
    static inline __m256i transposed_isums(const uint8_t* q, const int8_t* xqs) {
        const __m256i* qv = reinterpret_cast<const __m256i*>(q);
        auto x4 = [&](int c) {
            int32_t word;
            std::memcpy(&word, xqs + 4 * c, 4);
            return _mm256_set1_epi32(word);
        };
        const __m256i ones = _mm256_set1_epi16(1);
        if constexpr (F::kSigned) {
            __m256i sum = _mm256_setzero_si256();
            EKV_UNROLL
            for (int c = 0; c < 8; ++c) {
                const __m256i w = _mm256_load_si256(qv + c);
                const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x4(c), w));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, ones));
            }
            return sum;
        } else {
            __m256i half[2];
            EKV_UNROLL
            for (int g = 0; g < 2; ++g) {
                const __m256i p0 = _mm256_maddubs_epi16(_mm256_load_si256(qv + 4 * g), x4(4 * g));
                const __m256i p1 = _mm256_maddubs_epi16(_mm256_load_si256(qv + 4 * g + 1), x4(4 * g + 1));
                const __m256i p2 = _mm256_maddubs_epi16(_mm256_load_si256(qv + 4 * g + 2), x4(4 * g + 2));
                const __m256i p3 = _mm256_maddubs_epi16(_mm256_load_si256(qv + 4 * g + 3), x4(4 * g + 3));
                half[g] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3)), ones);
            }
            return _mm256_add_epi32(half[0], half[1]);
        }
    }

    // Panel layout: per block the 8 scales and 8 offsets (16 floats), then
    // after all of them the transposed blocks (kBlockBytes each).
    template <int NT>
    static void sweep(const MatmulJob& job, const float* scales, const uint8_t* quants, int64_t r, int n, int t0) {
        const BlockQ8_1F* x[NT];
        __m256 acc[NT], corr[NT];
        start_tokens<NT>(job, t0, x, acc, corr);
        const int64_t nb = job.k_dim / kQK;
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t* q = quants + b * kBlockBytes;
            const __m256 dw = _mm256_load_ps(scales + 16 * b);
            const __m256 ow = kOffset ? _mm256_load_ps(scales + 16 * b + 8) : _mm256_setzero_ps();
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                const BlockQ8_1F& xb = x[j][b];
                apply_isums(transposed_isums(q, xb.qs), dw, ow, xb, &acc[j], &corr[j]);
            }
        }
        store_tokens<NT>(job, r, n, t0, acc, corr);
    }

    // False when no panel buffer could be had (the caller then runs the GEMV).
    static bool gemm(const MatmulJob& job, int64_t r0, int64_t r1) {
        const int64_t nb = job.k_dim / kQK;
        float* buf = thread_panel_buffer(static_cast<size_t>(nb) * (16 + kBlockBytes / 4));
        if (!buf) return false;
        const float* scales = buf;
        const uint8_t* quants = reinterpret_cast<const uint8_t*>(buf + 16 * nb);  // 64-byte aligned
        for (int64_t r = r0; r < r1; r += kLanes) {
            const int n = r1 - r < kLanes ? static_cast<int>(r1 - r) : kLanes;
            const Block* w[kLanes];
            group_rows(job, r, n, w);
            for (int64_t b = 0; b < nb; ++b) {
                decode_block_transposed(w, b, reinterpret_cast<uint8_t*>(buf + 16 * nb) + b * kBlockBytes);
                decode_scales(w, b, buf + 16 * b, buf + 16 * b + 8);
            }
            int t0 = 0;
            for (; t0 + kSweepTokens <= job.ntok; t0 += kSweepTokens) sweep<kSweepTokens>(job, scales, quants, r, n, t0);
            switch (job.ntok - t0) {
                case 3: sweep<3>(job, scales, quants, r, n, t0); break;
                case 2: sweep<2>(job, scales, quants, r, n, t0); break;
                case 1: sweep<1>(job, scales, quants, r, n, t0); break;
                default: break;
            }
        }
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
