// CUDA devices: enumeration, opening, error mapping.
#include "backend/cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace ekv::cuda_detail {

void Device::mark_lost(const Status& st) {
    std::lock_guard<std::mutex> lock(lost_mutex);
    if (!lost.load()) lost_status = st;
    lost.store(true);
}

Status Device::lost_error() {
    std::lock_guard<std::mutex> lock(lost_mutex);
    return lost_status.ok() ? Error(EKV_ERR_DEVICE_LOST, "CUDA device %d was lost", index) : lost_status;
}

bool is_fatal(int err) {
    switch (static_cast<cudaError_t>(err)) {
        case cudaErrorIllegalAddress:
        case cudaErrorLaunchFailure:
        case cudaErrorLaunchTimeout:
        case cudaErrorHardwareStackError:
        case cudaErrorIllegalInstruction:
        case cudaErrorMisalignedAddress:
        case cudaErrorInvalidAddressSpace:
        case cudaErrorInvalidPc:
        case cudaErrorAssert:
        case cudaErrorECCUncorrectable:
        case cudaErrorUnknown: return true;
        default: return false;
    }
}

Status status_of(int code, const char* what, size_t requested) {
    const cudaError_t err = static_cast<cudaError_t>(code);
    if (err == cudaSuccess) return Status::Ok();
    const char* name = cudaGetErrorName(err);
    const char* text = cudaGetErrorString(err);
    if (err == cudaErrorMemoryAllocation) {
        size_t free_bytes = 0, total = 0;
        (void)cudaGetLastError();  // the failed allocation's error is not sticky
        const bool known = cudaMemGetInfo(&free_bytes, &total) == cudaSuccess;
        (void)cudaGetLastError();
        if (known)
            return Error(EKV_ERR_OUT_OF_MEMORY, "CUDA %s: %zu bytes requested, %zu of %zu bytes free (%s)", what,
                         requested, free_bytes, total, text);
        return Error(EKV_ERR_OUT_OF_MEMORY, "CUDA %s: %zu bytes requested (%s)", what, requested, text);
    }
    if (is_fatal(code))
        return Error(EKV_ERR_DEVICE_LOST, "CUDA %s: %s (%s); the device is lost: free and recreate the models", what,
                     text, name);
    return Error(EKV_ERR_BACKEND, "CUDA %s: %s (%s)", what, text, name);
}

Status make_current(const Device& dev) {
    // CUDA's current device is per thread and streams may run on any
    // thread; cudaSetDevice on an initialised device is cheap.
    const cudaError_t err = cudaSetDevice(dev.index);
    return err == cudaSuccess ? Status::Ok() : status_of(err, "cudaSetDevice");
}

namespace {

DeviceDescription describe(int index, const cudaDeviceProp& prop, size_t free_bytes) {
    DeviceDescription d;
    d.kind = EKV_BACKEND_CUDA;
    d.index = index;
    char cc[48];
    std::snprintf(cc, sizeof cc, " (CUDA, sm_%d%d)", prop.major, prop.minor);
    d.name = std::string(prop.name) + cc;
    d.memory_bytes = prop.totalGlobalMem;
    d.free_bytes = free_bytes ? free_bytes : prop.totalGlobalMem;
    d.unified_memory = prop.integrated != 0;
    d.n_threads = 1;
    return d;
}

Status device_count(int* n) {
    *n = 0;
    const cudaError_t err = cudaGetDeviceCount(n);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        *n = 0;
        return status_of(err, "device query");
    }
    if (*n == 0) return Error(EKV_ERR_BACKEND, "CUDA: no CUDA device is present");
    return Status::Ok();
}

}  // namespace

Status open_device(int index, Device* out) {
    int n = 0;
    EKV_TRY(device_count(&n));
    if (index < 0 || index >= n)
        return Error(EKV_ERR_INVALID_ARGUMENT, "cuda has no device %d (it has %d)", index, n);
    cudaError_t err = cudaSetDevice(index);
    if (err != cudaSuccess) return status_of(err, "cudaSetDevice");
    cudaDeviceProp prop;
    err = cudaGetDeviceProperties(&prop, index);
    if (err != cudaSuccess) return status_of(err, "cudaGetDeviceProperties");
    if (prop.major < 7 || (prop.major == 7 && prop.minor < 5))
        return Error(EKV_ERR_BACKEND, "CUDA device %d (%s) has compute capability %d.%d; edgekv needs 7.5 or newer",
                     index, prop.name, prop.major, prop.minor);
    size_t free_bytes = 0, total = 0;
    if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) free_bytes = 0;
    (void)cudaGetLastError();
    out->index = index;
    out->integrated = prop.integrated != 0;
    out->desc = describe(index, prop, free_bytes);
    return Status::Ok();
}

Status list_devices(std::vector<DeviceDescription>* out) {
    out->clear();
    int n = 0;
    EKV_TRY(device_count(&n));
    int current = 0;
    if (cudaGetDevice(&current) != cudaSuccess) current = 0;
    for (int i = 0; i < n; ++i) {
        cudaDeviceProp prop;
        const cudaError_t err = cudaGetDeviceProperties(&prop, i);
        if (err != cudaSuccess) return status_of(err, "cudaGetDeviceProperties");
        size_t free_bytes = 0, total = 0;
        if (cudaSetDevice(i) != cudaSuccess || cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) free_bytes = 0;
        (void)cudaGetLastError();
        out->push_back(describe(i, prop, free_bytes));
    }
    (void)cudaSetDevice(current);
    (void)cudaGetLastError();
    return Status::Ok();
}

}  // namespace ekv::cuda_detail
