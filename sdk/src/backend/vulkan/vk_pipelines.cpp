#include "backend/vulkan/vk_pipelines.h"

#include <cstring>

#include "backend/vulkan/spirv_registry.h"
#include "backend/vulkan/vk_util.h"

namespace ekv::vk {
namespace {
constexpr uint32_t kSetsPerPool = 256;
}

size_t PipelineCache::KeyHash::operator()(const Bindings& b) const {
    uint64_t h = 1469598103934665603ull;
    for (const Binding& x : b) {
        uint64_t v = 0;
        std::memcpy(&v, &x.buffer, sizeof(x.buffer) < sizeof(v) ? sizeof(x.buffer) : sizeof(v));
        for (uint64_t part : {v, static_cast<uint64_t>(x.offset), static_cast<uint64_t>(x.range)})
            h = (h ^ part) * 1099511628211ull;
    }
    return static_cast<size_t>(h);
}

PipelineCache::~PipelineCache() {
    if (device_ == VK_NULL_HANDLE) return;
    for (VkPipeline p : pipelines_)
        if (p != VK_NULL_HANDLE) vkDestroyPipeline(device_, p, nullptr);
    for (VkDescriptorPool p : pools_) vkDestroyDescriptorPool(device_, p, nullptr);  // frees its sets
    if (layout_ != VK_NULL_HANDLE) vkDestroyPipelineLayout(device_, layout_, nullptr);
    if (set_layout_ != VK_NULL_HANDLE) vkDestroyDescriptorSetLayout(device_, set_layout_, nullptr);
}

Status PipelineCache::init(VkDevice device, MatmulShape matmul_shape, AttentionShape attention_shape) {
    device_ = device;
    matmul_shape_ = matmul_shape;
    attention_shape_ = attention_shape;
    VkDescriptorSetLayoutBinding binds[kNumBindings]{};
    for (uint32_t i = 0; i < kNumBindings; ++i) {
        binds[i].binding = i;
        binds[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        binds[i].descriptorCount = 1;
        binds[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    VkDescriptorSetLayoutCreateInfo lci{};
    lci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    lci.bindingCount = kNumBindings;
    lci.pBindings = binds;
    VkResult r = vkCreateDescriptorSetLayout(device_, &lci, nullptr, &set_layout_);
    if (r != VK_SUCCESS) return vk_status(r, "vkCreateDescriptorSetLayout");
    VkPushConstantRange range{};
    range.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    range.size = kPushConstantBytes;
    VkPipelineLayoutCreateInfo pci{};
    pci.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    pci.setLayoutCount = 1;
    pci.pSetLayouts = &set_layout_;
    pci.pushConstantRangeCount = 1;
    pci.pPushConstantRanges = &range;
    r = vkCreatePipelineLayout(device_, &pci, nullptr, &layout_);
    if (r != VK_SUCCESS) return vk_status(r, "vkCreatePipelineLayout");
    return add_pool();
}

Status PipelineCache::pipeline(ShaderId id, VkPipeline* out) {
    VkPipeline& slot = pipelines_[static_cast<size_t>(id)];
    if (slot != VK_NULL_HANDLE) {
        *out = slot;
        return Status::Ok();
    }
    const SpirvBlob* blob = find_spirv(shader_name(id));
    if (!blob) return Error(EKV_ERR_INTERNAL, "shader variant %s is not embedded in this build", shader_name(id));
    VkShaderModuleCreateInfo mci{};
    mci.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    mci.codeSize = blob->n_words * 4;
    mci.pCode = blob->words;
    VkShaderModule module = VK_NULL_HANDLE;
    VkResult r = vkCreateShaderModule(device_, &mci, nullptr, &module);
    if (r != VK_SUCCESS) {
        Status st = vk_status(r, "vkCreateShaderModule");
        return Status(st.code(), st.message() + " for shader " + shader_name(id));
    }
    VkComputePipelineCreateInfo cci{};
    cci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    cci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    cci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cci.stage.module = module;
    cci.stage.pName = "main";
    const VkSpecializationMapEntry entry{0, 0, sizeof(uint32_t)};
    VkSpecializationInfo spec{};
    spec.mapEntryCount = 1;
    spec.pMapEntries = &entry;
    spec.dataSize = sizeof(uint32_t);
    spec.pData = &matmul_shape_.lanes;
    cci.stage.pSpecializationInfo = &spec;
    cci.layout = layout_;
    r = vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &cci, nullptr, &slot);
    vkDestroyShaderModule(device_, module, nullptr);
    if (r != VK_SUCCESS) {
        slot = VK_NULL_HANDLE;
        Status st = vk_status(r, "vkCreateComputePipelines");
        return Status(st.code(), st.message() + " for shader " + shader_name(id));
    }
    *out = slot;
    return Status::Ok();
}

Status PipelineCache::add_pool() {
    VkDescriptorPoolSize size{};
    size.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    size.descriptorCount = kSetsPerPool * kNumBindings;
    VkDescriptorPoolCreateInfo pci{};
    pci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    pci.flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT;
    pci.maxSets = kSetsPerPool;
    pci.poolSizeCount = 1;
    pci.pPoolSizes = &size;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    VkResult r = vkCreateDescriptorPool(device_, &pci, nullptr, &pool);
    if (r != VK_SUCCESS) return vk_status(r, "vkCreateDescriptorPool");
    pools_.push_back(pool);
    return Status::Ok();
}

Status PipelineCache::descriptor_set(const Bindings& b, VkDescriptorSet* out) {
    auto it = sets_.find(b);
    if (it != sets_.end()) {
        *out = it->second.set;
        return Status::Ok();
    }
    VkDescriptorSetAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &set_layout_;
    VkDescriptorSet set = VK_NULL_HANDLE;
    VkResult r = VK_ERROR_OUT_OF_POOL_MEMORY;
    for (size_t attempt = 0; attempt < 2; ++attempt) {
        ai.descriptorPool = pools_.back();
        r = vkAllocateDescriptorSets(device_, &ai, &set);
        if (r == VK_SUCCESS) break;
        if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) break;
        EKV_TRY(add_pool());
    }
    if (r != VK_SUCCESS) return vk_status(r, "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo infos[kNumBindings];
    VkWriteDescriptorSet writes[kNumBindings]{};
    for (uint32_t i = 0; i < kNumBindings; ++i) {
        infos[i] = {b[i].buffer, b[i].offset, b[i].range};
        writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        writes[i].dstSet = set;
        writes[i].dstBinding = i;
        writes[i].descriptorCount = 1;
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
    }
    vkUpdateDescriptorSets(device_, kNumBindings, writes, 0, nullptr);
    sets_.emplace(b, CachedSet{set, pools_.size() - 1});
    *out = set;
    return Status::Ok();
}

void PipelineCache::evict(VkBuffer buffer) {
    for (auto it = sets_.begin(); it != sets_.end();) {
        bool uses = false;
        for (const Binding& x : it->first) uses = uses || x.buffer == buffer;
        if (uses) {
            vkFreeDescriptorSets(device_, pools_[it->second.pool], 1, &it->second.set);
            it = sets_.erase(it);
        } else {
            ++it;
        }
    }
}

}  // namespace ekv::vk
