// The `hybrid_mamba` cache (HF HybridMambaAttentionDynamicCache) for models
// that mix attention and Mamba layers (Jamba): a KvCache over the attention
// layers, so they keep every storage, retention and placement choice of the
// generic caches, and a MambaCache holding the recurrent layers' states.
// Like the mamba cache it cannot be cropped below its length: the recurrent
// state summarizes every token.
#pragma once
#include "cache/kv_cache.h"
#include "cache/mamba_cache.h"

namespace ekv {

class HybridMambaCache final : public Cache {
public:
    // config: the resolved `hybrid_mamba` configuration; its retention,
    // storage and placement apply to the attention KV.
    static Status create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                         std::unique_ptr<Cache>* out);
    // What create allocates (see size_cache): the recurrent states, then the
    // attention KV within what the budget leaves.
    static Status size(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                       int32_t tokens, CacheSize* out);
    // Whether the model's layers suit a hybrid_mamba cache (create refuses the same).
    static Status check_shape(const CacheShape& shape);

    const CacheConfig& config() const override { return config_; }
    int32_t seq_len() const override { return len_; }
    int32_t capacity() const override { return kv_->capacity(); }
    int32_t max_seq_len() const override { return kv_->max_seq_len(); }
    Status prepare(int32_t n_new) override;
    void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) override;
    KvView view(int32_t layer, int32_t n_pending) override;
    void commit(const int32_t* ids, int32_t n) override;
    Status crop(int32_t new_len) override;
    void reset() override;
    Status clone(Backend& backend, std::unique_ptr<Cache>* out) const override;
    CacheStats stats() const override;
    Status save(const CacheFile& file) const override;
    size_t token_id_bytes() const override {
        return Cache::token_id_bytes() + kv_->token_id_bytes() + mamba_->token_id_bytes();
    }
    bool recurrent_state(int32_t layer, RecurrentState* out) override { return mamba_->recurrent_state(layer, out); }

    static Status read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                            std::unique_ptr<Cache>* out);

private:
    HybridMambaCache(const CacheConfig& config, const CacheShape& shape);
    static CacheShape attention_shape(const CacheShape& shape);

    CacheConfig config_;
    CacheShape shape_;
    std::vector<int32_t> kv_index_;  // layer -> index in kv_, -1 for recurrent layers
    std::unique_ptr<KvCache> kv_;
    std::unique_ptr<MambaCache> mamba_;
    int32_t len_ = 0;
};

}  // namespace ekv
