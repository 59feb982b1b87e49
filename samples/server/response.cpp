#include "response.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace edgekv_server {
namespace {

using json = nlohmann::json;

// Model text is valid UTF-8 by the library's promise; replace rather than
// throw if a piece ever is not.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

json null_if_empty(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

json base_object(const ResponseHead& head, bool chunk) {
    const bool chat = head.endpoint == Endpoint::kChat;
    return json{{"id", head.id},
                {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
                {"created", head.created},
                {"model", head.model}};
}

json usage_json(const GenerationReport& r) {
    return json{{"prompt_tokens", r.prompt_tokens},
                {"completion_tokens", r.completion_tokens},
                {"total_tokens", r.prompt_tokens + r.completion_tokens},
                {"prompt_tokens_details", {{"cached_tokens", r.prompt_reused}}}};
}

json edgekv_json(const GenerationReport& r, const ModelDescription& m) {
    return json{{"prompt_tokens_reused", r.prompt_reused},
                {"prompt_tokens_computed", r.prompt_computed},
                {"completion_tokens", r.completion_tokens},
                {"cache_type", r.cache_type},
                {"kv_bytes", r.kv_bytes},
                {"kv_bytes_used", r.kv_bytes_used},
                {"cache_tokens_held", r.cache_tokens_held},
                {"time_to_first_token_ms", r.time_to_first_token_ms},
                {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                {"decode_tokens_per_s", r.decode_tokens_per_s},
                {"stop_reason", stop_reason_name(r.stop_reason)},
                {"device", m.device},
                {"backend", m.backend},
                {"conversations_cached", r.store.count},
                {"conversations_bytes", r.store.bytes}};
}

json choice(const ResponseHead& head, const std::string& text, const json& finish_reason, bool chunk) {
    if (head.endpoint == Endpoint::kCompletion)
        return json{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
    json c{{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
    if (chunk) {
        c["delta"] = text.empty() ? json::object() : json{{"content", text}};
    } else {
        c["message"] = json{{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
    }
    return c;
}

}  // namespace

std::string error_body(const ApiError& e) {
    return dump(json{{"error",
                      {{"message", e.message}, {"type", e.type}, {"param", null_if_empty(e.param)},
                       {"code", null_if_empty(e.code)}}}});
}

std::string completion_body(const ResponseHead& head, const GenerationReport& r, const ModelDescription& m) {
    json j = base_object(head, false);
    j["choices"] = json::array({choice(head, r.text, r.finish_reason, false)});
    j["usage"] = usage_json(r);
    j["edgekv"] = edgekv_json(r, m);
    return dump(j);
}

std::string sse_first_chunk(const ResponseHead& head) {
    json j = base_object(head, true);
    json c = choice(head, "", nullptr, true);
    if (head.endpoint == Endpoint::kChat) c["delta"] = json{{"role", "assistant"}, {"content", ""}};
    j["choices"] = json::array({c});
    return sse(j);
}

std::string sse_text_chunk(const ResponseHead& head, const std::string& text) {
    json j = base_object(head, true);
    j["choices"] = json::array({choice(head, text, nullptr, true)});
    return sse(j);
}

std::string sse_final_chunk(const ResponseHead& head, const GenerationReport& r, const ModelDescription& m) {
    json j = base_object(head, true);
    j["choices"] = json::array({choice(head, "", r.finish_reason, true)});
    j["edgekv"] = edgekv_json(r, m);
    return sse(j);
}

std::string sse_usage_chunk(const ResponseHead& head, const GenerationReport& r) {
    json j = base_object(head, true);
    j["choices"] = json::array();
    j["usage"] = usage_json(r);
    return sse(j);
}

std::string sse_error(const ApiError& e) { return "data: " + error_body(e) + "\n\n"; }

std::string models_body(const ModelDescription& m, int64_t created) {
    return dump(json{{"object", "list"},
                     {"data", json::array({json{{"id", m.id}, {"object", "model"}, {"created", created},
                                                {"owned_by", "edgekv"}}})}});
}

std::string health_body(const ChatService& s) {
    return dump(json{{"status", "ok"},
                     {"model", s.model().id},
                     {"device", s.model().device},
                     {"backend", s.model().backend},
                     {"active", s.active()},
                     {"queued", s.waiting()}});
}

std::string info_body(const ChatService& s) {
    const ModelDescription& m = s.model();
    const ServiceConfig& c = s.config();
    const StoreStats st = s.store_stats();
    const ServiceCounters n = s.counters();
    json types = json::array();
    for (int t = EKV_CACHE_AUTO; t <= EKV_CACHE_ENCODER_DECODER; ++t)
        types.push_back(ekv_cache_type_name(static_cast<ekv_cache_type>(t)));
    return dump(json{{"edgekv_version", ekv_version()},
                     {"model", m.id},
                     {"architecture", m.architecture},
                     {"device", m.device},
                     {"backend", m.backend},
                     {"context_length", m.context_length},
                     {"natural_cache", m.natural_cache},
                     {"cache_types", types},
                     {"default_cache", ekv_cache_type_name(c.default_cache.type)},
                     {"default_temperature", std::round(static_cast<double>(c.default_temperature) * 1000.0) / 1000.0},
                     {"max_tokens_limit", c.max_tokens_limit},
                     {"parallel", c.parallel},
                     {"queue", c.queue},
                     {"active", s.active()},
                     {"queued", s.waiting()},
                     {"conversations", {{"count", st.count}, {"bytes", st.bytes}, {"max_count", st.max_count},
                                        {"max_bytes", st.max_bytes}}},
                     {"generations", {{"finished", n.generations}, {"client_gone", n.client_gone},
                                      {"completion_tokens", n.completion_tokens}}}});
}

}  // namespace edgekv_server
