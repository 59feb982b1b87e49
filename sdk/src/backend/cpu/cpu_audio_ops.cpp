// CPU kernels of the encoder-decoder (Whisper) ops: LayerNorm with bias,
// exact GELU, bias add and the 1-D convolution unfold. F32 activations.
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"

namespace ekv {
namespace {

constexpr int64_t kParallelElements = 1 << 14;  // below this, threads cost more than they save

template <class F>
void rows_in_parallel(ThreadPool& pool, int64_t rows, int64_t cols, F&& f) {
    if (rows <= 1 || rows * cols < kParallelElements) {
        f(0L, static_cast<long>(rows));
    } else {
        pool.parallel_for(static_cast<long>(rows), f);
    }
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
    const int64_t n = x.cols;
    if (n <= 0) return;
    const float* w = weight.ptr<float>();
    const float* b = bias.ptr<float>();
    rows_in_parallel(pool_, x.rows, n, [&](long rb, long re) {
        for (long r = rb; r < re; ++r) {
            const float* xr = x.ptr<float>(r);
            float* o = out.ptr<float>(r);
            // Two passes in double: activations of a deep encoder reach
            // magnitudes where one-pass variance loses its digits.
            double sum = 0.0;
            for (int64_t i = 0; i < n; ++i) sum += xr[i];
            const double mean = sum / static_cast<double>(n);
            double ss = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                const double d = xr[i] - mean;
                ss += d * d;
            }
            const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
            const float m = static_cast<float>(mean);
            for (int64_t i = 0; i < n; ++i) o[i] = (xr[i] - m) * inv * w[i] + b[i];
        }
    });
}

void CpuBackend::gelu_erf(const Tensor& x, Tensor& out) {
    const int64_t n = x.cols;
    const float inv_sqrt2 = 0.70710678118654752f;
    rows_in_parallel(pool_, x.rows, n, [&](long rb, long re) {
        for (long r = rb; r < re; ++r) {
            const float* xr = x.ptr<float>(r);
            float* o = out.ptr<float>(r);
            for (int64_t i = 0; i < n; ++i) o[i] = 0.5f * xr[i] * (1.0f + std::erf(xr[i] * inv_sqrt2));
        }
    });
}

void CpuBackend::add_bias(const Tensor& x, const Tensor& bias, Tensor& out) {
    const int64_t n = x.cols;
    const float* b = bias.ptr<float>();
    rows_in_parallel(pool_, x.rows, n, [&](long rb, long re) {
        for (long r = rb; r < re; ++r) {
            const float* xr = x.ptr<float>(r);
            float* o = out.ptr<float>(r);
            for (int64_t i = 0; i < n; ++i) o[i] = xr[i] + b[i];
        }
    });
}

void CpuBackend::im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, Tensor& out) {
    const int64_t channels = x.cols;
    if (kernel <= 0 || stride <= 0 || pad < 0 || out.cols < channels * kernel) return;
    rows_in_parallel(pool_, out.rows, out.cols, [&](long rb, long re) {
        for (long t = rb; t < re; ++t) {
            float* o = out.ptr<float>(t);
            for (int32_t k = 0; k < kernel; ++k) {
                const int64_t src = t * stride + k - pad;
                const float* xr = src >= 0 && src < x.rows ? x.ptr<float>(src) : nullptr;
                for (int64_t c = 0; c < channels; ++c) o[c * kernel + k] = xr ? xr[c] : 0.0f;
            }
        }
    });
}

}  // namespace ekv
