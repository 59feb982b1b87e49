// Llama family (Llama 2/3, SmolLM2, Mistral-style GQA): pre-norm decoder with
// RMSNorm, rotary attention with grouped KV heads and a SiLU-gated FFN.
// Weights follow the GGUF tensor names and conventions (Q/K rows permuted so
// RoPE rotates adjacent pairs); the HF directory reader converts to them.
#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "model/arch_common.h"
#include "model/model.h"

namespace ekv {
namespace {

constexpr int32_t kBatch = 128;  // tokens per forward chunk (prefill)

struct LlamaLayer : AttentionProjections, FfnProjections {
    Tensor attn_norm, ffn_norm;
};

using LlamaWorkspace = BlockWorkspace;

class Llama final : public Architecture {
public:
    Llama(Backend& backend) : backend_(backend) {}
    Status init(const ModelFile& file);

    const ModelInfo& info() const override { return info_; }
    CacheShape cache_shape() const override {
        CacheShape s;
        s.n_layers = info_.n_layers;
        s.n_kv_heads = info_.n_kv_heads;
        s.head_dim = info_.head_dim;
        s.context_length = info_.context_length;
        s.max_chunk = kBatch;
        return s;
    }
    ekv_cache_type natural_cache() const override { return EKV_CACHE_DYNAMIC; }
    Status check_cache(ekv_cache_type type) const override;
    Status create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const override;
    Status forward(Cache& cache, Workspace& ws, const ForwardRequest& req) const override;

private:
    void forward_chunk(Cache& cache, LlamaWorkspace& ws, const int32_t* tokens, int32_t n, int32_t first_pos) const;
    BlockDims dims() const {
        return block_dims(hp_.n_embd, hp_.n_heads, hp_.n_kv_heads, hp_.head_dim, hp_.n_ff, hp_.n_vocab);
    }

    Backend& backend_;
    ModelInfo info_;
    HParams hp_;
    Tensor tok_embd_, output_norm_, output_;
    std::vector<LlamaLayer> layers_;
    std::vector<std::unique_ptr<Buffer>> owners_;
    std::vector<float> inv_freq_;
    float attn_factor_ = 1.0f;
};

Status Llama::init(const ModelFile& file) {
    EKV_TRY(read_llama_hparams(file, "llama", &hp_));
    EKV_TRY(compute_rope_frequencies(file, hp_, &inv_freq_, &attn_factor_));
    WeightLoader wl(file, backend_, &owners_);
    const BlockDims d = dims();
    EKV_TRY(wl.load("token_embd.weight", hp_.n_embd, hp_.n_vocab, &tok_embd_));
    EKV_TRY(wl.load("output_norm.weight", hp_.n_embd, 1, &output_norm_));
    if (file.find_tensor("output.weight")) {
        EKV_TRY(wl.load("output.weight", hp_.n_embd, hp_.n_vocab, &output_));
    } else {
        output_ = tok_embd_;  // tied embeddings
    }
    layers_.resize(static_cast<size_t>(hp_.n_layers));
    for (int32_t i = 0; i < hp_.n_layers; ++i) {
        LlamaLayer& l = layers_[static_cast<size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        EKV_TRY(wl.load(p + "attn_norm.weight", hp_.n_embd, 1, &l.attn_norm));
        EKV_TRY(load_attention_projections(wl, p, d, &l));
        EKV_TRY(wl.load(p + "ffn_norm.weight", hp_.n_embd, 1, &l.ffn_norm));
        EKV_TRY(load_ffn_projections(wl, p, d, &l));
    }
    for (const Tensor* norm : {&output_norm_}) {
        if (norm->type != DType::F32) return Error(EKV_ERR_UNSUPPORTED, "output_norm.weight must be f32");
    }
    for (const LlamaLayer& l : layers_) {
        if (l.attn_norm.type != DType::F32 || l.ffn_norm.type != DType::F32)
            return Error(EKV_ERR_UNSUPPORTED, "norm weights must be f32");
    }
    if (!backend_.supports_weight(tok_embd_.type))
        return Error(EKV_ERR_UNSUPPORTED, "token_embd.weight: type %s not supported", dtype_name(tok_embd_.type));
    const int64_t k_max = std::max<int64_t>({hp_.n_embd, hp_.n_ff, d.q_out});
    EKV_TRY(backend_.reserve_scratch(k_max, kBatch));
    fill_info(file, hp_, wl.total_bytes(), wl.total_params(), &info_);
    info_.decode_weight_bytes = decode_weight_bytes(wl.total_bytes(), tok_embd_, !file.find_tensor("output.weight"));
    return Status::Ok();
}

Status Llama::check_cache(ekv_cache_type type) const {
    switch (type) {
        case EKV_CACHE_MAMBA:
        case EKV_CACHE_HYBRID_MAMBA:
            return Error(EKV_ERR_UNSUPPORTED, "cache type '%s' needs recurrent (Mamba) layers; %s has none",
                         ekv_cache_type_name(type), info_.architecture.c_str());
        case EKV_CACHE_ENCODER_DECODER:
            return Error(EKV_ERR_UNSUPPORTED, "cache type 'encoder_decoder' needs an encoder-decoder model; %s is decoder-only",
                         info_.architecture.c_str());
        case EKV_CACHE_HYBRID:
            return Error(EKV_ERR_UNSUPPORTED, "cache type 'hybrid' needs interleaved local/global attention layers; %s has none",
                         info_.architecture.c_str());
        default:
            return Status::Ok();
    }
}

Status Llama::create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const {
    std::unique_ptr<LlamaWorkspace> ws(new (std::nothrow) LlamaWorkspace());
    if (!ws) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate workspace");
    ActivationArena arena;
    ws->add_to(arena, dims(), kBatch);
    EKV_TRY(ws->finish(arena, stream, kBatch));
    *out = std::move(ws);
    return Status::Ok();
}

void Llama::forward_chunk(Cache& cache, LlamaWorkspace& ws, const int32_t* tokens, int32_t n,
                          int32_t first_pos) const {
    Backend& be = *ws.stream;
    for (int32_t i = 0; i < n; ++i) ws.positions[static_cast<size_t>(i)] = first_pos + i;
    Tensor x = ws.x.row_range(0, n), h = ws.h.row_range(0, n), q = ws.q.row_range(0, n);
    Tensor k = ws.k.row_range(0, n), v = ws.v.row_range(0, n), att = ws.att.row_range(0, n);
    Tensor proj = ws.proj.row_range(0, n), gate = ws.gate.row_range(0, n), up = ws.up.row_range(0, n);

    RopeParams rope_q;
    rope_q.n_heads = hp_.n_heads;
    rope_q.head_dim = hp_.head_dim;
    rope_q.rope_dim = hp_.rope_dim;
    rope_q.inv_freq = inv_freq_.data();
    rope_q.attn_factor = attn_factor_;
    RopeParams rope_k = rope_q;
    rope_k.n_heads = hp_.n_kv_heads;
    AttentionParams ap;
    ap.n_heads = hp_.n_heads;
    ap.n_kv_heads = hp_.n_kv_heads;
    ap.head_dim = hp_.head_dim;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hp_.head_dim));
    ap.rope = &rope_k;  // sink caches re-rotate queries for pinned keys

    be.get_rows(tok_embd_, tokens, n, x);
    for (int32_t il = 0; il < hp_.n_layers; ++il) {
        if (ws.cancel.raised()) return;  // stopped: the chunk is never committed
        const LlamaLayer& l = layers_[static_cast<size_t>(il)];
        be.rms_norm(x, l.attn_norm, hp_.rms_eps, h);
        be.matmul(l.wq, h, q);
        be.matmul(l.wk, h, k);
        be.matmul(l.wv, h, v);
        be.rope(q, ws.positions.data(), rope_q);
        be.rope(k, ws.positions.data(), rope_k);
        cache.store(be, il, k, v);
        be.attention(q, ws.positions.data(), cache.view(il, n), ap, att);
        be.matmul(l.wo, att, proj);
        be.add(x, proj, x);
        be.rms_norm(x, l.ffn_norm, hp_.rms_eps, h);
        be.matmul(l.gate, h, gate);
        be.matmul(l.up, h, up);
        be.silu_mul(gate, up, gate);
        be.matmul(l.down, gate, proj);
        be.add(x, proj, x);
    }
}

Status Llama::forward(Cache& cache, Workspace& wsb, const ForwardRequest& req) const {
    LlamaWorkspace& ws = static_cast<LlamaWorkspace&>(wsb);
    const int32_t n_vocab = hp_.n_vocab;
    return run_chunked_forward(
        ws, cache, req, kBatch, n_vocab,
        [&](const int32_t* toks, int32_t n, int32_t first_pos) { forward_chunk(cache, ws, toks, n, first_pos); },
        [&](int32_t first_row, int32_t rows) {
            Tensor xr = ws.x.row_range(first_row, rows);
            Tensor hr = ws.h.row_range(0, rows);
            Tensor lg = ws.logits.row_range(0, rows);
            ws.stream->rms_norm(xr, output_norm_, hp_.rms_eps, hr);
            ws.stream->matmul(output_, hr, lg);
            return lg;
        });
}

}  // namespace

Status create_llama(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out) {
    return make_architecture<Llama>(file, out, backend);
}

}  // namespace ekv
