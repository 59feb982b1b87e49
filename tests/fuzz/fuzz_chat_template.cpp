// Fuzz target: a chat template and a conversation -> the chat renderer
// (sdk/src/text/chat_template.cpp: family detection, the ChatML default
// system prompt scanned from the template's literals, the native renderers)
// and, for the named families, ekv_chat_apply_template and ekv_chat_tokenize
// on the tiny Llama.
//
// Input: one flag byte, then NUL-separated fields:
//   template \0 role \0 content \0 role \0 content ...
//   flag bit 0: add_generation_prompt; bits 1-2: 0 = the family the template
//   names, 1 = chatml, 2 = llama3, 3 = gemma.
// Invariants:
//   - a refusal is EKV_ERR_UNSUPPORTED (no recognised family) or, for Gemma
//     only, EKV_ERR_INVALID_ARGUMENT (roles that do not alternate);
//   - the output is at most the template, roles and contents plus a fixed
//     overhead per message, and valid UTF-8 when the input is;
//   - ChatML renders exactly [default system turn] + one turn per message
//     (+ the generation prompt); the default system prompt is text of the
//     template without <|im_end|>; Llama 3 / Gemma begin with their BOS text
//     and end with a closed turn or the generation prompt;
//   - the C ABI gives the same text as the renderer with the model's
//     template, and sizes a short buffer exactly.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "edgekv.h"
#include "text/chat_template.h"
#include "text/utf8_stream.h"

namespace {

constexpr size_t kMaxMessages = 64;
constexpr size_t kOverheadPerMessage = 64;  // markers, BOS, generation prompt

bool valid_utf8(std::string_view s) {
    std::string clean;
    ekv::utf8_sanitize(s, &clean);
    return clean == s;
}

bool ends_with(std::string_view s, std::string_view tail) {
    return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

struct TinyLlama {
    ekv_model* model = nullptr;
    std::string chat_template;
};

const TinyLlama& tiny_llama() {
    static const TinyLlama t = [] {
        TinyLlama out;
        ekv_model_params p = ekv_model_default_params();
        p.backend = EKV_BACKEND_CPU;
        p.n_threads = 1;
        if (ekv_model_load(EKV_FUZZ_TINY_LLAMA_GGUF, &p, &out.model) != EKV_OK) {
            std::fprintf(stderr, "fuzz_chat_template: cannot load %s: %s\n", EKV_FUZZ_TINY_LLAMA_GGUF,
                         ekv_last_error());
            std::abort();
        }
        size_t len = 0;
        ekv_model_meta_string(out.model, "tokenizer.chat_template", nullptr, 0, &len);
        std::vector<char> buf(len + 1);
        if (ekv_model_meta_string(out.model, "tokenizer.chat_template", buf.data(), buf.size(), &len) != EKV_OK)
            std::abort();
        out.chat_template.assign(buf.data(), len);
        return out;
    }();
    return t;
}

void check_chatml(const std::string& tmpl, const std::vector<ekv::ChatMessage>& msgs, bool gen,
                  const std::string& out) {
    const std::string sys = ekv::chatml_default_system_prompt(tmpl);
    if (sys.size() > tmpl.size() || sys.find("<|im_end|>") != std::string::npos) __builtin_trap();
    if (!sys.empty() && tmpl.find("<|im_start|>system") == std::string::npos) __builtin_trap();
    std::string want;
    if (!msgs.empty() && msgs[0].role != "system" && !sys.empty())
        want += "<|im_start|>system\n" + sys + "<|im_end|>\n";
    for (const ekv::ChatMessage& m : msgs) want += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (gen) want += "<|im_start|>assistant\n";
    if (out != want) __builtin_trap();
}

void check_turns(ekv::ChatFormat fmt, const std::vector<ekv::ChatMessage>& msgs, bool gen, const std::string& out) {
    const bool llama = fmt == ekv::ChatFormat::Llama3;
    const std::string bos = ekv::chat_format_bos_text(fmt);
    const std::string close = llama ? "<|eot_id|>" : "<end_of_turn>\n";
    const std::string prompt = llama ? "<|start_header_id|>assistant<|end_header_id|>\n\n" : "<start_of_turn>model\n";
    // Llama 3 writes BOS with its first message; Gemma always.
    if ((!msgs.empty() || !llama) && out.compare(0, bos.size(), bos) != 0) __builtin_trap();
    if (gen && !ends_with(out, prompt)) __builtin_trap();
    const bool has_turn = llama ? !msgs.empty() : msgs.size() > (msgs.empty() || msgs[0].role != "system" ? 0u : 1u);
    if (!gen && has_turn && !ends_with(out, close)) __builtin_trap();
    if (!gen && !has_turn && out != (llama ? "" : bos)) __builtin_trap();
}

void check_c_abi(ekv::ChatFormat fmt, const std::vector<ekv::ChatMessage>& msgs, bool gen) {
    const TinyLlama& t = tiny_llama();
    std::string want;
    const ekv::Status st = ekv::render_chat(fmt, t.chat_template, msgs, gen, &want);
    std::vector<ekv_chat_message> cm;
    for (const ekv::ChatMessage& m : msgs) cm.push_back({m.role.c_str(), m.content.c_str()});
    // A short buffer first: refused with the exact size.
    std::vector<char> buf(want.size() / 2 + 1);
    size_t len = 0;
    ekv_status got = ekv_chat_apply_template(t.model, ekv::chat_format_name(fmt), cm.data(), cm.size(), gen ? 1 : 0,
                                             buf.data(), buf.size(), &len);
    if (got != (st.ok() ? (want.size() + 1 > buf.size() ? EKV_ERR_BUFFER_TOO_SMALL : EKV_OK) : st.code()))
        __builtin_trap();
    if (!st.ok()) return;
    if (len != want.size()) __builtin_trap();
    buf.assign(want.size() + 1, '\x7f');
    got = ekv_chat_apply_template(t.model, ekv::chat_format_name(fmt), cm.data(), cm.size(), gen ? 1 : 0, buf.data(),
                                  buf.size(), &len);
    if (got != EKV_OK || len != want.size() || std::string_view(buf.data(), len) != want || buf[len] != '\0')
        __builtin_trap();
    // The caller's ranges (roles, contents): the same text, ranges ascending
    // inside it; and the conversation tokenizes (a token is at least a byte).
    std::string again;
    std::vector<ekv::TextRange> literal;
    if (!ekv::render_chat(fmt, t.chat_template, msgs, gen, &again, &literal).ok() || again != want) __builtin_trap();
    for (size_t i = 0; i < literal.size(); ++i) {
        if (literal[i].begin > literal[i].end || literal[i].end > want.size() ||
            (i > 0 && literal[i].begin < literal[i - 1].end))
            __builtin_trap();
    }
    std::vector<int32_t> ids(want.size() + 1);
    int32_t n = -1;
    if (ekv_chat_tokenize(t.model, ekv::chat_format_name(fmt), cm.data(), cm.size(), gen ? 1 : 0, ids.data(),
                          static_cast<int32_t>(ids.size()), &n) != EKV_OK ||
        n < 0 || static_cast<size_t>(n) > want.size())
        __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    const bool gen = flags & 1;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    std::vector<std::string> fields;
    for (size_t pos = 0;;) {
        const size_t nul = rest.find('\0', pos);
        fields.emplace_back(rest.substr(pos, nul == std::string_view::npos ? std::string_view::npos : nul - pos));
        if (nul == std::string_view::npos) break;
        pos = nul + 1;
    }
    const std::string& tmpl = fields[0];
    std::vector<ekv::ChatMessage> msgs;
    size_t in_bytes = tmpl.size();
    for (size_t i = 1; i < fields.size() && msgs.size() < kMaxMessages; i += 2) {
        msgs.push_back({fields[i], i + 1 < fields.size() ? fields[i + 1] : std::string()});
        in_bytes += msgs.back().role.size() + msgs.back().content.size();
    }

    static const ekv::ChatFormat kNamed[] = {ekv::ChatFormat::ChatML, ekv::ChatFormat::Llama3, ekv::ChatFormat::Gemma};
    const unsigned pick = (flags >> 1) & 3;
    const ekv::ChatFormat fmt = pick == 0 ? ekv::detect_chat_format(tmpl) : kNamed[pick - 1];
    std::string out;
    const ekv::Status st = ekv::render_chat(fmt, tmpl, msgs, gen, &out);
    if (!st.ok()) {
        if (st.message().empty()) __builtin_trap();
        const bool unknown = fmt == ekv::ChatFormat::Unknown && st.code() == EKV_ERR_UNSUPPORTED;
        const bool gemma_roles = fmt == ekv::ChatFormat::Gemma && st.code() == EKV_ERR_INVALID_ARGUMENT;
        if (!unknown && !gemma_roles) __builtin_trap();
    } else {
        if (fmt == ekv::ChatFormat::Unknown) __builtin_trap();
        if (out.size() > in_bytes + kOverheadPerMessage * (msgs.size() + 2)) __builtin_trap();
        if (valid_utf8(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1)) && !valid_utf8(out))
            __builtin_trap();
        if (fmt == ekv::ChatFormat::ChatML)
            check_chatml(tmpl, msgs, gen, out);
        else
            check_turns(fmt, msgs, gen, out);
    }
    if (fmt != ekv::ChatFormat::Unknown) check_c_abi(fmt, msgs, gen);
    return 0;
}
