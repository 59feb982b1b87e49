#include "backend/vulkan/vk_context.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "backend/vulkan/vk_pipelines.h"
#include "backend/vulkan/vk_stream.h"
#include "backend/vulkan/vk_util.h"

namespace ekv::vk {
namespace {

// shaderFloat16 through VK_KHR_shader_float16_int8: the instance targets
// Vulkan 1.1, where the feature is not core, so the extension is what the
// device must offer (and what open() enables).
bool query_shader_float16(VkPhysicalDevice dev) {
    if (!has_device_extension(dev, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME)) return false;
    VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16{};
    f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR;
    VkPhysicalDeviceFeatures2 features{};
    features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    features.pNext = &f16;
    vkGetPhysicalDeviceFeatures2(dev, &features);
    return f16.shaderFloat16 == VK_TRUE;
}

}  // namespace

Status Context::create(const BackendOptions& options, std::shared_ptr<Context>* out) {
    std::shared_ptr<Context> ctx(new (std::nothrow) Context());
    if (!ctx) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate the Vulkan context");
    // The variables override the params (for comparisons without rebuilding an app).
    const char* replay = std::getenv("EKV_VULKAN_REPLAY");
    ctx->replay_ = replay && replay[0] != '\0' ? std::strcmp(replay, "0") != 0 : options.replay != 0;
    const char* f16_acc = std::getenv("EKV_VULKAN_F16_ACCUMULATE");
    ctx->want_f16_accumulate_ = f16_acc && f16_acc[0] != '\0' ? f16_acc[0] == '1' : options.f16_accumulate == 1;
    EKV_TRY(ctx->open(options.device_index));
    *out = std::move(ctx);
    return Status::Ok();
}

Status Context::open(int32_t index) {
    EKV_TRY(instance_.init());
    int32_t chosen = 0;
    EKV_TRY(select_device(instance_, index, &chosen));
    phys_ = instance_.devices()[static_cast<size_t>(chosen)];
    vkGetPhysicalDeviceProperties(phys_, &props_);
    vkGetPhysicalDeviceMemoryProperties(phys_, &mem_props_);
    desc_ = describe_device(phys_, chosen);
    const char* unmapped = std::getenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY");
    map_device_memory_ = !(unmapped && unmapped[0] == '1');
    // Device memory the host cannot map is how a discrete GPU behaves: then
    // the caches stage host-placed KV too (the path tests cover on lavapipe).
    if (!map_device_memory_) desc_.unified_memory = false;
    shader_float16_ = query_shader_float16(phys_);
    f16_accumulate_ = want_f16_accumulate_ && shader_float16_;

    // Prefer a compute queue family without graphics (async compute), else any with compute.
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys_, &n, nullptr);
    std::vector<VkQueueFamilyProperties> fams(n);
    vkGetPhysicalDeviceQueueFamilyProperties(phys_, &n, fams.data());
    int family = -1;
    for (uint32_t i = 0; i < n; ++i) {
        if (!(fams[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
        if (family < 0 || !(fams[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) family = static_cast<int>(i);
    }
    if (family < 0) return Error(EKV_ERR_BACKEND, "%s has no compute queue", props_.deviceName);
    queue_family_ = static_cast<uint32_t>(family);

    const float priority = 1.0f;
    VkDeviceQueueCreateInfo qci{};
    qci.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qci.queueFamilyIndex = queue_family_;
    qci.queueCount = 1;
    qci.pQueuePriorities = &priority;
    VkDeviceCreateInfo dci{};
    dci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    // Only shaderFloat16 is enabled (no 8-bit arithmetic, no 16-bit storage:
    // the f16acc matmul converts in registers).
    VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16_features{};
    f16_features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR;
    f16_features.shaderFloat16 = VK_TRUE;
    const char* const f16_extension = VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME;
    if (shader_float16_) {
        dci.pNext = &f16_features;
        dci.enabledExtensionCount = 1;
        dci.ppEnabledExtensionNames = &f16_extension;
    }
    VkResult r = vkCreateDevice(phys_, &dci, nullptr, &device_);
    if (r != VK_SUCCESS) {
        device_ = VK_NULL_HANDLE;
        return vk_status(r, "vkCreateDevice");
    }
    vkGetDeviceQueue(device_, queue_family_, 0, &queue_);

    pipelines_.reset(new (std::nothrow) PipelineCache());
    stream_.reset(new (std::nothrow) CommandStream());
    if (!pipelines_ || !stream_) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate the Vulkan command stream");
    // GPUs split a matmul row over 16 invocations (matmul.comp). CPU
    // implementations (lavapipe) pay dearly for workgroup barriers and load
    // storage buffers lane by lane: whole rows per invocation there
    // (matmul_rows.comp; one lane per row where matmul.comp still runs).
    // EKV_VULKAN_MATMUL_LANES=N forces matmul.comp with N lanes per row (tests
    // cover both shapes on lavapipe).
    MatmulShape shape;
    const bool cpu_device = props_.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    shape.whole_rows = cpu_device;
    shape.lanes = cpu_device ? 1u : 16u;
    if (const char* env = std::getenv("EKV_VULKAN_MATMUL_LANES")) {
        const long v = std::strtol(env, nullptr, 10);
        if (v < 1 || v > 64 || (v & (v - 1)) != 0)
            return Error(EKV_ERR_INVALID_ARGUMENT, "EKV_VULKAN_MATMUL_LANES=%s: expected a power of two in 1..64", env);
        shape.whole_rows = false;
        shape.lanes = static_cast<uint32_t>(v);
    }
    // Attention likewise: 64 keys per workgroup with shared-memory
    // reductions on GPUs (attention_segment.comp), a whole key walk per
    // invocation on CPU implementations (attention_segment_rows.comp).
    // EKV_VULKAN_ATTENTION_SHAPE=keys|rows forces one (tests run both on lavapipe).
    AttentionShape attention = cpu_device ? AttentionShape::Rows : AttentionShape::Keys;
    if (const char* env = std::getenv("EKV_VULKAN_ATTENTION_SHAPE")) {
        if (std::strcmp(env, "keys") == 0)
            attention = AttentionShape::Keys;
        else if (std::strcmp(env, "rows") == 0)
            attention = AttentionShape::Rows;
        else
            return Error(EKV_ERR_INVALID_ARGUMENT, "EKV_VULKAN_ATTENTION_SHAPE=%s: expected keys or rows", env);
    }
    EKV_TRY(pipelines_->init(device_, shape, attention));
    EKV_TRY(stream_->init(*this));
    return Status::Ok();
}

Context::~Context() {
    if (device_ != VK_NULL_HANDLE) vkDeviceWaitIdle(device_);
    if (stream_) stream_->release();
    stream_.reset();
    pipelines_.reset();
    if (device_ != VK_NULL_HANDLE) vkDestroyDevice(device_, nullptr);
}

}  // namespace ekv::vk
