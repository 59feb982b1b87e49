// Device allocation failure on the Vulkan backend is a status, never a crash,
// a leak or a validation error: with the fault-injection hooks built in
// (EDGEKV_FAULT_INJECTION, the vulkan preset), the N-th device buffer of a
// call finds every memory type out of memory (core/fault_injection.h). Each
// walk counts a call's device allocations, then repeats it once per
// allocation with that one failing; every attempt must return EKV_OK or
// EKV_ERR_OUT_OF_MEMORY with a message and a NULL output, and the model and
// caches made before must still give bit-identical logits. (Host allocations
// are walked on the CPU backend by tests/fault under ASan.)
#if defined(EKV_FAULT_INJECTION)
#include <functional>

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

}  // namespace

#endif  // EKV_FAULT_INJECTION
