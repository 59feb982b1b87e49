// The `mamba` cache (HF MambaCache): per recurrent layer the last d_conv - 1
// inputs of the convolution and the SSM state, F32, allocated once on the
// backend. There is no KV and nothing grows: a token costs no memory, and the
// state cannot be rewound (crop refuses anything but the current length).
//
// The states are double-buffered as a whole: a chunk reads the current set
// and writes the other (Cache::recurrent_state), and commit() makes the
// written set current, so a failed forward leaves the cache unchanged.
//
// Composite caches (hybrid_mamba) hold a MambaCache as their recurrent part:
// create_part() accepts a shape with attention layers too and keeps states
// for the Recurrent layers only, indexed by the model's layer numbers.
#pragma once
#include <memory>
#include <vector>

#include "cache/cache.h"

namespace ekv {

class CacheFileWriter;
class CacheFileReader;

class MambaCache final : public Cache {
public:
    // The standalone `mamba` cache: every layer of the shape must be
    // Recurrent. Host placement is refused (offloading a small fixed state
    // saves nothing; device and unified memory are accepted).
    static Status create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                         std::unique_ptr<Cache>* out);
    // The recurrent part of a composite cache (any placement in config is
    // ignored: the state lives in device memory).
    static Status create_part(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                              std::unique_ptr<MambaCache>* out);
    // Bytes of both state sets of the shape's recurrent layers: all a mamba
    // cache ever allocates, whatever the sequence length.
    static uint64_t state_bytes(const CacheShape& shape);
    // What create allocates (see size_cache), refusing what create refuses.
    static Status size(const CacheConfig& config, const CacheShape& shape, int32_t tokens, CacheSize* out);
    // The same for the recurrent part of a composite cache.
    static CacheSize part_size(const CacheShape& shape, int32_t tokens);

    const CacheConfig& config() const override { return config_; }
    int32_t seq_len() const override { return len_; }
    int32_t capacity() const override { return -1; }
    // max_cache_len, when given, bounds the sequence (HF's max_cache_len).
    int32_t max_seq_len() const override;
    Status prepare(int32_t n_new) override;
    // Recurrent layers keep no KV: nothing to store or view.
    void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) override;
    KvView view(int32_t layer, int32_t n_pending) override;
    void commit(const int32_t* ids, int32_t n) override;
    Status crop(int32_t new_len) override;
    // Whether crop(new_len) would succeed (composite caches check every part first).
    Status check_crop(int32_t new_len) const;
    void reset() override;
    Status clone(Backend& backend, std::unique_ptr<Cache>* out) const override;
    // Clone with the concrete type (composite caches).
    Status clone_part(Backend& backend, std::unique_ptr<MambaCache>* out) const;
    CacheStats stats() const override;
    Status save(const CacheFile& file) const override;
    bool recurrent_state(int32_t layer, RecurrentState* out) override;

    // The body of a cache file (cache_io.h). read_body checks the shape
    // against the model and builds a new cache; a standalone body must be a
    // `mamba` cache, a part body (require_standalone = false) any type.
    Status write_body(CacheFileWriter& w) const;
    static Status read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend, bool require_standalone,
                            std::unique_ptr<MambaCache>* out);

private:
    MambaCache(const CacheConfig& config, const CacheShape& shape, Backend& backend);
    // What create refuses besides the budget.
    static Status check_standalone(const CacheConfig& config, const CacheShape& shape);
    Status allocate();
    // Zeroes the current set; the other is always written before it is read.
    Status zero_current();
    Tensor state_tensor(int set, int32_t slot, bool ssm) const;
    size_t set_bytes() const { return layer_bytes_ * static_cast<size_t>(n_recurrent_); }

    CacheConfig config_;
    CacheShape shape_;
    Backend* backend_;
    std::vector<int32_t> slot_of_layer_;  // layer -> state slot, -1 for attention layers
    int32_t n_recurrent_ = 0;
    size_t conv_bytes_ = 0, ssm_bytes_ = 0, layer_bytes_ = 0;  // per layer, 64-byte aligned
    std::unique_ptr<Buffer> states_;  // two sets of [conv, ssm] per recurrent layer
    int current_ = 0;                 // the set holding the committed state
    int32_t len_ = 0;
    Status reset_error_;  // a reset that could not zero the state refuses the next forward
};

}  // namespace ekv
