// im2col_1d (backend.h; CPU: cpu_audio_ops.cpp): out[t][c * kernel + k] =
// x[t * stride + k - pad][c], zero outside x. One thread per output element.
#include "common.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void im2col_1d_kernel(ConstRows x, int32_t kernel, int32_t stride, int32_t pad, Rows out) {
    const int64_t width = x.cols * kernel;
    const int64_t total = out.rows * width;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t t = idx / width, e = idx % width;
        const int64_t c = e / kernel, k = e % kernel;
        const int64_t src = t * stride + k - pad;
        out.data[t * out.stride + e] = src >= 0 && src < x.rows ? x.data[src * x.stride + c] : 0.0f;
    }
}

}  // namespace

void im2col_1d(Stream s, ConstRows x, int32_t kernel, int32_t stride, int32_t pad, Rows out) {
    if (kernel <= 0 || stride <= 0 || pad < 0 || out.rows <= 0 || x.cols <= 0) return;
    const int64_t total = out.rows * x.cols * kernel;
    im2col_1d_kernel<<<grid_for(total, kThreads), kThreads, 0, s>>>(x, kernel, stride, pad, out);
}

}  // namespace ekv::cuda
