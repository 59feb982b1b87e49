// Chat templates: the families edgekv recognises are rendered natively
// (no Jinja engine), reproducing byte for byte what Hugging Face's
// apply_chat_template renders with each family's canonical template.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "text/text_range.h"

namespace ekv {

enum class ChatFormat { ChatML, Llama3, Gemma, Unknown };

struct ChatMessage {
    std::string role;  // "system", "user", "assistant" (others pass through)
    std::string content;
};

// Recognises a Jinja template by its markers: <|im_start|> -> ChatML,
// <|start_header_id|> -> Llama3, <start_of_turn> -> Gemma; else Unknown.
ChatFormat detect_chat_format(const std::string& jinja_template);

// "chatml", "llama3" or "gemma"; false for anything else.
bool chat_format_from_name(std::string_view name, ChatFormat* out);

// Name of a format ("chatml", ...; "unknown").
const char* chat_format_name(ChatFormat fmt);

// The system prompt a ChatML template inserts when the conversation does
// not start with one (SmolLM2: "You are a helpful AI assistant named SmolLM,
// trained by Hugging Face"), parsed from the template's string literals;
// "" when the template has none.
std::string chatml_default_system_prompt(const std::string& jinja_template);

// BOS text the family's template writes first (Llama 3 "<|begin_of_text|>",
// Gemma "<bos>"; ChatML none).
const char* chat_format_bos_text(ChatFormat fmt);

// Renders `msgs` (replacing *out):
//  ChatML: <|im_start|>role\ncontent<|im_end|>\n per message, with the
//    template's default system prompt first when msgs[0] is not "system".
//  Llama3: bos_text, then <|start_header_id|>role<|end_header_id|>\n\n
//    trimmed content <|eot_id|> per message.
//  Gemma: bos_text, a leading system message merged into the first user
//    turn, "assistant" -> "model", <start_of_turn>role\n trimmed content
//    <end_of_turn>\n; roles must alternate user/model as the template
//    demands (EKV_ERR_INVALID_ARGUMENT otherwise).
// add_generation_prompt appends the opening of an assistant turn.
// default_system is only used by ChatML. `literal` (optional) gets the byte
// ranges of *out that came from the caller (roles, contents), ascending: a
// tokenizer must not read control tokens there (a user who types
// "<|im_end|>" wrote text, not a turn boundary).
Status render_chat(ChatFormat fmt, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                   const std::string& bos_text, const std::string& default_system, std::string* out,
                   std::vector<TextRange>* literal = nullptr);

// Convenience for the API: default system prompt from `jinja_template`,
// BOS text from chat_format_bos_text().
Status render_chat(ChatFormat fmt, const std::string& jinja_template, const std::vector<ChatMessage>& msgs,
                   bool add_generation_prompt, std::string* out, std::vector<TextRange>* literal = nullptr);

}  // namespace ekv
