// Public cache parameters -> a point on the three axes (retention, storage,
// placement), with every refusal explained.
#include "cache/cache.h"

#include <cstring>

#include "core/kivi.h"

namespace ekv {
namespace {

Status set_retention(ekv_cache_type type, CacheConfig* c) {
    switch (type) {
        case EKV_CACHE_DYNAMIC: c->retention = Retention::Unbounded; return Status::Ok();
        case EKV_CACHE_STATIC: c->retention = Retention::Fixed; return Status::Ok();
        case EKV_CACHE_OFFLOADED: c->retention = Retention::Unbounded; return Status::Ok();
        case EKV_CACHE_OFFLOADED_STATIC: c->retention = Retention::Fixed; return Status::Ok();
        case EKV_CACHE_QUANTIZED: c->retention = Retention::Unbounded; return Status::Ok();
        case EKV_CACHE_SLIDING_WINDOW: c->retention = Retention::Window; return Status::Ok();
        case EKV_CACHE_SINK: c->retention = Retention::Sink; return Status::Ok();
        // Model-specific caches: their attention KV (global layers, attention
        // layers, the decoder's self-attention) grows, or is fixed when
        // max_cache_len is given (resolve_cache_config).
        case EKV_CACHE_HYBRID:
        case EKV_CACHE_MAMBA:
        case EKV_CACHE_HYBRID_MAMBA:
        case EKV_CACHE_ENCODER_DECODER: c->retention = Retention::Unbounded; return Status::Ok();
        case EKV_CACHE_AUTO: return Error(EKV_ERR_INTERNAL, "cache type auto must be resolved by the model");
        default: return Error(EKV_ERR_INVALID_ARGUMENT, "unknown cache type %d", static_cast<int>(type));
    }
}

Status check_kivi(const CacheConfig& c, const CacheShape& shape) {
    if (!kivi_nbits_supported(c.nbits))
        return Error(EKV_ERR_INVALID_ARGUMENT, "nbits %d is not supported by the quantized cache (use 2, 4 or 8)",
                     c.nbits);
    if (c.q_group_size <= 0 || shape.head_dim % c.q_group_size != 0)
        return Error(EKV_ERR_INVALID_ARGUMENT,
                     "q_group_size %d must divide the head dimension %d (values are quantized per token over groups "
                     "of q_group_size channels)",
                     c.q_group_size, shape.head_dim);
    if ((static_cast<int64_t>(shape.head_dim) * c.nbits) % 8 != 0)
        return Error(EKV_ERR_UNSUPPORTED, "head dimension %d does not pack into whole bytes at %d bits",
                     shape.head_dim, c.nbits);
    if (c.residual_length < 0 || c.residual_length % c.q_group_size != 0)
        return Error(EKV_ERR_INVALID_ARGUMENT,
                     "residual_length %d must be a non-negative multiple of q_group_size %d (keys are quantized a "
                     "group of q_group_size tokens at a time)",
                     c.residual_length, c.q_group_size);
    return Status::Ok();
}

}  // namespace

ekv_cache_params default_cache_params() {
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

ekv_cache_params public_cache_params(const CacheConfig& c) {
    ekv_cache_params p = default_cache_params();
    p.type = c.type;
    p.max_cache_len = c.max_cache_len;
    p.dtype = c.storage == KvStorage::Kivi ? EKV_KV_KIVI : (c.kv_dtype == DType::F32 ? EKV_KV_F32 : EKV_KV_F16);
    p.window_length = c.window_length;
    p.num_sink_tokens = c.num_sink_tokens;
    p.nbits = c.nbits;
    p.q_group_size = c.q_group_size;
    p.residual_length = c.residual_length;
    p.offload = c.placement == Placement::Host      ? EKV_PLACEMENT_HOST
                : c.placement == Placement::Unified ? EKV_PLACEMENT_UNIFIED
                                                    : EKV_PLACEMENT_DEVICE;
    p.memory_budget_bytes = c.memory_budget_bytes;
    return p;
}

Status default_cache_config(ekv_cache_type type, const CacheShape& shape, const Backend& backend, CacheConfig* out) {
    return resolve_cache_config(default_cache_params(), type, shape, backend, out);
}

Status resolve_cache_config(const ekv_cache_params& p, ekv_cache_type type, const CacheShape& shape,
                            const Backend& backend, CacheConfig* out) {
    const DeviceDescription& device = backend.device();
    CacheConfig c;
    c.type = type;
    EKV_TRY(set_retention(type, &c));

    c.storage = (type == EKV_CACHE_QUANTIZED || p.dtype == EKV_KV_KIVI) ? KvStorage::Kivi : KvStorage::Plain;
    c.kv_dtype = p.dtype == EKV_KV_F32 ? DType::F32 : DType::F16;

    const bool offloaded_type = type == EKV_CACHE_OFFLOADED || type == EKV_CACHE_OFFLOADED_STATIC;
    switch (p.offload) {
        case EKV_PLACEMENT_HOST: c.placement = Placement::Host; break;
        case EKV_PLACEMENT_UNIFIED: c.placement = Placement::Unified; break;
        default: c.placement = offloaded_type ? Placement::Host : Placement::Device; break;
    }
    if (c.placement == Placement::Unified && !device.unified_memory)
        return Error(EKV_ERR_UNSUPPORTED,
                     "unified placement needs a device that shares host memory; '%s' has its own memory (offload to "
                     "host instead)",
                     device.name.c_str());

    c.max_cache_len = p.max_cache_len;
    const bool model_specific = type == EKV_CACHE_HYBRID || type == EKV_CACHE_MAMBA ||
                                type == EKV_CACHE_HYBRID_MAMBA || type == EKV_CACHE_ENCODER_DECODER;
    if (model_specific && c.max_cache_len > 0) c.retention = Retention::Fixed;
    if (c.retention == Retention::Fixed) {
        if (c.max_cache_len == 0) c.max_cache_len = shape.context_length;
        if (c.max_cache_len <= 0)
            return Error(EKV_ERR_INVALID_ARGUMENT, "%s cache needs max_cache_len > 0", ekv_cache_type_name(type));
    }

    c.window_length = p.window_length;
    c.num_sink_tokens = c.retention == Retention::Sink ? p.num_sink_tokens : 0;
    if (type == EKV_CACHE_HYBRID) {
        // The local layers' window is the model's, not a choice.
        if (shape.sliding_window <= 0)
            return Error(EKV_ERR_UNSUPPORTED, "cache type 'hybrid' needs a model with sliding-window layers");
        if (c.window_length != 0 && c.window_length != shape.sliding_window)
            return Error(EKV_ERR_INVALID_ARGUMENT,
                         "window_length %d contradicts the model's sliding window %d (hybrid caches use the model's; "
                         "leave it 0)",
                         c.window_length, shape.sliding_window);
        c.window_length = shape.sliding_window;
    }
    if (c.retention == Retention::Window || c.retention == Retention::Sink) {
        if (c.window_length <= 0)
            return Error(EKV_ERR_INVALID_ARGUMENT, "%s cache needs window_length > 0 (got %d)",
                         ekv_cache_type_name(type), c.window_length);
        if (c.num_sink_tokens < 0)
            return Error(EKV_ERR_INVALID_ARGUMENT, "num_sink_tokens %d is negative", c.num_sink_tokens);
        if (c.window_length <= c.num_sink_tokens)
            return Error(EKV_ERR_INVALID_ARGUMENT,
                         "window_length %d must exceed num_sink_tokens %d (the window includes the sinks and needs "
                         "room for recent tokens)",
                         c.window_length, c.num_sink_tokens);
    }

    c.nbits = p.nbits;
    c.q_group_size = p.q_group_size;
    c.residual_length = p.residual_length;
    c.memory_budget_bytes = p.memory_budget_bytes;
    if (c.storage == KvStorage::Kivi) {
        EKV_TRY(check_kivi(c, shape));
        if (!backend.supports_kv_format(KvFormat::Kivi))
            return Error(EKV_ERR_UNSUPPORTED, "the %s backend (%s) has no KIVI kernels yet; use the cpu backend or f16 KV",
                         ekv_backend_name(device.kind), device.name.c_str());
    }
    *out = c;
    return Status::Ok();
}

}  // namespace ekv
