// Memory budgets (issue 18): ekv_cache_plan's bytes equal what the created
// cache reports once filled, for every cache type; EKV_CACHE_AUTO under a
// budget follows the documented rule (retention first: the natural cache in
// f16, then KIVI 8/4/2 bits, then the sink cache with the longest window);
// growing caches stop at their budget and fixed ones are refused past it; a
// model whose weights exceed its budget is refused before anything loads.
#define EKV_EXPERIMENTAL  // the audio API (Whisper's cross-attention KV)
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "model/test_util.h"

namespace ekv_test {
namespace {

struct Plan {
    ekv_status status = EKV_OK;
    ekv_cache_plan_result result = ekv_cache_plan_result_default();
    ekv_cache_params config = ekv_cache_default_params();
    std::string error;
};

Plan plan(const ekv_model* m, const ekv_cache_params& p, int32_t context) {
    Plan out;
    out.status = ekv_cache_plan(m, &p, context, &out.config, &out.result);
    if (out.status != EKV_OK) out.error = ekv_last_error();
    return out;
}

std::vector<ekv_cache_plan_result> candidates(const ekv_model* m, const ekv_cache_params& p, int32_t context,
                                              int32_t n) {
    std::vector<ekv_cache_plan_result> all;
    for (int32_t i = 0; i < n; ++i) {
        ekv_cache_plan_result r = ekv_cache_plan_result_default();
        EXPECT_EQ(ekv_cache_plan_candidate(m, &p, context, i, nullptr, &r), EKV_OK) << ekv_last_error();
        EXPECT_EQ(r.candidate_index, i);
        all.push_back(r);
    }
    return all;
}

uint64_t total(const ekv_cache_plan_result& r) { return r.device_bytes + r.host_bytes; }

ekv_cache_params params(ekv_cache_type type, uint64_t budget = 0) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = type;
    p.memory_budget_bytes = budget;
    return p;
}

// KIVI on the tiny fixtures (head_dim 16): groups of 8, a 16-token residual.
ekv_cache_params tiny_kivi(ekv_cache_type type, int32_t nbits, uint64_t budget = 0) {
    ekv_cache_params p = params(type, budget);
    if (type != EKV_CACHE_QUANTIZED) p.dtype = EKV_KV_KIVI;
    p.nbits = nbits;
    p.q_group_size = 8;
    p.residual_length = 16;
    return p;
}

std::vector<int32_t> some_tokens(int32_t n, int32_t n_vocab) {
    std::vector<int32_t> t;
    for (int32_t i = 0; i < n; ++i) t.push_back(3 + (i * 37 + 11) % (n_vocab - 3));
    return t;
}

ekv_status forward(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& ids) {
    std::vector<float> logits(static_cast<size_t>(n_vocab(m)));
    return ekv_forward(m, c, ids.data(), static_cast<int32_t>(ids.size()), nullptr, EKV_LOGITS_LAST, logits.data(),
                       logits.size());
}

ekv_cache_stats stats_of(const ekv_cache* c) {
    ekv_cache_stats s = ekv_cache_stats_default();
    EXPECT_EQ(ekv_cache_get_stats(c, &s), EKV_OK);
    return s;
}

struct Audio {
    float* pcm = nullptr;
    int32_t n = 0;
    int32_t rate = 0;
    ~Audio() { ekv_audio_free(pcm); }
};

// Plans `p` for `context` tokens, creates the configuration the plan gives,
// fills it with `context` tokens in one forward (after encoding `audio` for
// an encoder-decoder model) and checks the cache's accounting against the
// plan: bytes exactly, device and host apart, and the tokens it holds.
void expect_plan_equals_stats(ekv_model* m, const ekv_cache_params& p, int32_t context, const Audio* audio = nullptr) {
    const Plan pl = plan(m, p, context);
    ASSERT_EQ(pl.status, EKV_OK) << pl.error;
    const ekv_cache_plan_result& r = pl.result;
    EXPECT_EQ(r.fits, 1) << r.reason;
    EXPECT_EQ(r.context_tokens, context);
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_create(m, &pl.config, &raw), EKV_OK) << ekv_last_error();
    CachePtr c(raw);
    ekv_cache_params made = ekv_cache_default_params();
    ASSERT_EQ(ekv_cache_get_params(c.get(), &made), EKV_OK);
    EXPECT_EQ(made.type, r.type);
    EXPECT_EQ(made.dtype, r.dtype);
    EXPECT_EQ(made.offload, r.offload);
    EXPECT_EQ(made.memory_budget_bytes, p.memory_budget_bytes);
    if (audio) ASSERT_EQ(ekv_encode_audio(m, c.get(), audio->pcm, audio->n, audio->rate), EKV_OK) << ekv_last_error();
    ASSERT_EQ(forward(m, c.get(), some_tokens(context, n_vocab(m))), EKV_OK) << ekv_last_error();
    const ekv_cache_stats s = stats_of(c.get());
    EXPECT_EQ(s.device_bytes, r.device_bytes) << r.reason;
    EXPECT_EQ(s.host_bytes, r.host_bytes) << r.reason;
    EXPECT_EQ(s.tokens_held, r.tokens_held) << r.reason;
    EXPECT_EQ(s.capacity, r.capacity) << r.reason;
    if (p.memory_budget_bytes) EXPECT_LE(s.device_bytes + s.host_bytes, p.memory_budget_bytes);
}

std::string fixture(const char* name) { return fixtures_dir() + "/" + name; }

TEST(CachePlan, EqualsStatsForEveryCacheTypeOnTinyLlama) {
    ModelPtr m = load_model(fixture("tiny_llama/tiny_llama_f32.gguf"));
    ASSERT_TRUE(m);
    for (int32_t context : {1, 200}) {
        SCOPED_TRACE(context);
        expect_plan_equals_stats(m.get(), params(EKV_CACHE_DYNAMIC), context);
        ekv_cache_params st = params(EKV_CACHE_STATIC);
        st.max_cache_len = 240;
        expect_plan_equals_stats(m.get(), st, context);
        expect_plan_equals_stats(m.get(), params(EKV_CACHE_OFFLOADED), context);
        st.type = EKV_CACHE_OFFLOADED_STATIC;
        expect_plan_equals_stats(m.get(), st, context);
        expect_plan_equals_stats(m.get(), tiny_kivi(EKV_CACHE_QUANTIZED, 4), context);
        expect_plan_equals_stats(m.get(), tiny_kivi(EKV_CACHE_QUANTIZED, 2), context);
        ekv_cache_params ring = params(EKV_CACHE_SLIDING_WINDOW);
        ring.window_length = 48;
        expect_plan_equals_stats(m.get(), ring, context);
        ring.type = EKV_CACHE_SINK;
        expect_plan_equals_stats(m.get(), ring, context);
        ekv_cache_params kivi_sink = tiny_kivi(EKV_CACHE_SINK, 2);
        kivi_sink.window_length = 60;
        expect_plan_equals_stats(m.get(), kivi_sink, context);
        ekv_cache_params kivi_static = tiny_kivi(EKV_CACHE_STATIC, 8);
        kivi_static.max_cache_len = 210;
        expect_plan_equals_stats(m.get(), kivi_static, context);
        ekv_cache_params f32 = params(EKV_CACHE_DYNAMIC);
        f32.dtype = EKV_KV_F32;
        f32.offload = EKV_PLACEMENT_UNIFIED;
        expect_plan_equals_stats(m.get(), f32, context);
    }
}

TEST(CachePlan, EqualsStatsForTheModelSpecificCaches) {
    {
        ModelPtr m = load_model(fixture("tiny_gemma3/tiny_gemma3_f32.gguf"));
        ASSERT_TRUE(m);
        expect_plan_equals_stats(m.get(), params(EKV_CACHE_HYBRID), 100);
        expect_plan_equals_stats(m.get(), tiny_kivi(EKV_CACHE_HYBRID, 4), 100);
        ekv_cache_params fixed = params(EKV_CACHE_HYBRID);
        fixed.max_cache_len = 150;
        expect_plan_equals_stats(m.get(), fixed, 100);
        ekv_cache_params sink = params(EKV_CACHE_SINK);
        sink.window_length = 40;
        expect_plan_equals_stats(m.get(), sink, 100);
    }
    {
        ModelPtr m = load_model(fixture("tiny_mamba/tiny_mamba_f32.gguf"));
        ASSERT_TRUE(m);
        expect_plan_equals_stats(m.get(), params(EKV_CACHE_MAMBA), 100);
    }
    {
        ModelPtr m = load_model(fixture("tiny_jamba/tiny_jamba_f32.gguf"));
        ASSERT_TRUE(m);
        expect_plan_equals_stats(m.get(), params(EKV_CACHE_HYBRID_MAMBA), 100);
        expect_plan_equals_stats(m.get(), tiny_kivi(EKV_CACHE_HYBRID_MAMBA, 8), 100);
    }
    {
        ModelPtr m = load_model(fixture("tiny_whisper/tiny_whisper.gguf"));
        ASSERT_TRUE(m);
        Audio audio;
        ASSERT_EQ(ekv_audio_read_wav(fixture("tiny_whisper/speech.wav").c_str(), &audio.pcm, &audio.n, &audio.rate),
                  EKV_OK);
        expect_plan_equals_stats(m.get(), params(EKV_CACHE_ENCODER_DECODER), 40, &audio);
        expect_plan_equals_stats(m.get(), tiny_kivi(EKV_CACHE_QUANTIZED, 4), 40, &audio);
        ekv_cache_params sink = params(EKV_CACHE_SINK);
        sink.window_length = 20;
        expect_plan_equals_stats(m.get(), sink, 40, &audio);
        // The budget keeps room for a whole input's cross-attention KV.
        const Plan whole = plan(m.get(), params(EKV_CACHE_ENCODER_DECODER), 40);
        ASSERT_EQ(whole.status, EKV_OK);
        expect_plan_equals_stats(m.get(), params(EKV_CACHE_ENCODER_DECODER, total(whole.result)), 40, &audio);
        ekv_cache* c = nullptr;
        const ekv_cache_params tight = params(EKV_CACHE_ENCODER_DECODER, total(whole.result) / 4);
        EXPECT_EQ(ekv_cache_create(m.get(), &tight, &c), EKV_ERR_OUT_OF_MEMORY);
        EXPECT_NE(std::string(ekv_last_error()).find("cross-attention"), std::string::npos) << ekv_last_error();
    }
}

// An unbounded cache under a budget grows up to it and no further: the plan
// says where it stops, a prefill allocates exactly that, and a forward past
// it fails leaving the cache as it was (also in a clone, which keeps the
// budget).
TEST(CachePlan, GrowingCachesStopAtTheirBudget) {
    ModelPtr m = load_model(fixture("tiny_llama/tiny_llama_f32.gguf"));
    ASSERT_TRUE(m);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(m.get(), &info), EKV_OK);
    // One token of f16 K and V in every layer, computed here from the shape.
    const uint64_t per_token = static_cast<uint64_t>(info.n_layers) * 2 * info.n_kv_heads * info.head_dim * 2;
    const Plan unlimited = plan(m.get(), params(EKV_CACHE_DYNAMIC), 200);
    ASSERT_EQ(unlimited.status, EKV_OK);
    EXPECT_EQ(total(unlimited.result), per_token * 256);  // grows in chunks of 256 tokens
    EXPECT_EQ(unlimited.result.max_tokens, -1);

    const ekv_cache_params p = params(EKV_CACHE_DYNAMIC, per_token * 220 + per_token / 2);
    const Plan capped = plan(m.get(), p, 200);
    ASSERT_EQ(capped.status, EKV_OK);
    EXPECT_EQ(total(capped.result), per_token * 220);
    EXPECT_EQ(capped.result.max_tokens, 220);
    expect_plan_equals_stats(m.get(), p, 200);

    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_create(m.get(), &p, &raw), EKV_OK);
    CachePtr c(raw);
    const std::vector<int32_t> ids = some_tokens(221, n_vocab(m.get()));
    ASSERT_EQ(forward(m.get(), c.get(), std::vector<int32_t>(ids.begin(), ids.begin() + 200)), EKV_OK);
    const ekv_cache_stats before = stats_of(c.get());
    EXPECT_EQ(forward(m.get(), c.get(), std::vector<int32_t>(ids.begin() + 200, ids.end())), EKV_ERR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(ekv_last_error()).find("holds at most 220"), std::string::npos) << ekv_last_error();
    const ekv_cache_stats after = stats_of(c.get());
    EXPECT_EQ(after.seq_len, 200);
    EXPECT_EQ(after.device_bytes + after.host_bytes, before.device_bytes + before.host_bytes);
    ekv_cache* copy = nullptr;
    ASSERT_EQ(ekv_cache_clone(c.get(), &copy), EKV_OK);
    CachePtr clone(copy);
    EXPECT_EQ(forward(m.get(), clone.get(), std::vector<int32_t>(ids.begin() + 200, ids.end())), EKV_ERR_OUT_OF_MEMORY);
    ASSERT_EQ(forward(m.get(), c.get(), std::vector<int32_t>(ids.begin() + 200, ids.end() - 1)), EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(stats_of(c.get()).seq_len, 220);

    // KIVI grows by key groups; the same rule holds.
    const Plan q = plan(m.get(), tiny_kivi(EKV_CACHE_QUANTIZED, 4), 200);
    ASSERT_EQ(q.status, EKV_OK);
    const ekv_cache_params qp = tiny_kivi(EKV_CACHE_QUANTIZED, 4, total(q.result) - 1);
    const Plan qcapped = plan(m.get(), qp, 200);
    ASSERT_EQ(qcapped.status, EKV_OK);
    EXPECT_LT(total(qcapped.result), total(q.result));
    EXPECT_GE(qcapped.result.max_tokens, 200);
    EXPECT_LT(qcapped.result.max_tokens, 256);
    expect_plan_equals_stats(m.get(), qp, 200);
}

TEST(CachePlan, FixedCachesPastTheirBudgetAreRefusedWithTheNumbers) {
    ModelPtr m = load_model(fixture("tiny_llama/tiny_llama_f32.gguf"));
    ASSERT_TRUE(m);
    ekv_cache_params st = params(EKV_CACHE_STATIC);
    st.max_cache_len = 200;
    const Plan sized = plan(m.get(), st, 100);
    ASSERT_EQ(sized.status, EKV_OK);
    const uint64_t bytes = total(sized.result);
    EXPECT_EQ(sized.result.capacity_device_bytes + sized.result.capacity_host_bytes, bytes);
    st.memory_budget_bytes = bytes - 1;
    const Plan over = plan(m.get(), st, 100);
    ASSERT_EQ(over.status, EKV_OK);  // an explicit type is only sized
    EXPECT_EQ(over.result.fits, 0);
    ekv_cache* c = nullptr;
    EXPECT_EQ(ekv_cache_create(m.get(), &st, &c), EKV_ERR_OUT_OF_MEMORY);
    const std::string msg = ekv_last_error();
    EXPECT_NE(msg.find(std::to_string(bytes) + " bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(bytes - 1) + " bytes"), std::string::npos) << msg;
    EXPECT_EQ(c, nullptr);
    st.memory_budget_bytes = bytes;
    ASSERT_EQ(ekv_cache_create(m.get(), &st, &c), EKV_OK) << ekv_last_error();
    ekv_cache_free(c);
    // A static cache cannot take more than its capacity, budget or not.
    st.memory_budget_bytes = 0;
    const Plan longer = plan(m.get(), st, 201);
    ASSERT_EQ(longer.status, EKV_OK);
    EXPECT_EQ(longer.result.fits, 0);
    EXPECT_NE(std::string(longer.result.reason).find("at most 200"), std::string::npos) << longer.result.reason;

    ModelPtr mamba = load_model(fixture("tiny_mamba/tiny_mamba_f32.gguf"));
    ASSERT_TRUE(mamba);
    const Plan state = plan(mamba.get(), params(EKV_CACHE_MAMBA), 50);
    ASSERT_EQ(state.status, EKV_OK);
    EXPECT_GT(total(state.result), 0u);
    EXPECT_EQ(total(plan(mamba.get(), params(EKV_CACHE_MAMBA), 5000).result), total(state.result));
    const ekv_cache_params small = params(EKV_CACHE_MAMBA, total(state.result) - 1);
    EXPECT_EQ(ekv_cache_create(mamba.get(), &small, &c), EKV_ERR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(ekv_last_error()).find("recurrent state"), std::string::npos) << ekv_last_error();
    // Planned under that budget nothing fits: a Mamba state has no cheaper form.
    const Plan none = plan(mamba.get(), params(EKV_CACHE_AUTO, total(state.result) - 1), 50);
    EXPECT_EQ(none.status, EKV_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(none.result.n_candidates, 1);

    ModelPtr gemma = load_model(fixture("tiny_gemma3/tiny_gemma3_f32.gguf"));
    ASSERT_TRUE(gemma);
    const ekv_cache_params hybrid = params(EKV_CACHE_HYBRID, 64);  // less than the sliding layers' ring
    EXPECT_EQ(ekv_cache_create(gemma.get(), &hybrid, &c), EKV_ERR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(ekv_last_error()).find("64 bytes"), std::string::npos) << ekv_last_error();
}

TEST(CachePlan, ImpossibleBudgetSaysWhatTheSmallestOptionNeeds) {
    ModelPtr m = load_model(fixture("tiny_llama/tiny_llama_f32.gguf"));
    ASSERT_TRUE(m);
    ekv_cache_params p = tiny_kivi(EKV_CACHE_AUTO, 4, 1000);
    const Plan none = plan(m.get(), p, 250);
    ASSERT_EQ(none.status, EKV_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(none.result.fits, 0);
    EXPECT_EQ(none.result.chosen_index, -1);
    EXPECT_EQ(none.result.budget_bytes, 1000u);
    EXPECT_GT(total(none.result), 1000u);
    EXPECT_NE(none.error.find("1000 bytes"), std::string::npos) << none.error;
    EXPECT_NE(none.error.find(std::to_string(total(none.result)) + " bytes"), std::string::npos) << none.error;
    // It describes the smallest candidate of all.
    for (const ekv_cache_plan_result& c : candidates(m.get(), p, 250, none.result.n_candidates)) {
        EXPECT_GE(total(c), total(none.result));
        EXPECT_EQ(c.fits, 0);
    }
    ekv_cache* c = nullptr;
    p.max_cache_len = 250;
    EXPECT_EQ(ekv_cache_create(m.get(), &p, &c), EKV_ERR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(ekv_last_error()).find("nothing fits"), std::string::npos) << ekv_last_error();
    EXPECT_EQ(c, nullptr);
}

void expect_documented_choice(ekv_model* m, const ekv_cache_params& p, int32_t context, const Plan& pl);

TEST(CachePlan, AutoCreateMakesThePlannedCache) {
    ModelPtr m = load_model(fixture("tiny_llama/tiny_llama_f32.gguf"));
    ASSERT_TRUE(m);
    // A context long against the rings' chunk room (KIVI's residual and a
    // sink's ring keep a whole chunk more), so half of f16's bytes is KIVI.
    constexpr int32_t kContext = 4000;
    const Plan f16 = plan(m.get(), params(EKV_CACHE_DYNAMIC), kContext);
    ASSERT_EQ(f16.status, EKV_OK);
    ekv_cache_params p = tiny_kivi(EKV_CACHE_AUTO, 4, total(f16.result) / 2);
    const Plan chosen = plan(m.get(), p, kContext);
    ASSERT_EQ(chosen.status, EKV_OK) << chosen.error;
    EXPECT_EQ(chosen.result.type, EKV_CACHE_QUANTIZED);
    expect_documented_choice(m.get(), p, kContext, chosen);
    p.max_cache_len = kContext;  // AUTO creation plans for this context
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_create(m.get(), &p, &raw), EKV_OK) << ekv_last_error();
    CachePtr c(raw);
    ekv_cache_params got = ekv_cache_default_params();
    ASSERT_EQ(ekv_cache_get_params(c.get(), &got), EKV_OK);
    EXPECT_EQ(got.type, chosen.config.type);
    EXPECT_EQ(got.dtype, chosen.config.dtype);
    EXPECT_EQ(got.nbits, chosen.config.nbits);
    EXPECT_EQ(got.window_length, chosen.config.window_length);
    EXPECT_EQ(got.max_cache_len, chosen.config.max_cache_len);
    EXPECT_EQ(got.memory_budget_bytes, p.memory_budget_bytes);
    ASSERT_EQ(forward(m.get(), c.get(), some_tokens(200, n_vocab(m.get()))), EKV_OK) << ekv_last_error();
    const Plan now = plan(m.get(), chosen.config, 200);
    ASSERT_EQ(now.status, EKV_OK);
    const ekv_cache_stats s = stats_of(c.get());
    EXPECT_EQ(s.device_bytes + s.host_bytes, total(now.result));
    // Without the budget AUTO is the natural cache, as before.
    p.memory_budget_bytes = 0;
    ASSERT_EQ(ekv_cache_create(m.get(), &p, &raw), EKV_OK) << ekv_last_error();
    ASSERT_EQ(ekv_cache_get_params(raw, &got), EKV_OK);
    EXPECT_EQ(got.type, EKV_CACHE_DYNAMIC);
    ekv_cache_free(raw);
}

// The documented rule, checked on a plan's candidates: the choice fits; a
// full-retention choice is the first full-retention candidate that fits
// (f16, then KIVI 8, 4, 2 bits); a sink choice comes only when none does,
// has the longest window of the sinks that fit (the most precise of equals)
// and one token more of window at its storage would not fit.
void expect_documented_choice(ekv_model* m, const ekv_cache_params& p, int32_t context, const Plan& pl) {
    ASSERT_EQ(pl.status, EKV_OK) << pl.error;
    const ekv_cache_plan_result& r = pl.result;
    ASSERT_EQ(r.fits, 1);
    EXPECT_LE(total(r), p.memory_budget_bytes);
    const std::vector<ekv_cache_plan_result> all = candidates(m, p, context, r.n_candidates);
    ASSERT_GE(r.chosen_index, 0);
    EXPECT_EQ(r.candidate_index, r.chosen_index);
    size_t n_full = 0;
    while (n_full < all.size() && all[n_full].type != EKV_CACHE_SINK) ++n_full;
    ASSERT_GE(n_full, 1u);
    EXPECT_EQ(all[0].dtype, EKV_KV_F16);
    for (size_t i = 1; i < n_full; ++i) {
        EXPECT_EQ(all[i].dtype, EKV_KV_KIVI);
        EXPECT_EQ(all[i].nbits, i == 1 ? 8 : i == 2 ? 4 : 2);
        EXPECT_EQ(all[i].tokens_held, context);
    }
    if (r.type != EKV_CACHE_SINK) {
        EXPECT_LT(static_cast<size_t>(r.chosen_index), n_full);
        for (int32_t i = 0; i < r.chosen_index; ++i) EXPECT_EQ(all[static_cast<size_t>(i)].fits, 0) << i;
        EXPECT_EQ(r.tokens_held, context);
        return;
    }
    for (size_t i = 0; i < n_full; ++i) EXPECT_EQ(all[i].fits, 0) << i;
    for (size_t i = n_full; i < all.size(); ++i) {
        if (!all[i].fits) continue;
        EXPECT_LE(all[i].window_length, r.window_length) << i;
        if (all[i].window_length == r.window_length) EXPECT_GE(static_cast<int32_t>(i), r.chosen_index);
    }
    EXPECT_EQ(r.tokens_held, std::min(context, r.window_length));
    if (r.window_length + 1 < context) {
        ekv_cache_params wider = pl.config;
        wider.window_length = r.window_length + 1;
        const Plan w = plan(m, wider, context);
        ASSERT_EQ(w.status, EKV_OK) << w.error;
        EXPECT_EQ(w.result.fits, 0) << w.result.reason;
    }
}

// SmolLM2 and Gemma 3 at 16, 64 and 256 MiB for a 32768-token
// conversation: the choice follows the rule; EKV_CACHE_AUTO creates it (the
// same configuration); a sink's bytes are the plan's at creation, and a
// growing cache's, after a prefill, equal the plan of that configuration
// for the tokens it holds.
void check_real_model(const std::string& path) {
    ASSERT_FALSE(path.empty()) << "set EKV_SMOLLM2_GGUF / EKV_GEMMA3_GGUF";
    ModelPtr m = load_model(path);
    ASSERT_TRUE(m);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(m.get(), &info), EKV_OK);
    constexpr int32_t kContext = 32768;
    constexpr int32_t kFill = 32;  // a prefill the test can afford (also under ASan)
    for (uint64_t mib : {16, 64, 256}) {
        SCOPED_TRACE(mib);
        ekv_cache_params p = params(EKV_CACHE_AUTO, mib << 20);
        const Plan pl = plan(m.get(), p, kContext);
        expect_documented_choice(m.get(), p, kContext, pl);
        std::printf("  %s, %llu MiB, %d tokens: %s\n", info.architecture, static_cast<unsigned long long>(mib),
                    kContext, pl.result.reason);
        // Candidate 0, the natural cache in f16, checked against the shape:
        // every layer's K and V rows (Gemma's local layers hold their window
        // plus a chunk, which the ring needs).
        const ekv_cache_plan_result f16 = candidates(m.get(), p, kContext, 1)[0];
        const uint64_t row = static_cast<uint64_t>(info.n_kv_heads) * info.head_dim * 2 * 2;
        if (info.n_sliding_layers == 0)
            EXPECT_EQ(total(f16), row * info.n_layers * kContext);
        else
            EXPECT_GT(total(f16), row * (info.n_layers - info.n_sliding_layers) * kContext);

        p.max_cache_len = kContext;  // AUTO creation plans for this context
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_create(m.get(), &p, &raw), EKV_OK) << ekv_last_error();
        CachePtr c(raw);
        ekv_cache_params got = ekv_cache_default_params();
        ASSERT_EQ(ekv_cache_get_params(c.get(), &got), EKV_OK);
        EXPECT_EQ(got.type, pl.config.type);
        EXPECT_EQ(got.dtype, pl.config.dtype);
        EXPECT_EQ(got.nbits, pl.config.nbits);
        EXPECT_EQ(got.window_length, pl.config.window_length);
        EXPECT_EQ(got.offload, pl.config.offload);
        EXPECT_EQ(got.memory_budget_bytes, mib << 20);
        if (pl.result.type == EKV_CACHE_SINK) {
            // A ring is allocated whole: the 32768-token plan's bytes already
            // (the tiny fixtures' tests fill rings past their window).
            const ekv_cache_stats s = stats_of(c.get());
            EXPECT_EQ(s.device_bytes, pl.result.device_bytes);
            EXPECT_EQ(s.host_bytes, pl.result.host_bytes);
            continue;
        }
        ASSERT_EQ(forward(m.get(), c.get(), some_tokens(kFill, n_vocab(m.get()))), EKV_OK) << ekv_last_error();
        const ekv_cache_stats s = stats_of(c.get());
        const Plan now = plan(m.get(), pl.config, kFill);
        ASSERT_EQ(now.status, EKV_OK) << now.error;
        EXPECT_EQ(s.device_bytes, now.result.device_bytes);
        EXPECT_EQ(s.host_bytes, now.result.host_bytes);
        EXPECT_EQ(s.tokens_held, now.result.tokens_held);
    }
}

TEST(CachePlan, SmolLM2At16_64_256MiB) { check_real_model(smollm2_path()); }
TEST(CachePlan, Gemma3At16_64_256MiB) { check_real_model(gemma3_path()); }

int progress_calls = 0;
int count_progress(float, void*) {
    ++progress_calls;
    return 1;
}

TEST(CachePlan, ModelWhoseWeightsExceedItsBudgetIsRefusedBeforeLoading) {
    const std::string path = fixture("tiny_llama/tiny_llama_f32.gguf");
    ekv_model_params mp = ekv_model_default_params();
    mp.backend = EKV_BACKEND_CPU;
    mp.memory_budget_bytes = 100000;  // the weights take 541952 bytes
    mp.progress = count_progress;
    progress_calls = 0;
    ekv_model* m = nullptr;
    EXPECT_EQ(ekv_model_load(path.c_str(), &mp, &m), EKV_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(m, nullptr);
    const std::string msg = ekv_last_error();
    EXPECT_NE(msg.find("100000 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("weights"), std::string::npos) << msg;
    EXPECT_EQ(progress_calls, 0);  // refused before the first tensor was touched
    mp.memory_budget_bytes = 1 << 20;
    ASSERT_EQ(ekv_model_load(path.c_str(), &mp, &m), EKV_OK) << ekv_last_error();
    EXPECT_GT(progress_calls, 0);
    ekv_model_free(m);
}

TEST(CachePlan, BadArgumentsAreRefused) {
    ModelPtr m = load_model(fixture("tiny_llama/tiny_llama_f32.gguf"));
    ASSERT_TRUE(m);
    const ekv_cache_params p = params(EKV_CACHE_AUTO, 1 << 20);
    ekv_cache_plan_result r = ekv_cache_plan_result_default();
    EXPECT_EQ(r.chosen_index, -1);
    EXPECT_EQ(ekv_cache_plan(nullptr, &p, 10, nullptr, &r), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_plan(m.get(), &p, 10, nullptr, nullptr), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_plan(m.get(), &p, 0, nullptr, &r), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_plan(m.get(), &p, -5, nullptr, &r), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_plan_candidate(m.get(), &p, 10, -1, nullptr, &r), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_plan_candidate(m.get(), &p, 10, 1000, nullptr, &r), EKV_ERR_INVALID_ARGUMENT);
    ekv_cache_params bad = p;
    bad.type = static_cast<ekv_cache_type>(99);
    EXPECT_EQ(ekv_cache_plan(m.get(), &bad, 10, nullptr, &r), EKV_ERR_INVALID_ARGUMENT);
    bad = params(EKV_CACHE_MAMBA);
    EXPECT_EQ(ekv_cache_plan(m.get(), &bad, 10, nullptr, &r), EKV_ERR_UNSUPPORTED);
    ekv_cache_plan_result unsized = r;
    unsized.struct_size = 0;
    EXPECT_EQ(ekv_cache_plan(m.get(), &p, 10, nullptr, &unsized), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_plan_result_init(nullptr, sizeof r), EKV_ERR_INVALID_ARGUMENT);
    // NULL params: the defaults (AUTO, no budget) size the natural cache.
    ASSERT_EQ(ekv_cache_plan(m.get(), nullptr, 10, nullptr, &r), EKV_OK) << ekv_last_error();
    EXPECT_EQ(r.type, EKV_CACHE_DYNAMIC);
    EXPECT_EQ(r.n_candidates, 1);
    EXPECT_EQ(r.fits, 1);
    // An older caller's smaller struct gets only the fields it knows.
    struct {
        ekv_cache_plan_result r;
        unsigned char guard[8];
    } small;
    std::memset(&small, 0xAB, sizeof small);
    ASSERT_EQ(ekv_cache_plan_result_init(&small.r, offsetof(ekv_cache_plan_result, budget_bytes)), EKV_OK);
    ASSERT_EQ(ekv_cache_plan(m.get(), &p, 10, nullptr, &small.r), EKV_OK);
    EXPECT_EQ(small.r.struct_size, offsetof(ekv_cache_plan_result, budget_bytes));
    EXPECT_GT(small.r.device_bytes, 0u);
    EXPECT_EQ(small.r.budget_bytes, 0xABABABABABABABABull);  // not written
}

}  // namespace
}  // namespace ekv_test
