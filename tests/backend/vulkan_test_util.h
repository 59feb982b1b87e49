// Shared fixture of the Vulkan parity tests (backend/device_parity.h) plus
// the Khronos validation layer: after every test the layer
// (EKV_VULKAN_VALIDATION=1, set by CTest) must have reported no error. No
// Vulkan device is a failure, not a skip: these tests only build with
// EDGEKV_VULKAN=ON, where a device is required.
#pragma once
#include "backend/device_parity.h"
#include "backend/vulkan/vk_instance.h"
#include "backend/vulkan/vulkan_backend.h"

namespace ekv_vk_test {

using namespace ekv;
using namespace ekv_parity;

class VulkanParity : public DeviceParity<EKV_BACKEND_VULKAN> {
protected:
    void SetUp() override {
        DeviceParity::SetUp();
        validation_errors_ = vk::validation_error_count();
    }
    void TearDown() override {
        if (!vk_) return;
        vk_->synchronize();
        VulkanBackend* v = static_cast<VulkanBackend*>(vk_.get());
        EXPECT_TRUE(v->status().ok()) << v->status().message();
        v->clear_error();
        buffers_.clear();
        EXPECT_EQ(vk::validation_error_count(), validation_errors_)
            << "the Vulkan validation layer reported errors (messages on stderr)";
    }

    VulkanBackend& vkb() { return static_cast<VulkanBackend&>(*vk_); }

    static inline std::unique_ptr<Backend>& vk_ = dev_;
    int64_t validation_errors_ = 0;
};

}  // namespace ekv_vk_test
