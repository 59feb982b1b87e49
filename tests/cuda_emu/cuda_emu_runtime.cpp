// edgekv's CUDA emulator, the runtime (tests only; see include/cuda_runtime_api.h;
// kernels run in cuda_emu_fibers.cpp).
//
// One emulated device. Every API call and every kernel runs under one mutex
// and completes before the call returns, so streams and events are always
// idle; what is emulated is what the backend can get wrong without a GPU:
//  - kernels: each block runs its threads as fibers on the calling thread;
//    __syncthreads and warp shuffles switch fibers, a barrier some threads
//    never reach (divergence, a shuffle with an exited lane) is a launch
//    failure, as are launch configurations a GPU refuses;
//  - memory: device and pinned allocations are host heap blocks filled with
//    0xFF bytes (NaN floats), so reads of never-written memory show; under
//    ASan, kernels' out-of-bounds accesses are reports; a device size limit
//    makes out-of-memory real (EKV_CUDA_EMU_MEMORY_MIB, default 4096);
//  - stream capture: launches, copies and memsets on a capturing stream are
//    recorded, not run; streams join a capture through events; isolation,
//    unjoined forks and synchronizing a capturing stream fail as in CUDA;
//    graphs replay the recorded work, cudaGraphExecUpdate needs the same
//    node kinds and kernels;
//  - errors: launch failures are sticky (every later call returns them).
// EKV_CUDA_EMU_INTEGRATED=1 reports an integrated GPU (prop.integrated).
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "cuda_emu_internal.h"

struct CUgraphNode_st {};

namespace cuda_emu {

namespace {
// ---- configuration -----------------------------------------------------------

size_t env_size(const char* name, size_t fallback) {
    const char* v = std::getenv(name);
    return v && *v ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : fallback;
}

struct Config {
    size_t device_bytes = env_size("EKV_CUDA_EMU_MEMORY_MIB", 4096) << 20;
    size_t host_bytes = size_t(64) << 30;  // pinned host memory the "driver" grants
    bool integrated = env_size("EKV_CUDA_EMU_INTEGRATED", 0) != 0;
};
const Config& config() {
    static const Config c;
    return c;
}

std::recursive_mutex g_mu;
cudaError_t g_sticky = cudaSuccess;
thread_local cudaError_t t_last = cudaSuccess;

// Live device and pinned blocks, streams and events. Never destroyed: after
// a kernel fault a dead context keeps them (frees fail, as on a GPU), and
// LSan then sees them as still owned; while the device is healthy, what is
// left at exit is the SDK's leak and fails the process (leak_check, set up
// with the registry).
struct Registry {
    std::map<const void*, size_t> device, host;
    std::vector<CUstream_st*> streams;
    std::set<const void*> events;
};
Registry& registry();

size_t bytes_of(const std::map<const void*, size_t>& blocks) {
    size_t bytes = 0;
    for (const auto& b : blocks) bytes += b.second;
    return bytes;
}

void leak_check() {
    Lock lock(g_mu);
    const Registry& r = registry();
    if (g_sticky != cudaSuccess || (r.device.empty() && r.host.empty() && r.events.empty() && r.streams.empty()))
        return;
    std::fprintf(stderr,
                 "cuda_emu: %zu device and %zu pinned blocks (%zu bytes), %zu streams and %zu events were never freed\n",
                 r.device.size(), r.host.size(), bytes_of(r.device) + bytes_of(r.host), r.streams.size(),
                 r.events.size());
    std::_Exit(1);
}

Registry& registry() {
    static Registry* r = [] {
        std::atexit(leak_check);
        return new Registry;
    }();
    return *r;
}

}  // namespace

std::recursive_mutex& api_mutex() { return g_mu; }

cudaError_t fail(cudaError_t e) {
    t_last = e;
    return e;
}

void report(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "cuda_emu: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
}

// A kernel did something a GPU would fault on or hang in: sticky.
cudaError_t launch_failure() {
    g_sticky = cudaErrorLaunchFailure;
    return fail(g_sticky);
}

}  // namespace cuda_emu

struct CUgraph_st {
    std::vector<cuda_emu::Node> nodes;
    bool invalidated = false;
    uint64_t issued = 0;  // operations recorded so far (fork/join bookkeeping)
};
struct CUgraphExec_st {
    std::vector<cuda_emu::Node> nodes;
};
struct CUstream_st {
    CUgraph_st* capture = nullptr;
    bool capture_origin = false;
    std::thread::id capture_thread;
    uint64_t last_op = 0;     // in the capture: sequence number of this stream's last operation
    uint64_t joined_at = 0;   // in the capture: origin waited for this stream up to here
};
struct CUevent_st {
    CUgraph_st* capture = nullptr;  // recorded inside this capture
    CUstream_st* stream = nullptr;
    uint64_t seq = 0;
};

namespace cuda_emu {
namespace {

std::vector<CUstream_st*>& streams() { return registry().streams; }

bool valid_stream(cudaStream_t s) {
    if (!s) return true;
    for (CUstream_st* x : streams())
        if (x == s) return true;
    return false;
}

void invalidate(CUgraph_st* g) {
    if (g) g->invalidated = true;
}

cudaError_t check_sticky() { return g_sticky != cudaSuccess ? fail(g_sticky) : cudaSuccess; }

}  // namespace

// Runs `node` now, or records it when `stream` captures.
cudaError_t submit(cudaStream_t stream, Node node) {
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (stream && stream->capture) {
        if (stream->capture_thread != std::this_thread::get_id() && stream->capture_origin)
            return fail(cudaErrorStreamCaptureWrongThread);
        CUgraph_st* g = stream->capture;
        g->nodes.push_back(std::move(node));
        stream->last_op = ++g->issued;
        return cudaSuccess;
    }
    if (!node.run()) return launch_failure();
    return cudaSuccess;
}

}  // namespace cuda_emu

// ---- the runtime API ------------------------------------------------------------

using namespace cuda_emu;

const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
        case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
        case cudaErrorStreamCaptureUnjoined: return "cudaErrorStreamCaptureUnjoined";
        case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
        case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
        case cudaErrorGraphExecUpdateFailure: return "cudaErrorGraphExecUpdateFailure";
        default: return "cudaErrorUnknown";
    }
}

const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorLaunchFailure: return "unspecified launch failure (emulated kernel fault)";
        case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
        case cudaErrorStreamCaptureUnjoined: return "capture was not joined back to the origin stream";
        case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
        default: return cudaGetErrorName(e);
    }
}

cudaError_t cudaGetLastError() {
    Lock lock(g_mu);
    if (g_sticky != cudaSuccess) return g_sticky;
    const cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError() {
    Lock lock(g_mu);
    return g_sticky != cudaSuccess ? g_sticky : t_last;
}

cudaError_t cudaGetDeviceCount(int* count) {
    if (!count) return fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
    if (!device) return fail(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    Lock lock(g_mu);
    if (device != 0) return fail(cudaErrorInvalidDevice);
    return check_sticky();
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    if (!prop) return fail(cudaErrorInvalidValue);
    if (device != 0) return fail(cudaErrorInvalidDevice);
    std::memset(prop, 0, sizeof *prop);
    std::snprintf(prop->name, sizeof prop->name, "edgekv CUDA emulator (CPU)");
    prop->totalGlobalMem = config().device_bytes;
    prop->sharedMemPerBlock = kMaxDynamicShared;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = kMaxBlockThreads;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 1;
    prop->integrated = config().integrated ? 1 : 0;
    prop->canMapHostMemory = 1;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    Lock lock(g_mu);
    if (!free_bytes || !total_bytes) return fail(cudaErrorInvalidValue);
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    *total_bytes = config().device_bytes;
    *free_bytes = config().device_bytes - bytes_of(registry().device);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
    Lock lock(g_mu);
    return check_sticky();
}

namespace {
cudaError_t allocate(void** ptr, size_t size, bool device) {
    if (!ptr) return fail(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    if (size == 0) return cudaSuccess;
    auto& blocks = device ? registry().device : registry().host;
    const size_t used = bytes_of(blocks);
    const size_t limit = device ? config().device_bytes : config().host_bytes;
    if (size > limit - used) return fail(cudaErrorMemoryAllocation);
    void* p = nullptr;
    if (posix_memalign(&p, 256, size) != 0 || !p) return fail(cudaErrorMemoryAllocation);
    std::memset(p, 0xFF, size);  // never-written memory reads as NaN
    blocks[p] = size;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t release(void* ptr, bool device) {
    if (!ptr) return cudaSuccess;
    if (g_sticky != cudaSuccess) return fail(g_sticky);  // a dead context keeps its memory
    auto& blocks = device ? registry().device : registry().host;
    const auto it = blocks.find(ptr);
    if (it == blocks.end()) return fail(cudaErrorInvalidValue);
    blocks.erase(it);
    std::free(ptr);
    return cudaSuccess;
}
}  // namespace

cudaError_t cudaMalloc(void** ptr, size_t size) {
    Lock lock(g_mu);
    return allocate(ptr, size, true);
}

cudaError_t cudaFree(void* ptr) {
    Lock lock(g_mu);
    return release(ptr, true);
}

cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned) {
    Lock lock(g_mu);
    return allocate(ptr, size, false);
}

cudaError_t cudaFreeHost(void* ptr) {
    Lock lock(g_mu);
    return release(ptr, false);
}

cudaError_t cudaHostGetDevicePointer(void** device_ptr, void* host_ptr, unsigned flags) {
    Lock lock(g_mu);
    if (!device_ptr || flags != 0 || !registry().host.count(host_ptr)) return fail(cudaErrorInvalidValue);
    *device_ptr = host_ptr;  // unified addressing: the same address
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t count, cudaStream_t stream) {
    Lock lock(g_mu);
    if (!dst && count) return fail(cudaErrorInvalidValue);
    Node n{NodeKind::Memset, nullptr, [dst, value, count]() {
               if (count) std::memset(dst, value, count);
               return true;
           }};
    return submit(stream, std::move(n));
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind, cudaStream_t stream) {
    Lock lock(g_mu);
    if ((!dst || !src) && count) return fail(cudaErrorInvalidValue);
    Node n{NodeKind::Memcpy, nullptr, [dst, src, count]() {
               if (count) std::memmove(dst, src, count);
               return true;
           }};
    return submit(stream, std::move(n));
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind, cudaStream_t stream) {
    Lock lock(g_mu);
    if (width > dpitch || width > spitch || ((!dst || !src) && width && height)) return fail(cudaErrorInvalidValue);
    Node n{NodeKind::Memcpy, nullptr, [=]() {
               for (size_t r = 0; r < height; ++r)
                   std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                                width);
               return true;
           }};
    return submit(stream, std::move(n));
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
    Lock lock(g_mu);
    if (!stream) return fail(cudaErrorInvalidValue);
    *stream = new CUstream_st;
    streams().push_back(*stream);
    return check_sticky();
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    Lock lock(g_mu);
    auto& all = streams();
    for (size_t i = 0; i < all.size(); ++i)
        if (all[i] == stream) {
            all.erase(all.begin() + static_cast<long>(i));
            delete stream;
            return cudaSuccess;
        }
    return fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    Lock lock(g_mu);
    if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (stream && stream->capture) {
        invalidate(stream->capture);
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    return check_sticky();
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
    Lock lock(g_mu);
    if (!event) return fail(cudaErrorInvalidValue);
    *event = new CUevent_st;
    registry().events.insert(*event);
    return check_sticky();
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    Lock lock(g_mu);
    if (!event || !registry().events.erase(event)) return fail(cudaErrorInvalidResourceHandle);
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    Lock lock(g_mu);
    if (!event || !valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    event->capture = stream ? stream->capture : nullptr;
    event->stream = stream;
    event->seq = stream && stream->capture ? stream->last_op : 0;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    Lock lock(g_mu);
    if (!event) return fail(cudaErrorInvalidResourceHandle);
    if (event->capture) {
        invalidate(event->capture);
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    return check_sticky();
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
    Lock lock(g_mu);
    if (!event || !valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    CUgraph_st* g = stream ? stream->capture : nullptr;
    if (!event->capture) {
        if (g) {  // a captured stream may not depend on work outside the capture
            invalidate(g);
            return fail(cudaErrorStreamCaptureIsolation);
        }
        return cudaSuccess;
    }
    if (!stream) return fail(cudaErrorStreamCaptureIsolation);
    if (g && g != event->capture) {
        invalidate(g);
        return fail(cudaErrorStreamCaptureIsolation);
    }
    if (!g) {  // the stream joins the capture (a fork)
        stream->capture = event->capture;
        stream->capture_origin = false;
        stream->last_op = 0;
        stream->joined_at = 0;
        return cudaSuccess;
    }
    // Waiting on a forked stream's event joins it back up to that point.
    if (event->stream && event->stream != stream && event->stream->capture == g && !event->stream->capture_origin &&
        event->seq > event->stream->joined_at)
        event->stream->joined_at = event->seq;
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
    Lock lock(g_mu);
    if (!stream) return fail(cudaErrorStreamCaptureUnsupported);  // the legacy default stream
    if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (stream->capture) return fail(cudaErrorInvalidValue);
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    stream->capture = new CUgraph_st;
    stream->capture_origin = true;
    stream->capture_thread = std::this_thread::get_id();
    stream->last_op = 0;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
    Lock lock(g_mu);
    if (!graph || !valid_stream(stream)) return fail(cudaErrorInvalidValue);
    *graph = nullptr;
    if (!stream || !stream->capture || !stream->capture_origin) return fail(cudaErrorInvalidValue);
    CUgraph_st* g = stream->capture;
    bool unjoined = false;
    for (CUstream_st* s : streams()) {
        if (s->capture != g) continue;
        if (!s->capture_origin && s->last_op > s->joined_at) unjoined = true;
        s->capture = nullptr;
        s->capture_origin = false;
    }
    if (unjoined) {
        delete g;
        return fail(cudaErrorStreamCaptureUnjoined);
    }
    if (g->invalidated) {
        delete g;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *graph = g;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    Lock lock(g_mu);
    if (!graph) return fail(cudaErrorInvalidValue);
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
    Lock lock(g_mu);
    if (!exec || !graph) return fail(cudaErrorInvalidValue);
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    *exec = new CUgraphExec_st{graph->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph, cudaGraphExecUpdateResultInfo* info) {
    Lock lock(g_mu);
    if (!exec || !graph || !info) return fail(cudaErrorInvalidValue);
    std::memset(info, 0, sizeof *info);
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    if (exec->nodes.size() != graph->nodes.size()) {
        info->result = cudaGraphExecUpdateErrorTopologyChanged;
        return fail(cudaErrorGraphExecUpdateFailure);
    }
    for (size_t i = 0; i < graph->nodes.size(); ++i) {
        if (exec->nodes[i].kind != graph->nodes[i].kind) {
            info->result = cudaGraphExecUpdateErrorNodeTypeChanged;
            return fail(cudaErrorGraphExecUpdateFailure);
        }
        if (exec->nodes[i].kernel != graph->nodes[i].kernel) {
            info->result = cudaGraphExecUpdateErrorFunctionChanged;
            return fail(cudaErrorGraphExecUpdateFailure);
        }
    }
    exec->nodes = graph->nodes;
    info->result = cudaGraphExecUpdateSuccess;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    Lock lock(g_mu);
    if (!exec) return fail(cudaErrorInvalidValue);
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    Lock lock(g_mu);
    if (!exec || !valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (g_sticky != cudaSuccess) return fail(g_sticky);
    if (stream && stream->capture) return fail(cudaErrorStreamCaptureUnsupported);  // child graphs: not used
    for (const Node& n : exec->nodes)
        if (!n.run()) return launch_failure();
    return cudaSuccess;
}
