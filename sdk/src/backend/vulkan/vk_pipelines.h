// Compute pipelines (created on first use from the embedded SPIR-V) sharing
// one layout, and descriptor sets cached per tuple of bound buffers: the
// buffers of a forward are fixed (weights, workspace, cache), so after the
// first forward no descriptor is allocated or written again.
#pragma once
#include <vulkan/vulkan.h>

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "backend/vulkan/vk_shaders.h"
#include "core/status.h"

namespace ekv::vk {

using Bindings = std::array<VkBuffer, kNumBindings>;

class PipelineCache {
public:
    PipelineCache() = default;
    ~PipelineCache();
    PipelineCache(const PipelineCache&) = delete;
    PipelineCache& operator=(const PipelineCache&) = delete;

    // matmul_lanes: invocations per matmul row (specialization constant 0 of
    // every pipeline), a power of two dividing 64.
    Status init(VkDevice device, uint32_t matmul_lanes);
    VkPipelineLayout layout() const { return layout_; }
    uint32_t matmul_lanes() const { return matmul_lanes_; }
    // Shader compilation failure -> EKV_ERR_BACKEND naming the variant.
    Status pipeline(ShaderId id, VkPipeline* out);
    Status descriptor_set(const Bindings& b, VkDescriptorSet* out);
    // Frees the sets that bind `buffer` (called before the buffer is destroyed).
    void evict(VkBuffer buffer);

private:
    struct KeyHash {
        size_t operator()(const Bindings& b) const;
    };
    struct CachedSet {
        VkDescriptorSet set;
        size_t pool;
    };
    Status add_pool();

    VkDevice device_ = VK_NULL_HANDLE;
    uint32_t matmul_lanes_ = 16;
    VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
    VkPipelineLayout layout_ = VK_NULL_HANDLE;
    std::array<VkPipeline, static_cast<size_t>(ShaderId::Count)> pipelines_{};
    std::vector<VkDescriptorPool> pools_;
    std::unordered_map<Bindings, CachedSet, KeyHash> sets_;
};

}  // namespace ekv::vk
