// CUDA backend: running a step's queued launches, as a CUDA graph when a
// recording fits (backend/command_log.h decides), else directly.
//
// With graphs on, ops queue their launches (CudaBackend::launch) and copies
// with a log of every argument; synchronize() hands the log to the replay
// cache: an equal earlier step's graph is launched as is; one with the same
// launch sequence but other arguments (a cache row that moved on) is
// re-captured and applied with cudaGraphExecUpdate; a sequence seen before
// is captured and instantiated; anything else runs directly. Capture uses
// stream capture (thread-local mode), so the launchers are the same code as
// without graphs. A failed capture, update, instantiation or graph launch
// turns graphs off for the stream and the queue runs directly: a forward
// never fails because of a graph. A queue's per-step values go to the
// arena's device copy first (queue_arena_copy), so kernels read them from
// device memory.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"

namespace ekv {

namespace {
constexpr uint64_t kLogArenaCopy = 6;  // command log id (cuda_backend.cpp and cuda_copy_ahead.cpp use 1-5)
cudaStream_t as_stream(CUstream_st* s) { return reinterpret_cast<cudaStream_t>(s); }
cudaGraphExec_t as_exec(CUgraphExec_st* e) { return reinterpret_cast<cudaGraphExec_t>(e); }
}  // namespace

void CudaBackend::flush(bool may_graph) {
    join_copies();  // queued (graphs on) or issued (off) before the queue runs
    if (pending_.empty()) {
        log_.clear();
        return;
    }
    queue_arena_copy();
    bool done = false;
    if (may_graph && graphs_ && ok() && current()) done = run_graph();
    if (!done) run_direct();
    pending_.clear();
    log_.clear();
}

void CudaBackend::queue_arena_copy() {
    if (!arena_mirror_ || arena_used_ <= mirror_from_) return;
    uint8_t* to = arena_mirror_ + mirror_from_;
    const uint8_t* from = arena_host_ + mirror_from_;
    const size_t bytes = arena_used_ - mirror_from_;
    mirror_from_ = arena_used_;
    // Logged last but run first: the log only has to tell steps apart.
    log_.begin(kLogArenaCopy);
    for (const size_t v : {reinterpret_cast<size_t>(to), reinterpret_cast<size_t>(from), bytes}) log_.append_value(v);
    pending_.insert(pending_.begin(), Pending{"parameter copy", [=](CUstream_st* st) {
                                                  return static_cast<int>(cudaMemcpyAsync(
                                                      to, from, bytes, cudaMemcpyHostToDevice, as_stream(st)));
                                              }});
}

void CudaBackend::run_direct() {
    if (dev_->lost.load() || !current()) return;
    for (const Pending& p : pending_)
        if (!check(p.run(stream_), p.op)) break;  // as a direct launch: later ops skipped after an error
}

bool CudaBackend::run_graph() {
    const ReplayDecision d = graph_keys_.decide(log_);
    if (d.action == ReplayAction::Direct) return false;
    const auto t0 = std::chrono::steady_clock::now();
    if (d.action != ReplayAction::Replay && !capture(d.slot, d.action == ReplayAction::Update)) return false;
    const auto t1 = std::chrono::steady_clock::now();
    const cudaError_t err = cudaGraphLaunch(as_exec(graph_execs_[d.slot]), as_stream(stream_));
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        drop_graphs();
        return false;  // nothing was enqueued: run directly (a lost device then reports itself)
    }
    dev_->replayed_submissions.fetch_add(1);
    dev_->record_ns.fetch_add(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    return true;
}

bool CudaBackend::capture(int slot, bool update) {
    const cudaStream_t s = as_stream(stream_);
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        (void)cudaGetLastError();
        drop_graphs();
        return false;
    }
    bool captured = true;
    for (const Pending& p : pending_)
        if (p.run(stream_) != cudaSuccess) {
            captured = false;
            break;
        }
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(s, &graph);  // always ends, even after a failed launch
    (void)cudaGetLastError();
    if (!captured || ended != cudaSuccess || !graph) {
        if (graph) (void)cudaGraphDestroy(graph);
        drop_graphs();
        return false;
    }
    bool ready = false;
    if (update && graph_execs_[slot]) {
        cudaGraphExecUpdateResultInfo info;
        std::memset(&info, 0, sizeof info);
        ready = cudaGraphExecUpdate(as_exec(graph_execs_[slot]), graph, &info) == cudaSuccess;
        if (!ready) (void)cudaGetLastError();  // another topology after all: instantiate anew
    }
    if (!ready) {
        destroy_exec(slot);
        cudaGraphExec_t exec = nullptr;
        if (cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess || !exec) {
            (void)cudaGetLastError();
            (void)cudaGraphDestroy(graph);
            drop_graphs();
            return false;
        }
        graph_execs_[slot] = reinterpret_cast<CUgraphExec_st*>(exec);
    }
    (void)cudaGraphDestroy(graph);
    graph_keys_.store(slot, log_);
    return true;
}

void CudaBackend::destroy_exec(int slot) {
    if (!graph_execs_[slot]) return;
    (void)cudaGraphExecDestroy(as_exec(graph_execs_[slot]));
    (void)cudaGetLastError();
    graph_execs_[slot] = nullptr;
}

void CudaBackend::drop_graphs() {
    graphs_ = false;
    graph_keys_.clear();
    for (int i = 0; i < kGraphSlots; ++i) destroy_exec(i);
}

bool CudaBackend::wait_idle(const char* what) {
    flush(false);
    if (!check(cudaStreamSynchronize(as_stream(stream_)), what)) {
        host_copies_.clear();
        return false;
    }
    finish_host_copies();
    return true;
}

void CudaBackend::finish_host_copies() {
    for (const HostCopy& c : host_copies_) std::memcpy(c.to, c.from, c.bytes);
    host_copies_.clear();
}

}  // namespace ekv
