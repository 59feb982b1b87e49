// Fuzz target: arbitrary bytes through the tiny Llama's byte-level BPE via
// the C ABI. Its vocabulary holds all 256 byte symbols and, like Hugging
// Face's ByteLevel model, it neither normalizes nor adds a prefix space, so:
//  - the raw pieces of encode(x) concatenate to x, for any bytes;
//  - decode(encode(x)) == x for valid UTF-8 (add_special = parse_special =
//    0), and otherwise x with U+FFFD for each maximal invalid subpart, as
//    HF's from_utf8_lossy decodes;
//  - with parse_special = 1 the control tokens render back as their text;
//  - the streaming detokenizer gives the same text in whole characters.
// The model comes from EKV_FUZZ_TOKENIZER_GGUF, else the fixture path
// compiled in; it loads once.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "edgekv.h"
#include "text/utf8_stream.h"

namespace {

ekv_model* load_once() {
    static ekv_model* model = [] {
        const char* env = std::getenv("EKV_FUZZ_TOKENIZER_GGUF");
        const char* path = env && env[0] ? env : EKV_FUZZ_TINY_LLAMA_GGUF;
        ekv_model_params p = ekv_model_default_params();
        p.backend = EKV_BACKEND_CPU;
        p.n_threads = 1;
        ekv_model* m = nullptr;
        if (ekv_model_load(path, &p, &m) != EKV_OK) {
            std::fprintf(stderr, "fuzz_tokenize_roundtrip: cannot load %s: %s\n", path, ekv_last_error());
            std::abort();
        }
        return m;
    }();
    return model;
}

std::vector<int32_t> encode(ekv_model* m, std::string_view text, int parse_special) {
    std::vector<int32_t> ids(text.size() + 8);
    int32_t n = 0;
    // Byte-level BPE: never more tokens than bytes (no BOS here).
    if (ekv_tokenize(m, text.data(), text.size(), 0, parse_special, ids.data(), static_cast<int32_t>(ids.size()),
                     &n) != EKV_OK)
        __builtin_trap();
    if (n < 0 || static_cast<size_t>(n) > text.size()) __builtin_trap();
    ids.resize(static_cast<size_t>(n));
    return ids;
}

std::string decode(ekv_model* m, const std::vector<int32_t>& ids) {
    size_t len = 0;
    ekv_status st = ekv_detokenize(m, ids.data(), static_cast<int32_t>(ids.size()), 0, nullptr, 0, &len);
    if (st != EKV_ERR_BUFFER_TOO_SMALL) __builtin_trap();  // a size query always reports the size
    std::string out(len + 1, '\0');
    if (ekv_detokenize(m, ids.data(), static_cast<int32_t>(ids.size()), 0, out.data(), out.size(), &len) != EKV_OK)
        __builtin_trap();
    out.resize(len);
    return out;
}

std::string raw_pieces(ekv_model* m, const std::vector<int32_t>& ids, int special) {
    std::string out;
    char buf[256];
    for (int32_t id : ids) {
        size_t len = 0;
        if (ekv_token_to_piece(m, id, special, buf, sizeof buf, &len) != EKV_OK) __builtin_trap();
        if (len == 0 && special == 0) __builtin_trap();  // a control token from plain text
        out.append(buf, len);
    }
    return out;
}

std::string streamed(ekv_model* m, const std::vector<int32_t>& ids) {
    ekv_detokenizer* d = nullptr;
    if (ekv_detokenizer_create(m, &d) != EKV_OK) __builtin_trap();
    std::string out;
    char buf[512];
    size_t len = 0;
    for (int32_t id : ids) {
        if (ekv_detokenizer_push(d, id, buf, sizeof buf, &len) != EKV_OK) __builtin_trap();
        std::string clean;
        ekv::utf8_sanitize(std::string_view(buf, len), &clean);
        if (clean != std::string_view(buf, len)) __builtin_trap();  // a split character
        out.append(buf, len);
    }
    if (ekv_detokenizer_flush(d, buf, sizeof buf, &len) != EKV_OK) __builtin_trap();
    out.append(buf, len);
    ekv_detokenizer_free(d);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 4096) return 0;  // BPE cost grows with word length: keep runs fast
    ekv_model* m = load_once();
    const std::string_view x(reinterpret_cast<const char*>(data), size);
    std::string lossy;
    ekv::utf8_sanitize(x, &lossy);
    const bool valid = lossy == x;

    const std::vector<int32_t> ids = encode(m, x, 0);
    if (raw_pieces(m, ids, 0) != x) __builtin_trap();
    const std::string text = decode(m, ids);
    if (valid && text != x) __builtin_trap();
    if (text != lossy) __builtin_trap();
    if (streamed(m, ids) != lossy) __builtin_trap();

    // Control-token text parsed as the tokens still decodes to the text.
    const std::vector<int32_t> special = encode(m, x, 1);
    if (raw_pieces(m, special, 1) != x || decode(m, special) != lossy) __builtin_trap();
    return 0;
}
