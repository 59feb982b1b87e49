// CPU kernels of the Mamba (selective state space) ops, semantics in
// backend/backend.h. Both split the channels over the thread pool: channels
// are independent, while time is a sequential recurrence inside each channel.
// No allocation per call (the per-token path).
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"

namespace ekv {
namespace {

// Below this many multiply-adds per call the pool costs more than it saves
// (a decoded token of a small model).
constexpr int64_t kParallelWork = 1 << 15;

template <class F>
void for_channels(ThreadPool& pool, int64_t channels, int64_t work, F&& f) {
    if (work < kParallelWork || channels < 2) {
        f(0L, static_cast<long>(channels));
    } else {
        pool.parallel_for(static_cast<long>(channels), f);
    }
}

bool is_f32(const Tensor& t) { return t.type == DType::F32 && t.data != nullptr; }

// torch.nn.functional.softplus with its default threshold (HF's Mamba).
inline float softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

}  // namespace

void CpuBackend::ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b,
                          Tensor& state_out, Tensor& out) {
    const int64_t n_ch = x.cols, n_t = x.rows, k = w.cols, hist = k - 1;
    // The architecture validated every shape at load; this only keeps a
    // misuse from reading out of bounds.
    if (!is_f32(x) || !is_f32(w) || !is_f32(b) || !is_f32(out) || !is_f32(state_out) || k < 1 ||
        w.rows != n_ch || b.cols < n_ch || out.cols != n_ch || out.rows != n_t || state_out.rows != hist ||
        state_out.cols != n_ch || (hist > 0 && (!is_f32(state_in) || state_in.rows != hist || state_in.cols != n_ch)))
        return;
    const float* bias = b.ptr<float>();
    // Input row s of the concatenation [state_in; x] (s in [0, hist + n_t)).
    auto input_row = [&](int64_t s) -> const float* {
        return s < hist ? state_in.ptr<float>(s) : x.ptr<float>(s - hist);
    };
    for_channels(pool_, n_ch, n_t * n_ch * k, [&](long c0, long c1) {
        for (int64_t t = 0; t < n_t; ++t) {
            float* o = out.ptr<float>(t);
            for (long c = c0; c < c1; ++c) o[c] = bias[c];
            // Output t reads concatenation rows t .. t + hist.
            for (int64_t j = 0; j < k; ++j) {
                const float* in = input_row(t + j);
                for (long c = c0; c < c1; ++c) o[c] += w.ptr<float>(c)[j] * in[c];
            }
            for (long c = c0; c < c1; ++c) o[c] = silu(o[c]);
        }
        // The newest hist inputs become the next state.
        for (int64_t r = 0; r < hist; ++r) {
            const float* in = input_row(n_t + r);
            std::memcpy(state_out.ptr<float>(r) + c0, in + c0, static_cast<size_t>(c1 - c0) * sizeof(float));
        }
    });
}

void CpuBackend::ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a,
                          const Tensor& bm, const Tensor& cm, const Tensor& d, const Tensor& state_in,
                          Tensor& state_out, Tensor& y) {
    const int64_t n_ch = x.cols, n_t = x.rows, n_st = a.cols;
    if (!is_f32(x) || !is_f32(dt) || !is_f32(dt_bias) || !is_f32(a) || !is_f32(bm) || !is_f32(cm) || !is_f32(d) ||
        !is_f32(state_in) || !is_f32(state_out) || !is_f32(y) || dt.cols != n_ch || dt.rows != n_t ||
        dt_bias.cols < n_ch || a.rows != n_ch || bm.cols != n_st || cm.cols != n_st || bm.rows != n_t ||
        cm.rows != n_t || d.cols < n_ch || state_in.rows != n_ch || state_in.cols != n_st ||
        state_out.rows != n_ch || state_out.cols != n_st || y.cols != n_ch || y.rows != n_t)
        return;
    const float* bias = dt_bias.ptr<float>();
    const float* skip = d.ptr<float>();
    for_channels(pool_, n_ch, n_t * n_ch * n_st, [&](long c0, long c1) {
        // The state is updated in place in state_out; state_in stays intact
        // (a failed forward must leave the cache as it was).
        for (long c = c0; c < c1; ++c)
            std::memcpy(state_out.ptr<float>(c), state_in.ptr<float>(c), static_cast<size_t>(n_st) * sizeof(float));
        for (int64_t t = 0; t < n_t; ++t) {
            const float* xt = x.ptr<float>(t);
            const float* dtt = dt.ptr<float>(t);
            const float* bt = bm.ptr<float>(t);
            const float* ct = cm.ptr<float>(t);
            float* yt = y.ptr<float>(t);
            for (long c = c0; c < c1; ++c) {
                const float delta = softplus(dtt[c] + bias[c]);
                const float dx = delta * xt[c];
                const float* ac = a.ptr<float>(c);
                float* h = state_out.ptr<float>(c);
                float acc = 0.0f;
                for (int64_t n = 0; n < n_st; ++n) {
                    h[n] = std::exp(delta * ac[n]) * h[n] + dx * bt[n];
                    acc += ct[n] * h[n];
                }
                yt[c] = acc + skip[c] * xt[c];
            }
        }
    });
}

}  // namespace ekv
