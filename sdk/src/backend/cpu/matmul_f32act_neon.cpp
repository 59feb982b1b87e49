// NEON (aarch64 Advanced SIMD, baseline on every ARMv8-A CPU) f32-activation
// matmul kernels for the float weight types and the 32-element block
// formats, plus the per-block activation sums. The structure follows the
// AVX2 set: quantized weights are decoded in registers one block at a time
// (w = d * c + m, c the quants centred on zero) and applied to a tile of up
// to kTokenTile tokens, every token of a tile running a lone token's
// operation sequence (matmul_kernels.h). Compiled only for aarch64, with
// -ffp-contract=off (see matmul_neon_util.h).
#include "backend/cpu/matmul_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include "backend/cpu/matmul_neon_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace neon;

// ---- float weights: widen 4 at a time, FMA against f32 x -----------------

struct F32Weights {
    static float32x4_t load4(const uint8_t* w, int64_t k) { return vld1q_f32(reinterpret_cast<const float*>(w) + k); }
    static float load1(const uint8_t* w, int64_t k) {
        float v;
        std::memcpy(&v, w + 4 * k, 4);
        return v;
    }
};

struct F16Weights {
    static float32x4_t load4(const uint8_t* w, int64_t k) {
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(w + 2 * k))));
    }
    static float load1(const uint8_t* w, int64_t k) { return half_to_float(load_u16(w + 2 * k)); }
};

struct BF16Weights {
    static float32x4_t load4(const uint8_t* w, int64_t k) {
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(w + 2 * k)), 16));
    }
    static float load1(const uint8_t* w, int64_t k) {
        const uint32_t bits = static_cast<uint32_t>(load_u16(w + 2 * k)) << 16;
        float v;
        std::memcpy(&v, &bits, 4);
        return v;
    }
};

template <class L>
struct FloatRows {
    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const uint8_t* w = weight_row(job, r);
            const float* x[NT];
            float32x4_t acc[4][NT];  // four FMA chains per token
            float tail[NT];
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = token_x(job, t0 + j);
                for (int a = 0; a < 4; ++a) acc[a][j] = vdupq_n_f32(0.0f);
                tail[j] = 0.0f;
            }
            const int64_t K = job.k_dim;
            int64_t k = 0;
            for (; k + 16 <= K; k += 16) {
                float32x4_t wv[4];
                EKV_NEON_UNROLL
                for (int a = 0; a < 4; ++a) wv[a] = L::load4(w, k + 4 * a);
                EKV_NEON_UNROLL
                for (int j = 0; j < NT; ++j) {
                    EKV_NEON_UNROLL
                    for (int a = 0; a < 4; ++a) acc[a][j] = vfmaq_f32(acc[a][j], wv[a], vld1q_f32(x[j] + k + 4 * a));
                }
            }
            for (; k + 4 <= K; k += 4) {
                const float32x4_t w0 = L::load4(w, k);
                EKV_NEON_UNROLL
                for (int j = 0; j < NT; ++j) acc[0][j] = vfmaq_f32(acc[0][j], w0, vld1q_f32(x[j] + k));
            }
            for (; k < K; ++k) {
                const float wk = L::load1(w, k);
                EKV_NEON_UNROLL
                for (int j = 0; j < NT; ++j) tail[j] += wk * x[j][k];
            }
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                const float32x4_t s = vaddq_f32(vaddq_f32(acc[0][j], acc[1][j]), vaddq_f32(acc[2][j], acc[3][j]));
                *out_at(job, t0 + j, r) = vaddvq_f32(s) + tail[j];
            }
        }
    };
};

// ---- 32-element block formats --------------------------------------------
// Each format gives a block's quants centred on zero (c = q - kCenter, exact
// small integers) as 32 signed bytes in element order; d is the half at the
// block's start; m is 0, or for Q4_1/Q5_1 (kOffset) the stored offset plus
// kCenter * d (exact: both halves within a few binades). Centring keeps the
// offset term m * sum(x) small, as in the AVX2 kernels.

static inline void centred_nibbles(const uint8_t* qs, int8x16_t c[2]) {
    uint8x16_t q[2];
    unpack_nibbles16(qs, q);
    c[0] = vsubq_s8(vreinterpretq_s8_u8(q[0]), vdupq_n_s8(8));
    c[1] = vsubq_s8(vreinterpretq_s8_u8(q[1]), vdupq_n_s8(8));
}

static inline void centred_five_bit(const uint8_t* qs, const uint8_t* qh, int8x16_t c[2]) {
    uint8x16_t q[2], h[2];
    unpack_nibbles16(qs, q);
    bits_to_fifth_bit(load_u32(qh), h);
    c[0] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(q[0], h[0])), vdupq_n_s8(16));
    c[1] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(q[1], h[1])), vdupq_n_s8(16));
}

struct Q4_0Format {
    using Block = BlockQ4_0;
    static constexpr bool kOffset = false;
    static constexpr float kCenter = 8.0f;
    static void quants(const Block& b, int8x16_t c[2]) { centred_nibbles(b.qs, c); }
};

struct Q4_1Format {
    using Block = BlockQ4_1;
    static constexpr bool kOffset = true;
    static constexpr float kCenter = 8.0f;
    static void quants(const Block& b, int8x16_t c[2]) { centred_nibbles(b.qs, c); }
};

struct Q5_0Format {
    using Block = BlockQ5_0;
    static constexpr bool kOffset = false;
    static constexpr float kCenter = 16.0f;
    static void quants(const Block& b, int8x16_t c[2]) { centred_five_bit(b.qs, b.qh, c); }
};

struct Q5_1Format {
    using Block = BlockQ5_1;
    static constexpr bool kOffset = true;
    static constexpr float kCenter = 16.0f;
    static void quants(const Block& b, int8x16_t c[2]) { centred_five_bit(b.qs, b.qh, c); }
};

struct Q8_0Format {
    using Block = BlockQ8_0;
    static constexpr bool kOffset = false;
    static constexpr float kCenter = 0.0f;
    static void quants(const Block& b, int8x16_t c[2]) {
        c[0] = vld1q_s8(b.qs);
        c[1] = vld1q_s8(b.qs + 16);
    }
};

// d and m of one block (m = 0 without kOffset). d and the stored m are the
// block's first two halves for the offset formats.
template <class F>
static inline float block_scale(const typename F::Block& b, float* m) {
    const float d = half_to_float(load_u16(&b));
    *m = F::kOffset ? half_to_float(load_u16(reinterpret_cast<const uint8_t*>(&b) + 2)) + F::kCenter * d : 0.0f;
    return d;
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
            float32x4_t acc[NT];    // sum over blocks of d * (c . x), 4 lanes
            float corr[NT];         // sum over blocks of m * sum(x)
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = token_x(job, t0 + j);
                xsum[j] = F::kOffset ? job.block_sums + static_cast<size_t>(t0 + j) * static_cast<size_t>(nb)
                                     : nullptr;
                acc[j] = vdupq_n_f32(0.0f);
                corr[j] = 0.0f;
            }
            for (int64_t b = 0; b < nb; ++b) {
                float m;
                const float d = block_scale<F>(w[b], &m);
                int8x16_t c8[2];
                F::quants(w[b], c8);
                float32x4_t q[8];
                s8x16_to_f32(c8[0], q);
                s8x16_to_f32(c8[1], q + 4);
                EKV_NEON_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const float* xb = x[j] + kQK * b;
                    // Two chains of four products each, then d * their sum.
                    float32x4_t s0 = vmulq_f32(q[0], vld1q_f32(xb));
                    float32x4_t s1 = vmulq_f32(q[1], vld1q_f32(xb + 4));
                    s0 = vfmaq_f32(s0, q[2], vld1q_f32(xb + 8));
                    s1 = vfmaq_f32(s1, q[3], vld1q_f32(xb + 12));
                    s0 = vfmaq_f32(s0, q[4], vld1q_f32(xb + 16));
                    s1 = vfmaq_f32(s1, q[5], vld1q_f32(xb + 20));
                    s0 = vfmaq_f32(s0, q[6], vld1q_f32(xb + 24));
                    s1 = vfmaq_f32(s1, q[7], vld1q_f32(xb + 28));
                    acc[j] = vfmaq_n_f32(acc[j], vaddq_f32(s0, s1), d);
                    if (F::kOffset) corr[j] += m * xsum[j][b];
                }
            }
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                const float dot = vaddvq_f32(acc[j]);
                *out_at(job, t0 + j, r) = F::kOffset ? dot + corr[j] : dot;
            }
        }
    };
};

// ---- per-block activation sums (for the weight offsets m) ---------------

void block_sums_neon(const float* x, void* dst, int64_t n) {
    float* out = static_cast<float*>(dst);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float32x4_t a = vaddq_f32(vaddq_f32(vld1q_f32(x), vld1q_f32(x + 4)),
                                        vaddq_f32(vld1q_f32(x + 8), vld1q_f32(x + 12)));
        const float32x4_t b = vaddq_f32(vaddq_f32(vld1q_f32(x + 16), vld1q_f32(x + 20)),
                                        vaddq_f32(vld1q_f32(x + 24), vld1q_f32(x + 28)));
        out[i] = vaddvq_f32(vaddq_f32(a, b));
    }
}

RowsKernel neon_f32act_rows_kernel(DType t) {
    switch (t) {
        case DType::F32: return drive_tiles<FloatRows<F32Weights>::Tile>;
        case DType::F16: return drive_tiles<FloatRows<F16Weights>::Tile>;
        case DType::BF16: return drive_tiles<FloatRows<BF16Weights>::Tile>;
        case DType::Q4_0: return drive_tiles<Blocks32<Q4_0Format>::Tile>;
        case DType::Q4_1: return drive_tiles<Blocks32<Q4_1Format>::Tile>;
        case DType::Q5_0: return drive_tiles<Blocks32<Q5_0Format>::Tile>;
        case DType::Q5_1: return drive_tiles<Blocks32<Q5_1Format>::Tile>;
        case DType::Q8_0: return drive_tiles<Blocks32<Q8_0Format>::Tile>;
        default: return neon_f32act_kquant_rows_kernel(t);
    }
}

}  // namespace

const F32ActKernels* neon_f32act_kernels() {
    static const F32ActKernels set = {block_sums_neon, neon_f32act_rows_kernel};
    return &set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
