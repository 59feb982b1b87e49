// Mamba 1 (HF MambaForCausalLM): a stack of pre-norm residual blocks, each an
// RMSNorm and a selective state space mixer (model/mamba_mixer.h), then a
// final RMSNorm and the LM head (tied to the embeddings when the file has no
// output.weight). No attention and no positions: every layer keeps a
// recurrent state, so the only cache is `mamba`.
#include <algorithm>
#include <cstdint>
#include <new>
#include <vector>

#include "model/arch_common.h"
#include "model/mamba_mixer.h"
#include "model/model.h"

namespace ekv {
namespace {

constexpr int32_t kBatch = 128;  // tokens per forward chunk (prefill)

struct MambaLayer {
    Tensor norm;
    MambaMixerWeights mixer;
};

class MambaWorkspace final : public Workspace {
public:
    std::unique_ptr<Buffer> mem;  // one allocation for every activation
    Tensor x, h, proj, logits;
    MambaScratch mixer;
};

class Mamba final : public Architecture {
public:
    explicit Mamba(Backend& backend) : backend_(backend) {}
    Status init(const ModelFile& file);

    const ModelInfo& info() const override { return info_; }
    CacheShape cache_shape() const override {
        CacheShape s;
        s.n_layers = info_.n_layers;
        s.context_length = info_.context_length;
        s.max_chunk = kBatch;
        s.layer_kinds.assign(static_cast<size_t>(info_.n_layers), LayerKind::Recurrent);
        s.recurrent = dims_.state_shape();
        return s;
    }
    ekv_cache_type natural_cache() const override { return EKV_CACHE_MAMBA; }
    Status check_cache(ekv_cache_type type) const override;
    Status create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const override;
    Status forward(Cache& cache, Workspace& ws, const ForwardRequest& req) const override;

private:
    void forward_chunk(Cache& cache, MambaWorkspace& ws, const int32_t* tokens, int32_t n) const;

    Backend& backend_;
    ModelInfo info_;
    MambaDims dims_;
    float rms_eps_ = 1e-5f;
    Tensor tok_embd_, output_norm_, output_;
    std::vector<MambaLayer> layers_;
    std::vector<std::unique_ptr<Buffer>> owners_;
};

Status Mamba::init(const ModelFile& file) {
    EKV_TRY(check_mamba_ops(backend_, "mamba"));
    int64_t n_layers = 0, context = 0;
    if (!file.meta.get_int("mamba.block_count", &n_layers) || n_layers < 1 || n_layers > 1024)
        return Error(EKV_ERR_INVALID_FILE, "metadata mamba.block_count is missing or out of range [1, 1024]");
    if (!file.meta.get_int("mamba.context_length", &context) || context < 1 || context > (int64_t{1} << 30))
        return Error(EKV_ERR_INVALID_FILE, "metadata mamba.context_length is missing or out of range");
    EKV_TRY(read_mamba_dims(file, "mamba", &dims_));
    double eps = 0;
    if (!file.meta.get_float("mamba.attention.layer_norm_rms_epsilon", &eps) || !(eps > 0 && eps < 1))
        return Error(EKV_ERR_INVALID_FILE, "metadata mamba.attention.layer_norm_rms_epsilon is missing or not in (0, 1)");
    rms_eps_ = static_cast<float>(eps);

    const TensorRef* emb = file.find_tensor("token_embd.weight");
    if (!emb) return Error(EKV_ERR_INVALID_FILE, "missing tensor token_embd.weight");
    if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return Error(EKV_ERR_INVALID_FILE, "token_embd.weight has an invalid shape");
    const int32_t n_vocab = static_cast<int32_t>(emb->ne[1]);

    WeightLoader wl(file, backend_, &owners_);
    EKV_TRY(wl.load("token_embd.weight", dims_.n_embd, n_vocab, &tok_embd_));
    EKV_TRY(wl.load("output_norm.weight", dims_.n_embd, 1, &output_norm_));
    if (file.find_tensor("output.weight")) {
        EKV_TRY(wl.load("output.weight", dims_.n_embd, n_vocab, &output_));
    } else {
        output_ = tok_embd_;  // tied embeddings (HF's default for Mamba)
    }
    if (output_norm_.type != DType::F32) return Error(EKV_ERR_UNSUPPORTED, "output_norm.weight must be f32");
    if (!backend_.supports_weight(tok_embd_.type))
        return Error(EKV_ERR_UNSUPPORTED, "token_embd.weight: type %s not supported", dtype_name(tok_embd_.type));
    layers_.resize(static_cast<size_t>(n_layers));
    for (int32_t i = 0; i < static_cast<int32_t>(n_layers); ++i) {
        MambaLayer& l = layers_[static_cast<size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        EKV_TRY(wl.load(p + "attn_norm.weight", dims_.n_embd, 1, &l.norm));
        if (l.norm.type != DType::F32) return Error(EKV_ERR_UNSUPPORTED, "%sattn_norm.weight must be f32", p.c_str());
        EKV_TRY(load_mamba_mixer(wl, p, dims_, false, &l.mixer));
    }
    const int64_t k_max = std::max<int64_t>({dims_.n_embd, dims_.d_inner, dims_.dt_rank});
    EKV_TRY(backend_.reserve_scratch(k_max, kBatch));

    file.meta.get_string("general.architecture", &info_.architecture);
    file.meta.get_string("general.name", &info_.name);
    info_.n_layers = static_cast<int32_t>(n_layers);
    info_.n_embd = dims_.n_embd;
    info_.context_length = static_cast<int32_t>(std::min<int64_t>(context, INT32_MAX));
    info_.n_vocab = n_vocab;
    info_.n_params = wl.total_params();
    info_.weight_bytes = wl.total_bytes();
    info_.decode_weight_bytes = decode_weight_bytes(wl.total_bytes(), tok_embd_, !file.find_tensor("output.weight"));
    return Status::Ok();
}

Status Mamba::check_cache(ekv_cache_type type) const {
    switch (type) {
        case EKV_CACHE_MAMBA: return Status::Ok();
        case EKV_CACHE_HYBRID_MAMBA:
            return Error(EKV_ERR_UNSUPPORTED,
                         "cache type 'hybrid_mamba' is for models mixing attention and Mamba layers (Jamba); %s has "
                         "only Mamba layers, use 'mamba' or 'auto'",
                         info_.architecture.c_str());
        default:
            // dynamic, static, offloaded*, quantized, sliding_window, sink,
            // hybrid, encoder_decoder: all hold attention keys and values.
            return Error(EKV_ERR_UNSUPPORTED,
                         "cache type '%s' keeps attention KV; %s has no attention layers, use 'mamba' or 'auto'",
                         ekv_cache_type_name(type), info_.architecture.c_str());
    }
}

Status Mamba::create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const {
    std::unique_ptr<MambaWorkspace> ws(new (std::nothrow) MambaWorkspace());
    if (!ws) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate workspace");
    ActivationArena arena;
    arena.add(&ws->x, kBatch, dims_.n_embd);
    arena.add(&ws->h, kBatch, dims_.n_embd);
    arena.add(&ws->proj, kBatch, dims_.n_embd);
    arena.add(&ws->logits, kBatch, info_.n_vocab);
    ws->mixer.add_to(arena, kBatch, dims_);
    EKV_TRY(arena.allocate(stream, &ws->mem));
    ws->stream = &stream;
    *out = std::move(ws);
    return Status::Ok();
}

void Mamba::forward_chunk(Cache& cache, MambaWorkspace& ws, const int32_t* tokens, int32_t n) const {
    Backend& be = *ws.stream;
    Tensor x = ws.x.row_range(0, n), h = ws.h.row_range(0, n), proj = ws.proj.row_range(0, n);
    be.get_rows(tok_embd_, tokens, n, x);
    for (int32_t il = 0; il < info_.n_layers; ++il) {
        if (ws.cancel.raised()) return;  // stopped: the chunk is never committed
        const MambaLayer& l = layers_[static_cast<size_t>(il)];
        RecurrentState st;
        cache.recurrent_state(il, &st);  // checked by forward()
        be.rms_norm(x, l.norm, rms_eps_, h);
        mamba_mixer_forward(be, l.mixer, dims_, st, h, n, rms_eps_, ws.mixer, proj);
        be.add(x, proj, x);
    }
}

Status Mamba::forward(Cache& cache, Workspace& wsb, const ForwardRequest& req) const {
    MambaWorkspace& ws = static_cast<MambaWorkspace&>(wsb);
    RecurrentState probe;
    for (int32_t il = 0; il < info_.n_layers; ++il) {
        if (!cache.recurrent_state(il, &probe))
            return Error(EKV_ERR_INVALID_STATE, "cache type '%s' holds no recurrent state for layer %d of %s",
                         ekv_cache_type_name(cache.type()), il, info_.architecture.c_str());
    }
    const int32_t n_vocab = info_.n_vocab;
    return run_chunked_forward(
        ws, cache, req, kBatch, n_vocab,
        [&](const int32_t* toks, int32_t n, int32_t) { forward_chunk(cache, ws, toks, n); },
        [&](int32_t first_row, int32_t rows) {
            Tensor xr = ws.x.row_range(first_row, rows);
            Tensor hr = ws.h.row_range(0, rows);
            Tensor lg = ws.logits.row_range(0, rows);
            ws.stream->rms_norm(xr, output_norm_, rms_eps_, hr);
            ws.stream->matmul(output_, hr, lg);
            return lg;
        });
}

}  // namespace

Status create_mamba(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out) {
    return make_architecture<Mamba>(file, out, backend);
}

}  // namespace ekv
