// Host-KV streaming: a copy from host-placed (mapped pinned) memory into
// device memory runs on the backend's copy stream instead of its compute
// stream. It starts after everything queued before it (an event recorded on
// the compute stream), and the first later op that touches its destination
// makes the compute stream wait for it (another event). KvCache stages a
// host-placed cache one layer ahead (KvCache::stage), so layer l + 1's KV
// crosses the bus while layer l's kernels run: a host-offloaded step costs
// about max(compute, copy) instead of their sum. No device-wide sync is
// involved; with graphs on, the events become the graph's fork and join
// edges (every copy is joined before a step ends, see join_copies()).
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_backend.h"

namespace ekv {

namespace {
cudaStream_t as_stream(CUstream_st* s) { return reinterpret_cast<cudaStream_t>(s); }
cudaEvent_t as_event(CUevent_st* e) { return reinterpret_cast<cudaEvent_t>(e); }
// Command log ids (kernel launches log their launcher's address; the other
// copies use 1-3 in cuda_backend.cpp).
constexpr uint64_t kLogCopyAhead = 4, kLogWaitCopy = 5;
}  // namespace

bool CudaBackend::copies_ahead(const Buffer& src, const Buffer& dst) const {
    return copy_stream_ && src.placement() == Placement::Host && dst.placement() == Placement::Device;
}

CUevent_st* CudaBackend::copy_event() {
    if (!copy_events_.empty()) {
        CUevent_st* e = copy_events_.back();
        copy_events_.pop_back();
        return e;
    }
    cudaEvent_t e = nullptr;
    if (!check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "copy event")) return nullptr;
    all_copy_events_.push_back(reinterpret_cast<CUevent_st*>(e));
    return reinterpret_cast<CUevent_st*>(e);
}

void CudaBackend::copy_ahead(uint8_t* to, const uint8_t* from, size_t bytes, const Buffer& dst) {
    wait_for_copy(&dst);  // a copy still in flight into the same buffer goes first
    if (!compute_mark_) {
        cudaEvent_t e = nullptr;
        if (!check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "copy event")) return;
        compute_mark_ = reinterpret_cast<CUevent_st*>(e);
    }
    CUevent_st* done = copy_event();
    if (!done) return;
    CUstream_st* cs = copy_stream_;
    CUevent_st* mark = compute_mark_;
    // Everything queued so far (the previous user of the destination
    // included) before the copy; the copy's end recorded for its consumer.
    auto run = [=](CUstream_st* st) {
        cudaError_t err = cudaEventRecord(as_event(mark), as_stream(st));
        if (err == cudaSuccess) err = cudaStreamWaitEvent(as_stream(cs), as_event(mark), 0);
        if (err == cudaSuccess) err = cudaMemcpyAsync(to, from, bytes, cudaMemcpyDefault, as_stream(cs));
        if (err == cudaSuccess) err = cudaEventRecord(as_event(done), as_stream(cs));
        return static_cast<int>(err);
    };
    copies_in_flight_.push_back({&dst, done});
    if (graphs_) {
        // The events are not logged: a recording's edges do not depend on
        // which event objects made them.
        log_.begin(kLogCopyAhead);
        for (const size_t v : {reinterpret_cast<size_t>(to), reinterpret_cast<size_t>(from), bytes})
            log_.append_value(v);
        return defer("copy_bytes", run);
    }
    check(run(stream_), "copy_bytes");
}

void CudaBackend::wait_for_copy(const Buffer* buffer) {
    for (size_t i = 0; i < copies_in_flight_.size(); ++i) {
        if (copies_in_flight_[i].dst != buffer) continue;
        CUevent_st* done = copies_in_flight_[i].done;
        copies_in_flight_.erase(copies_in_flight_.begin() + static_cast<std::ptrdiff_t>(i));
        // The event is reusable once the wait is queued behind its record.
        copy_events_.push_back(done);
        auto run = [=](CUstream_st* st) {
            return static_cast<int>(cudaStreamWaitEvent(as_stream(st), as_event(done), 0));
        };
        if (graphs_) {
            log_.begin(kLogWaitCopy);
            return defer("copy wait", run);
        }
        check(run(stream_), "copy wait");
        return;
    }
}

void CudaBackend::join_copies() {
    while (!copies_in_flight_.empty()) wait_for_copy(copies_in_flight_.front().dst);
}

void CudaBackend::destroy_copy_events() {
    for (CUevent_st* e : all_copy_events_) (void)cudaEventDestroy(as_event(e));
    if (compute_mark_) (void)cudaEventDestroy(as_event(compute_mark_));
    all_copy_events_.clear();
    copy_events_.clear();
    copies_in_flight_.clear();
    compute_mark_ = nullptr;
}

}  // namespace ekv
