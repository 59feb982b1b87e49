// The NEON int8-activation matmul kernels and activation quantizers, written
// once over an integer dot primitive and compiled twice (no include guard on
// purpose): by matmul_int8_neon.cpp with widening multiplies (every ARMv8-A
// CPU) and by matmul_int8_dotprod.cpp with SDOT (-march=armv8.2-a+dotprod).
// The includer defines, inside namespace ekv::cpu::detail::{anonymous},
//   static inline int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b);
// adding the products of a and b's bytes to acc's lanes (which lane gets which
// product may differ: only the lane total is used). The integer block sums are
// therefore exact and the float arithmetic is the same code in both builds,
// so the two sets give bitwise identical outputs (tests check this).
//
// Per block of 32 (Q8_1F, the 32-element formats) or sub-block (Q8_K, the
// K-quants) the integer dot is reduced to one int32 and scaled in float:
// 32-element formats four blocks per vector lane group
//   acc += (d_w * d_x) * isum      corr += o_w * s_x
// and K-quants per super-block as the scalar kernels do.

// ---- 32-element block formats against Q8_1F activations ------------------
// Each format yields its 32 quants in element order as bytes (unsigned 0..31,
// or signed for Q8_0), its scale d and block offset o (matmul_kernels.h).

static inline void nibbles_s8(const uint8_t* qs, int8x16_t q[2]) {
    uint8x16_t u[2];
    neon::unpack_nibbles16(qs, u);
    q[0] = vreinterpretq_s8_u8(u[0]);
    q[1] = vreinterpretq_s8_u8(u[1]);
}

static inline void five_bit_s8(const uint8_t* qs, const uint8_t* qh, int8x16_t q[2]) {
    uint8x16_t u[2], h[2];
    neon::unpack_nibbles16(qs, u);
    neon::bits_to_fifth_bit(neon::load_u32(qh), h);
    q[0] = vreinterpretq_s8_u8(vorrq_u8(u[0], h[0]));
    q[1] = vreinterpretq_s8_u8(vorrq_u8(u[1], h[1]));
}

struct Q4_0Weights {
    using Block = BlockQ4_0;
    static constexpr bool kOffset = true;
    static void decode(const Block& b, int8x16_t q[2], float* d, float* o) {
        nibbles_s8(b.qs, q);
        *d = neon::half_to_float(b.d);
        *o = -8.0f * *d;
    }
};

struct Q4_1Weights {
    using Block = BlockQ4_1;
    static constexpr bool kOffset = true;
    static void decode(const Block& b, int8x16_t q[2], float* d, float* o) {
        nibbles_s8(b.qs, q);
        *d = neon::half_to_float(b.d);
        *o = neon::half_to_float(b.m);
    }
};

struct Q5_0Weights {
    using Block = BlockQ5_0;
    static constexpr bool kOffset = true;
    static void decode(const Block& b, int8x16_t q[2], float* d, float* o) {
        five_bit_s8(b.qs, b.qh, q);
        *d = neon::half_to_float(b.d);
        *o = -16.0f * *d;
    }
};

struct Q5_1Weights {
    using Block = BlockQ5_1;
    static constexpr bool kOffset = true;
    static void decode(const Block& b, int8x16_t q[2], float* d, float* o) {
        five_bit_s8(b.qs, b.qh, q);
        *d = neon::half_to_float(b.d);
        *o = neon::half_to_float(b.m);
    }
};

struct Q8_0Weights {  // signed quants, no offset
    using Block = BlockQ8_0;
    static constexpr bool kOffset = false;
    static void decode(const Block& b, int8x16_t q[2], float* d, float* o) {
        q[0] = vld1q_s8(b.qs);
        q[1] = vld1q_s8(b.qs + 16);
        *d = neon::half_to_float(b.d);
        *o = 0.0f;
    }
};

template <class F>
struct Blocks32 {
    // N (1..4) blocks from b on, lane g for block b + g (unused lanes zero).
    template <int N, int NT>
    static void group(const typename F::Block* w, const BlockQ8_1F* const* x, int64_t b, float32x4_t* acc,
                      float32x4_t* corr) {
        int8x16_t q[4][2];
        float dw[4] = {0.0f, 0.0f, 0.0f, 0.0f}, ow[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        EKV_NEON_UNROLL
        for (int g = 0; g < N; ++g) F::decode(w[b + g], q[g], &dw[g], &ow[g]);
        const float32x4_t dwv = vld1q_f32(dw);
        const float32x4_t owv = vld1q_f32(ow);
        EKV_NEON_UNROLL
        for (int j = 0; j < NT; ++j) {
            int32x4_t p[4];
            float xd[4] = {0.0f, 0.0f, 0.0f, 0.0f}, xs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            EKV_NEON_UNROLL
            for (int g = 0; g < 4; ++g) {
                p[g] = vdupq_n_s32(0);
                if (g >= N) continue;
                const BlockQ8_1F& xb = x[j][b + g];
                p[g] = dot_s8(p[g], q[g][0], vld1q_s8(xb.qs));
                p[g] = dot_s8(p[g], q[g][1], vld1q_s8(xb.qs + 16));
                xd[g] = xb.d;
                xs[g] = xb.s;
            }
            const int32x4_t isum = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
            acc[j] = vfmaq_f32(acc[j], vmulq_f32(dwv, vld1q_f32(xd)), vcvtq_f32_s32(isum));
            if (F::kOffset) corr[j] = vfmaq_f32(corr[j], owv, vld1q_f32(xs));
        }
    }

    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const typename F::Block* w = reinterpret_cast<const typename F::Block*>(neon::weight_row(job, r));
            const BlockQ8_1F* x[NT];
            float32x4_t acc[NT], corr[NT];
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = reinterpret_cast<const BlockQ8_1F*>(neon::act_row(job, t0 + j));
                acc[j] = vdupq_n_f32(0.0f);
                corr[j] = vdupq_n_f32(0.0f);
            }
            const int64_t nb = job.k_dim / kQK;
            int64_t b = 0;
            for (; b + 4 <= nb; b += 4) group<4, NT>(w, x, b, acc, corr);
            switch (nb - b) {
                case 3: group<3, NT>(w, x, b, acc, corr); break;
                case 2: group<2, NT>(w, x, b, acc, corr); break;
                case 1: group<1, NT>(w, x, b, acc, corr); break;
                default: break;
            }
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                const float dot = vaddvq_f32(acc[j]);
                *neon::out_at(job, t0 + j, r) = F::kOffset ? dot + vaddvq_f32(corr[j]) : dot;
            }
        }
    };
};

// ---- K-quants against Q8_K activations -----------------------------------

// sum over the 8 sub-blocks of 32 of mn[s] * (bsums[2s] + bsums[2s + 1]).
static inline int mins_dot_bsums(const uint8_t* mn, const int16_t* bsums) {
    const int16x8_t pairs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));  // |sum| <= 32 * 127
    const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
    return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(pairs), vget_low_s16(m)), pairs, m));
}

static inline const uint8_t* fifth_bits(const BlockQ4_K&) { return nullptr; }
static inline const uint8_t* fifth_bits(const BlockQ5_K& b) { return b.qh; }

// Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scale and min.
template <class Block>
struct Q45K {
    template <int NT>
    struct Tile {
        static void run(const MatmulJob& job, int64_t r, int t0) {
            const Block* w = reinterpret_cast<const Block*>(neon::weight_row(job, r));
            const BlockQ8_K* x[NT];
            float acc[NT], corr[NT];
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                x[j] = reinterpret_cast<const BlockQ8_K*>(neon::act_row(job, t0 + j));
                acc[j] = 0.0f;
                corr[j] = 0.0f;
            }
            alignas(16) uint8_t q8[kQK_K];
            const int64_t nb = job.k_dim / kQK_K;
            for (int64_t i = 0; i < nb; ++i) {
                const Block& blk = w[i];
                const neon::ScalesMins sm = neon::unpack_scales_mins(blk.scales);
                neon::unpack_q45k(blk.qs, fifth_bits(blk), q8);
                const float d = neon::half_to_float(blk.d);
                const float dmin = neon::half_to_float(blk.dmin);
                EKV_NEON_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const BlockQ8_K& xb = x[j][i];
                    int32x4_t isum = vdupq_n_s32(0);
                    for (int s = 0; s < 8; ++s) {
                        int32x4_t p = dot_s8(vdupq_n_s32(0), vreinterpretq_s8_u8(vld1q_u8(q8 + 32 * s)),
                                             vld1q_s8(xb.qs + 32 * s));
                        p = dot_s8(p, vreinterpretq_s8_u8(vld1q_u8(q8 + 32 * s + 16)), vld1q_s8(xb.qs + 32 * s + 16));
                        isum = vmlaq_n_s32(isum, p, sm.sc[s]);
                    }
                    acc[j] += (d * xb.d) * static_cast<float>(vaddvq_s32(isum));
                    corr[j] += (dmin * xb.d) * static_cast<float>(mins_dot_bsums(sm.mn, xb.bsums));
                }
            }
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) *neon::out_at(job, t0 + j, r) = acc[j] - corr[j];
        }
    };
};

// Q6_K: 6-bit unsigned quants (offset 32 folded in through the block sums),
// signed 8-bit scale per 16 elements.
template <int NT>
struct Q6KTile {
    static void run(const MatmulJob& job, int64_t r, int t0) {
        const BlockQ6_K* w = reinterpret_cast<const BlockQ6_K*>(neon::weight_row(job, r));
        const BlockQ8_K* x[NT];
        float acc[NT];
        EKV_NEON_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = reinterpret_cast<const BlockQ8_K*>(neon::act_row(job, t0 + j));
            acc[j] = 0.0f;
        }
        alignas(16) uint8_t q8[kQK_K];
        const int64_t nb = job.k_dim / kQK_K;
        for (int64_t i = 0; i < nb; ++i) {
            const BlockQ6_K& blk = w[i];
            neon::unpack_q6k(blk.ql, blk.qh, q8);
            const int8x16_t sc8 = vld1q_s8(blk.scales);
            const int16x8_t sc_lo = vmovl_s8(vget_low_s8(sc8));
            const int16x8_t sc_hi = vmovl_high_s8(sc8);
            const float d = neon::half_to_float(blk.d);
            EKV_NEON_UNROLL
            for (int j = 0; j < NT; ++j) {
                const BlockQ8_K& xb = x[j][i];
                int32x4_t isum = vdupq_n_s32(0);
                for (int s = 0; s < 16; ++s) {
                    const int32x4_t p = dot_s8(vdupq_n_s32(0), vreinterpretq_s8_u8(vld1q_u8(q8 + 16 * s)),
                                               vld1q_s8(xb.qs + 16 * s));
                    isum = vmlaq_n_s32(isum, p, blk.scales[s]);
                }
                // sum_s sc[s] * bsums[s]: the offset of the unsigned quants, times 32.
                const int16x8_t b0 = vld1q_s16(xb.bsums), b1 = vld1q_s16(xb.bsums + 8);
                int32x4_t off = vmull_s16(vget_low_s16(sc_lo), vget_low_s16(b0));
                off = vmlal_high_s16(off, sc_lo, b0);
                off = vmlal_s16(off, vget_low_s16(sc_hi), vget_low_s16(b1));
                off = vmlal_high_s16(off, sc_hi, b1);
                const int total = vaddvq_s32(isum) - 32 * vaddvq_s32(off);
                acc[j] += (d * xb.d) * static_cast<float>(total);
            }
        }
        EKV_NEON_UNROLL
        for (int j = 0; j < NT; ++j) *neon::out_at(job, t0 + j, r) = acc[j];
    }
};

// ---- activation quantizers (same bytes as quantize_row_q8_1f / _q8_k) ----

// max |x| over n (a multiple of 4) floats; maxNum semantics like std::fmax.
static inline float absmax_f32(const float* x, int n) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    return vmaxnmvq_f32(m);
}

// round-half-even(x * id) for 16 floats (nearbyint in the default rounding
// mode), saturated to int8 like the scalar to_i8.
static inline int8x16_t quantize16(const float* x, float id) {
    int32x4_t v[4];
    EKV_NEON_UNROLL
    for (int c = 0; c < 4; ++c) v[c] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4 * c), id));
    const int16x8_t lo = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
    const int16x8_t hi = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
    return vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
}

void quantize_q8_1f_neon(const float* x, void* dst, int64_t n) {
    BlockQ8_1F* y = static_cast<BlockQ8_1F*>(dst);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = absmax_f32(x, kQK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const int8x16_t a = quantize16(x, id), b = quantize16(x + 16, id);
        vst1q_s8(y[i].qs, a);
        vst1q_s8(y[i].qs + 16, b);
        y[i].d = d;
        y[i].s = d * static_cast<float>(vaddlvq_s8(a) + vaddlvq_s8(b));
    }
}

void quantize_q8_k_neon(const float* x, void* dst, int64_t n) {
    BlockQ8_K* y = static_cast<BlockQ8_K*>(dst);
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        const float d = absmax_f32(x, kQK_K) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int g = 0; g < kQK_K / 16; ++g) {
            const int8x16_t q = quantize16(x + 16 * g, id);
            vst1q_s8(y[i].qs + 16 * g, q);
            y[i].bsums[g] = vaddlvq_s8(q);
        }
        y[i].d = d;
    }
}

RowsKernel neon_int8_rows_kernel(DType t) {
    using neon::drive_tiles;
    switch (t) {
        case DType::Q4_0: return drive_tiles<Blocks32<Q4_0Weights>::Tile>;
        case DType::Q4_1: return drive_tiles<Blocks32<Q4_1Weights>::Tile>;
        case DType::Q5_0: return drive_tiles<Blocks32<Q5_0Weights>::Tile>;
        case DType::Q5_1: return drive_tiles<Blocks32<Q5_1Weights>::Tile>;
        case DType::Q8_0: return drive_tiles<Blocks32<Q8_0Weights>::Tile>;
        case DType::Q4_K: return drive_tiles<Q45K<BlockQ4_K>::Tile>;
        case DType::Q5_K: return drive_tiles<Q45K<BlockQ5_K>::Tile>;
        case DType::Q6_K: return drive_tiles<Q6KTile>;
        default: return nullptr;
    }
}

const Int8ActKernels kNeonInt8Kernels = {quantize_q8_1f_neon, quantize_q8_k_neon, neon_int8_rows_kernel};
