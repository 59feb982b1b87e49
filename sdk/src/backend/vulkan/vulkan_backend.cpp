// Vulkan backend: lifecycle, memory, weights and transfers. The compute ops
// are in vulkan_ops.cpp.
#include "backend/vulkan/vulkan_backend.h"

#include <cstring>
#include <new>

#include "backend/op_checks.h"
#include "backend/vulkan/vk_shaders.h"
#include "backend/vulkan/vk_stream.h"
#include "core/tensor_ref.h"

namespace ekv {

Status VulkanBackend::create(const BackendOptions& options, std::unique_ptr<Backend>* out) {
    std::shared_ptr<vk::Context> ctx;
    EKV_TRY(vk::Context::create(options, &ctx));
    out->reset(new (std::nothrow) VulkanBackend(std::move(ctx)));
    if (!*out) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate the Vulkan backend");
    return Status::Ok();
}

const Status& VulkanBackend::status() const { return ctx_->stream().status(); }
void VulkanBackend::clear_error() { stream().clear_error(); }
Status VulkanBackend::take_error() {
    Status st = status();
    clear_error();
    Status unsupported = Backend::take_error();
    return st.ok() ? unsupported : st;
}
void VulkanBackend::fail(const Status& st) { stream().fail(st); }

Status VulkanBackend::alloc(size_t bytes, Placement placement, std::unique_ptr<Buffer>* out) {
    vk::RawBuffer raw;
    EKV_TRY(ctx_->create_buffer(bytes, placement, &raw));
    std::unique_ptr<VulkanBuffer> buf(new (std::nothrow) VulkanBuffer(ctx_, raw, placement));
    if (!buf) {
        ctx_->destroy_buffer(raw);
        return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate buffer object");
    }
    // Zeroed like the CPU backend's buffers (caches rely on it).
    if (raw.mapped)
        std::memset(raw.mapped, 0, bytes);
    else
        stream().fill_zero(raw.buffer);
    *out = std::move(buf);
    return Status::Ok();
}

bool VulkanBackend::supports_weight(DType type) const { return vk::weight_variant(type) >= 0; }

Status VulkanBackend::load_weight(const TensorRef& src, Tensor* out, std::unique_ptr<Buffer>* owner) {
    Tensor t;
    size_t bytes = 0;
    EKV_TRY(check_weight_source(src, supports_weight(src.type), "Vulkan", &t, &bytes));
    std::unique_ptr<Buffer> buf;
    EKV_TRY(alloc(bytes, Placement::Device, &buf));
    VulkanBuffer* vb = static_cast<VulkanBuffer*>(buf.get());
    if (vb->host()) {
        std::memcpy(vb->host(), src.data, bytes);
    } else {
        Status st = stream().upload(vb->handle(), 0, src.data, bytes);
        if (!st.ok()) {
            stream().clear_error();
            return Status(st.code(), "uploading " + src.name + ": " + st.message());
        }
    }
    t.buffer = buf.get();  // device tensors are addressed through buffer + offset (data stays null)
    *out = t;
    *owner = std::move(buf);
    return Status::Ok();
}

bool VulkanBackend::ensure_attention_state(size_t bytes) {
    if (attn_state_ && attn_state_->size() >= bytes) return true;
    attn_state_.reset();  // waits for recorded work that uses it
    std::unique_ptr<Buffer> buf;
    Status st = alloc(bytes, Placement::Device, &buf);
    if (!st.ok()) {
        fail(st);
        return false;
    }
    attn_state_.reset(static_cast<VulkanBuffer*>(buf.release()));
    return true;
}

Status VulkanBackend::reserve_scratch(int64_t k_max, int32_t n_tokens) {
    if (k_max <= 0 || n_tokens <= 0) return Error(EKV_ERR_INVALID_ARGUMENT, "reserve_scratch: empty shape");
    // Attention keeps (max, sum, head_dim sums) per (token, head): at most
    // 3 * q width floats per token, and the q width is at most k_max.
    if (!ensure_attention_state(static_cast<size_t>(n_tokens) * static_cast<size_t>(k_max) * 3 * sizeof(float))) {
        Status st = status();
        clear_error();
        return st;
    }
    return Status::Ok();
}

VkBuffer VulkanBackend::buffer_of(const Tensor& t, const char* op, const char* what) {
    const VulkanBuffer* vb = dynamic_cast<const VulkanBuffer*>(t.buffer);
    if (!vb) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "Vulkan %s: %s is not in Vulkan memory", op, what));
        return VK_NULL_HANDLE;
    }
    return vb->handle();
}

void VulkanBackend::copy_raw(const Tensor& src, Tensor& dst, int64_t n_rows) {
    if (!stream().ok() || n_rows <= 0) return;
    const VkBuffer s = buffer_of(src, "copy_raw", "src"), d = buffer_of(dst, "copy_raw", "dst");
    if (!s || !d) return;
    copy_bytes(*src.buffer, src.offset, *dst.buffer, dst.offset, static_cast<size_t>(n_rows) * src.row_bytes);
}

void VulkanBackend::copy_bytes(Buffer& src, size_t src_offset, Buffer& dst, size_t dst_offset, size_t bytes) {
    if (!stream().ok() || bytes == 0) return;
    VulkanBuffer* s = dynamic_cast<VulkanBuffer*>(&src);
    VulkanBuffer* d = dynamic_cast<VulkanBuffer*>(&dst);
    if (!s || !d) return fail(Error(EKV_ERR_INVALID_ARGUMENT, "Vulkan copy_bytes: buffer of another backend"));
    if (src_offset > s->size() || bytes > s->size() - src_offset || dst_offset > d->size() ||
        bytes > d->size() - dst_offset)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "Vulkan copy_bytes: %zu bytes at %zu -> %zu out of bounds (%zu, %zu)",
                          bytes, src_offset, dst_offset, s->size(), d->size()));
    if (s == d && src_offset < dst_offset + bytes && dst_offset < src_offset + bytes)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "Vulkan copy_bytes: overlapping ranges in one buffer"));
    stream().copy(s->handle(), src_offset, d->handle(), dst_offset, bytes);
}

void VulkanBackend::read(const Tensor& src, void* host, size_t bytes) {
    if (!stream().ok() || bytes == 0) return;
    VulkanBuffer* vb = dynamic_cast<VulkanBuffer*>(src.buffer);
    if (!vb) return fail(Error(EKV_ERR_INVALID_ARGUMENT, "Vulkan read: tensor is not in Vulkan memory"));
    if (src.offset > vb->size() || bytes > vb->size() - src.offset)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "Vulkan read: %zu bytes at %zu past the buffer end (%zu)", bytes,
                          src.offset, vb->size()));
    if (vb->host())
        stream().read_mapped(static_cast<const uint8_t*>(vb->host()) + src.offset, host, bytes);
    else
        stream().read_device(vb->handle(), src.offset, host, bytes);
}

void VulkanBackend::synchronize() { stream().flush(); }
BackendStats VulkanBackend::stats() const { return ctx_->stream().stats(); }

}  // namespace ekv
