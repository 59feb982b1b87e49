// CUDA backend: lifecycle, memory, weights, transfers, the parameter arena
// and the sticky error state. The ops are in cuda_ops.cpp,
// cuda_attention.cpp and cuda_model_ops.cpp.
#include "backend/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cuda/cuda_device.h"
#include "backend/op_checks.h"
#include "core/fault_injection.h"
#include "core/tensor_ref.h"
#include "kernels.h"

namespace ekv {
using cuda_detail::make_current;
using cuda_detail::status_of;

namespace {

constexpr size_t kArenaBytes = size_t(1) << 20;        // grows when one step needs more
constexpr size_t kArenaGraphMaxBytes = size_t(64) << 20;  // growth so that a step fits (graphs on)
constexpr size_t kStagingBytes = size_t(8) << 20;      // per upload chunk
constexpr size_t kMinAllocation = 256;

cudaStream_t as_stream(CUstream_st* s) { return reinterpret_cast<cudaStream_t>(s); }
cudaEvent_t as_event(CUevent_st* e) { return reinterpret_cast<cudaEvent_t>(e); }

// Graphs: EKV_CUDA_GRAPHS ("0" off, else on) when set, else the model
// params' replay knob (-1 default: on).
bool graphs_wanted(int32_t replay) {
    const char* env = std::getenv("EKV_CUDA_GRAPHS");
    if (env && env[0] != '\0') return std::strcmp(env, "0") != 0;
    return replay != 0;
}

// Reads up to this size are staged in the parameter arena while graphs are
// on (a graph's copy needs pinned memory, the same each step); larger ones
// (a prompt's logits) run directly after what is queued.
constexpr size_t kStagedReadMax = size_t(2) << 20;
// Command log ids of the copies (kernel launches log their launcher's address).
constexpr uint64_t kLogCopyRaw = 1, kLogCopyBytes = 2, kLogRead = 3;

}  // namespace

CudaBuffer::~CudaBuffer() {
    if (!make_current(*dev_).ok()) return;
    // Launches still queued (graphs on) may use this memory: enqueue them
    // first, as a direct launch would have been (the free waits for them).
    CudaBackend* owner = queue_ ? queue_->owner : nullptr;
    if (owner) owner->wait_for_copy(this);  // no copy ahead may name it afterwards
    if (owner && !owner->pending_.empty()) owner->flush(false);
    if (host_)
        (void)cudaFreeHost(host_);
    else if (device_)
        (void)cudaFree(device_);
    (void)cudaGetLastError();  // a lost device fails frees too; nothing to do about it
}

Status CudaBackend::create(const BackendOptions& options, std::unique_ptr<Backend>* out) {
    std::shared_ptr<cuda_detail::Device> dev(new (std::nothrow) cuda_detail::Device);
    if (!dev) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate the CUDA device state");
    EKV_TRY(cuda_detail::open_device(options.device_index, dev.get()));
    std::unique_ptr<CudaBackend> b(
        new (std::nothrow) CudaBackend(dev, options.int8_activations, graphs_wanted(options.replay)));
    if (!b) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate the CUDA backend");
    EKV_TRY(b->init_stream());
    *out = std::move(b);
    return Status::Ok();
}

Status CudaBackend::init_stream() {
    queue_link_.reset(new (std::nothrow) cuda_detail::QueueLink{this});
    if (!queue_link_) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate the CUDA stream state");
    EKV_TRY(make_current(*dev_));
    cudaStream_t s = nullptr, c = nullptr;
    cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (err != cudaSuccess) return status_of(err, "stream creation");
    stream_ = reinterpret_cast<CUstream_st*>(s);
    err = cudaStreamCreateWithFlags(&c, cudaStreamNonBlocking);
    if (err != cudaSuccess) return status_of(err, "stream creation");
    copy_stream_ = reinterpret_cast<CUstream_st*>(c);
    void* host = nullptr;
    if (fault::device_allocation_fails())
        return Error(EKV_ERR_OUT_OF_MEMORY, "CUDA parameter arena: %zu bytes requested (injected failure)", kArenaBytes);
    err = cudaHostAlloc(&host, kArenaBytes, cudaHostAllocMapped | cudaHostAllocPortable);
    if (err != cudaSuccess) return status_of(err, "parameter arena", kArenaBytes);
    arena_host_ = static_cast<uint8_t*>(host);
    arena_bytes_ = kArenaBytes;
    void* device = nullptr;
    err = cudaHostGetDevicePointer(&device, host, 0);
    if (err != cudaSuccess) return status_of(err, "parameter arena mapping");
    arena_device_ = static_cast<uint8_t*>(device);
    alloc_mirror();
    return Status::Ok();
}

void CudaBackend::alloc_mirror() {
    if (arena_mirror_) (void)cudaFree(arena_mirror_);
    arena_mirror_ = nullptr;
    mirror_from_ = 0;
    if (!graphs_ || dev_->integrated) return;
    void* p = nullptr;
    if (cudaMalloc(&p, arena_bytes_) != cudaSuccess) {
        (void)cudaGetLastError();  // kernels read the mapped arena instead
        return;
    }
    arena_mirror_ = static_cast<uint8_t*>(p);
}

CudaBackend::~CudaBackend() {
    if (queue_link_) queue_link_->owner = nullptr;  // its buffers may outlive it
    if (!make_current(*dev_).ok()) return;
    // Launches still queued are dropped: their buffers may be gone already.
    pending_.clear();
    if (stream_) (void)cudaStreamSynchronize(as_stream(stream_));
    if (copy_stream_) (void)cudaStreamSynchronize(as_stream(copy_stream_));
    destroy_copy_events();
    for (int i = 0; i < kGraphSlots; ++i) destroy_exec(i);
    for (auto& s : scratch_) s.reset();
    for (int i = 0; i < 2; ++i) {
        if (staged_[i]) (void)cudaEventDestroy(as_event(staged_[i]));
        if (staging_[i]) (void)cudaFreeHost(staging_[i]);
    }
    if (arena_host_) (void)cudaFreeHost(arena_host_);
    if (arena_mirror_) (void)cudaFree(arena_mirror_);
    if (copy_stream_) (void)cudaStreamDestroy(as_stream(copy_stream_));
    if (stream_) (void)cudaStreamDestroy(as_stream(stream_));
    (void)cudaGetLastError();
}

Status CudaBackend::create_stream(std::unique_ptr<Backend>* out) {
    std::unique_ptr<CudaBackend> s(new (std::nothrow) CudaBackend(dev_, int8_activations_, graphs_));
    if (!s) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate a CUDA stream");
    EKV_TRY(s->init_stream());
    *out = std::move(s);
    return Status::Ok();
}

const DeviceDescription& CudaBackend::device() const { return dev_->desc; }

// ---- errors -----------------------------------------------------------------

bool CudaBackend::ok() const { return error_.ok() && !dev_->lost.load(); }

void CudaBackend::fail(Status st) {
    if (st.code() == EKV_ERR_DEVICE_LOST) dev_->mark_lost(st);
    if (error_.ok()) error_ = std::move(st);
}

bool CudaBackend::check(int err, const char* what) {
    if (err == cudaSuccess) return true;
    (void)cudaGetLastError();  // clears a non-sticky error
    fail(status_of(err, what));
    return false;
}

bool CudaBackend::current() {
    Status st = make_current(*dev_);
    if (st.ok()) return true;
    fail(std::move(st));
    return false;
}

bool CudaBackend::check_launch(const char* op) { return check(cudaGetLastError(), op); }

Status CudaBackend::take_error() {
    if (dev_->lost.load()) return dev_->lost_error();  // sticky: the context is gone
    // Queued launches report their errors when they run (normally at synchronize()).
    if (!pending_.empty() && current()) flush(false);
    Status st = std::move(error_);
    error_ = Status::Ok();
    Status unsupported = Backend::take_error();
    return st.ok() ? unsupported : st;
}

BackendStats CudaBackend::stats() const {
    BackendStats s;
    s.submissions = dev_->submissions.load();
    s.replayed_submissions = dev_->replayed_submissions.load();
    s.record_ns = dev_->record_ns.load();
    return s;
}

// ---- memory -----------------------------------------------------------------

Status CudaBackend::device_alloc(size_t bytes, Placement placement, const char* what,
                                 std::unique_ptr<CudaBuffer>* out) {
    if (dev_->lost.load()) return dev_->lost_error();
    EKV_TRY(make_current(*dev_));
    const size_t rounded = std::max(kMinAllocation, (bytes + 255) / 256 * 256);
    if (fault::device_allocation_fails())
        return Error(EKV_ERR_OUT_OF_MEMORY, "CUDA %s: %zu bytes requested (injected failure)", what, bytes);
    void* device = nullptr;
    void* host = nullptr;
    // Host placement (offloaded caches) and unified placement (integrated
    // GPUs, where it is the same DRAM) are mapped pinned memory: the kernels
    // read it in place, the host sees it without copies.
    const bool mapped = placement != Placement::Device;
    cudaError_t err = mapped ? cudaHostAlloc(&host, rounded, cudaHostAllocMapped | cudaHostAllocPortable)
                             : cudaMalloc(&device, rounded);
    if (err != cudaSuccess) return status_of(err, what, bytes);
    if (mapped) {
        err = cudaHostGetDevicePointer(&device, host, 0);
        if (err != cudaSuccess) {
            (void)cudaFreeHost(host);
            return status_of(err, what);
        }
        std::memset(host, 0, rounded);
    } else {
        flush(false);  // launches queued before keep their order
        // Zeroed like the CPU backend's buffers (caches rely on it).
        err = cudaMemsetAsync(device, 0, rounded, as_stream(stream_));
        if (err == cudaSuccess) err = cudaStreamSynchronize(as_stream(stream_));
        if (err != cudaSuccess) {
            (void)cudaFree(device);
            return status_of(err, what);
        }
    }
    out->reset(new (std::nothrow) CudaBuffer(dev_, device, mapped ? host : nullptr, bytes, placement));
    if (!*out) {
        if (mapped)
            (void)cudaFreeHost(host);
        else
            (void)cudaFree(device);
        return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate a CUDA buffer object");
    }
    (*out)->set_queue(queue_link_);
    return Status::Ok();
}

Status CudaBackend::alloc(size_t bytes, Placement placement, std::unique_ptr<Buffer>* out) {
    std::unique_ptr<CudaBuffer> buf;
    EKV_TRY(device_alloc(bytes, placement, "buffer", &buf));
    *out = std::move(buf);
    return Status::Ok();
}

bool CudaBackend::supports_weight(DType type) const { return cuda::weight_type_supported(type); }

Status CudaBackend::upload(uint8_t* dst, const uint8_t* src, size_t bytes) {
    for (int i = 0; i < 2; ++i) {
        if (!staging_[i]) {
            void* p = nullptr;
            if (fault::device_allocation_fails())
                return Error(EKV_ERR_OUT_OF_MEMORY, "CUDA upload staging: %zu bytes (injected failure)", kStagingBytes);
            cudaError_t err = cudaHostAlloc(&p, kStagingBytes, cudaHostAllocDefault);
            if (err != cudaSuccess) return status_of(err, "upload staging", kStagingBytes);
            staging_[i] = static_cast<uint8_t*>(p);
        }
        if (!staged_[i]) {
            cudaEvent_t e = nullptr;
            cudaError_t err = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
            if (err != cudaSuccess) return status_of(err, "event creation");
            staged_[i] = reinterpret_cast<CUevent_st*>(e);
        }
    }
    // While chunk k copies to the device, chunk k+1 is filled from the mapping.
    const cudaStream_t cs = as_stream(copy_stream_);
    size_t done = 0;
    for (int k = 0; done < bytes; ++k) {
        const int i = k & 1;
        const size_t n = std::min(kStagingBytes, bytes - done);
        cudaError_t err = cudaEventSynchronize(as_event(staged_[i]));
        if (err != cudaSuccess) return status_of(err, "weight upload");
        std::memcpy(staging_[i], src + done, n);
        err = cudaMemcpyAsync(dst + done, staging_[i], n, cudaMemcpyHostToDevice, cs);
        if (err == cudaSuccess) err = cudaEventRecord(as_event(staged_[i]), cs);
        if (err != cudaSuccess) return status_of(err, "weight upload");
        done += n;
    }
    const cudaError_t err = cudaStreamSynchronize(cs);
    return err == cudaSuccess ? Status::Ok() : status_of(err, "weight upload");
}

Status CudaBackend::load_weight(const TensorRef& src, Tensor* out, std::unique_ptr<Buffer>* owner) {
    Tensor t;
    size_t bytes = 0;
    EKV_TRY(check_weight_source(src, supports_weight(src.type), "CUDA", &t, &bytes));
    std::unique_ptr<CudaBuffer> buf;
    Status st = device_alloc(bytes, Placement::Device, src.name.c_str(), &buf);
    if (st.ok()) st = upload(buf->device_address(), src.data, bytes);
    if (!st.ok()) return Status(st.code(), "loading " + src.name + ": " + st.message());
    t.buffer = buf.get();  // device tensors are addressed through buffer + offset (data stays null)
    *out = t;
    *owner = std::move(buf);
    return Status::Ok();
}

void* CudaBackend::scratch(int which, size_t bytes) {
    std::unique_ptr<CudaBuffer>& s = scratch_[which];
    if (s && s->size() >= bytes) return s->device_address();
    // Queued kernels may still use the old one.
    if (!wait_idle("scratch")) return nullptr;
    const size_t grown = std::max(bytes, s ? s->size() + s->size() / 2 : bytes);
    s.reset();
    Status st = device_alloc(grown, Placement::Device, "scratch", &s);
    if (!st.ok()) {
        fail(st);
        return nullptr;
    }
    return s->device_address();
}

Status CudaBackend::reserve_scratch(int64_t k_max, int32_t n_tokens) {
    if (k_max <= 0 || n_tokens <= 0) return Error(EKV_ERR_INVALID_ARGUMENT, "reserve_scratch: empty shape");
    if (!int8_activations_) return Status::Ok();
    if (!scratch(0, cuda::matmul_scratch_bytes(k_max, n_tokens))) {
        Status st = std::move(error_);
        error_ = Status::Ok();
        return st;
    }
    return Status::Ok();
}

bool CudaBackend::grow_arena(size_t bytes, bool required) {
    void* host = nullptr;
    if (required && fault::device_allocation_fails()) {
        fail(Error(EKV_ERR_OUT_OF_MEMORY, "CUDA parameter arena: %zu bytes requested (injected failure)", bytes));
        return false;
    }
    cudaError_t err = cudaHostAlloc(&host, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
    const char* what = "parameter arena";
    void* dev = nullptr;
    if (err == cudaSuccess) {
        err = cudaHostGetDevicePointer(&dev, host, 0);
        what = "parameter arena mapping";
        if (err != cudaSuccess) (void)cudaFreeHost(host);
    }
    if (err != cudaSuccess) {
        if (required) return check(err, what);
        (void)cudaGetLastError();  // optional growth: the arena just wraps
        return false;
    }
    (void)cudaFreeHost(arena_host_);
    arena_host_ = static_cast<uint8_t*>(host);
    arena_device_ = static_cast<uint8_t*>(dev);
    arena_bytes_ = bytes;
    alloc_mirror();
    return true;
}

uint8_t* CudaBackend::params(size_t bytes, const void** device) {
    const size_t need = (bytes + 15) / 16 * 16;
    if (arena_used_ + need > arena_bytes_) {
        // Everything queued has read its values once the stream is idle.
        if (!wait_idle("parameter arena")) return nullptr;
        arena_used_ = 0;
        mirror_from_ = 0;  // the flush in wait_idle copied what was queued
        rope_tables_.reset();
        const size_t grown = std::max(need, arena_bytes_ * 2);
        if (need > arena_bytes_) {
            if (!grow_arena(grown, /*required=*/true)) return nullptr;
        } else if (graphs_ && grown <= kArenaGraphMaxBytes) {
            // A step that wraps the arena cannot be one graph: grow so the
            // next one fits (if that fails the arena keeps wrapping).
            (void)grow_arena(grown, /*required=*/false);
        }
    }
    uint8_t* p = arena_host_ + arena_used_;
    *device = (graphs_ && arena_mirror_ ? arena_mirror_ : arena_device_) + arena_used_;
    arena_used_ += need;
    return p;
}

const float* CudaBackend::rope_table(const int32_t* positions, int64_t n, const float* inv_freq, int half,
                                     float attn_factor, const char* op) {
    if (!positions || !inv_freq || half <= 0 || n <= 0) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: no positions or frequencies", op));
        return nullptr;
    }
    // q and k of a layer, and every layer of a step, share the table.
    const RopeTableCache::Key key{positions, n, inv_freq, half, attn_factor};
    uint64_t found = 0;
    if (rope_tables_.find(key, &found)) return reinterpret_cast<const float*>(static_cast<uintptr_t>(found));
    const void* device = nullptr;
    float* t = reinterpret_cast<float*>(params(static_cast<size_t>(n) * half * 2 * sizeof(float), &device));
    if (!t) return nullptr;
    fill_rope_table(key, t);
    rope_tables_.insert(key, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(device)));
    return static_cast<const float*>(device);
}

// ---- argument checks ----------------------------------------------------------

uint8_t* CudaBackend::address(const Tensor& t, const char* op, const char* what) {
    const CudaBuffer* b = dynamic_cast<const CudaBuffer*>(t.buffer);
    if (!b) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: %s is not in CUDA memory", op, what));
        return nullptr;
    }
    if (t.offset > b->size()) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: %s starts past its buffer", op, what));
        return nullptr;
    }
    wait_for_copy(b);  // a staged KV layer copied ahead is used from here on
    return b->device_address() + t.offset;
}

uint8_t* CudaBackend::byte_rows(const Tensor& t, int64_t rows, const char* op, const char* what) {
    uint8_t* p = address(t, op, what);
    if (!p) return nullptr;
    const size_t used = dtype_row_bytes(t.type, t.cols);
    const size_t size = t.buffer->size();
    if (rows < 0 || (rows > 0 && (t.row_bytes < used ||
                                  t.offset + static_cast<size_t>(rows - 1) * t.row_bytes + used > size))) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: %s (%lld rows of %zu bytes) extends past its buffer (%zu bytes)",
                   op, what, static_cast<long long>(rows), t.row_bytes, size));
        return nullptr;
    }
    return p;
}

uint8_t* CudaBackend::plain_rows(const Tensor& t, int64_t rows, const char* op, const char* what) {
    const size_t es = t.type == DType::F32 ? 4 : 2;
    if ((t.type != DType::F32 && t.type != DType::F16) || t.offset % es || t.row_bytes % es) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: %s must be F32/F16 rows aligned to the element size", op, what));
        return nullptr;
    }
    return byte_rows(t, rows, op, what);
}

float* CudaBackend::f32_rows(const Tensor& t, int64_t rows, const char* op, const char* what) {
    if (t.type != DType::F32) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: %s must be F32", op, what));
        return nullptr;
    }
    return reinterpret_cast<float*>(plain_rows(t, rows, op, what));
}

// ---- transfers ------------------------------------------------------------------

void CudaBackend::copy_raw(const Tensor& src, Tensor& dst, int64_t n_rows) {
    if (!ok() || n_rows <= 0) return;
    if (src.type != dst.type || src.cols != dst.cols)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA copy_raw: tensors of different types or widths"));
    const uint8_t* s = byte_rows(src, n_rows, "copy_raw", "src");
    uint8_t* d = byte_rows(dst, n_rows, "copy_raw", "dst");
    if (!s || !d) return;
    const size_t width = dtype_row_bytes(src.type, src.cols);
    if (graphs_) {
        const size_t dp = dst.row_bytes, sp = src.row_bytes, rows = static_cast<size_t>(n_rows);
        log_.begin(kLogCopyRaw);
        for (const size_t v : {reinterpret_cast<size_t>(d), dp, reinterpret_cast<size_t>(s), sp, width, rows})
            log_.append_value(v);
        return defer("copy_raw", [=](CUstream_st* st) {
            return static_cast<int>(cudaMemcpy2DAsync(d, dp, s, sp, width, rows, cudaMemcpyDefault, as_stream(st)));
        });
    }
    check(cudaMemcpy2DAsync(d, dst.row_bytes, s, src.row_bytes, width, static_cast<size_t>(n_rows), cudaMemcpyDefault,
                            as_stream(stream_)),
          "copy_raw");
}

void CudaBackend::copy_bytes(Buffer& src, size_t src_offset, Buffer& dst, size_t dst_offset, size_t bytes) {
    if (!ok() || bytes == 0) return;
    CudaBuffer* s = dynamic_cast<CudaBuffer*>(&src);
    CudaBuffer* d = dynamic_cast<CudaBuffer*>(&dst);
    if (!s || !d) return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA copy_bytes: buffer of another backend"));
    if (src_offset > s->size() || bytes > s->size() - src_offset || dst_offset > d->size() ||
        bytes > d->size() - dst_offset)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA copy_bytes: %zu bytes at %zu -> %zu out of bounds (%zu, %zu)",
                          bytes, src_offset, dst_offset, s->size(), d->size()));
    if (s == d && src_offset < dst_offset + bytes && dst_offset < src_offset + bytes)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA copy_bytes: overlapping ranges in one buffer"));
    if (copies_ahead(src, dst))  // host KV into a staging buffer (KvCache::stage)
        return copy_ahead(d->device_address() + dst_offset, s->device_address() + src_offset, bytes, dst);
    wait_for_copy(s);
    wait_for_copy(d);
    if (graphs_) {
        uint8_t* to = d->device_address() + dst_offset;
        const uint8_t* from = s->device_address() + src_offset;
        log_.begin(kLogCopyBytes);
        for (const size_t v : {reinterpret_cast<size_t>(to), reinterpret_cast<size_t>(from), bytes})
            log_.append_value(v);
        return defer("copy_bytes", [=](CUstream_st* st) {
            return static_cast<int>(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDefault, as_stream(st)));
        });
    }
    check(cudaMemcpyAsync(d->device_address() + dst_offset, s->device_address() + src_offset, bytes,
                          cudaMemcpyDefault, as_stream(stream_)),
          "copy_bytes");
}

void CudaBackend::read(const Tensor& src, void* host, size_t bytes) {
    if (!ok() || bytes == 0) return;
    const uint8_t* p = address(src, "read", "src");
    if (!p) return;
    if (bytes > src.buffer->size() - src.offset)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA read: %zu bytes at %zu past the buffer end (%zu)", bytes,
                          src.offset, src.buffer->size()));
    if (graphs_ && bytes <= kStagedReadMax) {
        // Into the arena (pinned, the same address each step), copied to
        // `host` once the stream is idle.
        const void* unused = nullptr;
        uint8_t* staged = params(bytes, &unused);
        if (!staged) return;
        log_.begin(kLogRead);
        for (const size_t v : {reinterpret_cast<size_t>(staged), reinterpret_cast<size_t>(p), bytes})
            log_.append_value(v);
        host_copies_.push_back({host, staged, bytes});
        return defer("read", [=](CUstream_st* st) {
            return static_cast<int>(cudaMemcpyAsync(staged, p, bytes, cudaMemcpyDefault, as_stream(st)));
        });
    }
    flush(false);  // after what is queued
    check(cudaMemcpyAsync(host, p, bytes, cudaMemcpyDefault, as_stream(stream_)), "read");
}

void CudaBackend::synchronize() {
    if (dev_->lost.load() || !make_current(*dev_).ok()) {
        pending_.clear();
        log_.clear();
        host_copies_.clear();
        return;
    }
    flush(/*may_graph=*/true);
    // Even after a failed op: queued kernels must finish before the arena is reused.
    const cudaError_t err = cudaStreamSynchronize(as_stream(stream_));
    if (err != cudaSuccess) {
        check(err, "stream synchronize");
        host_copies_.clear();
    }
    finish_host_copies();
    arena_used_ = 0;
    mirror_from_ = 0;
    rope_tables_.reset();
    dev_->submissions.fetch_add(1);
}

}  // namespace ekv
