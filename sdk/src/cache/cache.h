// The cache interface every cache type implements. A cache is the state of one
// sequence: what each layer's attention can see (through a KvView), the
// token ids it has consumed (for prefix reuse), and its memory accounting.
//
// Writing follows a two-phase protocol so a failure never leaves a cache half
// updated: prepare(n) checks and makes room (the only step that can fail),
// store() writes each layer's new rows, commit() makes them visible. A
// forward may be split into chunks of at most CacheShape::max_chunk tokens:
// prepare once, then store/view/commit per chunk.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cache/token_history.h"
#include "core/status.h"
#include "edgekv.h"

namespace ekv {

// What one layer of the model keeps between tokens.
enum class LayerKind : uint8_t {
    Attention,         // causal attention over every earlier position
    SlidingAttention,  // local attention over the last CacheShape::sliding_window positions
    Recurrent,         // Mamba: a convolution window and an SSM state, no KV
};

// Per recurrent layer (F32): the last conv_rows inputs of the depthwise
// convolution (conv_rows = d_conv - 1, conv_cols = d_inner) and the SSM
// state (ssm_rows = d_inner, ssm_cols = d_state).
struct RecurrentShape {
    int32_t conv_rows = 0, conv_cols = 0;
    int32_t ssm_rows = 0, ssm_cols = 0;
};

// What the model needs cached per layer.
struct CacheShape {
    int32_t n_layers = 0;
    int32_t n_kv_heads = 0;
    int32_t head_dim = 0;
    int32_t context_length = 0;  // trained context, default capacity of fixed caches
    int32_t max_chunk = 1;       // most tokens the model stores per chunk
    uint64_t model_fingerprint = 0;  // identifies the model in saved cache files
    // Empty: every layer is Attention. Otherwise one entry per layer.
    std::vector<LayerKind> layer_kinds;
    int32_t sliding_window = 0;  // SlidingAttention layers' window (positions)
    RecurrentShape recurrent;    // Recurrent layers' state
    // Encoder-decoder models: encoder positions the cross-attention KV holds
    // (0 for decoder-only models).
    int32_t cross_len = 0;

    int64_t kv_width() const { return static_cast<int64_t>(n_kv_heads) * head_dim; }
    LayerKind kind(int32_t layer) const {
        return layer_kinds.empty() ? LayerKind::Attention : layer_kinds[static_cast<size_t>(layer)];
    }
    int32_t count(LayerKind k) const {
        if (layer_kinds.empty()) return k == LayerKind::Attention ? n_layers : 0;
        int32_t n = 0;
        for (LayerKind x : layer_kinds) n += x == k ? 1 : 0;
        return n;
    }
};

// One recurrent layer's state, double-buffered so a failed forward changes
// nothing: a chunk reads the *_in tensors and writes the state after it to
// the *_out tensors; commit() makes *_out current.
struct RecurrentState {
    Tensor conv_in, conv_out;  // [conv_rows x conv_cols]
    Tensor ssm_in, ssm_out;    // [ssm_rows x ssm_cols]
};

// The three axes of DESIGN.md; every HF cache type is a point here.
enum class Retention {
    Unbounded,  // grows in chunks (dynamic)
    Fixed,      // preallocated capacity, CACHE_FULL beyond (static)
    Window,     // ring of the last window_length tokens (sliding_window)
    Sink,       // first num_sink_tokens pinned + a ring (sink, StreamingLLM)
};

enum class KvStorage {
    Plain,  // F16 or F32 rows
    Kivi,   // KIVI groups plus a full-precision residual of the newest tokens
};

struct CacheConfig {
    ekv_cache_type type = EKV_CACHE_DYNAMIC;  // resolved, never AUTO: the name it reports
    Retention retention = Retention::Unbounded;
    KvStorage storage = KvStorage::Plain;
    Placement placement = Placement::Device;
    DType kv_dtype = DType::F16;   // plain rows and the KIVI residual
    int32_t max_cache_len = 0;     // Fixed: capacity (0 = model context)
    int32_t window_length = 0;     // Window/Sink: tokens held, sinks included (as HF)
    int32_t num_sink_tokens = 0;   // Sink
    int32_t nbits = 4;             // Kivi
    int32_t q_group_size = 64;     // Kivi
    int32_t residual_length = 128; // Kivi
    // Most bytes the cache's buffers may take (ekv_cache_stats' device plus
    // host bytes); 0 = no budget. Fixed parts must fit at creation; unbounded
    // parts grow up to it and a prepare() past it fails (OUT_OF_MEMORY).
    // Not saved in cache files.
    uint64_t memory_budget_bytes = 0;
};

// Bytes of a cache's buffers as ekv_cache_stats reports them.
struct CacheBytes {
    uint64_t device = 0;
    uint64_t host = 0;
    uint64_t total() const { return device + host; }
    CacheBytes& operator+=(const CacheBytes& o) {
        device += o.device;
        host += o.host;
        return *this;
    }
};

// A budget as a limit: "no budget" is the largest limit, so parts of a
// composite cache can be given what remains (which may be nothing).
constexpr uint64_t kNoByteLimit = UINT64_MAX;
inline uint64_t byte_limit(const CacheConfig& c) {
    return c.memory_budget_bytes ? c.memory_budget_bytes : kNoByteLimit;
}
inline uint64_t limit_less(uint64_t limit, uint64_t used) {
    return limit == kNoByteLimit ? kNoByteLimit : (limit > used ? limit - used : 0);
}
// "67108864 bytes (64.0 MiB)", for messages.
std::string describe_bytes(uint64_t bytes);

// Maps the public parameters to a point on the axes and checks it against the
// model's shape; refuses contradictions and impossible combinations.
Status resolve_cache_config(const ekv_cache_params& p, ekv_cache_type resolved_type, const CacheShape& shape,
                            const Backend& backend, CacheConfig* out);
// The public parameters' defaults (HF's: KIVI 4-bit in groups of 64 with a
// residual of 128; 4 sink tokens as StreamingLLM).
ekv_cache_params default_cache_params();
// The public parameters of a resolved configuration (type, storage,
// placement, the HF-named values in effect and the budget).
ekv_cache_params public_cache_params(const CacheConfig& c);
// The configuration of `type` with default parameters: what a cache-less call
// (use_cache=False) runs on, the model's natural type.
Status default_cache_config(ekv_cache_type type, const CacheShape& shape, const Backend& backend, CacheConfig* out);

struct CacheStats {
    int32_t seq_len = 0;
    int32_t capacity = -1;
    int32_t tokens_held = 0;
    uint64_t device_bytes = 0;
    uint64_t host_bytes = 0;
    uint64_t used_bytes = 0;
    uint64_t bytes_per_token = 0;
};

// Where a cache file goes or comes from: a path, or an open stream (memory,
// through fmemopen / open_memstream); `label` names it in errors.
struct CacheFile {
    CacheFile(const std::string& path) : label(path) {}
    CacheFile(const char* path) : label(path) {}
    CacheFile(FILE* s, std::string name) : label(std::move(name)), stream(s) {}
    std::string label;      // the path when there is no stream
    FILE* stream = nullptr;
};

class Cache {
public:
    virtual ~Cache() = default;

    virtual const CacheConfig& config() const = 0;
    ekv_cache_type type() const { return config().type; }
    // Tokens consumed so far: the position of the next token (HF get_seq_length).
    virtual int32_t seq_len() const = 0;
    // Most tokens held at once: the window for rings, -1 when unbounded.
    virtual int32_t capacity() const = 0;
    // Longest sequence it can take (positions); -1 when a ring or unbounded.
    virtual int32_t max_seq_len() const = 0;

    // Makes room for n_new tokens after seq_len(); fails (changing nothing)
    // when a fixed capacity would be exceeded or memory runs out.
    virtual Status prepare(int32_t n_new) = 0;
    // Writes the K and V rows (F32, one row per new token, keys already
    // rotated at their absolute positions) of one layer.
    virtual void store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) = 0;
    // The layer's contents including n_pending stored-but-uncommitted tokens.
    virtual KvView view(int32_t layer, int32_t n_pending) = 0;
    // Makes n tokens visible (after every layer stored them).
    virtual void commit(const int32_t* ids, int32_t n) = 0;

    // Keeps the first new_len tokens; refused where a ring already dropped
    // tokens the shorter sequence would need.
    virtual Status crop(int32_t new_len) = 0;
    // Whether crop(seq_len()) is sure to succeed after n_new more tokens, so
    // a call stopped half-way can be rewound (a ring overwrites old rows as
    // it stores; recurrent state cannot be rewound at all).
    virtual bool rewindable(int32_t n_new) const {
        (void)n_new;
        return false;
    }
    virtual void reset() = 0;
    virtual Status clone(Backend& backend, std::unique_ptr<Cache>* out) const = 0;
    virtual CacheStats stats() const = 0;

    // Versioned, checksummed file tied to the model (cache_file.cpp).
    virtual Status save(const CacheFile& file) const = 0;

    // Recurrent layers (mamba, hybrid_mamba caches): false for other layers
    // and caches.
    virtual bool recurrent_state(int32_t layer, RecurrentState* out) {
        (void)layer;
        (void)out;
        return false;
    }

    // Encoder-decoder caches: the cross-attention KV, written once per input
    // from the encoder output. cross_len() is 0 until then. Decoder-only
    // caches refuse prepare_cross.
    virtual int32_t cross_len() const { return 0; }
    virtual Status prepare_cross(int32_t n_positions) {
        (void)n_positions;
        return Error(EKV_ERR_INVALID_STATE, "cache type '%s' has no cross-attention (not an encoder-decoder cache)",
                     ekv_cache_type_name(type()));
    }
    virtual void store_cross(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) {
        (void)backend, (void)layer, (void)k, (void)v;
    }
    virtual void commit_cross(int32_t n_positions) { (void)n_positions; }
    virtual KvView cross_view(int32_t layer) {
        (void)layer;
        return KvView();
    }

    // Token ids consumed, oldest first, for prefix reuse and cache files:
    // every id where the cache can crop to any length; a ring keeps only its
    // newest ones (at least as far back as it can crop) and a digest of the
    // rest, so its memory stays flat (token_history.h).
    const TokenHistory& tokens() const { return tokens_; }
    // How many leading ids of ids[0, n) this cache's history continues: what
    // a prompt can reuse (0 when the ids do not account for seq_len()).
    int32_t reusable_prefix(const int32_t* ids, int32_t n) const {
        if (tokens_.size() != seq_len()) return 0;
        return static_cast<int32_t>(tokens_.matching_prefix(ids, n));
    }
    // Bytes the id lists have allocated (composite caches add their parts').
    virtual size_t token_id_bytes() const { return tokens_.capacity_bytes(); }
    uint64_t tokens_forwarded() const { return forwarded_; }

protected:
    TokenHistory tokens_;
    uint64_t forwarded_ = 0;
};

Status create_cache(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                    std::unique_ptr<Cache>* out);

// What create_cache(config) allocates, without allocating: the bytes it
// reports once it holds `tokens` tokens, grown to them in one prepare() (a
// prefill; growing a token at a time allocates ahead, by up to half again,
// within the budget), and at creation.
struct CacheSize {
    CacheBytes created;      // an empty cache
    CacheBytes at_tokens;    // holding `tokens` tokens (growth capped by the budget)
    int32_t tokens_held = 0; // of those, still held (ekv_cache_stats.tokens_held)
    int64_t capacity = -1;   // fixed capacity in tokens, -1 when none
    // Longest sequence it can take: a fixed capacity, or what the budget lets
    // unbounded parts grow to; -1 when neither limits it (rings, no budget).
    int64_t max_tokens = -1;
    // Whether it takes `tokens` tokens within its budget (and capacity);
    // `why` says what stops it when not (see judge_size).
    bool fits = true;
    std::string why;
};
Status size_cache(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                  int32_t tokens, CacheSize* out);
// Sets fits and why from the totals: the capacity, then the bytes at
// creation, then at `tokens`, against `limit`.
void judge_size(CacheSize* s, int32_t tokens, uint64_t limit);
// Loads a file written by Cache::save into a new cache; refuses files of
// another version, another model, or that fail their checksum.
Status load_cache(const CacheFile& file, const CacheShape& shape, Backend& backend, std::unique_ptr<Cache>* out);

}  // namespace ekv
