#include "text/tokenizer_json.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/json.h"
#include "text/vocab.h"

namespace ekv {
namespace {

using json::Value;

// The pre-tokenizer regexes as tokenizer.json spells them (JSON-decoded).
constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Files are optional where `required` is false: absent -> "" and Ok.
Status read_file(const std::string& path, bool required, std::string* out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        out->clear();
        if (!required) return Status::Ok();
        return Error(EKV_ERR_IO, "cannot open %s", path.c_str());
    }
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) return Error(EKV_ERR_IO, "cannot read %s", path.c_str());
    *out = ss.str();
    return Status::Ok();
}

std::string str_member(const Value& v, const char* key) {
    const Value* m = v.get(key);
    return (m && m->is_string()) ? m->str : std::string();
}

bool bool_member(const Value& v, const char* key, bool fallback) {
    const Value* m = v.get(key);
    return (m && m->is_bool()) ? m->b : fallback;
}

// One pre-tokenizer step, named as we match it ("ByteLevel(regex)", ...).
std::string describe_step(const Value& step) {
    const std::string type = str_member(step, "type");
    if (type == "ByteLevel") {
        if (bool_member(step, "add_prefix_space", false)) return "ByteLevel(add_prefix_space)";
        return bool_member(step, "use_regex", true) ? "ByteLevel(regex)" : "ByteLevel";
    }
    if (type == "Digits") {
        return bool_member(step, "individual_digits", false) ? "Digits(individual)" : "Digits";
    }
    if (type == "Split") {
        const Value* pattern = step.get("pattern");
        std::string regex = pattern ? str_member(*pattern, "Regex") : std::string();
        const bool isolated = str_member(step, "behavior") == "Isolated" &&
                              !bool_member(step, "invert", false);
        if (isolated && regex == kGpt2Regex) return "Split(gpt2)";
        if (isolated && regex == kLlama3Regex) return "Split(llama3)";
        return "Split(" + regex + ", " + str_member(step, "behavior") + ")";
    }
    return type.empty() ? std::string("?") : type;
}

Status infer_pre(const Value* pre, std::string* name) {
    if (!pre || pre->is_null()) {
        return Error(EKV_ERR_UNSUPPORTED, "tokenizer.json has no pre_tokenizer (not byte-level BPE)");
    }
    std::vector<const Value*> steps;
    if (str_member(*pre, "type") == "Sequence") {
        const Value* list = pre->get("pretokenizers");
        if (list && list->is_array()) {
            for (const Value& s : list->arr) steps.push_back(&s);
        }
    } else {
        steps.push_back(pre);
    }
    std::string seq;
    for (const Value* s : steps) seq += (seq.empty() ? "" : ", ") + describe_step(*s);
    struct Known {
        const char* steps;
        const char* pre;
    } known[] = {
        {"ByteLevel(regex)", "gpt2"},
        {"Split(gpt2), ByteLevel", "gpt2"},
        {"Digits(individual), ByteLevel(regex)", "smollm"},
        {"Digits(individual), Split(gpt2), ByteLevel", "smollm"},
        {"Split(llama3), ByteLevel", "llama-bpe"},
    };
    for (const Known& k : known) {
        if (seq == k.steps) {
            *name = k.pre;
            return Status::Ok();
        }
    }
    return Error(EKV_ERR_UNSUPPORTED,
                 "tokenizer.json pre-tokenizer [%s] is not supported (supported: GPT-2 ByteLevel, "
                 "SmolLM Digits+ByteLevel, Llama 3 Split+ByteLevel)",
                 seq.c_str());
}

MetaValue meta_string(std::string s) {
    MetaValue v;
    v.type = MetaType::STRING;
    v.str = std::move(s);
    return v;
}

MetaValue meta_u32(int64_t i) {
    MetaValue v;
    v.type = MetaType::U32;
    v.i = i;
    v.f = static_cast<double>(i);
    return v;
}

MetaValue meta_bool(bool b) {
    MetaValue v;
    v.type = MetaType::BOOL;
    v.i = b ? 1 : 0;
    v.f = v.i;
    return v;
}

MetaValue meta_strings(std::vector<std::string> strs) {
    MetaValue v;
    v.type = MetaType::ARRAY;
    v.elem_type = MetaType::STRING;
    v.strs = std::move(strs);
    return v;
}

MetaValue meta_ints(std::vector<int64_t> ints) {
    MetaValue v;
    v.type = MetaType::ARRAY;
    v.elem_type = MetaType::I32;
    v.ints = std::move(ints);
    return v;
}

bool valid_id(const Value& v, int64_t* id) {
    if (!v.is_number() || v.num < 0 || v.num > 16777216.0 || std::floor(v.num) != v.num) return false;
    *id = static_cast<int64_t>(v.num);
    return true;
}

// bos_token & co. in tokenizer_config.json: a string or {"content": ...}.
std::string config_token_text(const Value& config, const char* key) {
    const Value* v = config.get(key);
    if (!v) return "";
    if (v->is_string()) return v->str;
    if (v->is_object()) return str_member(*v, "content");
    return "";
}

// Llama 3 style post-processors add BOS themselves: TemplateProcessing
// whose single-sequence template starts with a special token.
std::string post_processor_bos(const Value& root) {
    const Value* pp = root.get("post_processor");
    if (!pp || str_member(*pp, "type") != "TemplateProcessing") return "";
    const Value* single = pp->get("single");
    if (!single || !single->is_array() || single->arr.empty()) return "";
    const Value* special = single->arr[0].get("SpecialToken");
    return special ? str_member(*special, "id") : std::string();
}

}  // namespace

Status tokenizer_json_text_to_metadata(const std::string& tokenizer_json,
                                       const std::string& config_json,
                                       const std::string& chat_template, Metadata* meta) {
    Value root;
    EKV_TRY(json::parse(tokenizer_json, &root));
    const Value* model = root.get("model");
    if (!model || !model->is_object()) {
        return Error(EKV_ERR_INVALID_FILE, "tokenizer.json has no \"model\" object");
    }
    const std::string type = str_member(*model, "type");
    if (type != "BPE" && !(type.empty() && model->get("merges"))) {
        return Error(EKV_ERR_UNSUPPORTED, "tokenizer.json model type \"%s\" is not supported (BPE only)",
                     type.c_str());
    }
    const Value* normalizer = root.get("normalizer");
    if (normalizer && !normalizer->is_null()) {
        return Error(EKV_ERR_UNSUPPORTED, "tokenizer.json normalizer \"%s\" is not supported",
                     str_member(*normalizer, "type").c_str());
    }
    std::string pre;
    EKV_TRY(infer_pre(root.get("pre_tokenizer"), &pre));

    // Vocabulary by id: the model's vocab, then added tokens (which may
    // extend it or re-label existing ids as control/user-defined).
    const Value* vocab = model->get("vocab");
    if (!vocab || !vocab->is_object() || vocab->obj.empty()) {
        return Error(EKV_ERR_INVALID_FILE, "tokenizer.json model has no vocab");
    }
    const Value* added = root.get("added_tokens");
    const size_t n_added = (added && added->is_array()) ? added->arr.size() : 0;
    // Ids are dense, so none can exceed the number of entries; this also
    // bounds what a hostile file can make us allocate.
    const int64_t max_ids = static_cast<int64_t>(vocab->obj.size() + n_added);
    std::vector<std::string> tokens;
    std::vector<int64_t> types;
    std::vector<bool> filled;
    auto place = [&](int64_t id, const std::string& text, int32_t ttype) {
        if (static_cast<size_t>(id) >= tokens.size()) {
            tokens.resize(id + 1);
            types.resize(id + 1, kTokenUnused);
            filled.resize(id + 1, false);
        }
        tokens[id] = text;
        types[id] = ttype;
        filled[id] = true;
    };
    for (const auto& [text, idv] : vocab->obj) {
        int64_t id;
        if (!valid_id(idv, &id) || id >= max_ids) {
            return Error(EKV_ERR_INVALID_FILE, "tokenizer.json vocab entry \"%s\" has a bad id", text.c_str());
        }
        if (static_cast<size_t>(id) < filled.size() && filled[id]) {
            return Error(EKV_ERR_INVALID_FILE, "tokenizer.json vocab id %lld is used twice",
                         static_cast<long long>(id));
        }
        place(id, text, kTokenNormal);
    }
    for (size_t i = 0; i < n_added; ++i) {
        const Value& t = added->arr[i];
        int64_t id;
        const Value* idv = t.get("id");
        const Value* content = t.get("content");
        if (!idv || !valid_id(*idv, &id) || id >= max_ids || !content || !content->is_string()) {
            return Error(EKV_ERR_INVALID_FILE, "tokenizer.json added_tokens[%zu] has no valid id/content", i);
        }
        place(id, content->str, bool_member(t, "special", false) ? kTokenControl : kTokenUserDefined);
    }
    for (size_t id = 0; id < tokens.size(); ++id) {
        if (!filled[id]) tokens[id] = "[UNUSED_" + std::to_string(id) + "]";  // keep ids dense
    }

    std::vector<std::string> merges;
    const Value* mv = model->get("merges");
    if (!mv || !mv->is_array()) return Error(EKV_ERR_INVALID_FILE, "tokenizer.json BPE model has no merges");
    merges.reserve(mv->arr.size());
    for (const Value& m : mv->arr) {
        if (m.is_string()) {
            merges.push_back(m.str);
        } else if (m.is_array() && m.arr.size() == 2 && m.arr[0].is_string() && m.arr[1].is_string()) {
            merges.push_back(m.arr[0].str + " " + m.arr[1].str);
        } else {
            return Error(EKV_ERR_INVALID_FILE, "tokenizer.json merge %zu is neither \"a b\" nor [a, b]",
                         merges.size());
        }
    }

    Value config;
    if (!config_json.empty()) EKV_TRY(json::parse(config_json, &config));
    auto id_of = [&](const std::string& text) -> int64_t {
        if (text.empty()) return -1;
        for (size_t id = 0; id < tokens.size(); ++id) {
            if (filled[id] && tokens[id] == text) return static_cast<int64_t>(id);
        }
        return -1;
    };
    const std::string pp_bos = post_processor_bos(root);
    std::string bos_text = config_token_text(config, "bos_token");
    if (bos_text.empty()) bos_text = pp_bos;
    const struct {
        const char* key;
        std::string text;
    } specials[] = {
        {"tokenizer.ggml.bos_token_id", bos_text},
        {"tokenizer.ggml.eos_token_id", config_token_text(config, "eos_token")},
        {"tokenizer.ggml.padding_token_id", config_token_text(config, "pad_token")},
        {"tokenizer.ggml.unknown_token_id",
         config_token_text(config, "unk_token").empty() ? str_member(*model, "unk_token")
                                                        : config_token_text(config, "unk_token")},
    };
    for (const auto& s : specials) {
        int64_t id = id_of(s.text);
        if (id >= 0) meta->set(s.key, meta_u32(id));
    }
    bool add_bos = !pp_bos.empty();
    if (const Value* v = config.get("add_bos_token"); v && v->is_bool()) add_bos = v->b;
    bool add_eos = false;
    if (const Value* v = config.get("add_eos_token"); v && v->is_bool()) add_eos = v->b;

    std::string templ = chat_template;
    if (const Value* ct = config.get("chat_template")) {
        if (ct->is_string()) {
            templ = ct->str;
        } else if (ct->is_array()) {  // named templates: take "default"
            for (const Value& named : ct->arr) {
                if (str_member(named, "name") == "default") templ = str_member(named, "template");
            }
        }
    }

    meta->set("tokenizer.ggml.model", meta_string("gpt2"));
    meta->set("tokenizer.ggml.pre", meta_string(pre));
    meta->set("tokenizer.ggml.tokens", meta_strings(std::move(tokens)));
    meta->set("tokenizer.ggml.token_type", meta_ints(std::move(types)));
    meta->set("tokenizer.ggml.merges", meta_strings(std::move(merges)));
    meta->set("tokenizer.ggml.add_bos_token", meta_bool(add_bos));
    meta->set("tokenizer.ggml.add_eos_token", meta_bool(add_eos));
    meta->set("tokenizer.ggml.add_space_prefix", meta_bool(false));
    if (!templ.empty()) meta->set("tokenizer.chat_template", meta_string(templ));
    return Status::Ok();
}

Status tokenizer_json_to_metadata(const std::string& dir, Metadata* meta) {
    if (!meta) return Error(EKV_ERR_INVALID_ARGUMENT, "tokenizer_json_to_metadata: meta is null");
    std::string tokenizer, config, templ;
    EKV_TRY(read_file(dir + "/tokenizer.json", true, &tokenizer));
    EKV_TRY(read_file(dir + "/tokenizer_config.json", false, &config));
    EKV_TRY(read_file(dir + "/chat_template.jinja", false, &templ));
    return tokenizer_json_text_to_metadata(tokenizer, config, templ, meta);
}

}  // namespace ekv
