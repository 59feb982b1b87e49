// The Vulkan backend: every op is a compute shader recorded into the command
// stream and submitted once per synchronize(); weights stay in their GGUF
// format in device memory. Ops are void, so a failure (invalid op, lost
// device, out of memory, shader creation) is kept and reported by status().
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/rope_table_cache.h"
#include "backend/vulkan/vk_context.h"
#include "backend/vulkan/vk_pipelines.h"
#include "backend/vulkan/vk_shaders.h"

namespace ekv {

class VulkanBuffer final : public Buffer {
public:
    VulkanBuffer(std::shared_ptr<vk::Context> ctx, vk::RawBuffer raw, Placement placement)
        : ctx_(std::move(ctx)), raw_(raw), placement_(placement) {}
    ~VulkanBuffer() override { ctx_->destroy_buffer(raw_); }
    size_t size() const override { return raw_.size; }
    Placement placement() const override { return placement_; }
    void* host() override { return raw_.mapped; }
    VkBuffer handle() const { return raw_.buffer; }

private:
    std::shared_ptr<vk::Context> ctx_;
    vk::RawBuffer raw_;
    Placement placement_;
};

class VulkanBackend final : public Backend {
public:
    // Opens Vulkan device options.device_index; no driver or device -> EKV_ERR_BACKEND.
    static Status create(const BackendOptions& options, std::unique_ptr<Backend>* out);

    const DeviceDescription& device() const override { return ctx_->description(); }
    Status alloc(size_t bytes, Placement placement, std::unique_ptr<Buffer>* out) override;
    Status load_weight(const TensorRef& src, Tensor* out, std::unique_ptr<Buffer>* owner) override;
    bool supports_weight(DType type) const override;
    Status reserve_scratch(int64_t k_max, int32_t n_tokens) override;

    void get_rows(const Tensor& table, const int32_t* ids, int32_t n, Tensor& out) override;
    void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
    void matmul(const Tensor& w, const Tensor& x, Tensor& out) override;
    void rope(Tensor& x, const int32_t* positions, const RopeParams& p) override;
    void copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) override;
    void attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
                   Tensor& out) override;
    void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
    void gelu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
    void scale(const Tensor& x, float s, Tensor& out) override;
    // Mamba and Whisper ops (vulkan_model_ops.cpp).
    void ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b, Tensor& state_out,
                  Tensor& out) override;
    void ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a, const Tensor& bm,
                  const Tensor& cm, const Tensor& d, const Tensor& state_in, Tensor& state_out, Tensor& y) override;
    void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) override;
    void gelu_erf(const Tensor& x, Tensor& out) override;
    void add_bias(const Tensor& x, const Tensor& bias, Tensor& out) override;
    void im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, Tensor& out) override;
    void add(const Tensor& a, const Tensor& b, Tensor& out) override;
    // Gemma's, Mamba's and Whisper's ops all have shaders.
    bool supports_op(BackendOp op) const override {
        switch (op) {
            case BackendOp::RopeNeox:
            case BackendOp::AttentionSoftcap:
            case BackendOp::GeluMul:
            case BackendOp::Scale:
            case BackendOp::SsmConv:
            case BackendOp::SsmScan:
            case BackendOp::LayerNorm:
            case BackendOp::GeluErf:
            case BackendOp::AddBias:
            case BackendOp::Im2Col1d: return true;
        }
        return false;
    }
    void copy_raw(const Tensor& src, Tensor& dst, int64_t n_rows) override;
    void copy_bytes(Buffer& src, size_t src_offset, Buffer& dst, size_t dst_offset, size_t bytes) override;
    void kivi_quantize_keys(const Tensor& src, int64_t src_row, Tensor& dst, int64_t dst_group,
                            const KiviParams& p) override;
    void kivi_quantize_values(const Tensor& src, int64_t src_row, int64_t n, Tensor& dst, int64_t dst_row,
                              const KiviParams& p) override;
    void read(const Tensor& src, void* host, size_t bytes) override;
    void synchronize() override;
    Status take_error() override;
    BackendStats stats() const override;

    // The most bytes of a buffer one shader binding covers (a little under
    // maxStorageBufferRange); ops split larger work into windows.
    size_t max_binding_span() const;

    // The first failure since the last clear_error() (Ok if none).
    const Status& status() const;
    void clear_error();

private:
    explicit VulkanBackend(std::shared_ptr<vk::Context> ctx) : ctx_(std::move(ctx)) {}
    vk::CommandStream& stream() { return ctx_->stream(); }
    void fail(const Status& st);
    // The VkBuffer of a tensor, or null (and a recorded error) when it has none.
    VkBuffer buffer_of(const Tensor& t, const char* op, const char* what);
    // vulkan_ops.cpp. How an op binds bytes [first, end) of t's buffer: the
    // whole buffer when the device binds it whole, else a window of at most
    // maxStorageBufferRange; *base is the byte shader offsets count from.
    // False (error recorded) when the span exceeds max_binding_span().
    bool bind_span(const Tensor& t, size_t first, size_t end, const char* op, const char* what, vk::Binding* b,
                   size_t* base);
    // A plain F32/F16 tensor's binding, element offset and row stride for
    // `rows` rows, after checking they lie inside its buffer.
    bool bind_plain(const Tensor& t, int64_t rows, const char* op, const char* what, vk::Binding* b, uint32_t* off,
                    uint32_t* stride);
    // The same for byte rows (KIVI codes) addressed as 32-bit words.
    bool bind_words(const Tensor& t, int64_t rows, const char* op, const char* what, vk::Binding* b, uint32_t* off,
                    uint32_t* stride);
    // Whether the KIVI shaders handle this shape (they address codes and
    // ranges as words: a token's code row must be a whole number of words).
    static bool kivi_layout_ok(int64_t kv_width, const KiviParams& k, int32_t head_dim);
    size_t binding_alignment() const;  // of window offsets
    // The attention state scratch (grows at most to what the model reserved).
    bool ensure_attention_state(size_t bytes);
    // One element-wise shader over F32 rows of a (and b when not null; s is
    // OP_SCALE's factor), out = op(a, b); `op` names it in errors.
    void eltwise(vk::ShaderId id, const char* op, const Tensor& a, const Tensor* b, float s, Tensor& out);
    // Word offset in the params arena of the (cos, sin) table for rope, reused
    // while the positions and frequencies repeat within one submission.
    bool rope_table(const int32_t* positions, int64_t n, const RopeParams& p, uint32_t* word_offset);

    std::shared_ptr<vk::Context> ctx_;
    std::unique_ptr<VulkanBuffer> attn_state_;
    // The tables built in the current submission (backend/rope_table_cache.h:
    // shared with CUDA), keyed by positions, frequencies and factor.
    RopeTableCache rope_tables_;
    uint64_t rope_generation_ = ~0ull;  // the stream generation they belong to
};

}  // namespace ekv
