#include "cache/kv_cache.h"

#include <new>

namespace ekv {
namespace {
// Unbounded caches grow by at least this many tokens (and by half their size)
// so reallocation is rare and amortised, never per token.
constexpr int32_t kGrowChunk = 256;
}  // namespace

KvCache::KvCache(const CacheConfig& config, const CacheShape& shape, Backend& backend, bool fixed)
    : config_(config), shape_(shape), backend_(&backend), fixed_(fixed) {}

size_t KvCache::row_bytes() const { return dtype_row_bytes(config_.kv_dtype, shape_.kv_width()); }

Status KvCache::create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                       std::unique_ptr<Cache>* out) {
    const bool fixed = config.type == EKV_CACHE_STATIC;
    std::unique_ptr<KvCache> c(new (std::nothrow) KvCache(config, shape, backend, fixed));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    if (fixed) {
        const int32_t cap = config.max_cache_len > 0 ? config.max_cache_len : shape.context_length;
        if (cap <= 0) return Error(EKV_ERR_INVALID_ARGUMENT, "static cache needs max_cache_len > 0");
        EKV_TRY(c->allocate(cap, &c->layers_));
        c->allocated_ = cap;
    }
    *out = std::move(c);
    return Status::Ok();
}

Status KvCache::allocate(int32_t tokens, std::vector<Layer>* layers) const {
    std::vector<Layer> fresh(static_cast<size_t>(shape_.n_layers));
    const size_t rb = row_bytes();
    const size_t bytes = rb * static_cast<size_t>(tokens);
    for (Layer& l : fresh) {
        EKV_TRY(backend_->alloc(bytes, config_.placement, &l.k_buf));
        EKV_TRY(backend_->alloc(bytes, config_.placement, &l.v_buf));
        for (int which = 0; which < 2; ++which) {
            Tensor& t = which ? l.v : l.k;
            Buffer* b = which ? l.v_buf.get() : l.k_buf.get();
            t.type = config_.kv_dtype;
            t.cols = shape_.kv_width();
            t.rows = tokens;
            t.row_bytes = rb;
            t.buffer = b;
            t.data = b->host();
        }
    }
    *layers = std::move(fresh);
    return Status::Ok();
}

Status KvCache::prepare(int32_t n_new) {
    if (n_new < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "negative token count %d", n_new);
    const int64_t need = static_cast<int64_t>(len_) + n_new;
    if (need <= allocated_) return Status::Ok();
    if (fixed_)
        return Error(EKV_ERR_CACHE_FULL,
                     "static cache is full: it holds %d of %d tokens and cannot take %d more (raise max_cache_len)",
                     len_, allocated_, n_new);
    if (need > INT32_MAX / 2) return Error(EKV_ERR_CONTEXT_OVERFLOW, "sequence of %lld tokens is too long",
                                           static_cast<long long>(need));
    int64_t target = allocated_ + allocated_ / 2;
    if (target < need) target = need;
    target = (target + kGrowChunk - 1) / kGrowChunk * kGrowChunk;
    std::vector<Layer> grown;
    EKV_TRY(allocate(static_cast<int32_t>(target), &grown));
    for (size_t i = 0; i < layers_.size(); ++i) {
        backend_->copy_raw(layers_[i].k, grown[i].k, len_);
        backend_->copy_raw(layers_[i].v, grown[i].v, len_);
    }
    backend_->synchronize();
    layers_ = std::move(grown);
    allocated_ = static_cast<int32_t>(target);
    return Status::Ok();
}

void KvCache::store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) {
    Layer& l = layers_[static_cast<size_t>(layer)];
    backend.copy_rows(k, l.k, len_);
    backend.copy_rows(v, l.v, len_);
}

KvView KvCache::view(int32_t layer, int32_t n_pending) const {
    KvView view;
    const Layer& l = layers_[static_cast<size_t>(layer)];
    KvSegment& s = view.seg[0];
    s.k = l.k;
    s.v = l.v;
    s.n_tokens = len_ + n_pending;
    s.first_pos = 0;
    view.n_segments = 1;
    return view;
}

void KvCache::commit(const int32_t* ids, int32_t n) {
    tokens_.insert(tokens_.end(), ids, ids + n);
    len_ += n;
    forwarded_ += static_cast<uint64_t>(n);
}

Status KvCache::crop(int32_t new_len) {
    if (new_len < 0 || new_len > len_)
        return Error(EKV_ERR_INVALID_ARGUMENT, "cannot crop a cache of %d tokens to %d", len_, new_len);
    len_ = new_len;
    tokens_.resize(static_cast<size_t>(new_len));
    return Status::Ok();
}

void KvCache::reset() {
    len_ = 0;
    tokens_.clear();
}

Status KvCache::clone(Backend& backend, std::unique_ptr<Cache>* out) const {
    std::unique_ptr<KvCache> c(new (std::nothrow) KvCache(config_, shape_, backend, fixed_));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    const int32_t rows = fixed_ ? allocated_ : len_;
    if (rows > 0) {
        EKV_TRY(c->allocate(rows, &c->layers_));
        for (size_t i = 0; i < layers_.size(); ++i) {
            backend.copy_raw(layers_[i].k, c->layers_[i].k, len_);
            backend.copy_raw(layers_[i].v, c->layers_[i].v, len_);
        }
        backend.synchronize();
    }
    c->allocated_ = rows;
    c->len_ = len_;
    c->tokens_ = tokens_;
    *out = std::move(c);
    return Status::Ok();
}

CacheStats KvCache::stats() const {
    CacheStats s;
    s.seq_len = len_;
    s.capacity = capacity();
    s.bytes_per_token = 2ull * row_bytes() * static_cast<uint64_t>(shape_.n_layers);
    const uint64_t allocated = s.bytes_per_token * static_cast<uint64_t>(allocated_);
    if (config_.placement == Placement::Device)
        s.device_bytes = allocated;
    else
        s.host_bytes = allocated;
    s.used_bytes = s.bytes_per_token * static_cast<uint64_t>(len_);
    return s;
}

Status create_cache(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                    std::unique_ptr<Cache>* out) {
    switch (config.type) {
        case EKV_CACHE_DYNAMIC:
        case EKV_CACHE_STATIC:
            if (config.placement != Placement::Device)
                return Error(EKV_ERR_UNSUPPORTED, "offloading (host/unified placement) is not implemented yet");
            return KvCache::create(config, shape, backend, out);
        case EKV_CACHE_AUTO:
            return Error(EKV_ERR_INTERNAL, "cache type auto must be resolved by the model");
        default:
            return Error(EKV_ERR_UNSUPPORTED, "cache type '%s' is not implemented yet in this version of edgekv",
                         ekv_cache_type_name(config.type));
    }
}

}  // namespace ekv
