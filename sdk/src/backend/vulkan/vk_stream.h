// The command stream: ops are recorded into one command buffer, separated by
// a memory barrier, and submitted together by flush() (the backend's
// synchronize), so a forward is one submission. Small per-op data (token ids,
// positions, rotation tables) is copied at record time into a host-visible
// params arena bound at binding 4 of every pipeline; it is reused after each
// flush. Reads back to the host are done after the wait.
//
// Ops are void in the Backend interface, so the first failure (pipeline
// creation, out of memory, lost device, invalid op) is kept as a sticky
// status: later ops become no-ops until clear_error().
#pragma once
#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/vulkan/vk_context.h"
#include "backend/vulkan/vk_pipelines.h"

namespace ekv::vk {

class CommandStream {
public:
    Status init(Context& ctx);
    void release();  // frees everything (the context is being destroyed)

    bool ok() const { return error_.ok(); }
    const Status& status() const { return error_; }
    void fail(const Status& st);
    // Forgets a recoverable error (not a lost device).
    void clear_error();

    bool busy() const { return recording_; }
    // Incremented by every flush: data in the params arena is gone after it.
    uint64_t generation() const { return generation_; }

    // Records a dispatch. Null bindings get a dummy buffer; binding 4 is the
    // params arena.
    void dispatch(ShaderId id, Bindings b, const void* push, size_t push_bytes, uint32_t gx, uint32_t gy);
    void copy(VkBuffer src, size_t src_offset, VkBuffer dst, size_t dst_offset, size_t bytes);
    void fill_zero(VkBuffer dst);
    // Space for `bytes` of op parameters (4-byte aligned) valid until the
    // next flush; flushes first when the arena is full. Null on failure.
    uint8_t* params(size_t bytes, uint32_t* word_offset);
    // Host copies done after the next flush's wait: from mapped memory, or
    // through a staging buffer for device-only memory.
    void read_mapped(const void* src, void* dst, size_t bytes);
    void read_device(VkBuffer src, size_t src_offset, void* dst, size_t bytes);
    // Synchronous upload into device memory through staging.
    Status upload(VkBuffer dst, size_t dst_offset, const void* src, size_t bytes);

    // Submits what was recorded, waits, then does the pending reads.
    void flush();

private:
    bool begin();  // starts recording or inserts the barrier after the previous command
    bool ensure_staging(size_t bytes);

    struct PendingRead {
        const void* src;
        void* dst;
        size_t bytes;
    };

    Context* ctx_ = nullptr;
    VkCommandPool pool_ = VK_NULL_HANDLE;
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;
    VkFence fence_ = VK_NULL_HANDLE;
    RawBuffer arena_, staging_, dummy_;
    size_t arena_used_ = 0;
    size_t staging_used_ = 0;
    bool recording_ = false;
    bool has_commands_ = false;
    std::vector<PendingRead> reads_;
    Status error_;
    uint64_t generation_ = 0;
};

}  // namespace ekv::vk
