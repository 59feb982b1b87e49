// One model shared by many threads, one cache per thread: each thread's
// greedy tokens equal a serial run's (the header's thread model), and a
// second thread entering a busy cache is refused without harm. Run under
// ThreadSanitizer by the tsan preset.
#include <atomic>
#include <thread>

#include "threads/thread_test_util.h"

namespace ekv_test {
namespace {

// Runs `n_threads` chats on one model at once and compares each with the
// same chat run alone.
void check_parallel_equals_serial(const std::string& path, int n_threads, int32_t prompt_len, int32_t n_new,
                                   int32_t vocab_lo, int32_t vocab_hi) {
    ModelPtr model = load_model(path, 2);
    ASSERT_TRUE(model);
    std::vector<std::vector<int32_t>> prompts, serial(static_cast<size_t>(n_threads));
    for (int i = 0; i < n_threads; ++i)
        prompts.push_back(synthetic_prompt(prompt_len + i, vocab_lo, vocab_hi, static_cast<uint32_t>(i + 1)));
    for (int i = 0; i < n_threads; ++i) {
        CachePtr c = make_cache(model.get(), EKV_CACHE_DYNAMIC);
        serial[static_cast<size_t>(i)] = greedy(model.get(), c.get(), prompts[static_cast<size_t>(i)], n_new);
        ASSERT_EQ(static_cast<int32_t>(serial[static_cast<size_t>(i)].size()), n_new);
    }
    std::vector<std::vector<int32_t>> parallel(static_cast<size_t>(n_threads));
    std::vector<ekv_status> status(static_cast<size_t>(n_threads), EKV_OK);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < n_threads; ++i) {
        threads.emplace_back([&, i] {
            ekv_cache* c = nullptr;
            ekv_cache_params cp = ekv_cache_default_params();
            cp.type = EKV_CACHE_DYNAMIC;
            if (ekv_cache_create(model.get(), &cp, &c) != EKV_OK) {
                status[static_cast<size_t>(i)] = EKV_ERR_INTERNAL;
                return;
            }
            ready.fetch_add(1);
            while (ready.load() < n_threads) std::this_thread::yield();  // start together
            parallel[static_cast<size_t>(i)] =
                greedy(model.get(), c, prompts[static_cast<size_t>(i)], n_new, &status[static_cast<size_t>(i)]);
            ekv_cache_free(c);
        });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < n_threads; ++i) {
        EXPECT_EQ(status[static_cast<size_t>(i)], EKV_OK) << "thread " << i;
        EXPECT_EQ(parallel[static_cast<size_t>(i)], serial[static_cast<size_t>(i)]) << "thread " << i;
    }
}

TEST(Concurrency, TinyLlamaFourThreadsEqualSerial) {
    check_parallel_equals_serial(tiny_llama_path(), 4, 40, 24, 3, 250);
}

TEST(Concurrency, SmolLM2TwoThreadsEqualSerial) {
    ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
    // Short: under TSan each SmolLM2 token costs seconds; the tiny model runs longer.
    check_parallel_equals_serial(smollm2_path(), 2, 12, 4, 1000, 20000);
}

// Two threads forwarding into one cache: each call either runs or is
// refused as busy; the cache ends up holding exactly the accepted tokens.
TEST(Concurrency, SecondThreadInOneCacheIsRefused) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const int32_t nv = n_vocab(model.get());
    std::atomic<int> accepted{0}, refused{0}, other{0};
    auto worker = [&](int seed) {
        std::vector<float> logits(static_cast<size_t>(nv));
        for (int i = 0; i < 200; ++i) {
            const int32_t tok = 3 + (seed * 7 + i) % 200;
            const ekv_status st =
                ekv_forward(model.get(), cache.get(), &tok, 1, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size());
            if (st == EKV_OK)
                accepted++;
            else if (st == EKV_ERR_INVALID_STATE && std::string(ekv_last_error()).find("busy") != std::string::npos)
                refused++;
            else
                other++;
        }
    };
    std::thread a(worker, 1), b(worker, 2);
    a.join();
    b.join();
    EXPECT_EQ(other.load(), 0);
    int32_t len = -1;
    ASSERT_EQ(ekv_cache_seq_len(cache.get(), &len), EKV_OK);
    EXPECT_EQ(len, accepted.load());
    EXPECT_EQ(accepted.load() + refused.load(), 400);
}

// A live generator holds its cache: other calls on it are refused until the
// generation ends, then the cache is usable again.
TEST(Concurrency, GeneratorHoldsItsCache) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> prompt = synthetic_prompt(12, 3, 250, 9);
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 3;
    gp.stop_at_eos = 0;
    ekv_generator* gen = nullptr;
    ASSERT_EQ(ekv_generator_create(model.get(), cache.get(), prompt.data(), 12, &gp, &gen), EKV_OK) << ekv_last_error();
    int32_t len = -1;
    // Changes are refused; the read-only queries answer from the last step.
    std::thread other([&] {
        EXPECT_EQ(ekv_cache_reset(cache.get()), EKV_ERR_INVALID_STATE);
        EXPECT_EQ(ekv_cache_seq_len(cache.get(), &len), EKV_OK);
    });
    other.join();
    EXPECT_EQ(len, 0);
    ekv_generator_event ev = ekv_generator_event_default();
    char text[256];
    int events = 0;
    while (ekv_generator_next(gen, &ev, text, sizeof text) == EKV_OK) {
        ++events;
        if (events == 2) {  // after the prefill and one decode step, seen from another thread
            std::thread([&] { EXPECT_EQ(ekv_cache_seq_len(cache.get(), &len), EKV_OK); }).join();
            EXPECT_EQ(len, 13);
        }
        if (ev.type == EKV_EVENT_DONE) break;
    }
    EXPECT_EQ(events, 4);  // three tokens, then the end
    EXPECT_EQ(ev.stop_reason, EKV_STOP_MAX_TOKENS);
    ASSERT_EQ(ekv_cache_seq_len(cache.get(), &len), EKV_OK) << ekv_last_error();
    EXPECT_EQ(len, 12 + 2);  // the last generated token is not forwarded
    EXPECT_EQ(ekv_generator_next(gen, &ev, text, sizeof text), EKV_ERR_INVALID_STATE);
    ekv_generator_free(gen);
}

}  // namespace
}  // namespace ekv_test
