// The CPU kernels Whisper adds (LayerNorm with bias, exact GELU, bias add,
// the 1-D convolution unfold) against direct double-precision formulas, and
// the two attention patterns Whisper builds from the causal op: full
// (encoder self-attention, cross-attention) by querying from the last
// position.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"

namespace {

using ekv::Tensor;

struct HostTensor {
    std::vector<float> data;
    Tensor t;
    HostTensor(int64_t rows, int64_t cols) : data(static_cast<size_t>(rows * cols)) {
        t.type = ekv::DType::F32;
        t.rows = rows;
        t.cols = cols;
        t.row_bytes = static_cast<size_t>(cols) * sizeof(float);
        t.data = data.data();
    }
    float& at(int64_t r, int64_t c) { return data[static_cast<size_t>(r * t.cols + c)]; }
    void fill_random(std::mt19937& rng, float scale, float offset = 0.f) {
        std::normal_distribution<float> nd(0.f, 1.f);
        for (float& v : data) v = offset + scale * nd(rng);
    }
};

std::unique_ptr<ekv::Backend> cpu(int threads = 2) {
    ekv::BackendOptions o;
    o.n_threads = threads;
    std::unique_ptr<ekv::Backend> be;
    EXPECT_TRUE(ekv::create_backend(EKV_BACKEND_CPU, o, &be).ok());
    return be;
}

TEST(WhisperOps, CpuSupportsThem) {
    auto be = cpu();
    for (ekv::BackendOp op : {ekv::BackendOp::LayerNorm, ekv::BackendOp::GeluErf, ekv::BackendOp::AddBias,
                              ekv::BackendOp::Im2Col1d}) {
        EXPECT_TRUE(be->supports_op(op));
        EXPECT_STRNE(ekv::backend_op_name(op), "unknown op");
    }
}

TEST(WhisperOps, LayerNormWithBias) {
    auto be = cpu();
    std::mt19937 rng(3);
    // Many rows so the threaded path runs; a large offset tests the two-pass variance.
    HostTensor x(300, 96), w(1, 96), b(1, 96), out(300, 96);
    x.fill_random(rng, 2.f, 300.f);
    w.fill_random(rng, 0.3f, 1.f);
    b.fill_random(rng, 0.5f);
    be->layer_norm(x.t, w.t, b.t, 1e-5f, out.t);
    double worst = 0;
    for (int64_t r = 0; r < 300; ++r) {
        double mean = 0, var = 0;
        for (int64_t c = 0; c < 96; ++c) mean += x.at(r, c);
        mean /= 96;
        for (int64_t c = 0; c < 96; ++c) var += (x.at(r, c) - mean) * (x.at(r, c) - mean);
        var /= 96;
        for (int64_t c = 0; c < 96; ++c) {
            const double want = (x.at(r, c) - mean) / std::sqrt(var + 1e-5) * w.data[c] + b.data[c];
            worst = std::max(worst, std::fabs(want - out.at(r, c)));
        }
    }
    EXPECT_LT(worst, 2e-4);  // x carries float rounding of 300 + noise
    EXPECT_TRUE(be->take_error().ok());
}

TEST(WhisperOps, ExactGeluInPlace) {
    auto be = cpu();
    HostTensor x(1, 5);
    x.data = {-3.f, -1.f, 0.f, 1.f, 2.5f};
    x.t.data = x.data.data();
    be->gelu_erf(x.t, x.t);
    const double want[5] = {-3 * 0.0013498980316301, -0.15865525393145707, 0.0, 0.8413447460685429,
                            2.5 * 0.9937903346742238};
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(x.data[static_cast<size_t>(i)], want[i], 1e-6) << i;
}

TEST(WhisperOps, AddBias) {
    auto be = cpu();
    HostTensor x(3, 4), b(1, 4), out(3, 4);
    for (int i = 0; i < 12; ++i) x.data[static_cast<size_t>(i)] = static_cast<float>(i);
    b.data = {0.5f, -1.f, 2.f, 0.f};
    b.t.data = b.data.data();
    be->add_bias(x.t, b.t, out.t);
    for (int64_t r = 0; r < 3; ++r)
        for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(out.at(r, c), x.at(r, c) + b.data[static_cast<size_t>(c)]);
}

// im2col + matmul is PyTorch's Conv1d(padding=1) with weights [out, in, 3].
TEST(WhisperOps, Im2ColMatmulIsConv1d) {
    auto be = cpu();
    ASSERT_TRUE(be->reserve_scratch(3 * 8, 64).ok());
    std::mt19937 rng(5);
    const int64_t in_ch = 8, out_ch = 6, frames = 21;
    HostTensor x(frames, in_ch), w(out_ch, in_ch * 3);
    x.fill_random(rng, 1.f);
    w.fill_random(rng, 1.f);
    for (int32_t stride : {1, 2}) {
        const int64_t n_out = (frames + 2 - 3) / stride + 1;
        HostTensor cols(n_out, in_ch * 3), out(n_out, out_ch);
        be->im2col_1d(x.t, 3, stride, 1, cols.t);
        be->matmul(w.t, cols.t, out.t);
        for (int64_t t = 0; t < n_out; ++t) {
            for (int64_t o = 0; o < out_ch; ++o) {
                double want = 0;
                for (int64_t c = 0; c < in_ch; ++c)
                    for (int64_t k = 0; k < 3; ++k) {
                        const int64_t src = t * stride + k - 1;
                        if (src >= 0 && src < frames) want += w.at(o, c * 3 + k) * x.at(src, c);
                    }
                EXPECT_NEAR(out.at(t, o), want, 1e-4) << "stride " << stride << " t " << t << " o " << o;
            }
        }
    }
}

// Whisper's encoder attends over every position, and the decoder's
// cross-attention over every encoder position: the causal op does this when
// every query sits at (or after) the last key's position.
TEST(WhisperOps, FullAttentionFromTheLastPosition) {
    auto be = cpu();
    std::mt19937 rng(9);
    const int n_heads = 4, head_dim = 16, n_q = 7, n_k = 300;
    HostTensor q(n_q, n_heads * head_dim), k(n_k, n_heads * head_dim), v(n_k, n_heads * head_dim);
    HostTensor out(n_q, n_heads * head_dim);
    q.fill_random(rng, 1.f);
    k.fill_random(rng, 1.f);
    v.fill_random(rng, 1.f);
    ekv::KvView view;
    view.n_segments = 1;
    view.seg[0].k = k.t;
    view.seg[0].v = v.t;
    view.seg[0].n_tokens = n_k;
    ekv::AttentionParams ap;
    ap.n_heads = n_heads;
    ap.n_kv_heads = n_heads;
    ap.head_dim = head_dim;
    ap.scale = 0.25f;
    std::vector<int32_t> pos(n_q, n_k - 1);
    be->attention(q.t, pos.data(), view, ap, out.t);
    double worst = 0;
    for (int t = 0; t < n_q; ++t) {
        for (int h = 0; h < n_heads; ++h) {
            std::vector<double> s(n_k);
            double mx = -1e300, sum = 0;
            for (int j = 0; j < n_k; ++j) {
                double d = 0;
                for (int c = 0; c < head_dim; ++c) d += q.at(t, h * head_dim + c) * k.at(j, h * head_dim + c);
                s[static_cast<size_t>(j)] = d * 0.25;
                mx = std::max(mx, s[static_cast<size_t>(j)]);
            }
            for (double& e : s) sum += (e = std::exp(e - mx));
            for (int c = 0; c < head_dim; ++c) {
                double want = 0;
                for (int j = 0; j < n_k; ++j) want += s[static_cast<size_t>(j)] / sum * v.at(j, h * head_dim + c);
                worst = std::max(worst, std::fabs(want - out.at(t, h * head_dim + c)));
            }
        }
    }
    EXPECT_LT(worst, 1e-5);
}

}  // namespace
