#include <new>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"

namespace ekv {

int32_t backend_device_count(ekv_backend_kind kind) {
    switch (kind) {
        case EKV_BACKEND_CPU: return 1;
        default: return 0;  // GPU backends are not built in this configuration
    }
}

Status backend_device_info(ekv_backend_kind kind, int32_t index, DeviceDescription* out) {
    if (kind == EKV_BACKEND_AUTO) kind = EKV_BACKEND_CPU;
    if (index < 0 || index >= backend_device_count(kind))
        return Error(EKV_ERR_INVALID_ARGUMENT, "%s has no device %d (it has %d)", ekv_backend_name(kind), index,
                     backend_device_count(kind));
    *out = cpu_device_description(0);
    return Status::Ok();
}

Status create_backend(ekv_backend_kind kind, const BackendOptions& options, std::unique_ptr<Backend>* out) {
    switch (kind) {
        case EKV_BACKEND_AUTO:
        case EKV_BACKEND_CPU:
            if (options.device_index != 0)
                return Error(EKV_ERR_INVALID_ARGUMENT, "the CPU backend has one device (index 0), not %d",
                             options.device_index);
            out->reset(new (std::nothrow) CpuBackend(options.n_threads, options.int8_activations));
            if (!*out) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot create the CPU backend");
            return Status::Ok();
        case EKV_BACKEND_VULKAN:
            return Error(EKV_ERR_UNSUPPORTED, "the Vulkan backend is not built (configure with -DEDGEKV_VULKAN=ON)");
        case EKV_BACKEND_CUDA:
            return Error(EKV_ERR_UNSUPPORTED, "the CUDA backend is not built (configure with -DEDGEKV_CUDA=ON)");
    }
    return Error(EKV_ERR_INVALID_ARGUMENT, "unknown backend kind %d", static_cast<int>(kind));
}

}  // namespace ekv
