// Picks the cache implementation for a resolved configuration: the generic
// KvCache, or a composite for the model-specific types. size_cache follows
// the same choice to say what create_cache would allocate.
#include <cinttypes>

#include "cache/cache.h"
#include "cache/encoder_decoder_cache.h"
#include "cache/hybrid_cache.h"
#include "cache/hybrid_mamba_cache.h"
#include "cache/kv_cache.h"
#include "cache/mamba_cache.h"

namespace ekv {
namespace {

Status check_generic(const CacheConfig& config, const CacheShape& shape) {
    if (shape.count(LayerKind::Recurrent) > 0)
        return Error(EKV_ERR_UNSUPPORTED, "cache type '%s' holds attention KV only; this model has recurrent layers",
                     ekv_cache_type_name(config.type));
    return Status::Ok();
}

}  // namespace

Status create_cache(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                    std::unique_ptr<Cache>* out) {
    switch (config.type) {
        case EKV_CACHE_HYBRID: return HybridCache::create(config, shape, backend, out);
        case EKV_CACHE_MAMBA: return MambaCache::create(config, shape, backend, out);
        case EKV_CACHE_ENCODER_DECODER: return EncoderDecoderCache::create(config, shape, backend, out);
        case EKV_CACHE_HYBRID_MAMBA: return HybridMambaCache::create(config, shape, backend, out);
        default: break;
    }
    EKV_TRY(check_generic(config, shape));
    // On an encoder-decoder model a generic type is the decoder's
    // self-attention cache, wrapped with the cross-attention KV.
    if (shape.cross_len > 0) return EncoderDecoderCache::create(config, shape, backend, out);
    return KvCache::create(config, shape, backend, out);
}

Status size_cache(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                  int32_t tokens, CacheSize* out) {
    if (tokens < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "token count %d is negative", tokens);
    switch (config.type) {
        case EKV_CACHE_HYBRID: return HybridCache::size(config, shape, device, tokens, out);
        case EKV_CACHE_MAMBA: return MambaCache::size(config, shape, tokens, out);
        case EKV_CACHE_ENCODER_DECODER: return EncoderDecoderCache::size(config, shape, device, tokens, out);
        case EKV_CACHE_HYBRID_MAMBA: return HybridMambaCache::size(config, shape, device, tokens, out);
        default: break;
    }
    EKV_TRY(check_generic(config, shape));
    if (shape.cross_len > 0) return EncoderDecoderCache::size(config, shape, device, tokens, out);
    *out = KvCache::size(config, shape, device, byte_limit(config), tokens);
    return Status::Ok();
}

void judge_size(CacheSize* s, int32_t tokens, uint64_t limit) {
    s->fits = true;
    s->why.clear();
    if (s->capacity >= 0 && tokens > s->capacity) {
        s->fits = false;
        s->why = "it holds at most " + std::to_string(s->capacity) + " tokens";
    } else if (s->created.total() > limit) {
        s->fits = false;
        s->why = "it takes " + describe_bytes(s->created.total()) + " when created";
    } else if (s->at_tokens.total() > limit) {
        s->fits = false;
        s->why = std::to_string(tokens) + " tokens take " + describe_bytes(s->at_tokens.total());
        if (s->max_tokens >= 0) s->why += "; " + std::to_string(s->max_tokens) + " fit";
    }
}

std::string describe_bytes(uint64_t bytes) {
    char buf[64];
    if (bytes == kNoByteLimit) return "unlimited";
    if (bytes >= (1ull << 30))
        std::snprintf(buf, sizeof buf, "%" PRIu64 " bytes (%.2f GiB)", bytes, static_cast<double>(bytes) / (1ull << 30));
    else if (bytes >= (1ull << 20))
        std::snprintf(buf, sizeof buf, "%" PRIu64 " bytes (%.1f MiB)", bytes, static_cast<double>(bytes) / (1ull << 20));
    else if (bytes >= (1ull << 10))
        std::snprintf(buf, sizeof buf, "%" PRIu64 " bytes (%.1f KiB)", bytes, static_cast<double>(bytes) / (1ull << 10));
    else
        std::snprintf(buf, sizeof buf, "%" PRIu64 " bytes", bytes);
    return buf;
}

}  // namespace ekv
