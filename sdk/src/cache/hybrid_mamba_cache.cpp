#include "cache/hybrid_mamba_cache.h"

#include <new>

#include "cache/cache_io.h"

namespace ekv {

HybridMambaCache::HybridMambaCache(const CacheConfig& config, const CacheShape& shape)
    : config_(config), shape_(shape) {
    int32_t n_attention = 0;
    for (int32_t i = 0; i < shape.n_layers; ++i)
        kv_index_.push_back(shape.kind(i) == LayerKind::Attention ? n_attention++ : -1);
}

CacheShape HybridMambaCache::attention_shape(const CacheShape& shape) {
    CacheShape s = shape;
    s.n_layers = shape.count(LayerKind::Attention);
    s.layer_kinds.clear();
    return s;
}

Status HybridMambaCache::check_shape(const CacheShape& shape) {
    if (shape.count(LayerKind::Recurrent) == 0 || shape.count(LayerKind::Attention) == 0 ||
        shape.count(LayerKind::SlidingAttention) > 0)
        return Error(EKV_ERR_UNSUPPORTED,
                     "cache type 'hybrid_mamba' needs a model mixing full attention and Mamba layers (Jamba); this "
                     "one has %d attention, %d sliding-window and %d Mamba layers",
                     shape.count(LayerKind::Attention), shape.count(LayerKind::SlidingAttention),
                     shape.count(LayerKind::Recurrent));
    return Status::Ok();
}

Status HybridMambaCache::create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                                std::unique_ptr<Cache>* out) {
    EKV_TRY(check_shape(shape));
    std::unique_ptr<HybridMambaCache> c(new (std::nothrow) HybridMambaCache(config, shape));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    // The budget covers both parts: the fixed recurrent state first, the
    // attention KV within what it leaves.
    const uint64_t state = MambaCache::state_bytes(shape);
    if (state > byte_limit(config))
        return Error(EKV_ERR_OUT_OF_MEMORY,
                     "the hybrid_mamba cache's recurrent state takes %s, more than its memory budget of %s",
                     describe_bytes(state).c_str(), describe_bytes(byte_limit(config)).c_str());
    std::unique_ptr<Cache> kv;
    const Status st =
        KvCache::create_within(config, attention_shape(shape), backend, limit_less(byte_limit(config), state), &kv);
    if (!st.ok())
        return Error(st.code(), "%s (the recurrent state takes %s of it)", st.message().c_str(),
                     describe_bytes(state).c_str());
    c->kv_.reset(static_cast<KvCache*>(kv.release()));
    EKV_TRY(MambaCache::create_part(config, shape, backend, &c->mamba_));
    *out = std::move(c);
    return Status::Ok();
}

Status HybridMambaCache::size(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                              int32_t tokens, CacheSize* out) {
    EKV_TRY(check_shape(shape));
    const CacheSize state = MambaCache::part_size(shape, tokens);
    CacheSize s = KvCache::size(config, attention_shape(shape), device,
                                limit_less(byte_limit(config), state.created.total()), tokens);
    s.created += state.created;
    s.at_tokens += state.created;
    judge_size(&s, tokens, byte_limit(config));
    *out = s;
    return Status::Ok();
}

Status HybridMambaCache::prepare(int32_t n_new) {
    // Neither part changes state when it refuses.
    EKV_TRY(mamba_->prepare(n_new));
    EKV_TRY(kv_->prepare(n_new));
    return tokens_.reserve(n_new, max_seq_len());
}

void HybridMambaCache::store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) {
    const int32_t sub = kv_index_[static_cast<size_t>(layer)];
    if (sub >= 0) kv_->store(backend, sub, k, v);
}

KvView HybridMambaCache::view(int32_t layer, int32_t n_pending) {
    const int32_t sub = kv_index_[static_cast<size_t>(layer)];
    return sub >= 0 ? kv_->view(sub, n_pending) : KvView();
}

void HybridMambaCache::commit(const int32_t* ids, int32_t n) {
    kv_->commit(ids, n);
    mamba_->commit(ids, n);
    tokens_.append(ids, n);
    forwarded_ += static_cast<uint64_t>(n);
    len_ += n;
}

Status HybridMambaCache::crop(int32_t new_len) {
    EKV_TRY(mamba_->check_crop(new_len));  // only to the current length: nothing to undo
    EKV_TRY(kv_->check_crop(new_len));
    return kv_->crop(new_len);
}

void HybridMambaCache::reset() {
    kv_->reset();
    mamba_->reset();
    tokens_.clear();
    len_ = 0;
}

Status HybridMambaCache::clone(Backend& backend, std::unique_ptr<Cache>* out) const {
    std::unique_ptr<HybridMambaCache> c(new (std::nothrow) HybridMambaCache(config_, shape_));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    std::unique_ptr<Cache> kv;
    EKV_TRY(kv_->clone(backend, &kv));
    c->kv_.reset(static_cast<KvCache*>(kv.release()));
    EKV_TRY(mamba_->clone_part(backend, &c->mamba_));
    c->tokens_ = tokens_;
    c->forwarded_ = forwarded_;
    c->len_ = len_;
    *out = std::move(c);
    return Status::Ok();
}

CacheStats HybridMambaCache::stats() const {
    CacheStats s = kv_->stats();  // what grows with the sequence is the attention KV
    const CacheStats m = mamba_->stats();
    s.device_bytes += m.device_bytes;
    s.host_bytes += m.host_bytes;
    s.used_bytes += m.used_bytes;
    s.seq_len = len_;
    return s;
}

Status HybridMambaCache::save(const CacheFile& file) const {
    return write_cache_file(file, CacheFileKind::HybridMamba, shape_.model_fingerprint, [this](CacheFileWriter& w) {
        if (!w.value(forwarded_)) return Error(EKV_ERR_IO, "cannot write the cache file (disk full?)");
        EKV_TRY(kv_->write_body(w));
        return mamba_->write_body(w);
    });
}

Status HybridMambaCache::read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                                   std::unique_ptr<Cache>* out) {
    if (shape.count(LayerKind::Recurrent) == 0 || shape.count(LayerKind::Attention) == 0)
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s holds a hybrid_mamba cache; this model's layers do not match",
                     r.path().c_str());
    uint64_t forwarded = 0;
    EKV_TRY(r.value(&forwarded, "hybrid_mamba header"));
    std::unique_ptr<Cache> kv;
    EKV_TRY(KvCache::read_body(r, attention_shape(shape), backend, &kv));
    std::unique_ptr<MambaCache> mamba;
    EKV_TRY(MambaCache::read_body(r, shape, backend, false, &mamba));
    if (kv->config().type != EKV_CACHE_HYBRID_MAMBA || mamba->config().type != EKV_CACHE_HYBRID_MAMBA ||
        kv->seq_len() != mamba->seq_len() || kv->tokens() != mamba->tokens() || forwarded < mamba->tokens_forwarded())
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has inconsistent hybrid_mamba parts", r.path().c_str());
    std::unique_ptr<HybridMambaCache> c(new (std::nothrow) HybridMambaCache(kv->config(), shape));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    c->len_ = kv->seq_len();
    c->tokens_ = kv->tokens();
    c->forwarded_ = forwarded;
    c->kv_.reset(static_cast<KvCache*>(kv.release()));
    c->mamba_ = std::move(mamba);
    *out = std::move(c);
    return Status::Ok();
}

Status read_hybrid_mamba_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                                    std::unique_ptr<Cache>* out) {
    return HybridMambaCache::read_body(r, shape, backend, out);
}

}  // namespace ekv
