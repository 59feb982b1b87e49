// Compute pipelines (created on first use from the embedded SPIR-V) sharing
// one layout, and descriptor sets cached per tuple of bound buffers (and
// windows): the buffers of a forward are fixed (weights, workspace, cache),
// so after the first forward no descriptor is allocated or written again.
#pragma once
#include <vulkan/vulkan.h>

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "backend/vulkan/vk_shaders.h"
#include "core/status.h"

namespace ekv::vk {

// One storage-buffer binding: a whole buffer, or a window of one (a buffer
// larger than the device's maxStorageBufferRange is bound a window at a time).
struct Binding {
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceSize offset = 0;
    VkDeviceSize range = VK_WHOLE_SIZE;
    Binding() = default;
    Binding(VkBuffer b) : buffer(b) {}  // the whole buffer (implicit: most ops bind whole buffers)
    Binding(VkBuffer b, VkDeviceSize off, VkDeviceSize r) : buffer(b), offset(off), range(r) {}
    bool operator==(const Binding& o) const { return buffer == o.buffer && offset == o.offset && range == o.range; }
};
using Bindings = std::array<Binding, kNumBindings>;

// How matmul maps weight rows to invocations.
struct MatmulShape {
    // matmul_rows.comp: whole rows per invocation, for CPU implementations
    // (the f16-accumulation variants always use matmul.comp).
    bool whole_rows = false;
    // matmul.comp's invocations per row (specialization constant 0 of every
    // pipeline), a power of two dividing 64.
    uint32_t lanes = 16;
};

// How attention maps queries to invocations.
enum class AttentionShape {
    Keys,  // attention_segment.comp: 64 keys at a time per workgroup (GPUs)
    Rows,  // attention_segment_rows.comp: whole key walks per invocation (CPU implementations)
};

class PipelineCache {
public:
    PipelineCache() = default;
    ~PipelineCache();
    PipelineCache(const PipelineCache&) = delete;
    PipelineCache& operator=(const PipelineCache&) = delete;

    Status init(VkDevice device, MatmulShape matmul_shape, AttentionShape attention_shape);
    VkPipelineLayout layout() const { return layout_; }
    const MatmulShape& matmul_shape() const { return matmul_shape_; }
    AttentionShape attention_shape() const { return attention_shape_; }
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
    MatmulShape matmul_shape_;
    AttentionShape attention_shape_ = AttentionShape::Keys;
    VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
    VkPipelineLayout layout_ = VK_NULL_HANDLE;
    std::array<VkPipeline, static_cast<size_t>(ShaderId::Count)> pipelines_{};
    std::vector<VkDescriptorPool> pools_;
    std::unordered_map<Bindings, CachedSet, KeyHash> sets_;
};

}  // namespace ekv::vk
