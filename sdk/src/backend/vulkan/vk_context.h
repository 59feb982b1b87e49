// One opened Vulkan device: the logical device and its compute queue, memory
// (raw buffers with a placement), the pipelines and the command stream.
// Shared (shared_ptr) by the backend and every buffer it hands out, so
// buffers may outlive the Backend object without dangling.
#pragma once
#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "backend/backend.h"
#include "backend/vulkan/vk_instance.h"

namespace ekv::vk {

class PipelineCache;
class CommandStream;

// A VkBuffer with its own memory; `mapped` is non-null for host-visible,
// coherent memory (persistently mapped).
struct RawBuffer {
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    void* mapped = nullptr;
    size_t size = 0;
};

class Context {
public:
    // Opens device options.device_index (after EKV_VULKAN_DEVICE, see
    // select_device) with the options' replay and f16-accumulation choices.
    static Status create(const BackendOptions& options, std::shared_ptr<Context>* out);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    VkDevice device() const { return device_; }
    VkQueue queue() const { return queue_; }
    uint32_t queue_family() const { return queue_family_; }
    const VkPhysicalDeviceProperties& properties() const { return props_; }
    const DeviceDescription& description() const { return desc_; }
    PipelineCache& pipelines() { return *pipelines_; }
    // The device offers float16 shader arithmetic (shaderFloat16 of
    // VK_KHR_shader_float16_int8), enabled on the logical device when so.
    bool shader_float16() const { return shader_float16_; }
    // Matmul runs its f16-accumulation variants: EKV_VULKAN_F16_ACCUMULATE=1
    // was set when the device opened and it has shaderFloat16. Requested on a
    // device without it: silently the default f32 variants (HF-exact).
    bool f16_accumulate() const { return f16_accumulate_; }
    bool replay() const { return replay_; }
    CommandStream& stream() { return *stream_; }

    // Memory (vk_memory.cpp). Storage + transfer usage, bound whole by the
    // shaders, or a window at a time past maxStorageBufferRange.
    // EKV_VULKAN_UNMAPPED_DEVICE_MEMORY=1 leaves Device buffers unmapped even
    // on UMA devices (which then describe themselves as not unified), so
    // tests on lavapipe cover the staging paths of discrete GPUs.
    Status create_buffer(size_t bytes, Placement placement, RawBuffer* out);
    // Waits for recorded work that may still use it, then frees it.
    void destroy_buffer(RawBuffer& b);

private:
    Context() = default;
    Status open(int32_t index);

    Instance instance_;
    VkPhysicalDevice phys_ = VK_NULL_HANDLE;
    VkDevice device_ = VK_NULL_HANDLE;
    VkQueue queue_ = VK_NULL_HANDLE;
    uint32_t queue_family_ = 0;
    VkPhysicalDeviceProperties props_{};
    VkPhysicalDeviceMemoryProperties mem_props_{};
    DeviceDescription desc_;
    bool map_device_memory_ = true;
    bool shader_float16_ = false;
    bool f16_accumulate_ = false;
    bool replay_ = true;
    bool want_f16_accumulate_ = false;
    std::unique_ptr<PipelineCache> pipelines_;
    std::unique_ptr<CommandStream> stream_;
};

}  // namespace ekv::vk
