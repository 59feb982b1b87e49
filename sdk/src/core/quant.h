// Block-quantized tensor formats (GGUF/ggml layouts) and their scalar
// reference codecs. Weights stay in these blocks in memory; the CPU matmul
// kernels read them in place, and dequantize_row() is the slow, exact
// reference (also used for embedding lookup).
//
// All multi-byte fields are little-endian; half-precision scales are stored as
// raw IEEE binary16 bits (uint16_t) so the structs have no padding and can be
// overlaid on mapped GGUF data (which is at least 2-byte aligned per row).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace ekv {

constexpr int kQK = 32;      // elements per block of the 32-element formats
constexpr int kQK_K = 256;   // elements per K-quant super-block
constexpr int kKScaleBytes = 12;  // packed 6-bit scales + mins of Q4_K/Q5_K

// x = d * (q - 8), q in [0,15]; element j in low nibble of qs[j], j+16 in the high nibble.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
// x = d * q + m, q in [0,15]; nibble order as Q4_0.
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK / 2];
};
// x = d * (q - 16), q in [0,31]; low 4 bits as Q4_0, bit 4 of element j is
// bit j of qh read as a little-endian uint32.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// x = d * q + m, q in [0,31]; bit layout as Q5_0.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// x = d * q, q in [-128,127].
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};
// Like Q8_0 plus s = d * sum(q) (activation format in ggml).
struct BlockQ8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[kQK];
};
// 8 sub-blocks of 32: x = (d * sc[j]) * q - (dmin * mn[j]), q in [0,15], sc/mn 6-bit
// packed in `scales`. Each 32 bytes of qs hold two sub-blocks: low nibbles the
// first, high nibbles the second.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleBytes];
    uint8_t qs[kQK_K / 2];
};
// As Q4_K with a fifth bit: bit j of qh[l] is bit 4 of element 32*j + l.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleBytes];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: x = (d * scales[j]) * (q - 32), q in [0,63]; low 4 bits
// in ql, high 2 bits in qh (see dequantize_row_q6_k for the interleave).
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};
// Activation format for the K-quant dot products: x = d * q, with the sums of
// each group of 16 q's precomputed.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};

// Activation format the CPU kernels use for the 32-element weight formats: a
// Q8_1 with f32 scale and sum (no half rounding; not a GGUF type).
struct BlockQ8_1F {
    float d;
    float s;  // d * sum(qs)
    int8_t qs[kQK];
};

static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 layout");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 layout");
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 layout");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 layout");
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 layout");
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 layout");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K layout");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K layout");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K layout");
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K layout");
static_assert(sizeof(BlockQ8_1F) == 40, "Q8_1F layout");

// Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
void unpack_scale_min_k4(const uint8_t* scales, int j, uint8_t* sc, uint8_t* mn);

// True for the types dequantize_row() handles: F32, F16, BF16, Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool dequantize_supported(DType t);

// dst[0..n) = the values of the first n elements at src (format t). n must be
// a multiple of the block size; otherwise, or for an unsupported type, dst is
// zero-filled. Bit-exact with ggml's / gguf-py's reference dequantization.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Reference quantizers (bit-exact with ggml's reference rounding) for F32,
// F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0. Writes dtype_row_bytes(t, n) bytes.
// Returns false (writing nothing) for other types or n not a multiple of the
// block size.
bool quantize_row_supported(DType t);
bool quantize_row(DType t, const float* x, void* dst, int64_t n);

void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t n);
void quantize_row_q5_0(const float* x, BlockQ5_0* y, int64_t n);
void quantize_row_q5_1(const float* x, BlockQ5_1* y, int64_t n);
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);

// Activation quantizers, symmetric: d = max|x| / 127, q = round(x / d).
// n must be a multiple of the block size (32 or 256).
// GGUF Q8_1 as ggml's reference (round half away from zero, half scales).
void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n);
// The CPU kernels' formats (round half to even, f32 scales). The SIMD
// versions in backend/cpu produce the same bytes.
void quantize_row_q8_1f(const float* x, BlockQ8_1F* y, int64_t n);
void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n);

}  // namespace ekv
