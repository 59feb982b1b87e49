// CUDA graphs (sdk/src/backend/cuda/cuda_graphs.cpp): a decode step whose
// launches repeat runs as a captured graph, replayed or updated in place.
// Checked through the C ABI's backend stats (replayed_submissions counts
// graph launches) and checked to change nothing: the logits with graphs are
// bit for bit those of direct launches (ekv_model_params.replay = 0), and the
// greedy tokens over plain caches are the CPU backend's. Needs a CUDA device
// (label cuda_device).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/replay_decode.h"
#include "model/test_util.h"

namespace ekv_cuda_test {
namespace {

constexpr int kSteps = 24;

using Decode = ekv_test::ReplayDecode;

struct CacheSpec {
    const char* name;
    ekv_cache_type type;
    ekv_kv_dtype dtype;
};

// The cache of `spec` (KIVI: a key group closes every 8 decoded tokens),
// prefilled with 8 tokens, then `steps` greedy single-token forwards.
Decode greedy(ekv_model* m, const CacheSpec& spec, int steps) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = spec.type;
    p.dtype = spec.dtype;
    p.max_cache_len = 64;
    p.window_length = 12;
    p.num_sink_tokens = 4;
    p.q_group_size = 8;
    p.residual_length = 8;
    return ekv_test::replay_decode(m, p, steps);
}

// Graphs are chosen when the stream is created: ekv_model_params.replay,
// unless EKV_CUDA_GRAPHS (env, when not null) overrides it.
ekv_test::ModelPtr load(const std::string& path, ekv_backend_kind backend, int replay, const char* env = nullptr) {
    if (env) setenv("EKV_CUDA_GRAPHS", env, 1);
    ekv_model_params p = ekv_model_default_params();
    p.backend = backend;
    p.n_threads = 2;
    p.replay = replay;
    ekv_model* m = nullptr;
    EXPECT_EQ(ekv_model_load(path.c_str(), &p, &m), EKV_OK) << ekv_last_error();
    if (env) unsetenv("EKV_CUDA_GRAPHS");
    return ekv_test::ModelPtr(m);
}

std::string tiny_llama() { return ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf"; }

TEST(CudaGraphs, TheEnvironmentOverridesTheParams) {
    ekv_test::ModelPtr forced_off = load(tiny_llama(), EKV_BACKEND_CUDA, 1, "0");
    ekv_test::ModelPtr forced_on = load(tiny_llama(), EKV_BACKEND_CUDA, 0, "1");
    ASSERT_TRUE(forced_off && forced_on);
    const CacheSpec spec{"static", EKV_CACHE_STATIC, EKV_KV_F16};
    EXPECT_EQ(greedy(forced_off.get(), spec, 6).stats.replayed_submissions, 0u);
    EXPECT_GE(greedy(forced_on.get(), spec, 6).stats.replayed_submissions, 4u);
}

TEST(CudaGraphs, DecodeStepsRunAsGraphsWithTheSameResults) {
    ekv_test::ModelPtr cpu = load(tiny_llama(), EKV_BACKEND_CPU, -1);
    ekv_test::ModelPtr graphs = load(tiny_llama(), EKV_BACKEND_CUDA, 1);
    ekv_test::ModelPtr direct = load(tiny_llama(), EKV_BACKEND_CUDA, 0);
    ASSERT_TRUE(cpu && graphs && direct);
    struct Case {
        CacheSpec spec;
        int min_graphs;  // of kSteps single-token forwards
    };
    // The first decode step runs directly (its launch sequence is new), the
    // second is captured, the rest replay or update that graph. The rings
    // (window 12, 4 sinks) wrap and KIVI closes a key group every 8 tokens:
    // a new launch sequence runs directly once, then keeps its own graph.
    // The dynamic caches grow (new addresses, other split counts): only the
    // results are compared there.
    const Case cases[] = {
        {{"static", EKV_CACHE_STATIC, EKV_KV_F16}, kSteps - 1},
        {{"sliding_window", EKV_CACHE_SLIDING_WINDOW, EKV_KV_F16}, kSteps / 2},
        {{"sink", EKV_CACHE_SINK, EKV_KV_F16}, kSteps / 2},
        {{"offloaded_static", EKV_CACHE_OFFLOADED_STATIC, EKV_KV_F16}, kSteps / 2},
        {{"static kivi4", EKV_CACHE_STATIC, EKV_KV_KIVI}, kSteps / 2},
        {{"dynamic", EKV_CACHE_DYNAMIC, EKV_KV_F16}, 0},
        {{"quantized", EKV_CACHE_QUANTIZED, EKV_KV_KIVI}, 0},
    };
    for (const Case& c : cases) {
        const char* name = c.spec.name;
        const Decode on = greedy(graphs.get(), c.spec, kSteps);
        const Decode off = greedy(direct.get(), c.spec, kSteps);
        const Decode ref = greedy(cpu.get(), c.spec, kSteps);
        std::printf("[ cuda     ] %s: %llu of %llu decode steps as graphs; capture+update %.0f us per graph step\n",
                    name, static_cast<unsigned long long>(on.stats.replayed_submissions),
                    static_cast<unsigned long long>(on.stats.submissions),
                    on.stats.record_ns / 1e3 /
                        static_cast<double>(on.stats.replayed_submissions ? on.stats.replayed_submissions : 1));
        EXPECT_EQ(on.stats.submissions, static_cast<uint64_t>(kSteps)) << name << ": one synchronize per forward";
        EXPECT_GE(on.stats.replayed_submissions, static_cast<uint64_t>(c.min_graphs)) << name;
        EXPECT_EQ(off.stats.replayed_submissions, 0u) << name << ": replay = 0 launches directly";
        ASSERT_EQ(on.logits.size(), off.logits.size()) << name;
        EXPECT_TRUE(on.logits == off.logits) << name << ": a graph step computed something else";
        EXPECT_EQ(on.tokens, off.tokens) << name;
        // KIVI's CPU agreement is the parity tests' (with a tolerance); here
        // the plain caches' greedy tokens must be the CPU's.
        if (c.spec.dtype != EKV_KV_KIVI)
            EXPECT_EQ(on.tokens, ref.tokens) << name << ": greedy tokens differ from the CPU backend's";
    }
}

// Two models' streams, each with its own graphs, interleaved on one thread:
// a graph never runs another stream's step.
TEST(CudaGraphs, InterleavedModelsKeepTheirOwnGraphs) {
    ekv_test::ModelPtr a = load(tiny_llama(), EKV_BACKEND_CUDA, 1);
    ekv_test::ModelPtr b = load(ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_q8_0.gguf", EKV_BACKEND_CUDA, 1);
    ekv_test::ModelPtr b_direct =
        load(ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_q8_0.gguf", EKV_BACKEND_CUDA, 0);
    ASSERT_TRUE(a && b && b_direct);
    const CacheSpec spec{"static", EKV_CACHE_STATIC, EKV_KV_F16};
    const Decode a1 = greedy(a.get(), spec, 8);
    const Decode b1 = greedy(b.get(), spec, 8);
    const Decode a2 = greedy(a.get(), spec, 8);  // a fresh cache: same tokens, same logits
    const Decode ref = greedy(b_direct.get(), spec, 8);
    EXPECT_TRUE(a1.logits == a2.logits);
    EXPECT_TRUE(b1.logits == ref.logits);
    EXPECT_GT(a2.stats.replayed_submissions, 0u);
    EXPECT_GT(b1.stats.replayed_submissions, 0u);
}

}  // namespace
}  // namespace ekv_cuda_test
