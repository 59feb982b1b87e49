// The JSON the server answers with, in OpenAI's shapes: whole completions,
// the chunks of a streamed one (server-sent events), errors, and the edgekv
// field with the cache's numbers.
#pragma once
#include <cstdint>
#include <string>

#include "api_error.h"
#include "chat_service.h"
#include "request.h"

namespace edgekv_server {

// Identity of one response: every chunk repeats it.
struct ResponseHead {
    Endpoint endpoint = Endpoint::kChat;
    std::string id;  // chatcmpl-... or cmpl-...
    int64_t created = 0;
    std::string model;
};

std::string error_body(const ApiError& error);
// A complete (non-streamed) chat.completion or text_completion.
std::string completion_body(const ResponseHead& head, const GenerationReport& report, const ModelDescription& model);

// Streamed events, each a whole "data: ...\n\n" line.
std::string sse_first_chunk(const ResponseHead& head);  // the assistant role (chat) or nothing (completion)
std::string sse_text_chunk(const ResponseHead& head, const std::string& text);
std::string sse_final_chunk(const ResponseHead& head, const GenerationReport& report, const ModelDescription& model);
std::string sse_usage_chunk(const ResponseHead& head, const GenerationReport& report);
std::string sse_error(const ApiError& error);
inline std::string sse_done() { return "data: [DONE]\n\n"; }

// /v1/models, /health and /edgekv/v1/info.
std::string models_body(const ModelDescription& model, int64_t created);
std::string health_body(const ChatService& service);
std::string info_body(const ChatService& service);

}  // namespace edgekv_server
