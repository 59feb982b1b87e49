// copy_rows: f32 activation rows stored as F32 or F16 cache rows (F16 rounded
// to nearest even by the same integer code as core/fp16.h's f32_to_f16).
#include "common.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 256;

// kRowInParams: dst is row 0 and the first row written is *dst_row (per step).
template <bool kF16, bool kRowInParams>
__global__ void copy_rows_kernel(const float* src, int64_t rows, int64_t cols, int64_t src_stride, uint8_t* dst,
                                 const int64_t* dst_row, size_t dst_row_bytes) {
    if constexpr (kRowInParams) dst += static_cast<size_t>(*dst_row) * dst_row_bytes;
    const int64_t total = rows * cols;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = idx / cols, c = idx % cols;
        const float v = src[r * src_stride + c];
        uint8_t* row = dst + static_cast<size_t>(r) * dst_row_bytes;
        if constexpr (kF16) {
            reinterpret_cast<uint16_t*>(row)[c] = blocks::f32_to_f16(v);
        } else {
            reinterpret_cast<float*>(row)[c] = v;
        }
    }
}

template <bool kRowInParams>
void launch(Stream s, ConstRows src, void* dst, const int64_t* dst_row, DType dst_type, size_t dst_row_bytes) {
    if (src.rows <= 0 || src.cols <= 0) return;
    const int64_t total = src.rows * src.cols;
    uint8_t* d = static_cast<uint8_t*>(dst);
    if (dst_type == DType::F16) {
        copy_rows_kernel<true, kRowInParams><<<grid_for(total, kThreads), kThreads, 0, s>>>(
            src.data, src.rows, src.cols, src.stride, d, dst_row, dst_row_bytes);
    } else if (dst_type == DType::F32) {
        copy_rows_kernel<false, kRowInParams><<<grid_for(total, kThreads), kThreads, 0, s>>>(
            src.data, src.rows, src.cols, src.stride, d, dst_row, dst_row_bytes);
    }
}

}  // namespace

void copy_rows(Stream s, ConstRows src, void* dst, DType dst_type, size_t dst_row_bytes) {
    launch<false>(s, src, dst, nullptr, dst_type, dst_row_bytes);
}

void copy_rows_at(Stream s, ConstRows src, void* dst, const int64_t* dst_row, DType dst_type, size_t dst_row_bytes) {
    launch<true>(s, src, dst, dst_row, dst_type, dst_row_bytes);
}

}  // namespace ekv::cuda
