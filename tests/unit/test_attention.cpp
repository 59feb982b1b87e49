// CPU attention (backend/cpu/cpu_attention.h) against a naive double-precision
// reference written here: keys and values dequantized with core/kivi.h's
// dequantizers, the visibility rules (causal, window, pinned sinks) and the
// pinned query re-rotation applied explicitly. Covers plain F16/F32, KIVI
// 2/4/8-bit with skip, mixed segments like a quantized sink cache, windows,
// prefill chunks, GQA groups, head sizes, 1 and 2 threads, scalar and SIMD
// (AVX2 or NEON) kernels, plus the determinism the header promises.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_backend.h"
#include "core/fp16.h"
#include "core/kivi.h"

namespace ekv {
namespace {

// Reference copy of a segment: dequantized rows and the rules that apply.
struct RefSegment {
    int32_t first_pos = 0;
    int32_t n = 0;
    bool pinned = false;
    std::vector<float> k, v;  // n x kv_width
};

std::vector<float> gaussian(size_t n, std::mt19937& rng, float sd = 1.f) {
    std::normal_distribution<float> nd(0.f, sd);
    std::vector<float> x(n);
    for (float& f : x) f = nd(rng);
    return x;
}

// Builds a KvView over host memory the builder owns, and its reference.
class ViewBuilder {
public:
    ViewBuilder(int n_kv_heads, int head_dim, uint32_t seed)
        : head_dim_(head_dim), width_(static_cast<int64_t>(n_kv_heads) * head_dim), rng_(seed) {}

    // n tokens at positions first_pos.. stored from row `skip` of tensors
    // with a few spare rows and padded row strides.
    void add_plain(DType type, int32_t first_pos, int32_t n, int32_t skip, bool pinned = false) {
        KvSegment s;
        s.format = KvFormat::Plain;
        s.n_tokens = n;
        s.first_pos = first_pos;
        s.skip = skip;
        s.pinned = pinned;
        RefSegment r{first_pos, n, pinned, {}, {}};
        const int64_t rows = skip + n + 3;
        s.k = plain_tensor(type, rows, r.k, skip, n);
        s.v = plain_tensor(type, rows, r.v, skip, n);
        push(s, r);
    }

    // A KIVI segment: whole key groups quantized from random rows, token i
    // of the segment being token skip + i of the group sequence.
    void add_kivi(int nbits, int group, int32_t first_pos, int32_t n, int32_t skip) {
        KvSegment s;
        s.format = KvFormat::Kivi;
        s.kivi.nbits = nbits;
        s.kivi.group = group;
        s.kivi.head_dim = head_dim_;
        s.n_tokens = n;
        s.first_pos = first_pos;
        s.skip = skip;
        const int64_t groups = (skip + n + group - 1) / group;
        const int64_t tokens = groups * group;
        const std::vector<float> xk = outliers(gaussian(static_cast<size_t>(tokens * width_), rng_));
        const std::vector<float> xv = gaussian(static_cast<size_t>(tokens * width_), rng_);
        const size_t kb = kivi_key_group_bytes(width_, group, nbits) + 32;
        const size_t vb = kivi_value_row_bytes(width_, group, nbits) + 12;
        s.k = bytes_tensor(groups, kb);
        s.v = bytes_tensor(tokens, vb);
        RefSegment r{first_pos, n, false, std::vector<float>(static_cast<size_t>(n * width_)),
                     std::vector<float>(static_cast<size_t>(n * width_))};
        for (int64_t g = 0; g < groups; ++g)
            kivi_quantize_key_group(xk.data() + g * group * width_, false, width_ * sizeof(float), width_, head_dim_,
                                    group, nbits, s.k.ptr<uint8_t>(g));
        for (int64_t t = 0; t < tokens; ++t)
            kivi_quantize_value_row(xv.data() + t * width_, false, width_, head_dim_, group, nbits, s.v.ptr<uint8_t>(t));
        for (int32_t i = 0; i < n; ++i) {
            const int64_t idx = skip + i;
            kivi_dequantize_key(s.k.ptr<uint8_t>(idx / group), static_cast<int>(idx % group), width_, head_dim_, group,
                                nbits, r.k.data() + i * width_);
            kivi_dequantize_value(s.v.ptr<uint8_t>(idx), width_, head_dim_, group, nbits, r.v.data() + i * width_);
        }
        push(s, r);
    }

    KvView view;
    std::vector<RefSegment> ref;

private:
    // Keys with a few large channels, as real keys have.
    std::vector<float> outliers(std::vector<float> x) const {
        for (size_t i = 0; i < x.size(); ++i)
            if (i % static_cast<size_t>(head_dim_) == 5) x[i] = x[i] * 6.f + 3.f;
        return x;
    }
    Tensor bytes_tensor(int64_t rows, size_t row_bytes) {
        mem_.push_back(std::make_unique<std::vector<uint8_t>>(static_cast<size_t>(rows) * row_bytes, 0));
        Tensor t;
        t.type = DType::I8;
        t.cols = static_cast<int64_t>(row_bytes);
        t.rows = rows;
        t.row_bytes = row_bytes;
        t.data = mem_.back()->data();
        return t;
    }
    Tensor plain_tensor(DType type, int64_t rows, std::vector<float>& ref, int32_t skip, int32_t n) {
        const size_t elem = type == DType::F16 ? 2 : 4;
        Tensor t = bytes_tensor(rows, (static_cast<size_t>(width_) + 8) * elem);
        t.type = type;
        t.cols = width_;
        const std::vector<float> x = gaussian(static_cast<size_t>(rows * width_), rng_);
        ref.assign(static_cast<size_t>(n * width_), 0.f);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < width_; ++c) {
                float f = x[r * width_ + c];
                if (type == DType::F16) {
                    const uint16_t h = f32_to_f16(f);
                    t.ptr<uint16_t>(r)[c] = h;
                    f = f16_to_f32(h);
                } else {
                    t.ptr<float>(r)[c] = f;
                }
                if (r >= skip && r < skip + n) ref[(r - skip) * width_ + c] = f;
            }
        return t;
    }
    void push(const KvSegment& s, RefSegment r) {
        ASSERT_LT(view.n_segments, KvView::kMaxSegments);
        view.seg[view.n_segments++] = s;
        ref.push_back(std::move(r));
    }

    int head_dim_;
    int64_t width_;
    std::mt19937 rng_;
    std::vector<std::unique_ptr<std::vector<uint8_t>>> mem_;
};

struct Shape {
    int n_heads, n_kv_heads, head_dim;
};

struct Rope {
    std::vector<float> inv_freq;
    RopeParams params;
    explicit Rope(const Shape& s, int rope_dim) : inv_freq(static_cast<size_t>(rope_dim / 2)) {
        for (int i = 0; i < rope_dim / 2; ++i)
            inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / rope_dim));
        params.n_heads = s.n_heads;
        params.head_dim = s.head_dim;
        params.rope_dim = rope_dim;
        params.inv_freq = inv_freq.data();
    }
};

AttentionParams params_for(const Shape& s, const RopeParams* rope = nullptr) {
    AttentionParams p;
    p.n_heads = s.n_heads;
    p.n_kv_heads = s.n_kv_heads;
    p.head_dim = s.head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
    p.rope = rope;
    return p;
}

// The spec, spelled out: softmax over visible keys in double.
std::vector<float> reference(const std::vector<float>& q, const std::vector<int32_t>& pos, const ViewBuilder& vb,
                             const AttentionParams& p) {
    const int hd = p.head_dim, gq = p.n_heads / p.n_kv_heads;
    const int64_t width = static_cast<int64_t>(p.n_kv_heads) * hd, qw = static_cast<int64_t>(p.n_heads) * hd;
    std::vector<float> out(q.size(), 0.f);
    for (size_t t = 0; t < pos.size(); ++t) {
        const int32_t qp = pos[t];
        for (int h = 0; h < p.n_heads; ++h) {
            const float* qv = q.data() + t * qw + h * hd;
            const int kvh = h / gq;
            std::vector<double> scores;
            std::vector<const float*> vrows;
            for (const RefSegment& s : vb.ref) {
                std::vector<double> qr(qv, qv + hd);
                const int32_t pp = qp < vb.view.pinned_query_pos ? qp : vb.view.pinned_query_pos;
                if (s.pinned && pp != qp) {
                    for (int i = 0; i < p.rope->rope_dim / 2; ++i) {
                        const double a = (static_cast<double>(pp) - qp) * p.rope->inv_freq[i];
                        const double x = qr[2 * i], y = qr[2 * i + 1];
                        qr[2 * i] = x * std::cos(a) - y * std::sin(a);
                        qr[2 * i + 1] = x * std::sin(a) + y * std::cos(a);
                    }
                }
                for (int32_t i = 0; i < s.n; ++i) {
                    const int32_t kp = s.first_pos + i;
                    if (kp > qp) continue;
                    if (!s.pinned && vb.view.window > 0 && qp - kp >= vb.view.window) continue;
                    const float* kr = s.k.data() + i * width + kvh * hd;
                    double d = 0;
                    for (int c = 0; c < hd; ++c) d += qr[c] * kr[c];
                    scores.push_back(d * p.scale);
                    vrows.push_back(s.v.data() + i * width + kvh * hd);
                }
            }
            if (scores.empty()) continue;
            double m = scores[0];
            for (double s : scores) m = s > m ? s : m;
            double sum = 0;
            std::vector<double> acc(hd, 0.0);
            for (size_t j = 0; j < scores.size(); ++j) {
                const double w = std::exp(scores[j] - m);
                sum += w;
                for (int c = 0; c < hd; ++c) acc[c] += w * vrows[j][c];
            }
            for (int c = 0; c < hd; ++c) out[t * qw + h * hd + c] = static_cast<float>(acc[c] / sum);
        }
    }
    return out;
}

std::vector<float> run(const std::vector<float>& q, const std::vector<int32_t>& pos, const KvView& view,
                       const AttentionParams& p, int threads, bool scalar) {
    const int64_t qw = static_cast<int64_t>(p.n_heads) * p.head_dim;
    std::vector<float> qc = q;
    std::vector<float> out(q.size(), std::nanf(""));
    Tensor qt, ot;
    qt.type = ot.type = DType::F32;
    qt.cols = ot.cols = qw;
    qt.rows = ot.rows = static_cast<int64_t>(pos.size());
    qt.row_bytes = ot.row_bytes = static_cast<size_t>(qw) * sizeof(float);
    qt.data = qc.data();
    ot.data = out.data();
    ThreadPool pool(threads);
    cpu::attention_force_scalar(scalar);
    cpu::attention(qt, pos.data(), view, p, ot, pool);
    cpu::attention_force_scalar(false);
    return out;
}

// max |a - b| / max |b|: the error relative to the output's scale.
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
    double diff = 0, scale = 1e-30;
    for (size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return INFINITY;
        diff = std::fmax(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
        scale = std::fmax(scale, std::fabs(static_cast<double>(b[i])));
    }
    return diff / scale;
}

// Checks every kernel set and thread count against the reference; the
// outputs must also be bitwise identical across thread counts.
void check_all(const Shape& s, const ViewBuilder& vb, const std::vector<int32_t>& pos, double tol,
               const RopeParams* rope = nullptr, uint32_t seed = 1) {
    std::mt19937 rng(seed);
    const AttentionParams p = params_for(s, rope);
    ASSERT_TRUE(cpu::check_attention(Tensor{}, vb.view, p).ok()) << cpu::check_attention(Tensor{}, vb.view, p).message();
    const std::vector<float> q = gaussian(pos.size() * static_cast<size_t>(s.n_heads * s.head_dim), rng, 1.5f);
    const std::vector<float> want = reference(q, pos, vb, p);
    for (bool scalar : {false, true}) {
        std::vector<float> first;
        for (int threads : {1, 2}) {
            const std::vector<float> got = run(q, pos, vb.view, p, threads, scalar);
            EXPECT_LE(rel_error(got, want), tol) << (scalar ? "scalar" : cpu::attention_isa()) << ", " << threads
                                                  << " threads, heads " << s.n_heads << "/" << s.n_kv_heads
                                                  << ", head_dim " << s.head_dim;
            if (first.empty())
                first = got;
            else
                EXPECT_EQ(0, std::memcmp(first.data(), got.data(), got.size() * sizeof(float)))
                    << "thread count changed the result";
        }
    }
}

std::vector<int32_t> positions(int32_t first, int n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) v[i] = first + i;
    return v;
}

const Shape kShapes[] = {{4, 4, 64}, {9, 3, 64}, {8, 2, 128}, {4, 1, 256}, {6, 2, 64}};

TEST(CpuAttention, PlainF32AndF16) {
    for (const Shape& s : kShapes) {
        for (DType type : {DType::F32, DType::F16}) {
            ViewBuilder vb(s.n_kv_heads, s.head_dim, 3);
            vb.add_plain(type, 0, 70, 2);
            check_all(s, vb, positions(69, 1), 1e-5);   // decode
            check_all(s, vb, positions(40, 30), 1e-5);  // a prefill chunk: causal inside it
        }
    }
}

TEST(CpuAttention, KiviSegmentsWithSkip) {
    for (const Shape& s : kShapes) {
        for (int nbits : {2, 4, 8}) {
            ViewBuilder vb(s.n_kv_heads, s.head_dim, 10u + nbits);
            vb.add_kivi(nbits, 32, 0, 100, 7);  // starts 7 tokens into a key group
            check_all(s, vb, positions(99, 1), 1e-4);
            check_all(s, vb, positions(60, 40), 1e-4);
        }
    }
}

TEST(CpuAttention, KiviGroupShapes) {
    // Value groups wider than a head and straddling heads (96 over heads of 64),
    // groups that are not a multiple of 8 (portable kernel), and 64-token groups.
    const Shape s{9, 3, 64};
    for (int group : {96, 12, 64}) {
        for (int nbits : {2, 4, 8}) {
            ViewBuilder vb(s.n_kv_heads, s.head_dim, 20u + group);
            vb.add_kivi(nbits, group, 0, 3 * group - 5, 3);
            check_all(s, vb, positions(3 * group - 6, 3), 1e-4);
        }
    }
}

TEST(CpuAttention, HeadSizesTheFastKernelsDoNotTake) {
    // head_dim 80: 2-bit runs are 20 bytes (portable), 4-bit 40 (AVX2); 12 heads
    // of 256 and 7 of 512 make packs of 6 + 6 and 4 + 3 query heads.
    for (const Shape& s : {Shape{4, 2, 80}, Shape{12, 1, 256}, Shape{7, 1, 512}}) {
        ViewBuilder vb(s.n_kv_heads, s.head_dim, 5);
        vb.add_plain(DType::F16, 0, 20, 0);
        vb.add_kivi(2, 32, 20, 40, 0);
        vb.add_kivi(4, 16, 60, 30, 2);
        check_all(s, vb, positions(85, 5), 1e-4);
    }
}

TEST(CpuAttention, SlidingWindow) {
    const Shape s{9, 3, 64};
    ViewBuilder vb(s.n_kv_heads, s.head_dim, 8);
    // A ring in two runs plus a quantized part, positions ascending.
    vb.add_kivi(4, 32, 100, 64, 0);
    vb.add_plain(DType::F16, 164, 30, 5);
    vb.add_plain(DType::F16, 194, 20, 0);
    vb.view.window = 50;
    check_all(s, vb, positions(213, 1), 1e-4);
    check_all(s, vb, positions(150, 64), 1e-4);  // the window slides across every segment
}

TEST(CpuAttention, QuantizedSinkCacheSegments) {
    // Sink cache with KIVI body: 4 pinned F16 sinks at positions 0..3, then
    // the ring's quantized groups and its full-precision residual.
    for (const Shape& s : {Shape{9, 3, 64}, Shape{8, 2, 128}}) {
        Rope rope(s, s.head_dim);
        ViewBuilder vb(s.n_kv_heads, s.head_dim, 21);
        vb.add_plain(DType::F16, 0, 4, 0, /*pinned=*/true);
        vb.add_kivi(2, 32, 1000, 96, 10);
        vb.add_plain(DType::F16, 1096, 40, 3);
        vb.view.window = 120;
        vb.view.pinned_query_pos = 119;
        check_all(s, vb, positions(1135, 1), 1e-4, &rope.params);
        check_all(s, vb, positions(1100, 36), 1e-4, &rope.params);
        // Early queries sit below pinned_query_pos: no re-rotation for them.
        vb.view.pinned_query_pos = 5000;
        check_all(s, vb, positions(1120, 16), 1e-4, &rope.params);
    }
}

TEST(CpuAttention, PartialRopeOnPinnedKeys) {
    const Shape s{4, 2, 64};
    Rope rope(s, 32);  // only the first 32 dims rotate
    ViewBuilder vb(s.n_kv_heads, s.head_dim, 4);
    vb.add_plain(DType::F32, 0, 2, 0, true);
    vb.add_plain(DType::F32, 500, 60, 0);
    vb.view.window = 40;
    vb.view.pinned_query_pos = 39;
    check_all(s, vb, positions(540, 20), 1e-5, &rope.params);
}

TEST(CpuAttention, LongContextDecodeSplitsKeysAcrossThreads) {
    // Thousands of keys and one or two queries: the flash-decoding path.
    const Shape s{9, 3, 64};
    for (int nbits : {0, 2, 4}) {
        ViewBuilder vb(s.n_kv_heads, s.head_dim, 31u + nbits);
        if (nbits)
            vb.add_kivi(nbits, 32, 0, 2976, 0);
        else
            vb.add_plain(DType::F16, 0, 2976, 0);
        vb.add_plain(DType::F16, 2976, 100, 0);
        check_all(s, vb, positions(3075, 1), 1e-4);
        check_all(s, vb, positions(3074, 2), 1e-4);
        check_all(s, vb, positions(3060, 9), 1e-4);  // several queries, chunks merged per thread
    }
}

TEST(CpuAttention, ChunkingAPromptDoesNotChangeResults) {
    // Each query alone (decode-style split over 2 threads) must give bitwise the
    // output it has inside a batch (one thread per query).
    const Shape s{9, 3, 64};
    ViewBuilder vb(s.n_kv_heads, s.head_dim, 77);
    vb.add_kivi(4, 32, 0, 1600, 0);
    vb.add_plain(DType::F16, 1600, 90, 0);
    const AttentionParams p = params_for(s);
    std::mt19937 rng(9);
    const std::vector<int32_t> pos = positions(1680, 10);
    const std::vector<float> q = gaussian(pos.size() * 9 * 64, rng);
    for (bool scalar : {false, true}) {
        const std::vector<float> batch = run(q, pos, vb.view, p, 2, scalar);
        for (size_t t = 0; t < pos.size(); ++t) {
            const std::vector<float> qt(q.begin() + t * 576, q.begin() + (t + 1) * 576);
            const std::vector<float> alone = run(qt, {pos[t]}, vb.view, p, 2, scalar);
            EXPECT_EQ(0, std::memcmp(alone.data(), batch.data() + t * 576, 576 * sizeof(float))) << "query " << t;
        }
    }
}

TEST(CpuAttention, IsaNameAndForceScalar) {
    const std::string isa = cpu::attention_isa();
    EXPECT_TRUE(isa == "avx2" || isa == "neon" || isa == "scalar") << isa;
    // Cross builds run on an emulated CPU whose features the preset knows.
    if (const char* want = std::getenv("EKV_TEST_EXPECT_ATTENTION_ISA")) EXPECT_EQ(isa, want);
    cpu::attention_force_scalar(true);
    EXPECT_STREQ(cpu::attention_isa(), "scalar");
    cpu::attention_force_scalar(false);
    EXPECT_EQ(isa, cpu::attention_isa());
}

TEST(CpuAttention, NothingVisibleGivesZeros) {
    const Shape s{4, 2, 64};
    ViewBuilder vb(s.n_kv_heads, s.head_dim, 2);
    vb.add_plain(DType::F16, 10, 5, 0);
    const std::vector<float> out = run(std::vector<float>(256, 1.f), {3}, vb.view, params_for(s), 1, false);
    for (float f : out) ASSERT_EQ(f, 0.f);
}

TEST(CpuAttention, RejectsBadViewsWithoutCrashing) {
    const Shape s{9, 3, 64};
    ViewBuilder vb(s.n_kv_heads, s.head_dim, 2);
    vb.add_kivi(4, 32, 0, 40, 0);
    std::vector<float> q(576, 1.f);
    auto expect_zero_output = [&](const KvView& view, const AttentionParams& p, const char* what) {
        EXPECT_FALSE(cpu::check_attention(Tensor{}, view, p).ok()) << what;
        const std::vector<float> out = run(q, {39}, view, p, 2, false);
        for (float f : out) ASSERT_EQ(f, 0.f) << what;
    };
    KvView bad = vb.view;
    bad.seg[0].kivi.nbits = 3;
    expect_zero_output(bad, params_for(s), "3-bit codes");
    bad = vb.view;
    bad.seg[0].n_tokens = 100;  // past the tensors
    expect_zero_output(bad, params_for(s), "too many tokens");
    bad = vb.view;
    bad.seg[0].kivi.head_dim = 32;  // codes laid out for another head size
    expect_zero_output(bad, params_for(s), "KIVI head_dim mismatch");
    bad = vb.view;
    bad.seg[0].pinned = true;  // pinned without RoPE parameters
    expect_zero_output(bad, params_for(s), "pinned without rope");
    AttentionParams p = params_for(s);
    p.n_kv_heads = 2;  // 9 heads cannot share 2
    expect_zero_output(vb.view, p, "bad GQA");
    bad = vb.view;
    bad.n_segments = 7;
    expect_zero_output(bad, params_for(s), "too many segments");
}

TEST(CpuBackendRope, AnglesStayAccurateAtLongPositions) {
    // Positions past 1e5 in a long stream: a float angle product would be off
    // by ~1e-2 rad; the result must match a double-precision rotation.
    CpuBackend be(1, false);
    const Shape s{2, 1, 64};
    Rope rope(s, 64);
    std::mt19937 rng(4);
    std::vector<float> x = gaussian(3 * 128, rng);
    const std::vector<float> x0 = x;
    const int32_t pos[3] = {0, 123457, 2000003};
    Tensor t;
    t.type = DType::F32;
    t.cols = 128;
    t.rows = 3;
    t.row_bytes = 128 * sizeof(float);
    t.data = x.data();
    be.rope(t, pos, rope.params);
    for (int r = 0; r < 3; ++r)
        for (int h = 0; h < 2; ++h)
            for (int i = 0; i < 32; ++i) {
                const double a = static_cast<double>(pos[r]) * rope.inv_freq[i];
                const float* v0 = x0.data() + r * 128 + h * 64;
                const double want0 = v0[2 * i] * std::cos(a) - v0[2 * i + 1] * std::sin(a);
                const double want1 = v0[2 * i] * std::sin(a) + v0[2 * i + 1] * std::cos(a);
                ASSERT_NEAR(x[r * 128 + h * 64 + 2 * i], want0, 2e-6) << "pos " << pos[r] << " pair " << i;
                ASSERT_NEAR(x[r * 128 + h * 64 + 2 * i + 1], want1, 2e-6) << "pos " << pos[r] << " pair " << i;
            }
}

}  // namespace
}  // namespace ekv
