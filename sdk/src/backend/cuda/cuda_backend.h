// The CUDA backend: every op is a kernel (cuda/*.cu, launched through
// cuda/kernels.h) enqueued on this backend's CUDA stream; synchronize() is the
// only wait. Weights stay in their GGUF format in device memory. Per-step
// values (token ids, positions, RoPE tables, attention segments) go into a
// parameter arena of mapped pinned host memory, so a step's launches depend
// only on shapes and addresses; with graphs on a discrete GPU the queue
// first copies them into a device copy of the arena, which kernels read.
//
// The CUDA runtime is linked statically and the driver library is never
// linked: on a machine without an NVIDIA driver the library loads, the CUDA
// device count is 0 and asking for CUDA returns EKV_ERR_BACKEND with the
// runtime's message.
//
// CUDA graphs (cuda_graphs.cpp): with graphs on (ekv_model_params.replay,
// EKV_CUDA_GRAPHS overriding; default on) the ops queue their launches and a
// command log (backend/command_log.h) instead of launching, and
// synchronize() runs the step as a graph when a recording fits it (replayed
// as is, or updated with cudaGraphExecUpdate when only arguments changed),
// else launches the queue directly, as with graphs off. Any graph failure
// turns graphs off for the stream; a forward never fails because of one.
//
// Ops are void, so the first failure is kept (sticky) and reported by
// take_error(): a bad argument or out of memory clears with it; a kernel
// fault (illegal address, launch failure) is EKV_ERR_DEVICE_LOST and stays,
// on every stream of the device, while models and caches remain freeable.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "backend/backend.h"
#include "backend/command_log.h"
#include "backend/rope_table_cache.h"

struct CUstream_st;
struct CUevent_st;
struct CUgraphExec_st;

namespace ekv {

class CudaBackend;

namespace cuda_detail {
struct Device;  // shared by a backend and its streams (cuda_device.cpp)
// Ties buffers to the stream that allocated them: freeing one first runs
// that stream's queued launches (graphs on), which may still use it.
struct QueueLink {
    CudaBackend* owner = nullptr;  // null once the stream is gone
};
}  // namespace cuda_detail

class CudaBuffer final : public Buffer {
public:
    // device: the address kernels use; host: non-null for mapped pinned memory.
    CudaBuffer(std::shared_ptr<cuda_detail::Device> dev, void* device, void* host, size_t bytes, Placement placement)
        : dev_(std::move(dev)), device_(device), host_(host), size_(bytes), placement_(placement) {}
    ~CudaBuffer() override;
    size_t size() const override { return size_; }
    Placement placement() const override { return placement_; }
    void* host() override { return host_; }
    uint8_t* device_address() const { return static_cast<uint8_t*>(device_); }
    void set_queue(std::shared_ptr<cuda_detail::QueueLink> q) { queue_ = std::move(q); }

private:
    std::shared_ptr<cuda_detail::Device> dev_;
    std::shared_ptr<cuda_detail::QueueLink> queue_;
    void* device_;
    void* host_;
    size_t size_;
    Placement placement_;
};

class CudaBackend final : public Backend {
public:
    // Opens CUDA device options.device_index; no driver or device ->
    // EKV_ERR_BACKEND with the runtime's message.
    static Status create(const BackendOptions& options, std::unique_ptr<Backend>* out);
    ~CudaBackend() override;
    // Streams share the device and the weights; each has its own CUDA
    // stream, parameter arena, scratch and error state.
    Status create_stream(std::unique_ptr<Backend>* out) override;

    const DeviceDescription& device() const override;
    Status alloc(size_t bytes, Placement placement, std::unique_ptr<Buffer>* out) override;
    Status load_weight(const TensorRef& src, Tensor* out, std::unique_ptr<Buffer>* owner) override;
    bool supports_weight(DType type) const override;
    Status reserve_scratch(int64_t k_max, int32_t n_tokens) override;

    // cuda_ops.cpp
    void get_rows(const Tensor& table, const int32_t* ids, int32_t n, Tensor& out) override;
    void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
    void matmul(const Tensor& w, const Tensor& x, Tensor& out) override;
    void rope(Tensor& x, const int32_t* positions, const RopeParams& p) override;
    void copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) override;
    void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
    void gelu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
    void scale(const Tensor& x, float s, Tensor& out) override;
    void add(const Tensor& a, const Tensor& b, Tensor& out) override;
    void kivi_quantize_keys(const Tensor& src, int64_t src_row, Tensor& dst, int64_t dst_group,
                            const KiviParams& p) override;
    void kivi_quantize_values(const Tensor& src, int64_t src_row, int64_t n, Tensor& dst, int64_t dst_row,
                              const KiviParams& p) override;
    // cuda_attention.cpp
    void attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
                   Tensor& out) override;
    // cuda_model_ops.cpp (Mamba, Whisper)
    void ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b, Tensor& state_out,
                  Tensor& out) override;
    void ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a, const Tensor& bm,
                  const Tensor& cm, const Tensor& d, const Tensor& state_in, Tensor& state_out, Tensor& y) override;
    void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) override;
    void gelu_erf(const Tensor& x, Tensor& out) override;
    void add_bias(const Tensor& x, const Tensor& bias, Tensor& out) override;
    void im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, Tensor& out) override;
    bool supports_op(BackendOp op) const override {
        (void)op;
        return true;  // every op has a kernel
    }

    // cuda_backend.cpp
    void copy_raw(const Tensor& src, Tensor& dst, int64_t n_rows) override;
    void copy_bytes(Buffer& src, size_t src_offset, Buffer& dst, size_t dst_offset, size_t bytes) override;
    void read(const Tensor& src, void* host, size_t bytes) override;
    void synchronize() override;
    Status take_error() override;
    BackendStats stats() const override;

private:
    friend class CudaBuffer;  // runs the queue before it frees memory
    CudaBackend(std::shared_ptr<cuda_detail::Device> dev, bool int8_activations, bool graphs)
        : dev_(std::move(dev)), int8_activations_(int8_activations), graphs_(graphs) {}
    Status init_stream();
    // An allocation (fault-injection hook first); `what` names it in errors.
    Status device_alloc(size_t bytes, Placement placement, const char* what, std::unique_ptr<CudaBuffer>* out);
    Status upload(uint8_t* dst, const uint8_t* src, size_t bytes);

    // Error handling. ok(): no failure kept (ops are skipped after one).
    bool ok() const;
    void fail(Status st);
    // Keeps a CUDA error (if any) as this stream's failure; false if there was one.
    bool check(int cuda_error, const char* what);
    // After a launch: the launch's own error, if any.
    bool check_launch(const char* op);

    // Argument checks shared by the ops: the tensor's buffer is CUDA memory
    // and `rows` rows of `cols` elements (bytes for opaque rows) lie in it.
    // Return the device address of row 0, or null after recording why.
    uint8_t* address(const Tensor& t, const char* op, const char* what);
    uint8_t* plain_rows(const Tensor& t, int64_t rows, const char* op, const char* what);  // F32/F16
    uint8_t* byte_rows(const Tensor& t, int64_t rows, const char* op, const char* what);
    float* f32_rows(const Tensor& t, int64_t rows, const char* op, const char* what);

    // Space for `bytes` of per-step values, valid until the next
    // synchronize(); *device gets the address kernels read. Waits for the
    // stream and starts over when full. Null (failure recorded) when it
    // cannot grow.
    uint8_t* params(size_t bytes, const void** device);
    // Replaces the (idle) arena by one of `bytes`; a failure is recorded
    // only when `required`.
    bool grow_arena(size_t bytes, bool required);
    void alloc_mirror();  // arena_mirror_ for arena_bytes_ (optional: a failure just leaves it null)
    void queue_arena_copy();  // cuda_graphs.cpp: the copy into the mirror, first in the queue
    // Scratch of at least `bytes` (grown after a wait when smaller).
    void* scratch(int which, size_t bytes);

    // cuda_ops.cpp: one element-wise kernel (op_code: a cuda::Eltwise).
    void eltwise(int op_code, const char* op, const Tensor& a, const Tensor* b, float s, Tensor& out);
    bool kivi_source(const Tensor& src, int64_t src_row, int64_t rows, const KiviParams& p, const char* op,
                     const uint8_t** out);
    bool current();  // makes the device current on this thread (false: failure recorded)

    // Launches fn(stream, args...) (a cuda/kernels.h launcher): at once with
    // graphs off, else queued and logged (cuda_launch.h, included by the op
    // files).
    template <class... P>
    void launch(const char* op, void (*fn)(CUstream_st*, P...), typename std::decay<P>::type... args);
    // cuda_graphs.cpp. A queued launch: returns its CUDA error.
    struct Pending {
        const char* op;
        std::function<int(CUstream_st*)> run;
    };
    void defer(const char* op, std::function<int(CUstream_st*)> run) { pending_.push_back({op, std::move(run)}); }
    // Runs the queue: as a graph when may_graph and a recording fits, else
    // directly. Then the queue and log are empty.
    void flush(bool may_graph);
    void run_direct();
    bool run_graph();  // false: nothing launched, run it directly
    bool capture(int slot, bool update);
    void drop_graphs();  // turns graphs off for this stream after a failure
    void destroy_exec(int slot);
    // Waits for everything queued (flushed directly first), then copies the
    // staged reads to their host destinations.
    bool wait_idle(const char* what);
    void finish_host_copies();

    // cuda_copy_ahead.cpp: host -> device copies on copy_stream_, overlapping
    // the kernels queued after them until an op touches the destination.
    bool copies_ahead(const Buffer& src, const Buffer& dst) const;
    void copy_ahead(uint8_t* to, const uint8_t* from, size_t bytes, const Buffer& dst);
    // The compute stream waits for a copy in flight into `buffer` (no-op if none).
    void wait_for_copy(const Buffer* buffer);
    // ... for every copy in flight (before a step's queue runs or is captured:
    // a graph must join every stream it forked).
    void join_copies();
    CUevent_st* copy_event();  // an idle event (created on first need)
    void destroy_copy_events();

    // (cos, sin) pairs of positions[t] * inv_freq[i] in double (the CPU's
    // angles), attn_factor applied; per-step memory, built once per step for
    // each distinct (positions, frequencies, factor) (rope_tables_).
    const float* rope_table(const int32_t* positions, int64_t n, const float* inv_freq, int half, float attn_factor,
                            const char* op);

    std::shared_ptr<cuda_detail::Device> dev_;
    bool int8_activations_ = false;
    bool graphs_ = false;  // queue launches for graphs (cuda_graphs.cpp)
    CUstream_st* stream_ = nullptr;
    CUstream_st* copy_stream_ = nullptr;  // weight uploads, host KV copied ahead
    // Weight uploads go mmap -> pinned chunk -> device, two chunks in flight.
    uint8_t* staging_[2] = {nullptr, nullptr};
    CUevent_st* staged_[2] = {nullptr, nullptr};
    // The parameter arena (mapped pinned host memory).
    uint8_t* arena_host_ = nullptr;
    uint8_t* arena_device_ = nullptr;
    size_t arena_bytes_ = 0;
    size_t arena_used_ = 0;
    // With graphs on a discrete GPU, a device copy of the arena: a queue's
    // values go over in one copy, its first command (a graph's first node),
    // and kernels read them from device memory instead of across PCIe. Null
    // when graphs are off (launches run as they are made), on an integrated
    // GPU (the arena is already in its memory) or when it cannot be had.
    uint8_t* arena_mirror_ = nullptr;
    size_t mirror_from_ = 0;  // arena bytes [mirror_from_, arena_used_) not yet copied
    RopeTableCache rope_tables_;  // tables in the arena; reset whenever arena_used_ restarts
    // Scratch buffers: 0 = matmul int8 activations, 1 = attention partials.
    std::unique_ptr<CudaBuffer> scratch_[2];
    Status error_;
    // Graph state: the step's queued launches and their log, the recordings
    // (graph_keys_ slot i runs with graph_execs_[i]), and reads staged in the
    // arena while graphs are on (copied to `to` after the stream is idle).
    static constexpr int kGraphSlots = 4;
    std::vector<Pending> pending_;
    CommandLog log_;
    ReplayCache graph_keys_{kGraphSlots};
    CUgraphExec_st* graph_execs_[kGraphSlots] = {};
    struct HostCopy {
        void* to;
        const void* from;
        size_t bytes;
    };
    std::vector<HostCopy> host_copies_;
    // Copies ahead not yet waited for, idle events for them, every event
    // made, and the event marking the compute stream's position.
    struct CopyInFlight {
        const Buffer* dst;
        CUevent_st* done;
    };
    std::vector<CopyInFlight> copies_in_flight_;
    std::vector<CUevent_st*> copy_events_;
    std::vector<CUevent_st*> all_copy_events_;
    CUevent_st* compute_mark_ = nullptr;
    std::shared_ptr<cuda_detail::QueueLink> queue_link_;  // given to the buffers this stream allocates
};

// Device enumeration (cuda_device.cpp): the count is 0 without a driver.
namespace cuda_detail {
Status list_devices(std::vector<DeviceDescription>* out);
}

}  // namespace ekv
