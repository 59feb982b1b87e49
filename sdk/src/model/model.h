// A loaded model: the file, its tokenizer, the backend holding its weights,
// and the architecture's forward pass. Immutable after loading, so one model
// can serve many caches on many threads (each cache brings its workspace).
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "backend/backend.h"
#include "cache/cache.h"
#include "core/cancel.h"
#include "model/model_file.h"
#include "text/tokenizer.h"

namespace ekv {

struct ModelInfo {
    std::string architecture;
    std::string name;
    int32_t n_layers = 0;
    int32_t n_heads = 0;
    int32_t n_kv_heads = 0;
    int32_t head_dim = 0;
    int32_t n_embd = 0;
    int32_t n_ff = 0;
    int32_t context_length = 0;
    int32_t n_vocab = 0;
    uint64_t n_params = 0;
    uint64_t weight_bytes = 0;
    // Weight bytes one decode step reads: every matrix once, an embedding
    // table that is not also the output head only as one row, a
    // mixture-of-experts layer only its active experts, Whisper's decoder.
    uint64_t decode_weight_bytes = 0;
};

// Per-sequence scratch of an architecture's forward pass, sized once, and
// what a running forward needs besides: the execution stream it runs on and
// the stop requests it polls between layers.
class Workspace {
public:
    virtual ~Workspace() = default;
    Backend* stream = nullptr;  // set by create_workspace
    CancelSet cancel;           // set for each call; empty when the call cannot be undone
};

// One forward call: tokens at consecutive positions starting at `first_pos`
// (== cache->seq_len() when a cache is given).
struct ForwardRequest {
    const int32_t* tokens = nullptr;
    int32_t n_tokens = 0;
    int32_t first_pos = 0;
    bool all_logits = false;   // else only the last token's
    float* logits = nullptr;   // host memory: n_vocab or n_tokens * n_vocab floats
};

class Architecture {
public:
    virtual ~Architecture() = default;
    virtual const ModelInfo& info() const = 0;
    virtual CacheShape cache_shape() const = 0;
    virtual ekv_cache_type natural_cache() const = 0;
    // Whether this model can use a cache type; a refusal says why.
    virtual Status check_cache(ekv_cache_type type) const = 0;
    // The workspace of one cache, its activations allocated on `stream` (an
    // execution stream of the model's backend, or the backend itself).
    virtual Status create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const = 0;
    // Runs the tokens through the model, extending the cache. The cache must
    // already be prepare()d for n_tokens; forward stores and commits.
    virtual Status forward(Cache& cache, Workspace& ws, const ForwardRequest& req) const = 0;
    // Encoder-decoder models: runs the encoder on a log-mel spectrogram
    // ([n_mel][n_frames], mel bin major) and writes every decoder layer's
    // cross-attention KV into the cache, which starts a new sequence.
    virtual Status encode(Cache& cache, Workspace& ws, const float* mel, int32_t n_mel, int32_t n_frames) const {
        (void)cache, (void)ws, (void)mel, (void)n_mel, (void)n_frames;
        return Error(EKV_ERR_UNSUPPORTED, "%s has no encoder", info().architecture.c_str());
    }
};

class Model {
public:
    ModelFile file;
    std::unique_ptr<Backend> backend;
    // Held by whatever uses `backend` itself as its stream (a backend with no
    // per-cache streams, see Backend::create_stream): one at a time.
    mutable std::recursive_mutex exclusive;
    std::unique_ptr<Tokenizer> tokenizer;  // null if the file has no tokenizer
    std::unique_ptr<Architecture> arch;
    uint64_t fingerprint = 0;  // identifies these weights (saved caches record it)

    const ModelInfo& info() const { return arch->info(); }
    CacheShape cache_shape() const {
        CacheShape s = arch->cache_shape();
        s.model_fingerprint = fingerprint;
        return s;
    }
};

// Loads a GGUF file or HF directory onto a backend.
// `monitor` (optional) gets the load's progress and may stop it.
Status load_model(const std::string& path, ekv_backend_kind backend, const BackendOptions& options,
                  std::unique_ptr<Model>* out, LoadMonitor* monitor = nullptr);
// The same from a file already read (GGUF from memory or a descriptor).
Status build_model(ModelFile file, ekv_backend_kind backend, const BackendOptions& options,
                   std::unique_ptr<Model>* out, LoadMonitor* monitor = nullptr);

// Hash of the tensors' names, types, shapes and sampled bytes.
uint64_t model_fingerprint(const ModelFile& file);

// Architecture factory: picks the implementation from general.architecture.
Status create_architecture(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out);

}  // namespace ekv
