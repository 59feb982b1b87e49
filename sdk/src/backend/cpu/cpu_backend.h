// The CPU backend: ops run immediately on a persistent thread pool; weights are
// used in place from the memory-mapped model file.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#include "core/thread_pool.h"

namespace ekv {

class CpuBackend final : public Backend {
public:
    CpuBackend(int32_t n_threads, bool int8_activations);
    // Streams share the thread pool and the device; each has its own scratch.
    Status create_stream(std::unique_ptr<Backend>* out) override;

    const DeviceDescription& device() const override { return device_; }
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
    void add(const Tensor& a, const Tensor& b, Tensor& out) override;
    void gelu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
    void scale(const Tensor& x, float s, Tensor& out) override;
    // cpu_ssm.cpp
    void ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b, Tensor& state_out,
                  Tensor& out) override;
    void ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a, const Tensor& bm,
                  const Tensor& cm, const Tensor& d, const Tensor& state_in, Tensor& state_out, Tensor& y) override;
    // cpu_audio_ops.cpp
    void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) override;
    void gelu_erf(const Tensor& x, Tensor& out) override;
    void add_bias(const Tensor& x, const Tensor& bias, Tensor& out) override;
    void im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, Tensor& out) override;
    bool supports_op(BackendOp op) const override {
        (void)op;
        return true;  // every op has a CPU kernel
    }
    void copy_raw(const Tensor& src, Tensor& dst, int64_t n_rows) override;
    void copy_bytes(Buffer& src, size_t src_offset, Buffer& dst, size_t dst_offset, size_t bytes) override;
    void kivi_quantize_keys(const Tensor& src, int64_t src_row, Tensor& dst, int64_t dst_group,
                            const KiviParams& p) override;
    void kivi_quantize_values(const Tensor& src, int64_t src_row, int64_t n, Tensor& dst, int64_t dst_row,
                              const KiviParams& p) override;
    void read(const Tensor& src, void* host, size_t bytes) override;
    void synchronize() override {}

    ThreadPool& pool() { return pool_; }

private:
    CpuBackend(const CpuBackend& parent, std::shared_ptr<ThreadPool> pool);

    DeviceDescription device_;
    std::shared_ptr<ThreadPool> shared_pool_;  // one pool for the model's streams
    ThreadPool& pool_;
    cpu::ActivationPrecision precision_;
    std::vector<uint8_t> matmul_scratch_;
    int64_t scratch_k_ = 0;
    int32_t scratch_tokens_ = 0;
};

// Host memory description used by the CPU device entry.
DeviceDescription cpu_device_description(int32_t n_threads);

}  // namespace ekv
