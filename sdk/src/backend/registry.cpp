#include <new>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#ifdef EDGEKV_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#ifdef EDGEKV_VULKAN
#include "backend/vulkan/vk_instance.h"
#include "backend/vulkan/vulkan_backend.h"
#endif

namespace ekv {

const char* backend_op_name(BackendOp op) {
    switch (op) {
        case BackendOp::RopeNeox: return "NeoX-style rope";
        case BackendOp::AttentionSoftcap: return "soft-capped attention";
        case BackendOp::GeluMul: return "gelu_mul (GeGLU)";
        case BackendOp::Scale: return "scale";
        case BackendOp::SsmConv: return "ssm_conv (Mamba convolution)";
        case BackendOp::SsmScan: return "ssm_scan (Mamba selective scan)";
        case BackendOp::LayerNorm: return "layer_norm (LayerNorm with bias)";
        case BackendOp::GeluErf: return "gelu_erf (exact GELU)";
        case BackendOp::AddBias: return "add_bias";
        case BackendOp::Im2Col1d: return "im2col_1d (1-D convolution input)";
    }
    return "unknown op";
}

namespace {

Status create_cpu(const BackendOptions& options, std::unique_ptr<Backend>* out) {
    if (options.device_index != 0)
        return Error(EKV_ERR_INVALID_ARGUMENT, "the CPU backend has one device (index 0), not %d", options.device_index);
    out->reset(new (std::nothrow) CpuBackend(options.n_threads, options.int8_activations));
    if (!*out) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot create the CPU backend");
    return Status::Ok();
}

#ifdef EDGEKV_VULKAN
// AUTO takes a Vulkan GPU when there is one (index options.device_index if
// that is a GPU, else the first GPU); software rasterizers are slower than
// the CPU backend, so they are only used when asked for by name.
bool create_auto_vulkan(const BackendOptions& options, std::unique_ptr<Backend>* out) {
    std::vector<DeviceDescription> devices;
    std::vector<bool> software;
    if (!vk::list_devices(&devices, &software).ok()) return false;
    int32_t pick = -1;
    const size_t wanted = static_cast<size_t>(options.device_index);
    if (options.device_index >= 0 && wanted < devices.size() && !software[wanted]) {
        pick = options.device_index;
    } else {
        for (size_t i = 0; i < devices.size() && pick < 0; ++i)
            if (!software[i]) pick = static_cast<int32_t>(i);
    }
    BackendOptions picked = options;
    picked.device_index = pick;
    return pick >= 0 && VulkanBackend::create(picked, out).ok();
}
#endif

#ifdef EDGEKV_CUDA
// AUTO tries CUDA first: device options.device_index when there is one, else 0.
bool create_auto_cuda(const BackendOptions& options, std::unique_ptr<Backend>* out) {
    std::vector<DeviceDescription> devices;
    if (!cuda_detail::list_devices(&devices).ok() || devices.empty()) return false;
    BackendOptions picked = options;
    if (options.device_index < 0 || static_cast<size_t>(options.device_index) >= devices.size())
        picked.device_index = 0;
    return CudaBackend::create(picked, out).ok();
}
#endif

}  // namespace

int32_t backend_device_count(ekv_backend_kind kind) {
    switch (kind) {
        case EKV_BACKEND_CPU: return 1;
#ifdef EDGEKV_VULKAN
        case EKV_BACKEND_VULKAN: {
            std::vector<DeviceDescription> devices;
            return vk::list_devices(&devices, nullptr).ok() ? static_cast<int32_t>(devices.size()) : 0;
        }
#endif
#ifdef EDGEKV_CUDA
        case EKV_BACKEND_CUDA: {
            std::vector<DeviceDescription> devices;  // none without a driver
            return cuda_detail::list_devices(&devices).ok() ? static_cast<int32_t>(devices.size()) : 0;
        }
#endif
        default: return 0;  // GPU backends not built in this configuration
    }
}

Status backend_device_info(ekv_backend_kind kind, int32_t index, DeviceDescription* out) {
    if (kind == EKV_BACKEND_AUTO) kind = EKV_BACKEND_CPU;
#ifdef EDGEKV_VULKAN
    if (kind == EKV_BACKEND_VULKAN) {
        std::vector<DeviceDescription> devices;
        EKV_TRY(vk::list_devices(&devices, nullptr));
        if (index < 0 || static_cast<size_t>(index) >= devices.size())
            return Error(EKV_ERR_INVALID_ARGUMENT, "vulkan has no device %d (it has %zu)", index, devices.size());
        *out = devices[static_cast<size_t>(index)];
        return Status::Ok();
    }
#endif
#ifdef EDGEKV_CUDA
    if (kind == EKV_BACKEND_CUDA) {
        std::vector<DeviceDescription> devices;
        EKV_TRY(cuda_detail::list_devices(&devices));
        if (index < 0 || static_cast<size_t>(index) >= devices.size())
            return Error(EKV_ERR_INVALID_ARGUMENT, "cuda has no device %d (it has %zu)", index, devices.size());
        *out = devices[static_cast<size_t>(index)];
        return Status::Ok();
    }
#endif
    if (index < 0 || index >= backend_device_count(kind))
        return Error(EKV_ERR_INVALID_ARGUMENT, "%s has no device %d (it has %d)", ekv_backend_name(kind), index,
                     backend_device_count(kind));
    *out = cpu_device_description(0);
    return Status::Ok();
}

Status create_backend(ekv_backend_kind kind, const BackendOptions& options, std::unique_ptr<Backend>* out) {
    switch (kind) {
        case EKV_BACKEND_AUTO:
            // CUDA, then a Vulkan GPU, then the CPU.
#ifdef EDGEKV_CUDA
            if (create_auto_cuda(options, out)) return Status::Ok();
#endif
#ifdef EDGEKV_VULKAN
            if (create_auto_vulkan(options, out)) return Status::Ok();
#endif
            return create_cpu(options, out);
        case EKV_BACKEND_CPU:
            return create_cpu(options, out);
        case EKV_BACKEND_VULKAN:
#ifdef EDGEKV_VULKAN
            return VulkanBackend::create(options, out);
#else
            return Error(EKV_ERR_UNSUPPORTED, "the Vulkan backend is not built (configure with -DEDGEKV_VULKAN=ON)");
#endif
        case EKV_BACKEND_CUDA:
#ifdef EDGEKV_CUDA
            return CudaBackend::create(options, out);
#else
            return Error(EKV_ERR_UNSUPPORTED, "the CUDA backend is not built (configure with -DEDGEKV_CUDA=ON)");
#endif
    }
    return Error(EKV_ERR_INVALID_ARGUMENT, "unknown backend kind %d", static_cast<int>(kind));
}

}  // namespace ekv
