// The cache interface every cache type implements. A cache is the state of one
// sequence: what each layer's attention can see (through a KvView), the
// token ids it holds (for prefix reuse), and its memory accounting.
//
// Writing follows a two-phase protocol so a failure never leaves a cache half
// updated: prepare(n) checks and makes room (the only step that can fail),
// store() writes each layer's new rows, commit() makes them visible.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "edgekv.h"

namespace ekv {

// What the model needs cached per layer.
struct CacheShape {
    int32_t n_layers = 0;
    int32_t n_kv_heads = 0;
    int32_t head_dim = 0;
    int32_t context_length = 0;  // trained context, default capacity of fixed caches
    int64_t kv_width() const { return static_cast<int64_t>(n_kv_heads) * head_dim; }
};

struct CacheConfig {
    ekv_cache_type type = EKV_CACHE_DYNAMIC;  // resolved, never AUTO
    int32_t max_cache_len = 0;
    DType kv_dtype = DType::F16;
    Placement placement = Placement::Device;
};

struct CacheStats {
    int32_t seq_len = 0;
    int32_t capacity = -1;
    uint64_t device_bytes = 0;
    uint64_t host_bytes = 0;
    uint64_t used_bytes = 0;
    uint64_t bytes_per_token = 0;
};

class Cache {
public:
    virtual ~Cache() = default;

    virtual ekv_cache_type type() const = 0;
    virtual int32_t seq_len() const = 0;
    virtual int32_t capacity() const = 0;  // -1 when unbounded

    // Makes room for n_new tokens after seq_len(); fails (changing nothing)
    // when a fixed capacity would be exceeded or memory runs out.
    virtual Status prepare(int32_t n_new) = 0;
    // Writes the K and V rows (F32, one row per new token) of one layer.
    virtual void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) = 0;
    // The layer's contents including n_pending stored-but-uncommitted tokens.
    virtual KvView view(int32_t layer, int32_t n_pending) const = 0;
    // Makes n tokens visible (after every layer stored them).
    virtual void commit(const int32_t* ids, int32_t n) = 0;

    virtual Status crop(int32_t new_len) = 0;
    virtual void reset() = 0;
    virtual Status clone(Backend& backend, std::unique_ptr<Cache>* out) const = 0;
    virtual CacheStats stats() const = 0;

    // Token ids held, oldest first (those still reachable for prefix reuse).
    const std::vector<int32_t>& tokens() const { return tokens_; }
    uint64_t tokens_forwarded() const { return forwarded_; }

protected:
    std::vector<int32_t> tokens_;
    uint64_t forwarded_ = 0;
};

// Creates a cache of config.type for a model with `shape`. Types not built
// yet are refused with EKV_ERR_UNSUPPORTED and the reason.
Status create_cache(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                    std::unique_ptr<Cache>* out);

}  // namespace ekv
