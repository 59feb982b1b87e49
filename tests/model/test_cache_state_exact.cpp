// Cache operations that must leave exactly the state a fresh computation
// has: save/load of a hybrid cache whose local rings wrapped (tiny Gemma 3)
// and of KIVI storage on static, sliding-window and offloaded caches (round
// trip, then continue: identical logits); crop into already-quantized KIVI
// groups; and overflowing a static cache through ekv_generate and
// ekv_forward, which must leave the cache byte for byte as it was.
#include "model/cache_family_util.h"

using namespace ekv_test;

namespace {

std::vector<uint8_t> saved(const ekv_cache* c) {
    size_t n = 0;
    const ekv_status st = ekv_cache_save_to_memory(c, nullptr, 0, &n);  // the size
    EXPECT_TRUE(st == EKV_OK || st == EKV_ERR_BUFFER_TOO_SMALL) << ekv_last_error();
    std::vector<uint8_t> b(n);
    EXPECT_EQ(ekv_cache_save_to_memory(c, b.data(), b.size(), &n), EKV_OK) << ekv_last_error();
    return b;
}

CachePtr loaded(ekv_model* m, const std::vector<uint8_t>& bytes) {
    ekv_cache* raw = nullptr;
    EXPECT_EQ(ekv_cache_load_from_memory(m, bytes.data(), bytes.size(), &raw), EKV_OK) << ekv_last_error();
    return CachePtr(raw);
}

// Feeds tokens[first..] in the given forward sizes; all logits.
std::vector<float> feed_chunks(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& tokens, size_t first,
                               std::initializer_list<size_t> chunks) {
    std::vector<float> all;
    for (size_t n : chunks) {
        const std::vector<float> part = feed(m, c, tokens, first, n, n);
        all.insert(all.end(), part.begin(), part.end());
        first += n;
    }
    return all;
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Saves, loads, checks the loaded cache saves the same bytes, then continues
// both caches with the same tokens: the logits must be identical.
void expect_round_trip_continues_exactly(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& tokens, size_t at,
                                         const std::string& what) {
    const std::vector<uint8_t> bytes = saved(c);
    CachePtr back = loaded(m, bytes);
    ASSERT_TRUE(back) << what;
    EXPECT_EQ(saved(back.get()), bytes) << what;
    // Decode steps, then a chunk.
    const std::vector<float> want = feed_chunks(m, c, tokens, at, {1, 1, 1, 1, 1, 1, 20});
    const std::vector<float> got = feed_chunks(m, back.get(), tokens, at, {1, 1, 1, 1, 1, 1, 20});
    EXPECT_TRUE(same_floats(got, want)) << what;
}

TEST(CacheStateExact, HybridWithWrappedRingsSavesAndLoadsExactly) {
    ModelPtr m = load_model(fixtures_dir() + "/tiny_gemma3/tiny_gemma3_f32.gguf");
    ASSERT_TRUE(m);
    const int32_t nv = n_vocab(m.get());
    std::vector<int32_t> seq;
    for (int32_t i = 0; i < 240; ++i) seq.push_back((i * 53 + 7) % nv);
    for (ekv_kv_dtype dtype : {EKV_KV_F16, EKV_KV_F32}) {
        ekv_cache_params p = ekv_cache_default_params();
        p.type = EKV_CACHE_HYBRID;
        p.dtype = dtype;
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_create(m.get(), &p, &raw), EKV_OK) << ekv_last_error();
        CachePtr c(raw);
        // The local layers' rings hold the window (8) plus a chunk of slack
        // (127): 183 tokens wrapped them, at an odd row.
        feed_chunks(m.get(), c.get(), seq, 0, {100, 77, 1, 1, 1, 1, 1, 1});
        ASSERT_EQ(stats_of(c.get()).seq_len, 183);
        expect_round_trip_continues_exactly(m.get(), c.get(), seq, 183, dtype == EKV_KV_F16 ? "hybrid f16" : "hybrid f32");
    }
}

class TinyLlamaState : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
        ASSERT_TRUE(model_);
        nv_ = n_vocab(model_.get());
        for (int i = 0; i < 600; ++i) stream_.push_back(3 + (i * 71 + i / 3) % (nv_ - 3));
    }
    ModelPtr model_;
    int32_t nv_ = 0;
    std::vector<int32_t> stream_;
};

TEST_F(TinyLlamaState, KiviStorageOnEveryRetentionSavesAndLoadsExactly) {
    struct Case {
        ekv_cache_type type;
        ekv_placement offload;
        int32_t max_len, window;
        int nbits;
        const char* name;
    };
    const Case cases[] = {
        {EKV_CACHE_STATIC, EKV_PLACEMENT_DEVICE, 300, 0, 4, "static q4"},
        {EKV_CACHE_SLIDING_WINDOW, EKV_PLACEMENT_DEVICE, 0, 24, 2, "sliding_window q2"},
        {EKV_CACHE_OFFLOADED, EKV_PLACEMENT_DEVICE, 0, 0, 8, "offloaded q8"},
        {EKV_CACHE_OFFLOADED_STATIC, EKV_PLACEMENT_DEVICE, 300, 0, 4, "offloaded_static q4"},
        {EKV_CACHE_SLIDING_WINDOW, EKV_PLACEMENT_HOST, 0, 40, 4, "sliding_window q4 host"},
    };
    for (const Case& k : cases) {
        CacheSpec s;
        s.type = k.type;
        s.dtype = EKV_KV_KIVI;
        s.nbits = k.nbits;
        s.max_len = k.max_len;
        s.window = k.window;
        s.offload = k.offload;
        s.name = k.name;
        CachePtr c = make(model_.get(), s);
        ASSERT_TRUE(c) << k.name;
        // 190 tokens: groups quantized, the window's rings wrapped.
        feed_chunks(model_.get(), c.get(), stream_, 0, {90, 60, 37, 1, 1, 1});
        expect_round_trip_continues_exactly(model_.get(), c.get(), stream_, 190, k.name);
    }
}

TEST_F(TinyLlamaState, CropIntoQuantizedGroupsContinuesExactlyLikeAFreshCache) {
    // residual_length 0: a fresh cache quantizes every whole group before a
    // forward, so after 152 tokens it holds exactly what the crop keeps (all
    // 19 groups quantized); with a residual a fresh cache would still hold
    // the newest tokens in f16 that the longer run already quantized.
    CacheSpec q;
    q.type = EKV_CACHE_QUANTIZED;
    q.dtype = EKV_KV_F16;
    q.nbits = 4;
    q.group = 8;
    q.residual = 0;
    q.name = "quantized q4";
    CachePtr c = make(model_.get(), q);
    // The first 152 tokens in the forwards the fresh cache uses (same K/V
    // rows, computed over the same quantized prefix), then on to 500.
    feed_chunks(model_.get(), c.get(), stream_, 0, {100, 52, 100, 100, 100, 48});
    ASSERT_EQ(stats_of(c.get()).seq_len, 500);
    ASSERT_EQ(ekv_cache_crop(c.get(), 152), EKV_OK) << ekv_last_error();  // group 19, far below q_end 448
    const std::vector<float> got = feed_chunks(model_.get(), c.get(), stream_, 152, {8});
    CachePtr fresh = make(model_.get(), q);
    feed_chunks(model_.get(), fresh.get(), stream_, 0, {100, 52});
    const std::vector<float> want = feed_chunks(model_.get(), fresh.get(), stream_, 152, {8});
    EXPECT_TRUE(same_floats(got, want));
    EXPECT_EQ(stats_of(c.get()).used_bytes, stats_of(fresh.get()).used_bytes);
    // And on: decode steps quantize group 20 the same way in both.
    EXPECT_TRUE(same_floats(feed_chunks(model_.get(), c.get(), stream_, 160, {1, 1, 1, 1, 1}),
                            feed_chunks(model_.get(), fresh.get(), stream_, 160, {1, 1, 1, 1, 1})));
}

TEST_F(TinyLlamaState, StaticOverflowLeavesTheCacheByteIdentical) {
    for (ekv_kv_dtype dtype : {EKV_KV_F16, EKV_KV_KIVI}) {
        CacheSpec s;
        s.type = EKV_CACHE_STATIC;
        s.dtype = dtype;
        s.max_len = 24;
        s.residual = 8;
        s.name = dtype == EKV_KV_KIVI ? "static q4" : "static f16";
        SCOPED_TRACE(s.name);
        CachePtr c = make(model_.get(), s);
        ekv_generate_params gp = ekv_generate_default_params();
        gp.max_new_tokens = 40;
        gp.stop_at_eos = 0;
        std::vector<int32_t> out(40);
        ekv_generate_result r = ekv_generate_default_result();
        ASSERT_EQ(ekv_generate(model_.get(), c.get(), stream_.data(), 10, &gp, out.data(), 40, &r), EKV_OK)
            << ekv_last_error();
        EXPECT_EQ(r.stop_reason, EKV_STOP_CACHE_FULL);
        ASSERT_EQ(r.n_generated, 24 - 10 + 1);  // the last token has no room
        const std::vector<uint8_t> full = saved(c.get());

        // The failed step left what forwarding the prompt and the generated
        // tokens (but the last) gives.
        CachePtr by_hand = make(model_.get(), s);
        std::vector<int32_t> history(stream_.begin(), stream_.begin() + 10);
        history.insert(history.end(), out.begin(), out.begin() + 14);
        feed(model_.get(), by_hand.get(), history, 0, 10, 10);
        feed(model_.get(), by_hand.get(), history, 10, 14, 1);
        EXPECT_EQ(saved(by_hand.get()), full);

        // Refusals: a prompt longer than the cache, one more token, positions
        // past the end after a rewrite point; none may touch a byte.
        std::vector<int32_t> longer = history;
        longer.push_back(out[14]);
        EXPECT_EQ(ekv_generate(model_.get(), c.get(), longer.data(), 25, &gp, out.data(), 40, &r),
                  EKV_ERR_CONTEXT_OVERFLOW);
        EXPECT_EQ(saved(c.get()), full);
        std::vector<float> logits(4 * static_cast<size_t>(nv_));
        EXPECT_EQ(ekv_forward(model_.get(), c.get(), &out[14], 1, nullptr, EKV_LOGITS_LAST, logits.data(),
                              logits.size()),
                  EKV_ERR_CACHE_FULL);
        EXPECT_EQ(saved(c.get()), full);
        const int32_t pos[4] = {21, 22, 23, 24};
        EXPECT_EQ(ekv_forward(model_.get(), c.get(), stream_.data(), 4, pos, EKV_LOGITS_ALL, logits.data(),
                              logits.size()),
                  EKV_ERR_CACHE_FULL);
        EXPECT_EQ(saved(c.get()), full);
    }
}

}  // namespace
