// NEON attention kernels (aarch64, Advanced SIMD is baseline): plain F16/F32
// rows and KIVI 2/4/8-bit segments, for packs of 1..8 query heads (templated
// so every accumulator of a pack lives in a register). The structure is the
// AVX2 set's (cpu_attention_avx2.cpp), with a "unit" of 8 channels held in
// two 4-lane vectors:
//  - Rows are decoded in units of 8 bytes of codes (KIVI) or 8 elements
//    (plain): one load gives 8 / nbits planes of 8 consecutive channels,
//    plane s of unit u holding channels s * L + 8u .. + 7 (L = head_dim *
//    nbits / 8, the layout of core/kivi.h).
//  - Keys: every key row is decoded once and dotted with all queries of the
//    pack. KIVI keys are scored as dot(q * scale, codes) + dot(q, min), the
//    scaled queries and the bias computed once per key group.
//  - Values: channel units outer, keys inner, so the pack's accumulators stay
//    in registers over a block. KIVI values add (w * scale) * code per key
//    and the w * min terms once per block and channel group.
// Compiled only for aarch64, with -ffp-contract=off (see matmul_neon_util.h).
#include "backend/cpu/cpu_attention_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__clang__)
#define EKV_ATTN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define EKV_ATTN_UNROLL _Pragma("GCC unroll 16")
#else
#define EKV_ATTN_UNROLL
#endif

namespace ekv {
namespace cpu {
namespace detail {
namespace {

constexpr int kMaxWeightRows = 64;  // KIVI values: pack heads x channel groups of a head

// ---- vector helpers --------------------------------------------------------

// Eight floats: one unit of channels.
struct F8 {
    float32x4_t lo, hi;
};

inline F8 zero8() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
inline F8 load8(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
inline void store8(float* p, F8 v) {
    vst1q_f32(p, v.lo);
    vst1q_f32(p + 4, v.hi);
}
inline F8 fma8(F8 acc, F8 a, F8 b) { return {vfmaq_f32(acc.lo, a.lo, b.lo), vfmaq_f32(acc.hi, a.hi, b.hi)}; }
inline F8 fma8(F8 acc, F8 a, float s) { return {vfmaq_n_f32(acc.lo, a.lo, s), vfmaq_n_f32(acc.hi, a.hi, s)}; }
inline F8 mul8(F8 a, F8 b) { return {vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
inline F8 add8(F8 a, float s) { return {vaddq_f32(a.lo, vdupq_n_f32(s)), vaddq_f32(a.hi, vdupq_n_f32(s))}; }
inline float hsum8(F8 v) { return vaddvq_f32(vaddq_f32(v.lo, v.hi)); }
inline F8 halves8(const uint8_t* p) {  // 8 halves (unaligned) -> floats
    const uint16x8_t h = vld1q_u16(reinterpret_cast<const uint16_t*>(p));
    return {vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))), vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h)))};
}
inline F8 u16x8_to_f8(uint16x8_t v) { return {vcvtq_f32_u32(vmovl_u16(vget_low_u16(v))), vcvtq_f32_u32(vmovl_high_u16(v))}; }

// exp(x) for x <= 0 (a score minus the running max): 2^n * e^r with
// |r| <= ln2 / 2 and e^r by its Taylor series to degree 7 (relative error
// < 1e-7). Inputs below -87 (and NaN) give exp(-87) ~ 1.6e-38, not a
// denormal; masked lanes are zeroed by the caller.
inline float32x4_t exp_nonpos(float32x4_t x) {
    x = vmaxnmq_f32(x, vdupq_n_f32(-87.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    // r = x - n * ln2 with ln2 split in two so n * ln2_hi is exact.
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606820309417e-06f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

inline float exp_nonpos1(float x) { return vgetq_lane_f32(exp_nonpos(vdupq_n_f32(x)), 0); }

inline float load_half(const uint8_t* p) {
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// Rows of the next block, prefetched one row per key of the current block
// (see cpu_attention_avx2.cpp for why).
struct RowPrefetch {
    const uint8_t* p = nullptr;
    size_t stride = 0;
    int rows = 0;
    size_t bytes = 0;
    void row(int r) const {
        if (r >= rows) return;
        const uint8_t* c = p + static_cast<size_t>(r) * stride;
        for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 3);
        __builtin_prefetch(c + bytes - 1, 0, 3);  // the last line of an unaligned run
    }
};

struct NextRows {
    RowPrefetch part[3];
    int count = 0;
    void add(const uint8_t* p, size_t stride, int rows, size_t bytes) {
        if (rows > 0 && bytes > 0) part[count++] = RowPrefetch{p, stride, rows, bytes};
    }
    void row(int r) const {
        for (int i = 0; i < count; ++i) part[i].row(r);
    }
};

// ---- row formats: units(head_dim) units of kPlanes x 8 channels ------------

struct F32Rows {
    static constexpr int kPlanes = 1;
    static constexpr size_t kElemBytes = 4;
    static int units(int hd) { return hd / 8; }
    static int run(int hd) { return hd; }
    static void load(const uint8_t* row, int u, F8* out) { out[0] = load8(reinterpret_cast<const float*>(row) + 8 * u); }
};

struct F16Rows {
    static constexpr int kPlanes = 1;
    static constexpr size_t kElemBytes = 2;
    static int units(int hd) { return hd / 8; }
    static int run(int hd) { return hd; }
    static void load(const uint8_t* row, int u, F8* out) { out[0] = halves8(row + 16 * u); }
};

template <int NB>
struct KiviRows {
    static constexpr int kPlanes = 8 / NB;
    static int units(int hd) { return hd * NB / 64; }
    static int run(int hd) { return hd * NB / 8; }  // L
    static void load(const uint8_t* row, int u, F8* out) {
        const uint16x8_t raw = vmovl_u8(vld1_u8(row + 8 * u));
        const uint16x8_t mask = vdupq_n_u16((1 << NB) - 1);
        EKV_ATTN_UNROLL
        for (int s = 0; s < kPlanes; ++s) {
            uint16x8_t v = s == 0 ? raw : vshlq_u16(raw, vdupq_n_s16(static_cast<int16_t>(-NB * s)));
            if (s + 1 < kPlanes) v = vandq_u16(v, mask);  // the top plane has no higher bits
            out[s] = u16x8_to_f8(v);
        }
    }
};

// ---- one block of up to kAttnBlock keys ------------------------------------

// s[j][jj] = dot(q_j, key row jj) + bias[j] for jj < n (rows `stride` apart).
template <int NQ, class Rows>
void block_scores(const uint8_t* row0, size_t stride, int n, const float* q, int hd, const float* bias,
                  const NextRows& next, float (*s)[kAttnBlock]) {
    const int units = Rows::units(hd);
    const int run = Rows::run(hd);
    for (int jj = 0; jj < n; ++jj) {
        const uint8_t* row = row0 + static_cast<size_t>(jj) * stride;
        next.row(jj);
        F8 acc[NQ];
        EKV_ATTN_UNROLL
        for (int j = 0; j < NQ; ++j) acc[j] = zero8();
        for (int u = 0; u < units; ++u) {
            F8 k[Rows::kPlanes];
            Rows::load(row, u, k);
            EKV_ATTN_UNROLL
            for (int p = 0; p < Rows::kPlanes; ++p) {
                const float* qc = q + p * run + 8 * u;
                EKV_ATTN_UNROLL
                for (int j = 0; j < NQ; ++j) acc[j] = fma8(acc[j], load8(qc + static_cast<size_t>(j) * hd), k[p]);
            }
        }
        EKV_ATTN_UNROLL
        for (int j = 0; j < NQ; ++j) s[j][jj] = hsum8(acc[j]) + bias[j];
    }
    for (int jj = n; jj < kAttnBlock; ++jj) next.row(jj);  // a short block still fetches the next one's rows
}

// Soft-capping (Gemma 2) is rare enough that scalar tanh is fine.
template <int NQ>
void capped_scores(float (*s)[kAttnBlock], int n, float cap) {
    const float inv = 1.0f / cap;
    for (int j = 0; j < NQ; ++j)
        for (int i = 0; i < n; ++i) s[j][i] = cap * std::tanh(s[j][i] * inv);
}

// Online-softmax step: rescales the state to the block's max and turns the
// scores s[j][0..n) into weights (0 beyond n), adding them to the sums.
template <int NQ>
void softmax_block(float (*s)[kAttnBlock], int n, int hd, AttnState& st) {
    constexpr int kChunks = kAttnBlock / 4;
    static const uint32_t kIota[4] = {0, 1, 2, 3};
    const uint32x4_t iota = vld1q_u32(kIota);
    uint32x4_t valid[kChunks];
    for (int c = 0; c < kChunks; ++c)
        valid[c] = vcltq_u32(vaddq_u32(iota, vdupq_n_u32(4u * c)), vdupq_n_u32(static_cast<uint32_t>(n)));
    const float32x4_t neg_inf = vdupq_n_f32(-__builtin_inff());
    for (int j = 0; j < NQ; ++j) {
        float32x4_t v[kChunks];
        float32x4_t vmax = neg_inf;
        for (int c = 0; c < kChunks; ++c) {
            v[c] = vbslq_f32(valid[c], vld1q_f32(s[j] + 4 * c), neg_inf);
            vmax = vmaxq_f32(vmax, v[c]);
        }
        const float bm = vmaxvq_f32(vmax);
        if (bm > st.max[j]) {
            const float r = exp_nonpos1(st.max[j] - bm);
            st.sum[j] *= r;
            float* acc = st.acc + static_cast<size_t>(j) * hd;
            for (int c = 0; c < hd; c += 4) vst1q_f32(acc + c, vmulq_n_f32(vld1q_f32(acc + c), r));
            st.max[j] = bm;
        }
        const float32x4_t mv = vdupq_n_f32(st.max[j]);
        float32x4_t sum = vdupq_n_f32(0.0f);
        for (int c = 0; c < kChunks; ++c) {
            const float32x4_t e = exp_nonpos(vsubq_f32(v[c], mv));
            const float32x4_t w = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), valid[c]));
            vst1q_f32(s[j] + 4 * c, w);
            sum = vaddq_f32(sum, w);
        }
        st.sum[j] += vaddvq_f32(sum);
    }
}

// acc_j += sum_jj w[j][jj] * value row jj, plain rows.
template <int NQ, class Rows>
void block_values_plain(const uint8_t* row0, size_t stride, int n, const float (*w)[kAttnBlock], int hd,
                        float* acc) {
    const int units = Rows::units(hd);
    for (int u = 0; u < units; ++u) {
        F8 a[NQ];
        EKV_ATTN_UNROLL
        for (int j = 0; j < NQ; ++j) a[j] = load8(acc + static_cast<size_t>(j) * hd + 8 * u);
        for (int jj = 0; jj < n; ++jj) {
            F8 v[1];
            Rows::load(row0 + static_cast<size_t>(jj) * stride, u, v);
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) a[j] = fma8(a[j], v[0], w[j][jj]);
        }
        EKV_ATTN_UNROLL
        for (int j = 0; j < NQ; ++j) store8(acc + static_cast<size_t>(j) * hd + 8 * u, a[j]);
    }
}

// Where one head's channels fall in the value rows' channel groups.
struct ValueGroups {
    int64_t head_ch0;  // absolute channel of the head's channel 0
    int group;         // G
    int64_t first;     // first group touching the head
    int count;         // groups touching the head
    int of(int c) const { return static_cast<int>((head_ch0 + c) / group - first); }
};

// KIVI values: acc_j += sum_jj (w * scale_g) * code + (sum_jj w * min_g).
template <int NQ, int NB>
void block_values_kivi(const uint8_t* vrow0, size_t stride, size_t head_codes, size_t code_bytes, int n,
                       const float (*w)[kAttnBlock], int hd, const ValueGroups& vg, float* acc) {
    using Rows = KiviRows<NB>;
    alignas(16) float scale[kMaxWeightRows][kAttnBlock];
    alignas(16) float mins[kMaxWeightRows][kAttnBlock];
    alignas(16) float ws[kMaxWeightRows][kAttnBlock];  // row g * NQ + j: w[j][jj] * scale[g][jj]
    float min_sum[kMaxWeightRows];                      // g * NQ + j: sum_jj w[j][jj] * min[g][jj]
    for (int g = 0; g < vg.count; ++g) {
        for (int jj = 0; jj < kAttnBlock; ++jj) {
            if (jj < n) {
                const uint8_t* pair = vrow0 + static_cast<size_t>(jj) * stride + code_bytes + 4 * (vg.first + g);
                scale[g][jj] = load_half(pair);
                mins[g][jj] = load_half(pair + 2);
            } else {
                scale[g][jj] = 0.f;  // weights are 0 there too: keep garbage out of the products
                mins[g][jj] = 0.f;
            }
        }
        for (int j = 0; j < NQ; ++j) {
            float32x4_t msum = vdupq_n_f32(0.0f);
            for (int b = 0; b < kAttnBlock; b += 4) {
                const float32x4_t wv = vld1q_f32(w[j] + b);
                vst1q_f32(ws[g * NQ + j] + b, vmulq_f32(wv, vld1q_f32(scale[g] + b)));
                msum = vfmaq_f32(msum, wv, vld1q_f32(mins[g] + b));
            }
            min_sum[g * NQ + j] = vaddvq_f32(msum);
        }
    }
    const int units = Rows::units(hd);
    const int run = Rows::run(hd);
    const uint8_t* codes0 = vrow0 + head_codes;
    for (int u = 0; u < units; ++u) {
        F8 a[NQ][Rows::kPlanes];
        const float* wrow[Rows::kPlanes];
        EKV_ATTN_UNROLL
        for (int p = 0; p < Rows::kPlanes; ++p) {
            wrow[p] = ws[vg.of(p * run + 8 * u) * NQ];
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) a[j][p] = load8(acc + static_cast<size_t>(j) * hd + p * run + 8 * u);
        }
        for (int jj = 0; jj < n; ++jj) {
            F8 v[Rows::kPlanes];
            Rows::load(codes0 + static_cast<size_t>(jj) * stride, u, v);
            EKV_ATTN_UNROLL
            for (int p = 0; p < Rows::kPlanes; ++p) {
                EKV_ATTN_UNROLL
                for (int j = 0; j < NQ; ++j) a[j][p] = fma8(a[j][p], v[p], wrow[p][j * kAttnBlock + jj]);
            }
        }
        EKV_ATTN_UNROLL
        for (int p = 0; p < Rows::kPlanes; ++p) {
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) store8(acc + static_cast<size_t>(j) * hd + p * run + 8 * u, a[j][p]);
        }
    }
    for (int g = 0; g < vg.count; ++g) {
        int64_t c0 = (vg.first + g) * vg.group - vg.head_ch0;
        int64_t c1 = c0 + vg.group;
        if (c0 < 0) c0 = 0;
        if (c1 > hd) c1 = hd;
        for (int j = 0; j < NQ; ++j) {
            const float m = min_sum[g * NQ + j];
            float* aj = acc + static_cast<size_t>(j) * hd;
            for (int64_t c = c0; c < c1; c += 8) store8(aj + c, add8(load8(aj + c), m));
        }
    }
}

// ---- piece kernels ---------------------------------------------------------

// Scaled queries q * scale[c] and biases dot(q, min) of one key group.
template <int NQ>
void prepare_key_group(const uint8_t* scales, const uint8_t* mins, const float* q, int hd, float* qs, float* bias) {
    F8 b[NQ];
    EKV_ATTN_UNROLL
    for (int j = 0; j < NQ; ++j) b[j] = zero8();
    for (int c = 0; c < hd; c += 8) {
        const F8 ks = halves8(scales + 2 * c);
        const F8 km = halves8(mins + 2 * c);
        EKV_ATTN_UNROLL
        for (int j = 0; j < NQ; ++j) {
            const F8 qv = load8(q + static_cast<size_t>(j) * hd + c);
            store8(qs + static_cast<size_t>(j) * hd + c, mul8(qv, ks));
            b[j] = fma8(b[j], qv, km);
        }
    }
    EKV_ATTN_UNROLL
    for (int j = 0; j < NQ; ++j) bias[j] = hsum8(b[j]);
}

#include "backend/cpu/cpu_attention_pieces.inc"

}  // namespace

const AttnKernels* neon_attention_kernels() {
    static const AttnKernels set = {"neon", select_pieces};
    return &set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
