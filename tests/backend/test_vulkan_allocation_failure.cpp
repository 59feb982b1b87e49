// Device allocation failure on the Vulkan backend is a status, never a crash,
// a leak or a validation error: with the fault-injection hooks built in
// (EDGEKV_FAULT_INJECTION, the ci and vulkan presets), the N-th device buffer
// of a call finds every memory type out of memory (core/fault_injection.h):
// model load, cache create + first forward, clone, a 64-token generation,
// save and load. Each walk counts a call's device allocations, then repeats it once per
// allocation with that one failing; every attempt must return EKV_OK or
// EKV_ERR_OUT_OF_MEMORY with a message and a NULL output, and the model and
// caches made before must still give bit-identical logits. (Host allocations
// are walked on the CPU backend by tests/fault under ASan.)
#if defined(EKV_FAULT_INJECTION)
#include <functional>
#include <string>
#include <vector>

#include "backend/vulkan/vk_instance.h"
#include "backend/vulkan_test_util.h"
#include "core/fault_injection.h"
#include "model/cache_family_util.h"

namespace {

using ekv_test::CachePtr;
using ekv_test::CacheSpec;

struct Armed {
    ekv_status status = EKV_OK;
    long allocations = 0;
    bool injected = false;
};

Armed run_armed(long fail_at, const std::function<ekv_status()>& call) {
    ekv::fault::arm_device(fail_at);
    Armed a;
    a.status = call();
    a.allocations = ekv::fault::device_allocations();
    a.injected = ekv::fault::device_failure_injected();
    ekv::fault::arm_device(0);
    return a;
}

::testing::AssertionResult clean_status(const Armed& a) {
    if (a.status == EKV_OK) return ::testing::AssertionSuccess();
    if (!a.injected || a.status != EKV_ERR_OUT_OF_MEMORY || ekv_last_error()[0] == '\0')
        return ::testing::AssertionFailure() << "status " << ekv_status_string(a.status) << " (" << ekv_last_error()
                                             << "), injected " << a.injected;
    return ::testing::AssertionSuccess();
}

// Counts the call's device allocations, then fails each in turn; returns
// the count. Stops at the first attempt that fails a check.
long walk(const std::string& name, const std::function<Armed(long)>& attempt) {
    const Armed counted = attempt(0);
    EXPECT_EQ(counted.status, EKV_OK) << name << ": " << ekv_last_error();
    long oom = 0;
    for (long n = 1; n <= counted.allocations; ++n) {
        SCOPED_TRACE(name + ": device allocation " + std::to_string(n) + " of " +
                     std::to_string(counted.allocations) + " fails");
        const Armed a = attempt(n);
        if (::testing::Test::HasFailure()) break;
        oom += a.status == EKV_ERR_OUT_OF_MEMORY;
    }
    std::printf("[ walk     ] %s: %ld device allocations walked, %ld out of memory\n", name.c_str(),
                counted.allocations, oom);
    return counted.allocations;
}

std::vector<float> forward(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& toks) {
    std::vector<float> out(static_cast<size_t>(ekv_test::n_vocab(m)));
    const ekv_status st = ekv_forward(m, c, toks.data(), static_cast<int32_t>(toks.size()), nullptr, EKV_LOGITS_LAST,
                                      out.data(), out.size());
    EXPECT_EQ(st, EKV_OK) << ekv_last_error();
    return st == EKV_OK ? out : std::vector<float>();
}

ekv_cache_params params_of(const CacheSpec& s) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = s.type;
    p.dtype = s.dtype;
    p.window_length = s.window;
    p.num_sink_tokens = s.sinks;
    p.nbits = s.nbits;
    p.q_group_size = s.group;
    p.residual_length = s.residual;
    p.offload = s.offload;
    return p;
}

class VulkanAllocationFailure : public ::testing::Test {
protected:
    void SetUp() override {
        validation_errors_ = ekv::vk::validation_error_count();
        model_ = ekv_vk_test::load_on(ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf", EKV_BACKEND_VULKAN);
        ASSERT_TRUE(model_);
        ekv_model_info info = ekv_model_info_default();
        ASSERT_EQ(ekv_model_get_info(model_.get(), &info), EKV_OK);
        ASSERT_EQ(info.backend, EKV_BACKEND_VULKAN) << info.device;
        const int32_t nv = ekv_test::n_vocab(model_.get());
        for (int32_t i = 0; i < 40; ++i) stream_.push_back(3 + (i * 131 + 17) % (nv - 3));
    }
    void TearDown() override {
        EXPECT_EQ(ekv::vk::validation_error_count(), validation_errors_)
            << "the Vulkan validation layer reported errors (messages on stderr)";
    }
    std::vector<int32_t> first(size_t n) const { return {stream_.begin(), stream_.begin() + n}; }

    ekv_test::ModelPtr model_;
    std::vector<int32_t> stream_;
    int64_t validation_errors_ = 0;
};

std::vector<CacheSpec> specs() {
    CacheSpec dyn, q, sink, host;
    dyn.type = EKV_CACHE_DYNAMIC;
    dyn.name = "dynamic";
    q.type = EKV_CACHE_QUANTIZED;
    q.name = "quantized KIVI-4";
    sink.type = EKV_CACHE_SINK;
    sink.window = 24;
    sink.sinks = 4;
    sink.name = "sink 4+20";
    host.type = EKV_CACHE_OFFLOADED;
    host.offload = EKV_PLACEMENT_HOST;
    host.name = "offloaded (host, staged)";
    return {dyn, q, sink, host};
}

// Cache create and a first 16-token forward (an unbounded cache allocates
// its rows in the forward's prepare, so failures land inside the forward
// too), then a clone of the filled cache.
TEST_F(VulkanAllocationFailure, CacheCreateForwardAndClone) {
    constexpr int32_t kFill = 16;
    ekv_model* m = model_.get();
    for (const CacheSpec& s : specs()) {
        const ekv_cache_params p = params_of(s);
        ekv_cache* ref_raw = nullptr;
        ASSERT_EQ(ekv_cache_create(m, &p, &ref_raw), EKV_OK) << ekv_last_error();
        CachePtr ref(ref_raw);
        const std::vector<float> want_fill = forward(m, ref.get(), first(kFill));
        const std::vector<float> want_next = forward(m, ref.get(), {stream_[kFill]});
        ASSERT_FALSE(want_fill.empty() || want_next.empty());

        const long created = walk("create + forward " + s.name, [&](long fail_at) {
            ekv_cache* c = nullptr;
            std::vector<float> logits(want_fill.size());
            const Armed a = run_armed(fail_at, [&] {
                const ekv_status st = ekv_cache_create(m, &p, &c);
                if (st != EKV_OK) return st;
                return ekv_forward(m, c, stream_.data(), kFill, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size());
            });
            CachePtr owned(c);
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK) {
                EXPECT_EQ(logits, want_fill);
            } else if (c) {
                // The forward failed: the cache is unchanged (empty) and works.
                int32_t len = -1;
                EXPECT_EQ(ekv_cache_seq_len(c, &len), EKV_OK);
                EXPECT_EQ(len, 0);
                EXPECT_EQ(forward(m, c, first(kFill)), want_fill) << "the cache after a failed forward";
            }
            return a;
        });
        EXPECT_GT(created, 0) << s.name << ": no device allocation counted";

        CachePtr src(nullptr);
        {
            ekv_cache* c = nullptr;
            ASSERT_EQ(ekv_cache_create(m, &p, &c), EKV_OK);
            src.reset(c);
            ASSERT_EQ(forward(m, src.get(), first(kFill)), want_fill);
        }
        walk("clone " + s.name, [&](long fail_at) {
            ekv_cache* c = nullptr;
            const Armed a = run_armed(fail_at, [&] { return ekv_cache_clone(src.get(), &c); });
            CachePtr owned(c);
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK)
                EXPECT_EQ(forward(m, c, {stream_[kFill]}), want_next);
            else
                EXPECT_EQ(c, nullptr);
            return a;
        });
        EXPECT_EQ(forward(m, src.get(), {stream_[kFill]}), want_next) << s.name << ": the source after the walk";
    }
}

// Model load: a failed load returns no model and leaves none half-made; a
// load that absorbed a failure computes what the first model computes.
TEST_F(VulkanAllocationFailure, ModelLoad) {
    const std::string path = ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
    const CacheSpec dyn = specs()[0];
    const ekv_cache_params p = params_of(dyn);
    auto logits_of = [&](ekv_model* m) {
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(m, &p, &c), EKV_OK) << ekv_last_error();
        CachePtr owned(c);
        return c ? forward(m, c, first(12)) : std::vector<float>();
    };
    const std::vector<float> want = logits_of(model_.get());
    ASSERT_FALSE(want.empty());
    const long n = walk("model load", [&](long fail_at) {
        ekv_model_params mp = ekv_model_default_params();
        mp.backend = EKV_BACKEND_VULKAN;
        mp.n_threads = 2;
        ekv_model* m = nullptr;
        const Armed a = run_armed(fail_at, [&] { return ekv_model_load(path.c_str(), &mp, &m); });
        ekv_test::ModelPtr owned(m);
        EXPECT_TRUE(clean_status(a));
        if (a.status == EKV_OK)
            EXPECT_EQ(logits_of(m), want) << "a model loaded after an absorbed failure";
        else
            EXPECT_EQ(m, nullptr) << "a failed load must leave *out NULL";
        return a;
    });
    EXPECT_GT(n, 0) << "no device allocation counted in a Vulkan model load";
    EXPECT_EQ(logits_of(model_.get()), want) << "the first model after the walk";
}

// A 64-token greedy generation: a failure ends it with the status, the
// tokens written so far are the uninterrupted run's, and the cache holds a
// prefix of the sequence that continues like a fresh cache fed that prefix.
TEST_F(VulkanAllocationFailure, Generate64) {
    constexpr int32_t kPrompt = 8, kNew = 64;
    ekv_model* m = model_.get();
    const std::vector<int32_t> prompt = first(kPrompt);
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = kNew;
    gp.temperature = 0;
    gp.stop_at_eos = 0;
    for (const CacheSpec& s : {specs()[0], specs()[2]}) {  // growing rows; a fixed ring
        const ekv_cache_params p = params_of(s);
        std::vector<int32_t> base(kNew, -1);
        {
            ekv_cache* c = nullptr;
            ASSERT_EQ(ekv_cache_create(m, &p, &c), EKV_OK);
            CachePtr owned(c);
            ASSERT_EQ(ekv_generate(m, c, prompt.data(), kPrompt, &gp, base.data(), kNew, nullptr), EKV_OK)
                << ekv_last_error();
        }
        std::vector<int32_t> seq = prompt;
        seq.insert(seq.end(), base.begin(), base.end());
        walk("generate 64 on " + s.name, [&](long fail_at) {
            ekv_cache* c = nullptr;
            EXPECT_EQ(ekv_cache_create(m, &p, &c), EKV_OK);
            CachePtr owned(c);
            std::vector<int32_t> out(kNew, -7);
            ekv_generate_result res;
            ekv_generate_result_init(&res, sizeof res);
            const Armed a = run_armed(fail_at, [&] {
                return ekv_generate(m, c, prompt.data(), kPrompt, &gp, out.data(), kNew, &res);
            });
            EXPECT_TRUE(clean_status(a));
            const int32_t g = res.n_generated;
            EXPECT_TRUE(g >= 0 && g <= kNew && (a.status != EKV_OK || g == kNew)) << g;
            for (int32_t i = 0; i < kNew; ++i)
                EXPECT_EQ(out[static_cast<size_t>(i)], i < g ? base[static_cast<size_t>(i)] : -7) << "token " << i;
            int32_t len = -1;
            EXPECT_EQ(ekv_cache_seq_len(c, &len), EKV_OK);
            EXPECT_TRUE(len == 0 || (len >= kPrompt && len <= kPrompt + g)) << len << " held after " << g;
            if (len > 0 && len < static_cast<int32_t>(seq.size())) {
                ekv_cache* fresh = nullptr;
                EXPECT_EQ(ekv_cache_create(m, &p, &fresh), EKV_OK);
                CachePtr owned_fresh(fresh);
                forward(m, fresh, std::vector<int32_t>(seq.begin(), seq.begin() + len));
                const std::vector<float> got = forward(m, c, {seq[static_cast<size_t>(len)]});
                const std::vector<float> want = forward(m, fresh, {seq[static_cast<size_t>(len)]});
                if (!got.empty() && got.size() == want.size())
                    EXPECT_LT(ekv_test::normalized_max_error(got.data(), want.data(), static_cast<int32_t>(got.size())),
                              1e-4)
                        << "the cache after the generation (" << len << " tokens held)";
            }
            return a;
        });
    }
}

// Save and load of device-resident caches: a failed save leaves the old
// file, a failed load returns NULL, and what loads continues bit for bit.
TEST_F(VulkanAllocationFailure, SaveAndLoad) {
    ekv_model* m = model_.get();
    for (const CacheSpec& s : {specs()[0], specs()[1], specs()[2]}) {
        const ekv_cache_params p = params_of(s);
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_create(m, &p, &raw), EKV_OK);
        CachePtr src(raw);
        ASSERT_FALSE(forward(m, src.get(), first(30)).empty());
        ekv_cache* probe_raw = nullptr;
        ASSERT_EQ(ekv_cache_clone(src.get(), &probe_raw), EKV_OK);
        CachePtr probe(probe_raw);
        const std::vector<float> want = forward(m, probe.get(), {stream_[30]});
        ekv_test::TempDir dir;
        const std::string path = dir.file("cache.ekv");
        ekv_cache* empty_raw = nullptr;
        ASSERT_EQ(ekv_cache_create(m, &p, &empty_raw), EKV_OK);
        CachePtr empty(empty_raw);
        ASSERT_EQ(ekv_cache_save(empty.get(), path.c_str()), EKV_OK) << ekv_last_error();
        const std::vector<uint8_t> old_file = ekv_test::read_bytes(path);
        ASSERT_EQ(ekv_cache_save(src.get(), path.c_str()), EKV_OK) << ekv_last_error();
        const std::vector<uint8_t> saved = ekv_test::read_bytes(path);
        walk("save " + s.name, [&](long fail_at) {
            ekv_test::write_bytes(path, old_file);
            const Armed a = run_armed(fail_at, [&] { return ekv_cache_save(src.get(), path.c_str()); });
            EXPECT_TRUE(clean_status(a));
            EXPECT_TRUE(ekv_test::read_bytes(path) == (a.status == EKV_OK ? saved : old_file)) << "the file";
            return a;
        });
        ekv_test::write_bytes(path, saved);
        const long loads = walk("load " + s.name, [&](long fail_at) {
            ekv_cache* c = nullptr;
            const Armed a = run_armed(fail_at, [&] { return ekv_cache_load(m, path.c_str(), &c); });
            CachePtr owned(c);
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK)
                EXPECT_EQ(forward(m, c, {stream_[30]}), want) << "a cache loaded after an absorbed failure";
            else
                EXPECT_EQ(c, nullptr) << "a failed load must leave *out NULL";
            return a;
        });
        EXPECT_GT(loads, 0) << s.name << ": a load made no device allocation";
        EXPECT_EQ(forward(m, src.get(), {stream_[30]}), want) << s.name << ": the source after the walks";
    }
}

}  // namespace

#endif  // EKV_FAULT_INJECTION
