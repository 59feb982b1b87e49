#include "backend/vulkan/vk_stream.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "backend/vulkan/vk_util.h"

namespace ekv::vk {
namespace {

constexpr size_t kArenaBytes = 4u << 20;
constexpr size_t kMinStagingBytes = 8u << 20;
constexpr VkPipelineStageFlags kWorkStages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
constexpr VkAccessFlags kWrites = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
constexpr VkAccessFlags kAll =
    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;

// A Vulkan handle's bits (a pointer or a uint64_t, depending on the platform).
template <class Handle>
uint64_t handle_bits(Handle h) {
    uint64_t v = 0;
    std::memcpy(&v, &h, sizeof h);
    return v;
}

}  // namespace

Status CommandStream::init(Context& ctx) {
    ctx_ = &ctx;
    VkDevice dev = ctx.device();
    VkCommandPoolCreateInfo pci{};
    pci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pci.queueFamilyIndex = ctx.queue_family();
    VkResult r = vkCreateCommandPool(dev, &pci, nullptr, &pool_);
    if (r != VK_SUCCESS) return vk_status(r, "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ai.commandPool = pool_;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    r = vkAllocateCommandBuffers(dev, &ai, &scratch_);
    if (r != VK_SUCCESS) return vk_status(r, "vkAllocateCommandBuffers");
    VkFenceCreateInfo fci{};
    fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    r = vkCreateFence(dev, &fci, nullptr, &fence_);
    if (r != VK_SUCCESS) return vk_status(r, "vkCreateFence");
    EKV_TRY(ctx.create_buffer(kArenaBytes, Placement::Unified, &arena_));
    if (!arena_.mapped) return Error(EKV_ERR_BACKEND, "the Vulkan params arena is not host-visible");
    EKV_TRY(ctx.create_buffer(256, Placement::Device, &dummy_));
    reads_.reserve(64);
    commands_.reserve(1024);
    slots_.assign(static_cast<size_t>(replays_.slots()), VK_NULL_HANDLE);
    replay_enabled_ = ctx.replay();
    return Status::Ok();
}

void CommandStream::release() {
    if (!ctx_) return;
    VkDevice dev = ctx_->device();
    for (RawBuffer* b : {&arena_, &staging_, &dummy_}) {
        if (b->buffer != VK_NULL_HANDLE) vkDestroyBuffer(dev, b->buffer, nullptr);
        if (b->memory != VK_NULL_HANDLE) vkFreeMemory(dev, b->memory, nullptr);
        *b = RawBuffer();
    }
    if (fence_ != VK_NULL_HANDLE) vkDestroyFence(dev, fence_, nullptr);
    invalidate_recording();
    if (pool_ != VK_NULL_HANDLE) {
        for (VkCommandBuffer& cmd : slots_)
            if (cmd != VK_NULL_HANDLE) vkFreeCommandBuffers(dev, pool_, 1, &cmd);
        if (scratch_ != VK_NULL_HANDLE) vkFreeCommandBuffers(dev, pool_, 1, &scratch_);
        vkDestroyCommandPool(dev, pool_, nullptr);
    }
    slots_.clear();
    scratch_ = VK_NULL_HANDLE;
    fence_ = VK_NULL_HANDLE;
    pool_ = VK_NULL_HANDLE;
    ctx_ = nullptr;
}

void CommandStream::fail(const Status& st) {
    if (!error_.ok() || st.ok()) return;
    error_ = st;
    commands_.clear();  // drop what was logged: the stream's results are wrong anyway
    log_.clear();
    reads_.clear();
}

void CommandStream::clear_error() {
    if (error_.code() != EKV_ERR_DEVICE_LOST) error_ = Status::Ok();
}

void CommandStream::log(const Command& c) {
    if (!error_.ok()) return;
    commands_.push_back(c);
    if (!replay_enabled_) return;
    // The op: what runs (a tag of kind and pipeline for the op sequence; the
    // exact handle is an argument). Then every field that changes what it
    // does, one by one: no padding bytes in the comparison.
    const uint64_t pipeline = handle_bits(c.pipeline);
    log_.begin(pipeline << 2 | c.kind);
    if (c.kind == Command::Dispatch) {
        log_.append_value(pipeline);
        for (const Binding& b : c.bindings) {
            log_.append_value(handle_bits(b.buffer));
            log_.append_value(static_cast<uint64_t>(b.offset));
            log_.append_value(static_cast<uint64_t>(b.range));
        }
        log_.append_value(c.gx);
        log_.append_value(c.gy);
        log_.append_value(c.push_bytes);
        log_.append(c.push, c.push_bytes);
    } else {  // a fill leaves src and the sizes at zero
        log_.append_value(handle_bits(c.src));
        log_.append_value(static_cast<uint64_t>(c.src_offset));
        log_.append_value(handle_bits(c.dst));
        log_.append_value(static_cast<uint64_t>(c.dst_offset));
        log_.append_value(static_cast<uint64_t>(c.bytes));
    }
}

void CommandStream::dispatch(ShaderId id, Bindings b, const void* push, size_t push_bytes, uint32_t gx,
                             uint32_t gy) {
    if (!error_.ok() || gx == 0 || gy == 0) return;
    const VkPhysicalDeviceLimits& lim = ctx_->properties().limits;
    if (gx > lim.maxComputeWorkGroupCount[0] || gy > lim.maxComputeWorkGroupCount[1]) {
        fail(Error(EKV_ERR_UNSUPPORTED, "%s: %u x %u workgroups exceed the device limit", shader_name(id), gx, gy));
        return;
    }
    if (push_bytes > kPushConstantBytes) {
        fail(Error(EKV_ERR_BACKEND, "%s: %zu bytes of push constants", shader_name(id), push_bytes));
        return;
    }
    Command c;
    // The pipeline is created now, so a shader that fails to build is
    // reported by the op that needs it.
    Status st = ctx_->pipelines().pipeline(id, &c.pipeline);
    if (!st.ok()) return fail(st);
    b[kParamsBinding] = arena_.buffer;
    for (Binding& x : b)
        if (x.buffer == VK_NULL_HANDLE) x = Binding(dummy_.buffer);
    c.bindings = b;
    c.push_bytes = static_cast<uint32_t>(push_bytes);
    std::memcpy(c.push, push, push_bytes);
    c.gx = gx;
    c.gy = gy;
    log(c);
}

void CommandStream::copy(VkBuffer src, size_t src_offset, VkBuffer dst, size_t dst_offset, size_t bytes) {
    if (bytes == 0) return;
    Command c;
    c.kind = Command::Copy;
    c.src = src;
    c.src_offset = src_offset;
    c.dst = dst;
    c.dst_offset = dst_offset;
    c.bytes = bytes;
    log(c);
}

void CommandStream::fill_zero(VkBuffer dst) {
    Command c;
    c.kind = Command::Fill;
    c.dst = dst;
    log(c);
}

bool CommandStream::record(VkCommandBuffer cmd) {
    VkResult r = vkResetCommandBuffer(cmd, 0);
    VkCommandBufferBeginInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;  // not one-time: it may be replayed
    if (r == VK_SUCCESS) r = vkBeginCommandBuffer(cmd, &bi);
    if (r != VK_SUCCESS) {
        fail(vk_status(r, "vkBeginCommandBuffer"));
        return false;
    }
    const VkPipelineLayout layout = ctx_->pipelines().layout();
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    for (size_t i = 0; i < commands_.size(); ++i) {
        const Command& c = commands_[i];
        if (i > 0) {  // every op may read what the previous one wrote: one global barrier
            mb.srcAccessMask = kWrites;
            mb.dstAccessMask = kAll;
            vkCmdPipelineBarrier(cmd, kWorkStages, kWorkStages, 0, 1, &mb, 0, nullptr, 0, nullptr);
        }
        if (c.kind == Command::Dispatch) {
            VkDescriptorSet set = VK_NULL_HANDLE;
            const Status st = ctx_->pipelines().descriptor_set(c.bindings, &set);
            if (!st.ok()) {
                vkEndCommandBuffer(cmd);
                fail(st);
                return false;
            }
            vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c.pipeline);
            vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, nullptr);
            vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, c.push_bytes, c.push);
            vkCmdDispatch(cmd, c.gx, c.gy, 1);
        } else if (c.kind == Command::Copy) {
            const VkBufferCopy region{c.src_offset, c.dst_offset, c.bytes};
            vkCmdCopyBuffer(cmd, c.src, c.dst, 1, &region);
        } else {
            vkCmdFillBuffer(cmd, c.dst, 0, VK_WHOLE_SIZE, 0);
        }
    }
    mb.srcAccessMask = kWrites;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd, kWorkStages, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
    r = vkEndCommandBuffer(cmd);
    if (r != VK_SUCCESS) {
        fail(vk_status(r, "vkEndCommandBuffer"));
        return false;
    }
    return true;
}

uint8_t* CommandStream::params(size_t bytes, uint32_t* word_offset) {
    if (!error_.ok()) return nullptr;
    bytes = (bytes + 3) / 4 * 4;
    if (bytes > arena_.size) {
        fail(Error(EKV_ERR_UNSUPPORTED, "op parameters of %zu bytes exceed the %zu-byte Vulkan params arena", bytes,
                   arena_.size));
        return nullptr;
    }
    if (arena_used_ + bytes > arena_.size) flush();
    if (!error_.ok()) return nullptr;
    *word_offset = static_cast<uint32_t>(arena_used_ / 4);
    uint8_t* p = static_cast<uint8_t*>(arena_.mapped) + arena_used_;
    arena_used_ += bytes;
    return p;
}

void CommandStream::read_mapped(const void* src, void* dst, size_t bytes) {
    if (!error_.ok() || bytes == 0) return;
    reads_.push_back({src, dst, bytes});
}

bool CommandStream::ensure_staging(size_t bytes) {
    if (staging_.buffer != VK_NULL_HANDLE && staging_.size >= bytes) return true;
    if (busy()) flush();  // the old staging may hold pending reads
    if (!error_.ok()) return false;
    ctx_->destroy_buffer(staging_);
    Status st = ctx_->create_buffer(bytes > kMinStagingBytes ? bytes : kMinStagingBytes, Placement::Host, &staging_);
    if (st.ok() && !staging_.mapped) st = Error(EKV_ERR_BACKEND, "the Vulkan staging buffer is not host-visible");
    if (!st.ok()) {
        ctx_->destroy_buffer(staging_);
        fail(st);
        return false;
    }
    return true;
}

void CommandStream::read_device(VkBuffer src, size_t src_offset, void* dst, size_t bytes) {
    if (!error_.ok() || bytes == 0) return;
    if (staging_.buffer == VK_NULL_HANDLE || staging_used_ + bytes > staging_.size) {
        if (busy()) flush();
        if (!ensure_staging(bytes)) return;
    }
    const size_t at = staging_used_;
    staging_used_ += (bytes + 15) / 16 * 16;
    copy(src, src_offset, staging_.buffer, at, bytes);
    reads_.push_back({static_cast<const uint8_t*>(staging_.mapped) + at, dst, bytes});
}

Status CommandStream::upload(VkBuffer dst, size_t dst_offset, const void* src, size_t bytes) {
    flush();
    if (!error_.ok()) return error_;
    const size_t chunk_max = bytes < kMinStagingBytes ? bytes : kMinStagingBytes;
    if (!ensure_staging(chunk_max)) return error_;
    const uint8_t* s = static_cast<const uint8_t*>(src);
    for (size_t done = 0; done < bytes;) {
        const size_t n = bytes - done < staging_.size ? bytes - done : staging_.size;
        std::memcpy(staging_.mapped, s + done, n);
        copy(staging_.buffer, 0, dst, dst_offset + done, n);
        flush();
        if (!error_.ok()) return error_;
        done += n;
    }
    return Status::Ok();
}

void CommandStream::invalidate_recording() {
    for (int i = 0; i < replays_.slots(); ++i) replays_.drop(i);
    scratch_valid_ = false;
}

bool CommandStream::timed_record(VkCommandBuffer cmd) {
    const auto t0 = std::chrono::steady_clock::now();
    const bool recorded = record(cmd);
    stats_.record_ns += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    return recorded;
}

VkCommandBuffer CommandStream::slot_buffer(int slot) {
    VkCommandBuffer& cmd = slots_[static_cast<size_t>(slot)];
    if (cmd != VK_NULL_HANDLE) return cmd;
    VkCommandBufferAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ai.commandPool = pool_;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    const VkResult r = vkAllocateCommandBuffers(ctx_->device(), &ai, &cmd);
    if (r != VK_SUCCESS) {
        cmd = VK_NULL_HANDLE;
        fail(vk_status(r, "vkAllocateCommandBuffers"));
    }
    return cmd;
}

VkCommandBuffer CommandStream::prepare(bool* replay) {
    *replay = false;
    if (!replay_enabled_) return timed_record(scratch_) ? scratch_ : VK_NULL_HANDLE;
    const ReplayDecision d = replays_.decide(log_);
    if (d.action == ReplayAction::Replay) {
        *replay = true;
        return slots_[static_cast<size_t>(d.slot)];
    }
    if (d.action == ReplayAction::Direct) {  // first sight: not kept (a prompt may never come again)
        scratch_valid_ = false;
        if (!timed_record(scratch_)) return VK_NULL_HANDLE;
        std::swap(scratch_log_, log_);  // log_ is cleared after the flush; both keep their capacity
        scratch_valid_ = true;
        return scratch_;
    }
    // Record (no Update without update in place): into the slot's buffer,
    // which may hold the least recently used recording.
    const VkCommandBuffer cmd = slot_buffer(d.slot);
    if (cmd == VK_NULL_HANDLE) {
        replays_.drop(d.slot);
        return VK_NULL_HANDLE;
    }
    if (scratch_valid_ && scratch_log_.same_as(log_)) {
        // The previous flush ran this very step from scratch: keep that recording
        // (the slot's old buffer becomes the scratch one).
        std::swap(slots_[static_cast<size_t>(d.slot)], scratch_);
        scratch_valid_ = false;
        *replay = true;
    } else if (!timed_record(cmd)) {
        replays_.drop(d.slot);
        return VK_NULL_HANDLE;
    }
    replays_.store(d.slot, log_);
    return slots_[static_cast<size_t>(d.slot)];
}

void CommandStream::submit(VkCommandBuffer cmd, bool replay) {
    VkSubmitInfo si{};
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd;
    VkResult r = vkQueueSubmit(ctx_->queue(), 1, &si, fence_);
    if (r == VK_SUCCESS) r = vkWaitForFences(ctx_->device(), 1, &fence_, VK_TRUE, UINT64_MAX);
    if (r != VK_SUCCESS) {
        invalidate_recording();
        return fail(vk_status(r, "vkQueueSubmit/vkWaitForFences"));
    }
    vkResetFences(ctx_->device(), 1, &fence_);
    ++stats_.submissions;
    if (replay) ++stats_.replayed_submissions;
}

void CommandStream::flush() {
    if (!commands_.empty() && error_.ok()) {
        bool replay = false;
        const VkCommandBuffer cmd = prepare(&replay);
        if (cmd != VK_NULL_HANDLE) submit(cmd, replay);
    }
    commands_.clear();
    log_.clear();
    if (error_.ok())
        for (const PendingRead& rd : reads_) std::memcpy(rd.dst, rd.src, rd.bytes);
    reads_.clear();
    arena_used_ = 0;
    staging_used_ = 0;
    ++generation_;
}

}  // namespace ekv::vk
