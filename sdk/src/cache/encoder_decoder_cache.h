// The `encoder_decoder` cache (HF EncoderDecoderCache) for Whisper-style
// models: the decoder's self-attention KV, a KvCache of any generic
// configuration (`encoder_decoder` itself means a dynamic one; `static`,
// `quantized`, `sliding_window`, ... on an encoder-decoder model mean that
// cache here), plus the cross-attention KV: one K and one V per decoder layer
// over the encoder's positions, computed once per input by the model's
// encode step and read by every decode step.
//
// A new input starts a new sequence: prepare_cross() drops the decoder
// tokens (they attended to the previous input) and the previous cross KV.
// The cross KV is F16 or F32 (the configuration's kv_dtype; F16 for KIVI
// storage) and lives in device memory whatever the self-attention placement,
// since every layer reads all of it at every step.
#pragma once
#include "cache/kv_cache.h"

namespace ekv {

class EncoderDecoderCache final : public Cache {
public:
    // shape.cross_len > 0; config: a resolved generic or `encoder_decoder`
    // configuration for the self-attention part.
    static Status create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                         std::unique_ptr<Cache>* out);
    // What create allocates (see size_cache), counting the cross-attention KV
    // of a whole input (cross_len positions, allocated by the first encode):
    // the budget keeps room for it, and the self-attention KV grows within
    // the rest.
    static Status size(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                       int32_t tokens, CacheSize* out);
    // Whether the model suits an encoder-decoder cache (create refuses the same).
    static Status check_shape(const CacheShape& shape);

    const CacheConfig& config() const override { return self_->config(); }
    int32_t seq_len() const override { return self_->seq_len(); }
    int32_t capacity() const override { return self_->capacity(); }
    int32_t max_seq_len() const override { return self_->max_seq_len(); }
    Status prepare(int32_t n_new) override;
    void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) override {
        self_->store(backend, layer, k, v);
    }
    KvView view(int32_t layer, int32_t n_pending) override { return self_->view(layer, n_pending); }
    void commit(const int32_t* ids, int32_t n) override;
    Status crop(int32_t new_len) override;
    void reset() override;
    Status clone(Backend& backend, std::unique_ptr<Cache>* out) const override;
    bool rewindable(int32_t n_new) const override { return self_->rewindable(n_new); }
    CacheStats stats() const override;
    Status save(const CacheFile& file) const override;
    size_t token_id_bytes() const override { return Cache::token_id_bytes() + self_->token_id_bytes(); }

    int32_t cross_len() const override { return cross_len_; }
    Status prepare_cross(int32_t n_positions) override;
    void store_cross(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) override;
    void commit_cross(int32_t n_positions) override;
    KvView cross_view(int32_t layer) override;

    static Status read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                            std::unique_ptr<Cache>* out);

private:
    struct CrossLayer {
        std::unique_ptr<Buffer> k_buf, v_buf;
        Tensor k, v;
    };

    EncoderDecoderCache(const CacheShape& shape, Backend& backend, DType cross_dtype);
    static CacheShape self_shape(const CacheShape& shape);
    static DType cross_dtype_for(const CacheConfig& config);
    static Placement cross_placement_for(const CacheConfig& config);
    // The cross-attention KV of a whole input, split by placement.
    static CacheBytes cross_bytes(const CacheConfig& config, const CacheShape& shape);
    Placement cross_placement() const;
    // Buffers for `positions` encoder positions in every layer; all or nothing.
    Status allocate_cross(int32_t positions);
    size_t cross_row_bytes() const;

    CacheShape shape_;
    Backend* backend_;
    DType cross_dtype_;
    std::unique_ptr<KvCache> self_;
    std::vector<CrossLayer> cross_;
    int32_t cross_capacity_ = 0;  // positions allocated per layer
    int32_t cross_len_ = 0;       // positions holding the current input
};

}  // namespace ekv
