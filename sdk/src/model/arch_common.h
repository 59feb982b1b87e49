// Pieces shared by the architectures: hyper-parameters from GGUF metadata,
// RoPE frequency tables (with the GGUF rope scaling schemes), validated weight
// loading, and the single-allocation activation arena.
#pragma once
#include <memory>
#include <new>
#include <utility>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"
#include "model/model_file.h"

namespace ekv {

struct HParams {
    int32_t n_layers = 0;
    int32_t n_embd = 0;
    int32_t n_heads = 0;
    int32_t n_kv_heads = 0;
    int32_t head_dim = 0;
    int32_t rope_dim = 0;
    int32_t n_ff = 0;
    int32_t n_vocab = 0;
    int32_t context_length = 0;
    float rms_eps = 1e-5f;
    float rope_base = 10000.0f;
};

// Reads "<arch>.block_count" etc., validating ranges and consistency.
Status read_llama_hparams(const ModelFile& file, const std::string& arch, HParams* hp);

// Inverse frequencies of the rotary pairs with "<arch>.rope.scaling.*"
// applied (none, linear, llama3) and a rope_freqs.weight tensor if present.
Status compute_rope_frequencies(const ModelFile& file, const HParams& hp, std::vector<float>* inv_freq,
                                float* attn_factor);

// ModelInfo::decode_weight_bytes of a model whose weights total `total`
// bytes: the token embedding table is read whole only when it is also the
// output head (tied), else one row of it a step.
uint64_t decode_weight_bytes(uint64_t total, const Tensor& tok_embd, bool tied);

void fill_info(const ModelFile& file, const HParams& hp, uint64_t weight_bytes, uint64_t n_params,
               ModelInfo* info);

// Loads tensors by name with the expected shape (cols = ne[0], rows = ne[1]).
class WeightLoader {
public:
    WeightLoader(const ModelFile& file, Backend& backend, std::vector<std::unique_ptr<Buffer>>* owners)
        : file_(file), backend_(backend), owners_(owners) {}
    Status load(const std::string& name, int64_t cols, int64_t rows, Tensor* out);
    uint64_t total_bytes() const { return bytes_; }
    uint64_t total_params() const { return params_; }

private:
    const ModelFile& file_;
    Backend& backend_;
    std::vector<std::unique_ptr<Buffer>>* owners_;
    uint64_t bytes_ = 0;
    uint64_t params_ = 0;
};

// The chunked forward every architecture shares, on the workspace's stream:
// chunks of at most max_chunk tokens; layers(tokens, n, first_pos) runs one
// chunk through the model, head(first_row, rows) turns those rows of the
// chunk's final hidden states into a logits tensor, which is read into
// req.logits. A chunk is committed only after the backend reported no error
// and no stop was requested, so a failure leaves the cache as it was before
// that chunk; a stop returns EKV_ERR_CANCELLED with `req.n_tokens - done`
// uncommitted (checked_forward rewinds the chunks already committed). (A
// template: no allocation on the decode path.)
template <class Layers, class Head>
Status run_chunked_forward(Workspace& ws, Cache& cache, const ForwardRequest& req, int32_t max_chunk,
                           int32_t n_vocab, Layers&& layers, Head&& head) {
    Backend& be = *ws.stream;
    int32_t done = 0;
    while (done < req.n_tokens) {
        if (ws.cancel.raised()) return Error(EKV_ERR_CANCELLED, "cancelled after %d of %d tokens", done, req.n_tokens);
        const int32_t n = req.n_tokens - done < max_chunk ? req.n_tokens - done : max_chunk;
        const int32_t* toks = req.tokens + done;
        layers(toks, n, req.first_pos + done);
        const bool stopped = ws.cancel.raised();
        if (!stopped && (req.all_logits || done + n == req.n_tokens)) {
            const int32_t first_row = req.all_logits ? 0 : n - 1;
            const int32_t rows = req.all_logits ? n : 1;
            const Tensor lg = head(first_row, rows);
            float* dst = req.logits + (req.all_logits ? static_cast<size_t>(done) * n_vocab : 0);
            be.read(lg, dst, static_cast<size_t>(rows) * n_vocab * sizeof(float));
        }
        be.synchronize();
        EKV_TRY(be.take_error());  // nothing committed: the cache is unchanged
        if (stopped) return Error(EKV_ERR_CANCELLED, "cancelled after %d of %d tokens", done, req.n_tokens);
        cache.commit(toks, n);
        done += n;
    }
    return Status::Ok();
}

// Constructs and initializes an architecture: Arch(args...).init(file).
template <class Arch, class... Args>
Status make_architecture(const ModelFile& file, std::unique_ptr<Architecture>* out, Args&&... args) {
    std::unique_ptr<Arch> m(new (std::nothrow) Arch(std::forward<Args>(args)...));
    if (!m) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate model");
    EKV_TRY(m->init(file));
    *out = std::move(m);
    return Status::Ok();
}

// Collects F32 activation tensors and backs them with one buffer.
class ActivationArena {
public:
    void add(Tensor* t, int64_t rows, int64_t cols);
    Status allocate(Backend& backend, std::unique_ptr<Buffer>* out);

private:
    struct Entry {
        Tensor* t;
        int64_t rows, cols;
    };
    std::vector<Entry> entries_;
};

// The widths a pre-norm decoder block works with (Llama, Gemma, Jamba's
// attention layers): the residual stream, queries, keys/values, the FFN.
struct BlockDims {
    int64_t n_embd = 0, q_out = 0, kv_out = 0, n_ff = 0, n_vocab = 0;
};
BlockDims block_dims(int64_t n_embd, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int64_t n_ff,
                     int64_t n_vocab);

// A block's projections under GGUF names (prefix "blk.N."); the norms
// around them differ between architectures and are loaded by each.
struct AttentionProjections {
    Tensor wq, wk, wv, wo;  // attn_q, attn_k, attn_v, attn_output
};
struct FfnProjections {
    Tensor gate, up, down;  // ffn_gate, ffn_up, ffn_down (SiLU- or GELU-gated)
};
Status load_attention_projections(WeightLoader& wl, const std::string& prefix, const BlockDims& d,
                                  AttentionProjections* out);
Status load_ffn_projections(WeightLoader& wl, const std::string& prefix, const BlockDims& d, FfnProjections* out);

// Activations of a decoder made of such blocks, in one arena of `batch`
// rows: add_to() adds them (an architecture may add its own before
// allocate()), finish() allocates on the stream.
class BlockWorkspace : public Workspace {
public:
    std::unique_ptr<Buffer> mem;
    Tensor x, h, q, k, v, att, proj, gate, up, logits;
    std::vector<int32_t> positions;

    void add_to(ActivationArena& arena, const BlockDims& d, int32_t batch);
    Status finish(ActivationArena& arena, Backend& stream_backend, int32_t batch);
};

}  // namespace ekv
