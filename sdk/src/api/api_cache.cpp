// Cache creation, inspection and operations.
#include <cstring>

#include "api/api_internal.h"

using namespace ekv;

namespace {

const char* const kCacheNames[] = {"auto",    "dynamic",        "static", "offloaded", "offloaded_static",
                                   "quantized", "sliding_window", "sink",   "hybrid",    "mamba",
                                   "hybrid_mamba", "encoder_decoder"};
constexpr int kNumCacheTypes = sizeof(kCacheNames) / sizeof(kCacheNames[0]);

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
        const int type = api::enum_int(p.type), dtype = api::enum_int(p.dtype), offload = api::enum_int(p.offload);
        if (type < EKV_CACHE_AUTO || type > EKV_CACHE_ENCODER_DECODER)
            return Error(EKV_ERR_INVALID_ARGUMENT, "unknown cache type %d", type);
        if (p.max_cache_len < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "max_cache_len %d is negative", p.max_cache_len);
        if (dtype < EKV_KV_F16 || dtype > EKV_KV_KIVI) return Error(EKV_ERR_INVALID_ARGUMENT, "unknown kv dtype %d", dtype);
        if (offload < EKV_PLACEMENT_DEVICE || offload > EKV_PLACEMENT_UNIFIED)
            return Error(EKV_ERR_INVALID_ARGUMENT, "unknown placement %d", offload);
        const ekv_cache_type resolved = p.type == EKV_CACHE_AUTO ? m.arch->natural_cache() : p.type;
        EKV_TRY(m.arch->check_cache(resolved));
        CacheConfig cc;
        EKV_TRY(resolve_cache_config(p, resolved, m.cache_shape(), *m.backend, &cc));
        std::unique_ptr<Session> session;
        EKV_TRY(Session::create(m, cc, &session));
        *out = api::wrap_cache(model, std::move(session));
        return Status::Ok();
    });
}

void ekv_cache_free(ekv_cache* cache) { api::release(cache); }

ekv_status ekv_cache_get_type(const ekv_cache* cache, ekv_cache_type* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        *out = cache->session->cache().type();
        return Status::Ok();
    });
}

ekv_status ekv_cache_seq_len(const ekv_cache* cache, int32_t* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        *out = cache->session->cache().seq_len();
        return Status::Ok();
    });
}

ekv_status ekv_cache_capacity(const ekv_cache* cache, int32_t* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        *out = cache->session->cache().capacity();
        return Status::Ok();
    });
}

ekv_status ekv_cache_get_stats(const ekv_cache* cache, ekv_cache_stats* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_TRY(api::check_params(out, 0, "out"));
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        const Cache& c = cache->session->cache();
        const CacheStats cs = c.stats();
        ekv_cache_stats s = api::zeroed_struct<ekv_cache_stats>();
        s.seq_len = cs.seq_len;
        s.capacity = cs.capacity;
        s.device_bytes = cs.device_bytes;
        s.host_bytes = cs.host_bytes;
        s.used_bytes = cs.used_bytes;
        s.bytes_per_token = cs.bytes_per_token;
        s.tokens_forwarded = c.tokens_forwarded();
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
