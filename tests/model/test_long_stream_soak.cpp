// Flat memory over very long streams (issue 18): text streamed through a
// sink cache (4 sinks, window 512) and a 2-bit KIVI sink cache of SmolLM2.
// Once the ring is full, the cache's bytes must not change, its token id
// list must stay within a bound that does not grow with the stream, and the
// process must not grow. CI streams EKV_SOAK_TOKENS (default 3,000) tokens per cache;
// the full soak is the same test with EKV_SOAK_TOKENS=100000
// EKV_SOAK_EVERY=5000 (tools/soak.sh), whose table goes in the README.
//
// Not in sanitizer builds: ASan's quarantine and shadow memory grow RSS by
// design, and the stream is too slow there; LeakSanitizer covers leaks.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "api/api_internal.h"  // the cache's token id list (Cache::token_id_bytes)
#include "model/test_util.h"

namespace ekv_test {
namespace {

long long env_or(const char* name, long long fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoll(v) : fallback;
}

// Current and peak resident set size (VmRSS, VmHWM) in bytes.
struct Rss {
    long long now = 0;
    long long peak = 0;
};
Rss read_rss() {
    std::ifstream f("/proc/self/status");
    Rss r;
    std::string key;
    long long kib = 0;
    std::string unit;
    while (f >> key) {
        if (key == "VmRSS:" && f >> kib >> unit) r.now = kib * 1024;
        else if (key == "VmHWM:" && f >> kib >> unit) r.peak = kib * 1024;
    }
    return r;
}

// A few paragraphs of ordinary prose; the stream cycles through their tokens
// starting at a different sentence each round so no two rounds align.
const char* const kProse[] = {
    "The harbour was quiet before dawn, and the fishing boats rocked gently against their moorings. ",
    "A baker on the corner had already lit his ovens; the smell of bread drifted down to the water. ",
    "Memory on small devices is a budget, not a promise, and every program must learn to live inside it. ",
    "She opened the notebook, found the page with the unfinished proof, and began again from the lemma. ",
    "Trains to the north were delayed by snow, so the station filled with travellers holding paper cups. ",
    "In 1874 the observatory recorded the transit of Venus with a photographic plate and three clocks. ",
    "Compilers turn loops into vector instructions when they can prove that iterations do not overlap. ",
    "The committee agreed to meet again on Thursday, after the budget figures had been checked twice. ",
    "Rain fell on the orchard all afternoon; by evening the apples shone like lanterns in the grass. ",
    "He tuned the violin slowly, listening for the beat between the strings to fade into a single note. ",
};

std::vector<int32_t> prose_tokens(ekv_model* m) {
    std::string text;
    for (int round = 0; round < 5; ++round)
        for (size_t i = 0; i < sizeof kProse / sizeof *kProse; ++i)
            text += kProse[(i * 3 + static_cast<size_t>(round)) % (sizeof kProse / sizeof *kProse)];
    std::vector<int32_t> toks(text.size() + 8);
    int32_t n = 0;
    EXPECT_EQ(ekv_tokenize(m, text.c_str(), static_cast<int32_t>(text.size()), 0, 0, toks.data(),
                           static_cast<int32_t>(toks.size()), &n),
              EKV_OK)
        << ekv_last_error();
    toks.resize(static_cast<size_t>(n));
    return toks;
}

struct Sample {
    long long tokens;
    long long cache_bytes;
    int32_t held;
    size_t id_bytes;
    Rss rss;
};

void soak(const char* label, ekv_kv_dtype dtype, int32_t nbits) {
    ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
    const long long total = env_or("EKV_SOAK_TOKENS", 3000);
    const long long every = env_or("EKV_SOAK_EVERY", 600);
    const int32_t kChunk = 256, kWindow = 512, kSinks = 4;
    ASSERT_GT(every, kWindow) << "the first sample must come after the window fills";
    ASSERT_GE(total, 4 * every) << "need several samples after the window fills";

    // 8-bit activations: the stream is about memory, and they prefill faster.
    ekv_model_params mp = ekv_model_default_params();
    mp.backend = EKV_BACKEND_CPU;
    mp.n_threads = 2;
    mp.int8_activations = 1;
    ekv_model* raw_model = nullptr;
    ASSERT_EQ(ekv_model_load(smollm2_path().c_str(), &mp, &raw_model), EKV_OK) << ekv_last_error();
    ModelPtr model(raw_model);
    ekv_cache_params cp = ekv_cache_default_params();
    cp.type = EKV_CACHE_SINK;
    cp.window_length = kWindow;
    cp.num_sink_tokens = kSinks;
    cp.dtype = dtype;
    if (dtype == EKV_KV_KIVI) cp.nbits = nbits;  // HF's defaults: groups of 64, 128 residual tokens
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_create(model.get(), &cp, &raw), EKV_OK) << ekv_last_error();
    CachePtr cache(raw);

    const std::vector<int32_t> prose = prose_tokens(model.get());
    ASSERT_GT(prose.size(), 600u);
    std::vector<float> logits(static_cast<size_t>(n_vocab(model.get())));
    std::vector<int32_t> chunk;
    std::vector<Sample> samples;
    long long fed = 0;
    size_t cursor = 0;
    while (fed < total) {
        const long long n = std::min<long long>(kChunk, total - fed);
        chunk.clear();
        for (long long i = 0; i < n; ++i) {
            chunk.push_back(prose[cursor]);
            cursor = (cursor + 1) % prose.size();
        }
        ASSERT_EQ(ekv_forward(model.get(), cache.get(), chunk.data(), static_cast<int32_t>(n), nullptr,
                              EKV_LOGITS_LAST, logits.data(), logits.size()),
                  EKV_OK)
            << "after " << fed << " tokens: " << ekv_last_error();
        const long long before = fed;
        fed += n;
        if (fed / every != before / every || fed == total) {
            ekv_cache_stats st = ekv_cache_stats_default();
            ASSERT_EQ(ekv_cache_get_stats(cache.get(), &st), EKV_OK);
            samples.push_back({fed, static_cast<long long>(st.host_bytes + st.device_bytes), st.tokens_held,
                               cache->session->cache().token_id_bytes(), read_rss()});
        }
    }

    std::printf("%s soak, SmolLM2, %lld tokens in chunks of %d:\n", label, total, kChunk);
    std::printf("%10s %14s %8s %10s %12s %12s\n", "tokens", "cache bytes", "held", "id bytes", "RSS MiB",
                "peak MiB");
    for (const Sample& s : samples)
        std::printf("%10lld %14lld %8d %10zu %12.2f %12.2f\n", s.tokens, s.cache_bytes, s.held, s.id_bytes,
                    s.rss.now / 1048576.0, s.rss.peak / 1048576.0);

    int32_t seq_len = 0;
    ASSERT_EQ(ekv_cache_seq_len(cache.get(), &seq_len), EKV_OK);
    EXPECT_EQ(seq_len, total) << "positions keep counting past the window";
    for (float v : logits) ASSERT_TRUE(std::isfinite(v));

    // The first sample is taken after the window filled (every > 512);
    // from the second on, scratch buffers have reached their size too.
    const Sample& base = samples[1];
    // The ring keeps the ids it can crop back to (its window plus a forward
    // chunk of slack, KIVI's residual and group rings: under two windows
    // here) at most twice over: four windows of ids bound it at any length,
    // so a list growing with the stream fails (3,000 tokens already take
    // 12,000 bytes).
    const size_t id_bound = 4 * kWindow * sizeof(int32_t);
    EXPECT_EQ(samples.back().id_bytes, samples[samples.size() - 2].id_bytes) << "the id list still grows";
    for (size_t i = 1; i < samples.size(); ++i) {
        const Sample& s = samples[i];
        EXPECT_EQ(s.held, kWindow) << "at " << s.tokens << " tokens";
        EXPECT_EQ(s.cache_bytes, samples[0].cache_bytes) << "the cache's bytes changed at " << s.tokens;
        EXPECT_LE(s.id_bytes, id_bound) << "the token id list outgrew its bound at " << s.tokens;
        EXPECT_LE(s.rss.peak, base.rss.peak + base.rss.peak / 100)
            << "peak RSS grew more than 1 % between " << base.tokens << " and " << s.tokens << " tokens";
        EXPECT_LE(s.rss.now, base.rss.now + base.rss.now / 100)
            << "RSS grew more than 1 % between " << base.tokens << " and " << s.tokens << " tokens";
    }
}

TEST(LongStreamSoak, SinkCacheF16HoldsFlatMemory) { soak("sink 4/512, f16", EKV_KV_F16, 0); }

TEST(LongStreamSoak, SinkCacheKivi2HoldsFlatMemory) { soak("sink 4/512, KIVI-2", EKV_KV_KIVI, 2); }

}  // namespace
}  // namespace ekv_test
#endif
