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

ekv_cache_params ekv_cache_default_params(void) {
    ekv_cache_params p;
    std::memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.type = EKV_CACHE_AUTO;
    p.dtype = EKV_KV_F16;
    p.nbits = 4;
    p.q_group_size = 64;
    p.residual_length = 128;
    p.num_sink_tokens = 4;  // StreamingLLM's choice
    p.offload = EKV_PLACEMENT_DEVICE;
    return p;
}

ekv_status ekv_cache_create(ekv_model* model, const ekv_cache_params* params, ekv_cache** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        ekv_cache_params p = ekv_cache_default_params();
        if (params) {
            EKV_TRY(api::check_params(params, offsetof(ekv_cache_params, dtype) + sizeof(ekv_kv_dtype), "params"));
            std::memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
        }
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
        std::unique_ptr<ekv_cache> c(new ekv_cache());
        c->owner = model;
        EKV_TRY(create_cache(cc, m.cache_shape(), *m.backend, &c->cache));
        EKV_TRY(m.arch->create_workspace(&c->ws));
        *out = c.release();
        return Status::Ok();
    });
}

void ekv_cache_free(ekv_cache* cache) { delete cache; }

ekv_status ekv_cache_get_type(const ekv_cache* cache, ekv_cache_type* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = cache->cache->type();
        return Status::Ok();
    });
}

ekv_status ekv_cache_seq_len(const ekv_cache* cache, int32_t* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = cache->cache->seq_len();
        return Status::Ok();
    });
}

ekv_status ekv_cache_capacity(const ekv_cache* cache, int32_t* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = cache->cache->capacity();
        return Status::Ok();
    });
}

ekv_cache_stats ekv_cache_stats_default(void) {
    ekv_cache_stats s;
    std::memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    return s;
}

ekv_status ekv_cache_get_stats(const ekv_cache* cache, ekv_cache_stats* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_TRY(api::check_params(out, offsetof(ekv_cache_stats, tokens_forwarded) + sizeof(uint64_t), "out"));
        const CacheStats cs = cache->cache->stats();
        ekv_cache_stats s = ekv_cache_stats_default();
        s.seq_len = cs.seq_len;
        s.capacity = cs.capacity;
        s.device_bytes = cs.device_bytes;
        s.host_bytes = cs.host_bytes;
        s.used_bytes = cs.used_bytes;
        s.bytes_per_token = cs.bytes_per_token;
        s.tokens_forwarded = cache->cache->tokens_forwarded();
        s.tokens_held = cs.tokens_held;
        api::write_struct(out, s);
        return Status::Ok();
    });
}

ekv_status ekv_cache_reset(ekv_cache* cache) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        cache->cache->reset();
        return Status::Ok();
    });
}

ekv_status ekv_cache_crop(ekv_cache* cache, int32_t new_len) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        return cache->cache->crop(new_len);
    });
}

ekv_status ekv_cache_clone(const ekv_cache* cache, ekv_cache** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        const Model& m = *cache->owner->model;
        std::unique_ptr<ekv_cache> c(new ekv_cache());
        c->owner = cache->owner;
        EKV_TRY(cache->cache->clone(*m.backend, &c->cache));
        EKV_TRY(m.arch->create_workspace(&c->ws));
        *out = c.release();
        return Status::Ok();
    });
}

ekv_status ekv_cache_save(const ekv_cache* cache, const char* path) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        EKV_CHECK_HANDLE(path, "path");
        return cache->cache->save(path);
    });
}

ekv_status ekv_cache_load(ekv_model* model, const char* path, ekv_cache** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(path, "path");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        const Model& m = *model->model;
        std::unique_ptr<ekv_cache> c(new ekv_cache());
        c->owner = model;
        EKV_TRY(load_cache(path, m.cache_shape(), *m.backend, &c->cache));
        EKV_TRY(m.arch->check_cache(c->cache->type()));
        EKV_TRY(m.arch->create_workspace(&c->ws));
        *out = c.release();
        return Status::Ok();
    });
}

}  // extern "C"
