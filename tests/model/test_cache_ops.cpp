// Cache semantics through the C ABI on the tiny Llama: static capacity and
// its overflow error, growth of the dynamic cache, crop/rollback, clone for
// prefix reuse, reset, HF cache_position rewrites, multi-turn reuse, and the
// refusals (unknown/unsupported types, wrong model, bad tokens).
#include <cstring>

#include "model/test_util.h"

using namespace ekv_test;

namespace {

class CacheOps : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
        ASSERT_TRUE(model_);
        nv_ = n_vocab(model_.get());
        for (int i = 0; i < 300; ++i) seq_.push_back((i * 37 + 11) % nv_);
        logits_.resize(static_cast<size_t>(nv_));
    }
    ekv_status forward(ekv_cache* c, const int32_t* t, int32_t n, const int32_t* pos = nullptr) {
        return ekv_forward(model_.get(), c, t, n, pos, EKV_LOGITS_LAST, logits_.data(), logits_.size());
    }
    std::vector<float> logits_after(ekv_cache_type type, int32_t n) {
        CachePtr c = make_cache(model_.get(), type, type == EKV_CACHE_STATIC ? 512 : 0);
        EXPECT_EQ(forward(c.get(), seq_.data(), n), EKV_OK) << ekv_last_error();
        return logits_;
    }
    // Chunking differs between runs, so allow summation-order noise only.
    void expect_same_as_fresh(ekv_cache_type type, int32_t n) {
        const std::vector<float> got = logits_;
        const std::vector<float> want = logits_after(type, n);
        EXPECT_LT(normalized_max_error(got.data(), want.data(), nv_), 1e-5);
    }
    int32_t seq_len(ekv_cache* c) {
        int32_t n = -1;
        EXPECT_EQ(ekv_cache_seq_len(c, &n), EKV_OK);
        return n;
    }
    ModelPtr model_;
    int32_t nv_ = 0;
    std::vector<int32_t> seq_;
    std::vector<float> logits_;
};

TEST_F(CacheOps, StaticCacheIsPreallocatedAndRefusesOverflowWithoutDamage) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_STATIC, 16);
    int32_t cap = 0;
    ASSERT_EQ(ekv_cache_capacity(c.get(), &cap), EKV_OK);
    EXPECT_EQ(cap, 16);
    ekv_cache_stats st = ekv_cache_stats_default();
    ASSERT_EQ(ekv_cache_get_stats(c.get(), &st), EKV_OK);
    EXPECT_EQ(st.device_bytes, st.bytes_per_token * 16);  // preallocated up front
    EXPECT_EQ(st.used_bytes, 0u);

    ASSERT_EQ(forward(c.get(), seq_.data(), 12), EKV_OK);
    EXPECT_EQ(forward(c.get(), seq_.data() + 12, 5), EKV_ERR_CACHE_FULL);
    EXPECT_NE(std::strlen(ekv_last_error()), 0u);
    EXPECT_EQ(seq_len(c.get()), 12);
    // The failed call corrupted nothing: continuing gives the reference.
    ASSERT_EQ(forward(c.get(), seq_.data() + 12, 4), EKV_OK);
    expect_same_as_fresh(EKV_CACHE_DYNAMIC, 16);
    EXPECT_EQ(forward(c.get(), seq_.data() + 16, 1), EKV_ERR_CACHE_FULL);
}

TEST_F(CacheOps, DynamicCacheGrowsInChunksAndMatchesStatic) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    int32_t cap = 0;
    ASSERT_EQ(ekv_cache_capacity(c.get(), &cap), EKV_OK);
    EXPECT_EQ(cap, -1);
    // Grow past the first 256-token chunk one token at a time.
    for (int32_t i = 0; i < 270; ++i) ASSERT_EQ(forward(c.get(), &seq_[static_cast<size_t>(i)], 1), EKV_OK);
    ekv_cache_stats st = ekv_cache_stats_default();
    ASSERT_EQ(ekv_cache_get_stats(c.get(), &st), EKV_OK);
    EXPECT_EQ(st.seq_len, 270);
    EXPECT_GE(st.device_bytes, st.bytes_per_token * 270);
    EXPECT_EQ(st.device_bytes % (st.bytes_per_token * 256), 0u);  // whole chunks
    EXPECT_EQ(st.tokens_forwarded, 270u);
    const std::vector<float> incremental = logits_;
    const std::vector<float> one_pass = logits_after(EKV_CACHE_STATIC, 270);
    EXPECT_LT(normalized_max_error(incremental.data(), one_pass.data(), nv_), 1e-4);
}

TEST_F(CacheOps, CropRollsBackAndRecomputesIdentically) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    ASSERT_EQ(forward(c.get(), seq_.data(), 20), EKV_OK);
    EXPECT_EQ(ekv_cache_crop(c.get(), 21), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_crop(c.get(), -1), EKV_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(ekv_cache_crop(c.get(), 10), EKV_OK);
    EXPECT_EQ(seq_len(c.get()), 10);
    std::vector<int32_t> other(seq_.begin() + 100, seq_.begin() + 110);
    ASSERT_EQ(forward(c.get(), other.data(), 10), EKV_OK);  // overwrite the dropped part
    ASSERT_EQ(ekv_cache_crop(c.get(), 10), EKV_OK);
    ASSERT_EQ(forward(c.get(), seq_.data() + 10, 10), EKV_OK);
    expect_same_as_fresh(EKV_CACHE_DYNAMIC, 20);
}

TEST_F(CacheOps, CachePositionRewritesFromAnEarlierPosition) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_STATIC, 64);
    ASSERT_EQ(forward(c.get(), seq_.data(), 20), EKV_OK);
    std::vector<int32_t> pos(10);
    for (int i = 0; i < 10; ++i) pos[static_cast<size_t>(i)] = 10 + i;
    ASSERT_EQ(forward(c.get(), seq_.data() + 10, 10, pos.data()), EKV_OK);
    EXPECT_EQ(seq_len(c.get()), 20);
    expect_same_as_fresh(EKV_CACHE_DYNAMIC, 20);
    // Gaps and positions past the end are refused; nothing changes.
    pos[3] = 99;
    EXPECT_EQ(forward(c.get(), seq_.data() + 10, 10, pos.data()), EKV_ERR_INVALID_ARGUMENT);
    const int32_t past[] = {25};
    EXPECT_EQ(forward(c.get(), seq_.data(), 1, past), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seq_len(c.get()), 20);
}

TEST_F(CacheOps, CloneSharesAPrefillAndOnlyTheSuffixIsComputed) {
    CachePtr base = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    ASSERT_EQ(forward(base.get(), seq_.data(), 40), EKV_OK);
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_clone(base.get(), &raw), EKV_OK);
    CachePtr fork(raw);
    EXPECT_EQ(seq_len(fork.get()), 40);

    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 4;
    gp.stop_at_eos = 0;
    int32_t out[4];
    ekv_generate_result r = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), fork.get(), seq_.data(), 45, &gp, out, 4, &r), EKV_OK);
    EXPECT_EQ(r.n_prompt_reused, 40);
    EXPECT_EQ(r.n_prompt_forwarded, 5);
    EXPECT_EQ(r.n_forwarded, 5 + 3);
    EXPECT_EQ(seq_len(base.get()), 40);  // the original is untouched

    // Same tokens as computing everything from scratch.
    CachePtr fresh = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    int32_t out2[4];
    ekv_generate_result r2 = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), fresh.get(), seq_.data(), 45, &gp, out2, 4, &r2), EKV_OK);
    EXPECT_EQ(r2.n_prompt_forwarded, 45);
    EXPECT_EQ(std::vector<int32_t>(out, out + 4), std::vector<int32_t>(out2, out2 + 4));
}

TEST_F(CacheOps, SecondTurnComputesOnlyItsNewTokens) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 6;
    gp.stop_at_eos = 0;
    int32_t out[6];
    ekv_generate_result r1 = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), seq_.data(), 30, &gp, out, 6, &r1), EKV_OK);
    EXPECT_EQ(r1.n_prompt_forwarded, 30);
    // Turn two: the whole conversation so far plus 8 new tokens.
    std::vector<int32_t> turn2(seq_.begin(), seq_.begin() + 30);
    turn2.insert(turn2.end(), out, out + 6);
    turn2.insert(turn2.end(), seq_.begin() + 200, seq_.begin() + 208);
    ekv_generate_result r2 = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), turn2.data(), static_cast<int32_t>(turn2.size()), &gp, out, 6, &r2),
              EKV_OK);
    // The last generated token was never fed, so it is computed with the new ones.
    EXPECT_EQ(r2.n_prompt_reused, 35);
    EXPECT_EQ(r2.n_prompt_forwarded, 9);
    ekv_cache_stats st = ekv_cache_stats_default();
    ASSERT_EQ(ekv_cache_get_stats(c.get(), &st), EKV_OK);
    EXPECT_EQ(st.tokens_forwarded, static_cast<uint64_t>(30 + 5 + 9 + 5));
}

TEST_F(CacheOps, ResetEmptiesButKeepsWorking) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    ASSERT_EQ(forward(c.get(), seq_.data(), 20), EKV_OK);
    ASSERT_EQ(ekv_cache_reset(c.get()), EKV_OK);
    EXPECT_EQ(seq_len(c.get()), 0);
    ASSERT_EQ(forward(c.get(), seq_.data(), 20), EKV_OK);
    expect_same_as_fresh(EKV_CACHE_DYNAMIC, 20);
}

TEST_F(CacheOps, BadInputIsRefusedAndChangesNothing) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    ASSERT_EQ(forward(c.get(), seq_.data(), 5), EKV_OK);
    const int32_t bad[] = {1, nv_, 2};
    EXPECT_EQ(forward(c.get(), bad, 3), EKV_ERR_INVALID_TOKEN);
    const int32_t neg[] = {-1};
    EXPECT_EQ(forward(c.get(), neg, 1), EKV_ERR_INVALID_TOKEN);
    EXPECT_EQ(seq_len(c.get()), 5);
    EXPECT_EQ(ekv_forward(model_.get(), c.get(), seq_.data(), 3, nullptr, EKV_LOGITS_ALL, logits_.data(),
                          logits_.size()),
              EKV_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(forward(nullptr, nullptr, 1), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_forward(nullptr, c.get(), seq_.data(), 1, nullptr, EKV_LOGITS_LAST, logits_.data(), logits_.size()),
              EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seq_len(c.get()), 5);

    // A cache of another model is refused.
    ModelPtr other = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f16.gguf");
    EXPECT_EQ(ekv_forward(other.get(), c.get(), seq_.data(), 1, nullptr, EKV_LOGITS_LAST, logits_.data(),
                          logits_.size()),
              EKV_ERR_MODEL_MISMATCH);
}

TEST_F(CacheOps, CacheTypesTheModelCannotUseOrNotBuiltAreRefusedWithAReason) {
    ekv_cache_type t;
    ASSERT_EQ(ekv_cache_type_from_name("offloaded_static", &t), EKV_OK);
    EXPECT_EQ(t, EKV_CACHE_OFFLOADED_STATIC);
    EXPECT_STREQ(ekv_cache_type_name(EKV_CACHE_SLIDING_WINDOW), "sliding_window");
    EXPECT_EQ(ekv_cache_type_from_name("paged", &t), EKV_ERR_INVALID_ARGUMENT);

    ekv_cache_params p = ekv_cache_default_params();
    ekv_cache* c = nullptr;
    p.type = EKV_CACHE_MAMBA;
    EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(ekv_last_error()).find("Mamba"), std::string::npos) << ekv_last_error();
    EXPECT_EQ(c, nullptr);
    p.type = EKV_CACHE_HYBRID;
    EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(ekv_last_error()).find("local/global"), std::string::npos) << ekv_last_error();
    // HF's default q_group_size (64) does not divide this model's head_dim (16).
    p.type = EKV_CACHE_QUANTIZED;
    EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(ekv_last_error()).find("q_group_size"), std::string::npos) << ekv_last_error();
    EXPECT_EQ(c, nullptr);
    p.type = EKV_CACHE_AUTO;
    ASSERT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_OK);
    CachePtr owned(c);
    ASSERT_EQ(ekv_cache_get_type(c, &t), EKV_OK);
    EXPECT_EQ(t, EKV_CACHE_DYNAMIC);
    p.struct_size = 0;
    EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_INVALID_ARGUMENT);
}

}  // namespace
