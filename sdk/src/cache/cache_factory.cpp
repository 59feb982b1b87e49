// Picks the cache implementation for a resolved configuration: the generic
// KvCache, or a composite for the model-specific types.
#include "cache/cache.h"
#include "cache/encoder_decoder_cache.h"
#include "cache/hybrid_cache.h"
#include "cache/hybrid_mamba_cache.h"
#include "cache/kv_cache.h"
#include "cache/mamba_cache.h"

namespace ekv {

Status create_cache(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                    std::unique_ptr<Cache>* out) {
    switch (config.type) {
        case EKV_CACHE_HYBRID: return HybridCache::create(config, shape, backend, out);
        case EKV_CACHE_MAMBA: return MambaCache::create(config, shape, backend, out);
        case EKV_CACHE_ENCODER_DECODER: return EncoderDecoderCache::create(config, shape, backend, out);
        case EKV_CACHE_HYBRID_MAMBA: return HybridMambaCache::create(config, shape, backend, out);
        default: break;
    }
    if (shape.count(LayerKind::Recurrent) > 0)
        return Error(EKV_ERR_UNSUPPORTED, "cache type '%s' holds attention KV only; this model has recurrent layers",
                     ekv_cache_type_name(config.type));
    // On an encoder-decoder model a generic type is the decoder's
    // self-attention cache, wrapped with the cross-attention KV.
    if (shape.cross_len > 0) return EncoderDecoderCache::create(config, shape, backend, out);
    return KvCache::create(config, shape, backend, out);
}

}  // namespace ekv
