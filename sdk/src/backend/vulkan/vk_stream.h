// The command stream: ops are logged as commands and recorded into one
// command buffer, separated by a memory barrier, and submitted together by
// flush() (the backend's synchronize), so a forward is one submission. Small
// per-op data (token ids, positions, rotation tables, cache rows) is copied
// at log time into a host-visible params arena bound at binding 4 of every
// pipeline; it is reused after each flush. Reads back to the host are done
// after the wait.
//
// Replay: each command also goes into a CommandLog (backend/command_log.h)
// and a ReplayCache picks, per flush, among a few kept command buffers: when
// a flush's commands equal a kept recording's (a decode step over a
// static-shape cache: the same dispatches, bindings, push constants and
// params offsets, only the params' values differ) that command buffer is
// submitted again instead of recording anew. Several recordings, so steps
// taking turns (two caches decoded together, a KIVI group boundary's step)
// keep one each. A shape of step is kept from its second sight; one that
// is new is recorded into a scratch buffer, which the second sight adopts
// as is when it came right after. Destroying a buffer (which may free
// descriptor sets a recording uses) drops them all. EKV_VULKAN_REPLAY=0
// (or ekv_model_params.replay = 0) turns replay off.
//
// Ops are void in the Backend interface, so the first failure (pipeline
// creation, out of memory, lost device, invalid op) is kept as a sticky
// status: later ops become no-ops until clear_error().
#pragma once
#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/command_log.h"
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

    bool busy() const { return !commands_.empty(); }
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

    // Submits what was logged (replaying a kept recording when the commands
    // are the same), waits, then does the pending reads.
    void flush();
    // Buffers the recorded commands may use are going away.
    void invalidate_recording();
    // Submissions, replays and recording time so far.
    const BackendStats& stats() const { return stats_; }

private:
    struct Command {
        enum Kind : uint32_t { Dispatch, Copy, Fill } kind = Dispatch;
        VkPipeline pipeline = VK_NULL_HANDLE;
        Bindings bindings{};
        uint32_t push_bytes = 0;
        uint32_t gx = 0, gy = 0;
        VkBuffer src = VK_NULL_HANDLE, dst = VK_NULL_HANDLE;
        size_t src_offset = 0, dst_offset = 0, bytes = 0;
        uint8_t push[kPushConstantBytes] = {};
    };
    void log(const Command& c);  // dropped after a failure
    // Picks (or records) the command buffer that runs commands_; null when
    // recording failed (the stream has failed). *replay: run as is.
    VkCommandBuffer prepare(bool* replay);
    bool record(VkCommandBuffer cmd);  // commands_ (with barriers); fails the stream on error
    bool timed_record(VkCommandBuffer cmd);  // record(), counted in stats_.record_ns
    VkCommandBuffer slot_buffer(int slot);  // allocated on first use; null on failure
    void submit(VkCommandBuffer cmd, bool replay);  // then waits
    bool ensure_staging(size_t bytes);

    struct PendingRead {
        const void* src;
        void* dst;
        size_t bytes;
    };

    Context* ctx_ = nullptr;
    VkCommandPool pool_ = VK_NULL_HANDLE;
    VkCommandBuffer scratch_ = VK_NULL_HANDLE;  // steps not (yet) kept
    VkFence fence_ = VK_NULL_HANDLE;
    RawBuffer arena_, staging_, dummy_;
    size_t arena_used_ = 0;
    size_t staging_used_ = 0;
    std::vector<Command> commands_;  // logged since the last flush
    CommandLog log_;                 // commands_ as data (when replay is on)
    // Kept recordings: slot i runs what replays_ holds for it. A re-recording
    // costs what a new one does, so no update in place: each distinct step
    // gets its own slot.
    ReplayCache replays_{4, 16, /*update_in_place=*/false};
    std::vector<VkCommandBuffer> slots_;
    CommandLog scratch_log_;  // what scratch_ holds, when scratch_valid_
    bool scratch_valid_ = false;
    bool replay_enabled_ = true;
    BackendStats stats_;
    std::vector<PendingRead> reads_;
    Status error_;
    uint64_t generation_ = 0;
};

}  // namespace ekv::vk
