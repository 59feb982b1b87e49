// Pre-tokenizer splits, derived from the regexes by hand and checked against
// Hugging Face `tokenizers` (pre_tokenize_str) when written.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "text/pretokenizer.h"
#include "text/unicode.h"

namespace {

using ekv::PreTokenizerKind;
using Pieces = std::vector<std::string>;

Pieces split(PreTokenizerKind kind, const std::string& text) {
    ekv::PreTokenizerScratch scratch;
    std::vector<ekv::TextSpan> spans;
    ekv::pre_tokenize(kind, text, &scratch, &spans);
    Pieces out;
    size_t expected_begin = 0;
    for (const auto& s : spans) {
        EXPECT_EQ(s.begin, expected_begin) << "spans must tile the text";
        EXPECT_LT(s.begin, s.end);
        out.push_back(text.substr(s.begin, s.end - s.begin));
        expected_begin = s.end;
    }
    EXPECT_EQ(expected_begin, text.size());
    return out;
}

TEST(PreTokenizer, Gpt2) {
    const auto k = PreTokenizerKind::Gpt2;
    EXPECT_EQ(split(k, "a  b"), (Pieces{"a", " ", " b"}));
    EXPECT_EQ(split(k, "x\n\n  y"), (Pieces{"x", "\n\n ", " y"}));
    EXPECT_EQ(split(k, "hi!!\n\n"), (Pieces{"hi", "!!", "\n\n"}));
    EXPECT_EQ(split(k, "It's 12345 cats"), (Pieces{"It", "'s", " 12345", " cats"}));
    EXPECT_EQ(split(k, "'\xC5\xBFx"), (Pieces{"'", "\xC5\xBFx"}));  // 'ſx: case-sensitive
    EXPECT_EQ(split(k, "\tword  \n "), (Pieces{"\t", "word", "  \n "}));
    EXPECT_EQ(split(k, "a 1"), (Pieces{"a", " 1"}));
    EXPECT_TRUE(split(k, "").empty());
}

TEST(PreTokenizer, Llama3) {
    const auto k = PreTokenizerKind::Llama3;
    EXPECT_EQ(split(k, "a  b"), (Pieces{"a", " ", " b"}));
    EXPECT_EQ(split(k, "x\n\n  y"), (Pieces{"x", "\n\n", " ", " y"}));
    EXPECT_EQ(split(k, "hi!!\n\n"), (Pieces{"hi", "!!\n\n"}));
    EXPECT_EQ(split(k, "It's 12345 cats"), (Pieces{"It", "'s", " ", "123", "45", " cats"}));
    EXPECT_EQ(split(k, "'\xC5\xBFx"), (Pieces{"'\xC5\xBF", "x"}));  // (?i) folds ſ to s
    EXPECT_EQ(split(k, "\tword  \n "), (Pieces{"\tword", "  \n", " "}));
    EXPECT_EQ(split(k, "a 1"), (Pieces{"a", " ", "1"}));
    EXPECT_EQ(split(k, "WE'LL"), (Pieces{"WE", "'LL"}));
}

TEST(PreTokenizer, SmolLMIsolatesDigits) {
    const auto k = PreTokenizerKind::SmolLM;
    EXPECT_EQ(split(k, "a  b"), (Pieces{"a", " ", " b"}));
    EXPECT_EQ(split(k, "It's 12345 cats"),
              (Pieces{"It", "'s", " ", "1", "2", "3", "4", "5", " cats"}));
    EXPECT_EQ(split(k, "a 1"), (Pieces{"a", " ", "1"}));
    EXPECT_EQ(split(k, "\xD9\xA1\xC2\xBD"), (Pieces{"\xD9\xA1", "\xC2\xBD"}));  // ١½: any \p{N}
}

TEST(PreTokenizer, InvalidBytesAreSymbolsOfTheirOwn) {
    // 0xFF is no character: it groups like punctuation and is never lost.
    EXPECT_EQ(split(PreTokenizerKind::Gpt2, "ab\xFF\xFE cd"), (Pieces{"ab", "\xFF\xFE", " cd"}));
    EXPECT_EQ(split(PreTokenizerKind::Llama3, "\xC3"), (Pieces{"\xC3"}));
}

TEST(PreTokenizer, NamesAndClasses) {
    PreTokenizerKind k;
    EXPECT_TRUE(ekv::pre_tokenizer_from_name("smollm", &k));
    EXPECT_EQ(k, PreTokenizerKind::SmolLM);
    EXPECT_TRUE(ekv::pre_tokenizer_from_name("default", &k));
    EXPECT_EQ(k, PreTokenizerKind::Gpt2);
    EXPECT_TRUE(ekv::pre_tokenizer_from_name("llama-bpe", &k));
    EXPECT_EQ(k, PreTokenizerKind::Llama3);
    EXPECT_FALSE(ekv::pre_tokenizer_from_name("qwen2", &k));

    using namespace ekv::unicode;
    EXPECT_TRUE(is_letter('a'));
    EXPECT_TRUE(is_letter(0x4E2D));   // 中
    EXPECT_TRUE(is_letter(0x1C5));    // ǅ (Lt)
    EXPECT_FALSE(is_letter(0x301));   // combining acute (Mn)
    EXPECT_TRUE(is_number(0x661));    // Arabic-Indic one
    EXPECT_TRUE(is_number(0x216B));   // Ⅻ (Nl)
    EXPECT_TRUE(is_number(0xBD));     // ½ (No)
    EXPECT_TRUE(is_whitespace(0x3000));
    EXPECT_TRUE(is_whitespace(0x85));
    EXPECT_FALSE(is_whitespace(0x1C));  // Python's isspace says yes; \s says no
    EXPECT_FALSE(is_whitespace(0x200B));
    EXPECT_EQ(byte_to_codepoint(' '), 0x120u);
    EXPECT_EQ(byte_to_codepoint('A'), static_cast<uint32_t>('A'));
    uint8_t b = 0;
    EXPECT_TRUE(codepoint_to_byte(0x120, &b));
    EXPECT_EQ(b, ' ');
    EXPECT_FALSE(codepoint_to_byte(0x4E2D, &b));
}

}  // namespace
