// The `hybrid` cache (HF HybridCache) for models that interleave local and
// global attention (Gemma 2/3): sliding-window layers keep a ring of the
// model's window, global layers keep every position (or a fixed capacity
// with max_cache_len). Two KvCaches, one per kind of layer, so each part
// keeps every storage and placement choice of the generic caches.
#pragma once
#include "cache/kv_cache.h"

namespace ekv {

class HybridCache final : public Cache {
public:
    // config: the resolved `hybrid` configuration (retention of the global
    // layers, window_length = the model's sliding window).
    static Status create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                         std::unique_ptr<Cache>* out);
    // What create allocates (see size_cache): the local ring, then the
    // global layers within what the budget leaves.
    static Status size(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                       int32_t tokens, CacheSize* out);
    // Whether the model's layers suit a hybrid cache (create refuses the same).
    static Status check_shape(const CacheShape& shape);

    const CacheConfig& config() const override { return config_; }
    int32_t seq_len() const override { return len_; }
    int32_t capacity() const override;
    int32_t max_seq_len() const override { return global_ ? global_->max_seq_len() : -1; }
    Status prepare(int32_t n_new) override;
    void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) override;
    KvView view(int32_t layer, int32_t n_pending) override;
    void commit(const int32_t* ids, int32_t n) override;
    Status crop(int32_t new_len) override;
    void reset() override;
    Status clone(Backend& backend, std::unique_ptr<Cache>* out) const override;
    bool rewindable(int32_t n_new) const override {
        return (!local_ || local_->rewindable(n_new)) && (!global_ || global_->rewindable(n_new));
    }
    CacheStats stats() const override;
    Status save(const CacheFile& file) const override;
    size_t token_id_bytes() const override {
        return Cache::token_id_bytes() + local_->token_id_bytes() + (global_ ? global_->token_id_bytes() : 0);
    }

    static Status read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                            std::unique_ptr<Cache>* out);

private:
    HybridCache(const CacheConfig& config, const CacheShape& shape);
    // The part holding a layer and the layer's index inside it.
    KvCache& part(int32_t layer, int32_t* sub) const;
    static CacheShape part_shape(const CacheShape& shape, LayerKind kind);
    static CacheConfig local_config(const CacheConfig& config);
    void adopt_fold_policy();

    CacheConfig config_;
    CacheShape shape_;
    std::vector<int32_t> sub_index_;  // layer -> index inside its part
    std::unique_ptr<KvCache> local_, global_;  // either may be null (no such layers)
    int32_t len_ = 0;
};

}  // namespace ekv
