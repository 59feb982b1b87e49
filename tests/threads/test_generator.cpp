// The step-wise generator against the blocking call it underlies: the same
// tokens, streamed text equal to the detokenized tokens, stop strings never
// streamed, a too-small text buffer that loses nothing, and the end.
#include <cstring>

#include "threads/thread_test_util.h"

namespace ekv_test {
namespace {

struct GenRun {
    std::vector<int32_t> tokens;
    std::string text;
    ekv_stop_reason stop = EKV_STOP_NONE;
};

GenRun run_generator(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& prompt, const ekv_generate_params& gp,
                  size_t text_cap = 256) {
    GenRun r;
    ekv_generator* gen = nullptr;
    EXPECT_EQ(ekv_generator_create(m, c, prompt.data(), static_cast<int32_t>(prompt.size()), &gp, &gen), EKV_OK)
        << ekv_last_error();
    if (!gen) return r;
    ekv_generator_event ev = ekv_generator_event_default();
    std::vector<char> text(text_cap);
    for (;;) {
        ekv_status st = ekv_generator_next(gen, &ev, text.data(), text.size());
        if (st == EKV_ERR_BUFFER_TOO_SMALL) {
            text.resize(ev.text_len + 1);  // the same event comes again
            st = ekv_generator_next(gen, &ev, text.data(), text.size());
        }
        EXPECT_EQ(st, EKV_OK) << ekv_last_error();
        if (st != EKV_OK) break;
        EXPECT_EQ(std::strlen(text.data()), ev.text_len);
        r.text.append(text.data(), ev.text_len);
        if (ev.type == EKV_EVENT_DONE) {
            r.stop = ev.stop_reason;
            break;
        }
        r.tokens.push_back(ev.token);
    }
    ekv_generator_free(gen);
    return r;
}

std::string detokenize(ekv_model* m, const std::vector<int32_t>& ids) {
    std::vector<char> buf(ids.size() * 64 + 16);
    size_t len = 0;
    EXPECT_EQ(ekv_detokenize(m, ids.data(), static_cast<int32_t>(ids.size()), 1, buf.data(), buf.size(), &len), EKV_OK);
    return std::string(buf.data(), len);
}

class GeneratorSmolLM2 : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
        model_ = load_model(smollm2_path(), 2);
        ASSERT_TRUE(model_);
        prompt_ = tokenize(model_.get(), "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n");
    }
    ModelPtr model_;
    std::vector<int32_t> prompt_;
};

TEST_F(GeneratorSmolLM2, SameTokensAsGenerateAndTextEqualsDetokenized) {
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 24;
    gp.stop_at_eos = 0;  // as greedy()
    CachePtr a = make_cache(model_.get(), EKV_CACHE_DYNAMIC), b = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> blocking = greedy(model_.get(), a.get(), prompt_, 24);
    const GenRun step = run_generator(model_.get(), b.get(), prompt_, gp, 8);  // 8 bytes: exercises the retry
    ASSERT_EQ(step.tokens, blocking);
    EXPECT_EQ(step.stop, EKV_STOP_MAX_TOKENS);
    EXPECT_EQ(step.text, detokenize(model_.get(), step.tokens));
    EXPECT_FALSE(step.text.empty());
}

// A stop string taken from the middle of the free-running text: the stream
// ends right before it and never shows any of it.
TEST_F(GeneratorSmolLM2, StopStringIsNeverStreamed) {
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 24;
    CachePtr c = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    const GenRun free_run = run_generator(model_.get(), c.get(), prompt_, gp);
    ASSERT_GT(free_run.text.size(), 12u);
    const size_t at = free_run.text.size() / 2;
    const std::string stop = free_run.text.substr(at, 5);
    const size_t first = free_run.text.find(stop);
    const char* stops[] = {stop.c_str()};
    gp.stop_strings = stops;
    gp.n_stop_strings = 1;
    ASSERT_EQ(ekv_cache_reset(c.get()), EKV_OK);
    const GenRun stopped = run_generator(model_.get(), c.get(), prompt_, gp);
    EXPECT_EQ(stopped.stop, EKV_STOP_STRING);
    EXPECT_EQ(stopped.text, free_run.text.substr(0, first));
    EXPECT_EQ(stopped.text.find(stop.substr(0, 1), first), std::string::npos);
}

TEST(Generator, BadUseGetsAStatus) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> prompt = synthetic_prompt(5, 3, 250, 1);
    ekv_generate_params gp = ekv_generate_default_params();
    ekv_generator* gen = nullptr;
    const int32_t bad = 1 << 20;
    EXPECT_EQ(ekv_generator_create(model.get(), cache.get(), &bad, 1, &gp, &gen), EKV_ERR_INVALID_TOKEN);
    EXPECT_EQ(gen, nullptr);
    EXPECT_EQ(ekv_generator_create(model.get(), nullptr, prompt.data(), 5, &gp, &gen), EKV_ERR_INVALID_ARGUMENT);
    gp.use_cache = 0;
    gp.max_new_tokens = 2;
    ASSERT_EQ(ekv_generator_create(model.get(), nullptr, prompt.data(), 5, &gp, &gen), EKV_OK);
    ekv_generator_event ev = ekv_generator_event_default();
    char text[64];
    EXPECT_EQ(ekv_generator_next(gen, nullptr, text, sizeof text), EKV_ERR_INVALID_ARGUMENT);
    int n = 0;
    while (ekv_generator_next(gen, &ev, text, sizeof text) == EKV_OK && ev.type == EKV_EVENT_TOKEN) ++n;
    EXPECT_EQ(n, 2);
    EXPECT_EQ(ekv_generator_next(gen, &ev, text, sizeof text), EKV_ERR_INVALID_STATE);
    ekv_generator_free(gen);
}

}  // namespace
}  // namespace ekv_test
