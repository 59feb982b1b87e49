#include "cli_common.h"

#include <chrono>
#include <cstdio>

namespace edgekv_cli {

int library_error(const Output& out, ekv_status status, const std::string& what) {
    // Copy the details first: any later edgekv call may overwrite them.
    const std::string details = ekv_last_error();
    const std::string status_text = ekv_status_string(status);
    std::fprintf(stderr, "edgekv: %s: %s%s%s\n", what.c_str(), status_text.c_str(),
                 details.empty() ? "" : ": ", details.c_str());
    if (out.json) {
        JsonWriter w;
        w.begin_object();
        w.field("error", details.empty() ? what : what + ": " + details);
        w.field("status", status_text);
        w.field("status_code", static_cast<int>(status));
        w.end_object();
        print_json(w);
    }
    return kExitLibraryError;
}

int usage_error(const CommandSpec& spec, const std::string& message) {
    std::fprintf(stderr, "edgekv %s: %s\n\n", spec.name, message.c_str());
    print_command_usage(stderr, spec);
    return kExitUsage;
}

void print_json(const JsonWriter& w) {
    std::fwrite(w.str().data(), 1, w.str().size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

OptionSpec opt_model() { return {"--model", "FILE", "GGUF file or Hugging Face model directory (required)"}; }
OptionSpec opt_backend() { return {"--backend", "NAME", "cpu, vulkan, cuda or auto (default auto)"}; }
OptionSpec opt_threads() { return {"--threads", "N", "CPU threads (default: all cores)"}; }
OptionSpec opt_int8() {
    return {"--int8-activations", nullptr, "8-bit activations in quantized matmuls (faster, ~1% off HF)"};
}
CommandSpec with_cache_options(CommandSpec spec) {
    const std::vector<OptionSpec> cache = {
        {"--cache", "TYPE",
         "dynamic, static, offloaded, offloaded_static, quantized, sliding_window, sink, hybrid (Gemma), mamba, "
         "hybrid_mamba (Jamba), encoder_decoder (Whisper) or auto: the model's natural cache (default)"},
        {"--max-cache-len", "N", "capacity of static caches (default: model context)"},
        {"--window-length", "N", "sliding_window / sink: tokens held, sinks included"},
        {"--num-sink-tokens", "N", "sink: first tokens kept for good (default 4)"},
        {"--nbits", "B", "KIVI bits 2, 4 or 8; with a type other than quantized, quantizes that type's storage"},
        {"--q-group-size", "G", "KIVI group: tokens per key group, channels per value group (default 64)"},
        {"--residual-length", "R", "KIVI: newest tokens kept in full precision (default 128)"},
        {"--kv-dtype", "T", "storage of full-precision KV: f16 or f32 (default f16)"},
        {"--offload", "WHERE", "device, host (staged per layer on a discrete GPU, read in place on unified memory) or unified (zero copy)"},
    };
    spec.options.insert(spec.options.end(), cache.begin(), cache.end());
    return spec;
}
OptionSpec opt_json() { return {"--json", nullptr, "print one JSON object on stdout"}; }

int load_model_from_args(const ParsedArgs& args, const CommandSpec& spec, const Output& out,
                         ModelPtr* model) {
    const std::string path = args.get("--model");
    if (path.empty()) return usage_error(spec, "--model is required");
    ekv_model_params mp = ekv_model_default_params();
    if (args.has("--backend")) {
        const std::string name = args.get("--backend");
        if (ekv_backend_from_name(name.c_str(), &mp.backend) != EKV_OK)
            return usage_error(spec, "unknown backend '" + name + "' (cpu, vulkan, cuda, auto)");
    }
    long long threads = 0;
    std::string err;
    if (!args.get_int("--threads", 0, 0, 4096, &threads, &err)) return usage_error(spec, err);
    mp.n_threads = static_cast<int32_t>(threads);
    mp.int8_activations = args.has("--int8-activations") ? 1 : 0;

    ekv_model* raw = nullptr;
    const ekv_status st = ekv_model_load(path.c_str(), &mp, &raw);
    if (st != EKV_OK) return library_error(out, st, "loading model '" + path + "'");
    model->reset(raw);
    return kExitOk;
}

int cache_params_from_args(const ParsedArgs& args, const CommandSpec& spec, int32_t default_max_len,
                           ekv_cache_params* params) {
    ekv_cache_params cp = ekv_cache_default_params();
    if (args.has("--cache")) {
        const std::string name = args.get("--cache");
        if (ekv_cache_type_from_name(name.c_str(), &cp.type) != EKV_OK)
            return usage_error(spec, "unknown cache type '" + name + "'");
    }
    long long max_len = 0, window = 0, sinks = 0, nbits = 0, group = 0, residual = 0;
    std::string err;
    if (!args.get_int("--max-cache-len", default_max_len, 0, INT32_MAX, &max_len, &err) ||
        !args.get_int("--window-length", 0, 0, INT32_MAX, &window, &err) ||
        !args.get_int("--num-sink-tokens", cp.num_sink_tokens, 0, INT32_MAX, &sinks, &err) ||
        !args.get_int("--nbits", cp.nbits, 0, 64, &nbits, &err) ||
        !args.get_int("--q-group-size", cp.q_group_size, 1, INT32_MAX, &group, &err) ||
        !args.get_int("--residual-length", cp.residual_length, 0, INT32_MAX, &residual, &err))
        return usage_error(spec, err);
    cp.max_cache_len = static_cast<int32_t>(max_len);
    cp.window_length = static_cast<int32_t>(window);
    cp.num_sink_tokens = static_cast<int32_t>(sinks);
    cp.nbits = static_cast<int32_t>(nbits);
    cp.q_group_size = static_cast<int32_t>(group);
    cp.residual_length = static_cast<int32_t>(residual);
    const std::string dtype = args.get("--kv-dtype", "f16");
    if (dtype == "f32")
        cp.dtype = EKV_KV_F32;
    else if (dtype != "f16")
        return usage_error(spec, "--kv-dtype must be f16 or f32");
    // HF's QuantizedCache parameters on another type quantize its storage.
    const bool kivi_args = args.has("--nbits") || args.has("--q-group-size") || args.has("--residual-length");
    if (kivi_args && cp.type != EKV_CACHE_QUANTIZED) {
        if (dtype == "f32") return usage_error(spec, "--kv-dtype f32 cannot be combined with KIVI options");
        cp.dtype = EKV_KV_KIVI;
    }
    const std::string where = args.get("--offload", "device");
    if (where == "host")
        cp.offload = EKV_PLACEMENT_HOST;
    else if (where == "unified")
        cp.offload = EKV_PLACEMENT_UNIFIED;
    else if (where != "device")
        return usage_error(spec, "--offload must be device, host or unified");
    *params = cp;
    return kExitOk;
}

int create_cache_from_args(const ParsedArgs& args, const CommandSpec& spec, const Output& out,
                           ekv_model* model, int32_t default_max_len, CachePtr* cache) {
    ekv_cache_params cp = ekv_cache_default_params();
    if (int rc = cache_params_from_args(args, spec, default_max_len, &cp)) return rc;
    ekv_cache* raw = nullptr;
    const ekv_status st = ekv_cache_create(model, &cp, &raw);
    if (st != EKV_OK) return library_error(out, st, "creating the cache");
    cache->reset(raw);
    return kExitOk;
}

void cache_json(JsonWriter& w, const ekv_cache* cache) {
    ekv_cache_stats st = ekv_cache_stats_default();
    if (!cache || ekv_cache_get_stats(cache, &st) != EKV_OK) {
        w.field("cache", cache_type_name(cache));
        return;
    }
    w.field("cache", cache_type_name(cache));
    w.field("kv_bytes_per_token", static_cast<unsigned long long>(st.bytes_per_token));
    w.field("kv_used_bytes", static_cast<unsigned long long>(st.used_bytes));
    w.field("kv_device_bytes", static_cast<unsigned long long>(st.device_bytes));
    w.field("kv_host_bytes", static_cast<unsigned long long>(st.host_bytes));
    w.field("cache_seq_len", st.seq_len);
    w.field("cache_tokens_held", st.tokens_held);
    w.field("cache_capacity", st.capacity);
}

ekv_status model_info(const ekv_model* model, ekv_model_info* info) {
    *info = ekv_model_info_default();
    return ekv_model_get_info(model, info);
}

ekv_status tokenize(const ekv_model* model, const std::string& text, bool add_special, bool parse_special,
                    std::vector<int32_t>* tokens) {
    // Most text needs fewer tokens than bytes; retry once with the size the
    // library reports when that guess is short.
    tokens->assign(text.size() + 16, 0);
    int32_t n = 0;
    ekv_status st = ekv_tokenize(model, text.data(), text.size(), add_special, parse_special, tokens->data(),
                                 static_cast<int32_t>(tokens->size()), &n);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && n > static_cast<int32_t>(tokens->size())) {
        tokens->assign(static_cast<size_t>(n), 0);
        st = ekv_tokenize(model, text.data(), text.size(), add_special, parse_special, tokens->data(), n, &n);
    }
    if (st != EKV_OK) {
        tokens->clear();
        return st;
    }
    tokens->resize(static_cast<size_t>(n));
    return EKV_OK;
}

ekv_status detokenize(const ekv_model* model, const std::vector<int32_t>& tokens, bool skip_special,
                      std::string* text) {
    std::vector<char> buf(tokens.size() * 8 + 64);
    size_t len = 0;
    ekv_status st = ekv_detokenize(model, tokens.data(), static_cast<int32_t>(tokens.size()), skip_special,
                                   buf.data(), buf.size(), &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && len + 1 > buf.size()) {
        buf.resize(len + 1);
        st = ekv_detokenize(model, tokens.data(), static_cast<int32_t>(tokens.size()), skip_special, buf.data(),
                            buf.size(), &len);
    }
    if (st != EKV_OK) return st;
    text->assign(buf.data(), len);
    return EKV_OK;
}

ekv_status token_piece(const ekv_model* model, int32_t token, std::string* piece) {
    std::vector<char> buf(64);
    size_t len = 0;
    ekv_status st = ekv_token_to_piece(model, token, 1, buf.data(), buf.size(), &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && len + 1 > buf.size()) {
        buf.resize(len + 1);
        st = ekv_token_to_piece(model, token, 1, buf.data(), buf.size(), &len);
    }
    if (st != EKV_OK) return st;
    piece->assign(buf.data(), len);
    return EKV_OK;
}

ekv_status chat_prompt(const ekv_model* model, const std::string& system, const std::string& user,
                       std::string* text) {
    ekv_chat_message messages[2];
    size_t n = 0;
    if (!system.empty()) messages[n++] = ekv_chat_message{"system", system.c_str()};
    messages[n++] = ekv_chat_message{"user", user.c_str()};
    std::vector<char> buf(system.size() + user.size() + 256);
    size_t len = 0;
    ekv_status st = ekv_chat_apply_template(model, nullptr, messages, n, 1, buf.data(), buf.size(), &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && len + 1 > buf.size()) {
        buf.resize(len + 1);
        st = ekv_chat_apply_template(model, nullptr, messages, n, 1, buf.data(), buf.size(), &len);
    }
    if (st != EKV_OK) return st;
    text->assign(buf.data(), len);
    return EKV_OK;
}

ekv_status chat_tokens(const ekv_model* model, const std::string& system, const std::string& user,
                       std::vector<int32_t>* tokens) {
    ekv_chat_message messages[2];
    size_t n = 0;
    if (!system.empty()) messages[n++] = ekv_chat_message{"system", system.c_str()};
    messages[n++] = ekv_chat_message{"user", user.c_str()};
    tokens->assign(system.size() + user.size() + 256, 0);
    int32_t count = 0;
    ekv_status st = ekv_chat_tokenize(model, nullptr, messages, n, 1, tokens->data(),
                                      static_cast<int32_t>(tokens->size()), &count);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && count > static_cast<int32_t>(tokens->size())) {
        tokens->assign(static_cast<size_t>(count), 0);
        st = ekv_chat_tokenize(model, nullptr, messages, n, 1, tokens->data(), count, &count);
    }
    tokens->resize(st == EKV_OK ? static_cast<size_t>(count) : 0);
    return st;
}

std::string cache_type_name(const ekv_cache* cache) {
    if (cache == nullptr) return "none";
    ekv_cache_type type = EKV_CACHE_AUTO;
    if (ekv_cache_get_type(cache, &type) != EKV_OK) return "unknown";
    return ekv_cache_type_name(type);
}

const char* stop_reason_name(ekv_stop_reason r) {
    switch (r) {
        case EKV_STOP_NONE: return "none";
        case EKV_STOP_MAX_TOKENS: return "max_tokens";
        case EKV_STOP_EOS: return "eos";
        case EKV_STOP_TOKEN: return "stop_token";
        case EKV_STOP_STRING: return "stop_string";
        case EKV_STOP_CANCELLED: return "cancelled";
        case EKV_STOP_CACHE_FULL: return "cache_full";
        case EKV_STOP_ERROR: return "error";
    }
    return "unknown";
}

double now_seconds() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

double safe_rate(double a, double b) { return b > 0.0 ? a / b : 0.0; }

}  // namespace edgekv_cli
