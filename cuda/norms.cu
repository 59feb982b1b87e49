// rms_norm and layer_norm: one block per row, sums in double like the CPU
// backend (cpu_backend.cpp, cpu_audio_ops.cpp); the final scaling uses
// explicitly rounded operations so no FMA changes the CPU's rounding.
#include "common.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_kernel(const float* x, int64_t x_stride, int64_t n, const float* w, float eps, float* out,
                                int64_t out_stride) {
    __shared__ double partial[32];
    const float* xr = x + blockIdx.x * x_stride;
    float* o = out + blockIdx.x * out_stride;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += static_cast<double>(xr[i]) * xr[i];
    ss = block_sum(ss, partial);
    const float scale =
        blocks::div_rn(1.0f, __fsqrt_rn(blocks::add_rn(static_cast<float>(ss / static_cast<double>(n)), eps)));
    // Every read of x happened before block_sum's barriers: out may alias x.
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = blocks::mul_rn(blocks::mul_rn(xr[i], scale), w[i]);
}

__global__ void layer_norm_kernel(const float* x, int64_t x_stride, int64_t n, const float* w, const float* b,
                                  float eps, float* out, int64_t out_stride) {
    __shared__ double partial[32];
    const float* xr = x + blockIdx.x * x_stride;
    float* o = out + blockIdx.x * out_stride;
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i];
    const double mean = block_sum(sum, partial) / static_cast<double>(n);
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double d = xr[i] - mean;
        ss += d * d;
    }
    ss = block_sum(ss, partial);
    const float inv = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) + static_cast<double>(eps)));
    const float m = static_cast<float>(mean);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = blocks::mul_rn(blocks::mul_rn(blocks::sub_rn(xr[i], m), inv), w[i]);
        o[i] = blocks::add_rn(v, b[i]);
    }
}

}  // namespace

void rms_norm(Stream s, ConstRows x, const float* w, float eps, Rows out) {
    if (x.rows <= 0 || x.cols <= 0) return;
    rms_norm_kernel<<<static_cast<unsigned>(x.rows), kThreads, 0, s>>>(x.data, x.stride, x.cols, w, eps, out.data,
                                                                       out.stride);
}

void layer_norm(Stream s, ConstRows x, const float* w, const float* b, float eps, Rows out) {
    if (x.rows <= 0 || x.cols <= 0) return;
    layer_norm_kernel<<<static_cast<unsigned>(x.rows), kThreads, 0, s>>>(x.data, x.stride, x.cols, w, b, eps,
                                                                         out.data, out.stride);
}

}  // namespace ekv::cuda
