// CPU matrix multiply with weights read in place in their GGUF format.
//
// Two activation precisions for the quantized weight types:
//  - F32 (default): the weights are dequantized block by block (in registers
//    for a few tokens, into a per-thread L1-sized panel reused across a tile
//    of tokens for many) and multiplied with the f32 activations; matches a
//    double-precision dequantize_row(W) . x to float rounding (~1e-6 of the
//    dot's scale).
//  - Int8 (opt-in fast mode; faster mostly in decode): the activations are first
//    quantized to 8-bit blocks (Q8_1F for the 32-element formats, Q8_K for
//    the K-quants) and the inner loops are integer dot products (llama.cpp
//    style); ~1% error per dot product.
// F32/F16/BF16 weights always use f32 activations. With either precision
// every output is bitwise independent of the batch size, the token's position
// in the batch, the thread count and the row split: how a prompt is chunked
// into calls does not change any result.
// The kernel set (AVX2 on x86-64, NEON with or without the dotprod extension
// on aarch64, or portable scalar) is chosen once at run time from the CPU's
// features, so one binary runs everywhere.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace ekv {
namespace cpu {

// How activations enter the dot products of quantized weights (see above).
enum class ActivationPrecision { F32, Int8 };

// True for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool matmul_supported(DType wtype);

// Scratch bytes matmul() needs for these arguments with this precision
// (quantized activations, or per-block activation sums, plus alignment
// slack); 0 when none is needed or for unsupported input. Size the scratch
// for the precision matmul() will be called with: Int8 needs ~10x more.
size_t matmul_scratch_bytes(DType wtype, int64_t k_dim, int ntok,
                            ActivationPrecision precision = ActivationPrecision::F32);

// y[t*rows + r] = sum_k W[r][k] * x[t*k_dim + k]   for t < ntok, r < rows.
// W is `rows` rows of k_dim elements in format wtype, row stride
// dtype_row_bytes(wtype, k_dim), read in place. k_dim must be a multiple of
// the type's block size. scratch: matmul_scratch_bytes(wtype, k_dim, ntok,
// precision) bytes, any alignment (may be null when that is 0). Called from
// the caller thread; splits rows across the pool; allocates nothing. Results
// do not depend on the pool size.
// On invalid arguments (unsupported type, bad k_dim, missing scratch) y is
// zero-filled rather than aborting; check matmul_supported() up front.
void matmul(DType wtype, const void* w, int64_t rows, int64_t k_dim, const float* x, int ntok, float* y,
            void* scratch, ThreadPool& pool, ActivationPrecision precision = ActivationPrecision::F32);

// Name of the kernel set picked at run time ("avx2", "neon+dotprod", "neon" or
// "scalar"), for logs/bench output.
const char* matmul_isa();

// Test hook: force the portable scalar kernels (true) or return to the
// run-time choice (false). Not for concurrent use with matmul().
void matmul_force_scalar(bool force);

}  // namespace cpu
}  // namespace ekv
