// NEON f32-activation kernels for the K-quant weight formats (Q4_K, Q5_K,
// Q6_K), aarch64 only. Per 256-element super-block the quants are unpacked
// once into a stack buffer of bytes in element order and the sub-block
// scales (and mins) into floats; each sub-block's partial sum q . x is
// computed in f32 and scaled by its sub-block scale. Same reproducibility
// rules as matmul_f32act_neon.cpp.
#include "backend/cpu/matmul_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <type_traits>

#include "backend/cpu/matmul_neon_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace neon;

// q . x over 32 elements (unsigned quants q8[0..32)) in two chains.
static inline float32x4_t dot32(const float32x4_t q[8], const float* xb) {
    float32x4_t s0 = vmulq_f32(q[0], vld1q_f32(xb));
    float32x4_t s1 = vmulq_f32(q[1], vld1q_f32(xb + 4));
    s0 = vfmaq_f32(s0, q[2], vld1q_f32(xb + 8));
    s1 = vfmaq_f32(s1, q[3], vld1q_f32(xb + 12));
    s0 = vfmaq_f32(s0, q[4], vld1q_f32(xb + 16));
    s1 = vfmaq_f32(s1, q[5], vld1q_f32(xb + 20));
    s0 = vfmaq_f32(s0, q[6], vld1q_f32(xb + 24));
    s1 = vfmaq_f32(s1, q[7], vld1q_f32(xb + 28));
    return vaddq_f32(s0, s1);
}

static inline const uint8_t* fifth_bits(const BlockQ4_K&) { return nullptr; }
static inline const uint8_t* fifth_bits(const BlockQ5_K& b) { return b.qh; }

// Q4_K and Q5_K: 8 sub-blocks of 32, w = (d * sc[s]) * q - (dmin * mn[s]).
template <bool kFiveBit>
struct Q45K {
    using Block = typename std::conditional<kFiveBit, BlockQ5_K, BlockQ4_K>::type;

    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const Block* w = reinterpret_cast<const Block*>(weight_row(job, r));
            const int64_t nb = job.k_dim / kQK_K;
            const int64_t n32 = job.k_dim / kQK;
            const float* x[NT];
            const float* xsum[NT];  // per-32 sums of x
            float32x4_t acc[NT];    // sum of (d * sc) * (q . x)
            float32x4_t corr[NT];   // -sum of (dmin * mn) * sum(x), one lane per sub-block position mod 4
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = token_x(job, t0 + j);
                xsum[j] = job.block_sums + static_cast<size_t>(t0 + j) * static_cast<size_t>(n32);
                acc[j] = vdupq_n_f32(0.0f);
                corr[j] = vdupq_n_f32(0.0f);
            }
            alignas(16) uint8_t q8[kQK_K];
            alignas(16) float scale[8];
            for (int64_t i = 0; i < nb; ++i) {
                const Block& blk = w[i];
                const ScalesMins sm = unpack_scales_mins(blk.scales);
                const float d = half_to_float(blk.d);
                const float dmin = half_to_float(blk.dmin);
                float32x4_t sc[2], mn[2];
                u8x8_to_f32(sm.sc, sc);
                u8x8_to_f32(sm.mn, mn);
                vst1q_f32(scale, vmulq_n_f32(sc[0], d));
                vst1q_f32(scale + 4, vmulq_n_f32(sc[1], d));
                const float32x4_t min[2] = {vmulq_n_f32(mn[0], dmin), vmulq_n_f32(mn[1], dmin)};
                unpack_q45k(blk.qs, fifth_bits(blk), q8);
                // The mins of all 8 sub-blocks against their 8 activation sums.
                EKV_NEON_UNROLL
                for (int j = 0; j < NT; ++j) {
                    corr[j] = vfmsq_f32(corr[j], min[0], vld1q_f32(xsum[j] + 8 * i));
                    corr[j] = vfmsq_f32(corr[j], min[1], vld1q_f32(xsum[j] + 8 * i + 4));
                }
                for (int s = 0; s < 8; ++s) {
                    float32x4_t q[8];
                    EKV_NEON_UNROLL
                    for (int c = 0; c < 4; ++c) u8x8_to_f32(q8 + 32 * s + 8 * c, q + 2 * c);
                    EKV_NEON_UNROLL
                    for (int j = 0; j < NT; ++j) {
                        acc[j] = vfmaq_n_f32(acc[j], dot32(q, x[j] + kQK_K * i + kQK * s), scale[s]);
                    }
                }
            }
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) *out_at(job, t0 + j, r) = vaddvq_f32(acc[j]) + vaddvq_f32(corr[j]);
        }
    };
};

// Q6_K: 16 sub-blocks of 16, w = (d * scales[s]) * (q - 32). Even and odd
// sub-blocks accumulate separately (two FMA chains per token).
template <int NT>
struct Q6KTile {
    static void run(const MatmulJob& job, int64_t r, int t0) {
        const BlockQ6_K* w = reinterpret_cast<const BlockQ6_K*>(weight_row(job, r));
        const int64_t nb = job.k_dim / kQK_K;
        const float* x[NT];
        float32x4_t acc_even[NT], acc_odd[NT];
        EKV_NEON_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = token_x(job, t0 + j);
            acc_even[j] = vdupq_n_f32(0.0f);
            acc_odd[j] = vdupq_n_f32(0.0f);
        }
        alignas(16) uint8_t q8[kQK_K];
        alignas(16) float scale[16];
        for (int64_t i = 0; i < nb; ++i) {
            const BlockQ6_K& blk = w[i];
            const float d = half_to_float(blk.d);
            float32x4_t s4[4];
            s8x16_to_f32(vld1q_s8(blk.scales), s4);
            EKV_NEON_UNROLL
            for (int c = 0; c < 4; ++c) vst1q_f32(scale + 4 * c, vmulq_n_f32(s4[c], d));
            unpack_q6k(blk.ql, blk.qh, q8);
            for (int s = 0; s < 16; s += 2) {  // two sub-blocks of 16 = 32 elements per step
                float32x4_t q[8];
                s8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(vld1q_u8(q8 + 16 * s)), vdupq_n_s8(32)), q);
                s8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(vld1q_u8(q8 + 16 * s + 16)), vdupq_n_s8(32)), q + 4);
                EKV_NEON_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const float* xb = x[j] + kQK_K * i + 16 * s;
                    float32x4_t p0 = vmulq_f32(q[0], vld1q_f32(xb));
                    float32x4_t p1 = vmulq_f32(q[4], vld1q_f32(xb + 16));
                    p0 = vfmaq_f32(p0, q[1], vld1q_f32(xb + 4));
                    p1 = vfmaq_f32(p1, q[5], vld1q_f32(xb + 20));
                    p0 = vfmaq_f32(p0, q[2], vld1q_f32(xb + 8));
                    p1 = vfmaq_f32(p1, q[6], vld1q_f32(xb + 24));
                    p0 = vfmaq_f32(p0, q[3], vld1q_f32(xb + 12));
                    p1 = vfmaq_f32(p1, q[7], vld1q_f32(xb + 28));
                    acc_even[j] = vfmaq_n_f32(acc_even[j], p0, scale[s]);
                    acc_odd[j] = vfmaq_n_f32(acc_odd[j], p1, scale[s + 1]);
                }
            }
        }
        EKV_NEON_UNROLL
        for (int j = 0; j < NT; ++j) *out_at(job, t0 + j, r) = vaddvq_f32(vaddq_f32(acc_even[j], acc_odd[j]));
    }
};

}  // namespace

RowsKernel neon_f32act_kquant_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_K: return drive_tiles<Q45K<false>::Tile>;
        case DType::Q5_K: return drive_tiles<Q45K<true>::Tile>;
        case DType::Q6_K: return drive_tiles<Q6KTile>;
        default: return nullptr;
    }
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
