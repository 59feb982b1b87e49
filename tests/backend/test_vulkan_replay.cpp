// Command-buffer replay: a decode step over a static-shape cache repeats an
// earlier step's commands, so the Vulkan stream submits a recording it kept
// then instead of recording again (vk_stream.h). Shown through the C
// ABI's backend stats, and checked to change nothing: the logits with replay
// are bit for bit those of recording every step (EKV_VULKAN_REPLAY=0), and
// the greedy tokens are the CPU backend's.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/vulkan/vk_instance.h"
#include "backend/replay_decode.h"
#include "backend/vulkan_test_util.h"
#include "model/test_util.h"

namespace ekv_vk_test {
namespace {

using Decode = ekv_test::ReplayDecode;

// A cache of `type`, prefilled with 8 tokens, then `steps` greedy
// single-token forwards.
Decode greedy(ekv_model* m, ekv_cache_type type, int steps) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = type;
    p.max_cache_len = 64;
    p.window_length = 12;
    p.num_sink_tokens = 4;
    return ekv_test::replay_decode(m, p, steps);
}

// Replay is chosen when the device opens: ekv_model_params.replay, unless
// EKV_VULKAN_REPLAY (env, when not null) overrides it.
ekv_test::ModelPtr load_vulkan(const std::string& path, bool replay, const char* env = nullptr) {
    if (env) setenv("EKV_VULKAN_REPLAY", env, 1);
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_VULKAN;
    p.n_threads = 2;
    p.replay = replay ? 1 : 0;
    ekv_model* m = nullptr;
    EXPECT_EQ(ekv_model_load(path.c_str(), &p, &m), EKV_OK) << ekv_last_error();
    if (env) unsetenv("EKV_VULKAN_REPLAY");
    return ekv_test::ModelPtr(m);
}

TEST(VulkanReplay, TheEnvironmentOverridesTheParams) {
    const std::string path = ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
    ekv_test::ModelPtr forced_off = load_vulkan(path, true, "0");
    ekv_test::ModelPtr forced_on = load_vulkan(path, false, "1");
    ASSERT_TRUE(forced_off && forced_on);
    EXPECT_EQ(greedy(forced_off.get(), EKV_CACHE_STATIC, 6).stats.replayed_submissions, 0u);
    EXPECT_GE(greedy(forced_on.get(), EKV_CACHE_STATIC, 6).stats.replayed_submissions, 5u);
}

TEST(VulkanReplay, StaticShapeDecodeReplaysWithTheSameResults) {
    const int64_t validation_errors = vk::validation_error_count();
    const std::string path = ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
    ekv_test::ModelPtr cpu = load_on(path, EKV_BACKEND_CPU);
    ekv_test::ModelPtr replaying = load_vulkan(path, true);
    ekv_test::ModelPtr recording = load_vulkan(path, false);
    ASSERT_TRUE(cpu && replaying && recording);
    constexpr int kSteps = 24;
    struct Spec {
        ekv_cache_type type;
        int min_replays;  // of kSteps single-token forwards
    };
    // Every step after the first repeats its commands (the first differs
    // from the prefill). The rings (window 12, 4 sinks) wrap during the
    // decode, their runs moving through the buffers (measured: 23 of 24
    // replayed for all three; a ring may re-record once as it fills).
    for (const Spec& s : {Spec{EKV_CACHE_STATIC, kSteps - 1}, Spec{EKV_CACHE_SINK, kSteps - 2},
                          Spec{EKV_CACHE_SLIDING_WINDOW, kSteps - 2}}) {
        const char* name = ekv_cache_type_name(s.type);
        const Decode on = greedy(replaying.get(), s.type, kSteps);
        const Decode off = greedy(recording.get(), s.type, kSteps);
        const Decode ref = greedy(cpu.get(), s.type, kSteps);
        std::printf("[ vulkan   ] %s: %llu of %llu decode submissions replayed; recording %.0f us each\n", name,
                    static_cast<unsigned long long>(on.stats.replayed_submissions),
                    static_cast<unsigned long long>(on.stats.submissions),
                    off.stats.record_ns / 1e3 / static_cast<double>(off.stats.submissions ? off.stats.submissions : 1));
        EXPECT_EQ(on.stats.submissions, static_cast<uint64_t>(kSteps)) << name << ": one submission per forward";
        EXPECT_GE(on.stats.replayed_submissions, static_cast<uint64_t>(s.min_replays)) << name;
        EXPECT_EQ(off.stats.replayed_submissions, 0u) << name << ": EKV_VULKAN_REPLAY=0 records every step";
        EXPECT_EQ(off.stats.submissions, static_cast<uint64_t>(kSteps)) << name;
        ASSERT_EQ(on.logits.size(), off.logits.size()) << name;
        EXPECT_TRUE(on.logits == off.logits) << name << ": a replayed step computed something else";
        EXPECT_EQ(on.tokens, ref.tokens) << name << ": greedy tokens differ from the CPU backend's";
    }
    ekv_backend_stats cpu_stats = ekv_backend_stats_default();
    ASSERT_EQ(ekv_model_get_backend_stats(cpu.get(), &cpu_stats), EKV_OK);
    EXPECT_EQ(cpu_stats.submissions, 0u) << "the CPU backend submits nothing";
    EXPECT_EQ(ekv_model_get_backend_stats(nullptr, &cpu_stats), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_model_get_backend_stats(cpu.get(), nullptr), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

// Two caches decoded in turn on one model (two conversations served
// together): consecutive submissions alternate between the two caches'
// steps, so a single kept recording would never match the next step. The
// stream keeps several recordings (backend/command_log.h's ReplayCache), so
// each cache's step replays its own, and the results stay bit for bit those
// of recording every step.
TEST(VulkanReplay, CachesDecodedInTurnEachReplayTheirOwnRecording) {
    const int64_t validation_errors = vk::validation_error_count();
    const std::string path = ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
    ekv_test::ModelPtr cpu = load_on(path, EKV_BACKEND_CPU);
    ekv_test::ModelPtr replaying = load_vulkan(path, true);
    ekv_test::ModelPtr recording = load_vulkan(path, false);
    ASSERT_TRUE(cpu && replaying && recording);
    constexpr int kRounds = 10;
    ekv_cache_params a = ekv_cache_default_params();
    a.type = EKV_CACHE_STATIC;
    a.max_cache_len = 64;
    ekv_cache_params b = a;
    b.type = EKV_CACHE_SLIDING_WINDOW;
    b.window_length = 12;  // wraps during the decode: 8 prompt tokens + 10 steps
    struct Pair {
        const char* name;
        std::vector<ekv_cache_params> caches;
        int min_replays;  // of 2 * kRounds forwards
    };
    // Each cache's step is recorded into scratch the first time and kept
    // the second: the first cache's re-recorded into a slot, the second's
    // taken over from scratch (it still holds it) and replayed, so 3 of the
    // 2 * kRounds forwards record (measured: 17 of 20 for both pairs; the
    // ring may re-record once as it fills). Keeping one recording, as the
    // stream did before, replays none of them: the previous submission is
    // always the other cache's.
    for (const Pair& pr : {Pair{"static + static", {a, a}, 2 * kRounds - 3},
                           Pair{"static + sliding_window", {a, b}, 2 * kRounds - 4}}) {
        const Decode on = ekv_test::replay_decode_in_turn(replaying.get(), pr.caches, kRounds);
        const Decode off = ekv_test::replay_decode_in_turn(recording.get(), pr.caches, kRounds);
        const Decode ref = ekv_test::replay_decode_in_turn(cpu.get(), pr.caches, kRounds);
        std::printf("[ vulkan   ] %s in turn: %llu of %llu decode submissions replayed; recording %.0f us in all\n",
                    pr.name, static_cast<unsigned long long>(on.stats.replayed_submissions),
                    static_cast<unsigned long long>(on.stats.submissions), on.stats.record_ns / 1e3);
        EXPECT_EQ(on.stats.submissions, static_cast<uint64_t>(2 * kRounds)) << pr.name;
        EXPECT_GE(on.stats.replayed_submissions, static_cast<uint64_t>(pr.min_replays)) << pr.name;
        EXPECT_EQ(off.stats.replayed_submissions, 0u) << pr.name;
        ASSERT_EQ(on.logits.size(), off.logits.size()) << pr.name;
        EXPECT_TRUE(on.logits == off.logits) << pr.name << ": a replayed step computed something else";
        EXPECT_EQ(on.tokens, ref.tokens) << pr.name << ": greedy tokens differ from the CPU backend's";
    }
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

}  // namespace
}  // namespace ekv_vk_test
