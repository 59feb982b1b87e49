// Helpers shared by the NEON kernel files (aarch64 only). One of them,
// matmul_int8_dotprod.cpp, is compiled with -march=armv8.2-a+dotprod, so
// everything here is static (internal linkage) on purpose: see
// matmul_kernels.h. The NEON files are also compiled with -ffp-contract=off:
// a multiply and an add are only fused where an intrinsic says so (vfmaq),
// never by the compiler in one template instance and not in another, which
// would break the bitwise reproducibility across token tiles.
#pragma once
#if defined(__aarch64__)
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/matmul_kernels.h"

// Fully unroll the small fixed-count loops (over the tokens of a tile, the
// chunks of a block) so accumulator arrays live in registers.
#if defined(__clang__)
#define EKV_NEON_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define EKV_NEON_UNROLL _Pragma("GCC unroll 16")
#else
#define EKV_NEON_UNROLL
#endif

namespace ekv {
namespace cpu {
namespace detail {
namespace neon {

static inline float half_to_float(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static inline uint16_t load_u16(const void* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

static inline uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// 16 signed bytes -> 4 x 4 floats (exact), element order.
static inline void s8x16_to_f32(int8x16_t v, float32x4_t out[4]) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(v));
    const int16x8_t hi = vmovl_high_s8(v);
    out[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    out[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    out[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    out[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

// 8 unsigned bytes -> 2 x 4 floats (exact).
static inline void u8x8_to_f32(const uint8_t* p, float32x4_t out[2]) {
    const uint16x8_t w = vmovl_u8(vld1_u8(p));
    out[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(w)));
    out[1] = vcvtq_f32_u32(vmovl_high_u16(w));
}

// 16 bytes of packed nibbles -> element order: [0] the low nibbles (elements
// 0..15), [1] the high nibbles (16..31).
static inline void unpack_nibbles16(const uint8_t* qs, uint8x16_t out[2]) {
    const uint8x16_t b = vld1q_u8(qs);
    out[0] = vandq_u8(b, vdupq_n_u8(0x0F));
    out[1] = vshrq_n_u8(b, 4);
}

// Bit j of `bits` -> byte j = 0x10 when set, else 0 (the fifth bit of Q5_0/Q5_1
// quants), for j in [0, 16) in [0] and [16, 32) in [1].
static inline void bits_to_fifth_bit(uint32_t bits, uint8x16_t out[2]) {
    static const uint8_t kIdx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t table = vreinterpretq_u8_u32(vdupq_n_u32(bits));
    const uint8x16_t bit = vld1q_u8(kBit);
    const uint8x16_t fifth = vdupq_n_u8(0x10);
    out[0] = vandq_u8(vtstq_u8(vqtbl1q_u8(table, vld1q_u8(kIdx)), bit), fifth);
    out[1] = vandq_u8(vtstq_u8(vqtbl1q_u8(table, vld1q_u8(kIdx + 16)), bit), fifth);
}

// The eight 6-bit scales and mins of a Q4_K/Q5_K block (layout as
// unpack_scale_min_k4), decoded four at a time from 32-bit words.
struct ScalesMins {
    uint8_t sc[8];
    uint8_t mn[8];
};

static inline ScalesMins unpack_scales_mins(const uint8_t* packed) {
    uint32_t a[3];
    std::memcpy(a, packed, 12);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, low2 = 0x03030303u;
    const uint32_t sc_lo = a[0] & low6;
    const uint32_t mn_lo = a[1] & low6;
    const uint32_t sc_hi = (a[2] & low4) | (((a[0] >> 6) & low2) << 4);
    const uint32_t mn_hi = ((a[2] >> 4) & low4) | (((a[1] >> 6) & low2) << 4);
    ScalesMins s;
    std::memcpy(s.sc, &sc_lo, 4);
    std::memcpy(s.sc + 4, &sc_hi, 4);
    std::memcpy(s.mn, &mn_lo, 4);
    std::memcpy(s.mn + 4, &mn_hi, 4);
    return s;
}

// Q4_K/Q5_K quants of one super-block -> 256 unsigned bytes in element order:
// sub-block 2c is the low nibbles of qs[32c..32c+32), sub-block 2c+1 the high
// ones; Q5_K adds bit s of qh[l] as bit 4 of element l of sub-block s.
static inline void unpack_q45k(const uint8_t* qs, const uint8_t* qh, uint8_t* out) {
    const uint8x16_t low4 = vdupq_n_u8(0x0F);
    const uint8x16_t one = vdupq_n_u8(1);
    uint8x16_t high[2] = {vdupq_n_u8(0), vdupq_n_u8(0)};  // shifted right by 2c below
    if (qh) {
        high[0] = vld1q_u8(qh);
        high[1] = vld1q_u8(qh + 16);
    }
    for (int c = 0; c < 4; ++c) {
        EKV_NEON_UNROLL
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t bytes = vld1q_u8(qs + 32 * c + 16 * h);
            uint8x16_t lo = vandq_u8(bytes, low4);
            uint8x16_t hi = vshrq_n_u8(bytes, 4);
            if (qh) {
                lo = vorrq_u8(lo, vshlq_n_u8(vandq_u8(high[h], one), 4));
                hi = vorrq_u8(hi, vshlq_n_u8(vandq_u8(vshrq_n_u8(high[h], 1), one), 4));
                high[h] = vshrq_n_u8(high[h], 2);
            }
            vst1q_u8(out + 64 * c + 16 * h, lo);
            vst1q_u8(out + 64 * c + 32 + 16 * h, hi);
        }
    }
}

// Q6_K quants of one super-block -> 256 unsigned bytes (0..63) in element
// order (the interleave of dequantize_row's Q6_K decoder): per half of 128,
// element 32m + l takes nibble (m / 2) of ql[l + 32 (m % 2)] and bits 2m..2m+1
// of qh[l].
static inline void unpack_q6k(const uint8_t* ql_all, const uint8_t* qh_all, uint8_t* out) {
    const uint8x16_t low4 = vdupq_n_u8(0x0F);
    const uint8x16_t low2 = vdupq_n_u8(0x03);
    for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = ql_all + 64 * half;
        const uint8_t* qh = qh_all + 32 * half;
        uint8_t* o = out + 128 * half;
        EKV_NEON_UNROLL
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t l0 = vld1q_u8(ql + 16 * h);
            const uint8x16_t l1 = vld1q_u8(ql + 32 + 16 * h);
            const uint8x16_t hb = vld1q_u8(qh + 16 * h);
            vst1q_u8(o + 16 * h, vorrq_u8(vandq_u8(l0, low4), vshlq_n_u8(vandq_u8(hb, low2), 4)));
            vst1q_u8(o + 32 + 16 * h, vorrq_u8(vandq_u8(l1, low4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), low2), 4)));
            vst1q_u8(o + 64 + 16 * h, vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), low2), 4)));
            vst1q_u8(o + 96 + 16 * h, vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4)));
        }
    }
}

// Runs Tile<NT>::run(job, r, t0) over rows [r0, r1) and all tokens, in token
// tiles of kTokenTile (remainder tiles of 1..3) and row blocks of kRowBlock.
template <template <int> class Tile>
static void drive_tiles(const MatmulJob& job, int64_t r0, int64_t r1) {
    for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
        const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
        int t0 = 0;
        for (; t0 + kTokenTile <= job.ntok; t0 += kTokenTile) {
            for (int64_t r = rb; r < re; ++r) Tile<kTokenTile>::run(job, r, t0);
        }
        switch (job.ntok - t0) {
            case 3: for (int64_t r = rb; r < re; ++r) Tile<3>::run(job, r, t0); break;
            case 2: for (int64_t r = rb; r < re; ++r) Tile<2>::run(job, r, t0); break;
            case 1: for (int64_t r = rb; r < re; ++r) Tile<1>::run(job, r, t0); break;
            default: break;
        }
    }
}

static inline const uint8_t* weight_row(const MatmulJob& job, int64_t r) {
    return job.w + static_cast<size_t>(r) * job.w_row_bytes;
}

static inline const uint8_t* act_row(const MatmulJob& job, int t) {
    return job.act + static_cast<size_t>(t) * job.act_row_bytes;
}

// Token t's f32 activations (f32-activation kernels).
static inline const float* token_x(const MatmulJob& job, int t) {
    return reinterpret_cast<const float*>(act_row(job, t));
}

static inline float* out_at(const MatmulJob& job, int t, int64_t r) {
    return job.y + static_cast<size_t>(t) * static_cast<size_t>(job.rows) + static_cast<size_t>(r);
}

}  // namespace neon
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
