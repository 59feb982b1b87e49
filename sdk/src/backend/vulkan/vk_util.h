// VkResult -> Status, with the result's name in the message.
#pragma once
#include <vulkan/vulkan.h>

#include "core/status.h"

namespace ekv::vk {

const char* vk_result_name(VkResult r);

// Out of memory -> EKV_ERR_OUT_OF_MEMORY, lost device -> EKV_ERR_DEVICE_LOST,
// anything else -> EKV_ERR_BACKEND; `what` names the failed call.
Status vk_status(VkResult r, const char* what);

}  // namespace ekv::vk
