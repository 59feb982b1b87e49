// Handles keep what they need alive, so they may be freed in any order (as
// Swift's ARC and the JVM do): a cache keeps its model, a generator its
// cache, a detokenizer its model. Run under AddressSanitizer (asan preset)
// and ThreadSanitizer (tsan preset).
#include <thread>

#include "threads/thread_test_util.h"

namespace ekv_test {
namespace {

TEST(Lifetimes, ModelFreedBeforeItsCache) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    ekv_model* m = model.release();
    ekv_cache* c = nullptr;
    ASSERT_EQ(ekv_cache_create(m, nullptr, &c), EKV_OK);
    ekv_detokenizer* d = nullptr;
    ASSERT_EQ(ekv_detokenizer_create(m, &d), EKV_OK);
    const std::vector<int32_t> prompt = synthetic_prompt(10, 3, 250, 2);
    const std::vector<int32_t> before = greedy(m, c, prompt, 8);
    ekv_model_free(m);  // drops the caller's reference only
    // The cache hands out its model (borrowed), which stays usable.
    ekv_model* borrowed = nullptr;
    ASSERT_EQ(ekv_cache_get_model(c, &borrowed), EKV_OK);
    EXPECT_EQ(borrowed, m);
    ASSERT_EQ(ekv_cache_reset(c), EKV_OK);
    EXPECT_EQ(greedy(borrowed, c, prompt, 8), before);
    ekv_model* kept = ekv_model_retain(borrowed);  // outlives the cache
    EXPECT_EQ(kept, m);
    char buf[64];
    size_t len = 0;
    EXPECT_EQ(ekv_detokenizer_push(d, before[0], buf, sizeof buf, &len), EKV_OK);
    ekv_cache_free(c);
    ekv_model_info info = ekv_model_info_default();
    EXPECT_EQ(ekv_model_get_info(kept, &info), EKV_OK);
    ekv_model_free(kept);
    ekv_detokenizer_free(d);  // the last reference: the model goes now
}

TEST(Lifetimes, GeneratorOutlivesCacheAndModel) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    ekv_model* m = model.release();
    ekv_cache* c = nullptr;
    ASSERT_EQ(ekv_cache_create(m, nullptr, &c), EKV_OK);
    const std::vector<int32_t> prompt = synthetic_prompt(10, 3, 250, 3);
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 6;
    gp.stop_at_eos = 0;
    ekv_generator* gen = nullptr;
    ASSERT_EQ(ekv_generator_create(m, c, prompt.data(), 10, &gp, &gen), EKV_OK);
    ekv_cache_free(c);
    ekv_model_free(m);
    ekv_generator_event ev = ekv_generator_event_default();
    char text[128];
    int tokens = 0;
    while (ekv_generator_next(gen, &ev, text, sizeof text) == EKV_OK && ev.type == EKV_EVENT_TOKEN) ++tokens;
    EXPECT_EQ(tokens, 6);
    EXPECT_EQ(ev.stop_reason, EKV_STOP_MAX_TOKENS);
    ekv_generator_free(gen);  // frees the cache, then the model
}

// The last reference may go on another thread than the one that made it.
TEST(Lifetimes, LastReferenceOnAnotherThread) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    ekv_model* m = model.release();
    ekv_cache* c = nullptr;
    ASSERT_EQ(ekv_cache_create(m, nullptr, &c), EKV_OK);
    ekv_model_free(m);
    std::thread t([c] {
        int32_t len = -1;
        EXPECT_EQ(ekv_cache_seq_len(c, &len), EKV_OK);
        EXPECT_EQ(len, 0);
        ekv_cache_free(c);
    });
    t.join();
}

TEST(Lifetimes, NullAndFreedHandles) {
    ekv_model_free(nullptr);
    ekv_cache_free(nullptr);
    ekv_generator_free(nullptr);
    ekv_cancel_free(nullptr);
    ekv_detokenizer_free(nullptr);
    ekv_cancel_trigger(nullptr);
    EXPECT_EQ(ekv_cancel_is_triggered(nullptr), 0);
    ekv_generator_event ev = ekv_generator_event_default();
    char text[16];
    EXPECT_EQ(ekv_generator_next(nullptr, &ev, text, sizeof text), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_set_cancel(nullptr, nullptr), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_generator_create(nullptr, nullptr, nullptr, 0, nullptr, nullptr), EKV_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace ekv_test
