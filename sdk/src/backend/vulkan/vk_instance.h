// The Vulkan instance (with the Khronos validation layer and an error-counting
// messenger when EKV_VULKAN_VALIDATION=1) and the devices it sees.
#pragma once
#include <vulkan/vulkan.h>

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace ekv::vk {

class Instance {
public:
    Instance() = default;
    ~Instance();
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;

    // No driver (no ICD) or a missing validation layer that was asked for
    // -> EKV_ERR_BACKEND with the reason.
    Status init();
    VkInstance handle() const { return instance_; }
    // Compute-capable physical devices, in the loader's order.
    const std::vector<VkPhysicalDevice>& devices() const { return devices_; }

private:
    VkInstance instance_ = VK_NULL_HANDLE;
    VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
    std::vector<VkPhysicalDevice> devices_;
};

// True when EKV_VULKAN_VALIDATION=1: instances enable the validation layer.
bool validation_requested();
// Validation-layer errors reported since the process started (tests fail on any).
int64_t validation_error_count();

// What a physical device offers, as the registry and `edgekv devices` show it.
// Unified memory: not a discrete GPU and every device-local memory type is
// host-visible (integrated GPUs, software rasterizers).
DeviceDescription describe_device(VkPhysicalDevice dev, int32_t index);
bool is_software_device(VkPhysicalDevice dev);
bool has_device_extension(VkPhysicalDevice dev, const char* name);

// Every usable device, through a temporary instance (no driver -> the
// instance's EKV_ERR_BACKEND). software[i]: a CPU implementation (lavapipe,
// SwiftShader), which EKV_BACKEND_AUTO does not pick over the CPU backend.
Status list_devices(std::vector<DeviceDescription>* out, std::vector<bool>* software);

// Resolves the device to use: EKV_VULKAN_DEVICE (a name substring or an
// index), when set, overrides `index`.
Status select_device(const Instance& inst, int32_t index, int32_t* out);

}  // namespace ekv::vk
