// Jamba (HF JambaForCausalLM): pre-norm residual blocks whose mixer is either
// grouped-query attention without positional encoding or a Mamba mixer with
// RMSNorms on dt, B and C (model/mamba_mixer.h), each followed by a
// SiLU-gated FFN that is dense or a top-k mixture of experts
// (model/moe_ffn.h). GGUF conventions are llama.cpp's "jamba": a layer with
// attention.head_count_kv[i] == 0 is a Mamba layer, a layer with
// ffn_gate_inp.weight is a MoE layer (tools/gen_tiny_jamba.py lists them).
// Its cache is `hybrid_mamba`: attention KV plus the recurrent states.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <new>
#include <vector>

#include "model/arch_common.h"
#include "model/mamba_mixer.h"
#include "model/model.h"
#include "model/moe_ffn.h"

namespace ekv {
namespace {

constexpr int32_t kBatch = 128;  // tokens per forward chunk (prefill)

struct JambaLayer : AttentionProjections, FfnProjections {  // projections: attention layers / dense FFNs
    bool attention = false;  // else Mamba
    bool moe = false;        // else a dense FFN
    Tensor attn_norm, ffn_norm;
    MambaMixerWeights mixer;
    MoeWeights experts;
};

class JambaWorkspace final : public BlockWorkspace {
public:
    MambaScratch mixer;
    MoeScratch moe;
};

class Jamba final : public Architecture {
public:
    explicit Jamba(Backend& backend) : backend_(backend) {}
    Status init(const ModelFile& file);

    const ModelInfo& info() const override { return info_; }
    CacheShape cache_shape() const override {
        CacheShape s;
        s.n_layers = info_.n_layers;
        s.n_kv_heads = info_.n_kv_heads;
        s.head_dim = info_.head_dim;
        s.context_length = info_.context_length;
        s.max_chunk = kBatch;
        for (const JambaLayer& l : layers_) s.layer_kinds.push_back(l.attention ? LayerKind::Attention : LayerKind::Recurrent);
        s.recurrent = mamba_.state_shape();
        return s;
    }
    ekv_cache_type natural_cache() const override { return EKV_CACHE_HYBRID_MAMBA; }
    Status check_cache(ekv_cache_type type) const override;
    Status create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const override;
    Status forward(Cache& cache, Workspace& ws, const ForwardRequest& req) const override;

private:
    Status read_layout(const ModelFile& file);
    Status load_layer(const ModelFile& file, WeightLoader& wl, int32_t il);
    void forward_chunk(Cache& cache, JambaWorkspace& ws, const int32_t* tokens, int32_t n, int32_t first_pos) const;
    BlockDims dims() const {
        return block_dims(info_.n_embd, info_.n_heads, info_.n_kv_heads, info_.head_dim, info_.n_ff, info_.n_vocab);
    }

    Backend& backend_;
    ModelInfo info_;
    MambaDims mamba_;
    MoeDims moe_;
    float rms_eps_ = 1e-6f;
    Tensor tok_embd_, output_norm_, output_;
    std::vector<JambaLayer> layers_;
    std::vector<std::unique_ptr<Buffer>> owners_;
    uint64_t expert_bytes_ = 0, expert_params_ = 0;
    // No positional encoding: pinned (sink) keys need no re-rotation.
    float no_rotation_ = 0.0f;
    RopeParams identity_rope_;
};

Status read_count(const ModelFile& f, const std::string& key, int64_t lo, int64_t hi, int32_t* out) {
    int64_t v = 0;
    if (!f.meta.get_int(key, &v) || v < lo || v > hi)
        return Error(EKV_ERR_INVALID_FILE, "metadata %s is missing or out of range [%lld, %lld]", key.c_str(),
                     static_cast<long long>(lo), static_cast<long long>(hi));
    *out = static_cast<int32_t>(v);
    return Status::Ok();
}

// Which layers attend (head_count_kv[i] > 0) and the hyper-parameters.
Status Jamba::read_layout(const ModelFile& f) {
    int32_t n_layers = 0, n_heads = 0, context = 0;
    EKV_TRY(read_count(f, "jamba.block_count", 1, 1024, &n_layers));
    EKV_TRY(read_count(f, "jamba.context_length", 1, INT32_MAX, &context));
    EKV_TRY(read_count(f, "jamba.attention.head_count", 1, 1024, &n_heads));
    EKV_TRY(read_count(f, "jamba.feed_forward_length", 1, 1 << 20, &info_.n_ff));
    EKV_TRY(read_mamba_dims(f, "jamba", &mamba_));
    double eps = 0;
    if (!f.meta.get_float("jamba.attention.layer_norm_rms_epsilon", &eps) || !(eps > 0 && eps < 1))
        return Error(EKV_ERR_INVALID_FILE, "metadata jamba.attention.layer_norm_rms_epsilon is missing or not in (0, 1)");
    rms_eps_ = static_cast<float>(eps);

    const MetaValue* kv = f.meta.find("jamba.attention.head_count_kv");
    if (!kv || (kv->type == MetaType::ARRAY && kv->ints.size() != static_cast<size_t>(n_layers)))
        return Error(EKV_ERR_INVALID_FILE,
                     "metadata jamba.attention.head_count_kv must hold one count per layer (%d; 0 = Mamba layer)",
                     n_layers);
    layers_.resize(static_cast<size_t>(n_layers));
    int32_t n_kv = 0;
    for (int32_t i = 0; i < n_layers; ++i) {
        const int64_t c = kv->type == MetaType::ARRAY ? kv->ints[static_cast<size_t>(i)] : kv->i;
        if (c < 0 || c > n_heads || (c > 0 && n_heads % c != 0) || (c > 0 && n_kv > 0 && c != n_kv))
            return Error(EKV_ERR_UNSUPPORTED,
                         "jamba.attention.head_count_kv[%d] = %lld: attention layers must share one KV head count "
                         "dividing head_count %d",
                         i, static_cast<long long>(c), n_heads);
        if (c > 0) n_kv = static_cast<int32_t>(c);
        layers_[static_cast<size_t>(i)].attention = c > 0;
    }
    info_.head_dim = mamba_.n_embd / n_heads;
    if (info_.head_dim * n_heads != mamba_.n_embd)
        return Error(EKV_ERR_INVALID_FILE, "embedding_length %d is not divisible by head_count %d", mamba_.n_embd,
                     n_heads);
    info_.n_layers = n_layers;
    info_.n_heads = n_heads;
    info_.n_kv_heads = n_kv;
    info_.n_embd = mamba_.n_embd;
    info_.context_length = context;
    for (JambaLayer& l : layers_)
        l.moe = f.find_tensor("blk." + std::to_string(&l - layers_.data()) + ".ffn_gate_inp.weight") != nullptr;
    moe_.n_embd = mamba_.n_embd;
    moe_.n_ff = info_.n_ff;
    if (std::any_of(layers_.begin(), layers_.end(), [](const JambaLayer& l) { return l.moe; })) {
        EKV_TRY(read_count(f, "jamba.expert_count", 1, 256, &moe_.n_expert));
        EKV_TRY(read_count(f, "jamba.expert_used_count", 1, moe_.n_expert, &moe_.n_used));
    }
    return Status::Ok();
}

Status Jamba::load_layer(const ModelFile& file, WeightLoader& wl, int32_t il) {
    JambaLayer& l = layers_[static_cast<size_t>(il)];
    const std::string p = "blk." + std::to_string(il) + ".";
    const int64_t n_embd = mamba_.n_embd;
    const BlockDims d = dims();
    EKV_TRY(wl.load(p + "attn_norm.weight", n_embd, 1, &l.attn_norm));
    EKV_TRY(wl.load(p + "ffn_norm.weight", n_embd, 1, &l.ffn_norm));
    if (l.attn_norm.type != DType::F32 || l.ffn_norm.type != DType::F32)
        return Error(EKV_ERR_UNSUPPORTED, "%sattn_norm / ffn_norm weights must be f32", p.c_str());
    if (l.attention) {
        EKV_TRY(load_attention_projections(wl, p, d, &l));
    } else {
        EKV_TRY(load_mamba_mixer(wl, p, mamba_, true, &l.mixer));
    }
    if (l.moe)
        return load_moe(file, backend_, p, moe_, wl, &owners_, &expert_bytes_, &expert_params_, &l.experts);
    return load_ffn_projections(wl, p, d, &l);
}

Status Jamba::init(const ModelFile& file) {
    EKV_TRY(check_mamba_ops(backend_, "jamba"));
    if (!backend_.supports_op(BackendOp::Scale))
        return Error(EKV_ERR_UNSUPPORTED, "the %s backend has no scale kernel, which jamba's experts need",
                     backend_.device().name.c_str());
    EKV_TRY(read_layout(file));
    const TensorRef* emb = file.find_tensor("token_embd.weight");
    if (!emb) return Error(EKV_ERR_INVALID_FILE, "missing tensor token_embd.weight");
    if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return Error(EKV_ERR_INVALID_FILE, "token_embd.weight has an invalid shape");
    info_.n_vocab = static_cast<int32_t>(emb->ne[1]);

    WeightLoader wl(file, backend_, &owners_);
    EKV_TRY(wl.load("token_embd.weight", mamba_.n_embd, info_.n_vocab, &tok_embd_));
    EKV_TRY(wl.load("output_norm.weight", mamba_.n_embd, 1, &output_norm_));
    if (file.find_tensor("output.weight")) {
        EKV_TRY(wl.load("output.weight", mamba_.n_embd, info_.n_vocab, &output_));
    } else {
        output_ = tok_embd_;  // tied embeddings
    }
    if (output_norm_.type != DType::F32) return Error(EKV_ERR_UNSUPPORTED, "output_norm.weight must be f32");
    if (!backend_.supports_weight(tok_embd_.type))
        return Error(EKV_ERR_UNSUPPORTED, "token_embd.weight: type %s not supported", dtype_name(tok_embd_.type));
    for (int32_t il = 0; il < info_.n_layers; ++il) EKV_TRY(load_layer(file, wl, il));
    const int64_t k_max = std::max<int64_t>({mamba_.n_embd, mamba_.d_inner, info_.n_ff,
                                             static_cast<int64_t>(info_.n_heads) * info_.head_dim});
    EKV_TRY(backend_.reserve_scratch(k_max, kBatch));

    identity_rope_.n_heads = info_.n_heads;
    identity_rope_.head_dim = info_.head_dim;
    identity_rope_.rope_dim = 0;
    identity_rope_.inv_freq = &no_rotation_;
    file.meta.get_string("general.architecture", &info_.architecture);
    file.meta.get_string("general.name", &info_.name);
    info_.n_params = wl.total_params() + expert_params_;
    info_.weight_bytes = wl.total_bytes() + expert_bytes_;
    // A step reads n_used of each layer's n_expert equally sized experts.
    const uint64_t active_experts =
        moe_.n_expert > 0 ? expert_bytes_ / static_cast<uint64_t>(moe_.n_expert) * static_cast<uint64_t>(moe_.n_used) : 0;
    info_.decode_weight_bytes =
        decode_weight_bytes(wl.total_bytes(), tok_embd_, !file.find_tensor("output.weight")) + active_experts;
    return Status::Ok();
}

Status Jamba::check_cache(ekv_cache_type type) const {
    switch (type) {
        case EKV_CACHE_HYBRID_MAMBA: return Status::Ok();
        case EKV_CACHE_MAMBA:
            return Error(EKV_ERR_UNSUPPORTED,
                         "cache type 'mamba' keeps recurrent state only; %s also has attention layers, use "
                         "'hybrid_mamba' or 'auto'",
                         info_.architecture.c_str());
        default:
            return Error(EKV_ERR_UNSUPPORTED,
                         "cache type '%s' keeps attention KV only; %s also has Mamba layers, use 'hybrid_mamba' or "
                         "'auto' (its attention KV takes max_cache_len, dtype and offload)",
                         ekv_cache_type_name(type), info_.architecture.c_str());
    }
}

Status Jamba::create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const {
    std::unique_ptr<JambaWorkspace> ws(new (std::nothrow) JambaWorkspace());
    if (!ws) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate workspace");
    ActivationArena arena;
    ws->add_to(arena, dims(), kBatch);
    ws->mixer.add_to(arena, kBatch, mamba_);
    if (moe_.n_expert > 0) {
        ws->moe.add_to(arena, kBatch, moe_);
        ws->moe.size_host(kBatch, moe_);
    }
    EKV_TRY(ws->finish(arena, stream, kBatch));
    *out = std::move(ws);
    return Status::Ok();
}

void Jamba::forward_chunk(Cache& cache, JambaWorkspace& ws, const int32_t* tokens, int32_t n,
                          int32_t first_pos) const {
    Backend& be = *ws.stream;
    for (int32_t i = 0; i < n; ++i) ws.positions[static_cast<size_t>(i)] = first_pos + i;
    Tensor x = ws.x.row_range(0, n), h = ws.h.row_range(0, n), proj = ws.proj.row_range(0, n);
    Tensor q = ws.q.row_range(0, n), k = ws.k.row_range(0, n), v = ws.v.row_range(0, n);
    Tensor att = ws.att.row_range(0, n), gate = ws.gate.row_range(0, n), up = ws.up.row_range(0, n);
    AttentionParams ap;
    ap.n_heads = info_.n_heads;
    ap.n_kv_heads = info_.n_kv_heads;
    ap.head_dim = info_.head_dim;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(info_.head_dim));
    ap.rope = &identity_rope_;

    be.get_rows(tok_embd_, tokens, n, x);
    for (int32_t il = 0; il < info_.n_layers; ++il) {
        if (ws.cancel.raised()) return;  // stopped: the chunk is never committed
        const JambaLayer& l = layers_[static_cast<size_t>(il)];
        be.rms_norm(x, l.attn_norm, rms_eps_, h);
        if (l.attention) {
            be.matmul(l.wq, h, q);
            be.matmul(l.wk, h, k);
            be.matmul(l.wv, h, v);
            cache.store(be, il, k, v);
            be.attention(q, ws.positions.data(), cache.view(il, n), ap, att);
            be.matmul(l.wo, att, proj);
        } else {
            RecurrentState st;
            cache.recurrent_state(il, &st);  // checked by forward()
            mamba_mixer_forward(be, l.mixer, mamba_, st, h, n, rms_eps_, ws.mixer, proj);
        }
        be.add(x, proj, x);
        be.rms_norm(x, l.ffn_norm, rms_eps_, h);
        if (l.moe) {
            moe_forward(be, l.experts, moe_, h, n, ws.moe, x);
        } else {
            be.matmul(l.gate, h, gate);
            be.matmul(l.up, h, up);
            be.silu_mul(gate, up, gate);
            be.matmul(l.down, gate, proj);
            be.add(x, proj, x);
        }
    }
}

Status Jamba::forward(Cache& cache, Workspace& wsb, const ForwardRequest& req) const {
    JambaWorkspace& ws = static_cast<JambaWorkspace&>(wsb);
    RecurrentState probe;
    for (int32_t il = 0; il < info_.n_layers; ++il) {
        if (!layers_[static_cast<size_t>(il)].attention && !cache.recurrent_state(il, &probe))
            return Error(EKV_ERR_INVALID_STATE, "cache type '%s' holds no recurrent state for layer %d of %s",
                         ekv_cache_type_name(cache.type()), il, info_.architecture.c_str());
    }
    const int32_t n_vocab = info_.n_vocab;
    return run_chunked_forward(
        ws, cache, req, kBatch, n_vocab,
        [&](const int32_t* toks, int32_t n, int32_t first_pos) { forward_chunk(cache, ws, toks, n, first_pos); },
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

Status create_jamba(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out) {
    return make_architecture<Jamba>(file, out, backend);
}

}  // namespace ekv
