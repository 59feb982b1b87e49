#include "text/chat_template.h"

#include "text/unicode.h"

namespace ekv {
namespace {

// Python's str.isspace(), which Jinja's |trim uses: White_Space plus the
// information separators U+001C..U+001F.
bool is_python_space(uint32_t cp) {
    return unicode::is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

// Jinja's `value | trim`.
std::string_view trim(std::string_view s) {
    size_t begin = s.size(), end = 0;
    for (size_t pos = 0; pos < s.size();) {
        uint32_t cp;
        size_t len = unicode::decode_utf8(s, pos, &cp);
        if (!is_python_space(cp)) {
            if (begin == s.size()) begin = pos;
            end = pos + len;
        }
        pos += len;
    }
    return begin == s.size() ? std::string_view() : s.substr(begin, end - begin);
}

// The rendered text, and the byte ranges in it that came from the caller
// (roles and contents) rather than from the template.
struct ChatText {
    std::string* text;
    std::vector<TextRange>* literal;  // may be null
    void markup(std::string_view s) { text->append(s); }
    void caller(std::string_view s) {
        if (literal && !s.empty()) {
            const uint32_t begin = static_cast<uint32_t>(text->size());
            literal->push_back({begin, begin + static_cast<uint32_t>(s.size())});
        }
        text->append(s);
    }
};

void render_chatml(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                   const std::string& default_system, ChatText& out) {
    if (!msgs.empty() && msgs[0].role != "system" && !default_system.empty()) {
        out.markup("<|im_start|>system\n" + default_system + "<|im_end|>\n");  // the template's own text
    }
    for (const ChatMessage& m : msgs) {
        out.markup("<|im_start|>");
        out.caller(m.role);
        out.markup("\n");
        out.caller(m.content);
        out.markup("<|im_end|>\n");
    }
    if (add_generation_prompt) out.markup("<|im_start|>assistant\n");
}

void render_llama3(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                   const std::string& bos_text, ChatText& out) {
    for (size_t i = 0; i < msgs.size(); ++i) {
        if (i == 0) out.markup(bos_text);
        out.markup("<|start_header_id|>");
        out.caller(msgs[i].role);
        out.markup("<|end_header_id|>\n\n");
        out.caller(trim(msgs[i].content));
        out.markup("<|eot_id|>");
    }
    if (add_generation_prompt) out.markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
}

Status render_gemma(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                    const std::string& bos_text, ChatText& out) {
    out.markup(bos_text);
    size_t first = 0;
    const std::string* system = nullptr;
    if (!msgs.empty() && msgs[0].role == "system") {
        system = &msgs[0].content;  // prefixes the first user turn, not trimmed, as the template does
        first = 1;
    }
    for (size_t i = first; i < msgs.size(); ++i) {
        const ChatMessage& m = msgs[i];
        const bool even_turn = (i - first) % 2 == 0;
        if ((m.role == "user") != even_turn) {
            return Error(EKV_ERR_INVALID_ARGUMENT,
                         "Gemma chat: conversation roles must alternate "
                         "user/assistant/user/assistant/... (message %zu is \"%s\")",
                         i, m.role.c_str());
        }
        out.markup("<start_of_turn>");
        if (m.role == "assistant") {
            out.markup("model");
        } else {
            out.caller(m.role);
        }
        out.markup("\n");
        if (i == first && system) {
            out.caller(*system);
            out.markup("\n\n");
        }
        out.caller(trim(m.content));
        out.markup("<end_of_turn>\n");
    }
    if (add_generation_prompt) out.markup("<start_of_turn>model\n");
    return Status::Ok();
}

// Decodes the Jinja (Python-style) escapes of a string literal body.
std::string unescape_literal(std::string_view body) {
    std::string s;
    for (size_t i = 0; i < body.size(); ++i) {
        char c = body[i];
        if (c != '\\' || i + 1 == body.size()) {
            s.push_back(c);
            continue;
        }
        char e = body[++i];
        switch (e) {
            case 'n': s.push_back('\n'); break;
            case 't': s.push_back('\t'); break;
            case 'r': s.push_back('\r'); break;
            case '\\': case '\'': case '"': s.push_back(e); break;
            default: s.push_back('\\'); s.push_back(e); break;
        }
    }
    return s;
}

// Text pieces a template can emit verbatim: raw text outside {{ }} / {% %}
// and string literals inside them. Comments are skipped.
std::vector<std::string> template_literals(const std::string& t) {
    std::vector<std::string> pieces;
    size_t pos = 0;
    while (pos < t.size()) {
        size_t open = t.find('{', pos);
        while (open != std::string::npos && open + 1 < t.size() && t[open + 1] != '{' &&
               t[open + 1] != '%' && t[open + 1] != '#') {
            open = t.find('{', open + 1);
        }
        if (open == std::string::npos || open + 1 >= t.size()) {
            pieces.push_back(t.substr(pos));
            break;
        }
        if (open > pos) pieces.push_back(t.substr(pos, open - pos));
        const char kind = t[open + 1];
        const std::string close = kind == '{' ? "}}" : (kind == '%' ? "%}" : "#}");
        size_t i = open + 2;
        while (i < t.size() && t.compare(i, 2, close) != 0) {
            if (kind != '#' && (t[i] == '\'' || t[i] == '"')) {
                const char quote = t[i];
                size_t j = i + 1;
                while (j < t.size() && t[j] != quote) j += (t[j] == '\\') ? 2 : 1;
                if (j >= t.size()) return pieces;  // unterminated: stop scanning
                pieces.push_back(unescape_literal(std::string_view(t).substr(i + 1, j - i - 1)));
                i = j + 1;
            } else {
                ++i;
            }
        }
        pos = (i < t.size()) ? i + 2 : t.size();
    }
    return pieces;
}

}  // namespace

ChatFormat detect_chat_format(const std::string& jinja_template) {
    if (jinja_template.find("<|im_start|>") != std::string::npos) return ChatFormat::ChatML;
    if (jinja_template.find("<|start_header_id|>") != std::string::npos) return ChatFormat::Llama3;
    if (jinja_template.find("<start_of_turn>") != std::string::npos) return ChatFormat::Gemma;
    return ChatFormat::Unknown;
}

bool chat_format_from_name(std::string_view name, ChatFormat* out) {
    if (name == "chatml") {
        *out = ChatFormat::ChatML;
    } else if (name == "llama3") {
        *out = ChatFormat::Llama3;
    } else if (name == "gemma") {
        *out = ChatFormat::Gemma;
    } else {
        return false;
    }
    return true;
}

const char* chat_format_name(ChatFormat fmt) {
    switch (fmt) {
        case ChatFormat::ChatML: return "chatml";
        case ChatFormat::Llama3: return "llama3";
        case ChatFormat::Gemma: return "gemma";
        case ChatFormat::Unknown: break;
    }
    return "unknown";
}

const char* chat_format_bos_text(ChatFormat fmt) {
    switch (fmt) {
        case ChatFormat::Llama3: return "<|begin_of_text|>";
        case ChatFormat::Gemma: return "<bos>";
        default: return "";
    }
}

std::string chatml_default_system_prompt(const std::string& jinja_template) {
    static const std::string kOpen = "<|im_start|>system\n";
    static const std::string kClose = "<|im_end|>";
    // A literal holding a whole system turn is the default; one that only
    // opens it ('<|im_start|>system\n' + messages[0]['content']) is not.
    for (const std::string& piece : template_literals(jinja_template)) {
        size_t open = piece.find(kOpen);
        if (open == std::string::npos) continue;
        size_t begin = open + kOpen.size();
        size_t close = piece.find(kClose, begin);
        if (close == std::string::npos || close == begin) continue;
        return piece.substr(begin, close - begin);
    }
    return "";
}

Status render_chat(ChatFormat fmt, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                   const std::string& bos_text, const std::string& default_system, std::string* out,
                   std::vector<TextRange>* literal) {
    if (!out) return Error(EKV_ERR_INVALID_ARGUMENT, "render_chat: out is null");
    out->clear();
    if (literal) literal->clear();
    ChatText text{out, literal};
    switch (fmt) {
        case ChatFormat::ChatML:
            render_chatml(msgs, add_generation_prompt, default_system, text);
            return Status::Ok();
        case ChatFormat::Llama3:
            render_llama3(msgs, add_generation_prompt, bos_text, text);
            return Status::Ok();
        case ChatFormat::Gemma:
            return render_gemma(msgs, add_generation_prompt, bos_text, text);
        case ChatFormat::Unknown:
            break;
    }
    return Error(EKV_ERR_UNSUPPORTED, "chat template format is not recognised (ChatML, Llama 3, Gemma)");
}

Status render_chat(ChatFormat fmt, const std::string& jinja_template, const std::vector<ChatMessage>& msgs,
                   bool add_generation_prompt, std::string* out, std::vector<TextRange>* literal) {
    const std::string default_system =
        fmt == ChatFormat::ChatML ? chatml_default_system_prompt(jinja_template) : std::string();
    return render_chat(fmt, msgs, add_generation_prompt, chat_format_bos_text(fmt), default_system, out, literal);
}

}  // namespace ekv
