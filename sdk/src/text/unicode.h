// Unicode helpers for the text layer: lenient UTF-8 decoding, code point
// classes for the pre-tokenizer regexes, and the GPT-2 byte alphabet.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ekv::unicode {

// Class bits of a code point, as the pre-tokenizer regexes see it.
enum : uint8_t {
    kClassLetter = 1,      // \p{L}
    kClassNumber = 2,      // \p{N}
    kClassWhitespace = 4,  // \s (White_Space)
};

uint8_t classify(uint32_t cp);
inline bool is_letter(uint32_t cp) { return classify(cp) & kClassLetter; }
inline bool is_number(uint32_t cp) { return classify(cp) & kClassNumber; }
inline bool is_whitespace(uint32_t cp) { return classify(cp) & kClassWhitespace; }

// Code point used for a byte that does not start a valid UTF-8 sequence.
constexpr uint32_t kInvalidCodepoint = 0xFFFD;

// Decodes one code point at s[pos]. Invalid or truncated sequences decode as
// kInvalidCodepoint with length 1, so every byte of the input is covered.
// Returns the sequence length in bytes (>= 1); pos must be < s.size().
size_t decode_utf8(std::string_view s, size_t pos, uint32_t* cp);

// Appends the UTF-8 encoding of cp (cp <= 0x10FFFF).
void append_utf8(uint32_t cp, std::string* out);

// GPT-2 byte-level alphabet: every byte maps to a printable code point
// (printable Latin-1 bytes map to themselves, the rest to U+0100 upward).
uint32_t byte_to_codepoint(uint8_t b);
// Inverse of byte_to_codepoint; false if cp is not in the alphabet.
bool codepoint_to_byte(uint32_t cp, uint8_t* b);

}  // namespace ekv::unicode
