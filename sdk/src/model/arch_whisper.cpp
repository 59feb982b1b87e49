// Whisper (encoder-decoder speech recognition), as HF's
// WhisperForConditionalGeneration computes it. The encoder: two 1-D
// convolutions with GELU over the log-mel frames (the second halves the
// time axis), positional embeddings, pre-LayerNorm transformer layers with
// full self-attention, a final LayerNorm. Its output becomes each decoder
// layer's cross-attention K/V in the cache (encode). The decoder: token +
// learned positional embeddings, layers of causal self-attention,
// cross-attention and a GELU FFN, a final LayerNorm, logits through the tied
// token embedding. GGUF naming: tools/gen_tiny_whisper.py.
#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "model/arch_common.h"
#include "model/model.h"

namespace ekv {
namespace {

constexpr int32_t kBatch = 64;  // decoder tokens per forward chunk
constexpr int32_t kConvKernel = 3;

struct WhisperHParams {
    int32_t n_embd = 0, n_mel = 0, n_audio_ctx = 0, n_text_ctx = 0, n_vocab = 0;
    int32_t enc_layers = 0, enc_heads = 0, enc_ff = 0;
    int32_t dec_layers = 0, dec_heads = 0, dec_ff = 0;
    float eps = 1e-5f;
};

struct Linear {  // y = x W^T (+ b)
    Tensor w, b;
    bool has_bias = false;
};
struct Norm {
    Tensor w, b;
};
struct AttentionWeights {
    Linear q, k, v, o;
};
struct EncoderLayer {
    Norm attn_norm, ffn_norm;
    AttentionWeights attn;
    Linear up, down;
};
struct DecoderLayer {
    Norm attn_norm, cross_norm, ffn_norm;
    AttentionWeights self, cross;
    Linear up, down;
};

class WhisperWorkspace final : public Workspace {
public:
    std::unique_ptr<Buffer> mem;
    Tensor x, h, q, k, v, att, proj, ff, logits;
    std::vector<int32_t> positions, cross_positions;
};

// The encoder's activations, allocated for one encode call (an audio input,
// not a token: the per-token path stays allocation-free).
struct EncoderActivations {
    std::unique_ptr<Buffer> mem;
    Tensor mel, cols1, conv1, cols2, x, h, q, k, v, att, proj, ff;
};

Status read_dim(const ModelFile& f, const std::string& key, int64_t lo, int64_t hi, int32_t* out) {
    int64_t v = 0;
    if (!f.meta.get_int(key, &v)) return Error(EKV_ERR_INVALID_FILE, "missing or non-integer metadata %s", key.c_str());
    if (v < lo || v > hi)
        return Error(EKV_ERR_INVALID_FILE, "metadata %s = %lld is out of range [%lld, %lld]", key.c_str(),
                     static_cast<long long>(v), static_cast<long long>(lo), static_cast<long long>(hi));
    *out = static_cast<int32_t>(v);
    return Status::Ok();
}

Status read_hparams(const ModelFile& f, WhisperHParams* hp) {
    EKV_TRY(read_dim(f, "whisper.embedding_length", 2, 1 << 14, &hp->n_embd));
    EKV_TRY(read_dim(f, "whisper.encoder.block_count", 1, 256, &hp->enc_layers));
    EKV_TRY(read_dim(f, "whisper.encoder.attention.head_count", 1, 256, &hp->enc_heads));
    EKV_TRY(read_dim(f, "whisper.encoder.feed_forward_length", 1, 1 << 16, &hp->enc_ff));
    EKV_TRY(read_dim(f, "whisper.encoder.context_length", 1, 1 << 16, &hp->n_audio_ctx));
    EKV_TRY(read_dim(f, "whisper.encoder.mel_bins", 1, 256, &hp->n_mel));
    EKV_TRY(read_dim(f, "whisper.decoder.block_count", 1, 256, &hp->dec_layers));
    EKV_TRY(read_dim(f, "whisper.decoder.attention.head_count", 1, 256, &hp->dec_heads));
    EKV_TRY(read_dim(f, "whisper.decoder.feed_forward_length", 1, 1 << 16, &hp->dec_ff));
    EKV_TRY(read_dim(f, "whisper.decoder.context_length", 1, 1 << 16, &hp->n_text_ctx));
    for (int32_t heads : {hp->enc_heads, hp->dec_heads}) {
        if (hp->n_embd % heads != 0 || hp->n_embd / heads > 512)
            return Error(EKV_ERR_UNSUPPORTED, "embedding_length %d over %d heads is not supported (head dim <= 512)",
                         hp->n_embd, heads);
    }
    double eps = 1e-5;
    f.meta.get_float("whisper.attention.layer_norm_epsilon", &eps);
    if (!(eps > 0 && eps < 1)) return Error(EKV_ERR_INVALID_FILE, "layer_norm_epsilon %g is out of range", eps);
    hp->eps = static_cast<float>(eps);
    const TensorRef* emb = f.find_tensor("dec.token_embd.weight");
    if (!emb) return Error(EKV_ERR_INVALID_FILE, "missing tensor dec.token_embd.weight");
    if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return Error(EKV_ERR_INVALID_FILE, "dec.token_embd.weight has an invalid shape");
    hp->n_vocab = static_cast<int32_t>(emb->ne[1]);
    return Status::Ok();
}

// Whisper's fixed positional embedding: [sin(p * f_i) | cos(p * f_i)] with
// f_i = 10000^(-i / (d/2 - 1)), as HF's sinusoids().
std::vector<float> whisper_sinusoids(int32_t positions, int32_t channels) {
    const int32_t half = channels / 2;
    const double step = std::log(10000.0) / std::max(half - 1, 1);
    std::vector<float> out(static_cast<size_t>(positions) * channels);
    for (int32_t p = 0; p < positions; ++p) {
        for (int32_t i = 0; i < half; ++i) {
            const float inv = static_cast<float>(std::exp(-step * i));  // f32 like torch
            const float angle = static_cast<float>(p) * inv;
            out[static_cast<size_t>(p) * channels + i] = std::sin(angle);
            out[static_cast<size_t>(p) * channels + half + i] = std::cos(angle);
        }
    }
    return out;
}

// Copies host floats into rows of a backend tensor through a host buffer.
Status upload(Backend& be, const float* src, size_t n_floats, const Tensor& dst) {
    std::unique_ptr<Buffer> staging;
    const size_t bytes = n_floats * sizeof(float);
    EKV_TRY(be.alloc(bytes, Placement::Host, &staging));
    std::copy(src, src + n_floats, static_cast<float*>(staging->host()));
    be.copy_bytes(*staging, 0, *dst.buffer, dst.offset, bytes);
    be.synchronize();
    return be.take_error();
}

class Whisper final : public Architecture {
public:
    explicit Whisper(Backend& backend) : backend_(backend) {}
    Status init(const ModelFile& file);

    const ModelInfo& info() const override { return info_; }
    CacheShape cache_shape() const override {
        CacheShape s;
        s.n_layers = hp_.dec_layers;
        s.n_kv_heads = hp_.dec_heads;
        s.head_dim = hp_.n_embd / hp_.dec_heads;
        s.context_length = hp_.n_text_ctx;
        s.max_chunk = kBatch;
        s.cross_len = hp_.n_audio_ctx;
        return s;
    }
    ekv_cache_type natural_cache() const override { return EKV_CACHE_ENCODER_DECODER; }
    Status check_cache(ekv_cache_type type) const override;
    Status create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const override;
    Status forward(Cache& cache, Workspace& ws, const ForwardRequest& req) const override;
    Status encode(Cache& cache, Workspace& ws, const float* mel, int32_t n_mel, int32_t n_frames) const override;

private:
    Status load_linear(WeightLoader& wl, const std::string& name, int64_t in, int64_t out, bool bias, Linear* l);
    Status load_norm(WeightLoader& wl, const std::string& name, Norm* n);
    Status load_attention(WeightLoader& wl, const std::string& prefix, AttentionWeights* a);
    Status load_encoder_positions(const ModelFile& file, WeightLoader& wl);
    void linear(Backend& be, const Linear& l, const Tensor& x, Tensor& out) const;
    AttentionParams attention_params(int32_t heads) const;
    void run_encoder(Backend& be, const CancelSet& cancel, EncoderActivations& a, Cache& cache) const;
    void decoder_chunk(Cache& cache, WhisperWorkspace& ws, const int32_t* tokens, int32_t n, int32_t first_pos) const;

    Backend& backend_;
    ModelInfo info_;
    WhisperHParams hp_;
    Linear conv1_, conv2_;
    Tensor enc_positions_;  // F32 [n_audio_ctx x n_embd]
    std::vector<EncoderLayer> enc_;
    Norm enc_norm_;
    Tensor tok_embd_, dec_positions_, output_;
    std::vector<DecoderLayer> dec_;
    Norm dec_norm_;
    std::vector<std::unique_ptr<Buffer>> owners_;
    float no_rope_ = 0.f;  // sink caches want RoPE parameters; Whisper rotates nothing
};

Status Whisper::load_linear(WeightLoader& wl, const std::string& name, int64_t in, int64_t out, bool bias,
                            Linear* l) {
    EKV_TRY(wl.load(name + ".weight", in, out, &l->w));
    if (!backend_.supports_weight(l->w.type))
        return Error(EKV_ERR_UNSUPPORTED, "%s.weight: type %s is not supported", name.c_str(), dtype_name(l->w.type));
    l->has_bias = bias;
    if (!bias) return Status::Ok();
    EKV_TRY(wl.load(name + ".bias", out, 1, &l->b));
    if (l->b.type != DType::F32) return Error(EKV_ERR_UNSUPPORTED, "%s.bias must be f32", name.c_str());
    return Status::Ok();
}

Status Whisper::load_norm(WeightLoader& wl, const std::string& name, Norm* n) {
    EKV_TRY(wl.load(name + ".weight", hp_.n_embd, 1, &n->w));
    EKV_TRY(wl.load(name + ".bias", hp_.n_embd, 1, &n->b));
    if (n->w.type != DType::F32 || n->b.type != DType::F32)
        return Error(EKV_ERR_UNSUPPORTED, "%s weight and bias must be f32", name.c_str());
    return Status::Ok();
}

Status Whisper::load_attention(WeightLoader& wl, const std::string& prefix, AttentionWeights* a) {
    const int64_t d = hp_.n_embd;
    EKV_TRY(load_linear(wl, prefix + "_q", d, d, true, &a->q));
    EKV_TRY(load_linear(wl, prefix + "_k", d, d, false, &a->k));  // Whisper's key projection has no bias
    EKV_TRY(load_linear(wl, prefix + "_v", d, d, true, &a->v));
    return load_linear(wl, prefix + "_output", d, d, true, &a->o);
}

// Stored (any type, made F32 once here) or Whisper's sinusoids when absent.
Status Whisper::load_encoder_positions(const ModelFile& file, WeightLoader& wl) {
    std::unique_ptr<Buffer> buf;
    EKV_TRY(backend_.alloc(static_cast<size_t>(hp_.n_audio_ctx) * hp_.n_embd * sizeof(float), Placement::Device, &buf));
    Tensor& t = enc_positions_;
    t.type = DType::F32;
    t.rows = hp_.n_audio_ctx;
    t.cols = hp_.n_embd;
    t.row_bytes = static_cast<size_t>(hp_.n_embd) * sizeof(float);
    t.buffer = buf.get();
    t.data = buf->host();
    owners_.push_back(std::move(buf));
    if (file.find_tensor("enc.position_embd.weight")) {
        Tensor stored;
        EKV_TRY(wl.load("enc.position_embd.weight", hp_.n_embd, hp_.n_audio_ctx, &stored));
        std::vector<int32_t> rows(static_cast<size_t>(hp_.n_audio_ctx));
        for (int32_t i = 0; i < hp_.n_audio_ctx; ++i) rows[static_cast<size_t>(i)] = i;
        backend_.get_rows(stored, rows.data(), hp_.n_audio_ctx, t);
        backend_.synchronize();
        return backend_.take_error();
    }
    const std::vector<float> sin = whisper_sinusoids(hp_.n_audio_ctx, hp_.n_embd);
    return upload(backend_, sin.data(), sin.size(), t);
}

Status Whisper::init(const ModelFile& file) {
    EKV_TRY(read_hparams(file, &hp_));
    for (BackendOp op : {BackendOp::LayerNorm, BackendOp::GeluErf, BackendOp::AddBias, BackendOp::Im2Col1d}) {
        if (!backend_.supports_op(op))
            return Error(EKV_ERR_UNSUPPORTED, "Whisper needs the %s op, which the %s backend lacks",
                         backend_op_name(op), backend_.device().name.c_str());
    }
    WeightLoader wl(file, backend_, &owners_);
    const int64_t d = hp_.n_embd;
    EKV_TRY(load_linear(wl, "enc.conv1", static_cast<int64_t>(hp_.n_mel) * kConvKernel, d, true, &conv1_));
    EKV_TRY(load_linear(wl, "enc.conv2", d * kConvKernel, d, true, &conv2_));
    EKV_TRY(load_encoder_positions(file, wl));
    enc_.resize(static_cast<size_t>(hp_.enc_layers));
    for (int32_t i = 0; i < hp_.enc_layers; ++i) {
        EncoderLayer& l = enc_[static_cast<size_t>(i)];
        const std::string p = "enc.blk." + std::to_string(i) + ".";
        EKV_TRY(load_norm(wl, p + "attn_norm", &l.attn_norm));
        EKV_TRY(load_attention(wl, p + "attn", &l.attn));
        EKV_TRY(load_norm(wl, p + "ffn_norm", &l.ffn_norm));
        EKV_TRY(load_linear(wl, p + "ffn_up", d, hp_.enc_ff, true, &l.up));
        EKV_TRY(load_linear(wl, p + "ffn_down", hp_.enc_ff, d, true, &l.down));
    }
    EKV_TRY(load_norm(wl, "enc.output_norm", &enc_norm_));
    const uint64_t encoder_bytes = wl.total_bytes();
    EKV_TRY(wl.load("dec.token_embd.weight", d, hp_.n_vocab, &tok_embd_));
    EKV_TRY(wl.load("dec.position_embd.weight", d, hp_.n_text_ctx, &dec_positions_));
    for (const Tensor* t : {&tok_embd_, &dec_positions_}) {
        if (!backend_.supports_weight(t->type))
            return Error(EKV_ERR_UNSUPPORTED, "decoder embedding type %s is not supported", dtype_name(t->type));
    }
    dec_.resize(static_cast<size_t>(hp_.dec_layers));
    for (int32_t i = 0; i < hp_.dec_layers; ++i) {
        DecoderLayer& l = dec_[static_cast<size_t>(i)];
        const std::string p = "dec.blk." + std::to_string(i) + ".";
        EKV_TRY(load_norm(wl, p + "attn_norm", &l.attn_norm));
        EKV_TRY(load_attention(wl, p + "attn", &l.self));
        EKV_TRY(load_norm(wl, p + "cross_attn_norm", &l.cross_norm));
        EKV_TRY(load_attention(wl, p + "cross_attn", &l.cross));
        EKV_TRY(load_norm(wl, p + "ffn_norm", &l.ffn_norm));
        EKV_TRY(load_linear(wl, p + "ffn_up", d, hp_.dec_ff, true, &l.up));
        EKV_TRY(load_linear(wl, p + "ffn_down", hp_.dec_ff, d, true, &l.down));
    }
    EKV_TRY(load_norm(wl, "dec.output_norm", &dec_norm_));
    if (file.find_tensor("output.weight")) {
        EKV_TRY(wl.load("output.weight", d, hp_.n_vocab, &output_));
    } else {
        output_ = tok_embd_;  // tied, as every Whisper checkpoint
    }
    // Encoder matmuls run over every frame at once.
    const int64_t k_max = std::max<int64_t>({d * kConvKernel, static_cast<int64_t>(hp_.n_mel) * kConvKernel,
                                             hp_.enc_ff, hp_.dec_ff});
    EKV_TRY(backend_.reserve_scratch(k_max, std::max(2 * hp_.n_audio_ctx, kBatch)));

    HParams common;
    common.n_layers = hp_.dec_layers;
    common.n_embd = hp_.n_embd;
    common.n_heads = hp_.dec_heads;
    common.n_kv_heads = hp_.dec_heads;
    common.head_dim = hp_.n_embd / hp_.dec_heads;
    common.n_ff = hp_.dec_ff;
    common.n_vocab = hp_.n_vocab;
    common.context_length = hp_.n_text_ctx;
    fill_info(file, common, wl.total_bytes(), wl.total_params(), &info_);
    // A decode step reads the decoder (its cross-attention key/value
    // projections included, though they run once per audio) and one row of
    // the position table; the encoder runs once per audio.
    const uint64_t positions = static_cast<uint64_t>(dec_positions_.rows) * dec_positions_.row_bytes;
    info_.decode_weight_bytes = decode_weight_bytes(wl.total_bytes() - encoder_bytes, tok_embd_,
                                                    !file.find_tensor("output.weight")) -
                                positions + dec_positions_.row_bytes;
    return Status::Ok();
}

Status Whisper::check_cache(ekv_cache_type type) const {
    switch (type) {
        case EKV_CACHE_MAMBA:
        case EKV_CACHE_HYBRID_MAMBA:
            return Error(EKV_ERR_UNSUPPORTED, "cache type '%s' needs recurrent (Mamba) layers; whisper has none",
                         ekv_cache_type_name(type));
        case EKV_CACHE_HYBRID:
            return Error(EKV_ERR_UNSUPPORTED,
                         "cache type 'hybrid' needs interleaved local/global attention layers; whisper's decoder has "
                         "global attention only (use encoder_decoder, or a generic type for its self-attention)");
        default: return Status::Ok();
    }
}

Status Whisper::create_workspace(Backend& stream, std::unique_ptr<Workspace>* out) const {
    std::unique_ptr<WhisperWorkspace> ws(new (std::nothrow) WhisperWorkspace());
    if (!ws) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate workspace");
    ActivationArena arena;
    for (Tensor* t : {&ws->x, &ws->h, &ws->q, &ws->k, &ws->v, &ws->att, &ws->proj}) arena.add(t, kBatch, hp_.n_embd);
    arena.add(&ws->ff, kBatch, hp_.dec_ff);
    arena.add(&ws->logits, kBatch, hp_.n_vocab);
    EKV_TRY(arena.allocate(stream, &ws->mem));
    ws->stream = &stream;
    ws->positions.resize(kBatch);
    ws->cross_positions.resize(kBatch);
    *out = std::move(ws);
    return Status::Ok();
}

void Whisper::linear(Backend& be, const Linear& l, const Tensor& x, Tensor& out) const {
    be.matmul(l.w, x, out);
    if (l.has_bias) be.add_bias(out, l.b, out);
}

AttentionParams Whisper::attention_params(int32_t heads) const {
    AttentionParams ap;
    ap.n_heads = heads;
    ap.n_kv_heads = heads;
    ap.head_dim = hp_.n_embd / heads;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(ap.head_dim));
    return ap;
}

void Whisper::run_encoder(Backend& be, const CancelSet& cancel, EncoderActivations& a, Cache& cache) const {
    const int32_t n = hp_.n_audio_ctx;
    be.im2col_1d(a.mel, kConvKernel, 1, 1, a.cols1);
    linear(be, conv1_, a.cols1, a.conv1);
    be.gelu_erf(a.conv1, a.conv1);
    be.im2col_1d(a.conv1, kConvKernel, 2, 1, a.cols2);
    linear(be, conv2_, a.cols2, a.x);
    be.gelu_erf(a.x, a.x);
    be.add(a.x, enc_positions_, a.x);

    // Full self-attention: every query sits at the last position, so the
    // causal op sees all n keys.
    std::vector<int32_t> last(static_cast<size_t>(n), n - 1);
    const AttentionParams ap = attention_params(hp_.enc_heads);
    KvView view;
    view.n_segments = 1;
    view.seg[0].k = a.k;
    view.seg[0].v = a.v;
    view.seg[0].n_tokens = n;
    for (const EncoderLayer& l : enc_) {
        if (cancel.raised()) return;  // the cross KV is never committed
        be.layer_norm(a.x, l.attn_norm.w, l.attn_norm.b, hp_.eps, a.h);
        linear(be, l.attn.q, a.h, a.q);
        linear(be, l.attn.k, a.h, a.k);
        linear(be, l.attn.v, a.h, a.v);
        be.attention(a.q, last.data(), view, ap, a.att);
        linear(be, l.attn.o, a.att, a.proj);
        be.add(a.x, a.proj, a.x);
        be.layer_norm(a.x, l.ffn_norm.w, l.ffn_norm.b, hp_.eps, a.h);
        linear(be, l.up, a.h, a.ff);
        be.gelu_erf(a.ff, a.ff);
        linear(be, l.down, a.ff, a.proj);
        be.add(a.x, a.proj, a.x);
    }
    be.layer_norm(a.x, enc_norm_.w, enc_norm_.b, hp_.eps, a.h);
    for (int32_t il = 0; il < hp_.dec_layers; ++il) {
        const AttentionWeights& cross = dec_[static_cast<size_t>(il)].cross;
        linear(be, cross.k, a.h, a.k);
        linear(be, cross.v, a.h, a.v);
        cache.store_cross(be, il, a.k, a.v);
    }
}

Status Whisper::encode(Cache& cache, Workspace& wsb, const float* mel, int32_t n_mel, int32_t n_frames) const {
    Backend& be = *wsb.stream;
    if (!mel) return Error(EKV_ERR_INVALID_ARGUMENT, "mel is NULL");
    if (n_mel != hp_.n_mel)
        return Error(EKV_ERR_INVALID_ARGUMENT, "the encoder takes %d mel bins, not %d", hp_.n_mel, n_mel);
    if (n_frames != 2 * hp_.n_audio_ctx)
        return Error(EKV_ERR_INVALID_ARGUMENT, "the encoder takes exactly %d mel frames (30 s, padded), not %d",
                     2 * hp_.n_audio_ctx, n_frames);
    EKV_TRY(cache.prepare_cross(hp_.n_audio_ctx));  // refuses caches without cross-attention

    const int32_t n = hp_.n_audio_ctx, d = hp_.n_embd;
    EncoderActivations a;
    ActivationArena arena;
    arena.add(&a.mel, n_frames, n_mel);
    arena.add(&a.cols1, n_frames, static_cast<int64_t>(n_mel) * kConvKernel);
    arena.add(&a.conv1, n_frames, d);
    arena.add(&a.cols2, n, static_cast<int64_t>(d) * kConvKernel);
    for (Tensor* t : {&a.x, &a.h, &a.q, &a.k, &a.v, &a.att, &a.proj}) arena.add(t, n, d);
    arena.add(&a.ff, n, hp_.enc_ff);
    EKV_TRY(arena.allocate(be, &a.mem));
    // [n_mel][frames] (HF's layout) -> one row per frame.
    std::vector<float> frames(static_cast<size_t>(n_frames) * n_mel);
    for (int32_t m = 0; m < n_mel; ++m)
        for (int32_t t = 0; t < n_frames; ++t)
            frames[static_cast<size_t>(t) * n_mel + m] = mel[static_cast<size_t>(m) * n_frames + t];
    EKV_TRY(upload(be, frames.data(), frames.size(), a.mel));

    run_encoder(be, wsb.cancel, a, cache);
    be.synchronize();
    // On failure the cross KV stays empty: the decoder refuses to run.
    EKV_TRY(be.take_error());
    if (wsb.cancel.raised()) return Error(EKV_ERR_CANCELLED, "encoding was cancelled");
    cache.commit_cross(n);
    return Status::Ok();
}

void Whisper::decoder_chunk(Cache& cache, WhisperWorkspace& ws, const int32_t* tokens, int32_t n,
                            int32_t first_pos) const {
    Backend& be = *ws.stream;
    for (int32_t i = 0; i < n; ++i) {
        ws.positions[static_cast<size_t>(i)] = first_pos + i;
        ws.cross_positions[static_cast<size_t>(i)] = cache.cross_len() - 1;  // sees every encoder position
    }
    Tensor x = ws.x.row_range(0, n), h = ws.h.row_range(0, n), q = ws.q.row_range(0, n);
    Tensor k = ws.k.row_range(0, n), v = ws.v.row_range(0, n), att = ws.att.row_range(0, n);
    Tensor proj = ws.proj.row_range(0, n), ff = ws.ff.row_range(0, n);
    // Absolute learned positions: nothing to rotate, even for sink caches.
    RopeParams no_rope;
    no_rope.n_heads = hp_.dec_heads;
    no_rope.head_dim = hp_.n_embd / hp_.dec_heads;
    no_rope.inv_freq = &no_rope_;
    AttentionParams ap = attention_params(hp_.dec_heads);
    const AttentionParams cross_ap = ap;
    ap.rope = &no_rope;

    be.get_rows(tok_embd_, tokens, n, x);
    be.get_rows(dec_positions_, ws.positions.data(), n, h);
    be.add(x, h, x);
    for (int32_t il = 0; il < hp_.dec_layers; ++il) {
        if (ws.cancel.raised()) return;  // stopped: the chunk is never committed
        const DecoderLayer& l = dec_[static_cast<size_t>(il)];
        be.layer_norm(x, l.attn_norm.w, l.attn_norm.b, hp_.eps, h);
        linear(be, l.self.q, h, q);
        linear(be, l.self.k, h, k);
        linear(be, l.self.v, h, v);
        cache.store(be, il, k, v);
        be.attention(q, ws.positions.data(), cache.view(il, n), ap, att);
        linear(be, l.self.o, att, proj);
        be.add(x, proj, x);
        be.layer_norm(x, l.cross_norm.w, l.cross_norm.b, hp_.eps, h);
        linear(be, l.cross.q, h, q);
        be.attention(q, ws.cross_positions.data(), cache.cross_view(il), cross_ap, att);
        linear(be, l.cross.o, att, proj);
        be.add(x, proj, x);
        be.layer_norm(x, l.ffn_norm.w, l.ffn_norm.b, hp_.eps, h);
        linear(be, l.up, h, ff);
        be.gelu_erf(ff, ff);
        linear(be, l.down, ff, proj);
        be.add(x, proj, x);
    }
}

Status Whisper::forward(Cache& cache, Workspace& wsb, const ForwardRequest& req) const {
    if (cache.cross_len() <= 0)
        return Error(EKV_ERR_INVALID_STATE, "the decoder needs the encoder output: call ekv_encode_audio first");
    if (static_cast<int64_t>(req.first_pos) + req.n_tokens > hp_.n_text_ctx)
        return Error(EKV_ERR_CONTEXT_OVERFLOW, "positions %d..%d exceed the decoder's %d positions", req.first_pos,
                     req.first_pos + req.n_tokens - 1, hp_.n_text_ctx);
    WhisperWorkspace& ws = static_cast<WhisperWorkspace&>(wsb);
    const int32_t n_vocab = hp_.n_vocab;
    return run_chunked_forward(
        ws, cache, req, kBatch, n_vocab,
        [&](const int32_t* toks, int32_t n, int32_t first_pos) { decoder_chunk(cache, ws, toks, n, first_pos); },
        [&](int32_t first_row, int32_t rows) {
            Tensor xr = ws.x.row_range(first_row, rows);
            Tensor hr = ws.h.row_range(0, rows);
            Tensor lg = ws.logits.row_range(0, rows);
            ws.stream->layer_norm(xr, dec_norm_.w, dec_norm_.b, hp_.eps, hr);
            ws.stream->matmul(output_, hr, lg);
            return lg;
        });
}

}  // namespace

Status create_whisper(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out) {
    return make_architecture<Whisper>(file, out, backend);
}

}  // namespace ekv
