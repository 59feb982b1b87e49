// Gemma 2 and Gemma 3: a Llama-like decoder with GeGLU feed-forward, RMSNorm
// before and after both the attention and the FFN, an embedding scaled by
// sqrt(n_embd), NeoX-style RoPE (GGUF keeps Gemma's Q/K rows unpermuted), and
// local sliding-window layers interleaved with global ones. Gemma 2 soft-caps
// attention scores and final logits; Gemma 3 normalizes each query and key
// head and gives local layers their own RoPE base.
//
// GGUF conventions (llama.cpp's converter): norm weights hold 1 + w, so the
// plain RMSNorm applies; the layer pattern is not stored: every 2nd layer is
// global in Gemma 2 (odd layers), every 6th in Gemma 3 (layers 5, 11, ...),
// unless "<arch>.attention.sliding_window_pattern" says otherwise.
#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "model/arch_common.h"
#include "model/model.h"

namespace ekv {
namespace {

constexpr int32_t kBatch = 128;  // tokens per forward chunk (prefill)
constexpr float kGemma3LocalRopeBase = 10000.0f;

struct GemmaLayer : AttentionProjections, FfnProjections {
    Tensor attn_norm, q_norm, k_norm, post_attn_norm;
    Tensor ffn_norm, post_ffn_norm;
    bool local = false;  // sliding-window attention
};

using GemmaWorkspace = BlockWorkspace;

class Gemma final : public Architecture {
public:
    Gemma(Backend& backend, int version) : backend_(backend), version_(version) {}
    Status init(const ModelFile& file);

    const ModelInfo& info() const override { return info_; }
    CacheShape cache_shape() const override;
    ekv_cache_type natural_cache() const override { return EKV_CACHE_HYBRID; }
    Status check_cache(ekv_cache_type type) const override;
    Status create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const override;
    Status forward(Cache& cache, Workspace& ws, const ForwardRequest& req) const override;

private:
    Status read_gemma_hparams(const ModelFile& file);
    Status read_layer_pattern(const ModelFile& file);
    Status check_backend() const;
    void forward_chunk(Cache& cache, GemmaWorkspace& ws, const int32_t* tokens, int32_t n, int32_t first_pos) const;
    void restrict_to_local_window(KvView& view) const;
    BlockDims dims() const {
        return block_dims(hp_.n_embd, hp_.n_heads, hp_.n_kv_heads, hp_.head_dim, hp_.n_ff, hp_.n_vocab);
    }
    void per_head_norm(Backend& be, Tensor& x, int32_t n_heads, const Tensor& w) const;

    Backend& backend_;
    const int version_;  // 2 or 3
    const std::string arch_ = version_ == 2 ? "gemma2" : "gemma3";
    ModelInfo info_;
    HParams hp_;
    int32_t sliding_window_ = 0;
    float attn_scale_ = 1.0f;
    float attn_softcap_ = 0.0f;
    float final_softcap_ = 0.0f;
    Tensor tok_embd_, output_norm_, output_;
    std::vector<GemmaLayer> layers_;
    std::vector<std::unique_ptr<Buffer>> owners_;
    std::vector<float> inv_freq_global_, inv_freq_local_;
    float attn_factor_ = 1.0f;
};

Status Gemma::read_gemma_hparams(const ModelFile& file) {
    EKV_TRY(read_llama_hparams(file, arch_, &hp_));
    const std::string a = arch_ + ".";
    int64_t window = 0;
    if (!file.meta.get_int(a + "attention.sliding_window", &window))
        return Error(EKV_ERR_INVALID_FILE, "missing metadata %sattention.sliding_window (Gemma's local attention)",
                     a.c_str());
    if (window < 1 || window > (1 << 24))
        return Error(EKV_ERR_INVALID_FILE, "%sattention.sliding_window = %lld is out of range", a.c_str(),
                     static_cast<long long>(window));
    sliding_window_ = static_cast<int32_t>(window);
    // Queries are scaled by 1/sqrt(query_pre_attn_scalar): head_dim, except
    // Gemma 2 27B (46 layers), trained with n_embd / n_heads (as llama.cpp).
    double scalar = hp_.head_dim;
    if (version_ == 2 && hp_.n_layers == 46) scalar = static_cast<double>(hp_.n_embd) / hp_.n_heads;
    file.meta.get_float(a + "attention.query_pre_attn_scalar", &scalar);
    if (!(scalar > 0 && scalar < 1e6))
        return Error(EKV_ERR_INVALID_FILE, "query_pre_attn_scalar %g is out of range", scalar);
    attn_scale_ = static_cast<float>(1.0 / std::sqrt(scalar));
    double cap = 0.0;
    if (file.meta.get_float(a + "attn_logit_softcapping", &cap)) attn_softcap_ = static_cast<float>(cap);
    cap = 0.0;
    if (file.meta.get_float(a + "final_logit_softcapping", &cap)) final_softcap_ = static_cast<float>(cap);
    if (!(attn_softcap_ >= 0 && attn_softcap_ < 1e6) || !(final_softcap_ >= 0 && final_softcap_ < 1e6))
        return Error(EKV_ERR_INVALID_FILE, "logit soft-capping values must be non-negative");
    return read_layer_pattern(file);
}

Status Gemma::read_layer_pattern(const ModelFile& file) {
    layers_.resize(static_cast<size_t>(hp_.n_layers));
    const std::string key = arch_ + ".attention.sliding_window_pattern";
    const MetaValue* mv = file.meta.find(key);
    int64_t period = version_ == 2 ? 2 : 6;
    if (mv && mv->type == MetaType::ARRAY) {
        // One flag per layer: true for sliding-window layers.
        if (mv->ints.size() != layers_.size())
            return Error(EKV_ERR_INVALID_FILE, "%s has %zu entries for %d layers", key.c_str(), mv->ints.size(),
                         hp_.n_layers);
        for (size_t i = 0; i < layers_.size(); ++i) layers_[i].local = mv->ints[i] != 0;
    } else {
        if (mv && (!file.meta.get_int(key, &period) || period < 1 || period > hp_.n_layers + 1))
            return Error(EKV_ERR_INVALID_FILE, "%s must be a layer period in [1, %d]", key.c_str(), hp_.n_layers + 1);
        // Every period-th layer is global (period 1: all global).
        for (size_t i = 0; i < layers_.size(); ++i)
            layers_[i].local = static_cast<int64_t>(i % static_cast<size_t>(period)) < period - 1;
    }
    return Status::Ok();
}

Status Gemma::check_backend() const {
    for (BackendOp op : {BackendOp::RopeNeox, BackendOp::GeluMul, BackendOp::Scale}) {
        if (!backend_.supports_op(op))
            return Error(EKV_ERR_UNSUPPORTED, "%s needs %s, which the %s backend does not have yet (use the cpu backend)",
                         arch_.c_str(), backend_op_name(op), backend_.device().name.c_str());
    }
    if (attn_softcap_ > 0 && !backend_.supports_op(BackendOp::AttentionSoftcap))
        return Error(EKV_ERR_UNSUPPORTED, "%s needs %s, which the %s backend does not have yet (use the cpu backend)",
                     arch_.c_str(), backend_op_name(BackendOp::AttentionSoftcap), backend_.device().name.c_str());
    return Status::Ok();
}

Status Gemma::init(const ModelFile& file) {
    EKV_TRY(read_gemma_hparams(file));
    EKV_TRY(check_backend());
    EKV_TRY(compute_rope_frequencies(file, hp_, &inv_freq_global_, &attn_factor_));
    inv_freq_local_ = inv_freq_global_;
    if (version_ == 3) {
        // Gemma 3's local layers: base 10000 and no scaling (HF rope_local_base_freq).
        for (int i = 0; i < hp_.rope_dim / 2; ++i)
            inv_freq_local_[static_cast<size_t>(i)] =
                static_cast<float>(std::pow(static_cast<double>(kGemma3LocalRopeBase), -2.0 * i / hp_.rope_dim));
    }
    WeightLoader wl(file, backend_, &owners_);
    const BlockDims d = dims();
    EKV_TRY(wl.load("token_embd.weight", hp_.n_embd, hp_.n_vocab, &tok_embd_));
    EKV_TRY(wl.load("output_norm.weight", hp_.n_embd, 1, &output_norm_));
    if (file.find_tensor("output.weight")) {
        EKV_TRY(wl.load("output.weight", hp_.n_embd, hp_.n_vocab, &output_));
    } else {
        output_ = tok_embd_;  // tied embeddings (every released Gemma)
    }
    std::vector<const Tensor*> norms = {&output_norm_};
    for (int32_t i = 0; i < hp_.n_layers; ++i) {
        GemmaLayer& l = layers_[static_cast<size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        EKV_TRY(wl.load(p + "attn_norm.weight", hp_.n_embd, 1, &l.attn_norm));
        EKV_TRY(load_attention_projections(wl, p, d, &l));
        EKV_TRY(wl.load(p + "post_attention_norm.weight", hp_.n_embd, 1, &l.post_attn_norm));
        EKV_TRY(wl.load(p + "ffn_norm.weight", hp_.n_embd, 1, &l.ffn_norm));
        EKV_TRY(load_ffn_projections(wl, p, d, &l));
        EKV_TRY(wl.load(p + "post_ffw_norm.weight", hp_.n_embd, 1, &l.post_ffn_norm));
        if (version_ == 3) {
            EKV_TRY(wl.load(p + "attn_q_norm.weight", hp_.head_dim, 1, &l.q_norm));
            EKV_TRY(wl.load(p + "attn_k_norm.weight", hp_.head_dim, 1, &l.k_norm));
            norms.push_back(&l.q_norm);
            norms.push_back(&l.k_norm);
        }
        for (const Tensor* t : {&l.attn_norm, &l.post_attn_norm, &l.ffn_norm, &l.post_ffn_norm}) norms.push_back(t);
    }
    for (const Tensor* t : norms)
        if (t->type != DType::F32) return Error(EKV_ERR_UNSUPPORTED, "%s: norm weights must be f32", arch_.c_str());
    if (!backend_.supports_weight(tok_embd_.type))
        return Error(EKV_ERR_UNSUPPORTED, "token_embd.weight: type %s not supported", dtype_name(tok_embd_.type));
    const int64_t k_max = std::max<int64_t>({hp_.n_embd, hp_.n_ff, d.q_out});
    EKV_TRY(backend_.reserve_scratch(k_max, kBatch));
    fill_info(file, hp_, wl.total_bytes(), wl.total_params(), &info_);
    info_.decode_weight_bytes = decode_weight_bytes(wl.total_bytes(), tok_embd_, !file.find_tensor("output.weight"));
    return Status::Ok();
}

CacheShape Gemma::cache_shape() const {
    CacheShape s;
    s.n_layers = info_.n_layers;
    s.n_kv_heads = info_.n_kv_heads;
    s.head_dim = info_.head_dim;
    s.context_length = info_.context_length;
    s.max_chunk = kBatch;
    s.sliding_window = sliding_window_;
    for (const GemmaLayer& l : layers_)
        s.layer_kinds.push_back(l.local ? LayerKind::SlidingAttention : LayerKind::Attention);
    return s;
}

Status Gemma::check_cache(ekv_cache_type type) const {
    switch (type) {
        case EKV_CACHE_MAMBA:
        case EKV_CACHE_HYBRID_MAMBA:
            return Error(EKV_ERR_UNSUPPORTED, "cache type '%s' needs recurrent (Mamba) layers; %s has none",
                         ekv_cache_type_name(type), arch_.c_str());
        case EKV_CACHE_ENCODER_DECODER:
            return Error(EKV_ERR_UNSUPPORTED, "cache type 'encoder_decoder' needs an encoder-decoder model; %s is decoder-only",
                         arch_.c_str());
        case EKV_CACHE_HYBRID: {
            const bool any_local =
                std::any_of(layers_.begin(), layers_.end(), [](const GemmaLayer& l) { return l.local; });
            if (!any_local)
                return Error(EKV_ERR_UNSUPPORTED, "cache type 'hybrid' needs sliding-window layers; this %s has none",
                             arch_.c_str());
            return Status::Ok();
        }
        default:
            return Status::Ok();
    }
}

Status Gemma::create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const {
    std::unique_ptr<GemmaWorkspace> ws(new (std::nothrow) GemmaWorkspace());
    if (!ws) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate workspace");
    ActivationArena arena;
    ws->add_to(arena, dims(), kBatch);
    EKV_TRY(ws->finish(arena, stream, kBatch));
    *out = std::move(ws);
    return Status::Ok();
}

// RMSNorm of every head of x (rows of n_heads * head_dim) with one weight.
void Gemma::per_head_norm(Backend& be, Tensor& x, int32_t n_heads, const Tensor& w) const {
    Tensor heads = x;
    heads.rows = x.rows * n_heads;
    heads.cols = hp_.head_dim;
    heads.row_bytes = static_cast<size_t>(hp_.head_dim) * sizeof(float);
    be.rms_norm(heads, w, hp_.rms_eps, heads);
}

// Local layers see the model's window whatever the cache keeps (a dynamic
// cache holds everything; a ring may be wider), sink tokens included. A sink
// at position s is scored from min(p, P) (P: the view's pinned query
// position), so it is in the window iff min(p, P) - s < W. Sinks before
// P - W + 1 are then out of it for every query p >= P, and for p < P the
// rule is the plain p - s < W: they become an unpinned segment with the
// model's window. The other sinks stay pinned (always inside it). Without
// this a sink cache showed every local layer its sinks, so it differed
// from a dynamic cache even before it dropped a token.
void Gemma::restrict_to_local_window(KvView& view) const {
    const int32_t w = sliding_window_;
    if (view.window <= 0 || view.window > w) view.window = w;
    if (view.n_segments == 0 || !view.seg[0].pinned) return;
    KvSegment& sinks = view.seg[0];
    const int32_t far = std::min(sinks.n_tokens, view.pinned_query_pos - w + 1);
    if (far <= 0) return;
    if (far == sinks.n_tokens) {
        sinks.pinned = false;
        sinks.window = w;
        return;
    }
    if (view.n_segments == KvView::kMaxSegments) return;  // a KvCache view has at most 5
    for (int s = view.n_segments; s > 0; --s) view.seg[s] = view.seg[s - 1];
    ++view.n_segments;
    KvSegment& outside = view.seg[0];
    outside.pinned = false;
    outside.window = w;
    outside.n_tokens = far;
    KvSegment& near = view.seg[1];
    near.skip += far;
    near.first_pos += far;
    near.n_tokens -= far;
}

void Gemma::forward_chunk(Cache& cache, GemmaWorkspace& ws, const int32_t* tokens, int32_t n,
                          int32_t first_pos) const {
    Backend& be = *ws.stream;
    for (int32_t i = 0; i < n; ++i) ws.positions[static_cast<size_t>(i)] = first_pos + i;
    Tensor x = ws.x.row_range(0, n), h = ws.h.row_range(0, n), q = ws.q.row_range(0, n);
    Tensor k = ws.k.row_range(0, n), v = ws.v.row_range(0, n), att = ws.att.row_range(0, n);
    Tensor proj = ws.proj.row_range(0, n), gate = ws.gate.row_range(0, n), up = ws.up.row_range(0, n);

    RopeParams rope_q[2];  // [0] global, [1] local layers
    RopeParams rope_k[2];
    for (int local = 0; local < 2; ++local) {
        RopeParams& r = rope_q[local];
        r.n_heads = hp_.n_heads;
        r.head_dim = hp_.head_dim;
        r.rope_dim = hp_.rope_dim;
        r.inv_freq = local ? inv_freq_local_.data() : inv_freq_global_.data();
        r.attn_factor = local ? 1.0f : attn_factor_;
        r.neox = true;
        rope_k[local] = r;
        rope_k[local].n_heads = hp_.n_kv_heads;
    }
    AttentionParams ap;
    ap.n_heads = hp_.n_heads;
    ap.n_kv_heads = hp_.n_kv_heads;
    ap.head_dim = hp_.head_dim;
    ap.scale = attn_scale_;
    ap.softcap = attn_softcap_;

    be.get_rows(tok_embd_, tokens, n, x);
    be.scale(x, std::sqrt(static_cast<float>(hp_.n_embd)), x);
    for (int32_t il = 0; il < hp_.n_layers; ++il) {
        if (ws.cancel.raised()) return;  // stopped: the chunk is never committed
        const GemmaLayer& l = layers_[static_cast<size_t>(il)];
        const int local = l.local ? 1 : 0;
        be.rms_norm(x, l.attn_norm, hp_.rms_eps, h);
        be.matmul(l.wq, h, q);
        be.matmul(l.wk, h, k);
        be.matmul(l.wv, h, v);
        if (version_ == 3) {
            per_head_norm(be, q, hp_.n_heads, l.q_norm);
            per_head_norm(be, k, hp_.n_kv_heads, l.k_norm);
        }
        be.rope(q, ws.positions.data(), rope_q[local]);
        be.rope(k, ws.positions.data(), rope_k[local]);
        cache.store(be, il, k, v);
        KvView view = cache.view(il, n);
        if (l.local) restrict_to_local_window(view);
        ap.rope = &rope_k[local];
        be.attention(q, ws.positions.data(), view, ap, att);
        be.matmul(l.wo, att, proj);
        be.rms_norm(proj, l.post_attn_norm, hp_.rms_eps, proj);
        be.add(x, proj, x);
        be.rms_norm(x, l.ffn_norm, hp_.rms_eps, h);
        be.matmul(l.gate, h, gate);
        be.matmul(l.up, h, up);
        be.gelu_mul(gate, up, gate);
        be.matmul(l.down, gate, proj);
        be.rms_norm(proj, l.post_ffn_norm, hp_.rms_eps, proj);
        be.add(x, proj, x);
    }
}

Status Gemma::forward(Cache& cache, Workspace& wsb, const ForwardRequest& req) const {
    GemmaWorkspace& ws = static_cast<GemmaWorkspace&>(wsb);
    EKV_TRY(run_chunked_forward(
        ws, cache, req, kBatch, hp_.n_vocab,
        [&](const int32_t* toks, int32_t n, int32_t first_pos) { forward_chunk(cache, ws, toks, n, first_pos); },
        [&](int32_t first_row, int32_t rows) {
            Tensor xr = ws.x.row_range(first_row, rows);
            Tensor hr = ws.h.row_range(0, rows);
            Tensor lg = ws.logits.row_range(0, rows);
            ws.stream->rms_norm(xr, output_norm_, hp_.rms_eps, hr);
            ws.stream->matmul(output_, hr, lg);
            return lg;
        }));
    if (final_softcap_ > 0) {
        // Gemma 2's final soft-capping, on the host rows handed out.
        const size_t n = static_cast<size_t>(req.all_logits ? req.n_tokens : 1) * hp_.n_vocab;
        const float inv = 1.0f / final_softcap_;
        for (size_t i = 0; i < n; ++i) req.logits[i] = final_softcap_ * std::tanh(req.logits[i] * inv);
    }
    return Status::Ok();
}

}  // namespace

Status create_gemma(const ModelFile& file, Backend& backend, int version, std::unique_ptr<Architecture>* out) {
    return make_architecture<Gemma>(file, out, backend, version);
}

}  // namespace ekv
