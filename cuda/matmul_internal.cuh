// Entry points shared between the matmul files (not part of kernels.h).
#pragma once
#include "kernels.h"

namespace ekv::cuda::detail {

// Bytes of one token's quantized activations for weight type t (Q8_1F blocks
// for the 32-element formats, Q8_K for the K-quants); 0 for the others.
size_t int8_act_row_bytes(DType t, int64_t k);

// The int8-activation matmul (quantized w only): quantizes x into scratch,
// then integer dot products. matmul_int8.cu.
void matmul_int8(Stream s, const WeightRef& w, ConstRows x, Rows out, void* scratch);

}  // namespace ekv::cuda::detail
