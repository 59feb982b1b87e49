// The AVX2 int8-activation K-quant dispatch: Q4_K and Q5_K
// (matmul_int8_q45k_rows8_avx2.cpp) and Q6_K (matmul_int8_q6k_rows8_avx2.cpp),
// eight rows in the lanes of a vector, integer sums scaled once per
// 256-element super-block. Without AVX2 both give null.
#include "backend/cpu/matmul_kernels.h"

namespace ekv {
namespace cpu {
namespace detail {

RowsKernel avx2_int8_kquant_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_K: case DType::Q5_K: return avx2_int8_q45k_rows_kernel(t);
        case DType::Q6_K: return avx2_int8_q6k_rows_kernel(t);
        default: return nullptr;
    }
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv
