// GGUF weight-block decoders shared by the CUDA kernels and the host: the
// same source compiles as __host__ __device__ under nvcc and as plain inline
// C++ elsewhere, so the host unit test (tests/unit/test_cuda_gguf_blocks.cpp)
// checks, bit for bit against core/quant.cpp's dequantize_row, exactly the
// code the kernels run.
//
// Layouts: core/quant.h (the authority). Rows must be 2-byte aligned (every
// block size is even; F32 rows 4-byte aligned), which device buffers and GGUF
// mappings are.
//
// Bit exactness: nvcc contracts a * b + c into an FMA by default, which
// changes the rounding of "d * q + m". The decoders therefore use mul_rn /
// add_rn / sub_rn (explicitly rounded, never fused) wherever core/quant.cpp
// rounds a product before adding; f16/bf16 conversions are integer code.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/quant.h"

#if defined(__CUDACC__)
#define EKV_HD __host__ __device__ __forceinline__
#else
#define EKV_HD inline
#endif
#if defined(__CUDA_ARCH__)  // the device pass; host compilers do not know the pragma
#define EKV_UNROLL _Pragma("unroll")
#else
#define EKV_UNROLL
#endif

namespace ekv::cuda::blocks {

// ---- float helpers identical on host and device ---------------------------

EKV_HD float bits_to_f32(uint32_t bits) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
#endif
}

EKV_HD uint32_t f32_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
#endif
}

// Rounded, never-fused arithmetic (see the header comment).
EKV_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
EKV_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
EKV_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
// IEEE division, also under --use_fast_math.
EKV_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

// IEEE binary16 bits to float (exact; subnormals normalised like core/fp16.h).
EKV_HD float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                --exp;
            }
            mant &= 0x3ffu;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return bits_to_f32(bits);
}

// Float to binary16 bits, round to nearest even (core/fp16.h's f32_to_f16).
EKV_HD uint16_t f32_to_f16(float f) {
    const uint32_t x = f32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
    if (absx < 0x38800000u) {
        if (absx < 0x33000000u) return static_cast<uint16_t>(sign);
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e;
        uint32_t half = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) ++half;
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = (absx >> 13) - ((127 - 15) << 10);
    const uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
}

EKV_HD float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

// Little-endian loads that need no alignment beyond a byte.
EKV_HD uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
EKV_HD uint32_t load_u32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
           static_cast<uint32_t>(p[3]) << 24;
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
EKV_HD void scale_min_k4(const uint8_t* q, int j, int* sc, int* mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// ---- formats ---------------------------------------------------------------
//
// Each Format<T> decodes a row in "chunks" of 32 consecutive elements:
//   decode32(row, c, out): elements 32c .. 32c + 31 (the row must hold them);
//   decode1(row, j): element j alone (slow path: partial chunks of the plain
//   formats, and an independent check of decode32 in the host test).
// kBlockElems / kBlockBytes: the GGUF block (1 element for plain formats).

template <DType T>
struct Format;

template <>
struct Format<DType::F32> {
    static constexpr int kBlockElems = 1;
    static constexpr int kBlockBytes = 4;
    static EKV_HD float decode1(const uint8_t* row, int64_t j) { return reinterpret_cast<const float*>(row)[j]; }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const float* p = reinterpret_cast<const float*>(row) + 32 * c;
EKV_UNROLL
        for (int l = 0; l < 32; ++l) out[l] = p[l];
    }
};

template <>
struct Format<DType::F16> {
    static constexpr int kBlockElems = 1;
    static constexpr int kBlockBytes = 2;
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[j]);
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + 32 * c;
EKV_UNROLL
        for (int l = 0; l < 32; ++l) out[l] = f16_to_f32(p[l]);
    }
};

template <>
struct Format<DType::BF16> {
    static constexpr int kBlockElems = 1;
    static constexpr int kBlockBytes = 2;
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[j]);
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + 32 * c;
EKV_UNROLL
        for (int l = 0; l < 32; ++l) out[l] = bf16_to_f32(p[l]);
    }
};

// x = d * (q - 8); element j < 16 in the low nibble of qs[j], j + 16 in the high one.
template <>
struct Format<DType::Q4_0> {
    static constexpr int kBlockElems = kQK;
    static constexpr int kBlockBytes = sizeof(BlockQ4_0);
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        const BlockQ4_0& b = reinterpret_cast<const BlockQ4_0*>(row)[j / kQK];
        const int e = static_cast<int>(j % kQK);
        const int q = e < 16 ? (b.qs[e] & 0x0F) : (b.qs[e - 16] >> 4);
        return mul_rn(f16_to_f32(b.d), static_cast<float>(q - 8));
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const BlockQ4_0& b = reinterpret_cast<const BlockQ4_0*>(row)[c];
        const float d = f16_to_f32(b.d);
EKV_UNROLL
        for (int l = 0; l < 16; ++l) {
            const int v = b.qs[l];
            out[l] = mul_rn(d, static_cast<float>((v & 0x0F) - 8));
            out[l + 16] = mul_rn(d, static_cast<float>((v >> 4) - 8));
        }
    }
};

// x = d * q + m.
template <>
struct Format<DType::Q4_1> {
    static constexpr int kBlockElems = kQK;
    static constexpr int kBlockBytes = sizeof(BlockQ4_1);
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        const BlockQ4_1& b = reinterpret_cast<const BlockQ4_1*>(row)[j / kQK];
        const int e = static_cast<int>(j % kQK);
        const int q = e < 16 ? (b.qs[e] & 0x0F) : (b.qs[e - 16] >> 4);
        return add_rn(mul_rn(f16_to_f32(b.d), static_cast<float>(q)), f16_to_f32(b.m));
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const BlockQ4_1& b = reinterpret_cast<const BlockQ4_1*>(row)[c];
        const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
EKV_UNROLL
        for (int l = 0; l < 16; ++l) {
            const int v = b.qs[l];
            out[l] = add_rn(mul_rn(d, static_cast<float>(v & 0x0F)), m);
            out[l + 16] = add_rn(mul_rn(d, static_cast<float>(v >> 4)), m);
        }
    }
};

// The 5-bit value of element e (0..31) of a Q5_0/Q5_1 block.
EKV_HD int q5_value(const uint8_t* qh4, const uint8_t* qs, int e) {
    const uint32_t qh = load_u32(qh4);
    const int lo = e < 16 ? (qs[e] & 0x0F) : (qs[e - 16] >> 4);
    return lo | static_cast<int>(((qh >> e) & 1u) << 4);
}

// x = d * (q - 16).
template <>
struct Format<DType::Q5_0> {
    static constexpr int kBlockElems = kQK;
    static constexpr int kBlockBytes = sizeof(BlockQ5_0);
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        const BlockQ5_0& b = reinterpret_cast<const BlockQ5_0*>(row)[j / kQK];
        const int q = q5_value(b.qh, b.qs, static_cast<int>(j % kQK));
        return mul_rn(f16_to_f32(b.d), static_cast<float>(q - 16));
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const BlockQ5_0& b = reinterpret_cast<const BlockQ5_0*>(row)[c];
        const float d = f16_to_f32(b.d);
        const uint32_t qh = load_u32(b.qh);
EKV_UNROLL
        for (int l = 0; l < 16; ++l) {
            const int v = b.qs[l];
            const int q0 = (v & 0x0F) | static_cast<int>(((qh >> l) & 1u) << 4);
            const int q1 = (v >> 4) | static_cast<int>(((qh >> (l + 16)) & 1u) << 4);
            out[l] = mul_rn(d, static_cast<float>(q0 - 16));
            out[l + 16] = mul_rn(d, static_cast<float>(q1 - 16));
        }
    }
};

// x = d * q + m.
template <>
struct Format<DType::Q5_1> {
    static constexpr int kBlockElems = kQK;
    static constexpr int kBlockBytes = sizeof(BlockQ5_1);
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        const BlockQ5_1& b = reinterpret_cast<const BlockQ5_1*>(row)[j / kQK];
        const int q = q5_value(b.qh, b.qs, static_cast<int>(j % kQK));
        return add_rn(mul_rn(f16_to_f32(b.d), static_cast<float>(q)), f16_to_f32(b.m));
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const BlockQ5_1& b = reinterpret_cast<const BlockQ5_1*>(row)[c];
        const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
        const uint32_t qh = load_u32(b.qh);
EKV_UNROLL
        for (int l = 0; l < 16; ++l) {
            const int v = b.qs[l];
            const int q0 = (v & 0x0F) | static_cast<int>(((qh >> l) & 1u) << 4);
            const int q1 = (v >> 4) | static_cast<int>(((qh >> (l + 16)) & 1u) << 4);
            out[l] = add_rn(mul_rn(d, static_cast<float>(q0)), m);
            out[l + 16] = add_rn(mul_rn(d, static_cast<float>(q1)), m);
        }
    }
};

// x = q * d.
template <>
struct Format<DType::Q8_0> {
    static constexpr int kBlockElems = kQK;
    static constexpr int kBlockBytes = sizeof(BlockQ8_0);
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(row)[j / kQK];
        return mul_rn(static_cast<float>(b.qs[j % kQK]), f16_to_f32(b.d));
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(row)[c];
        const float d = f16_to_f32(b.d);
EKV_UNROLL
        for (int l = 0; l < 32; ++l) out[l] = mul_rn(static_cast<float>(b.qs[l]), d);
    }
};

// Q4_K / Q5_K: chunk c is sub-block c % 8 of super-block c / 8; x = (d * sc)
// * q - (dmin * mn). Sub-block s reads the low (s even) or high nibbles of
// qs[32 * (s / 2) ..], and Q5_K bit s of qh[l] as bit 4.
template <bool kFifthBit, class Block>
struct FormatK45 {
    static constexpr int kBlockElems = kQK_K;
    static constexpr int kBlockBytes = sizeof(Block);
    static EKV_HD int high_bit(const Block& b, int l, int s) {
        if constexpr (kFifthBit) {
            return ((b.qh[l] >> s) & 1) << 4;
        } else {
            (void)b, (void)l, (void)s;
            return 0;
        }
    }
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        const Block& b = reinterpret_cast<const Block*>(row)[j / kQK_K];
        const int e = static_cast<int>(j % kQK_K), s = e / 32, l = e % 32;
        int sc, mn;
        scale_min_k4(b.scales, s, &sc, &mn);
        const float d = mul_rn(f16_to_f32(b.d), static_cast<float>(sc));
        const float m = mul_rn(f16_to_f32(b.dmin), static_cast<float>(mn));
        const int q = ((b.qs[32 * (s / 2) + l] >> (4 * (s & 1))) & 0x0F) | high_bit(b, l, s);
        return sub_rn(mul_rn(d, static_cast<float>(q)), m);
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const Block& b = reinterpret_cast<const Block*>(row)[c / 8];
        const int s = static_cast<int>(c % 8);
        int sc, mn;
        scale_min_k4(b.scales, s, &sc, &mn);
        const float d = mul_rn(f16_to_f32(b.d), static_cast<float>(sc));
        const float m = mul_rn(f16_to_f32(b.dmin), static_cast<float>(mn));
        const uint8_t* qs = b.qs + 32 * (s / 2);
        const int shift = 4 * (s & 1);
EKV_UNROLL
        for (int l = 0; l < 32; ++l) {
            const int q = ((qs[l] >> shift) & 0x0F) | high_bit(b, l, s);
            out[l] = sub_rn(mul_rn(d, static_cast<float>(q)), m);
        }
    }
};
template <>
struct Format<DType::Q4_K> : FormatK45<false, BlockQ4_K> {};
template <>
struct Format<DType::Q5_K> : FormatK45<true, BlockQ5_K> {};

// Q6_K: 16 sub-blocks of 16, x = (d * scales[sub]) * (q - 32). Inside each
// half (128 elements) quadrant k (32 elements) takes the low (k < 2) or high
// nibbles of ql[32 * (k & 1) ..] and bits 2k, 2k+1 of qh[..] as bits 4-5.
template <>
struct Format<DType::Q6_K> {
    static constexpr int kBlockElems = kQK_K;
    static constexpr int kBlockBytes = sizeof(BlockQ6_K);
    static EKV_HD float decode1(const uint8_t* row, int64_t j) {
        const BlockQ6_K& b = reinterpret_cast<const BlockQ6_K*>(row)[j / kQK_K];
        const int e = static_cast<int>(j % kQK_K);
        const int half = e / 128, k = (e % 128) / 32, l = e % 32;
        const int lo = (b.ql[64 * half + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0x0F;
        const int hi = (b.qh[32 * half + l] >> (2 * k)) & 3;
        const float d = mul_rn(f16_to_f32(b.d), static_cast<float>(b.scales[8 * half + 2 * k + l / 16]));
        return mul_rn(d, static_cast<float>((lo | (hi << 4)) - 32));
    }
    static EKV_HD void decode32(const uint8_t* row, int64_t c, float* out) {
        const BlockQ6_K& b = reinterpret_cast<const BlockQ6_K*>(row)[c / 8];
        const int half = static_cast<int>(c % 8) / 4, k = static_cast<int>(c % 4);
        const uint8_t* ql = b.ql + 64 * half + 32 * (k & 1);
        const uint8_t* qh = b.qh + 32 * half;
        const int lo_shift = 4 * (k >> 1), hi_shift = 2 * k;
        const float dd = f16_to_f32(b.d);
        const float d0 = mul_rn(dd, static_cast<float>(b.scales[8 * half + 2 * k]));
        const float d1 = mul_rn(dd, static_cast<float>(b.scales[8 * half + 2 * k + 1]));
EKV_UNROLL
        for (int l = 0; l < 32; ++l) {
            const int q = ((ql[l] >> lo_shift) & 0x0F) | (((qh[l] >> hi_shift) & 3) << 4);
            out[l] = mul_rn(l < 16 ? d0 : d1, static_cast<float>(q - 32));
        }
    }
};

// ---- row-level helpers ----------------------------------------------------

// Elements 32c .. 32c + 31 of a row of `cols` elements; those past the row
// end are 0 (only plain formats have rows that are not whole chunks).
// Block formats always have whole chunks (cols is a multiple of the block).
template <DType T>
EKV_HD void decode_chunk(const uint8_t* row, int64_t cols, int64_t c, float* out) {
    if constexpr (Format<T>::kBlockElems > 1) {
        (void)cols;
        Format<T>::decode32(row, c, out);
    } else if (32 * c + 32 <= cols) {
        Format<T>::decode32(row, c, out);
    } else {
EKV_UNROLL
        for (int l = 0; l < 32; ++l) out[l] = 32 * c + l < cols ? Format<T>::decode1(row, 32 * c + l) : 0.0f;
    }
}

// The formats the kernels read, for the launchers' dispatch: calls
// f.template run<T>() for the runtime type t; false for any other type.
template <class F>
inline bool dispatch_format(DType t, F&& f) {
    switch (t) {
        case DType::F32: f.template run<DType::F32>(); return true;
        case DType::F16: f.template run<DType::F16>(); return true;
        case DType::BF16: f.template run<DType::BF16>(); return true;
        case DType::Q4_0: f.template run<DType::Q4_0>(); return true;
        case DType::Q4_1: f.template run<DType::Q4_1>(); return true;
        case DType::Q5_0: f.template run<DType::Q5_0>(); return true;
        case DType::Q5_1: f.template run<DType::Q5_1>(); return true;
        case DType::Q8_0: f.template run<DType::Q8_0>(); return true;
        case DType::Q4_K: f.template run<DType::Q4_K>(); return true;
        case DType::Q5_K: f.template run<DType::Q5_K>(); return true;
        case DType::Q6_K: f.template run<DType::Q6_K>(); return true;
        default: return false;
    }
}

}  // namespace ekv::cuda::blocks
