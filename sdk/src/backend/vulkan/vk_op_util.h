// Small helpers shared by the files of Vulkan ops (vulkan_ops.cpp,
// vulkan_attention.cpp, vulkan_model_ops.cpp): grid sizes and the
// invalid-argument status.
#pragma once
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <string>

#include "backend/backend.h"
#include "core/status.h"

namespace ekv::vk {

constexpr uint32_t kGroup = 64;  // local size of every shader

inline uint32_t groups(uint64_t n, uint32_t per) { return static_cast<uint32_t>((n + per - 1) / per); }

// The push constants of eltwise.comp (add, scale, gated products, bias).
struct EltwisePush {
    uint32_t a_off, a_stride, b_off, b_stride, o_off, o_stride, cols;
    float s;
};

inline bool is_f32(const Tensor& t) { return t.type == DType::F32; }

// EKV_ERR_INVALID_ARGUMENT, the message prefixed with "Vulkan ".
inline Status invalid(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline Status invalid(const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return Status(EKV_ERR_INVALID_ARGUMENT, std::string("Vulkan ") + msg);
}

}  // namespace ekv::vk
