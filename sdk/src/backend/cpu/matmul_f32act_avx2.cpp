// AVX2/FMA/F16C f32-activation matmul kernels for the float weight types and
// the 32-element block formats, plus the per-block activation sums. Quantized
// weights are decoded in registers one block at a time (w = d * q + m) and
// applied to a tile of up to kTokenTile tokens. Every token of a tile runs the
// same operation sequence as a lone token (see matmul_kernels.h), so results
// are bitwise independent of the tiling. Compiled with -mavx2 -mfma -mf16c;
// used only when the CPU reports AVX2 and FMA.
//
// No a*b+c below is written as separate multiply and add: GCC may contract
// such pairs into an FMA in one template instance and not in another, which
// would break the bitwise reproducibility across tile sizes.
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

// ---- float weights: widen 8 at a time, FMA against f32 x -----------------

struct F32Weights {
    static constexpr int kBytes = 4;
    static __m256 load8(const uint8_t* w, int64_t k) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + k);
    }
    static __m128 load1(const uint8_t* w, int64_t k) {
        return _mm_load_ss(reinterpret_cast<const float*>(w) + k);
    }
};

struct F16Weights {
    static constexpr int kBytes = 2;
    static __m256 load8(const uint8_t* w, int64_t k) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * k)));
    }
    static __m128 load1(const uint8_t* w, int64_t k) {
        return _mm_cvtph_ps(_mm_cvtsi32_si128(reinterpret_cast<const uint16_t*>(w)[k]));
    }
};

struct BF16Weights {
    static constexpr int kBytes = 2;
    static __m256 load8(const uint8_t* w, int64_t k) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * k)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    }
    static __m128 load1(const uint8_t* w, int64_t k) {
        const uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(w)[k]) << 16;
        return _mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(bits)));
    }
};

template <class L>
struct FloatRows {
    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const uint8_t* w = weight_row(job, r);
            const float* x[NT];
            __m256 acc0[NT], acc1[NT];
            __m128 tail[NT];
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = token_x(job, t0 + j);
                acc0[j] = _mm256_setzero_ps();
                acc1[j] = _mm256_setzero_ps();
                tail[j] = _mm_setzero_ps();
            }
            const int64_t K = job.k_dim;
            int64_t k = 0;
            for (; k + 16 <= K; k += 16) {
                prefetch_weights(job, w + L::kBytes * k, 1);  // 16 elements are at most 64 bytes
                const __m256 w0 = L::load8(w, k);
                const __m256 w1 = L::load8(w, k + 8);
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) {
                    acc0[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[j] + k), acc0[j]);
                    acc1[j] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[j] + k + 8), acc1[j]);
                }
            }
            for (; k + 8 <= K; k += 8) {
                const __m256 w0 = L::load8(w, k);
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) acc0[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[j] + k), acc0[j]);
            }
            for (; k < K; ++k) {
                const __m128 wk = L::load1(w, k);
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) tail[j] = _mm_fmadd_ss(wk, _mm_load_ss(x[j] + k), tail[j]);
            }
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                *out_at(job, t0 + j, r) = hsum_ps(_mm256_add_ps(acc0[j], acc1[j])) + _mm_cvtss_f32(tail[j]);
            }
        }
    };
};

// ---- 32-element block formats --------------------------------------------
// Each format decodes a block as w_j = d * c_j + m: quants() gives the quants
// centred on zero, c = q - kCenter (exact small integers as floats, element
// order), in four vectors; d is the half at the block's start; m is 0, or for
// Q4_1/Q5_1 (kOffset) the stored offset plus kCenter * d (exact: both are
// halves within a few binades of each other). Centring keeps the offset term
// m * sum(x) small: with uncentred quants it nearly cancels part of
// d * (q . x), and activations with large outlier channels lose digits there.
//
// Scales and offsets are decoded for 8 blocks at a time: widening and
// broadcasting one block's half-precision scale costs about as much vector
// work as its dot product with one token. The offsets then enter as one
// 8-lane FMA per 8 blocks and token.

// Q4_0/Q4_1 nibbles, centred: element j < 16 is the low nibble of qs[j],
// j >= 16 the high nibble of qs[j - 16].
static inline void nibbles_to_ps(const uint8_t* qs, __m256 q[4]) {
    const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs)));
    const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8)));
    const __m256i low4 = _mm256_set1_epi32(0x0F);
    const __m256i center = _mm256_set1_epi32(8);
    q[0] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(b0, low4), center));
    q[1] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(b1, low4), center));
    q[2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b0, 4), center));
    q[3] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b1, 4), center));
}

// Q5_0/Q5_1: the nibbles plus the fifth bits, centred, as 32 signed bytes in
// element order (through a stack buffer: cheaper than extracting quarters).
static inline void five_bit_to_ps(const uint8_t* qs, const uint8_t* qh, __m256 q[4]) {
    alignas(32) int8_t bytes[kQK];
    const __m256i q5 = _mm256_or_si256(unpack_nibbles16(qs), bits_to_fifth_bit(load_u32(qh)));
    _mm256_store_si256(reinterpret_cast<__m256i*>(bytes), _mm256_sub_epi8(q5, _mm256_set1_epi8(16)));
    EKV_UNROLL
    for (int c = 0; c < 4; ++c) q[c] = s8x8_to_ps(bytes + 8 * c);
}

struct Q4_0Format {
    using Block = BlockQ4_0;
    static constexpr bool kOffset = false;
    static constexpr float kCenter = 8.0f;
    static void quants(const Block& b, __m256 q[4]) { nibbles_to_ps(b.qs, q); }
};

struct Q4_1Format {
    using Block = BlockQ4_1;
    static constexpr bool kOffset = true;
    static constexpr float kCenter = 8.0f;
    static void quants(const Block& b, __m256 q[4]) { nibbles_to_ps(b.qs, q); }
};

struct Q5_0Format {
    using Block = BlockQ5_0;
    static constexpr bool kOffset = false;
    static constexpr float kCenter = 16.0f;
    static void quants(const Block& b, __m256 q[4]) { five_bit_to_ps(b.qs, b.qh, q); }
};

struct Q5_1Format {
    using Block = BlockQ5_1;
    static constexpr bool kOffset = true;
    static constexpr float kCenter = 16.0f;
    static void quants(const Block& b, __m256 q[4]) { five_bit_to_ps(b.qs, b.qh, q); }
};

struct Q8_0Format {
    using Block = BlockQ8_0;
    static constexpr bool kOffset = false;
    static constexpr float kCenter = 0.0f;
    static void quants(const Block& b, __m256 q[4]) {
        EKV_UNROLL
        for (int c = 0; c < 4; ++c) q[c] = s8x8_to_ps(b.qs + 8 * c);
    }
};

// The 32 bits at a block's start (d and the next half) in lane 0. Every
// format has at least 4 bytes there, so this never reads past the block.
template <class Block>
static inline __m128i scale_word(const Block& b) {
    return _mm_cvtsi32_si128(static_cast<int>(load_u32(reinterpret_cast<const uint8_t*>(&b))));
}

// d of blocks w[0..8) into d_out; returns their offsets m (0 without kOffset).
template <class F>
static inline __m256 group_scales(const typename F::Block* w, float* d_out) {
    // Lanes [p0 p1 p4 p5] and [p2 p3 p6 p7] of 32-bit (d, next) words widen to
    // floats that one in-lane shuffle turns into d0..d7 (and next0..next7).
    const __m128i p01 = _mm_unpacklo_epi32(scale_word(w[0]), scale_word(w[1]));
    const __m128i p23 = _mm_unpacklo_epi32(scale_word(w[2]), scale_word(w[3]));
    const __m128i p45 = _mm_unpacklo_epi32(scale_word(w[4]), scale_word(w[5]));
    const __m128i p67 = _mm_unpacklo_epi32(scale_word(w[6]), scale_word(w[7]));
    const __m256 a = _mm256_cvtph_ps(_mm_unpacklo_epi64(p01, p45));
    const __m256 b = _mm256_cvtph_ps(_mm_unpacklo_epi64(p23, p67));
    const __m256 d = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    _mm256_store_ps(d_out, d);
    if (!F::kOffset) return _mm256_setzero_ps();
    const __m256 stored = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_fmadd_ps(d, _mm256_set1_ps(F::kCenter), stored);
}

// The same for one block: d in lane 0 of *d_out, m in lane 0 of the result.
template <class F>
static inline __m128 block_scale(const typename F::Block& w, __m128* d_out) {
    const __m128 dm = _mm_cvtph_ps(scale_word(w));
    *d_out = dm;
    if (!F::kOffset) return _mm_setzero_ps();
    return _mm_fmadd_ss(dm, _mm_set_ss(F::kCenter), _mm_movehdup_ps(dm));
}

template <class F>
struct Blocks32 {
    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const typename F::Block* w = reinterpret_cast<const typename F::Block*>(weight_row(job, r));
            const int64_t nb = job.k_dim / kQK;
            const float* x[NT];
            const float* xsum[NT];  // per-block sums of x (kOffset formats)
            __m256 acc[NT];         // sum over blocks of d * (q . x), 8 lanes
            __m256 corr[NT];        // sum over groups of 8 blocks of m * sum(x), 8 lanes
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = token_x(job, t0 + j);
                xsum[j] = F::kOffset ? job.block_sums + static_cast<size_t>(t0 + j) * static_cast<size_t>(nb)
                                     : nullptr;
                acc[j] = _mm256_setzero_ps();
                corr[j] = _mm256_setzero_ps();
            }
            // d * (q . x) of block b into acc, for every token.
            auto block_dot = [&](int64_t b, __m256 d) {
                prefetch_weights(job, w + b, 1);  // blocks are < 64 bytes: one line each
                __m256 q[4];
                F::quants(w[b], q);
                EKV_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const float* xb = x[j] + kQK * b;
                    __m256 s = _mm256_mul_ps(q[0], _mm256_loadu_ps(xb));
                    s = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xb + 8), s);
                    s = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xb + 16), s);
                    s = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xb + 24), s);
                    acc[j] = _mm256_fmadd_ps(d, s, acc[j]);
                }
            };
            alignas(32) float d8[8];
            int64_t b = 0;
            for (; b + 8 <= nb; b += 8) {
                const __m256 m8 = group_scales<F>(w + b, d8);
                for (int g = 0; g < 8; ++g) block_dot(b + g, _mm256_broadcast_ss(d8 + g));
                if (F::kOffset) {
                    EKV_UNROLL
                    for (int j = 0; j < NT; ++j) corr[j] = _mm256_fmadd_ps(m8, _mm256_loadu_ps(xsum[j] + b), corr[j]);
                }
            }
            __m128 corr_tail[NT];  // the blocks after the last group of 8, lane 0
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) corr_tail[j] = _mm_setzero_ps();
            for (; b < nb; ++b) {
                __m128 d;
                const __m128 m = block_scale<F>(w[b], &d);
                block_dot(b, _mm256_broadcastss_ps(d));
                if (F::kOffset) {
                    EKV_UNROLL
                    for (int j = 0; j < NT; ++j) corr_tail[j] = _mm_fmadd_ss(m, _mm_load_ss(xsum[j] + b), corr_tail[j]);
                }
            }
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                const float dot = hsum_ps(acc[j]);
                *out_at(job, t0 + j, r) =
                    F::kOffset ? dot + (hsum_ps(corr[j]) + _mm_cvtss_f32(corr_tail[j])) : dot;
            }
        }
    };
};

// ---- per-block activation sums (for the weight offsets m) ---------------

void block_sums_avx2(const float* x, void* dst, int64_t n) {
    float* out = static_cast<float*>(dst);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const __m256 a = _mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8));
        const __m256 b = _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24));
        out[i] = hsum_ps(_mm256_add_ps(a, b));
    }
}

RowsKernel avx2_f32act_rows_kernel(DType t) {
    switch (t) {
        case DType::F32: return drive_tiles<FloatRows<F32Weights>::Tile>;
        case DType::F16: return drive_tiles<FloatRows<F16Weights>::Tile>;
        case DType::BF16: return drive_tiles<FloatRows<BF16Weights>::Tile>;
        case DType::Q4_0: return drive_tiles<Blocks32<Q4_0Format>::Tile>;
        case DType::Q4_1: return drive_tiles<Blocks32<Q4_1Format>::Tile>;
        case DType::Q5_0: return drive_tiles<Blocks32<Q5_0Format>::Tile>;
        case DType::Q5_1: return drive_tiles<Blocks32<Q5_1Format>::Tile>;
        case DType::Q8_0: return drive_tiles<Blocks32<Q8_0Format>::Tile>;
        default: return avx2_f32act_kquant_rows_kernel(t);
    }
}

}  // namespace

const F32ActKernels* avx2_f32act_kernels() {
    static const F32ActKernels set = {block_sums_avx2, avx2_f32act_rows_kernel};
    return &set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#else  // built without AVX2 flags (or not x86): the scalar kernels serve

namespace ekv {
namespace cpu {
namespace detail {
const F32ActKernels* avx2_f32act_kernels() { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
