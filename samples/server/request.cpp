#include "request.h"

#include <cmath>
#include <cstdio>
#include <set>

#include <nlohmann/json.hpp>

namespace edgekv_server {
namespace {

using json = nlohmann::json;

// Fields OpenAI defines that edgekv accepts when they ask for nothing it
// would have to do differently (checked in accept_inert).
const std::set<std::string> kInertFields = {"user", "metadata", "store", "service_tier", "parallel_tool_calls",
                                            "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
                                            "n", "logit_bias", "response_format", "modalities", "echo",
                                            "best_of", "suffix", "tool_choice"};

class Parser {
public:
    Parser(ApiError* error) : error_(error) {}

    bool fail(const std::string& message, const std::string& param, const std::string& code = "") {
        *error_ = bad_request(message, param, code);
        return false;
    }

    bool number(const json& v, const char* name, double lo, double hi, double* out) {
        if (!v.is_number()) return fail(std::string("'") + name + "' must be a number", name);
        const double d = v.get<double>();
        if (!std::isfinite(d) || d < lo || d > hi) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "'%s' must be between %g and %g", name, lo, hi);
            return fail(buf, name);
        }
        *out = d;
        return true;
    }

    bool integer(const json& v, const char* name, int64_t lo, int64_t hi, int64_t* out) {
        if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
            return fail(std::string("'") + name + "' must be an integer", name);
        double d = v.get<double>();
        if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "'%s' must be between %lld and %lld", name, static_cast<long long>(lo),
                          static_cast<long long>(hi));
            return fail(buf, name);
        }
        *out = v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(d);
        return true;
    }

    // "content" is a string or an array of {"type": "text", "text": ...}.
    bool content(const json& v, std::string* out) {
        if (v.is_null()) return true;
        if (v.is_string()) {
            *out = v.get<std::string>();
            return true;
        }
        if (!v.is_array()) return fail("message content must be a string or an array of text parts", "messages");
        for (const json& part : v) {
            if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
                !part["text"].is_string())
                return fail("only text content parts ({\"type\": \"text\", \"text\": ...}) are supported",
                            "messages");
            *out += part["text"].get<std::string>();
        }
        return true;
    }

    bool messages(const json& v, std::vector<ChatMessage>* out) {
        if (!v.is_array() || v.empty()) return fail("'messages' must be a non-empty array", "messages");
        for (const json& m : v) {
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
                return fail("each message must be an object with a string 'role'", "messages");
            std::string role = m["role"].get<std::string>();
            if (role == "developer") role = "system";  // OpenAI's newer name for it
            if (role != "system" && role != "user" && role != "assistant")
                return fail("message role '" + role + "' is not supported (system, developer, user, assistant)",
                            "messages");
            ChatMessage msg;
            msg.role = role;
            if (m.contains("content") && !content(m["content"], &msg.content)) return false;
            for (auto it = m.begin(); it != m.end(); ++it) {
                if (it.key() != "role" && it.key() != "content" && it.key() != "name")
                    return fail("message field '" + it.key() + "' is not supported", "messages");
            }
            out->push_back(std::move(msg));
        }
        return true;
    }

    bool stop(const json& v, std::vector<std::string>* out) {
        if (v.is_null()) return true;
        if (v.is_string()) {
            if (!v.get<std::string>().empty()) out->push_back(v.get<std::string>());
            return true;
        }
        if (!v.is_array() || v.size() > 4) return fail("'stop' must be a string or an array of up to 4 strings", "stop");
        for (const json& s : v) {
            if (!s.is_string()) return fail("'stop' must be a string or an array of up to 4 strings", "stop");
            if (!s.get<std::string>().empty()) out->push_back(s.get<std::string>());
        }
        return true;
    }

    // Accepted only where the value asks for OpenAI's default behaviour.
    bool accept_inert(const std::string& key, const json& v) {
        auto unsupported = [&](const char* why) { return fail("'" + key + "' " + why + " is not supported", key); };
        if (key == "n" || key == "best_of") return v.is_null() || v == 1 ? true : unsupported("other than 1");
        if (key == "presence_penalty" || key == "frequency_penalty")
            return v.is_null() || (v.is_number() && v.get<double>() == 0.0) ? true : unsupported("other than 0");
        if (key == "logprobs" || key == "echo")
            return v.is_null() || v == false ? true : unsupported("(true)");
        if (key == "top_logprobs") return v.is_null() || v == 0 ? true : unsupported("other than 0");
        if (key == "logit_bias") return v.is_null() || (v.is_object() && v.empty()) ? true : unsupported("(non-empty)");
        if (key == "response_format")
            return v.is_null() || (v.is_object() && v.value("type", "") == "text") ? true
                                                                                    : unsupported("other than text");
        if (key == "modalities")
            return v.is_null() || v == json::array({"text"}) ? true : unsupported("other than [\"text\"]");
        if (key == "suffix") return v.is_null() || (v.is_string() && v.get<std::string>().empty()) ? true
                                                                                                  : unsupported("");
        if (key == "tool_choice") return v.is_null() || v == "none" ? true : unsupported("(tools)");
        return true;  // user, metadata, store, service_tier, parallel_tool_calls: bookkeeping only
    }

    bool cache(const json& v, const ekv_cache_params& base, ekv_cache_params* out) {
        if (!v.is_object()) return fail("'cache' must be an object", "cache");
        ekv_cache_params p = base;
        bool kivi_fields = false;
        std::string dtype;
        for (auto it = v.begin(); it != v.end(); ++it) {
            const std::string& k = it.key();
            const json& x = it.value();
            const std::string param = "cache." + k;
            int64_t n = 0;
            if (k == "type") {
                if (!x.is_string() || ekv_cache_type_from_name(x.get<std::string>().c_str(), &p.type) != EKV_OK)
                    return fail("unknown cache type " + x.dump() +
                                    " (auto, dynamic, static, offloaded, offloaded_static, quantized, "
                                    "sliding_window, sink, hybrid, mamba, hybrid_mamba, encoder_decoder)",
                                param);
            } else if (k == "dtype") {
                if (!x.is_string()) return fail("'cache.dtype' must be f16, f32 or kivi", param);
                dtype = x.get<std::string>();
                if (dtype != "f16" && dtype != "f32" && dtype != "kivi")
                    return fail("'cache.dtype' must be f16, f32 or kivi", param);
            } else if (k == "offload") {
                const std::string w = x.is_string() ? x.get<std::string>() : "";
                if (w == "device") p.offload = EKV_PLACEMENT_DEVICE;
                else if (w == "host") p.offload = EKV_PLACEMENT_HOST;
                else if (w == "unified") p.offload = EKV_PLACEMENT_UNIFIED;
                else return fail("'cache.offload' must be device, host or unified", param);
            } else if (k == "nbits" || k == "q_group_size" || k == "residual_length") {
                if (!integer(x, param.c_str(), 0, 1 << 20, &n)) return false;
                kivi_fields = true;
                (k == "nbits" ? p.nbits : k == "q_group_size" ? p.q_group_size : p.residual_length) =
                    static_cast<int32_t>(n);
            } else if (k == "window_length" || k == "num_sink_tokens" || k == "max_cache_len") {
                if (!integer(x, param.c_str(), 0, 1 << 24, &n)) return false;
                (k == "window_length" ? p.window_length : k == "num_sink_tokens" ? p.num_sink_tokens
                                                                                  : p.max_cache_len) =
                    static_cast<int32_t>(n);
            } else {
                return fail("unknown cache field '" + k + "'", param);
            }
        }
        // As on the CLI: KIVI parameters on a type other than quantized
        // quantize that type's storage.
        if (dtype == "f32") {
            if (kivi_fields && p.type != EKV_CACHE_QUANTIZED)
                return fail("'cache.dtype' f32 cannot be combined with KIVI fields", "cache.dtype");
            p.dtype = EKV_KV_F32;
        } else if (dtype == "kivi" || (kivi_fields && p.type != EKV_CACHE_QUANTIZED)) {
            p.dtype = EKV_KV_KIVI;
        } else if (dtype == "f16") {
            p.dtype = EKV_KV_F16;
        }
        *out = p;
        return true;
    }

private:
    ApiError* error_;
};

}  // namespace

bool parse_request(Endpoint endpoint, const std::string& body, const ekv_cache_params& default_cache,
                   CompletionRequest* out, ApiError* error) {
    Parser p(error);
    json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return p.fail("the request body is not valid JSON (UTF-8)", "", "invalid_json");
    if (!doc.is_object()) return p.fail("the request body must be a JSON object", "", "invalid_json");

    CompletionRequest r;
    r.endpoint = endpoint;
    r.cache = default_cache;
    const char* main_field = endpoint == Endpoint::kChat ? "messages" : "prompt";
    if (!doc.contains(main_field)) return p.fail(std::string("'") + main_field + "' is required", main_field);
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string& k = it.key();
        const json& v = it.value();
        double d = 0;
        int64_t n = 0;
        if (k == "messages" && endpoint == Endpoint::kChat) {
            if (!p.messages(v, &r.messages)) return false;
        } else if (k == "prompt" && endpoint == Endpoint::kCompletion) {
            if (v.is_string()) {
                r.prompt = v.get<std::string>();
            } else if (v.is_array() && v.size() == 1 && v[0].is_string()) {
                r.prompt = v[0].get<std::string>();
            } else {
                return p.fail("'prompt' must be a string (or an array of one string)", "prompt");
            }
        } else if (k == "model") {
            if (!v.is_string()) return p.fail("'model' must be a string", "model");
            r.model = v.get<std::string>();
        } else if (k == "max_tokens" || k == "max_completion_tokens") {
            if (v.is_null()) continue;
            if (!p.integer(v, k.c_str(), 1, INT32_MAX, &n)) return false;
            r.max_tokens = static_cast<int32_t>(n);
        } else if (k == "temperature") {
            if (v.is_null()) continue;
            if (!p.number(v, "temperature", 0, 2, &d)) return false;
            r.temperature = static_cast<float>(d);
        } else if (k == "top_p") {
            if (v.is_null()) continue;
            if (!p.number(v, "top_p", 0, 1, &d)) return false;
            if (d == 0) return p.fail("'top_p' must be greater than 0", "top_p");
            r.top_p = static_cast<float>(d);
        } else if (k == "top_k") {
            if (!p.integer(v, "top_k", 0, 1 << 20, &n)) return false;
            r.top_k = static_cast<int32_t>(n);
        } else if (k == "min_p") {
            if (!p.number(v, "min_p", 0, 1, &d)) return false;
            r.min_p = static_cast<float>(d);
        } else if (k == "repetition_penalty") {
            if (!p.number(v, "repetition_penalty", 0.01, 100, &d)) return false;
            r.repetition_penalty = static_cast<float>(d);
        } else if (k == "seed") {
            if (v.is_null()) continue;
            if (!v.is_number_integer()) return p.fail("'seed' must be an integer", "seed");
            r.seed = v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
        } else if (k == "stop") {
            if (!p.stop(v, &r.stop)) return false;
        } else if (k == "ignore_eos") {
            if (!v.is_boolean() && !v.is_null()) return p.fail("'ignore_eos' must be a boolean", "ignore_eos");
            r.ignore_eos = v.is_boolean() && v.get<bool>();
        } else if (k == "stream") {
            if (!v.is_boolean() && !v.is_null()) return p.fail("'stream' must be a boolean", "stream");
            r.stream = v.is_boolean() && v.get<bool>();
        } else if (k == "stream_options") {
            if (v.is_null()) continue;
            if (!v.is_object()) return p.fail("'stream_options' must be an object", "stream_options");
            for (auto o = v.begin(); o != v.end(); ++o) {
                if (o.key() != "include_usage" || !o.value().is_boolean())
                    return p.fail("'stream_options' supports only include_usage (a boolean)", "stream_options");
                r.include_usage = o.value().get<bool>();
            }
        } else if (k == "cache") {
            if (!p.cache(v, default_cache, &r.cache)) return false;
            r.has_cache = true;
        } else if (k == "tools" || k == "functions" || k == "function_call" || k == "audio" ||
                   k == "prediction" || k == "reasoning_effort" || k == "web_search_options") {
            if (!v.is_null()) return p.fail("'" + k + "' is not supported by this server", k, "unsupported");
        } else if (kInertFields.count(k)) {
            if (!p.accept_inert(k, v)) return false;
        } else {
            return p.fail("Unrecognized request argument supplied: " + k, k, "unknown_parameter");
        }
    }
    if (r.include_usage && !r.stream) return p.fail("'stream_options' is only allowed with stream: true", "stream_options");
    *out = std::move(r);
    return true;
}

bool parse_cancel_request(const std::string& body, std::string* id, ApiError* error) {
    json doc = json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("id") || !doc["id"].is_string() || doc.size() != 1) {
        *error = bad_request("the body must be {\"id\": \"<response id>\"}", "id");
        return false;
    }
    *id = doc["id"].get<std::string>();
    return true;
}

std::string quote_json(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

std::string cache_key(const ekv_cache_params& p) {
    char buf[192];
    std::snprintf(buf, sizeof buf, "t%d d%d n%d g%d r%d w%d s%d o%d m%d", static_cast<int>(p.type),
                  static_cast<int>(p.dtype), p.nbits, p.q_group_size, p.residual_length, p.window_length,
                  p.num_sink_tokens, static_cast<int>(p.offload), p.max_cache_len);
    return buf;
}

}  // namespace edgekv_server
