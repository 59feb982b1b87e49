// Cache creation, inspection and operations.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "api/api_internal.h"
#include "api/api_plan.h"
#include "core/fault_injection.h"

using namespace ekv;

namespace {

const char* const kCacheNames[] = {"auto",    "dynamic",        "static", "offloaded", "offloaded_static",
                                   "quantized", "sliding_window", "sink",   "hybrid",    "mamba",
                                   "hybrid_mamba", "encoder_decoder"};
constexpr int kNumCacheTypes = sizeof(kCacheNames) / sizeof(kCacheNames[0]);

// Closes a libc memory stream when the scope ends, normally or by an
// exception; for open_memstream, hands the buffer that fclose publishes to
// `owner` so it is freed too.
struct StreamCloser {
    FILE* stream;
    char** data;
    std::unique_ptr<char, decltype(&std::free)>* owner;
    ~StreamCloser() {
        std::fclose(stream);
        if (owner) owner->reset(*data);
    }
};

}  // namespace

extern "C" {

const char* ekv_cache_type_name(ekv_cache_type type) {
    const int i = api::enum_int(type);
    return i >= 0 && i < kNumCacheTypes ? kCacheNames[i] : "unknown";
}

ekv_status ekv_cache_type_from_name(const char* name, ekv_cache_type* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(name, "name");
        EKV_CHECK_HANDLE(out, "out");
        for (int i = 0; i < kNumCacheTypes; ++i) {
            if (std::strcmp(name, kCacheNames[i]) == 0) {
                *out = static_cast<ekv_cache_type>(i);
                return Status::Ok();
            }
        }
        return Error(EKV_ERR_INVALID_ARGUMENT,
                     "unknown cache type '%s' (expected auto, dynamic, static, offloaded, offloaded_static, "
                     "quantized, sliding_window, sink, hybrid, mamba, hybrid_mamba or encoder_decoder)",
                     name);
    });
}

ekv_status ekv_cache_create(ekv_model* model, const ekv_cache_params* params, ekv_cache** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        ekv_cache_params p;
        EKV_TRY(api::read_params(params, api::cache_params_defaults(), "params", &p));
        const Model& m = *model->model;
        CacheConfig cc;  // AUTO under a budget: the planner's choice (api_plan.h)
        EKV_TRY(api::cache_config_for(m, p, &cc));
        std::unique_ptr<Session> session;
        EKV_TRY(Session::create(m, cc, &session));
        *out = api::wrap_cache(model, std::move(session));
        return Status::Ok();
    });
}

void ekv_cache_free(ekv_cache* cache) { api::release(cache); }

ekv_status ekv_cache_get_model(const ekv_cache* cache, ekv_model** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = cache->owner;
        return Status::Ok();
    });
}

// The read-only queries answer from the snapshot, busy or not.
ekv_status ekv_cache_get_type(const ekv_cache* cache, ekv_cache_type* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = api::read_snapshot(cache).type;
        return Status::Ok();
    });
}

ekv_status ekv_cache_seq_len(const ekv_cache* cache, int32_t* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = api::read_snapshot(cache).stats.seq_len;
        return Status::Ok();
    });
}

ekv_status ekv_cache_capacity(const ekv_cache* cache, int32_t* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = api::read_snapshot(cache).stats.capacity;
        return Status::Ok();
    });
}

ekv_status ekv_cache_get_params(const ekv_cache* cache, ekv_cache_params* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_TRY(api::check_params(out, 0, "out"));
        api::write_struct(out, cache->params);
        return Status::Ok();
    });
}

ekv_status ekv_cache_get_stats(const ekv_cache* cache, ekv_cache_stats* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_TRY(api::check_params(out, 0, "out"));
        const CacheSnapshot snap = api::read_snapshot(cache);
        const CacheStats& cs = snap.stats;
        ekv_cache_stats s = api::zeroed_struct<ekv_cache_stats>();
        s.seq_len = cs.seq_len;
        s.capacity = cs.capacity;
        s.device_bytes = cs.device_bytes;
        s.host_bytes = cs.host_bytes;
        s.used_bytes = cs.used_bytes;
        s.bytes_per_token = cs.bytes_per_token;
        s.tokens_forwarded = snap.tokens_forwarded;
        s.tokens_held = cs.tokens_held;
        api::write_struct(out, s);
        return Status::Ok();
    });
}

ekv_status ekv_cache_reset(ekv_cache* cache) {
    return api::guarded([&]() -> Status {
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        cache->session->cache().reset();
        return Status::Ok();
    });
}

ekv_status ekv_cache_crop(ekv_cache* cache, int32_t new_len) {
    return api::guarded([&]() -> Status {
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        return cache->session->cache().crop(new_len);
    });
}

ekv_status ekv_cache_clone(const ekv_cache* cache, ekv_cache** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        std::unique_ptr<Session> session;
        EKV_TRY(cache->session->clone(&session));
        *out = api::wrap_cache(cache->owner, std::move(session));
        return Status::Ok();
    });
}

ekv_status ekv_cache_save(const ekv_cache* cache, const char* path) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(path, "path");
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        return cache->session->cache().save(path);
    });
}

ekv_status ekv_cache_save_to_memory(const ekv_cache* cache, void* buf, size_t cap, size_t* out_len) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        char* data = nullptr;
        size_t size = 0;
        FILE* stream = fault::host_allocation_fails() ? nullptr : open_memstream(&data, &size);
        if (!stream) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot open a memory stream");
        // Closed and freed on every path: save() may also throw (bad_alloc).
        std::unique_ptr<char, decltype(&std::free)> owned(nullptr, &std::free);
        Status st;
        {
            StreamCloser closer{stream, &data, &owned};
            st = cache->session->cache().save(CacheFile(stream, "cache in memory"));
        }
        EKV_TRY(st);
        if (out_len) *out_len = size;
        if (!buf || cap < size)
            return Error(EKV_ERR_BUFFER_TOO_SMALL, "the cache needs %zu bytes, the buffer holds %zu", size, buf ? cap : 0);
        std::memcpy(buf, data, size);
        return Status::Ok();
    });
}

ekv_status ekv_cache_load_from_memory(ekv_model* model, const void* data, size_t size, ekv_cache** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(data, "data");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        if (size == 0) return Error(EKV_ERR_INVALID_FILE, "an empty buffer is not a cache file");
        FILE* stream = fault::host_allocation_fails() ? nullptr : fmemopen(const_cast<void*>(data), size, "rb");
        if (!stream) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot open a memory stream");
        std::unique_ptr<Session> session;
        Status st;
        {
            StreamCloser closer{stream, nullptr, nullptr};  // also when load() throws
            st = Session::load(*model->model, CacheFile(stream, "cache in memory"), &session);
        }
        EKV_TRY(st);
        *out = api::wrap_cache(model, std::move(session));
        return Status::Ok();
    });
}

ekv_status ekv_cache_load(ekv_model* model, const char* path, ekv_cache** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(path, "path");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        std::unique_ptr<Session> session;
        EKV_TRY(Session::load(*model->model, path, &session));
        *out = api::wrap_cache(model, std::move(session));
        return Status::Ok();
    });
}

}  // extern "C"
