// Pre-tokenizers of byte-level BPE models: hand-written matchers that split
// text exactly as the Hugging Face regexes do, over Unicode code points.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace ekv {

enum class PreTokenizerKind {
    Gpt2,    // GPT-2 regex ("gpt2", "default")
    SmolLM,  // every \p{N} isolated, then the GPT-2 regex per piece ("smollm")
    Llama3,  // Llama 3 regex ("llama-bpe")
};

// Maps a tokenizer.ggml.pre name; false if it is not one of ours.
bool pre_tokenizer_from_name(std::string_view name, PreTokenizerKind* out);

// Byte span [begin, end) of one pre-token inside the text.
struct TextSpan {
    uint32_t begin;
    uint32_t end;
};

// Reusable buffers so that splitting many fragments allocates once.
struct PreTokenizerScratch {
    std::vector<uint32_t> cps;      // code points
    std::vector<uint8_t> cls;       // unicode::classify() of each
    std::vector<uint32_t> offsets;  // byte offset of each code point, plus the end
};

// Splits `text` (any bytes; invalid UTF-8 bytes count as single symbols of
// no class) and appends the pre-token spans to *spans, in order, covering
// the whole text.
void pre_tokenize(PreTokenizerKind kind, std::string_view text, PreTokenizerScratch* scratch,
                  std::vector<TextSpan>* spans);

}  // namespace ekv
