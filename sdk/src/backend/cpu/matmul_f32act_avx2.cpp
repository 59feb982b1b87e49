// AVX2/FMA/F16C f32-activation matmul kernels for the float weight types,
// plus the per-block activation sums; the quantized formats are in
// matmul_f32act_quant_avx2.cpp. Float weights are widened 8 at a time and
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
        default: return avx2_f32act_quant_rows_kernel(t);  // matmul_f32act_quant_avx2.cpp
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
