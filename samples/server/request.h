// A completion request as the server understands it, parsed and checked
// from the JSON an OpenAI client sends (/v1/chat/completions and
// /v1/completions), with edgekv's own fields (cache, top_k, min_p,
// repetition_penalty). Parsing allocates nothing in the library.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api_error.h"
#include "edgekv.h"

namespace edgekv_server {

enum class Endpoint { kChat, kCompletion };

struct ChatMessage {
    std::string role;  // system, user or assistant
    std::string content;
};

// What a request asks of the server; fields the client left out are unset
// and take the server's defaults later.
struct CompletionRequest {
    Endpoint endpoint = Endpoint::kChat;
    std::string model;
    std::vector<ChatMessage> messages;  // chat
    std::string prompt;                 // completion
    std::optional<int32_t> max_tokens;
    std::optional<float> temperature;
    std::optional<float> top_p;
    std::optional<int32_t> top_k;
    std::optional<float> min_p;
    std::optional<float> repetition_penalty;
    std::optional<uint64_t> seed;
    std::vector<std::string> stop;
    bool ignore_eos = false;  // edgekv (as vLLM and llama.cpp): run to max_tokens (benchmarks, load tests)
    bool stream = false;
    bool include_usage = false;
    bool has_cache = false;
    ekv_cache_params cache{};  // valid when has_cache: the server's defaults overlaid with the request's
};

// Parses a request body. `default_cache` is what an omitted or partial
// "cache" object starts from. Returns false with *error (HTTP 400) for
// malformed JSON, wrong types, out-of-range values and fields that no
// OpenAI endpoint defines.
bool parse_request(Endpoint endpoint, const std::string& body, const ekv_cache_params& default_cache,
                   CompletionRequest* out, ApiError* error);

// The body of /edgekv/v1/cancel: {"id": "<response id>"}.
bool parse_cancel_request(const std::string& body, std::string* id, ApiError* error);
// A JSON string literal of s (quotes included).
std::string quote_json(const std::string& s);

// A stable text key of a cache configuration: conversations are only
// continued in a cache made with the same one.
std::string cache_key(const ekv_cache_params& p);

}  // namespace edgekv_server
