#include "model/arch_common.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ekv {
namespace {

Status get_required_int(const ModelFile& f, const std::string& key, int64_t lo, int64_t hi, int32_t* out) {
    int64_t v = 0;
    if (!f.meta.get_int(key, &v)) return Error(EKV_ERR_INVALID_FILE, "missing or non-integer metadata %s", key.c_str());
    if (v < lo || v > hi)
        return Error(EKV_ERR_INVALID_FILE, "metadata %s = %lld is out of range [%lld, %lld]", key.c_str(),
                     static_cast<long long>(v), static_cast<long long>(lo), static_cast<long long>(hi));
    *out = static_cast<int32_t>(v);
    return Status::Ok();
}

}  // namespace

Status read_llama_hparams(const ModelFile& f, const std::string& arch, HParams* hp) {
    const std::string a = arch + ".";
    EKV_TRY(get_required_int(f, a + "block_count", 1, 1024, &hp->n_layers));
    EKV_TRY(get_required_int(f, a + "embedding_length", 1, 1 << 16, &hp->n_embd));
    EKV_TRY(get_required_int(f, a + "attention.head_count", 1, 1024, &hp->n_heads));
    EKV_TRY(get_required_int(f, a + "feed_forward_length", 1, 1 << 20, &hp->n_ff));
    EKV_TRY(get_required_int(f, a + "context_length", 1, 1 << 24, &hp->context_length));
    hp->n_kv_heads = hp->n_heads;
    if (f.meta.has(a + "attention.head_count_kv"))
        EKV_TRY(get_required_int(f, a + "attention.head_count_kv", 1, hp->n_heads, &hp->n_kv_heads));
    if (hp->n_heads % hp->n_kv_heads != 0)
        return Error(EKV_ERR_INVALID_FILE, "head_count %d is not a multiple of head_count_kv %d", hp->n_heads,
                     hp->n_kv_heads);
    hp->head_dim = hp->n_embd / hp->n_heads;
    if (f.meta.has(a + "attention.key_length"))
        EKV_TRY(get_required_int(f, a + "attention.key_length", 2, 512, &hp->head_dim));
    if (hp->head_dim * hp->n_heads != hp->n_embd && !f.meta.has(a + "attention.key_length"))
        return Error(EKV_ERR_INVALID_FILE, "embedding_length %d is not divisible by head_count %d", hp->n_embd,
                     hp->n_heads);
    if (hp->head_dim % 2 != 0 || hp->head_dim > 512)
        return Error(EKV_ERR_UNSUPPORTED, "head dimension %d is not supported (even, <= 512)", hp->head_dim);
    hp->rope_dim = hp->head_dim;
    if (f.meta.has(a + "rope.dimension_count"))
        EKV_TRY(get_required_int(f, a + "rope.dimension_count", 2, hp->head_dim, &hp->rope_dim));
    if (hp->rope_dim % 2 != 0) return Error(EKV_ERR_INVALID_FILE, "rope.dimension_count %d is odd", hp->rope_dim);

    double eps = 1e-5, base = 10000.0;
    if (!f.meta.get_float(a + "attention.layer_norm_rms_epsilon", &eps))
        return Error(EKV_ERR_INVALID_FILE, "missing metadata %sattention.layer_norm_rms_epsilon", a.c_str());
    f.meta.get_float(a + "rope.freq_base", &base);
    if (!(eps > 0 && eps < 1)) return Error(EKV_ERR_INVALID_FILE, "rms epsilon %g is out of range", eps);
    if (!(base > 1 && base < 1e12)) return Error(EKV_ERR_INVALID_FILE, "rope.freq_base %g is out of range", base);
    hp->rms_eps = static_cast<float>(eps);
    hp->rope_base = static_cast<float>(base);

    // Vocabulary size: the embedding table is the authority.
    const TensorRef* emb = f.find_tensor("token_embd.weight");
    if (!emb) return Error(EKV_ERR_INVALID_FILE, "missing tensor token_embd.weight");
    if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return Error(EKV_ERR_INVALID_FILE, "token_embd.weight has an invalid shape");
    hp->n_vocab = static_cast<int32_t>(emb->ne[1]);
    return Status::Ok();
}

Status compute_rope_frequencies(const ModelFile& f, const HParams& hp, std::vector<float>* inv_freq,
                                float* attn_factor) {
    const std::string a = f.meta.find("general.architecture") ? f.meta.find("general.architecture")->str + "." : "";
    const int half = hp.rope_dim / 2;
    inv_freq->assign(static_cast<size_t>(half), 0.f);
    for (int i = 0; i < half; ++i)
        (*inv_freq)[static_cast<size_t>(i)] =
            static_cast<float>(std::pow(static_cast<double>(hp.rope_base), -2.0 * i / hp.rope_dim));
    *attn_factor = 1.0f;

    std::string type = "none";
    f.meta.get_string(a + "rope.scaling.type", &type);
    double factor = 1.0;
    f.meta.get_float(a + "rope.scaling.factor", &factor);
    if (f.meta.has(a + "rope.scale_linear")) {  // older GGUF key
        f.meta.get_float(a + "rope.scale_linear", &factor);
        type = "linear";
    }
    if (const TensorRef* rf = f.find_tensor("rope_freqs.weight")) {
        // Per-pair divisors written by converters for Llama 3.x scaling.
        if (rf->type != DType::F32 || rf->n_elements() != half)
            return Error(EKV_ERR_INVALID_FILE, "rope_freqs.weight must be f32 with %d values", half);
        for (int i = 0; i < half; ++i) {
            float d;
            std::memcpy(&d, rf->data + 4 * i, 4);
            if (!(d > 0)) return Error(EKV_ERR_INVALID_FILE, "rope_freqs.weight[%d] = %g is not positive", i, d);
            (*inv_freq)[static_cast<size_t>(i)] /= d;
        }
        return Status::Ok();
    }
    if (type == "none" || factor == 1.0) return Status::Ok();
    if (!(factor > 0 && factor < 1e6)) return Error(EKV_ERR_INVALID_FILE, "rope scaling factor %g is invalid", factor);
    if (type == "linear") {
        for (float& v : *inv_freq) v = static_cast<float>(v / factor);
        return Status::Ok();
    }
    if (type == "llama3") {
        double low = 1.0, high = 4.0, orig = 8192.0;
        f.meta.get_float(a + "rope.scaling.low_freq_factor", &low);
        f.meta.get_float(a + "rope.scaling.high_freq_factor", &high);
        f.meta.get_float(a + "rope.scaling.original_context_length", &orig);
        if (!(high > low && low > 0 && orig > 0))
            return Error(EKV_ERR_INVALID_FILE, "llama3 rope scaling parameters are inconsistent");
        const double low_wavelen = orig / low, high_wavelen = orig / high;
        for (float& v : *inv_freq) {
            const double wavelen = 2.0 * M_PI / v;
            if (wavelen < high_wavelen) continue;
            if (wavelen > low_wavelen) {
                v = static_cast<float>(v / factor);
            } else {
                const double smooth = (orig / wavelen - low) / (high - low);
                v = static_cast<float>((1.0 - smooth) * v / factor + smooth * v);
            }
        }
        return Status::Ok();
    }
    return Error(EKV_ERR_UNSUPPORTED, "rope scaling type '%s' is not supported", type.c_str());
}

uint64_t decode_weight_bytes(uint64_t total, const Tensor& tok_embd, bool tied) {
    if (tied) return total;
    const uint64_t table = static_cast<uint64_t>(tok_embd.rows) * tok_embd.row_bytes;
    return total - std::min(total, table) + tok_embd.row_bytes;
}

void fill_info(const ModelFile& f, const HParams& hp, uint64_t weight_bytes, uint64_t n_params, ModelInfo* info) {
    f.meta.get_string("general.architecture", &info->architecture);
    f.meta.get_string("general.name", &info->name);
    info->n_layers = hp.n_layers;
    info->n_heads = hp.n_heads;
    info->n_kv_heads = hp.n_kv_heads;
    info->head_dim = hp.head_dim;
    info->n_embd = hp.n_embd;
    info->n_ff = hp.n_ff;
    info->context_length = hp.context_length;
    info->n_vocab = hp.n_vocab;
    info->n_params = n_params;
    info->weight_bytes = weight_bytes;
    info->decode_weight_bytes = weight_bytes;  // the architecture refines it
}

Status WeightLoader::load(const std::string& name, int64_t cols, int64_t rows, Tensor* out) {
    const TensorRef* t = file_.find_tensor(name);
    if (!t) return Error(EKV_ERR_INVALID_FILE, "missing tensor %s", name.c_str());
    const int64_t t_rows = t->n_elements() / std::max<int64_t>(t->ne[0], 1);
    if (t->ne[0] != cols || t_rows != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return Error(EKV_ERR_INVALID_FILE, "tensor %s has shape [%lld, %lld], expected [%lld, %lld]", name.c_str(),
                     static_cast<long long>(t->ne[0]), static_cast<long long>(t_rows), static_cast<long long>(cols),
                     static_cast<long long>(rows));
    std::unique_ptr<Buffer> owner;
    EKV_TRY(backend_.load_weight(*t, out, &owner));
    if (owner) owners_->push_back(std::move(owner));
    if (file_.monitor) EKV_TRY(file_.monitor->step(t->nbytes));
    bytes_ += t->nbytes;
    params_ += static_cast<uint64_t>(t->n_elements());
    return Status::Ok();
}

void ActivationArena::add(Tensor* t, int64_t rows, int64_t cols) { entries_.push_back({t, rows, cols}); }

BlockDims block_dims(int64_t n_embd, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int64_t n_ff,
                     int64_t n_vocab) {
    BlockDims d;
    d.n_embd = n_embd;
    d.q_out = static_cast<int64_t>(n_heads) * head_dim;
    d.kv_out = static_cast<int64_t>(n_kv_heads) * head_dim;
    d.n_ff = n_ff;
    d.n_vocab = n_vocab;
    return d;
}

Status load_attention_projections(WeightLoader& wl, const std::string& p, const BlockDims& d,
                                  AttentionProjections* out) {
    EKV_TRY(wl.load(p + "attn_q.weight", d.n_embd, d.q_out, &out->wq));
    EKV_TRY(wl.load(p + "attn_k.weight", d.n_embd, d.kv_out, &out->wk));
    EKV_TRY(wl.load(p + "attn_v.weight", d.n_embd, d.kv_out, &out->wv));
    return wl.load(p + "attn_output.weight", d.q_out, d.n_embd, &out->wo);
}

Status load_ffn_projections(WeightLoader& wl, const std::string& p, const BlockDims& d, FfnProjections* out) {
    EKV_TRY(wl.load(p + "ffn_gate.weight", d.n_embd, d.n_ff, &out->gate));
    EKV_TRY(wl.load(p + "ffn_up.weight", d.n_embd, d.n_ff, &out->up));
    return wl.load(p + "ffn_down.weight", d.n_ff, d.n_embd, &out->down);
}

void BlockWorkspace::add_to(ActivationArena& arena, const BlockDims& d, int32_t batch) {
    for (Tensor* t : {&x, &h, &proj}) arena.add(t, batch, d.n_embd);
    for (Tensor* t : {&q, &att}) arena.add(t, batch, d.q_out);
    for (Tensor* t : {&k, &v}) arena.add(t, batch, d.kv_out);
    for (Tensor* t : {&gate, &up}) arena.add(t, batch, d.n_ff);
    arena.add(&logits, batch, d.n_vocab);
}

Status BlockWorkspace::finish(ActivationArena& arena, Backend& stream_backend, int32_t batch) {
    EKV_TRY(arena.allocate(stream_backend, &mem));
    stream = &stream_backend;
    positions.resize(static_cast<size_t>(batch));
    return Status::Ok();
}

Status ActivationArena::allocate(Backend& backend, std::unique_ptr<Buffer>* out) {
    size_t total = 0;
    for (const Entry& e : entries_) total += (static_cast<size_t>(e.rows * e.cols) * 4 + 63) / 64 * 64;
    EKV_TRY(backend.alloc(total, Placement::Device, out));
    size_t off = 0;
    for (const Entry& e : entries_) {
        Tensor& t = *e.t;
        t.type = DType::F32;
        t.rows = e.rows;
        t.cols = e.cols;
        t.row_bytes = static_cast<size_t>(e.cols) * 4;
        t.buffer = out->get();
        t.offset = off;
        t.data = (*out)->host() ? static_cast<uint8_t*>((*out)->host()) + off : nullptr;
        off += (static_cast<size_t>(e.rows * e.cols) * 4 + 63) / 64 * 64;
    }
    return Status::Ok();
}

}  // namespace ekv
