#include "cache/hybrid_cache.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "cache/cache_io.h"

namespace ekv {

HybridCache::HybridCache(const CacheConfig& config, const CacheShape& shape) : config_(config), shape_(shape) {
    int32_t n_local = 0, n_global = 0;
    for (int32_t i = 0; i < shape.n_layers; ++i)
        sub_index_.push_back(shape.kind(i) == LayerKind::SlidingAttention ? n_local++ : n_global++);
}

CacheShape HybridCache::part_shape(const CacheShape& shape, LayerKind kind) {
    CacheShape s = shape;
    s.n_layers = shape.count(kind);
    s.layer_kinds.clear();
    return s;
}

CacheConfig HybridCache::local_config(const CacheConfig& config) {
    CacheConfig c = config;
    c.retention = Retention::Window;  // window_length is the model's sliding window
    c.num_sink_tokens = 0;
    return c;
}

Status HybridCache::check_shape(const CacheShape& shape) {
    if (shape.count(LayerKind::Recurrent) > 0 || shape.count(LayerKind::SlidingAttention) == 0)
        return Error(EKV_ERR_UNSUPPORTED, "cache type 'hybrid' needs a model with sliding-window attention layers");
    return Status::Ok();
}

Status HybridCache::create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                           std::unique_ptr<Cache>* out) {
    EKV_TRY(check_shape(shape));
    std::unique_ptr<HybridCache> c(new (std::nothrow) HybridCache(config, shape));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    // The budget covers both parts: the local ring first (fixed), the global
    // layers grow within what it leaves.
    const uint64_t limit = byte_limit(config);
    std::unique_ptr<Cache> part;
    EKV_TRY(KvCache::create_within(local_config(config), part_shape(shape, LayerKind::SlidingAttention), backend,
                                   limit, &part));
    c->local_.reset(static_cast<KvCache*>(part.release()));
    if (shape.count(LayerKind::Attention) > 0) {
        const CacheStats local = c->local_->stats();
        const uint64_t local_bytes = local.device_bytes + local.host_bytes;
        const Status st = KvCache::create_within(config, part_shape(shape, LayerKind::Attention), backend,
                                                 limit_less(limit, local_bytes), &part);
        if (!st.ok())
            return Error(st.code(), "%s (the sliding-window layers take %s of it)", st.message().c_str(),
                         describe_bytes(local_bytes).c_str());
        c->global_.reset(static_cast<KvCache*>(part.release()));
    }
    c->adopt_fold_policy();
    *out = std::move(c);
    return Status::Ok();
}

// Global layers hold every position, so the ids are all kept; with sliding
// layers only, the cache is a ring and its ids fold as the ring's do.
void HybridCache::adopt_fold_policy() {
    if (!global_) tokens_.set_keep(local_->tokens().keep(), local_->tokens().pinned());
}

Status HybridCache::size(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                         int32_t tokens, CacheSize* out) {
    EKV_TRY(check_shape(shape));
    const uint64_t limit = byte_limit(config);
    CacheSize s =
        KvCache::size(local_config(config), part_shape(shape, LayerKind::SlidingAttention), device, limit, tokens);
    if (shape.count(LayerKind::Attention) == 0) {
        *out = s;
        return Status::Ok();
    }
    const uint64_t local_bytes = s.created.total();
    CacheSize g = KvCache::size(config, part_shape(shape, LayerKind::Attention), device,
                                limit_less(limit, local_bytes), tokens);
    g.created += s.created;
    g.at_tokens += s.at_tokens;
    judge_size(&g, tokens, limit);
    *out = g;
    return Status::Ok();
}

KvCache& HybridCache::part(int32_t layer, int32_t* sub) const {
    *sub = sub_index_[static_cast<size_t>(layer)];
    return shape_.kind(layer) == LayerKind::SlidingAttention ? *local_ : *global_;
}

int32_t HybridCache::capacity() const { return global_ ? global_->capacity() : local_->capacity(); }

Status HybridCache::prepare(int32_t n_new) {
    // Growing a part's buffers changes no state, so a refusal by the second
    // part leaves the cache as it was.
    if (global_) EKV_TRY(global_->prepare(n_new));
    EKV_TRY(local_->prepare(n_new));
    // commit() appends the ids and must not allocate: an allocation failing
    // there left the parts committed and this cache's length behind them.
    return tokens_.reserve(n_new, max_seq_len());
}

void HybridCache::store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) {
    int32_t sub = 0;
    part(layer, &sub).store(backend, sub, k, v);
}

KvView HybridCache::view(int32_t layer, int32_t n_pending) {
    int32_t sub = 0;
    return part(layer, &sub).view(sub, n_pending);
}

void HybridCache::commit(const int32_t* ids, int32_t n) {
    local_->commit(ids, n);
    if (global_) global_->commit(ids, n);
    tokens_.append(ids, n);
    forwarded_ += static_cast<uint64_t>(n);
    len_ += n;
}

Status HybridCache::crop(int32_t new_len) {
    EKV_TRY(local_->check_crop(new_len));
    if (global_) EKV_TRY(global_->check_crop(new_len));
    if (!tokens_.can_truncate(new_len))  // folds as the local ring does, so never refused here
        return Error(EKV_ERR_INVALID_STATE, "cannot crop the hybrid cache to %d tokens: their ids were folded",
                     new_len);
    EKV_TRY(local_->crop(new_len));
    if (global_) EKV_TRY(global_->crop(new_len));
    len_ = new_len;
    tokens_.truncate(new_len);
    return Status::Ok();
}

void HybridCache::reset() {
    local_->reset();
    if (global_) global_->reset();
    tokens_.clear();
    len_ = 0;
}

Status HybridCache::clone(Backend& backend, std::unique_ptr<Cache>* out) const {
    std::unique_ptr<HybridCache> c(new (std::nothrow) HybridCache(config_, shape_));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    std::unique_ptr<Cache> part;
    EKV_TRY(local_->clone(backend, &part));
    c->local_.reset(static_cast<KvCache*>(part.release()));
    if (global_) {
        EKV_TRY(global_->clone(backend, &part));
        c->global_.reset(static_cast<KvCache*>(part.release()));
    }
    c->tokens_ = tokens_;
    c->len_ = len_;
    *out = std::move(c);
    return Status::Ok();
}

CacheStats HybridCache::stats() const {
    CacheStats s = local_->stats();
    s.capacity = capacity();
    if (global_) {
        // Past the window only the global layers grow: one more token costs
        // their bytes, and they hold the most tokens.
        const CacheStats g = global_->stats();
        s.tokens_held = g.tokens_held;
        s.device_bytes += g.device_bytes;
        s.host_bytes += g.host_bytes;
        s.used_bytes += g.used_bytes;
        s.bytes_per_token = len_ < local_->capacity() ? s.bytes_per_token + g.bytes_per_token : g.bytes_per_token;
    } else if (len_ >= local_->capacity()) {
        s.bytes_per_token = 0;
    }
    s.seq_len = len_;
    return s;
}

Status HybridCache::save(const CacheFile& file) const {
    return write_cache_file(file, CacheFileKind::Hybrid, shape_.model_fingerprint, [this](CacheFileWriter& w) {
        const uint8_t has_global = global_ ? 1 : 0;
        if (!w.value(has_global) || !w.value(forwarded_)) return Error(EKV_ERR_IO, "cannot write the cache file");
        EKV_TRY(local_->write_body(w));
        return global_ ? global_->write_body(w) : Status::Ok();
    });
}

Status HybridCache::read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                              std::unique_ptr<Cache>* out) {
    uint8_t has_global = 0;
    uint64_t forwarded = 0;
    EKV_TRY(r.value(&has_global, "hybrid header"));
    EKV_TRY(r.value(&forwarded, "hybrid header"));
    if (shape.count(LayerKind::SlidingAttention) == 0 || has_global != (shape.count(LayerKind::Attention) > 0 ? 1 : 0))
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s holds a hybrid cache this model's layers do not match",
                     r.path().c_str());
    std::unique_ptr<Cache> local, global;
    EKV_TRY(KvCache::read_body(r, part_shape(shape, LayerKind::SlidingAttention), backend, &local));
    if (has_global) EKV_TRY(KvCache::read_body(r, part_shape(shape, LayerKind::Attention), backend, &global));
    const CacheConfig& lc = local->config();
    // With global layers both parts consumed the same ids: the ring's
    // history (folded or not) continues the global layers' whole list.
    const auto same_ids = [&] {
        const std::vector<int32_t>& all = global->tokens().kept();
        return local->tokens().matching_prefix(all.data(), static_cast<int64_t>(all.size())) == local->seq_len();
    };
    if (lc.type != EKV_CACHE_HYBRID || lc.retention != Retention::Window || lc.window_length != shape.sliding_window ||
        (global && (global->config().type != EKV_CACHE_HYBRID || global->seq_len() != local->seq_len() ||
                    global->config().retention == Retention::Window || global->config().retention == Retention::Sink ||
                    !same_ids())))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has inconsistent hybrid parts", r.path().c_str());
    CacheConfig config = global ? global->config() : lc;
    if (!global) config.retention = Retention::Unbounded;
    std::unique_ptr<HybridCache> c(new (std::nothrow) HybridCache(config, shape));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    c->len_ = local->seq_len();
    c->tokens_ = global ? global->tokens() : local->tokens();
    c->forwarded_ = forwarded;
    c->local_.reset(static_cast<KvCache*>(local.release()));
    c->global_.reset(static_cast<KvCache*>(global.release()));
    *out = std::move(c);
    return Status::Ok();
}

Status read_hybrid_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                              std::unique_ptr<Cache>* out) {
    return HybridCache::read_body(r, shape, backend, out);
}

}  // namespace ekv
