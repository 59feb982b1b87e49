// Device listing through the C ABI, the no-driver and bad-index paths, and
// the model-level check: SmolLM2-135M greedy tokens on Vulkan equal the CPU
// backend's (and the prompt's logits agree closely).
#define EKV_EXPERIMENTAL  // the audio API (backend/parity_model_cases.h)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "backend/vulkan/vk_context.h"
#include "backend/parity_model_cases.h"
#include "backend/vulkan_test_util.h"
#include "model/test_util.h"

namespace ekv_vk_test {
namespace {

TEST(VulkanDevices, ListedThroughTheCAbi) {
    int32_t n = 0;
    ASSERT_EQ(ekv_device_count(EKV_BACKEND_VULKAN, &n), EKV_OK) << ekv_last_error();
    ASSERT_GE(n, 1) << "no Vulkan device (CI installs lavapipe: mesa-vulkan-drivers)";
    EXPECT_EQ(ekv_backend_available(EKV_BACKEND_VULKAN), 1);
    for (int32_t i = 0; i < n; ++i) {
        ekv_device_info info = ekv_device_info_default();
        ASSERT_EQ(ekv_device_get_info(EKV_BACKEND_VULKAN, i, &info), EKV_OK) << ekv_last_error();
        EXPECT_EQ(info.backend, EKV_BACKEND_VULKAN);
        EXPECT_GT(std::strlen(info.name), 0u);
        EXPECT_GT(info.device_memory_bytes, 0u);
        EXPECT_GT(info.device_memory_free_bytes, 0u);
        EXPECT_LE(info.device_memory_free_bytes, info.device_memory_bytes);
    }
    ekv_device_info info = ekv_device_info_default();
    EXPECT_EQ(ekv_device_get_info(EKV_BACKEND_VULKAN, n, &info), EKV_ERR_INVALID_ARGUMENT);
}

TEST(VulkanDevices, SoftwareRasterizerIsUnifiedAndNotPickedByAuto) {
    std::vector<DeviceDescription> devices;
    std::vector<bool> software;
    ASSERT_TRUE(vk::list_devices(&devices, &software).ok());
    bool any_gpu = false;
    for (size_t i = 0; i < devices.size(); ++i) {
        if (software[i]) EXPECT_TRUE(devices[i].unified_memory) << devices[i].name;
        any_gpu = any_gpu || !software[i];
    }
    std::unique_ptr<Backend> b;
    ASSERT_TRUE(create_backend(EKV_BACKEND_AUTO, BackendOptions{}, &b).ok());
    EXPECT_EQ(b->device().kind, any_gpu ? EKV_BACKEND_VULKAN : EKV_BACKEND_CPU) << b->device().name;
}

TEST(VulkanDevices, BadIndexAndMissingDriverAreClearErrors) {
    std::unique_ptr<Backend> b;
    BackendOptions o;
    o.device_index = 99;
    EXPECT_EQ(create_backend(EKV_BACKEND_VULKAN, o, &b).code(), EKV_ERR_INVALID_ARGUMENT);
    // Hide every driver from the loader: Vulkan -> EKV_ERR_BACKEND, AUTO -> CPU.
    const char* old = std::getenv("VK_ICD_FILENAMES");
    const std::string saved = old ? old : "";
    setenv("VK_ICD_FILENAMES", "/nonexistent/edgekv_no_driver.json", 1);
    // The loader's complaints reach the log callback, and stderr gets nothing.
    std::vector<std::string> logged;
    ekv_log_set_callback(
        [](ekv_log_level level, const char* message, void* ud) {
            if (level == EKV_LOG_ERROR) static_cast<std::vector<std::string>*>(ud)->push_back(message);
        },
        &logged);
    testing::internal::CaptureStderr();
    const Status st = create_backend(EKV_BACKEND_VULKAN, BackendOptions{}, &b);
    const std::string err = testing::internal::GetCapturedStderr();
    ekv_log_set_callback(nullptr, nullptr);
    EXPECT_EQ(st.code(), EKV_ERR_BACKEND) << st.message();
    EXPECT_EQ(err, "");
    ASSERT_FALSE(logged.empty());
    EXPECT_NE(logged.back().find("Vulkan loader error"), std::string::npos) << logged.back();
    EXPECT_EQ(backend_device_count(EKV_BACKEND_VULKAN), 0);
    ASSERT_TRUE(create_backend(EKV_BACKEND_AUTO, BackendOptions{}, &b).ok());
    EXPECT_EQ(b->device().kind, EKV_BACKEND_CPU);
    if (old)
        setenv("VK_ICD_FILENAMES", saved.c_str(), 1);
    else
        unsetenv("VK_ICD_FILENAMES");
    EXPECT_GE(backend_device_count(EKV_BACKEND_VULKAN), 1);
}

// The harness itself: with EKV_VULKAN_VALIDATION=1 (as under CTest) a
// deliberate misuse is counted, so a clean count elsewhere means something.
TEST(VulkanValidation, ErrorsAreCounted) {
    ASSERT_TRUE(vk::validation_requested()) << "run with EKV_VULKAN_VALIDATION=1 (the vulkan test preset sets it)";
    std::shared_ptr<vk::Context> ctx;
    const Status st = vk::Context::create(ekv::BackendOptions(), &ctx);
    ASSERT_TRUE(st.ok()) << st.message();
    const int64_t before = vk::validation_error_count();
    std::fprintf(stderr, "VulkanValidation.ErrorsAreCounted: the next validation error is expected\n");
    VkBufferCreateInfo bci{};
    bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bci.size = 0;  // invalid: buffers cannot be empty
    bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
    VkBuffer b = VK_NULL_HANDLE;
    if (vkCreateBuffer(ctx->device(), &bci, nullptr, &b) == VK_SUCCESS && b != VK_NULL_HANDLE)
        vkDestroyBuffer(ctx->device(), b, nullptr);
    EXPECT_GT(vk::validation_error_count(), before);
}

// Prefill then greedy decode, step by step on both backends, for the
// dynamic, quantized (KIVI) and sink caches: every step's logits agree
// closely and the chosen tokens are identical (backend/parity_model_cases.h).
TEST(VulkanModel, SmolLM2GreedyTokensEqualCpu) {
    const int64_t validation_errors = vk::validation_error_count();
    smollm2_greedy_tokens_equal_cpu(EKV_BACKEND_VULKAN);
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

// The generic cache family on Vulkan (tiny model: lavapipe is slow): rings,
// sinks, KIVI and offloading give the CPU's logits.
TEST(VulkanModel, CacheFamilyMatchesCpu) {
    const int64_t validation_errors = vk::validation_error_count();
    cache_family_matches_cpu(EKV_BACKEND_VULKAN);
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

// Offloading: KV in host memory. lavapipe shares host memory (unified), so
// the shaders read the host copy in place and nothing sits in device memory;
// with device memory the host cannot map (how a discrete GPU behaves) each
// layer is staged into a device double buffer, prefetched a layer ahead.
// Both give the CPU's logits; the stats say where the bytes are.
TEST(VulkanModel, OffloadedKvIsReadInPlaceOrStaged) {
    const int64_t validation_errors = vk::validation_error_count();
    const std::string path = ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
    ekv_test::ModelPtr cpu = load_on(path, EKV_BACKEND_CPU);
    ASSERT_TRUE(cpu);
    const int32_t nv = ekv_test::n_vocab(cpu.get());
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(cpu.get(), &info), EKV_OK);
    std::vector<int32_t> stream;
    for (int i = 0; i < 60; ++i) stream.push_back(3 + (i * 71) % (nv - 3));
    // A chunk of 40, then single tokens; the logits of every position.
    auto run = [&](ekv_model* m, ekv_cache_type type, ekv_cache_stats* stats) {
        std::vector<float> logits(stream.size() * static_cast<size_t>(nv));
        ekv_cache_params p = ekv_cache_default_params();
        p.type = type;
        p.max_cache_len = 64;
        ekv_cache* raw = nullptr;
        EXPECT_EQ(ekv_cache_create(m, &p, &raw), EKV_OK) << ekv_last_error();
        ekv_test::CachePtr c(raw);
        for (size_t at = 0; c && at < stream.size(); at += at < 40 ? 40 : 1) {
            const int32_t n = at < 40 ? 40 : 1;
            EXPECT_EQ(ekv_forward(m, c.get(), stream.data() + at, n, nullptr, EKV_LOGITS_ALL,
                                  logits.data() + at * nv, static_cast<size_t>(n) * nv),
                      EKV_OK)
                << ekv_last_error();
        }
        *stats = ekv_cache_stats_default();
        if (c) EXPECT_EQ(ekv_cache_get_stats(c.get(), stats), EKV_OK);
        return logits;
    };
    for (ekv_cache_type type : {EKV_CACHE_OFFLOADED, EKV_CACHE_OFFLOADED_STATIC}) {
        ekv_cache_stats ref_stats, s;
        const std::vector<float> ref = run(cpu.get(), type, &ref_stats);
        for (bool discrete : {false, true}) {
            if (discrete) setenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY", "1", 1);
            ekv_test::ModelPtr vk = load_on(path, EKV_BACKEND_VULKAN);
            unsetenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY");
            ASSERT_TRUE(vk);
            const std::vector<float> got = run(vk.get(), type, &s);
            const char* name = ekv_cache_type_name(type);
            double worst = 0;
            for (size_t t = 0; t < stream.size(); ++t)
                worst = std::max(worst, ekv_test::normalized_max_error(got.data() + t * nv, ref.data() + t * nv, nv));
            EXPECT_LT(worst, 1e-3) << name << (discrete ? " (staged)" : " (in place)");
            EXPECT_EQ(s.host_bytes, ref_stats.host_bytes) << name;
            if (discrete)  // two layers' worth staged on the device
                EXPECT_EQ(s.device_bytes * static_cast<uint64_t>(info.n_layers), 2 * s.host_bytes) << name;
            else
                EXPECT_EQ(s.device_bytes, 0u) << name << ": a unified device reads host KV in place";
            std::printf("[ vulkan   ] %s %s: host %llu B, device %llu B, worst normalized logit error %.2e\n", name,
                        discrete ? "staged (unmapped device memory)" : "in place (unified)",
                        static_cast<unsigned long long>(s.host_bytes), static_cast<unsigned long long>(s.device_bytes),
                        worst);
        }
    }
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

// One Vulkan model, three threads, a cache each: the forwards take turns
// inside the library (one queue) and each thread's greedy tokens equal a
// serial run's; the validation layer stays silent.
TEST(VulkanModel, ConcurrentCachesTakeTurnsCorrectly) {
    const int64_t validation_errors = vk::validation_error_count();
    concurrent_caches_match_serial(EKV_BACKEND_VULKAN);
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

}  // namespace
}  // namespace ekv_vk_test
