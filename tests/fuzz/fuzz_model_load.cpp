// Fuzz target: GGUF bytes all the way to a working model through the C ABI:
// ekv_model_load_from_memory on the CPU (container, hyperparameters, weights,
// tokenizer, chat template), then, when it loads, tokenize/detokenize a short
// text, render a chat, create the model's natural cache and run a tiny
// forward. Any outcome but a clean status (or a crash) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "edgekv.h"
#include "text/utf8_stream.h"

namespace {

void drop_log(ekv_log_level, const char*, void*) {}

// A refusal carries a documented reason and a message, never an internal error.
void check_refusal(ekv_status st) {
    if (st == EKV_OK || st == EKV_ERR_INTERNAL) __builtin_trap();
    if (ekv_last_error()[0] == '\0') __builtin_trap();
}

bool valid_utf8(const char* s, size_t n) {
    std::string clean;
    ekv::utf8_sanitize(std::string_view(s, n), &clean);
    return clean.size() == n && std::memcmp(clean.data(), s, n) == 0;
}

void exercise_text(ekv_model* m, std::vector<int32_t>* ids) {
    static const char kText[] = "Hello, world! caf\xC3\xA9 \xF0\x9F\x98\x80 <|im_start|>user\n";
    int32_t n = 0;
    int32_t buf[256];
    ekv_status st = ekv_tokenize(m, kText, sizeof kText - 1, 1, 1, buf, 256, &n);
    if (st == EKV_ERR_UNSUPPORTED) return;  // no tokenizer in the file: fine
    if (st != EKV_OK) {
        check_refusal(st);
        return;
    }
    if (n < 0 || n > 256) __builtin_trap();
    ids->assign(buf, buf + n);
    // Ids the tokenizer gave must decode, to valid UTF-8.
    std::vector<char> text(4096);
    size_t len = 0;
    st = ekv_detokenize(m, buf, n, 0, text.data(), text.size(), &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        if (len < text.size() - 1) __builtin_trap();
        text.resize(len + 1);
        st = ekv_detokenize(m, buf, n, 0, text.data(), text.size(), &len);
    }
    if (st != EKV_OK || !valid_utf8(text.data(), len) || text[len] != '\0') __builtin_trap();
    for (int32_t i = 0; i < n; ++i) {
        char piece[512];
        st = ekv_token_to_piece(m, buf[i], 1, piece, sizeof piece, &len);
        if (st != EKV_OK && st != EKV_ERR_BUFFER_TOO_SMALL) __builtin_trap();
    }
    const ekv_chat_message msgs[] = {{"system", "s"}, {"user", "hi"}};
    char chat[1024];
    st = ekv_chat_apply_template(m, nullptr, msgs, 2, 1, chat, sizeof chat, &len);
    if (st != EKV_OK && st != EKV_ERR_UNSUPPORTED && st != EKV_ERR_BUFFER_TOO_SMALL) check_refusal(st);
}

void exercise_cache(ekv_model* m, const ekv_model_info& info, const std::vector<int32_t>& ids) {
    ekv_cache_params cp = ekv_cache_default_params();
    cp.max_cache_len = 16;  // static-shape caches stay small whatever the file claims
    ekv_cache* cache = nullptr;
    ekv_status st = ekv_cache_create(m, &cp, &cache);
    if (st != EKV_OK) {
        if (cache) __builtin_trap();
        check_refusal(st);
        return;
    }
    std::vector<int32_t> toks;
    for (int32_t id : ids)
        if (id >= 0 && id < info.n_vocab && toks.size() < 4) toks.push_back(id);
    if (toks.empty()) toks.push_back(0);
    // Bounded work: files claiming huge dimensions cannot hold their weights
    // in a fuzz input, but guard the logits buffer anyway.
    if (info.n_vocab > 0 && info.n_vocab <= (1 << 20)) {
        std::vector<float> logits(static_cast<size_t>(info.n_vocab));
        st = ekv_forward(m, cache, toks.data(), static_cast<int32_t>(toks.size()), nullptr, EKV_LOGITS_LAST,
                         logits.data(), logits.size());
        if (st != EKV_OK) check_refusal(st);
    }
    ekv_cache_free(cache);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool quiet = [] {
        ekv_log_set_callback(drop_log, nullptr);  // misalignment warnings per input
        return true;
    }();
    (void)quiet;
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    p.n_threads = 1;
    ekv_model* m = nullptr;
    const ekv_status st = ekv_model_load_from_memory(data, size, &p, &m);
    if (st != EKV_OK) {
        if (m) __builtin_trap();  // *out stays NULL on failure
        check_refusal(st);
        return 0;
    }
    ekv_model_info info = ekv_model_info_default();
    if (ekv_model_get_info(m, &info) != EKV_OK || info.n_vocab <= 0 || info.n_layers <= 0) __builtin_trap();
    std::vector<int32_t> ids;
    exercise_text(m, &ids);
    exercise_cache(m, info, ids);
    ekv_model_free(m);
    return 0;
}
