#include "core/quant.h"

#include <cmath>
#include <cstring>

#include "core/fp16.h"

// The float expressions below mirror ggml's reference code operation by
// operation (and gguf-py, which mirrors it), so results are bit-exact as long
// as the compiler does not contract a*b+c into an FMA (the default unless the
// file is built with -mfma and -ffp-contract=fast).

namespace ekv {
namespace {

// ---- dequantization -------------------------------------------------------

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32(b[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = d * static_cast<float>((b[i].qs[j] & 0x0F) - 8);
            y[j + kQK / 2] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
        }
    }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32(b[i].d);
        const float m = f16_to_f32(b[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = d * static_cast<float>(b[i].qs[j] & 0x0F) + m;
            y[j + kQK / 2] = d * static_cast<float>(b[i].qs[j] >> 4) + m;
        }
    }
}

uint32_t load_u32_le(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
           static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// The 5-bit values of one Q5_0/Q5_1 block, in element order.
void unpack_q5(const uint8_t* qh4, const uint8_t* qs, int q[kQK]) {
    const uint32_t qh = load_u32_le(qh4);
    for (int j = 0; j < kQK / 2; ++j) {
        q[j] = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
        q[j + kQK / 2] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    }
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
    int q[kQK];
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32(b[i].d);
        unpack_q5(b[i].qh, b[i].qs, q);
        for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j] - 16);
    }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
    int q[kQK];
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32(b[i].d);
        const float m = f16_to_f32(b[i].m);
        unpack_q5(b[i].qh, b[i].qs, q);
        for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]) + m;
    }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32(b[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
    }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        const float dmin = f16_to_f32(b[i].dmin);
        const uint8_t* qs = b[i].qs;
        for (int c = 0; c < 4; ++c, qs += 32) {  // 64 elements = 2 sub-blocks per chunk
            uint8_t sc0, mn0, sc1, mn1;
            unpack_scale_min_k4(b[i].scales, 2 * c, &sc0, &mn0);
            unpack_scale_min_k4(b[i].scales, 2 * c + 1, &sc1, &mn1);
            const float d0 = d * sc0, m0 = dmin * mn0;
            const float d1 = d * sc1, m1 = dmin * mn1;
            for (int l = 0; l < 32; ++l) y[l] = d0 * static_cast<float>(qs[l] & 0x0F) - m0;
            for (int l = 0; l < 32; ++l) y[32 + l] = d1 * static_cast<float>(qs[l] >> 4) - m1;
            y += 64;
        }
    }
}

void dequant_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        const float dmin = f16_to_f32(b[i].dmin);
        const uint8_t* qs = b[i].qs;
        const uint8_t* qh = b[i].qh;
        for (int c = 0; c < 4; ++c, qs += 32) {
            uint8_t sc0, mn0, sc1, mn1;
            unpack_scale_min_k4(b[i].scales, 2 * c, &sc0, &mn0);
            unpack_scale_min_k4(b[i].scales, 2 * c + 1, &sc1, &mn1);
            const float d0 = d * sc0, m0 = dmin * mn0;
            const float d1 = d * sc1, m1 = dmin * mn1;
            const int bit0 = 2 * c, bit1 = 2 * c + 1;
            for (int l = 0; l < 32; ++l) {
                const int q = (qs[l] & 0x0F) | (((qh[l] >> bit0) & 1) << 4);
                y[l] = d0 * static_cast<float>(q) - m0;
            }
            for (int l = 0; l < 32; ++l) {
                const int q = (qs[l] >> 4) | (((qh[l] >> bit1) & 1) << 4);
                y[32 + l] = d1 * static_cast<float>(q) - m1;
            }
            y += 64;
        }
    }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        for (int half = 0; half < 2; ++half, y += 128) {
            const uint8_t* ql = b[i].ql + 64 * half;
            const uint8_t* qh = b[i].qh + 32 * half;
            const int8_t* sc = b[i].scales + 8 * half;
            for (int l = 0; l < 32; ++l) {
                const int s = l / 16;
                const int q0 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
                const int q1 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = (d * sc[s]) * static_cast<float>(q0);
                y[l + 32] = (d * sc[s + 2]) * static_cast<float>(q1);
                y[l + 64] = (d * sc[s + 4]) * static_cast<float>(q2);
                y[l + 96] = (d * sc[s + 6]) * static_cast<float>(q3);
            }
        }
    }
}

// ---- reference weight quantizers (ggml rounding: truncation after +0.5) ----

// The element with the largest magnitude, sign kept (first one on ties).
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

void min_max(const float* x, int n, float* mn, float* mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; ++j) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

// Truncation toward zero clamped to [0, hi] (ggml: MIN(hi, (int8_t)v) with v >= 0);
// the range check keeps NaN/inf input from being undefined behaviour.
int clamp_trunc(float v, int hi) {
    if (!(v >= 0.0f)) return 0;
    if (v >= static_cast<float>(hi)) return hi;
    return static_cast<int>(v);
}

void pack_nibbles(const int q[kQK], uint8_t* qs) {
    for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + kQK / 2] & 0x0F) << 4));
}

uint32_t pack_high_bits(const int q[kQK]) {
    uint32_t qh = 0;
    for (int j = 0; j < kQK; ++j) qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    return qh;
}

void store_u32_le(uint32_t v, uint8_t* p) {
    for (int j = 0; j < 4; ++j) p[j] = static_cast<uint8_t>(v >> (8 * j));
}

}  // namespace

void unpack_scale_min_k4(const uint8_t* q, int j, uint8_t* sc, uint8_t* mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

bool dequantize_supported(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16:
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
    if (n <= 0) return;
    const int64_t bs = dtype_traits(t).block_size;
    if (!dequantize_supported(t) || n % bs != 0) {
        std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
        return;
    }
    const int64_t nb = n / bs;
    switch (t) {
        case DType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
            break;
        case DType::F16: {
            const uint16_t* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(h[i]);
            break;
        }
        case DType::BF16: {
            const uint16_t* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
            break;
        }
        case DType::Q4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb); break;
        case DType::Q4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb); break;
        case DType::Q5_0: dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb); break;
        case DType::Q5_1: dequant_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb); break;
        case DType::Q8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb); break;
        case DType::Q4_K: dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb); break;
        case DType::Q5_K: dequant_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb); break;
        case DType::Q6_K: dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb); break;
        default: break;
    }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
    int q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = signed_absmax(x, kQK) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK; ++j) q[j] = clamp_trunc(x[j] * id + 8.5f, 15);
        y[i].d = f32_to_f16(d);
        pack_nibbles(q, y[i].qs);
    }
}

void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t n) {
    int q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float mn, mx;
        min_max(x, kQK, &mn, &mx);
        const float d = (mx - mn) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK; ++j) q[j] = clamp_trunc((x[j] - mn) * id + 0.5f, 15);
        y[i].d = f32_to_f16(d);
        y[i].m = f32_to_f16(mn);
        pack_nibbles(q, y[i].qs);
    }
}

void quantize_row_q5_0(const float* x, BlockQ5_0* y, int64_t n) {
    int q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = signed_absmax(x, kQK) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK; ++j) q[j] = clamp_trunc(x[j] * id + 16.5f, 31);
        y[i].d = f32_to_f16(d);
        store_u32_le(pack_high_bits(q), y[i].qh);
        pack_nibbles(q, y[i].qs);
    }
}

void quantize_row_q5_1(const float* x, BlockQ5_1* y, int64_t n) {
    int q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float mn, mx;
        min_max(x, kQK, &mn, &mx);
        const float d = (mx - mn) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK; ++j) q[j] = clamp_trunc((x[j] - mn) * id + 0.5f, 31);
        y[i].d = f32_to_f16(d);
        y[i].m = f32_to_f16(mn);
        store_u32_le(pack_high_bits(q), y[i].qh);
        pack_nibbles(q, y[i].qs);
    }
}

namespace {
float absmax(const float* x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    return amax;
}

// Already-rounded value to int8; out-of-range/NaN (only from non-finite input)
// saturates instead of being undefined behaviour.
int8_t to_i8(float r) {
    if (r >= -128.0f && r <= 127.0f) return static_cast<int8_t>(r);
    return static_cast<int8_t>(r > 0.0f ? 127 : -128);
}
}  // namespace

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = absmax(x, kQK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK; ++j) y[i].qs[j] = to_i8(std::round(x[j] * id));
        y[i].d = f32_to_f16(d);
    }
}

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = absmax(x, kQK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            y[i].qs[j] = to_i8(std::round(x[j] * id));
            sum += y[i].qs[j];
        }
        y[i].d = f32_to_f16(d);
        y[i].s = f32_to_f16(static_cast<float>(sum) * d);
    }
}

void quantize_row_q8_1f(const float* x, BlockQ8_1F* y, int64_t n) {
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = absmax(x, kQK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            y[i].qs[j] = to_i8(std::nearbyint(x[j] * id));
            sum += y[i].qs[j];
        }
        y[i].d = d;
        y[i].s = d * static_cast<float>(sum);
    }
}

void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        const float d = absmax(x, kQK_K) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int g = 0; g < kQK_K / 16; ++g) {
            int sum = 0;
            for (int j = 16 * g; j < 16 * g + 16; ++j) {
                y[i].qs[j] = to_i8(std::nearbyint(x[j] * id));
                sum += y[i].qs[j];
            }
            y[i].bsums[g] = static_cast<int16_t>(sum);
        }
        y[i].d = d;
    }
}

bool quantize_row_supported(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16:
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
            return true;
        default:
            return false;
    }
}

bool quantize_row(DType t, const float* x, void* dst, int64_t n) {
    if (n < 0 || !quantize_row_supported(t) || n % dtype_traits(t).block_size != 0) return false;
    switch (t) {
        case DType::F32:
            std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
            return true;
        case DType::F16: {
            uint16_t* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(x[i]);
            return true;
        }
        case DType::BF16: {
            uint16_t* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(x[i]);
            return true;
        }
        case DType::Q4_0: quantize_row_q4_0(x, static_cast<BlockQ4_0*>(dst), n); return true;
        case DType::Q4_1: quantize_row_q4_1(x, static_cast<BlockQ4_1*>(dst), n); return true;
        case DType::Q5_0: quantize_row_q5_0(x, static_cast<BlockQ5_0*>(dst), n); return true;
        case DType::Q5_1: quantize_row_q5_1(x, static_cast<BlockQ5_1*>(dst), n); return true;
        case DType::Q8_0: quantize_row_q8_0(x, static_cast<BlockQ8_0*>(dst), n); return true;
        default: return false;
    }
}

}  // namespace ekv
