// AVX2/FMA/F16C int8-activation matmul kernels for the 32-element block
// formats, plus the AVX2 activation quantizers (8-bit blocks). Compiled with
// -mavx2 -mfma -mf16c; used only when the CPU reports AVX2 and FMA.
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

// ---- 32-element block formats against Q8_1F activations ------------------
// Each format yields its 32 quants in element order as bytes (unsigned, or
// signed for Q8_0) and the pair [d, o / kOffsetFactor] as floats in lanes 0-1
// (o is the block offset of matmul_kernels.h; the power-of-two factor is
// applied once at the end, which is exact).

// Two adjacent halves (d, m) -> [d, m, 0, 0].
static inline __m128 halves_pair(const uint16_t* dm) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(load_u32(reinterpret_cast<const uint8_t*>(dm)))));
}

// One half d -> [d, d, 0, 0].
static inline __m128 half_twice(uint16_t d) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(static_cast<uint32_t>(d) * 0x00010001u)));
}

struct Q4_0Weights {
    using Block = BlockQ4_0;
    static constexpr bool kSigned = false;
    static constexpr float kOffsetFactor = -8.0f;
    static __m256i quants(const Block& b) { return unpack_nibbles16(b.qs); }
    static __m128 scales(const Block& b) { return half_twice(b.d); }
};

struct Q4_1Weights {
    using Block = BlockQ4_1;
    static constexpr bool kSigned = false;
    static constexpr float kOffsetFactor = 1.0f;
    static __m256i quants(const Block& b) { return unpack_nibbles16(b.qs); }
    static __m128 scales(const Block& b) { return halves_pair(&b.d); }
};

struct Q5_0Weights {
    using Block = BlockQ5_0;
    static constexpr bool kSigned = false;
    static constexpr float kOffsetFactor = -16.0f;
    static __m256i quants(const Block& b) {
        return _mm256_or_si256(unpack_nibbles16(b.qs), bits_to_fifth_bit(load_u32(b.qh)));
    }
    static __m128 scales(const Block& b) { return half_twice(b.d); }
};

struct Q5_1Weights {
    using Block = BlockQ5_1;
    static constexpr bool kSigned = false;
    static constexpr float kOffsetFactor = 1.0f;
    static __m256i quants(const Block& b) {
        return _mm256_or_si256(unpack_nibbles16(b.qs), bits_to_fifth_bit(load_u32(b.qh)));
    }
    static __m128 scales(const Block& b) { return halves_pair(&b.d); }
};

struct Q8_0Weights {  // no offset: the second lane is never used
    using Block = BlockQ8_0;
    static constexpr bool kSigned = true;
    static constexpr float kOffsetFactor = 0.0f;
    static __m256i quants(const Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
    static __m128 scales(const Block& b) { return _mm_cvtph_ps(_mm_cvtsi32_si128(b.d)); }
};

template <class F>
struct Blocks32 {
    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const typename F::Block* w = reinterpret_cast<const typename F::Block*>(weight_row(job, r));
            const BlockQ8_1F* x[NT];
            // Two accumulator sets (even/odd blocks) hide the FMA latency of small
            // tiles; every tile size uses them so that a token's summation order,
            // and so its result, never depends on the tile it falls in.
            __m256 acc[2][NT];
            __m128 corr[NT];  // lane 1: sum of (o / kOffsetFactor) * s_x
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = reinterpret_cast<const BlockQ8_1F*>(act_row(job, t0 + j));
                acc[0][j] = _mm256_setzero_ps();
                acc[1][j] = _mm256_setzero_ps();
                corr[j] = _mm_setzero_ps();
            }
            const int64_t nb = job.k_dim / kQK;
            auto block = [&](int64_t b, __m256* a) {
                prefetch_weights(job, w + b, 1);  // blocks are < 64 bytes: one line each
                const __m256i q = F::quants(w[b]);
                const __m128 ws = F::scales(w[b]);
                // maddubs wants unsigned x signed: for signed weights move the sign onto x.
                const __m256i qu = F::kSigned ? _mm256_sign_epi8(q, q) : q;
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const BlockQ8_1F& xb = x[j][b];
                    // [d_w * d_x, o * s_x] in one multiply (xb.d and xb.s are adjacent).
                    const __m128 prod = _mm_mul_ps(ws, _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(&xb.d))));
                    __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
                    if (F::kSigned) xq = _mm256_sign_epi8(xq, q);
                    const __m256 p = _mm256_cvtepi32_ps(dot_u8_s8_epi32(qu, xq));
                    a[j] = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), p, a[j]);
                    if (!F::kSigned) corr[j] = _mm_add_ps(corr[j], prod);
                }
            };
            int64_t b = 0;
            for (; b + 1 < nb; b += 2) {
                block(b, acc[0]);
                block(b + 1, acc[1]);
            }
            for (; b < nb; ++b) block(b, acc[0]);
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                const float c = F::kSigned ? 0.0f : F::kOffsetFactor * _mm_cvtss_f32(_mm_movehdup_ps(corr[j]));
                *out_at(job, t0 + j, r) = hsum_ps(_mm256_add_ps(acc[0][j], acc[1][j])) + c;
            }
        }
    };
};

// ---- activation quantizers (same bytes as quantize_row_q8_1f / _q8_k) ----

static inline float absmax_ps(const float* x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// round-half-even(x * id) for 8 floats, as int32 (exact: |x * id| <= 127.x).
static inline __m256i quantize8(const float* x, __m256 id) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), id);
    return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// Four vectors of 8 int32 (elements 0..31 in order) -> 32 int8 in order.
static inline __m256i pack_to_epi8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i abcd = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quantize_q8_1f_avx2(const float* x, void* dst, int64_t n) {
    BlockQ8_1F* y = static_cast<BlockQ8_1F*>(dst);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = absmax_ps(x, kQK) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        const __m256i a = quantize8(x, id), b = quantize8(x + 8, id);
        const __m256i c = quantize8(x + 16, id), e = quantize8(x + 24, id);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), pack_to_epi8(a, b, c, e));
        const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, e)));
        y[i].d = d;
        y[i].s = d * static_cast<float>(sum);
    }
}

void quantize_q8_k_avx2(const float* x, void* dst, int64_t n) {
    BlockQ8_K* y = static_cast<BlockQ8_K*>(dst);
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        const float d = absmax_ps(x, kQK_K) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        for (int g = 0; g < kQK_K / 32; ++g) {
            const float* xg = x + 32 * g;
            const __m256i a = quantize8(xg, id), b = quantize8(xg + 8, id);
            const __m256i c = quantize8(xg + 16, id), e = quantize8(xg + 24, id);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + 32 * g), pack_to_epi8(a, b, c, e));
            y[i].bsums[2 * g] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(a, b)));
            y[i].bsums[2 * g + 1] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(c, e)));
        }
        y[i].d = d;
    }
}

RowsKernel avx2_int8_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_0: return drive_tiles<Blocks32<Q4_0Weights>::Tile>;
        case DType::Q4_1: return drive_tiles<Blocks32<Q4_1Weights>::Tile>;
        case DType::Q5_0: return drive_tiles<Blocks32<Q5_0Weights>::Tile>;
        case DType::Q5_1: return drive_tiles<Blocks32<Q5_1Weights>::Tile>;
        case DType::Q8_0: return drive_tiles<Blocks32<Q8_0Weights>::Tile>;
        default: return avx2_int8_kquant_rows_kernel(t);
    }
}

}  // namespace

const Int8ActKernels* avx2_int8_kernels() {
    static const Int8ActKernels set = {quantize_q8_1f_avx2, quantize_q8_k_avx2, avx2_int8_rows_kernel};
    return &set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#else  // built without AVX2 flags (or not x86): the scalar kernels serve

namespace ekv {
namespace cpu {
namespace detail {
const Int8ActKernels* avx2_int8_kernels() { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
