// Stop requests (ekv_cancel) from another thread: a long prefill returns
// EKV_ERR_CANCELLED within about one chunk and leaves the cache exactly as
// it was; a request before, during and after a call each has a defined
// result; loads stop too.
#include <thread>

#include "threads/thread_test_util.h"

namespace ekv_test {
namespace {

struct CancelDeleter {
    void operator()(ekv_cancel* c) const { ekv_cancel_free(c); }
};
using CancelPtr = std::unique_ptr<ekv_cancel, CancelDeleter>;

CancelPtr make_cancel() {
    ekv_cancel* c = nullptr;
    EXPECT_EQ(ekv_cancel_create(&c), EKV_OK);
    return CancelPtr(c);
}

std::vector<float> last_logits(ekv_model* m, ekv_cache* c, int32_t tok) {
    std::vector<float> logits(static_cast<size_t>(n_vocab(m)));
    EXPECT_EQ(ekv_forward(m, c, &tok, 1, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()), EKV_OK)
        << ekv_last_error();
    return logits;
}

// Cancels a 2,000-token prefill on SmolLM2 from another thread; prints the
// latency from the request to the return.
TEST(Cancel, LongPrefillStopsPromptlyAndCacheIsUnchanged) {
    ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
    ModelPtr model = load_model(smollm2_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    CachePtr reference = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> head = synthetic_prompt(16, 1000, 20000, 3);
    const std::vector<int32_t> prompt = synthetic_prompt(2000, 1000, 20000, 4);
    std::vector<float> logits(static_cast<size_t>(n_vocab(model.get())));
    for (ekv_cache* c : {cache.get(), reference.get()})
        ASSERT_EQ(ekv_forward(model.get(), c, head.data(), 16, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()),
                  EKV_OK);
    CancelPtr stop = make_cancel();
    ASSERT_EQ(ekv_cache_set_cancel(cache.get(), stop.get()), EKV_OK);

    double t_cancel = 0;
    std::thread canceller([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        t_cancel = now_seconds();
        ekv_cancel_trigger(stop.get());
    });
    const double t0 = now_seconds();
    const ekv_status st = ekv_forward(model.get(), cache.get(), prompt.data(), 2000, nullptr, EKV_LOGITS_LAST,
                                      logits.data(), logits.size());
    const double t_return = now_seconds();
    canceller.join();
    ASSERT_EQ(st, EKV_ERR_CANCELLED) << ekv_last_error();
    std::printf("[ cancel ] 2000-token prefill on SmolLM2: cancelled %.0f ms in, returned %.1f ms after the request\n",
                (t_cancel - t0) * 1e3, (t_return - t_cancel) * 1e3);
    // A chunk (128 tokens) of SmolLM2 takes well under a few seconds here;
    // the whole prompt takes much longer than the wait before cancelling.
    EXPECT_LT(t_return - t_cancel, 5.0);

    int32_t len = 0;
    ASSERT_EQ(ekv_cache_seq_len(cache.get(), &len), EKV_OK);
    EXPECT_EQ(len, 16);
    // The cache goes on exactly as one that never saw the cancelled call.
    ekv_cancel_reset(stop.get());
    EXPECT_EQ(last_logits(model.get(), cache.get(), 1234), last_logits(model.get(), reference.get(), 1234));
}

TEST(Cancel, BeforeDuringAndAfterAGeneration) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> prompt = synthetic_prompt(20, 3, 250, 5);
    CancelPtr stop = make_cancel();
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 40;
    gp.stop_at_eos = 0;
    gp.cancel = stop.get();
    std::vector<int32_t> out(40);
    ekv_generate_result r = ekv_generate_default_result();

    // Before: nothing runs, the cache stays empty.
    ekv_cancel_trigger(stop.get());
    EXPECT_EQ(ekv_cancel_is_triggered(stop.get()), 1);
    EXPECT_EQ(ekv_generate(model.get(), cache.get(), prompt.data(), 20, &gp, out.data(), 40, &r), EKV_ERR_CANCELLED);
    EXPECT_EQ(r.n_generated, 0);
    EXPECT_EQ(r.stop_reason, EKV_STOP_CANCELLED);
    int32_t len = -1;
    ASSERT_EQ(ekv_cache_seq_len(cache.get(), &len), EKV_OK);
    EXPECT_EQ(len, 0);

    // During: the generator is stopped after 5 tokens from another thread.
    ekv_cancel_reset(stop.get());
    ekv_generator* gen = nullptr;
    ASSERT_EQ(ekv_generator_create(model.get(), cache.get(), prompt.data(), 20, &gp, &gen), EKV_OK);
    ekv_generator_event ev = ekv_generator_event_default();
    char text[256];
    int tokens = 0;
    while (ekv_generator_next(gen, &ev, text, sizeof text) == EKV_OK && ev.type == EKV_EVENT_TOKEN) {
        if (++tokens == 5) std::thread([&] { ekv_cancel_trigger(stop.get()); }).join();
    }
    EXPECT_EQ(ev.type, EKV_EVENT_DONE);
    EXPECT_EQ(ev.stop_reason, EKV_STOP_CANCELLED);
    EXPECT_EQ(tokens, 5);
    ekv_generate_result gr = ekv_generate_default_result();
    ASSERT_EQ(ekv_generator_get_result(gen, &gr), EKV_OK);
    EXPECT_EQ(gr.n_generated, 5);
    ekv_generator_free(gen);
    ASSERT_EQ(ekv_cache_seq_len(cache.get(), &len), EKV_OK);
    EXPECT_EQ(len, 20 + 4);  // every token but the last went through the model

    // After: a finished call is not affected; the still-triggered request
    // stops the next call that uses it at once.
    ekv_cancel_reset(stop.get());
    CachePtr fresh = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    ASSERT_EQ(ekv_generate(model.get(), fresh.get(), prompt.data(), 20, &gp, out.data(), 40, &r), EKV_OK);
    EXPECT_EQ(r.n_generated, 40);
    ekv_cancel_trigger(stop.get());
    ASSERT_EQ(ekv_cache_seq_len(fresh.get(), &len), EKV_OK);
    EXPECT_EQ(len, 59);
    EXPECT_EQ(ekv_generate(model.get(), fresh.get(), prompt.data(), 20, &gp, out.data(), 40, &r), EKV_ERR_CANCELLED);
    ASSERT_EQ(ekv_cache_seq_len(fresh.get(), &len), EKV_OK);
    EXPECT_EQ(len, 59);  // unchanged: the prompt's crop waits for the go-ahead
}

// The load honours a stop request and its progress callback.
TEST(Cancel, ModelLoad) {
    CancelPtr stop = make_cancel();
    ekv_model_params mp = ekv_model_default_params();
    mp.backend = EKV_BACKEND_CPU;
    mp.cancel = stop.get();
    ekv_cancel_trigger(stop.get());
    ekv_model* m = nullptr;
    EXPECT_EQ(ekv_model_load(tiny_llama_path().c_str(), &mp, &m), EKV_ERR_CANCELLED);
    EXPECT_EQ(m, nullptr);

    struct Progress {
        int calls = 0;
        float last = -1;
        bool monotonic = true;
    } prog;
    mp.cancel = nullptr;
    mp.progress_user_data = &prog;
    mp.progress = [](float p, void* ud) -> int {
        Progress* pr = static_cast<Progress*>(ud);
        if (p < pr->last) pr->monotonic = false;
        pr->last = p;
        return ++pr->calls < 5 ? 1 : 0;  // stop after a few tensors
    };
    EXPECT_EQ(ekv_model_load(tiny_llama_path().c_str(), &mp, &m), EKV_ERR_CANCELLED);
    EXPECT_EQ(prog.calls, 5);
    mp.progress = [](float p, void* ud) -> int {
        static_cast<Progress*>(ud)->last = p;
        return 1;
    };
    ASSERT_EQ(ekv_model_load(tiny_llama_path().c_str(), &mp, &m), EKV_OK);
    EXPECT_FLOAT_EQ(prog.last, 1.0f);
    EXPECT_TRUE(prog.monotonic);
    ekv_model_free(m);
}

}  // namespace
}  // namespace ekv_test
