// AVX2 int8-activation kernel for Q6_K against Q8_K activations, eight rows
// at a time with one row per vector lane (matmul_rows8_avx2.h), as Q4_K and
// Q5_K do (matmul_int8_q45k_rows8_avx2.cpp). For each (row, token) output,
// super-block by super-block in order:
//   isum = sum over the 16 sub-blocks of sc[k] * (their 16 integer products
//          of the unsigned 6-bit quants)
//        - 32 * sum over the 16 sub-blocks of sc[k] * (their 16 activations)
//   acc  = fma(d * d_x, float(isum), acc)
// The integer sums are exact, so the GEMV (row by row, each super-block's
// total reduced at once) and the GEMM (a row group decoded once for the
// whole k into a transposed per-thread panel, swept by token tiles) agree
// bit for bit whatever the batch, tile or row split.
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

// Slices 4 half .. 4 half + 3 of a row's super-block (elements 128 half ..
// 128 half + 127): 32 quants each, 6 bits, offset 32 not removed.
inline void q6k_half(const BlockQ6_K& blk, int half, __m256i* q) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i low2 = _mm256_set1_epi8(0x03);
    const uint8_t* ql = blk.ql + 64 * half;
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * half));
    q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4));
}

// The rows' d (the half at the end of each block) as floats.
inline __m256 gather_d(const BlockQ6_K* const (&w)[kLanes], int64_t b) {
    alignas(32) float d[kLanes];
    EKV_UNROLL
    for (int i = 0; i < kLanes; ++i) d[i] = half_to_float(w[i][b].d);
    return _mm256_load_ps(d);
}

inline void apply(__m256i isum, __m256 d, float xd, __m256* acc) {
    *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xd)), _mm256_cvtepi32_ps(isum), *acc);
}

template <int NT>
inline void start_tokens(const MatmulJob& job, int t0, const BlockQ8_K* (&x)[NT], __m256 (&acc)[NT]) {
    EKV_UNROLL
    for (int j = 0; j < NT; ++j) {
        x[j] = reinterpret_cast<const BlockQ8_K*>(act_row(job, t0 + j));
        acc[j] = _mm256_setzero_ps();
    }
}

// ---- GEMV -------------------------------------------------------------------
// One row at a time, streamed in address order (eight interleaved row streams
// ran 1.2-1.4x slower here); each super-block's integer total reduced at once
// and applied with the same single FMA as a GEMM lane, so the bits match.
template <int NT>
struct GemvTile {
    static void run(const MatmulJob& job, int64_t r, int t0) {
        const BlockQ6_K* w = reinterpret_cast<const BlockQ6_K*>(weight_row(job, r));
        const BlockQ8_K* x[NT];
        float acc[NT];
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = reinterpret_cast<const BlockQ8_K*>(act_row(job, t0 + j));
            acc[j] = 0.0f;
        }
        const int64_t nb = job.k_dim / kQK_K;
        for (int64_t b = 0; b < nb; ++b) {
            const BlockQ6_K& blk = w[b];
            prefetch_weights(job, &blk, static_cast<int>(sizeof(BlockQ6_K)));
            const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)));
            __m256i isum[NT];
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                // -32 * sum_k sc[k] * bsums[k]: the quants' offset.
                const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][b].bsums));
                isum[j] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(scales16, bs), 5));
            }
            EKV_UNROLL
            for (int half = 0; half < 2; ++half) {  // four slices at a time: fewer live registers
                __m256i q[4];
                q6k_half(blk, half, q);
                EKV_UNROLL
                for (int m = 0; m < 4; ++m) {
                    const int k = 8 * half + 2 * m;  // scales of elements [0,16) and [16,32) of this slice
                    const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(blk.scales[k + 1]), _mm_set1_epi16(blk.scales[k]));
                    EKV_UNROLL
                    for (int j = 0; j < NT; ++j) {
                        const __m256i xq =
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][b].qs + 128 * half + 32 * m));
                        isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[m], xq), sc));
                    }
                }
            }
            const __m128 d = _mm_set_ss(half_to_float(blk.d));
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                const __m128 total = _mm_cvtsi32_ss(_mm_setzero_ps(), hsum_epi32(isum[j]));
                acc[j] = _mm_cvtss_f32(_mm_fmadd_ss(_mm_mul_ss(d, _mm_set_ss(x[j][b].d)), total, _mm_set_ss(acc[j])));
            }
        }
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) *out_at(job, t0 + j, r) = acc[j];
    }
};

// ---- GEMM -------------------------------------------------------------------
// Panel per super-block: 64 transposed quant vectors (slice s's words at
// 8 s), 16 scale vectors (lane i: row i's sc[k] twice, k = 2 s + half of
// slice s), 8 scale-pair vectors (lane i: row i's sc[2 p], sc[2 p + 1]) for
// the offset term, then d (8 floats): kPanelVectors vectors.
constexpr int kQuantVectors = 64, kScaleAt = 64, kPairAt = 80, kDAt = 88;
constexpr int kPanelVectors = 89;

void decode_panel(const BlockQ6_K* const (&w)[kLanes], int64_t b, __m256i* p) {
    alignas(32) int16_t sc[16][kLanes][2];    // [k][row]: the scale twice
    alignas(32) int16_t pairs[8][kLanes][2];  // [p][row]: sc[2p], sc[2p + 1]
    __m256i q[kLanes][8];
    EKV_UNROLL
    for (int i = 0; i < kLanes; ++i) {
        q6k_half(w[i][b], 0, q[i]);
        q6k_half(w[i][b], 1, q[i] + 4);
        for (int k = 0; k < 16; ++k) sc[k][i][0] = sc[k][i][1] = w[i][b].scales[k];
        for (int k = 0; k < 8; ++k) {
            pairs[k][i][0] = w[i][b].scales[2 * k];
            pairs[k][i][1] = w[i][b].scales[2 * k + 1];
        }
    }
    EKV_UNROLL
    for (int s = 0; s < 8; ++s) {
        __m256i v[kLanes];
        EKV_UNROLL
        for (int i = 0; i < kLanes; ++i) v[i] = q[i][s];
        transpose_words(v, p + 8 * s);
    }
    static_assert(kScaleAt == kQuantVectors && kPairAt == kScaleAt + 16 && kDAt == kPairAt + 8, "panel layout");
    std::memcpy(p + kScaleAt, sc, sizeof(sc));
    std::memcpy(p + kPairAt, pairs, sizeof(pairs));
    _mm256_store_ps(reinterpret_cast<float*>(p + kDAt), gather_d(w, b));
}

// The eight rows' isum against one token's super-block. Quants of 6 bits
// times |x| <= 128: 4 products fit an int16 lane (<= 32256), so two maddubs
// results add up before widening.
inline __m256i panel_isum(const __m256i* p, const BlockQ8_K& xb) {
    __m256i s32 = _mm256_setzero_si256();
    EKV_UNROLL
    for (int s = 0; s < 8; ++s) {
        const __m256i* qv = p + 8 * s;
        const int8_t* xq = xb.qs + 32 * s;
        EKV_UNROLL
        for (int g = 0; g < 2; ++g) {  // elements 16 g .. 16 g + 15 of the slice: scale 2 s + g
            __m256i m[4];
            EKV_UNROLL
            for (int c = 0; c < 4; ++c)
                m[c] = _mm256_maddubs_epi16(_mm256_load_si256(qv + 4 * g + c), broadcast_word(xq + 16 * g + 4 * c));
            const __m256i sc = _mm256_load_si256(p + kScaleAt + 2 * s + g);
            s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(_mm256_add_epi16(m[0], m[1]), sc));
            s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(_mm256_add_epi16(m[2], m[3]), sc));
        }
    }
    // -32 * sum_k sc[k] * bsums[k], bsums as int16 pairs broadcast against
    // each row's pair of scales.
    alignas(32) int32_t bs_pairs[8];
    std::memcpy(bs_pairs, xb.bsums, sizeof(bs_pairs));
    __m256i m32 = _mm256_setzero_si256();
    EKV_UNROLL
    for (int k = 0; k < 8; ++k)
        m32 = _mm256_add_epi32(m32, _mm256_madd_epi16(_mm256_load_si256(p + kPairAt + k), _mm256_set1_epi32(bs_pairs[k])));
    return _mm256_sub_epi32(s32, _mm256_slli_epi32(m32, 5));
}

template <int NT>
void sweep(const MatmulJob& job, const __m256i* panel, int64_t r, int n, int t0) {
    const BlockQ8_K* x[NT];
    __m256 acc[NT];
    start_tokens<NT>(job, t0, x, acc);
    const int64_t nb = job.k_dim / kQK_K;
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i* p = panel + kPanelVectors * b;
        const __m256 d = _mm256_load_ps(reinterpret_cast<const float*>(p + kDAt));
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) apply(panel_isum(p, x[j][b]), d, x[j][b].d, &acc[j]);
    }
    EKV_UNROLL
    for (int j = 0; j < NT; ++j) store_lanes(job, r, n, t0 + j, acc[j]);
}

void rows(const MatmulJob& job, int64_t r0, int64_t r1) {
    const auto tile = [&](auto nt, const __m256i* panel, int64_t r, int n, int t0) {
        sweep<decltype(nt)::value>(job, panel, r, n, t0);
    };
    if (job.ntok >= kGemmMinTokens &&
        panel_gemm<BlockQ6_K, kPanelVectors>(job, r0, r1, job.k_dim / kQK_K, decode_panel, tile))
        return;
    drive_tiles<GemvTile>(job, r0, r1);
}

}  // namespace

RowsKernel avx2_int8_q6k_rows_kernel(DType t) { return t == DType::Q6_K ? rows : nullptr; }

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#else  // built without AVX2 flags (or not x86)

namespace ekv {
namespace cpu {
namespace detail {
RowsKernel avx2_int8_q6k_rows_kernel(DType) { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
