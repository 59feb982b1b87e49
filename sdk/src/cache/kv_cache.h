// Full-precision attention KV cache along the retention axis: unbounded
// (dynamic: grows in chunks) or fixed capacity (static: preallocated, a clear
// error when full). Storage is F16 or F32 rows, one row per token per layer.
#pragma once
#include "cache/cache.h"

namespace ekv {

class KvCache final : public Cache {
public:
    // fixed_capacity < 0 means unbounded.
    static Status create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                         std::unique_ptr<Cache>* out);

    ekv_cache_type type() const override { return config_.type; }
    int32_t seq_len() const override { return len_; }
    int32_t capacity() const override { return fixed_ ? allocated_ : -1; }
    Status prepare(int32_t n_new) override;
    void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) override;
    KvView view(int32_t layer, int32_t n_pending) const override;
    void commit(const int32_t* ids, int32_t n) override;
    Status crop(int32_t new_len) override;
    void reset() override;
    Status clone(Backend& backend, std::unique_ptr<Cache>* out) const override;
    CacheStats stats() const override;

private:
    struct Layer {
        std::unique_ptr<Buffer> k_buf, v_buf;
        Tensor k, v;
    };
    KvCache(const CacheConfig& config, const CacheShape& shape, Backend& backend, bool fixed);
    Status allocate(int32_t tokens, std::vector<Layer>* layers) const;
    size_t row_bytes() const;

    CacheConfig config_;
    CacheShape shape_;
    Backend* backend_;
    bool fixed_;
    int32_t len_ = 0;
    int32_t allocated_ = 0;  // token rows allocated per layer
    std::vector<Layer> layers_;
};

}  // namespace ekv
