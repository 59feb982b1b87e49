// Cache operations on Vulkan, through the C ABI, against the CPU backend:
// files saved on one backend load on the other (f16, KIVI, wrapped sink
// rings, a host-offloaded KIVI sink) and continue like the uninterrupted
// runs; a wrapped sink ring is cropped and cloned, and the clone is
// independent; and 24-step greedy generations on the real models choose the
// CPU's tokens. The tiny-model tests run twice: with the device memory
// lavapipe maps for the host, and with EKV_VULKAN_UNMAPPED_DEVICE_MEMORY=1
// (read when a model's Vulkan context opens), where every byte in and out of
// device memory goes through staging copies as on a discrete GPU.
#define EKV_EXPERIMENTAL  // the audio API (backend/parity_model_cases.h)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "backend/vulkan/vk_instance.h"
#include "backend/parity_cache_ops_cases.h"
#include "backend/parity_model_cases.h"
#include "backend/vulkan_test_util.h"
#include "model/cache_family_util.h"

namespace ekv_vk_test {
namespace {

using ekv_test::CachePtr;
using ekv_test::CacheSpec;
using ekv_test::ModelPtr;

enum class Memory { Mapped, Unmapped };
const char* memory_name(Memory m) { return m == Memory::Mapped ? "mapped" : "unmapped"; }
void PrintTo(Memory m, std::ostream* os) { *os << memory_name(m); }  // in test names

// The Vulkan model with its context opened under the memory mode; checked
// through the ABI: a host-offloaded cache is staged into a device double
// buffer when the device memory is not host-visible (lavapipe's mapped
// memory is, so there it is read in place; a discrete GPU stages either way).
ModelPtr load_vulkan(const std::string& path, Memory memory) {
    if (memory == Memory::Unmapped) setenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY", "1", 1);
    ModelPtr m = load_on(path, EKV_BACKEND_VULKAN);
    unsetenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY");
    if (!m) return m;
    int32_t n = 0;
    ekv_device_info device = ekv_device_info_default();
    const bool unified = ekv_device_count(EKV_BACKEND_VULKAN, &n) == EKV_OK && n == 1 &&
                         ekv_device_get_info(EKV_BACKEND_VULKAN, 0, &device) == EKV_OK && device.unified_memory;
    CacheSpec host;  // allocated whole at creation
    host.type = EKV_CACHE_OFFLOADED_STATIC;
    host.max_len = 16;
    host.name = "offloaded_static probe";
    CachePtr probe = ekv_test::make(m.get(), host);
    if (probe) {
        const ekv_cache_stats s = ekv_test::stats_of(probe.get());
        if (memory == Memory::Unmapped || unified)
            EXPECT_EQ(s.device_bytes > 0, memory == Memory::Unmapped)
                << "the Vulkan context did not open in the requested memory mode";
    }
    return m;
}

// Tiny Llama on both backends, the Vulkan one in the parameter's memory mode
// (the cases: backend/parity_cache_ops_cases.h).
class VulkanCacheOps : public ::testing::TestWithParam<Memory>, public CacheOpsParityCases {
protected:
    void SetUp() override {
        validation_errors_ = vk::validation_error_count();
        ASSERT_NO_FATAL_FAILURE(init(load_on(tiny_llama_path(), EKV_BACKEND_CPU),
                                     load_vulkan(tiny_llama_path(), GetParam()),
                                     std::string(memory_name(GetParam())) + " device memory"));
    }
    void TearDown() override {
        EXPECT_EQ(vk::validation_error_count(), validation_errors_) << "Vulkan validation errors (see stderr)";
    }

    int64_t validation_errors_ = 0;
};

TEST_P(VulkanCacheOps, SavedOnOneBackendLoadsAndContinuesOnTheOther) {
    saved_on_one_backend_loads_and_continues_on_the_other();
}

TEST_P(VulkanCacheOps, CropAndCloneOfAWrappedSinkRing) { crop_and_clone_of_a_wrapped_sink_ring(); }

INSTANTIATE_TEST_SUITE_P(DeviceMemory, VulkanCacheOps, ::testing::Values(Memory::Mapped, Memory::Unmapped),
                         [](const ::testing::TestParamInfo<Memory>& i) {
                             return std::string(i.param == Memory::Mapped ? "Mapped" : "Unmapped");
                         });

// ---- 24-step greedy generations on the real models (expect_greedy_steps_equal:
// backend/parity_model_cases.h) ------------------------------------------------

// 24 steps: the 9 + 24 tokens quantize KIVI groups while decoding and drop
// nine tokens out of the sink ring.
constexpr int kSteps = 24;

// SmolLM2-135M: static, KIVI-4 (groups of 8 quantized from the 17th token
// on, while decoding) and sink (window 24 with 4 sinks: tokens drop out of
// the ring from the 25th on). One model per backend for the three caches:
// lavapipe compiles the pipelines once per model.
TEST(VulkanCacheOpsReal, SmolLM2GreedyStepsEqualCpu) {
    const int64_t validation_errors = vk::validation_error_count();
    const std::string path = ekv_test::smollm2_path();
    ASSERT_FALSE(path.empty()) << "EKV_SMOLLM2_GGUF is not set";
    ModelPtr cpu = load_on(path, EKV_BACKEND_CPU), vk = load_on(path, EKV_BACKEND_VULKAN);
    ASSERT_TRUE(cpu && vk);
    const std::vector<int32_t> prompt = tokenize(cpu.get(), "The old lighthouse keeper wrote in his journal that");
    struct Spec {
        ekv_cache_type type;
        double tolerance;
        bool replays;  // a static-shape cache: its decode steps must replay
        const char* name;
    };
    // 5e-3: VulkanModel.SmolLM2GreedyTokensEqualCpu's bound (observed here
    // 9.4e-4 static, 1.1e-3 sink). KIVI: codes a rounding apart land a step
    // apart and the difference grows over the steps (observed 7.2e-3); 1e-2
    // is what the CPU backend is held to against HF.
    for (const Spec& s : {Spec{EKV_CACHE_STATIC, 5e-3, true, "smollm2 static"},
                          Spec{EKV_CACHE_QUANTIZED, 1e-2, false, "smollm2 quantized q4"},
                          Spec{EKV_CACHE_SINK, 5e-3, true, "smollm2 sink"}}) {
        ekv_cache_params cp = ekv_cache_default_params();
        cp.type = s.type;
        cp.max_cache_len = 64;
        cp.nbits = 4;
        cp.q_group_size = 8;
        cp.residual_length = 8;
        cp.window_length = 24;
        cp.num_sink_tokens = 4;
        expect_greedy_steps_equal(cpu.get(), vk.get(), cp, prompt, kSteps, s.tolerance, s.replays, s.name);
    }
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

// Gemma 3 270M with its natural cache (hybrid: sliding-window local layers,
// growing global ones).
TEST(VulkanCacheOpsReal, Gemma3GreedyStepsEqualCpu) {
    const int64_t validation_errors = vk::validation_error_count();
    const std::string path = ekv_test::gemma3_path();
    ASSERT_FALSE(path.empty()) << "EKV_GEMMA3_GGUF is not set";
    ModelPtr cpu = load_on(path, EKV_BACKEND_CPU), vk = load_on(path, EKV_BACKEND_VULKAN);
    ASSERT_TRUE(cpu && vk);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(cpu.get(), &info), EKV_OK);
    ASSERT_EQ(info.natural_cache, EKV_CACHE_HYBRID);
    ekv_cache_params cp = ekv_cache_default_params();  // AUTO: the natural cache
    expect_greedy_steps_equal(cpu.get(), vk.get(), cp, tokenize(cpu.get(), "The old lighthouse keeper wrote that"),
                              kSteps, 5e-3, false, "gemma-3-270m hybrid");
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

}  // namespace
}  // namespace ekv_vk_test
