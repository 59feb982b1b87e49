// Model fidelity on the tiny random Mamba (tools/gen_tiny_mamba.py): edgekv's
// logits against HF transformers' MambaForCausalLM over a single prefill,
// token-by-token decode and chunked prefills, greedy tokens identical; the
// `mamba` cache's operations (crop refused, clone, reset, save/load, stats,
// memory) and the refusal of every attention cache type.
#include "model/test_util.h"
#include "unit/alloc_counter.h"

using namespace ekv_test;

namespace {

// Normalized max error per logits row (test_util.h). The reference differs
// from edgekv only by summation order in f32: HF's full-sequence scan and
// transformers' own GGUF load agree within ~3e-5 absolute on logits of std
// ~8, i.e. ~4e-6 normalized.
constexpr double kTolerance = 1e-4;
// Two edgekv runs that only chunk the same tokens differently.
constexpr double kChunkTolerance = 1e-5;

// The fixture's dimensions (tools/gen_tiny_mamba.py ARCH).
constexpr int kLayers = 2, kInner = 128, kState = 16, kConv = 4;

class TinyMamba : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string dir = fixtures_dir() + "/tiny_mamba";
        ASSERT_TRUE(load_reference(dir, "ref_f32.json", &ref_)) << "missing reference in " << dir;
        model_ = load_model(dir + "/tiny_mamba_f32.gguf");
        ASSERT_TRUE(model_);
        ASSERT_EQ(n_vocab(model_.get()), ref_.n_vocab);
        seq_ = ref_.input_ids;
        seq_.insert(seq_.end(), ref_.greedy.begin(), ref_.greedy.end() - 1);
        ASSERT_EQ(seq_.size(), ref_.positions.size());
        nv_ = static_cast<size_t>(ref_.n_vocab);
    }
    CachePtr cache(ekv_cache_type type = EKV_CACHE_MAMBA) { return make_cache(model_.get(), type); }
    // Forwards tokens [first, first + n) of the sequence; all rows or the last.
    std::vector<float> forward(ekv_cache* c, size_t first, size_t n, bool all = false) {
        std::vector<float> logits((all ? n : 1) * nv_);
        EXPECT_EQ(ekv_forward(model_.get(), c, seq_.data() + first, static_cast<int32_t>(n), nullptr,
                              all ? EKV_LOGITS_ALL : EKV_LOGITS_LAST, logits.data(), logits.size()),
                  EKV_OK)
            << ekv_last_error();
        return logits;
    }
    void expect_row(const float* got, size_t ref_row, const char* what) {
        const double err = normalized_max_error(got, ref_.row(ref_row), ref_.n_vocab);
        max_err_ = std::max(max_err_, err);
        EXPECT_LT(err, kTolerance) << what << " position " << ref_row;
        EXPECT_EQ(argmax(got, ref_.n_vocab), argmax(ref_.row(ref_row), ref_.n_vocab)) << what << " position " << ref_row;
    }
    void TearDown() override {
        if (max_err_ > 0) RecordProperty("max_normalized_logit_error", std::to_string(max_err_));
    }
    int32_t n_prompt() const { return static_cast<int32_t>(ref_.input_ids.size()); }

    Reference ref_;
    ModelPtr model_;
    std::vector<int32_t> seq_;
    size_t nv_ = 0;
    double max_err_ = 0;
};

TEST_F(TinyMamba, ModelInfoAndAutoCache) {
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(model_.get(), &info), EKV_OK);
    EXPECT_STREQ(info.architecture, "mamba");
    EXPECT_EQ(info.n_layers, kLayers);
    EXPECT_EQ(info.natural_cache, EKV_CACHE_MAMBA);
    CachePtr c = cache(EKV_CACHE_AUTO);
    ASSERT_TRUE(c);
    ekv_cache_type type = EKV_CACHE_DYNAMIC;
    ASSERT_EQ(ekv_cache_get_type(c.get(), &type), EKV_OK);
    EXPECT_EQ(type, EKV_CACHE_MAMBA);
}

TEST_F(TinyMamba, SinglePassLogitsMatchHF) {
    CachePtr c = cache();
    const std::vector<float> logits = forward(c.get(), 0, seq_.size(), true);
    for (size_t i = 0; i < seq_.size(); ++i) expect_row(logits.data() + i * nv_, i, "single pass");
    std::printf("[ tiny mamba ] single pass: max normalized logit error %.2e over %zu rows\n", max_err_, seq_.size());
}

TEST_F(TinyMamba, TokenByTokenDecodeMatchesHF) {
    CachePtr c = cache();
    expect_row(forward(c.get(), 0, static_cast<size_t>(n_prompt())).data(), static_cast<size_t>(n_prompt() - 1),
               "prefill");
    for (size_t i = static_cast<size_t>(n_prompt()); i < seq_.size(); ++i)
        expect_row(forward(c.get(), i, 1).data(), i, "decode");
    std::printf("[ tiny mamba ] decode: max normalized logit error %.2e\n", max_err_);
}

// The state after a chunk must be exactly what the next chunk continues from.
TEST_F(TinyMamba, ChunkedPrefillEqualsSinglePass) {
    const size_t np = static_cast<size_t>(n_prompt());
    CachePtr one = cache();
    const std::vector<float> single = forward(one.get(), 0, np, true);
    const std::vector<std::vector<size_t>> splits = {{5, 7}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {3, 4, 5}};
    for (const std::vector<size_t>& split : splits) {
        CachePtr c = cache();
        size_t done = 0;
        for (size_t n : split) {
            const std::vector<float> got = forward(c.get(), done, n, true);
            for (size_t i = 0; i < n; ++i) {
                const size_t row = done + i;
                expect_row(got.data() + i * nv_, row, "chunked");
                EXPECT_LT(normalized_max_error(got.data() + i * nv_, single.data() + row * nv_, ref_.n_vocab),
                          kChunkTolerance)
                    << "chunk of " << n << " at " << done;
            }
            done += n;
        }
        int32_t len = 0;
        ASSERT_EQ(ekv_cache_seq_len(c.get(), &len), EKV_OK);
        EXPECT_EQ(len, n_prompt());
    }
}

// A forward longer than the architecture's chunk (128 tokens) is split inside
// one call; the result must equal feeding the same tokens one at a time.
TEST_F(TinyMamba, LongForwardCrossesInternalChunks) {
    std::vector<int32_t> long_seq;
    for (int i = 0; i < 300; ++i) long_seq.push_back((i * 37 + 11) % ref_.n_vocab);
    CachePtr a = cache(), b = cache();
    std::vector<float> all(long_seq.size() * nv_), one(nv_);
    ASSERT_EQ(ekv_forward(model_.get(), a.get(), long_seq.data(), static_cast<int32_t>(long_seq.size()), nullptr,
                          EKV_LOGITS_ALL, all.data(), all.size()),
              EKV_OK)
        << ekv_last_error();
    for (size_t i = 0; i < long_seq.size(); ++i) {
        ASSERT_EQ(ekv_forward(model_.get(), b.get(), &long_seq[i], 1, nullptr, EKV_LOGITS_LAST, one.data(), one.size()),
                  EKV_OK);
        ASSERT_LT(normalized_max_error(one.data(), all.data() + i * nv_, ref_.n_vocab), kChunkTolerance) << i;
    }
}

TEST_F(TinyMamba, GreedyGenerationEqualsHF) {
    CachePtr c = cache();
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = static_cast<int32_t>(ref_.greedy.size());
    gp.stop_at_eos = 0;
    std::vector<int32_t> out(ref_.greedy.size());
    ekv_generate_result r = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), ref_.input_ids.data(), n_prompt(), &gp, out.data(),
                           static_cast<int32_t>(out.size()), &r),
              EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(out, ref_.greedy);
    EXPECT_EQ(r.stop_reason, EKV_STOP_MAX_TOKENS);
}

TEST_F(TinyMamba, CropIsRefusedAndLeavesTheStateIntact) {
    CachePtr c = cache();
    const size_t np = static_cast<size_t>(n_prompt());
    forward(c.get(), 0, np);
    EXPECT_EQ(ekv_cache_crop(c.get(), 5), EKV_ERR_INVALID_STATE);
    EXPECT_NE(std::string(ekv_last_error()).find("cannot be rewound"), std::string::npos) << ekv_last_error();
    EXPECT_EQ(ekv_cache_crop(c.get(), n_prompt()), EKV_OK);  // to the current length: nothing to undo
    // A cache_position that rewinds is refused the same way, before any change.
    std::vector<float> logits(nv_);
    const int32_t pos = 3;
    EXPECT_EQ(ekv_forward(model_.get(), c.get(), &seq_[3], 1, &pos, EKV_LOGITS_LAST, logits.data(), logits.size()),
              EKV_ERR_INVALID_STATE);
    int32_t len = 0;
    ASSERT_EQ(ekv_cache_seq_len(c.get(), &len), EKV_OK);
    EXPECT_EQ(len, n_prompt());
    for (size_t i = np; i < seq_.size(); ++i) expect_row(forward(c.get(), i, 1).data(), i, "decode after refusals");
}

TEST_F(TinyMamba, CloneContinuesIdentically) {
    CachePtr c = cache();
    const size_t np = static_cast<size_t>(n_prompt());
    forward(c.get(), 0, np);
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_clone(c.get(), &raw), EKV_OK) << ekv_last_error();
    CachePtr copy(raw);
    for (size_t i = np; i < seq_.size(); ++i) {
        const std::vector<float> a = forward(c.get(), i, 1), b = forward(copy.get(), i, 1);
        EXPECT_EQ(a, b) << "position " << i;  // same arithmetic on the same state: bit-identical
        expect_row(b.data(), i, "clone");
    }
}

TEST_F(TinyMamba, ClonesAreIndependent) {
    CachePtr c = cache();
    forward(c.get(), 0, 6);
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_clone(c.get(), &raw), EKV_OK);
    CachePtr fork(raw);
    // Feeding other tokens to the original must not move the fork's state.
    std::vector<int32_t> other(6, 7);
    std::vector<float> scratch(nv_);
    ASSERT_EQ(ekv_forward(model_.get(), c.get(), other.data(), 6, nullptr, EKV_LOGITS_LAST, scratch.data(),
                          scratch.size()),
              EKV_OK);
    expect_row(forward(fork.get(), 6, 6).data(), 11, "fork after the original moved on");
}

TEST_F(TinyMamba, ResetThenRecomputeIsIdentical) {
    CachePtr c = cache();
    const size_t np = static_cast<size_t>(n_prompt());
    const std::vector<float> first = forward(c.get(), 0, np, true);
    forward(c.get(), np, 3);
    ASSERT_EQ(ekv_cache_reset(c.get()), EKV_OK);
    int32_t len = -1;
    ASSERT_EQ(ekv_cache_seq_len(c.get(), &len), EKV_OK);
    EXPECT_EQ(len, 0);
    EXPECT_EQ(forward(c.get(), 0, np, true), first);
}

TEST_F(TinyMamba, StatsReportAFixedState) {
    CachePtr c = cache();
    ekv_cache_stats s0 = ekv_cache_stats_default();
    ASSERT_EQ(ekv_cache_get_stats(c.get(), &s0), EKV_OK);
    const uint64_t state_bytes = static_cast<uint64_t>(kLayers) * ((kConv - 1) * kInner + kInner * kState) * 4;
    EXPECT_GE(s0.device_bytes, 2 * state_bytes);        // double-buffered
    EXPECT_LE(s0.device_bytes, 2 * state_bytes + 4096);  // plus alignment only
    EXPECT_EQ(s0.bytes_per_token, 0u);
    EXPECT_EQ(s0.capacity, -1);
    forward(c.get(), 0, seq_.size());
    ekv_cache_stats s1 = ekv_cache_stats_default();
    ASSERT_EQ(ekv_cache_get_stats(c.get(), &s1), EKV_OK);
    EXPECT_EQ(s1.device_bytes, s0.device_bytes);  // nothing grows with the sequence
    EXPECT_EQ(s1.seq_len, static_cast<int32_t>(seq_.size()));
    EXPECT_EQ(s1.tokens_held, s1.seq_len);
    EXPECT_EQ(s1.tokens_forwarded, seq_.size());
}

TEST_F(TinyMamba, MaxCacheLenBoundsTheSequence) {
    CachePtr c = make_cache(model_.get(), EKV_CACHE_MAMBA, 14);
    forward(c.get(), 0, 12);
    std::vector<float> logits(nv_);
    EXPECT_EQ(ekv_forward(model_.get(), c.get(), seq_.data() + 12, 3, nullptr, EKV_LOGITS_LAST, logits.data(),
                          logits.size()),
              EKV_ERR_CACHE_FULL);
    expect_row(forward(c.get(), 12, 2).data(), 13, "within max_cache_len after a refusal");
}

TEST_F(TinyMamba, AttentionCacheTypesAreRefusedWithTheReason) {
    const ekv_cache_type attention[] = {EKV_CACHE_DYNAMIC,        EKV_CACHE_STATIC,    EKV_CACHE_OFFLOADED,
                                        EKV_CACHE_OFFLOADED_STATIC, EKV_CACHE_QUANTIZED, EKV_CACHE_SLIDING_WINDOW,
                                        EKV_CACHE_SINK,           EKV_CACHE_HYBRID,    EKV_CACHE_ENCODER_DECODER};
    for (ekv_cache_type t : attention) {
        ekv_cache_params p = ekv_cache_default_params();
        p.type = t;
        p.window_length = 8;
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_UNSUPPORTED) << ekv_cache_type_name(t);
        EXPECT_EQ(c, nullptr);
        const std::string msg = ekv_last_error();
        EXPECT_NE(msg.find(std::string("'") + ekv_cache_type_name(t) + "'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("no attention layers"), std::string::npos) << msg;
        EXPECT_NE(msg.find("'mamba'"), std::string::npos) << msg;
    }
    ekv_cache_params p = ekv_cache_default_params();
    p.type = EKV_CACHE_HYBRID_MAMBA;
    ekv_cache* c = nullptr;
    EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(ekv_last_error()).find("Jamba"), std::string::npos) << ekv_last_error();
}

TEST_F(TinyMamba, PlacementChoices) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = EKV_CACHE_MAMBA;
    p.offload = EKV_PLACEMENT_HOST;
    ekv_cache* c = nullptr;
    EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(ekv_last_error()).find("offloading"), std::string::npos) << ekv_last_error();
    p.offload = EKV_PLACEMENT_UNIFIED;  // the CPU's memory is unified
    ASSERT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_OK) << ekv_last_error();
    CachePtr unified(c);
    expect_row(forward(unified.get(), 0, static_cast<size_t>(n_prompt())).data(),
               static_cast<size_t>(n_prompt() - 1), "unified");
}

TEST_F(TinyMamba, DecodeDoesNotAllocate) {
    CachePtr c = cache();
    forward(c.get(), 0, static_cast<size_t>(n_prompt()));
    std::vector<float> logits(nv_);
    for (size_t i = 12; i < 14; ++i)  // warm-up
        ASSERT_EQ(ekv_forward(model_.get(), c.get(), &seq_[i], 1, nullptr, EKV_LOGITS_LAST, logits.data(),
                              logits.size()),
                  EKV_OK);
    AllocationCount count;
    for (size_t i = 14; i < seq_.size(); ++i)
        ASSERT_EQ(ekv_forward(model_.get(), c.get(), &seq_[i], 1, nullptr, EKV_LOGITS_LAST, logits.data(),
                              logits.size()),
                  EKV_OK);
    EXPECT_EQ(count.stop(), 0);
    expect_row(logits.data(), seq_.size() - 1, "decode");
}

}  // namespace
