// The generic cache family on the tiny Llama (2 layers, head_dim 16, trained
// context 256): offloading changes nothing but where bytes live; window and
// sink retention give exactly StreamingLLM's attention (checked against a
// recompute on a 1-layer model, where it is exact); KIVI error shrinks with
// more bits; every retention composes with KIVI and offloading; rings keep
// constant memory far past the trained context.
#include "model/one_layer_llama.h"

using namespace ekv_test;

namespace {

class CacheFamily : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
        ASSERT_TRUE(model_);
        nv_ = n_vocab(model_.get());
        for (int i = 0; i < 800; ++i) stream_.push_back(3 + (i * 131 + i / 7) % (nv_ - 3));
    }
    std::vector<float> run(const CacheSpec& s, size_t n, size_t chunk, ekv_model* m = nullptr) {
        m = m ? m : model_.get();
        CachePtr c = make(m, s);
        if (!c) return {};
        return feed(m, c.get(), stream_, 0, n, chunk);
    }
    ModelPtr model_;
    int32_t nv_ = 0;
    std::vector<int32_t> stream_;
};

CacheSpec spec(ekv_cache_type type, const char* name) {
    CacheSpec s;
    s.type = type;
    s.name = name;
    return s;
}

TEST_F(CacheFamily, OffloadingMovesBytesNotResults) {
    struct Pair {
        CacheSpec device, other;
    };
    CacheSpec sink = spec(EKV_CACHE_SINK, "sink q2");
    sink.window = 40;
    sink.sinks = 4;
    sink.dtype = EKV_KV_KIVI;
    sink.nbits = 2;
    CacheSpec sink_host = sink;
    sink_host.offload = EKV_PLACEMENT_HOST;
    sink_host.name = "sink q2 host";
    CacheSpec dyn_unified = spec(EKV_CACHE_DYNAMIC, "dynamic unified");
    dyn_unified.offload = EKV_PLACEMENT_UNIFIED;
    CacheSpec st = spec(EKV_CACHE_STATIC, "static"), ost = spec(EKV_CACHE_OFFLOADED_STATIC, "offloaded_static");
    st.max_len = ost.max_len = 200;
    const Pair pairs[] = {{spec(EKV_CACHE_DYNAMIC, "dynamic"), spec(EKV_CACHE_OFFLOADED, "offloaded")},
                          {st, ost},
                          {spec(EKV_CACHE_DYNAMIC, "dynamic"), dyn_unified},
                          {sink, sink_host}};
    for (const Pair& p : pairs) {
        // Uneven chunks, then single-token decode steps.
        const std::vector<float> a = run(p.device, 150, 37), b = run(p.other, 150, 37);
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << p.other.name;
        const std::vector<float> a1 = run(p.device, 40, 1), b1 = run(p.other, 40, 1);
        EXPECT_EQ(std::memcmp(a1.data(), b1.data(), a1.size() * sizeof(float)), 0) << p.other.name;
    }
    // Host placement: all KV in host memory. The CPU reads it in place (a
    // unified device: zero-copy), so nothing is staged in "device" memory;
    // test_vulkan_model.cpp covers the staged double buffer of discrete GPUs.
    CachePtr c = make(model_.get(), spec(EKV_CACHE_OFFLOADED, "offloaded"));
    feed(model_.get(), c.get(), stream_, 0, 100, 100);
    const ekv_cache_stats s = stats_of(c.get());
    EXPECT_GT(s.host_bytes, 0u);
    EXPECT_EQ(s.device_bytes, 0u);
    CachePtr d = make(model_.get(), spec(EKV_CACHE_DYNAMIC, "dynamic"));
    feed(model_.get(), d.get(), stream_, 0, 100, 100);
    EXPECT_EQ(stats_of(d.get()).host_bytes, 0u);
    EXPECT_EQ(stats_of(d.get()).device_bytes, s.host_bytes);
}

// A 1-layer copy of the tiny model: with one layer a token's keys and values
// depend only on the token itself, so a window/sink cache must give exactly
// the logits of a fresh forward over the tokens it keeps, placed at the
// in-cache positions (StreamingLLM's definition).
class OneLayer : public CacheFamily {
protected:
    void SetUp() override {
        CacheFamily::SetUp();
        one_ = load_one_layer_llama(dir_);
        ASSERT_TRUE(one_);
    }
    // Logits of the last token of `kept`, fed fresh at positions 0..n-1.
    std::vector<float> recompute(const std::vector<int32_t>& kept) {
        CachePtr c = make(one_.get(), spec(EKV_CACHE_DYNAMIC, "reference"));
        std::vector<float> all = feed(one_.get(), c.get(), kept, 0, kept.size(), kept.size());
        return std::vector<float>(all.end() - nv_, all.end());
    }
    TempDir dir_;
    ModelPtr one_;
};

TEST_F(OneLayer, WindowAndSinkCachesAttendExactlyAsStreamingLLM) {
    const int32_t window = 24, sinks = 4;
    CacheSpec sw = spec(EKV_CACHE_SLIDING_WINDOW, "sliding_window");
    sw.window = window;
    CacheSpec sk = spec(EKV_CACHE_SINK, "sink");
    sk.window = window;
    sk.sinks = sinks;
    for (size_t chunk : {size_t(1), size_t(7), size_t(128)}) {
        const size_t n = 300;
        const std::vector<float> got_w = run(sw, n, chunk, one_.get());
        const std::vector<float> got_s = run(sk, n, chunk, one_.get());
        for (size_t t : {size_t(10), size_t(23), size_t(24), size_t(57), size_t(200), size_t(299)}) {
            // Sliding window: the last `window` tokens.
            const size_t from = t + 1 > window ? t + 1 - window : 0;
            std::vector<int32_t> kept(stream_.begin() + from, stream_.begin() + t + 1);
            EXPECT_LT(normalized_max_error(got_w.data() + t * nv_, recompute(kept).data(), nv_), 1e-4)
                << "window, token " << t << ", chunk " << chunk;
            // Sink: the first `sinks` tokens, then the last window - sinks.
            kept.assign(stream_.begin(), stream_.begin() + std::min<size_t>(sinks, t + 1));
            const size_t recent_from = std::max<size_t>(kept.size(), t + 1 > window - sinks ? t + 1 - (window - sinks) : 0);
            kept.insert(kept.end(), stream_.begin() + recent_from, stream_.begin() + t + 1);
            EXPECT_LT(normalized_max_error(got_s.data() + t * nv_, recompute(kept).data(), nv_), 1e-4)
                << "sink, token " << t << ", chunk " << chunk;
        }
    }
}

TEST_F(CacheFamily, RingsGiveTheSameLogitsHoweverTheStreamIsChunked) {
    CacheSpec sw = spec(EKV_CACHE_SLIDING_WINDOW, "sliding_window");
    sw.window = 32;
    CacheSpec sk = spec(EKV_CACHE_SINK, "sink");
    sk.window = 32;
    sk.sinks = 4;
    for (const CacheSpec& s : {sw, sk}) {
        const std::vector<float> one = run(s, 260, 1);
        for (size_t chunk : {size_t(5), size_t(64), size_t(260)})
            EXPECT_LT(max_row_error(run(s, 260, chunk), one, nv_), 1e-5) << s.name << " chunk " << chunk;
    }
}

TEST_F(CacheFamily, RingsKeepConstantMemoryFarPastTheTrainedContext) {
    CacheSpec sk = spec(EKV_CACHE_SINK, "sink");
    sk.window = 32;
    sk.sinks = 4;
    sk.dtype = EKV_KV_KIVI;
    sk.nbits = 4;
    CachePtr c = make(model_.get(), sk);
    feed(model_.get(), c.get(), stream_, 0, 64, 16);
    const ekv_cache_stats early = stats_of(c.get());
    // 800 tokens: three times the model's 256-token context.
    const std::vector<float> tail = feed(model_.get(), c.get(), stream_, 64, 736, 16);
    const ekv_cache_stats late = stats_of(c.get());
    EXPECT_EQ(late.seq_len, 800);
    EXPECT_EQ(late.tokens_held, 32);
    EXPECT_EQ(late.capacity, 32);
    EXPECT_EQ(late.device_bytes, early.device_bytes);
    EXPECT_EQ(late.used_bytes, early.used_bytes);
    // The same stream through the f16 sink cache: the 4-bit ring stays
    // within its quantization error all the way (measured 0.649 of the
    // logit spread over the 736 rows; q2 3.07, q8 0.028).
    CacheSpec f16 = sk;
    f16.dtype = EKV_KV_F16;
    CachePtr r = make(model_.get(), f16);
    feed(model_.get(), r.get(), stream_, 0, 64, 16);
    const double err = max_row_error(tail, feed(model_.get(), r.get(), stream_, 64, 736, 16), nv_);
    EXPECT_LT(err, 0.85);
    EXPECT_GT(err, 0.45);
    // The dynamic cache grows with the stream.
    CachePtr d = make(model_.get(), spec(EKV_CACHE_DYNAMIC, "dynamic"));
    feed(model_.get(), d.get(), stream_, 0, 800, 128);
    EXPECT_EQ(stats_of(d.get()).tokens_held, 800);
    EXPECT_GT(stats_of(d.get()).used_bytes, 10 * late.used_bytes);
}

TEST_F(CacheFamily, KiviErrorShrinksWithMoreBitsAndVanishesInsideTheResidual) {
    CacheSpec f16 = spec(EKV_CACHE_DYNAMIC, "dynamic f16");
    f16.dtype = EKV_KV_F16;
    const size_t n = 160;
    const std::vector<float> want = run(f16, n, 16);
    double err[9] = {};
    for (int bits : {2, 4, 8}) {
        CacheSpec q = spec(EKV_CACHE_QUANTIZED, "quantized");
        q.dtype = EKV_KV_F16;
        q.nbits = bits;
        err[bits] = max_row_error(run(q, n, 16), want, nv_, 64);  // rows that saw quantized keys
    }
    // This random model amplifies KV error: f32 vs f16 storage already
    // differ by ~0.007 of the logit spread. Measured: q2 4.554, q4 0.844,
    // q8 0.0498, each step ~16x the next as the quantization step predicts.
    // Each is pinned within about +-30%: a wrong rounding, range or group
    // moves it further (the exact KIVI semantics are checked against an
    // independent reference in unit/test_kivi_cache_reference.cpp).
    EXPECT_GT(err[2], 3.2);
    EXPECT_LT(err[2], 5.9);
    EXPECT_GT(err[4], 0.6);
    EXPECT_LT(err[4], 1.1);
    EXPECT_GT(err[8], 0.035);
    EXPECT_LT(err[8], 0.065);
    // A residual longer than the sequence keeps everything in full precision.
    CacheSpec all_fp = spec(EKV_CACHE_QUANTIZED, "quantized, residual 256");
    all_fp.dtype = EKV_KV_F16;
    all_fp.residual = 256;
    EXPECT_LT(max_row_error(run(all_fp, n, 16), want, nv_), 1e-6);
}

TEST_F(CacheFamily, KiviBytesPerTokenFollowTheLayout) {
    // kv_width = 2 heads x 16 = 32 channels, group 8, 2 layers.
    const uint64_t f16_per_token = 2 * 2 * 32 * 2;
    CachePtr f16 = make(model_.get(), [] {
        CacheSpec s;
        s.dtype = EKV_KV_F16;
        return s;
    }());
    EXPECT_EQ(stats_of(f16.get()).bytes_per_token, f16_per_token);
    for (int bits : {2, 4, 8}) {
        CacheSpec q = spec(EKV_CACHE_QUANTIZED, "quantized");
        q.nbits = bits;
        CachePtr c = make(model_.get(), q);
        const uint64_t codes = 32 * bits / 8;
        const uint64_t key_group = 8 * codes + 4 * 32, value_row = codes + 4 * 32 / 8;
        EXPECT_EQ(stats_of(c.get()).bytes_per_token, 2 * ((key_group + 8 * value_row + 7) / 8)) << bits;
        EXPECT_LT(stats_of(c.get()).bytes_per_token, f16_per_token);
    }
}

TEST_F(CacheFamily, KiviComposesWithEveryRetentionAndPlacement) {
    CacheSpec base[4] = {spec(EKV_CACHE_STATIC, "static"), spec(EKV_CACHE_SLIDING_WINDOW, "sliding_window"),
                         spec(EKV_CACHE_SINK, "sink"), spec(EKV_CACHE_OFFLOADED, "offloaded")};
    base[0].max_len = 300;
    base[1].window = 48;
    base[2].window = 48;
    base[2].sinks = 4;
    for (CacheSpec plain : base) {
        plain.dtype = EKV_KV_F16;
        CacheSpec q = plain;
        q.dtype = EKV_KV_KIVI;
        q.nbits = 8;
        const std::vector<float> want = run(plain, 200, 24), got = run(q, 200, 24);
        const double e = max_row_error(got, want, nv_);
        EXPECT_LT(e, 0.15) << plain.name;  // q8 on this model: see the test above
        EXPECT_GT(e, 0.0) << plain.name;
        CachePtr c = make(model_.get(), q);
        feed(model_.get(), c.get(), stream_, 0, 100, 100);
        EXPECT_LT(stats_of(c.get()).bytes_per_token, 2u * 2 * 32 * 2) << plain.name;
    }
}

TEST_F(CacheFamily, BadParametersAreRefusedWithAReason) {
    struct Case {
        CacheSpec s;
        ekv_status status;
        const char* says;
    };
    std::vector<Case> cases;
    CacheSpec s = spec(EKV_CACHE_SINK, "sink");
    s.window = 4;
    s.sinks = 4;
    cases.push_back({s, EKV_ERR_INVALID_ARGUMENT, "must exceed num_sink_tokens"});
    s = spec(EKV_CACHE_SLIDING_WINDOW, "sliding_window");
    cases.push_back({s, EKV_ERR_INVALID_ARGUMENT, "window_length > 0"});
    s = spec(EKV_CACHE_QUANTIZED, "quantized");
    s.nbits = 3;
    cases.push_back({s, EKV_ERR_INVALID_ARGUMENT, "nbits 3"});
    s.nbits = 4;
    s.group = 5;
    cases.push_back({s, EKV_ERR_INVALID_ARGUMENT, "divide the head dimension"});
    s.group = 8;
    s.residual = 12;
    cases.push_back({s, EKV_ERR_INVALID_ARGUMENT, "residual_length 12"});
    for (const Case& c : cases) {
        CachePtr out;
        EXPECT_EQ(try_make(model_.get(), c.s, &out), c.status) << c.s.name;
        EXPECT_NE(std::string(ekv_last_error()).find(c.says), std::string::npos) << ekv_last_error();
        EXPECT_FALSE(out);
    }
    // Enum values a C caller can pass but C++ cannot hold: written as raw ints.
    const int bad_dtype = 7, bad_placement = 9;
    for (int which = 0; which < 2; ++which) {
        ekv_cache_params p = ekv_cache_default_params();
        if (which == 0)
            std::memcpy(&p.dtype, &bad_dtype, sizeof bad_dtype);
        else
            std::memcpy(&p.offload, &bad_placement, sizeof bad_placement);
        ekv_cache* out = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &out), EKV_ERR_INVALID_ARGUMENT);
        EXPECT_NE(std::string(ekv_last_error()).find(which == 0 ? "dtype" : "placement"), std::string::npos)
            << ekv_last_error();
        EXPECT_EQ(out, nullptr);
    }
}

}  // namespace
