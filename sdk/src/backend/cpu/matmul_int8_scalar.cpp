// Portable scalar int8-activation matmul kernels: the reference semantics the
// SIMD int8 kernels reproduce (same activation quantization, same integer
// block sums).
#include <cstring>

#include "backend/cpu/matmul_kernels.h"
#include "core/fp16.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

// ---- per-row dot products of one weight row with one token ---------------

// Dot of 32 unsigned nibble-or-5-bit weights (element order) with int8 x.
int isum32(const int q[kQK], const int8_t* xq) {
    int s = 0;
    for (int j = 0; j < kQK; ++j) s += q[j] * xq[j];
    return s;
}

void unpack_nibbles(const uint8_t* qs, int q[kQK]) {
    for (int j = 0; j < kQK / 2; ++j) {
        q[j] = qs[j] & 0x0F;
        q[j + kQK / 2] = qs[j] >> 4;
    }
}

void add_high_bits(const uint8_t* qh4, int q[kQK]) {
    uint32_t qh;
    std::memcpy(&qh, qh4, 4);  // little-endian hosts only, like the GGUF mapping itself
    for (int j = 0; j < kQK; ++j) q[j] |= static_cast<int>((qh >> j) & 1u) << 4;
}

// Weight formats of 32-element blocks: unsigned quants q, scale d and block
// offset o so that the block contributes (d*d_x)*isum(q, x_q) + o*s_x.
struct Q4_0Format {
    using Block = BlockQ4_0;
    static void decode(const Block& b, int q[kQK], float* d, float* o) {
        unpack_nibbles(b.qs, q);
        *d = f16_to_f32(b.d);
        *o = -8.0f * *d;
    }
};
struct Q4_1Format {
    using Block = BlockQ4_1;
    static void decode(const Block& b, int q[kQK], float* d, float* o) {
        unpack_nibbles(b.qs, q);
        *d = f16_to_f32(b.d);
        *o = f16_to_f32(b.m);
    }
};
struct Q5_0Format {
    using Block = BlockQ5_0;
    static void decode(const Block& b, int q[kQK], float* d, float* o) {
        unpack_nibbles(b.qs, q);
        add_high_bits(b.qh, q);
        *d = f16_to_f32(b.d);
        *o = -16.0f * *d;
    }
};
struct Q5_1Format {
    using Block = BlockQ5_1;
    static void decode(const Block& b, int q[kQK], float* d, float* o) {
        unpack_nibbles(b.qs, q);
        add_high_bits(b.qh, q);
        *d = f16_to_f32(b.d);
        *o = f16_to_f32(b.m);
    }
};
struct Q8_0Format {  // signed quants, no offset
    using Block = BlockQ8_0;
    static void decode(const Block& b, int q[kQK], float* d, float* o) {
        for (int j = 0; j < kQK; ++j) q[j] = b.qs[j];
        *d = f16_to_f32(b.d);
        *o = 0.0f;
    }
};

template <class F>
float dot_blocks32(const typename F::Block* w, const BlockQ8_1F* x, int64_t nb) {
    float acc = 0.0f, corr = 0.0f;
    int q[kQK];
    for (int64_t b = 0; b < nb; ++b) {
        float d, o;
        F::decode(w[b], q, &d, &o);
        acc += (d * x[b].d) * static_cast<float>(isum32(q, x[b].qs));
        corr += o * x[b].s;
    }
    return acc + corr;
}

// Bit 4 of element l of sub-block s (Q5_K only).
int high_bit(const BlockQ4_K&, int, int) { return 0; }
int high_bit(const BlockQ5_K& b, int l, int s) { return ((b.qh[l] >> s) & 1) << 4; }

// Q4_K/Q5_K: 8 sub-blocks of 32 with 6-bit scale and min.
template <class Block>
float dot_q45_k(const Block* w, const BlockQ8_K* x, int64_t nb) {
    float acc = 0.0f, corr = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0, msum = 0;
        for (int s = 0; s < 8; ++s) {
            uint8_t sc, mn;
            unpack_scale_min_k4(w[i].scales, s, &sc, &mn);
            const uint8_t* qs = w[i].qs + 32 * (s / 2);
            const int shift = 4 * (s & 1);
            const int8_t* xq = x[i].qs + 32 * s;
            int sub = 0;
            for (int l = 0; l < 32; ++l) {
                const int q = ((qs[l] >> shift) & 0x0F) | high_bit(w[i], l, s);
                sub += q * xq[l];
            }
            isum += sc * sub;
            msum += mn * (x[i].bsums[2 * s] + x[i].bsums[2 * s + 1]);
        }
        acc += (f16_to_f32(w[i].d) * x[i].d) * static_cast<float>(isum);
        corr += (f16_to_f32(w[i].dmin) * x[i].d) * static_cast<float>(msum);
    }
    return acc - corr;
}

float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0, offset = 0;
        for (int e = 0; e < kQK_K; e += 16) {  // one sub-block of 16 per step
            const int half = e / 128, r = e % 128;
            const uint8_t* ql = w[i].ql + 64 * half + (r % 64);
            const uint8_t* qh = w[i].qh + 32 * half + (r % 32);
            const int lo_shift = r >= 64 ? 4 : 0;
            const int hi_shift = 2 * (r / 32);
            int sub = 0;
            for (int l = 0; l < 16; ++l) {
                const int q = ((ql[l] >> lo_shift) & 0x0F) | (((qh[l] >> hi_shift) & 3) << 4);
                sub += q * x[i].qs[e + l];
            }
            const int sc = w[i].scales[e / 16];
            isum += sc * sub;
            offset += sc * x[i].bsums[e / 16];
        }
        acc += (f16_to_f32(w[i].d) * x[i].d) * static_cast<float>(isum - 32 * offset);
    }
    return acc;
}

// ---- row-range drivers ----------------------------------------------------

template <class Dot>
void for_rows_and_tokens(const MatmulJob& job, int64_t r0, int64_t r1, Dot dot) {
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* w = job.w + static_cast<size_t>(r) * job.w_row_bytes;
        for (int t = 0; t < job.ntok; ++t) {
            job.y[static_cast<size_t>(t) * job.rows + r] = dot(w, job.act + static_cast<size_t>(t) * job.act_row_bytes);
        }
    }
}

template <class F>
void rows_blocks32(const MatmulJob& job, int64_t r0, int64_t r1) {
    for_rows_and_tokens(job, r0, r1, [&](const uint8_t* w, const uint8_t* a) {
        return dot_blocks32<F>(reinterpret_cast<const typename F::Block*>(w),
                               reinterpret_cast<const BlockQ8_1F*>(a), job.k_dim / kQK);
    });
}

template <class Block>
void rows_q45_k(const MatmulJob& job, int64_t r0, int64_t r1) {
    for_rows_and_tokens(job, r0, r1, [&](const uint8_t* w, const uint8_t* a) {
        return dot_q45_k(reinterpret_cast<const Block*>(w), reinterpret_cast<const BlockQ8_K*>(a),
                                   job.k_dim / kQK_K);
    });
}

void rows_q6_k(const MatmulJob& job, int64_t r0, int64_t r1) {
    for_rows_and_tokens(job, r0, r1, [&](const uint8_t* w, const uint8_t* a) {
        return dot_q6_k(reinterpret_cast<const BlockQ6_K*>(w), reinterpret_cast<const BlockQ8_K*>(a),
                        job.k_dim / kQK_K);
    });
}

RowsKernel scalar_int8_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_0: return rows_blocks32<Q4_0Format>;
        case DType::Q4_1: return rows_blocks32<Q4_1Format>;
        case DType::Q5_0: return rows_blocks32<Q5_0Format>;
        case DType::Q5_1: return rows_blocks32<Q5_1Format>;
        case DType::Q8_0: return rows_blocks32<Q8_0Format>;
        case DType::Q4_K: return rows_q45_k<BlockQ4_K>;
        case DType::Q5_K: return rows_q45_k<BlockQ5_K>;
        case DType::Q6_K: return rows_q6_k;
        default: return nullptr;
    }
}

void quantize_q8_1f(const float* x, void* dst, int64_t n) {
    quantize_row_q8_1f(x, static_cast<BlockQ8_1F*>(dst), n);
}
void quantize_q8_k(const float* x, void* dst, int64_t n) {
    quantize_row_q8_k(x, static_cast<BlockQ8_K*>(dst), n);
}

}  // namespace

const Int8ActKernels& scalar_int8_kernels() {
    static const Int8ActKernels set = {quantize_q8_1f, quantize_q8_k, scalar_int8_rows_kernel};
    return set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv
