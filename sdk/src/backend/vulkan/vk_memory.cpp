// Buffer memory: a placement becomes a ranked list of memory-type wishes,
// tried in order (the next one when a heap is out of memory).
#include <cstring>

#include "backend/vulkan/vk_context.h"
#include "backend/vulkan/vk_pipelines.h"
#include "backend/vulkan/vk_stream.h"
#include "backend/vulkan/vk_util.h"
#include "core/fault_injection.h"

namespace ekv::vk {
namespace {

constexpr VkMemoryPropertyFlags kLocal = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
constexpr VkMemoryPropertyFlags kVisible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
constexpr VkMemoryPropertyFlags kCached = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;

struct Wish {
    VkMemoryPropertyFlags need;
    VkMemoryPropertyFlags avoid;
};

// Device: device-local, preferably not the small host-visible (BAR) window.
// Host: system memory the device reads over the bus (offloaded caches).
// Unified: memory both sides address directly (UMA), else host memory.
int wishes_for(Placement p, Wish* out) {
    switch (p) {
        case Placement::Device:
            out[0] = {kLocal, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT};
            out[1] = {kLocal, 0};
            out[2] = {0, 0};
            return 3;
        case Placement::Host:
            out[0] = {kVisible | kCached, kLocal};
            out[1] = {kVisible, kLocal};
            out[2] = {kVisible, 0};
            return 3;
        case Placement::Unified:
            out[0] = {kLocal | kVisible, 0};
            out[1] = {kVisible, 0};
            return 2;
    }
    return 0;
}

}  // namespace

Status Context::create_buffer(size_t bytes, Placement placement, RawBuffer* out) {
    *out = RawBuffer();
    // Shaders read 32-bit words and may read one word past an unaligned
    // field: round up and keep 16 bytes of slack (which also avoids empty
    // buffers, which Vulkan forbids). Buffers past maxStorageBufferRange are
    // bound a window at a time (vulkan_ops.cpp).
    const size_t size = (bytes + 15) / 16 * 16 + 16;
    VkBufferCreateInfo bci{};
    bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bci.size = size;
    bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkResult r = vkCreateBuffer(device_, &bci, nullptr, &out->buffer);
    if (r != VK_SUCCESS) {
        out->buffer = VK_NULL_HANDLE;
        return vk_status(r, "vkCreateBuffer");
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device_, out->buffer, &req);

    Wish wishes[3];
    const int n_wishes = wishes_for(placement, wishes);
    VkResult last = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    // Fault injection (tests): every memory type is out of memory for this
    // buffer, so the buffer is destroyed and the call reports it below.
    const bool injected = fault::device_allocation_fails();
    for (int w = 0; w < n_wishes && out->memory == VK_NULL_HANDLE && !injected; ++w) {
        for (uint32_t i = 0; i < mem_props_.memoryTypeCount; ++i) {
            const VkMemoryPropertyFlags f = mem_props_.memoryTypes[i].propertyFlags;
            if (!(req.memoryTypeBits & (1u << i)) || (f & wishes[w].need) != wishes[w].need || (f & wishes[w].avoid))
                continue;
            VkMemoryAllocateInfo ai{};
            ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
            ai.allocationSize = req.size;
            ai.memoryTypeIndex = i;
            last = vkAllocateMemory(device_, &ai, nullptr, &out->memory);
            if (last == VK_SUCCESS) {
                if ((f & kVisible) == kVisible && (map_device_memory_ || placement != Placement::Device)) {
                    r = vkMapMemory(device_, out->memory, 0, VK_WHOLE_SIZE, 0, &out->mapped);
                    if (r != VK_SUCCESS) out->mapped = nullptr;  // still usable through copies
                }
                break;
            }
            out->memory = VK_NULL_HANDLE;
            if (last != VK_ERROR_OUT_OF_DEVICE_MEMORY && last != VK_ERROR_OUT_OF_HOST_MEMORY) break;
        }
    }
    if (out->memory == VK_NULL_HANDLE) {
        vkDestroyBuffer(device_, out->buffer, nullptr);
        out->buffer = VK_NULL_HANDLE;
        Status st = vk_status(last, "vkAllocateMemory");
        return Status(st.code(), st.message() + " (" + std::to_string(bytes) + " bytes)");
    }
    r = vkBindBufferMemory(device_, out->buffer, out->memory, 0);
    if (r != VK_SUCCESS) {
        destroy_buffer(*out);
        return vk_status(r, "vkBindBufferMemory");
    }
    out->size = bytes;
    return Status::Ok();
}

void Context::destroy_buffer(RawBuffer& b) {
    if (b.buffer == VK_NULL_HANDLE && b.memory == VK_NULL_HANDLE) return;
    // Recorded or running commands may still use it: finish them first.
    if (stream_ && stream_->busy()) stream_->flush();
    if (stream_) stream_->invalidate_recording();  // it may bind this buffer
    if (pipelines_ && b.buffer != VK_NULL_HANDLE) pipelines_->evict(b.buffer);
    if (b.buffer != VK_NULL_HANDLE) vkDestroyBuffer(device_, b.buffer, nullptr);
    if (b.memory != VK_NULL_HANDLE) vkFreeMemory(device_, b.memory, nullptr);  // unmaps too
    b = RawBuffer();
}

}  // namespace ekv::vk
