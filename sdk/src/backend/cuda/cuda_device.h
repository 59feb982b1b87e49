// What a CUDA backend and its streams share: the device (index, properties,
// description) and whether it was lost. Plus the mapping of CUDA runtime
// errors to edgekv statuses. Host code only; no CUDA headers here.
#pragma once
#include <atomic>
#include <mutex>
#include <string>

#include "backend/backend.h"

namespace ekv::cuda_detail {

struct Device {
    int index = 0;
    DeviceDescription desc;
    bool integrated = false;  // shares DRAM with the host (Jetson): host memory is read in place
    std::atomic<bool> lost{false};
    std::mutex lost_mutex;
    Status lost_status;  // the fault that lost it (under lost_mutex)
    // Backend stats of the model: every stream's submissions and graph
    // launches (ekv_model_get_backend_stats asks the model's backend, not
    // the cache's stream that did the work).
    std::atomic<uint64_t> submissions{0};
    std::atomic<uint64_t> replayed_submissions{0};
    std::atomic<uint64_t> record_ns{0};

    void mark_lost(const Status& st);
    Status lost_error();
};

// Opens device `index` (cudaSetDevice + properties). No driver, no device or
// an index out of range -> EKV_ERR_BACKEND / EKV_ERR_INVALID_ARGUMENT with the
// runtime's message.
Status open_device(int index, Device* out);
// Makes dev current on the calling thread (CUDA's current device is per thread).
Status make_current(const Device& dev);

// The status for a CUDA runtime error `err` (a cudaError_t) while doing
// `what`: out of memory (naming `requested` bytes and the device's free
// bytes), a lost device (kernel faults: sticky), or a backend error.
Status status_of(int err, const char* what, size_t requested = 0);
// Whether err leaves the CUDA context unusable (a kernel fault).
bool is_fatal(int err);

}  // namespace ekv::cuda_detail
