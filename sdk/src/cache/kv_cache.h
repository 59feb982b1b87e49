// The attention KV cache for every point of the three axes: storage (F16/F32
// rows or KIVI), retention (unbounded, fixed, window ring, sinks + ring) and
// placement (device; host: staged into a prefetched device double buffer on
// a discrete device, read in place on a unified one; unified).
// Token addressing lives in kv_layout.h; files in cache_file.cpp.
//
// Sinks and positions (StreamingLLM): keys are stored rotated at their
// absolute positions. Inside the ring, query-key distances are then already
// the in-cache ones (the ring is contiguous and ends at the query); only the
// pinned sink keys are further away than in the cache, so attention scores
// them from the query position min(p, window - 1) (KvView::pinned_query_pos).
// That is exact re-assignment with no key ever re-rotated.
#pragma once
#include <algorithm>
#include <array>

#include "cache/cache.h"
#include "cache/kv_layout.h"

namespace ekv {

class CacheFileWriter;
class CacheFileReader;

// One layer's memory: a buffer and a tensor over it per slot.
struct LayerBuffers {
    std::array<std::unique_ptr<Buffer>, kNumSlots> buf;
    std::array<Tensor, kNumSlots> t;
};

class KvCache final : public Cache {
public:
    static Status create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                         std::unique_ptr<Cache>* out);
    // The same within `limit` bytes instead of the config's budget: the part
    // of a composite cache gets what the budget leaves after its other parts.
    static Status create_within(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                                uint64_t limit, std::unique_ptr<Cache>* out);
    // What create_within allocates (see size_cache), computed from the layout.
    static CacheSize size(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                          uint64_t limit, int32_t tokens);

    const CacheConfig& config() const override { return layout_.cfg; }
    int32_t seq_len() const override { return len_; }
    int32_t capacity() const override;
    int32_t max_seq_len() const override { return layout_.fixed_body >= 0 ? layout_.fixed_body : -1; }
    Status prepare(int32_t n_new) override;
    void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) override;
    KvView view(int32_t layer, int32_t n_pending) override;
    void commit(const int32_t* ids, int32_t n) override;
    Status crop(int32_t new_len) override;
    // Whether crop(new_len) would succeed (composite caches check every part
    // before cropping any).
    Status check_crop(int32_t new_len) const;
    void reset() override;
    Status clone(Backend& backend, std::unique_ptr<Cache>* out) const override;
    bool rewindable(int32_t n_new) const override;
    CacheStats stats() const override;
    Status save(const CacheFile& file) const override;

    // cache_file.cpp: the body of a cache file (cache_io.h).
    Status write_body(CacheFileWriter& w) const;
    static Status read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                            std::unique_ptr<Cache>* out);

private:
    KvCache(const KvLayout& layout, Backend& backend);
    // Host placement on a device with its own memory: each layer is copied
    // into a device double buffer before use. Where the device reads host
    // memory directly (unified memory: integrated GPUs, lavapipe, the CPU)
    // the kernels read the host copy in place: zero-copy, no staging.
    bool staged() const { return layout_.cfg.placement == Placement::Host && !backend_->device().unified_memory; }
    Status allocate(int64_t plain_rows, int64_t groups);
    Status allocate_set(int64_t plain_rows, int64_t groups, Placement placement, LayerBuffers* out) const;
    size_t slot_used_bytes(int slot) const;
    void copy_used(const LayerBuffers& from, LayerBuffers& to, Backend& backend) const;
    LayerBuffers& stage(int32_t layer);
    void write_rows(Backend& backend, LayerBuffers& lb, const Tensor& k, const Tensor& v) const;
    void quantize_aged(Backend& backend, LayerBuffers& lb, int32_t q_target) const;
    void add_plain_runs(KvView& view, const LayerBuffers& lb, int slot_k, int32_t b0, int32_t b1) const;
    void add_kivi_runs(KvView& view, const LayerBuffers& lb, int32_t b0, int32_t b1) const;
    // The newest body token and quantized group end ever written: ring rows
    // before them were overwritten even where a crop lowered len_ and q_end_
    // (a second crop must not reach them).
    int32_t ring_end() const { return std::max(layout_.body_of(len_), stored_body_); }
    int32_t quantized_written() const { return std::max(q_end_, stored_q_); }
    int32_t oldest_plain_held() const;
    int32_t cropped_q_end(int32_t new_len) const;
    int32_t tokens_held() const;

    KvLayout layout_;
    Backend* backend_;
    uint64_t limit_ = kNoByteLimit;  // bytes the buffers may take (the budget)
    int32_t len_ = 0;       // tokens consumed (the next position)
    int32_t q_end_ = 0;     // body tokens quantized in every layer
    int32_t q_target_ = 0;  // body tokens quantized once the current chunk is stored
    int32_t stored_body_ = 0;  // end of the body tokens ever stored since the last reset
    int32_t stored_q_ = 0;     // end of the body tokens ever quantized since the last reset
    int64_t plain_rows_ = 0, groups_ = 0;  // allocated store sizes
    std::vector<LayerBuffers> layers_;
    // Host placement: two device buffers that layers alternate through.
    std::array<LayerBuffers, 2> staging_;
    std::array<int32_t, 2> staged_layer_{{-1, -1}};
};

}  // namespace ekv
