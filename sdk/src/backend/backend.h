// The backend interface: memory with a placement, weights kept in their GGUF
// format, and the ops the architectures need. Ops are issued in order and may
// run asynchronously (CPU: immediately; GPU backends: recorded into a command
// stream); synchronize() is the only wait. Model code never knows which
// backend runs it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/status.h"
#include "edgekv.h"

namespace ekv {

struct TensorRef;

enum class Placement { Device, Host, Unified };

// A block of backend memory. host() is non-null when the CPU can address it.
class Buffer {
public:
    virtual ~Buffer() = default;
    virtual size_t size() const = 0;
    virtual Placement placement() const = 0;
    virtual void* host() = 0;
};

// A 2-D view into backend memory: `rows` rows of `cols` elements of `type`,
// rows `row_bytes` apart. The view never owns memory.
struct Tensor {
    DType type = DType::F32;
    int64_t cols = 0;
    int64_t rows = 0;
    size_t row_bytes = 0;
    Buffer* buffer = nullptr;  // owning buffer (GPU backends address through it)
    size_t offset = 0;         // byte offset of row 0 in buffer
    void* data = nullptr;      // CPU-addressable pointer to row 0, when there is one

    Tensor row_range(int64_t first, int64_t count) const {
        Tensor t = *this;
        t.rows = count;
        t.offset += static_cast<size_t>(first) * row_bytes;
        if (data) t.data = static_cast<uint8_t*>(data) + static_cast<size_t>(first) * row_bytes;
        return t;
    }
    template <class T>
    T* ptr(int64_t row = 0) const {
        return reinterpret_cast<T*>(static_cast<uint8_t*>(data) + static_cast<size_t>(row) * row_bytes);
    }
};

// Parameters of a KIVI-quantized segment (arXiv 2402.02750): keys quantized
// per channel over groups of `group` tokens, values per token over groups of
// `group` channels, asymmetric (scale and minimum). Byte layouts: core/kivi.h.
struct KiviParams {
    int32_t nbits = 0;     // 2, 4 or 8
    int32_t group = 0;     // q_group_size
    int32_t head_dim = 0;  // fixes the code order inside a head (core/kivi.h)
};

enum class KvFormat {
    Plain,  // k, v: one F16/F32 row per token (n_kv_heads * head_dim elements)
    Kivi,   // k: one row per key group of kivi.group tokens; v: one row per token
};

// One contiguous run of cached keys/values as attention sees it. Token i of
// the segment has absolute position first_pos + i. Plain: it sits at row
// skip + i of k and v. Kivi: its key is token (skip + i) % group of key group
// (skip + i) / group, its value row skip + i of v. (skip lets a ring drop the
// oldest tokens of a key group one at a time.)
struct KvSegment {
    KvFormat format = KvFormat::Plain;
    Tensor k;
    Tensor v;
    int32_t n_tokens = 0;
    int32_t first_pos = 0;
    int32_t skip = 0;
    KiviParams kivi;
    // Pinned segments (attention sinks) ignore the view's window, and their
    // keys are scored as if the query sat at min(q_pos, view.pinned_query_pos).
    bool pinned = false;
    // > 0: an unpinned segment's own window, in place of the view's (sink
    // tokens that Gemma's local layers may see only within the model's window).
    int32_t window = 0;
};

// The cache contents of one layer as segments (sinks, quantized groups,
// full-precision rows, each ring possibly in two runs). Positions are
// ascending across segments.
struct KvView {
    static constexpr int kMaxSegments = 6;
    KvSegment seg[kMaxSegments];
    int n_segments = 0;
    // > 0: a query at position p sees the keys of unpinned segments with
    // p - pos < window (sliding-window attention, the ring of a sink cache).
    int32_t window = 0;
    // StreamingLLM: the query position pinned (sink) keys are scored from, so
    // the query-to-sink distance is the one inside the cache, not the
    // absolute one. Unpinned keys keep absolute positions (a ring's
    // distances are already the in-cache ones). See cache/sink notes.
    int32_t pinned_query_pos = 0;
};


// Rotary embedding on adjacent pairs (GGUF/llama.cpp convention); the angle
// of pair i at position p is p * theta_scale_i, with per-pair frequency
// factors from RoPE scaling (1.0 when not scaled).
struct RopeParams {
    int32_t n_heads = 0;
    int32_t head_dim = 0;
    int32_t rope_dim = 0;                 // rotated dims (<= head_dim)
    const float* inv_freq = nullptr;      // rope_dim/2 inverse frequencies, scaling applied
    float attn_factor = 1.0f;             // YaRN magnitude scaling (1 otherwise)
    // Pairs (i, i + rope_dim/2) instead of adjacent ones: the GGUF convention
    // for models whose Q/K rows are not permuted (Gemma, GPT-NeoX).
    bool neox = false;
};

struct AttentionParams {
    int32_t n_heads = 0;
    int32_t n_kv_heads = 0;
    int32_t head_dim = 0;
    float scale = 1.0f;
    // The keys' rotary embedding: attention re-rotates the query for pinned
    // segments (by min(p, pinned_query_pos) - p). Null when no segment is pinned.
    const RopeParams* rope = nullptr;
    // > 0: scores become softcap * tanh(score / softcap) before the softmax
    // (Gemma 2's attention logit soft-capping).
    float softcap = 0.0f;
};

// Ops beyond the Llama set; an architecture checks them at load so a backend
// without a kernel is refused up front with a clear message.
enum class BackendOp {
    RopeNeox,          // RopeParams::neox
    AttentionSoftcap,  // AttentionParams::softcap
    GeluMul,           // gelu_mul
    Scale,             // scale
    SsmConv,           // ssm_conv
    SsmScan,           // ssm_scan
    LayerNorm,         // layer_norm (Whisper)
    GeluErf,           // gelu_erf (Whisper)
    AddBias,           // add_bias (Whisper)
    Im2Col1d,          // im2col_1d (Whisper's convolutional front end)
};
const char* backend_op_name(BackendOp op);

struct DeviceDescription {
    ekv_backend_kind kind = EKV_BACKEND_CPU;
    int32_t index = 0;
    std::string name;
    uint64_t memory_bytes = 0;
    uint64_t free_bytes = 0;  // of memory_bytes, available now
    bool unified_memory = true;
    int32_t n_threads = 1;
};

// What a device backend submitted (the C ABI's ekv_backend_stats).
struct BackendStats {
    uint64_t submissions = 0;
    uint64_t replayed_submissions = 0;
    uint64_t record_ns = 0;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual const DeviceDescription& device() const = 0;

    // A new execution stream: what one running forward needs for itself
    // (scratch, command recording, error state) over this backend's device,
    // weights and kernels, so forwards on different streams may run on
    // different threads at once. Leaves *out null when the backend has a
    // single stream: users of the backend itself then take turns.
    virtual Status create_stream(std::unique_ptr<Backend>* out) {
        out->reset();
        return Status::Ok();
    }

    // Memory.
    virtual Status alloc(size_t bytes, Placement placement, std::unique_ptr<Buffer>* out) = 0;
    // Makes a weight usable by the ops, keeping its file format. CPU: zero
    // copy view of the mapping; GPU backends upload into *owner.
    virtual Status load_weight(const TensorRef& src, Tensor* out, std::unique_ptr<Buffer>* owner) = 0;
    virtual bool supports_weight(DType type) const = 0;
    // Scratch the ops need for matmuls with up to n_tokens rows of k_max cols.
    virtual Status reserve_scratch(int64_t k_max, int32_t n_tokens) = 0;

    // Ops. Activations are F32 [tokens x features] unless stated.
    virtual void get_rows(const Tensor& table, const int32_t* ids, int32_t n, Tensor& out) = 0;
    virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
    // out[t][r] = sum_k x[t][k] * w[r][k]
    virtual void matmul(const Tensor& w, const Tensor& x, Tensor& out) = 0;
    virtual void rope(Tensor& x, const int32_t* positions, const RopeParams& p) = 0;
    // Converts and stores rows of src (F32) into dst rows starting at dst_row.
    virtual void copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) = 0;
    // Causal attention of q (positions q_pos) over the cached view.
    virtual void attention(const Tensor& q, const int32_t* q_pos, const KvView& kv,
                           const AttentionParams& p, Tensor& out) = 0;
    virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
    // out = gelu(gate) * up, GELU with the tanh approximation (Gemma's GeGLU).
    virtual void gelu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
        (void)gate, (void)up;
        unsupported(BackendOp::GeluMul, out);
    }
    // out = x * s (Gemma's embedding scale).
    virtual void scale(const Tensor& x, float s, Tensor& out) {
        (void)x, (void)s;
        unsupported(BackendOp::Scale, out);
    }

    // Mamba (selective state space) ops, F32. x rows may be strided views.
    // Depthwise causal convolution with SiLU over the time axis: state_in
    // holds the K-1 inputs before x[0] (K = w.cols); out[t][c] = silu(b[c] +
    // sum_j w[c][j] * in[t + j - (K-1)][c]); state_out gets the last K-1
    // inputs of the concatenation (may alias nothing else).
    virtual void ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b,
                          Tensor& state_out, Tensor& out) {
        (void)x, (void)state_in, (void)w, (void)b, (void)state_out;
        unsupported(BackendOp::SsmConv, out);
    }
    // Selective scan (Mamba 1) over T tokens for C channels and N states:
    // delta = softplus(dt[t][c] + dt_bias[c]); h[c][n] = exp(delta * a[c][n])
    // * h[c][n] + delta * bm[t][n] * x[t][c]; y[t][c] = sum_n cm[t][n] *
    // h[c][n] + d[c] * x[t][c]. state_in/state_out: [C x N] (a: [C x N]).
    virtual void ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a,
                          const Tensor& bm, const Tensor& cm, const Tensor& d, const Tensor& state_in,
                          Tensor& state_out, Tensor& y) {
        (void)x, (void)dt, (void)dt_bias, (void)a, (void)bm, (void)cm, (void)d, (void)state_in, (void)state_out;
        unsupported(BackendOp::SsmScan, y);
    }

    // Encoder-decoder (Whisper) ops, F32; out may alias x.
    // out[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias (biased variance).
    virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
        (void)x, (void)weight, (void)bias, (void)eps;
        unsupported(BackendOp::LayerNorm, out);
    }
    // out = x * Phi(x) with the exact (erf) normal CDF (PyTorch's default GELU).
    virtual void gelu_erf(const Tensor& x, Tensor& out) {
        (void)x;
        unsupported(BackendOp::GeluErf, out);
    }
    // out[t][c] = x[t][c] + bias[c] (bias: one F32 row).
    virtual void add_bias(const Tensor& x, const Tensor& bias, Tensor& out) {
        (void)x, (void)bias;
        unsupported(BackendOp::AddBias, out);
    }
    // Unfolds a 1-D convolution's input (time = rows, channels = cols) so the
    // convolution becomes a matmul with weights [out][in * kernel]:
    // out[t][c * kernel + k] = x[t * stride + k - pad][c], zero outside x.
    // out must have out.rows = (x.rows + 2 * pad - kernel) / stride + 1 rows.
    virtual void im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, Tensor& out) {
        (void)x, (void)kernel, (void)stride, (void)pad;
        unsupported(BackendOp::Im2Col1d, out);
    }
    virtual bool supports_op(BackendOp op) const {
        (void)op;
        return false;
    }
    virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
    // Copies whole rows between tensors of the same type and width (cache clone).
    virtual void copy_raw(const Tensor& src, Tensor& dst, int64_t n_rows) = 0;
    // Copies `bytes` between buffers (cache offloading: host <-> device staging).
    virtual void copy_bytes(Buffer& src, size_t src_offset, Buffer& dst, size_t dst_offset, size_t bytes) = 0;

    // KIVI quantization (layouts in core/kivi.h). Keys: rows src_row ..
    // src_row + p.group - 1 of src (F16/F32 rows of n_kv_heads * head_dim)
    // become key group row dst_group of dst. Values: n rows of src from
    // src_row become rows dst_row.. of dst.
    virtual void kivi_quantize_keys(const Tensor& src, int64_t src_row, Tensor& dst, int64_t dst_group,
                                    const KiviParams& p) = 0;
    virtual void kivi_quantize_values(const Tensor& src, int64_t src_row, int64_t n, Tensor& dst, int64_t dst_row,
                                      const KiviParams& p) = 0;

    // Host transfers and the only wait.
    virtual void read(const Tensor& src, void* host, size_t bytes) = 0;
    virtual void synchronize() = 0;
    // Ops are void because they may run asynchronously; a backend whose ops
    // can fail (out of device memory, a lost device) keeps the first failure
    // and hands it out here, clearing it. Forward checks it after synchronize().
    virtual Status take_error() {
        Status e = std::move(first_error_);
        first_error_ = Status::Ok();
        return e;
    }
    // Device submissions so far (ekv_backend_stats); none on the CPU.
    virtual BackendStats stats() const { return {}; }
    // KV formats its attention and cache ops handle; caches are refused at
    // creation otherwise, never half-run.
    virtual bool supports_kv_format(KvFormat format) const {
        (void)format;
        return true;
    }

protected:
    // Reached only when an architecture skipped its supports_op() check: the
    // forward then fails with this status instead of using garbage.
    void unsupported(BackendOp op, Tensor& out) {
        (void)out;
        record_error(Error(EKV_ERR_UNSUPPORTED, "the %s backend has no %s kernel", device().name.c_str(),
                           backend_op_name(op)));
    }
    // An op that cannot run (bad input) records why; the forward then fails
    // with it instead of going on with garbage. The first one is kept.
    void record_error(Status st) {
        if (first_error_.ok()) first_error_ = std::move(st);
    }

private:
    Status first_error_;
};

struct BackendOptions {
    int32_t device_index = 0;
    int32_t n_threads = 0;          // CPU: 0 = all cores
    bool int8_activations = false;  // CPU: llama.cpp-style 8-bit activations in quantized matmuls
    // GPU knobs (-1: the default; the EKV_VULKAN_* variables override them).
    int32_t replay = -1;          // replay a decode step's recording (default on)
    int32_t f16_accumulate = -1;  // f16 accumulation in matmuls where supported (default off)
};

// Creates the backend for `kind` (AUTO resolves to the best available).
// Backends not built in return EKV_ERR_UNSUPPORTED with the CMake option to
// enable; a built backend without devices returns EKV_ERR_BACKEND.
Status create_backend(ekv_backend_kind kind, const BackendOptions& options, std::unique_ptr<Backend>* out);
int32_t backend_device_count(ekv_backend_kind kind);
Status backend_device_info(ekv_backend_kind kind, int32_t index, DeviceDescription* out);

}  // namespace ekv
