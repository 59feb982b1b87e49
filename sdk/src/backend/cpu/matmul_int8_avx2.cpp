// AVX2/FMA/F16C activation quantizers (8-bit blocks) and the int8 kernel
// dispatch: the 32-element formats are in matmul_int8_rows8_avx2.cpp, the
// K-quants in matmul_int8_kquants_avx2.cpp. Compiled with -mavx2 -mfma
// -mf16c; used only when the CPU reports AVX2 and FMA.
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
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
            return avx2_int8_blocks32_rows_kernel(t);  // matmul_int8_rows8_avx2.cpp
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
