// The `hybrid` cache on Gemma: what it holds (a ring of the model's window on
// local layers, every token on global ones), its memory accounting against a
// full cache, and the cache operations (crop, clone, save/load, reset) giving
// exactly what a fresh computation gives. Plus the refusals: model-specific
// caches on the wrong model.
#include <cstdio>
#include <cstring>
#include <string>

#include "model/test_util.h"

using namespace ekv_test;

namespace {

constexpr int32_t kWindow = 8;      // tiny fixtures' sliding_window
constexpr int32_t kLayers = 6;      // tiny Gemma 3: layers 0-4 local, 5 global

class GemmaHybrid : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = load_model(fixtures_dir() + "/tiny_gemma3/tiny_gemma3_f32.gguf");
        ASSERT_TRUE(model_);
        nv_ = static_cast<size_t>(n_vocab(model_.get()));
        for (int32_t i = 0; i < 40; ++i) seq_.push_back((i * 37 + 11) % static_cast<int32_t>(nv_));
    }
    CachePtr make(ekv_cache_type type, ekv_kv_dtype kv = EKV_KV_F32) {
        ekv_cache_params p = ekv_cache_default_params();
        p.type = type;
        p.dtype = kv;
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_OK) << ekv_last_error();
        return CachePtr(c);
    }
    std::vector<float> run(ekv_cache* c, const int32_t* toks, int32_t n) {
        std::vector<float> logits(nv_);
        EXPECT_EQ(ekv_forward(model_.get(), c, toks, n, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()), EKV_OK)
            << ekv_last_error();
        return logits;
    }
    ModelPtr model_;
    size_t nv_ = 0;
    std::vector<int32_t> seq_;
};

TEST_F(GemmaHybrid, AutoPicksHybrid) {
    CachePtr c = make(EKV_CACHE_AUTO);
    ekv_cache_type t = EKV_CACHE_AUTO;
    ASSERT_EQ(ekv_cache_get_type(c.get(), &t), EKV_OK);
    EXPECT_EQ(t, EKV_CACHE_HYBRID);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(model_.get(), &info), EKV_OK);
    EXPECT_EQ(info.natural_cache, EKV_CACHE_HYBRID);
}

TEST_F(GemmaHybrid, EqualsDynamicPastTheWindow) {
    CachePtr h = make(EKV_CACHE_HYBRID), d = make(EKV_CACHE_DYNAMIC);
    std::vector<float> a = run(h.get(), seq_.data(), 20), b = run(d.get(), seq_.data(), 20);
    EXPECT_LT(normalized_max_error(a.data(), b.data(), static_cast<int32_t>(nv_)), 1e-5);
    for (size_t i = 20; i < seq_.size(); ++i) {
        a = run(h.get(), &seq_[i], 1);
        b = run(d.get(), &seq_[i], 1);
        ASSERT_LT(normalized_max_error(a.data(), b.data(), static_cast<int32_t>(nv_)), 1e-5) << "position " << i;
    }
}

TEST_F(GemmaHybrid, MemoryHoldsTheWindowOnLocalLayers) {
    CachePtr h = make(EKV_CACHE_HYBRID), d = make(EKV_CACHE_DYNAMIC);
    run(h.get(), seq_.data(), static_cast<int32_t>(seq_.size()));
    run(d.get(), seq_.data(), static_cast<int32_t>(seq_.size()));
    ekv_cache_stats hs = ekv_cache_stats_default(), ds = ekv_cache_stats_default();
    ASSERT_EQ(ekv_cache_get_stats(h.get(), &hs), EKV_OK);
    ASSERT_EQ(ekv_cache_get_stats(d.get(), &ds), EKV_OK);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(model_.get(), &info), EKV_OK);
    const uint64_t row = 2ull * info.n_kv_heads * info.head_dim * sizeof(float);  // K + V, f32
    const uint64_t n = seq_.size();
    // Live tokens: 8 on each of the 5 local layers, all 40 on the global one.
    EXPECT_EQ(hs.used_bytes, row * (5 * kWindow + 1 * n));
    EXPECT_EQ(ds.used_bytes, row * kLayers * n);
    // Past the window one more token costs the global layer only.
    EXPECT_EQ(hs.bytes_per_token, row);
    EXPECT_EQ(ds.bytes_per_token, row * kLayers);
    EXPECT_EQ(hs.seq_len, static_cast<int32_t>(n));
    EXPECT_EQ(hs.tokens_held, static_cast<int32_t>(n));
}

TEST_F(GemmaHybrid, CropInsideTheRingContinuesExactly) {
    // The local rings hold the window plus a chunk of slack (8 + 127 rows),
    // so a 160-token sequence has dropped the keys of its first 25 tokens.
    std::vector<int32_t> longer;
    for (int32_t i = 0; i < 170; ++i) longer.push_back((i * 53 + 7) % static_cast<int32_t>(nv_));
    CachePtr h = make(EKV_CACHE_HYBRID);
    run(h.get(), longer.data(), 160);
    ASSERT_EQ(ekv_cache_crop(h.get(), 150), EKV_OK) << ekv_last_error();
    std::vector<float> a = run(h.get(), &longer[150], 5);
    CachePtr fresh = make(EKV_CACHE_HYBRID);
    std::vector<float> b = run(fresh.get(), longer.data(), 155);
    EXPECT_LT(normalized_max_error(a.data(), b.data(), static_cast<int32_t>(nv_)), 1e-5);
    // Back to 10 tokens: token 3 would be visible again, but its keys are gone.
    EXPECT_EQ(ekv_cache_crop(h.get(), 10), EKV_ERR_INVALID_STATE);
    EXPECT_NE(std::string(ekv_last_error()).find("reset and recompute"), std::string::npos) << ekv_last_error();
    int32_t len = 0;
    ASSERT_EQ(ekv_cache_seq_len(h.get(), &len), EKV_OK);
    EXPECT_EQ(len, 155);  // the refusal changed nothing
    a = run(h.get(), &longer[155], 1);
    b = run(fresh.get(), &longer[155], 1);
    EXPECT_LT(normalized_max_error(a.data(), b.data(), static_cast<int32_t>(nv_)), 1e-5);
}

TEST_F(GemmaHybrid, CloneSaveLoadAndResetContinueExactly) {
    CachePtr h = make(EKV_CACHE_HYBRID, EKV_KV_F16);
    run(h.get(), seq_.data(), 25);
    ekv_cache* cl = nullptr;
    ASSERT_EQ(ekv_cache_clone(h.get(), &cl), EKV_OK) << ekv_last_error();
    CachePtr clone(cl);
    const std::string path = ::testing::TempDir() + "gemma_hybrid.ekv";
    ASSERT_EQ(ekv_cache_save(h.get(), path.c_str()), EKV_OK) << ekv_last_error();
    ekv_cache* ld = nullptr;
    ASSERT_EQ(ekv_cache_load(model_.get(), path.c_str(), &ld), EKV_OK) << ekv_last_error();
    CachePtr loaded(ld);
    ekv_cache_type t = EKV_CACHE_AUTO;
    ASSERT_EQ(ekv_cache_get_type(loaded.get(), &t), EKV_OK);
    EXPECT_EQ(t, EKV_CACHE_HYBRID);

    const std::vector<float> want = run(h.get(), &seq_[25], 5);
    const std::vector<float> got_clone = run(clone.get(), &seq_[25], 5);
    const std::vector<float> got_loaded = run(loaded.get(), &seq_[25], 5);
    EXPECT_EQ(std::memcmp(want.data(), got_clone.data(), nv_ * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(want.data(), got_loaded.data(), nv_ * sizeof(float)), 0);

    ASSERT_EQ(ekv_cache_reset(h.get()), EKV_OK);
    CachePtr fresh = make(EKV_CACHE_HYBRID, EKV_KV_F16);
    const std::vector<float> a = run(h.get(), seq_.data(), 17), b = run(fresh.get(), seq_.data(), 17);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), nv_ * sizeof(float)), 0);

    // A hybrid file on another model (the tiny Gemma 2) is refused.
    ModelPtr other = load_model(fixtures_dir() + "/tiny_gemma2/tiny_gemma2_f32.gguf");
    ASSERT_TRUE(other);
    ld = nullptr;
    EXPECT_EQ(ekv_cache_load(other.get(), path.c_str(), &ld), EKV_ERR_MODEL_MISMATCH);
    EXPECT_EQ(ld, nullptr);
    // Truncated: refused, nothing created.
    FILE* f = std::fopen(path.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    std::vector<char> bytes(1 << 20);
    bytes.resize(std::fread(bytes.data(), 1, bytes.size(), f));
    std::fclose(f);
    f = std::fopen(path.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size() - 100, f);
    std::fclose(f);
    EXPECT_EQ(ekv_cache_load(model_.get(), path.c_str(), &ld), EKV_ERR_INVALID_FILE);
    EXPECT_EQ(ld, nullptr);
    std::remove(path.c_str());
}

TEST_F(GemmaHybrid, GenericCachesServeGemma) {
    // Every generic type runs Gemma; rings and KIVI included, each against a
    // reference. 160 tokens wrap the rings' rows (window + 127 of slack).
    std::vector<int32_t> longer;
    for (int32_t i = 0; i < 160; ++i) longer.push_back((i * 29 + 3) % static_cast<int32_t>(nv_));
    const int32_t n = static_cast<int32_t>(longer.size()), nv = static_cast<int32_t>(nv_);
    auto generic = [&](ekv_cache_type type, ekv_kv_dtype dtype, int32_t window) {
        ekv_cache_params p = ekv_cache_default_params();  // KIVI 4-bit, 4 sinks
        p.type = type;
        p.dtype = dtype;
        p.window_length = window;
        p.q_group_size = 16;
        p.residual_length = 16;
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_OK) << ekv_cache_type_name(type) << ": " << ekv_last_error();
        return CachePtr(c);
    };
    // Every row's logits, fed in forwards of `chunk` tokens.
    auto rows = [&](ekv_cache* c, int32_t chunk) {
        std::vector<float> all(static_cast<size_t>(n) * nv_);
        for (int32_t i = 0; i < n; i += chunk) {
            const int32_t k = std::min(chunk, n - i);
            EXPECT_EQ(ekv_forward(model_.get(), c, &longer[i], k, nullptr, EKV_LOGITS_ALL, all.data() + i * nv_,
                                  static_cast<size_t>(k) * nv_),
                      EKV_OK)
                << ekv_last_error();
        }
        return all;
    };
    // Largest normalized error over rows [r0, r1).
    auto error = [&](const std::vector<float>& got, const std::vector<float>& want, int32_t r0, int32_t r1) {
        double worst = 0;
        for (int32_t r = r0; r < r1; ++r)
            worst = std::max(worst, normalized_max_error(got.data() + r * nv_, want.data() + r * nv_, nv));
        return worst;
    };
    // F32 KV for the rings: f16 rounding would turn the summation-order
    // noise of a different segment layout (~1e-6) into ulp flips (~1e-4).
    CachePtr d = make(EKV_CACHE_DYNAMIC);
    const std::vector<float> dyn = rows(d.get(), n);
    struct Ring {
        ekv_cache_type type;
        int32_t window;  // the model's local window is 8
    };
    // Sink windows 16 (4 sinks + 12) and 10 (4 sinks + 6: narrower than the
    // local window, so two sinks stay in it and two leave it).
    for (const Ring& r : {Ring{EKV_CACHE_SLIDING_WINDOW, 16}, Ring{EKV_CACHE_SINK, 16}, Ring{EKV_CACHE_SINK, 10}}) {
        SCOPED_TRACE(std::string(ekv_cache_type_name(r.type)) + " " + std::to_string(r.window));
        CachePtr a = generic(r.type, EKV_KV_F32, r.window), b = generic(r.type, EKV_KV_F32, r.window);
        // The whole stream in forwards of 128 + 32 (the window a mask inside
        // each) against one token at a time (the ring wraps).
        const std::vector<float> chunked = rows(a.get(), n), stepwise = rows(b.get(), 1);
        EXPECT_LT(error(stepwise, chunked, 0, n), 1e-5);
        // While the window holds every token a ring is the dynamic cache (a
        // sink cache too: local layers see no sink outside the model's
        // window); later it is not (it dropped tokens the dynamic cache keeps).
        EXPECT_LT(error(chunked, dyn, 0, r.window), 1e-5);
        EXPECT_GT(error(chunked, dyn, r.window, n), 1e-2);
    }
    // KIVI 4-bit in groups of 16 after a residual of 16, fed in forwards of
    // 16 as the f16 cache: within its measured error (0.060 of the logit
    // spread), pinned within about +-30%.
    CachePtr q = generic(EKV_CACHE_QUANTIZED, EKV_KV_F16, 0), d16 = make(EKV_CACHE_DYNAMIC, EKV_KV_F16);
    const double kivi = error(rows(q.get(), 16), rows(d16.get(), 16), 0, n);
    EXPECT_LT(kivi, 0.08);
    EXPECT_GT(kivi, 0.04);
}

TEST_F(GemmaHybrid, ModelSpecificCachesAreRefusedWithAReason) {
    struct Case {
        ekv_cache_type type;
        const char* reason;
    };
    for (const Case& k : {Case{EKV_CACHE_MAMBA, "recurrent"}, Case{EKV_CACHE_HYBRID_MAMBA, "recurrent"},
                          Case{EKV_CACHE_ENCODER_DECODER, "encoder-decoder"}}) {
        ekv_cache_params p = ekv_cache_default_params();
        p.type = k.type;
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_UNSUPPORTED) << ekv_cache_type_name(k.type);
        EXPECT_EQ(c, nullptr);
        EXPECT_NE(std::string(ekv_last_error()).find(k.reason), std::string::npos) << ekv_last_error();
    }
    // The hybrid window is the model's: a contradicting window_length is refused.
    ekv_cache_params p = ekv_cache_default_params();
    p.type = EKV_CACHE_HYBRID;
    p.window_length = 64;
    ekv_cache* c = nullptr;
    EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(ekv_last_error()).find("sliding window"), std::string::npos) << ekv_last_error();
    // Llama has no local layers: hybrid is refused there.
    ModelPtr llama = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
    ASSERT_TRUE(llama);
    p.window_length = 0;
    EXPECT_EQ(ekv_cache_create(llama.get(), &p, &c), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(ekv_last_error()).find("local/global"), std::string::npos) << ekv_last_error();
}

}  // namespace
