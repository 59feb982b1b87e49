// Parity cases of the Mamba and Whisper ops shared by the device backends'
// tests (Vulkan, CUDA): the device against the CPU backend on the same bytes
// (strided row views, buffer offsets, states in and out, in-place calls
// where the contract allows them). Tolerances name what was measured on
// lavapipe; the CUDA kernels follow the CPU's f32 path as closely.
#pragma once
#include <algorithm>

#include "backend/device_parity.h"

namespace ekv_parity {

// Fixture: a DeviceParity<Kind> (or a class derived from one).
template <class Fixture>
class ModelOpsParityCases : public Fixture {
protected:
    using Fixture::cpu_;
    using Fixture::dev_;
    using Fixture::download_f32;
    using Fixture::upload_f32;
    using Fixture::zeros;

    // The same random rows on both backends; `extra` more columns per row
    // than `cols` and `pad` bytes of buffer before row 0.
    struct Pair {
        Tensor cpu, dev;
    };
    Pair both(int64_t rows, int64_t cols, std::mt19937& rng, float lo = -1.f, float hi = 1.f, int64_t extra = 0,
              size_t pad = 0) {
        const std::vector<float> v = random_floats(static_cast<size_t>(rows * (cols + extra)), rng, lo, hi);
        Pair p{upload_f32(*cpu_, rows, cols + extra, v, pad), upload_f32(*dev_, rows, cols + extra, v, pad)};
        p.cpu = columns(p.cpu, 0, cols);
        p.dev = columns(p.dev, 0, cols);
        return p;
    }
    Pair both_zeros(int64_t rows, int64_t cols) {
        return Pair{zeros(*cpu_, DType::F32, rows, cols), zeros(*dev_, DType::F32, rows, cols)};
    }
    // Columns [first, first + n) of every row: a strided view.
    static Tensor columns(const Tensor& t, int64_t first, int64_t n) {
        Tensor v = t;
        v.cols = n;
        v.offset += static_cast<size_t>(first) * 4;
        if (v.data) v.data = static_cast<uint8_t*>(v.data) + static_cast<size_t>(first) * 4;
        return v;
    }
    static Pair columns(const Pair& p, int64_t first, int64_t n) {
        return Pair{columns(p.cpu, first, n), columns(p.dev, first, n)};
    }
    // Every row's first cols values, after both backends finished.
    std::vector<float> values(Backend& b, const Tensor& t) {
        Tensor whole = t;
        whole.cols = static_cast<int64_t>(t.row_bytes / 4);
        const std::vector<float> all = download_f32(b, whole);
        std::vector<float> out;
        for (int64_t r = 0; r < t.rows; ++r)
            out.insert(out.end(), all.begin() + r * whole.cols, all.begin() + r * whole.cols + t.cols);
        return out;
    }
    double error(const Pair& p) { return normalized_error(values(*dev_, p.dev), values(*cpu_, p.cpu)); }
    bool equal(const Pair& p) { return values(*dev_, p.dev) == values(*cpu_, p.cpu); }

    void ssm_conv_matches_cpu() {
        std::mt19937 rng(21);
        struct Shape {
            int64_t channels, tokens, taps;
        };
        // Decode (fewer tokens than history rows), prefill, no history (1 tap).
        for (const Shape& s : {Shape{37, 1, 4}, Shape{64, 2, 4}, Shape{130, 5, 4}, Shape{50, 9, 1}, Shape{20, 3, 3},
                               Shape{8, 70, 4}}) {
            SCOPED_TRACE(std::to_string(s.channels) + " channels, " + std::to_string(s.tokens) + " tokens, " +
                         std::to_string(s.taps) + " taps");
            const int64_t hist = s.taps - 1;
            // x: the first half of an in-projection row, as Mamba's mixer passes it.
            const Pair xz = both(s.tokens, 2 * s.channels + 3, rng, -2.f, 2.f, 0, 8);
            const Pair x = columns(xz, 1, s.channels);
            const Pair w = both(s.channels, s.taps, rng), b = both(1, s.channels, rng);
            // No history (1 tap): empty states, still in memory (the CPU wants data).
            Pair state_in = both(std::max<int64_t>(hist, 1), s.channels, rng, -2.f, 2.f, 5, 4);
            Pair state_out = both_zeros(std::max<int64_t>(hist, 1), s.channels), out = both_zeros(s.tokens, s.channels);
            for (Tensor* t : {&state_in.cpu, &state_in.dev, &state_out.cpu, &state_out.dev}) t->rows = hist;
            cpu_->ssm_conv(x.cpu, state_in.cpu, w.cpu, b.cpu, state_out.cpu, out.cpu);
            dev_->ssm_conv(x.dev, state_in.dev, w.dev, b.dev, state_out.dev, out.dev);
            // The CPU's order of operations; exp and FMA contraction differ.
            // Measured (lavapipe): <= 5.2e-7.
            EXPECT_LT(error(out), 3e-6);
            if (hist > 0) EXPECT_TRUE(equal(state_out));  // copies
        }
    }

    void ssm_scan_matches_cpu() {
        std::mt19937 rng(22);
        struct Shape {
            int64_t channels, states, tokens;
        };
        // Mamba's 16 states (decode and prefill), a non-power of two, more states
        // than a workgroup (two per invocation), one state.
        for (const Shape& s : {Shape{40, 16, 1}, Shape{70, 16, 7}, Shape{33, 5, 3}, Shape{20, 100, 4}, Shape{9, 1, 2},
                               Shape{130, 16, 40}}) {
            SCOPED_TRACE(std::to_string(s.channels) + " channels, " + std::to_string(s.states) + " states, " +
                         std::to_string(s.tokens) + " tokens");
            const int64_t c = s.channels, n = s.states, t = s.tokens, rank = 3;
            const Pair x = both(t, c, rng, -2.f, 2.f, 4, 12);
            // dt spans softplus's branches: below -20 (log1p of a tiny exp), past
            // the threshold of 20, and the usual range.
            std::vector<float> dtv = random_floats(static_cast<size_t>(t * c), rng, -4.f, 2.f);
            for (size_t i = 0; i < dtv.size(); i += 7) dtv[i] = i % 2 ? -25.f : 21.f;
            const Pair dt{upload_f32(*cpu_, t, c, dtv), upload_f32(*dev_, t, c, dtv, 20)};
            const Pair dt_bias = both(1, c, rng, -0.5f, 0.5f), a = both(c, n, rng, -3.f, -0.2f);
            const Pair d = both(1, c, rng);
            // B and C: columns of one x_proj output row [dt_rank | B | C].
            const Pair dbc = both(t, rank + 2 * n, rng, -1.f, 1.f, 0, 16);
            const Pair bm = columns(dbc, rank, n), cm = columns(dbc, rank + n, n);
            const Pair state_in = both(c, n, rng, -1.f, 1.f, 0, 4);
            Pair state_out = both_zeros(c, n), y = both_zeros(t, c);
            cpu_->ssm_scan(x.cpu, dt.cpu, dt_bias.cpu, a.cpu, bm.cpu, cm.cpu, d.cpu, state_in.cpu, state_out.cpu,
                           y.cpu);
            dev_->ssm_scan(x.dev, dt.dev, dt_bias.dev, a.dev, bm.dev, cm.dev, d.dev, state_in.dev, state_out.dev,
                           y.dev);
            // The sum over states is a tree on Vulkan, sequential on the CPU.
            // Measured (lavapipe): <= 2.4e-6.
            EXPECT_LT(error(y), 2e-5);
            EXPECT_LT(error(state_out), 2e-5);
            EXPECT_EQ(values(*dev_, state_in.dev), values(*cpu_, state_in.cpu)) << "state_in must stay intact";
        }
    }

    void layer_norm_matches_cpu() {
        std::mt19937 rng(23);
        for (int64_t cols : {1, 63, 64, 384, 1000}) {
            for (bool in_place : {false, true}) {
                SCOPED_TRACE(std::to_string(cols) + " columns" + (in_place ? ", in place" : ""));
                const int64_t rows = cols == 1000 ? 3 : 5;
                // Rows off-centre (mean ~3), as residual streams are.
                Pair x = both(rows, cols, rng, 1.f, 5.f, 3, 8);
                const Pair w = both(1, cols, rng, 0.5f, 1.5f), b = both(1, cols, rng);
                Pair out = in_place ? x : both_zeros(rows, cols);
                cpu_->layer_norm(x.cpu, w.cpu, b.cpu, 1e-5f, out.cpu);
                dev_->layer_norm(x.dev, w.dev, b.dev, 1e-5f, out.dev);
                // Float on Vulkan, double sums on the CPU. Measured: <= 6.4e-7.
                EXPECT_LT(error(out), 5e-6);
            }
        }
    }

    void gelu_erf_matches_cpu() {
        std::mt19937 rng(24);
        for (int64_t cols : {1, 100, 1500}) {
            for (bool in_place : {false, true}) {
                SCOPED_TRACE(std::to_string(cols) + " columns" + (in_place ? ", in place" : ""));
                std::vector<float> v = random_floats(static_cast<size_t>(3 * cols), rng, -6.f, 6.f);
                v[0] = 0.f;
                if (v.size() > 2) v[1] = -12.f, v[2] = 12.f;
                Pair x{upload_f32(*cpu_, 3, cols, v), upload_f32(*dev_, 3, cols, v, 4)};
                Pair out = in_place ? x : both_zeros(3, cols);
                cpu_->gelu_erf(x.cpu, out.cpu);
                dev_->gelu_erf(x.dev, out.dev);
                // erf approximated to ~1e-7 on Vulkan (A&S 7.1.26), libm's on the
                // CPU. Measured: <= 2.0e-7.
                EXPECT_LT(error(out), 1e-6);
            }
        }
    }

    void add_bias_matches_cpu() {
        std::mt19937 rng(25);
        for (int64_t cols : {1, 64, 385}) {
            for (bool in_place : {false, true}) {
                SCOPED_TRACE(std::to_string(cols) + " columns" + (in_place ? ", in place" : ""));
                Pair x = both(4, cols, rng, -1.f, 1.f, 2, 12);
                const Pair bias = both(1, cols, rng, -1.f, 1.f, 0, 4);
                Pair out = in_place ? x : both_zeros(4, cols);
                cpu_->add_bias(x.cpu, bias.cpu, out.cpu);
                dev_->add_bias(x.dev, bias.dev, out.dev);
                EXPECT_TRUE(equal(out));  // one float add
            }
        }
    }

    void im2col_1d_matches_cpu() {
        std::mt19937 rng(26);
        struct Shape {
            int64_t rows, channels;
            int32_t kernel, stride, pad;
        };
        // Whisper's two convolutions (stride 1 and 2, pad 1), a wide kernel
        // without padding, padding wider than the input.
        for (const Shape& s : {Shape{10, 5, 3, 1, 1}, Shape{11, 7, 3, 2, 1}, Shape{8, 4, 5, 3, 0}, Shape{3, 2, 3, 1, 2},
                               Shape{40, 80, 3, 1, 1}}) {
            SCOPED_TRACE(std::to_string(s.rows) + "x" + std::to_string(s.channels) + " kernel " +
                         std::to_string(s.kernel) + " stride " + std::to_string(s.stride) + " pad " +
                         std::to_string(s.pad));
            const Pair x = both(s.rows, s.channels, rng, -1.f, 1.f, 3, 4);
            const int64_t out_rows = (s.rows + 2 * s.pad - s.kernel) / s.stride + 1;
            Pair out = both_zeros(out_rows, s.channels * s.kernel + 2);  // wider: the last columns stay zero
            cpu_->im2col_1d(x.cpu, s.kernel, s.stride, s.pad, out.cpu);
            dev_->im2col_1d(x.dev, s.kernel, s.stride, s.pad, out.dev);
            EXPECT_TRUE(equal(out));
        }
    }
};

}  // namespace ekv_parity
