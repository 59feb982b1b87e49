// Mamba ops (backend.h's ssm_conv / ssm_scan, CPU: cpu_ssm.cpp). Channels are
// independent and time is a recurrence inside each, so one thread owns one
// channel and walks the tokens in order, like the CPU.
#include "common.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }
// torch's softplus with its default threshold (HF's Mamba).
__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

// Input row s of the concatenation [state_in; x] (s < hist + n_t).
__device__ __forceinline__ float conv_input(const float* x, int64_t x_stride, const float* st, int64_t st_stride,
                                            int64_t hist, int64_t s, int64_t c) {
    return s < hist ? st[s * st_stride + c] : x[(s - hist) * x_stride + c];
}

__global__ void ssm_conv_kernel(ConstRows x, ConstRows state_in, ConstRows w, const float* b, Rows state_out,
                                Rows out) {
    const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t n_ch = x.cols, n_t = x.rows, k = w.cols, hist = k - 1;
    if (c >= n_ch) return;
    const float* wc = w.data + c * w.stride;
    for (int64_t t = 0; t < n_t; ++t) {
        float acc = b[c];
        for (int64_t j = 0; j < k; ++j)
            acc += wc[j] * conv_input(x.data, x.stride, state_in.data, state_in.stride, hist, t + j, c);
        out.data[t * out.stride + c] = silu(acc);
    }
    for (int64_t r = 0; r < hist; ++r)
        state_out.data[r * state_out.stride + c] =
            conv_input(x.data, x.stride, state_in.data, state_in.stride, hist, n_t + r, c);
}

// The state is updated in state_out (state_in stays intact: a failed forward
// leaves the cache as it was).
__global__ void ssm_scan_kernel(ConstRows x, ConstRows dt, const float* dt_bias, ConstRows a, ConstRows bm,
                                ConstRows cm, const float* d, ConstRows state_in, Rows state_out, Rows y) {
    const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t n_ch = x.cols, n_t = x.rows, n_st = a.cols;
    if (c >= n_ch) return;
    float* h = state_out.data + c * state_out.stride;
    const float* hin = state_in.data + c * state_in.stride;
    const float* ac = a.data + c * a.stride;
    for (int64_t n = 0; n < n_st; ++n) h[n] = hin[n];
    for (int64_t t = 0; t < n_t; ++t) {
        const float xv = x.data[t * x.stride + c];
        const float delta = softplus(dt.data[t * dt.stride + c] + dt_bias[c]);
        const float dx = delta * xv;
        const float* bt = bm.data + t * bm.stride;
        const float* ct = cm.data + t * cm.stride;
        float acc = 0.0f;
        for (int64_t n = 0; n < n_st; ++n) {
            const float hn = expf(delta * ac[n]) * h[n] + dx * bt[n];
            h[n] = hn;
            acc += ct[n] * hn;
        }
        y.data[t * y.stride + c] = acc + d[c] * xv;
    }
}

}  // namespace

void ssm_conv(Stream s, ConstRows x, ConstRows state_in, ConstRows w, const float* b, Rows state_out, Rows out) {
    if (x.cols <= 0) return;
    ssm_conv_kernel<<<static_cast<unsigned>(ceil_div(x.cols, kThreads)), kThreads, 0, s>>>(x, state_in, w, b,
                                                                                           state_out, out);
}

void ssm_scan(Stream s, ConstRows x, ConstRows dt, const float* dt_bias, ConstRows a, ConstRows bm, ConstRows cm,
              const float* d, ConstRows state_in, Rows state_out, Rows y) {
    if (x.cols <= 0) return;
    ssm_scan_kernel<<<static_cast<unsigned>(ceil_div(x.cols, kThreads)), kThreads, 0, s>>>(
        x, dt, dt_bias, a, bm, cm, d, state_in, state_out, y);
}

}  // namespace ekv::cuda
