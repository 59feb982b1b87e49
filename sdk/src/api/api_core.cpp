// Version, status strings, errors, backends and devices.
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "api/api_internal.h"
#include "backend/backend.h"

namespace ekv::api {
namespace {
thread_local std::string g_last_error;
// Static text reported instead when the message could not be stored.
thread_local const char* g_fallback_error = nullptr;
}

ekv_status finish(const Status& s) noexcept {
    if (s.ok()) return EKV_OK;
    try {
        g_last_error = s.message().empty() ? ekv_status_string(s.code()) : s.message();
        g_fallback_error = nullptr;
    } catch (...) {  // out of memory for the message: the code still stands
        g_last_error.clear();
        g_fallback_error = ekv_status_string(s.code());
    }
    return s.code();
}

ekv_status finish_internal(const char* what) noexcept {
    try {
        return finish(Status(EKV_ERR_INTERNAL, std::string("internal error: ") + (what ? what : "unknown exception")));
    } catch (...) {
        return finish(Status(EKV_ERR_INTERNAL, std::string()));
    }
}

void clear_error() noexcept {
    g_last_error.clear();
    g_fallback_error = nullptr;
}
const char* last_error() noexcept { return g_fallback_error ? g_fallback_error : g_last_error.c_str(); }

Status copy_out(const std::string& s, char* buf, size_t cap, size_t* len) {
    if (len) *len = s.size();
    if (!buf || cap < s.size() + 1)
        return Error(EKV_ERR_BUFFER_TOO_SMALL, "output needs %zu bytes plus NUL, buffer holds %zu", s.size(), cap);
    std::memcpy(buf, s.data(), s.size());
    buf[s.size()] = '\0';
    return Status::Ok();
}

}  // namespace ekv::api

using namespace ekv;

extern "C" {

const char* ekv_version(void) { return EKV_VERSION_STRING; }
int ekv_version_number(void) { return EKV_VERSION_NUMBER; }

const char* ekv_status_string(ekv_status status) {
    switch (api::enum_int(status)) {
        case EKV_OK: return "ok";
        case EKV_ERR_INVALID_ARGUMENT: return "invalid argument";
        case EKV_ERR_OUT_OF_MEMORY: return "out of memory";
        case EKV_ERR_IO: return "i/o error";
        case EKV_ERR_INVALID_FILE: return "invalid file";
        case EKV_ERR_UNSUPPORTED: return "unsupported";
        case EKV_ERR_UNSUPPORTED_ARCH: return "unsupported architecture";
        case EKV_ERR_CACHE_FULL: return "cache full";
        case EKV_ERR_INVALID_TOKEN: return "invalid token";
        case EKV_ERR_CONTEXT_OVERFLOW: return "context overflow";
        case EKV_ERR_BACKEND: return "backend error";
        case EKV_ERR_CANCELLED: return "cancelled";
        case EKV_ERR_MODEL_MISMATCH: return "model mismatch";
        case EKV_ERR_INTERNAL: return "internal error";
        case EKV_ERR_BUFFER_TOO_SMALL: return "buffer too small";
        case EKV_ERR_DEVICE_LOST: return "device lost";
        case EKV_ERR_INVALID_STATE: return "invalid state";
    }
    return "unknown status";
}

const char* ekv_last_error(void) { return api::last_error(); }

const char* ekv_backend_name(ekv_backend_kind kind) {
    switch (api::enum_int(kind)) {
        case EKV_BACKEND_AUTO: return "auto";
        case EKV_BACKEND_CPU: return "cpu";
        case EKV_BACKEND_VULKAN: return "vulkan";
        case EKV_BACKEND_CUDA: return "cuda";
    }
    return "unknown";
}

ekv_status ekv_backend_from_name(const char* name, ekv_backend_kind* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(name, "name");
        EKV_CHECK_HANDLE(out, "out");
        const ekv_backend_kind all[] = {EKV_BACKEND_AUTO, EKV_BACKEND_CPU, EKV_BACKEND_VULKAN, EKV_BACKEND_CUDA};
        for (ekv_backend_kind k : all) {
            if (std::strcmp(name, ekv_backend_name(k)) == 0) {
                *out = k;
                return Status::Ok();
            }
        }
        return Error(EKV_ERR_INVALID_ARGUMENT, "unknown backend '%s' (expected auto, cpu, vulkan or cuda)", name);
    });
}

int ekv_backend_available(ekv_backend_kind kind) {
    const int k = api::enum_int(kind);
    if (k == EKV_BACKEND_AUTO) return 1;
    if (k < EKV_BACKEND_CPU || k > EKV_BACKEND_CUDA) return 0;
    return backend_device_count(kind) > 0 ? 1 : 0;
}

ekv_status ekv_device_count(ekv_backend_kind kind, int32_t* out_count) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(out_count, "out_count");
        const int k = api::enum_int(kind);
        if (k < EKV_BACKEND_AUTO || k > EKV_BACKEND_CUDA)
            return Error(EKV_ERR_INVALID_ARGUMENT, "unknown backend kind %d", k);
        *out_count = backend_device_count(kind == EKV_BACKEND_AUTO ? EKV_BACKEND_CPU : kind);
        return Status::Ok();
    });
}

ekv_status ekv_device_get_info(ekv_backend_kind kind, int32_t index, ekv_device_info* out) {
    return api::guarded([&]() -> Status {
        EKV_TRY(api::check_params(out, 0, "out"));
        const int k = api::enum_int(kind);
        if (k < EKV_BACKEND_AUTO || k > EKV_BACKEND_CUDA)
            return Error(EKV_ERR_INVALID_ARGUMENT, "unknown backend kind %d", k);
        DeviceDescription d;
        EKV_TRY(backend_device_info(kind, index, &d));
        ekv_device_info info = api::zeroed_struct<ekv_device_info>();
        info.backend = d.kind;
        info.index = d.index;
        std::snprintf(info.name, sizeof info.name, "%s", d.name.c_str());
        info.device_memory_bytes = d.memory_bytes;
        info.device_memory_free_bytes = d.free_bytes;
        info.unified_memory = d.unified_memory ? 1 : 0;
        info.n_threads = d.n_threads;
        api::write_struct(out, info);
        return Status::Ok();
    });
}

uint64_t ekv_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return static_cast<uint64_t>(ru.ru_maxrss) * 1024u;  // Linux reports KiB
}

}  // extern "C"
