// Tokenization, detokenization and chat templates.
#include <cstring>

#include "api/api_internal.h"
#include "text/chat_template.h"

using namespace ekv;

namespace {

Status need_tokenizer(const ekv_model* model, const Tokenizer** out) {
    EKV_CHECK_HANDLE(model, "model");
    if (!model->model->tokenizer) return Error(EKV_ERR_UNSUPPORTED, "the model file has no tokenizer");
    *out = model->model->tokenizer.get();
    return Status::Ok();
}

// Token ids into a caller buffer; BUFFER_TOO_SMALL with *n_tokens the count
// needed (nothing written).
Status copy_tokens_out(const std::vector<int32_t>& ids, const char* what, int32_t* tokens, int32_t capacity,
                       int32_t* n_tokens) {
    *n_tokens = static_cast<int32_t>(ids.size());
    if (ids.size() > static_cast<size_t>(capacity))
        return Error(EKV_ERR_BUFFER_TOO_SMALL, "%s has %zu tokens, buffer holds %d", what, ids.size(), capacity);
    if (!ids.empty()) {
        EKV_CHECK_HANDLE(tokens, "tokens");
        std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
    }
    return Status::Ok();
}

// The chat format to render with: template_name, else the model's template.
Status chat_format_of(const ekv_model* model, const Tokenizer* tok, const char* template_name, ChatFormat* fmt) {
    if (template_name) {
        if (!chat_format_from_name(template_name, fmt))
            return Error(EKV_ERR_INVALID_ARGUMENT, "unknown chat template '%s' (expected chatml, llama3 or gemma)",
                         template_name);
        return Status::Ok();
    }
    *fmt = detect_chat_format(tok->chat_template());
    // GGUFs converted without a template (Gemma 3 270M's): Gemma models only
    // ever shipped the Gemma turn format.
    const std::string& arch = model->model->info().architecture;
    if (*fmt == ChatFormat::Unknown && tok->chat_template().empty() && arch.compare(0, 5, "gemma") == 0)
        *fmt = ChatFormat::Gemma;
    if (*fmt == ChatFormat::Unknown)
        return Error(EKV_ERR_UNSUPPORTED,
                     "the model's chat template is not one edgekv recognises (ChatML, Llama 3, Gemma); pass "
                     "template_name");
    return Status::Ok();
}

// Renders the conversation; `literal` gets the ranges the caller wrote.
Status render_messages(const ekv_model* model, const char* template_name, const ekv_chat_message* messages,
                       size_t n_messages, int add_generation_prompt, const Tokenizer** tok, std::string* out,
                       std::vector<TextRange>* literal) {
    EKV_TRY(need_tokenizer(model, tok));
    if (n_messages > 0 && !messages) return Error(EKV_ERR_INVALID_ARGUMENT, "messages is NULL");
    ChatFormat fmt = ChatFormat::Unknown;
    EKV_TRY(chat_format_of(model, *tok, template_name, &fmt));
    std::vector<ChatMessage> msgs;
    for (size_t i = 0; i < n_messages; ++i) {
        if (!messages[i].role || !messages[i].content)
            return Error(EKV_ERR_INVALID_ARGUMENT, "message %zu has a NULL role or content", i);
        msgs.push_back(ChatMessage{messages[i].role, messages[i].content});
    }
    return render_chat(fmt, (*tok)->chat_template(), msgs, add_generation_prompt != 0, out, literal);
}

}  // namespace

extern "C" {

ekv_status ekv_tokenize(const ekv_model* model, const char* text, size_t text_len, int add_special, int parse_special,
                        int32_t* tokens, int32_t capacity, int32_t* n_tokens) {
    return api::guarded([&]() -> Status {
        const Tokenizer* tok = nullptr;
        EKV_TRY(need_tokenizer(model, &tok));
        if (!text && text_len > 0) return Error(EKV_ERR_INVALID_ARGUMENT, "text is NULL");
        EKV_CHECK_HANDLE(n_tokens, "n_tokens");
        if (capacity < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "capacity is negative");
        std::vector<int32_t> ids;
        EKV_TRY(tok->encode(std::string_view(text ? text : "", text_len), add_special != 0, parse_special != 0, &ids));
        return copy_tokens_out(ids, "text", tokens, capacity, n_tokens);
    });
}

ekv_status ekv_token_to_piece(const ekv_model* model, int32_t token, int special, char* buf, size_t cap, size_t* len) {
    return api::guarded([&]() -> Status {
        const Tokenizer* tok = nullptr;
        EKV_TRY(need_tokenizer(model, &tok));
        std::string piece;
        EKV_TRY(tok->token_to_piece(token, special != 0, &piece));
        return api::copy_out(piece, buf, cap, len);
    });
}

ekv_status ekv_detokenize(const ekv_model* model, const int32_t* tokens, int32_t n_tokens, int skip_special, char* buf,
                          size_t cap, size_t* len) {
    return api::guarded([&]() -> Status {
        const Tokenizer* tok = nullptr;
        EKV_TRY(need_tokenizer(model, &tok));
        if (n_tokens < 0 || (n_tokens > 0 && !tokens))
            return Error(EKV_ERR_INVALID_ARGUMENT, "tokens is NULL or n_tokens negative");
        std::string text;
        EKV_TRY(tok->decode(tokens, static_cast<size_t>(n_tokens), skip_special != 0, &text));
        return api::copy_out(text, buf, cap, len);
    });
}

ekv_status ekv_token_special(const ekv_model* model, ekv_special_token which, int32_t* out) {
    return api::guarded([&]() -> Status {
        const Tokenizer* tok = nullptr;
        EKV_TRY(need_tokenizer(model, &tok));
        EKV_CHECK_HANDLE(out, "out");
        switch (api::enum_int(which)) {
            case EKV_TOKEN_BOS: *out = tok->bos(); break;
            case EKV_TOKEN_EOS: *out = tok->eos(); break;
            case EKV_TOKEN_EOT: *out = tok->eot(); break;
            case EKV_TOKEN_PAD: *out = tok->pad(); break;
            default:
                return Error(EKV_ERR_INVALID_ARGUMENT, "unknown special token kind %d", api::enum_int(which));
        }
        return Status::Ok();
    });
}

int ekv_token_is_eog(const ekv_model* model, int32_t token) {
    if (!model || !model->model->tokenizer) return 0;
    return model->model->tokenizer->is_eog(token) ? 1 : 0;
}

ekv_status ekv_detokenizer_create(const ekv_model* model, ekv_detokenizer** out) {
    return api::guarded([&]() -> Status {
        const Tokenizer* tok = nullptr;
        EKV_TRY(need_tokenizer(model, &tok));
        EKV_CHECK_HANDLE(out, "out");
        std::unique_ptr<ekv_detokenizer> d(new ekv_detokenizer());
        ekv_model* owner = const_cast<ekv_model*>(model);
        api::retain(owner);  // the detokenizer keeps its model alive
        d->owner = owner;
        *out = d.release();
        return Status::Ok();
    });
}

void ekv_detokenizer_free(ekv_detokenizer* detok) { delete detok; }

ekv_status ekv_detokenizer_push(ekv_detokenizer* detok, int32_t token, char* buf, size_t cap, size_t* len) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(detok, "detok");
        const Tokenizer& tok = *detok->owner->model->tokenizer;
        detok->piece.clear();
        EKV_TRY(tok.token_to_piece(token, false, &detok->piece));
        // Check the buffer before consuming the bytes, so a retry loses nothing.
        if (!buf || cap < detok->piece.size() + 8) {
            if (len) *len = detok->piece.size() + 8;
            return Error(EKV_ERR_BUFFER_TOO_SMALL, "buffer must hold at least %zu bytes", detok->piece.size() + 8);
        }
        std::string text;
        detok->utf8.push(detok->piece, &text);
        return api::copy_out(text, buf, cap, len);
    });
}

ekv_status ekv_detokenizer_flush(ekv_detokenizer* detok, char* buf, size_t cap, size_t* len) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(detok, "detok");
        // An unfinished character becomes one U+FFFD (3 bytes) at most.
        if (!buf || cap < 4) {
            if (len) *len = 3;
            return Error(EKV_ERR_BUFFER_TOO_SMALL, "buffer must hold at least 4 bytes");
        }
        std::string text;
        detok->utf8.flush(&text);
        detok->utf8.reset();
        return api::copy_out(text, buf, cap, len);
    });
}

ekv_status ekv_detokenizer_reset(ekv_detokenizer* detok) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(detok, "detok");
        detok->utf8.reset();
        return Status::Ok();
    });
}

ekv_status ekv_chat_apply_template(const ekv_model* model, const char* template_name, const ekv_chat_message* messages,
                                   size_t n_messages, int add_generation_prompt, char* buf, size_t cap, size_t* len) {
    return api::guarded([&]() -> Status {
        const Tokenizer* tok = nullptr;
        std::string out;
        EKV_TRY(render_messages(model, template_name, messages, n_messages, add_generation_prompt, &tok, &out, nullptr));
        return api::copy_out(out, buf, cap, len);
    });
}

ekv_status ekv_chat_tokenize(const ekv_model* model, const char* template_name, const ekv_chat_message* messages,
                             size_t n_messages, int add_generation_prompt, int32_t* tokens, int32_t capacity,
                             int32_t* n_tokens) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(n_tokens, "n_tokens");
        if (capacity < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "capacity is negative");
        const Tokenizer* tok = nullptr;
        std::string text;
        std::vector<TextRange> literal;
        EKV_TRY(render_messages(model, template_name, messages, n_messages, add_generation_prompt, &tok, &text,
                                &literal));
        // The template writes its own BOS text (Llama 3, Gemma): none added here.
        std::vector<int32_t> ids;
        EKV_TRY(tok->encode_with_literals(text, /*add_special=*/false, literal, &ids));
        return copy_tokens_out(ids, "conversation", tokens, capacity, n_tokens);
    });
}

}  // extern "C"
