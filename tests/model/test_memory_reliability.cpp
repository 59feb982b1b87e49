// Memory an app can rely on (issue 18's first measurements): creating a
// cache of the model's whole context touches no pages until tokens are
// written; a process killed while saving leaves the old file or the new one,
// never a torn one; conversations created and freed in a loop do not grow
// the process.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "model/test_util.h"

namespace ekv_test {
namespace {

// Resident set size of this process now, from /proc/self/statm.
long long rss_bytes() {
    std::ifstream f("/proc/self/statm");
    long long size = 0, resident = 0;
    f >> size >> resident;
    return resident * static_cast<long long>(sysconf(_SC_PAGESIZE));
}

std::vector<int32_t> some_tokens(int n, int salt) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(3 + (i * 37 + salt * 11) % 200);
    return t;
}

void feed(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& toks) {
    std::vector<float> logits(static_cast<size_t>(n_vocab(m)));
    ASSERT_EQ(ekv_forward(m, c, toks.data(), static_cast<int32_t>(toks.size()), nullptr, EKV_LOGITS_LAST,
                          logits.data(), logits.size()),
              EKV_OK)
        << ekv_last_error();
}

TEST(MemoryReliability, AStaticCacheOfTheWholeContextTouchesNoPagesUntilUsed) {
    ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
    ModelPtr model = load_model(smollm2_path(), 1);
    ASSERT_TRUE(model);
    {
        // Weights are mapped from the file and count once read: read them
        // first, so what follows measures the cache alone.
        CachePtr warm = make_cache(model.get(), EKV_CACHE_DYNAMIC);
        feed(model.get(), warm.get(), some_tokens(64, 1));
    }
    ekv_cache_params cp = ekv_cache_default_params();
    cp.type = EKV_CACHE_STATIC;  // max_cache_len 0: the model's 8192-token context
    const long long before = rss_bytes();
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_create(model.get(), &cp, &raw), EKV_OK) << ekv_last_error();
    CachePtr cache(raw);
    const long long after_create = rss_bytes();
    ekv_cache_stats st = ekv_cache_stats_default();
    ASSERT_EQ(ekv_cache_get_stats(cache.get(), &st), EKV_OK);
    const long long allocated = static_cast<long long>(st.host_bytes + st.device_bytes);
    EXPECT_GT(allocated, 150ll << 20) << "8192 positions x 30 layers of K and V in f16";
    std::printf("static cache: %.1f MiB allocated, RSS +%.2f MiB at creation\n", allocated / 1048576.0,
                (after_create - before) / 1048576.0);
    EXPECT_LT(after_create - before, 4ll << 20) << "creation must not zero-fill (touch) the cache's pages";

    // Writing 64 tokens touches about their share of it (64/8192 of the
    // KV, plus the forward's scratch), not all of it.
    feed(model.get(), cache.get(), some_tokens(64, 1));
    const long long after_feed = rss_bytes();
    std::printf("after 64 tokens: RSS +%.2f MiB\n", (after_feed - before) / 1048576.0);
    EXPECT_LT(after_feed - before, allocated / 8);
}

TEST(MemoryReliability, AKilledSaveLeavesTheOldFileOrTheNewOneNeverATornOne) {
    ModelPtr model = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf", 1);
    ASSERT_TRUE(model);
    CachePtr small = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    CachePtr large = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    feed(model.get(), small.get(), some_tokens(40, 1));
    feed(model.get(), large.get(), some_tokens(120, 2));
    const std::string dir = testing::TempDir() + "ekv_killed_saves_" + std::to_string(getpid());
    ASSERT_EQ(system(("mkdir -p " + dir).c_str()), 0);
    const std::string path = dir + "/cache.ekv";
    ASSERT_EQ(ekv_cache_save(small.get(), path.c_str()), EKV_OK) << ekv_last_error();

    std::mt19937 rng(1234);
    int killed_mid_run = 0;
    const int kRounds = 25;
    for (int round = 0; round < kRounds; ++round) {
        const pid_t child = fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            // Saves alternate between two contents for as long as it lives.
            for (int i = 0;; ++i) ekv_cache_save((i % 2 ? small : large).get(), path.c_str());
        }
        usleep(std::uniform_int_distribution<int>(200, 20000)(rng));
        ASSERT_EQ(kill(child, SIGKILL), 0);
        int status = 0;
        ASSERT_EQ(waitpid(child, &status, 0), child);
        killed_mid_run += WIFSIGNALED(status) ? 1 : 0;

        ekv_cache* loaded = nullptr;
        ASSERT_EQ(ekv_cache_load(model.get(), path.c_str(), &loaded), EKV_OK)
            << "round " << round << ": " << ekv_last_error();
        int32_t len = 0;
        ASSERT_EQ(ekv_cache_seq_len(loaded, &len), EKV_OK);
        EXPECT_TRUE(len == 40 || len == 120) << "round " << round << ": seq_len " << len;
        ekv_cache_free(loaded);
    }
    EXPECT_EQ(killed_mid_run, kRounds);
    std::printf("%d saves killed at random points; every file left loads whole\n", kRounds);
    // What the killed writers left behind is only their temporary files.
    ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

// Not in sanitizer builds: ASan keeps freed memory in quarantine (RSS grows
// by design there) and LeakSanitizer checks for leaks instead.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
TEST(MemoryReliability, ConversationsCreatedAndFreedDoNotGrowTheProcess) {
    ModelPtr model = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf", 1);
    ASSERT_TRUE(model);
    const std::vector<int32_t> prompt = some_tokens(48, 3);
    auto conversation = [&]() {
        ekv_cache_params cp = ekv_cache_default_params();
        cp.type = EKV_CACHE_SINK;
        cp.window_length = 32;  // the ring wraps during each conversation
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_create(model.get(), &cp, &raw), EKV_OK) << ekv_last_error();
        CachePtr c(raw);
        ekv_generate_params gp = ekv_generate_default_params();
        gp.max_new_tokens = 16;
        gp.stop_at_eos = 0;
        int32_t out[16];
        ekv_generate_result res = ekv_generate_default_result();
        ASSERT_EQ(ekv_generate(model.get(), c.get(), prompt.data(), static_cast<int32_t>(prompt.size()), &gp, out, 16,
                               &res),
                  EKV_OK)
            << ekv_last_error();
    };
    for (int i = 0; i < 20; ++i) conversation();  // warm: allocator pools, thread-locals
    const long long warm = rss_bytes();
    for (int i = 0; i < 200; ++i) conversation();
    const long long after = rss_bytes();
    std::printf("200 conversations: RSS %+.3f MiB\n", (after - warm) / 1048576.0);
    EXPECT_LT(after - warm, 1ll << 20) << "memory grows per conversation";
}
#endif

}  // namespace
}  // namespace ekv_test
