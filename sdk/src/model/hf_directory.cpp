// Hugging Face model directory -> ModelFile in GGUF vocabulary, so that one
// architecture file serves both formats.
//
// Metadata keys emitted from config.json (Llama / Mistral):
//   general.architecture                 "llama"
//   llama.block_count                    num_hidden_layers
//   llama.context_length                 max_position_embeddings (default 2048)
//   llama.embedding_length               hidden_size
//   llama.feed_forward_length            intermediate_size
//   llama.attention.head_count           num_attention_heads
//   llama.attention.head_count_kv        num_key_value_heads (default: heads)
//   llama.attention.key_length,
//   llama.attention.value_length         head_dim, only when config.json has it
//   llama.rope.dimension_count           head_dim, else hidden_size / heads
//   llama.rope.freq_base                 rope_theta (top level or in
//                                        rope_parameters; default 10000)
//   llama.attention.layer_norm_rms_epsilon  rms_norm_eps (default 1e-6)
//   llama.vocab_size                     vocab_size
//   llama.attention.sliding_window       sliding_window, when a number (Mistral)
//   llama.rope.scaling.type              rope_type / type of rope_parameters
//                                        (transformers 5) or rope_scaling
//                                        (4.x), unless "default"
//   llama.rope.scaling.factor            factor
//   llama.rope.scaling.original_context_length  original_max_position_embeddings
//   llama.rope.scaling.low_freq_factor,
//   llama.rope.scaling.high_freq_factor  for rope_type "llama3"
//   tokenizer.ggml.bos_token_id / eos_token_id  (first id if a list)
// Tied embeddings need nothing: such checkpoints simply lack output.weight.
//
// Tensors: HF names map to GGUF names, ne order is the reversed shape, and
// q_proj / k_proj rows are permuted per head from HF's rotate-halves RoPE
// layout to GGUF's adjacent-pairs layout (new row 2i = old row i, new row
// 2i+1 = old row i + head_dim/2), into owned buffers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <new>
#include <set>

#include "core/json.h"
#include "core/mapped_file.h"
#include "model/model_file.h"
#include "model/safetensors.h"
#include "text/tokenizer_json.h"

namespace ekv {
namespace {

namespace fs = std::filesystem;

// Tensor memory owned by the ModelFile (permuted or realigned copies).
struct OwnedBuffer : Storage {
    explicit OwnedBuffer(size_t n) : bytes(n) {}
    std::vector<uint8_t> bytes;
};

Status read_json_file(const std::string& path, json::Value* out) {
    std::shared_ptr<MappedFile> file;
    EKV_TRY(MappedFile::open(path, &file));
    const std::string_view text(reinterpret_cast<const char*>(file->data()), file->size());
    Status st = json::parse(text, out);
    if (!st.ok()) return Status(st.code(), path + ": " + st.message());
    return Status::Ok();
}

MetaValue meta_u32(int64_t v) {
    MetaValue m;
    m.type = MetaType::U32;
    m.i = v;
    m.f = static_cast<double>(v);
    return m;
}

MetaValue meta_f32(double v) {
    MetaValue m;
    m.type = MetaType::F32;
    m.f = v;
    m.i = static_cast<int64_t>(v);
    return m;
}

MetaValue meta_str(const std::string& s) {
    MetaValue m;
    m.type = MetaType::STRING;
    m.str = s;
    return m;
}

// Reads config values with range checks; a wrong type is an error.
class ConfigReader {
public:
    ConfigReader(const json::Value& root, std::string path) : root_(root), path_(std::move(path)) {}

    // Integer in [lo, hi]; `*present` false (and no error) when absent/null.
    Status get_int(const json::Value* obj, const char* key, int64_t lo, int64_t hi, int64_t* out, bool* present) const {
        const json::Value* v = obj ? obj->get(key) : nullptr;
        *present = v && !v->is_null();
        return *present ? check_int(*v, key, lo, hi, out) : Status::Ok();
    }
    Status check_int(const json::Value& v, const char* key, int64_t lo, int64_t hi, int64_t* out) const {
        if (!v.is_number() || std::floor(v.num) != v.num || v.num < double(lo) || v.num > double(hi)) {
            return Error(EKV_ERR_INVALID_FILE, "%s: \"%s\" must be an integer in [%lld, %lld]", path_.c_str(), key,
                         static_cast<long long>(lo), static_cast<long long>(hi));
        }
        *out = static_cast<int64_t>(v.num);
        return Status::Ok();
    }
    Status require_int(const char* key, int64_t* out) const {
        bool present = false;
        EKV_TRY(get_int(&root_, key, 1, kMaxDim, out, &present));
        if (!present) return Error(EKV_ERR_INVALID_FILE, "%s: missing \"%s\"", path_.c_str(), key);
        return Status::Ok();
    }
    Status optional_int(const char* key, int64_t fallback, int64_t* out) const {
        bool present = false;
        EKV_TRY(get_int(&root_, key, 1, kMaxDim, out, &present));
        if (!present) *out = fallback;
        return Status::Ok();
    }
    // Positive finite number.
    Status get_float(const json::Value* obj, const char* key, double* out, bool* present) const {
        const json::Value* v = obj ? obj->get(key) : nullptr;
        *present = v && !v->is_null();
        if (!*present) return Status::Ok();
        if (!v->is_number() || !(v->num > 0) || !std::isfinite(v->num)) {
            return Error(EKV_ERR_INVALID_FILE, "%s: \"%s\" must be a positive number", path_.c_str(), key);
        }
        *out = v->num;
        return Status::Ok();
    }

    static constexpr int64_t kMaxDim = 0x7fffffff;

private:
    const json::Value& root_;
    std::string path_;
};

Status check_architecture(const json::Value& cfg, const std::string& path) {
    static const char* kArchs[] = {"LlamaForCausalLM", "MistralForCausalLM"};
    static const char* kTypes[] = {"llama", "mistral"};
    std::string arch, model_type;
    const json::Value* archs = cfg.get("architectures");
    if (archs && archs->is_array() && !archs->arr.empty() && archs->arr[0].is_string()) arch = archs->arr[0].str;
    const json::Value* mt = cfg.get("model_type");
    if (mt && mt->is_string()) model_type = mt->str;
    for (const char* a : kArchs) if (arch == a) return Status::Ok();
    for (const char* t : kTypes) if (model_type == t) return Status::Ok();
    const std::string named = !arch.empty() ? arch : !model_type.empty() ? model_type : std::string("(none given)");
    return Error(EKV_ERR_UNSUPPORTED_ARCH, "%s: architecture %.200s is not supported (supported: Llama, Mistral)",
                 path.c_str(), named.c_str());
}

Status translate_rope(const json::Value& cfg, const ConfigReader& rd, Metadata* meta) {
    // transformers 5 writes rope_parameters (holding rope_theta too); 4.x
    // wrote rope_theta at the top level and an optional rope_scaling.
    const json::Value* rope = cfg.get("rope_parameters");
    if (!rope || !rope->is_object()) rope = cfg.get("rope_scaling");
    if (rope && !rope->is_object()) rope = nullptr;

    double theta = 10000.0;
    bool present = false;
    EKV_TRY(rd.get_float(rope, "rope_theta", &theta, &present));
    if (!present) EKV_TRY(rd.get_float(&cfg, "rope_theta", &theta, &present));
    meta->set("llama.rope.freq_base", meta_f32(present ? theta : 10000.0));
    if (!rope) return Status::Ok();

    const json::Value* type = rope->get("rope_type");
    if (!type) type = rope->get("type");
    if (!type || !type->is_string() || type->str == "default") return Status::Ok();
    meta->set("llama.rope.scaling.type", meta_str(type->str));
    double v = 0;
    EKV_TRY(rd.get_float(rope, "factor", &v, &present));
    if (present) meta->set("llama.rope.scaling.factor", meta_f32(v));
    if (type->str == "llama3") {
        EKV_TRY(rd.get_float(rope, "low_freq_factor", &v, &present));
        if (present) meta->set("llama.rope.scaling.low_freq_factor", meta_f32(v));
        EKV_TRY(rd.get_float(rope, "high_freq_factor", &v, &present));
        if (present) meta->set("llama.rope.scaling.high_freq_factor", meta_f32(v));
    }
    int64_t orig = 0;
    EKV_TRY(rd.get_int(rope, "original_max_position_embeddings", 1, ConfigReader::kMaxDim, &orig, &present));
    if (present) meta->set("llama.rope.scaling.original_context_length", meta_u32(orig));
    return Status::Ok();
}

Status translate_token_id(const json::Value& cfg, const ConfigReader& rd, const char* key, const char* gguf_key,
                          Metadata* meta) {
    const json::Value* v = cfg.get(key);
    if (v && v->is_array()) v = v->arr.empty() ? nullptr : &v->arr[0];  // Llama 3.1 lists several eos ids
    if (!v || v->is_null()) return Status::Ok();
    int64_t id = 0;
    EKV_TRY(rd.check_int(*v, key, 0, ConfigReader::kMaxDim, &id));
    meta->set(gguf_key, meta_u32(id));
    return Status::Ok();
}

Status translate_config(const json::Value& cfg, const std::string& path, Metadata* meta) {
    if (!cfg.is_object()) return Error(EKV_ERR_INVALID_FILE, "%s: not a JSON object", path.c_str());
    EKV_TRY(check_architecture(cfg, path));
    for (const char* flag : {"attention_bias", "mlp_bias"}) {
        const json::Value* v = cfg.get(flag);
        if (v && v->is_bool() && v->b) {
            return Error(EKV_ERR_UNSUPPORTED, "%s: %s=true (projection biases) is not supported", path.c_str(), flag);
        }
    }
    ConfigReader rd(cfg, path);
    int64_t layers = 0, hidden = 0, ffn = 0, heads = 0, kv_heads = 0, vocab = 0, ctx = 0;
    EKV_TRY(rd.require_int("num_hidden_layers", &layers));
    EKV_TRY(rd.require_int("hidden_size", &hidden));
    EKV_TRY(rd.require_int("intermediate_size", &ffn));
    EKV_TRY(rd.require_int("num_attention_heads", &heads));
    EKV_TRY(rd.require_int("vocab_size", &vocab));
    EKV_TRY(rd.optional_int("num_key_value_heads", heads, &kv_heads));
    EKV_TRY(rd.optional_int("max_position_embeddings", 2048, &ctx));
    if (heads % kv_heads != 0) {
        return Error(EKV_ERR_INVALID_FILE, "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                     path.c_str(), static_cast<long long>(heads), static_cast<long long>(kv_heads));
    }
    int64_t head_dim = 0;
    bool has_head_dim = false;
    EKV_TRY(rd.get_int(&cfg, "head_dim", 1, ConfigReader::kMaxDim, &head_dim, &has_head_dim));
    if (!has_head_dim) {
        if (hidden % heads != 0) {
            return Error(EKV_ERR_INVALID_FILE, "%s: hidden_size is not a multiple of num_attention_heads", path.c_str());
        }
        head_dim = hidden / heads;
    }
    double eps = 1e-6;
    bool present = false;
    EKV_TRY(rd.get_float(&cfg, "rms_norm_eps", &eps, &present));

    meta->set("general.architecture", meta_str("llama"));
    meta->set("llama.block_count", meta_u32(layers));
    meta->set("llama.context_length", meta_u32(ctx));
    meta->set("llama.embedding_length", meta_u32(hidden));
    meta->set("llama.feed_forward_length", meta_u32(ffn));
    meta->set("llama.attention.head_count", meta_u32(heads));
    meta->set("llama.attention.head_count_kv", meta_u32(kv_heads));
    if (has_head_dim) {
        meta->set("llama.attention.key_length", meta_u32(head_dim));
        meta->set("llama.attention.value_length", meta_u32(head_dim));
    }
    meta->set("llama.rope.dimension_count", meta_u32(head_dim));
    meta->set("llama.attention.layer_norm_rms_epsilon", meta_f32(eps));
    meta->set("llama.vocab_size", meta_u32(vocab));
    int64_t window = 0;
    EKV_TRY(rd.get_int(&cfg, "sliding_window", 1, ConfigReader::kMaxDim, &window, &present));
    if (present) meta->set("llama.attention.sliding_window", meta_u32(window));
    EKV_TRY(translate_rope(cfg, rd, meta));
    EKV_TRY(translate_token_id(cfg, rd, "bos_token_id", "tokenizer.ggml.bos_token_id", meta));
    EKV_TRY(translate_token_id(cfg, rd, "eos_token_id", "tokenizer.ggml.eos_token_id", meta));
    return Status::Ok();
}

// HF tensor name -> GGUF name and layer index (-1 for global tensors).
// False for tensors edgekv does not use.
bool map_tensor_name(const std::string& hf, std::string* gguf, int64_t* layer) {
    static const std::pair<const char*, const char*> kGlobal[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
    };
    static const std::pair<const char*, const char*> kPerLayer[] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    for (const auto& g : kGlobal) {
        if (hf == g.first) {
            *gguf = g.second;
            *layer = -1;
            return true;
        }
    }
    static const std::string kPrefix = "model.layers.";
    if (hf.compare(0, kPrefix.size(), kPrefix) != 0) return false;
    size_t pos = kPrefix.size();
    int64_t n = 0;
    const size_t digits_start = pos;
    while (pos < hf.size() && hf[pos] >= '0' && hf[pos] <= '9' && pos - digits_start < 9) n = n * 10 + (hf[pos++] - '0');
    if (pos == digits_start || pos >= hf.size() || hf[pos] != '.') return false;
    if (hf[digits_start] == '0' && pos - digits_start > 1) return false;  // no leading zeros
    const std::string suffix = hf.substr(pos + 1);
    for (const auto& p : kPerLayer) {
        if (suffix == p.first) {
            *gguf = "blk." + std::to_string(n) + "." + p.second;
            *layer = n;
            return true;
        }
    }
    return false;
}

// Reorders the rows of a [n_heads * head_dim, cols] matrix per head from
// rotate-halves to adjacent-pairs RoPE layout.
void permute_rope_rows(const uint8_t* src, uint8_t* dst, int64_t n_heads, int64_t head_dim, size_t row_bytes) {
    const int64_t half = head_dim / 2;
    for (int64_t h = 0; h < n_heads; ++h) {
        const size_t head_base = static_cast<size_t>(h * head_dim);
        for (int64_t i = 0; i < half; ++i) {
            std::memcpy(dst + (head_base + 2 * i) * row_bytes, src + (head_base + i) * row_bytes, row_bytes);
            std::memcpy(dst + (head_base + 2 * i + 1) * row_bytes, src + (head_base + i + half) * row_bytes, row_bytes);
        }
    }
}

class TensorCollector {
public:
    TensorCollector(ModelFile* mf, int64_t layers, int64_t heads, int64_t kv_heads)
        : mf_(mf), layers_(layers), heads_(heads), kv_heads_(kv_heads) {}

    Status add(const SafetensorsEntry& e, const std::string& file) {
        std::string name;
        int64_t layer = -1;
        if (!map_tensor_name(e.name, &name, &layer)) return Status::Ok();  // not used by edgekv
        const std::string where = file + ": tensor " + e.name;
        if (layer >= layers_) {
            return Status(EKV_ERR_INVALID_FILE, where + ": layer index beyond num_hidden_layers " + std::to_string(layers_));
        }
        TensorRef t;
        if (e.dtype == "F32") t.type = DType::F32;
        else if (e.dtype == "F16") t.type = DType::F16;
        else if (e.dtype == "BF16") t.type = DType::BF16;
        else return Status(EKV_ERR_UNSUPPORTED, where + " has dtype " + e.dtype.substr(0, 40) + " (supported: F32, F16, BF16)");
        if (e.shape.empty() || e.shape.size() > 4) {
            return Status(EKV_ERR_INVALID_FILE, where + " has " + std::to_string(e.shape.size()) + " dimensions (expected 1 to 4)");
        }
        t.n_dims = static_cast<int>(e.shape.size());
        for (int d = 0; d < t.n_dims; ++d) {
            t.ne[d] = e.shape[e.shape.size() - 1 - d];  // ne[0] is the innermost dimension
            if (t.ne[d] <= 0) return Status(EKV_ERR_INVALID_FILE, where + " has a zero dimension");
        }
        if (!seen_.insert(name).second) return Status(EKV_ERR_INVALID_FILE, where + " appears more than once");
        t.name = name;
        t.data = e.data;
        t.nbytes = e.nbytes;

        const bool is_q = name.size() > 13 && name.compare(name.size() - 13, 13, "attn_q.weight") == 0;
        const bool is_k = name.size() > 13 && name.compare(name.size() - 13, 13, "attn_k.weight") == 0;
        const size_t elem = dtype_traits(t.type).block_bytes;
        if (is_q || is_k) {
            EKV_TRY(permute_into_owned(&t, is_q ? heads_ : kv_heads_, where));
        } else if (reinterpret_cast<uintptr_t>(t.data) % elem != 0) {
            EKV_TRY(copy_into_owned(&t));  // kernels may load elements directly
        }
        mf_->add_tensor(std::move(t));
        return Status::Ok();
    }

private:
    ModelFile* mf_;
    int64_t layers_, heads_, kv_heads_;
    std::set<std::string> seen_;

    uint8_t* new_buffer(size_t n) {
        auto buf = std::make_shared<OwnedBuffer>(n);
        uint8_t* p = buf->bytes.data();
        mf_->keep_alive(std::move(buf));
        return p;
    }

    Status copy_into_owned(TensorRef* t) {
        uint8_t* p = new_buffer(t->nbytes);
        std::memcpy(p, t->data, t->nbytes);
        t->data = p;
        return Status::Ok();
    }

    Status permute_into_owned(TensorRef* t, int64_t n_heads, const std::string& where) {
        const int64_t rows = t->n_elements() / t->ne[0];
        if (t->n_dims != 2 || rows % n_heads != 0 || (rows / n_heads) % 2 != 0) {
            return Status(EKV_ERR_INVALID_FILE, where + ": shape does not split into " + std::to_string(n_heads) +
                                                    " heads of even size");
        }
        const size_t row_bytes = dtype_row_bytes(t->type, t->ne[0]);
        uint8_t* p = new_buffer(t->nbytes);
        permute_rope_rows(t->data, p, n_heads, rows / n_heads, row_bytes);
        t->data = p;
        return Status::Ok();
    }
};

// Plain file names only: an index must not point outside the directory.
bool is_plain_file_name(const std::string& name) {
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
           name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

Status list_safetensors(const std::string& dir, std::vector<std::string>* files) {
    const std::string index_path = dir + "/model.safetensors.index.json";
    std::error_code ec;
    if (fs::exists(index_path, ec)) {
        json::Value index;
        EKV_TRY(read_json_file(index_path, &index));
        const json::Value* map = index.get("weight_map");
        if (!map || !map->is_object()) {
            return Error(EKV_ERR_INVALID_FILE, "%s: missing \"weight_map\" object", index_path.c_str());
        }
        std::set<std::string> names;
        for (const auto& kv : map->obj) {
            if (!kv.second.is_string() || !is_plain_file_name(kv.second.str)) {
                return Error(EKV_ERR_INVALID_FILE, "%s: tensor %.200s maps to an invalid file name", index_path.c_str(),
                             kv.first.c_str());
            }
            names.insert(kv.second.str);
        }
        files->assign(names.begin(), names.end());
    } else {
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) files->push_back(name);
        }
        if (ec) return Error(EKV_ERR_IO, "cannot list %s: %s", dir.c_str(), ec.message().c_str());
        std::sort(files->begin(), files->end());
    }
    if (files->empty()) return Error(EKV_ERR_IO, "%s: no .safetensors files found", dir.c_str());
    return Status::Ok();
}

Status load_unguarded(const std::string& dir, ModelFile* out) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return Error(EKV_ERR_IO, "%s is not a directory", dir.c_str());
    ModelFile mf;
    const std::string config_path = dir + "/config.json";
    json::Value cfg;
    EKV_TRY(read_json_file(config_path, &cfg));
    EKV_TRY(translate_config(cfg, config_path, &mf.meta));

    int64_t layers = 0, heads = 0, kv_heads = 0;
    mf.meta.get_int("llama.block_count", &layers);
    mf.meta.get_int("llama.attention.head_count", &heads);
    mf.meta.get_int("llama.attention.head_count_kv", &kv_heads);
    TensorCollector collector(&mf, layers, heads, kv_heads);

    std::vector<std::string> files;
    EKV_TRY(list_safetensors(dir, &files));
    for (const std::string& name : files) {
        const std::string path = dir + "/" + name;
        std::shared_ptr<MappedFile> file;
        EKV_TRY(MappedFile::open(path, &file));
        std::vector<SafetensorsEntry> entries;
        EKV_TRY(parse_safetensors(file->data(), file->size(), path, &entries));
        for (const SafetensorsEntry& e : entries) EKV_TRY(collector.add(e, path));
        mf.keep_alive(std::move(file));
    }

    if (fs::exists(dir + "/tokenizer.json", ec)) EKV_TRY(tokenizer_json_to_metadata(dir, &mf.meta));
    mf.path = dir;
    mf.format = "safetensors";
    *out = std::move(mf);
    return Status::Ok();
}

}  // namespace

Status load_hf_directory(const std::string& dir, ModelFile* out) {
    if (!out) return Error(EKV_ERR_INVALID_ARGUMENT, "load_hf_directory: null output");
    try {
        return load_unguarded(dir, out);
    } catch (const std::bad_alloc&) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "%s: out of memory loading the model", dir.c_str());
    }
}

}  // namespace ekv
