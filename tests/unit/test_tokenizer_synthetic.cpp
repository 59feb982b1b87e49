// Tokenizer models on small hand-built vocabularies whose segmentations are
// derived by hand: byte-level BPE merge order, special-token matching, the
// SentencePiece score-based merge with byte fallback, and metadata errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace {

using ekv::Metadata;
using ekv::MetaType;
using ekv::MetaValue;
using ekv::Tokenizer;

MetaValue str_val(const std::string& s) {
    MetaValue v;
    v.type = MetaType::STRING;
    v.str = s;
    return v;
}
MetaValue strs_val(const std::vector<std::string>& s) {
    MetaValue v;
    v.type = MetaType::ARRAY;
    v.elem_type = MetaType::STRING;
    v.strs = s;
    return v;
}
MetaValue ints_val(const std::vector<int64_t>& i) {
    MetaValue v;
    v.type = MetaType::ARRAY;
    v.elem_type = MetaType::I32;
    v.ints = i;
    return v;
}
MetaValue floats_val(const std::vector<double>& f) {
    MetaValue v;
    v.type = MetaType::ARRAY;
    v.elem_type = MetaType::F32;
    v.floats = f;
    return v;
}
MetaValue u32_val(int64_t i) {
    MetaValue v;
    v.type = MetaType::U32;
    v.i = i;
    v.f = static_cast<double>(i);
    return v;
}
MetaValue bool_val(bool b) {
    MetaValue v;
    v.type = MetaType::BOOL;
    v.i = b;
    return v;
}

std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else {  // the GPT-2 alphabet stays below U+0800
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

// GPT-2's bytes_to_unicode(), written out again from its definition.
std::vector<std::string> byte_alphabet() {
    std::vector<std::string> out(256);
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        out[b] = utf8(keep ? b : extra++);
    }
    return out;
}

// Ids 0..255: the byte alphabet in byte order; then a few merged tokens.
struct ByteLevelVocab {
    enum : int32_t { kGt = 256, kHe, kGthe, kAa, kGtea, kCtlA, kCtlAb, kUser, kEnd };
    Metadata meta;
    explicit ByteLevelVocab(const std::string& pre) {
        std::vector<std::string> tokens = byte_alphabet();
        const std::string G = utf8(0x120);  // the alphabet's space
        for (const char* t : {"t", "he", "the", "aa", "tea"}) tokens.push_back(t);
        tokens[kGt] = G + "t";
        tokens[kGthe] = G + "the";
        tokens[kGtea] = G + "tea";
        tokens.insert(tokens.end(), {"<|a|>", "<|a|>b", "<user>", "<|end|>"});
        std::vector<int64_t> types(tokens.size(), 1);
        types[kCtlA] = types[kCtlAb] = types[kEnd] = 3;
        types[kUser] = 4;
        meta.set("tokenizer.ggml.model", str_val("gpt2"));
        meta.set("tokenizer.ggml.pre", str_val(pre));
        meta.set("tokenizer.ggml.tokens", strs_val(tokens));
        meta.set("tokenizer.ggml.token_type", ints_val(types));
        meta.set("tokenizer.ggml.merges", strs_val({G + " t", "h e", G + "t he", "a a"}));
        meta.set("tokenizer.ggml.eos_token_id", u32_val(kEnd));
    }
};

std::vector<int32_t> encode(const Tokenizer& t, const std::string& text, bool add_special = false,
                            bool parse_special = true) {
    std::vector<int32_t> ids;
    ekv::Status st = t.encode(text, add_special, parse_special, &ids);
    EXPECT_TRUE(st.ok()) << st.message();
    return ids;
}

std::unique_ptr<Tokenizer> build(const Metadata& meta) {
    std::unique_ptr<Tokenizer> t;
    ekv::Status st = Tokenizer::from_metadata(meta, &t);
    EXPECT_TRUE(st.ok()) << st.message();
    return t;
}

using Ids = std::vector<int32_t>;

TEST(ByteLevelBpe, MergesByRankThenLeftmost) {
    ByteLevelVocab v("gpt2");
    auto t = build(v.meta);
    ASSERT_TRUE(t);
    EXPECT_EQ(encode(*t, " the"), (Ids{ByteLevelVocab::kGthe}));
    EXPECT_EQ(encode(*t, "the"), (Ids{'t', ByteLevelVocab::kHe}));
    EXPECT_EQ(encode(*t, "hehe"), (Ids{ByteLevelVocab::kHe, ByteLevelVocab::kHe}));
    EXPECT_EQ(encode(*t, "aaa"), (Ids{ByteLevelVocab::kAa, 'a'}));  // leftmost pair first
    EXPECT_EQ(encode(*t, "aaaa"), (Ids{ByteLevelVocab::kAa, ByteLevelVocab::kAa}));
    // GPT-2 pre-tokens: " the" | " tea" | "!!" | "  " | " the" (a space run
    // leaves its last space to the next word). Byte b has id b.
    EXPECT_EQ(encode(*t, " the tea!!   the"),
              (Ids{ByteLevelVocab::kGthe, ByteLevelVocab::kGt, 'e', 'a', '!', '!', ' ', ' ',
                   ByteLevelVocab::kGthe}));
    EXPECT_TRUE(encode(*t, "").empty());
}

TEST(ByteLevelBpe, LlamaBpeTakesWholeWordTokens) {
    ByteLevelVocab gpt2("gpt2"), llama("llama-bpe");
    auto a = build(gpt2.meta), b = build(llama.meta);
    ASSERT_TRUE(a && b);
    // " tea" is a token but no merge chain reaches it: only ignore_merges finds it.
    EXPECT_EQ(encode(*a, " tea"), (Ids{ByteLevelVocab::kGt, 'e', 'a'}));
    EXPECT_EQ(encode(*b, " tea"), (Ids{ByteLevelVocab::kGtea}));
}

TEST(ByteLevelBpe, SpecialTokenMatching) {
    ByteLevelVocab v("gpt2");
    auto t = build(v.meta);
    ASSERT_TRUE(t);
    // Longest control token wins at a position; user-defined always match.
    EXPECT_EQ(encode(*t, "x<|a|>by"), (Ids{'x', ByteLevelVocab::kCtlAb, 'y'}));
    EXPECT_EQ(encode(*t, "<|a|><|a|>"), (Ids{ByteLevelVocab::kCtlA, ByteLevelVocab::kCtlA}));
    EXPECT_EQ(encode(*t, "x<user>", false, false), (Ids{'x', ByteLevelVocab::kUser}));
    Ids plain = encode(*t, "<|a|>", false, false);
    EXPECT_EQ(plain, (Ids{'<', '|', 'a', '|', '>'}));
    EXPECT_TRUE(t->is_eog(ByteLevelVocab::kEnd));
    EXPECT_EQ(t->eos(), ByteLevelVocab::kEnd);
    EXPECT_EQ(t->eot(), ByteLevelVocab::kEnd);  // inferred from "<|end|>"
    EXPECT_EQ(t->bos(), -1);
    EXPECT_EQ(encode(*t, "t", true), (Ids{'t'}));  // no add_bos for gpt2 by default
}

TEST(ByteLevelBpe, EndOfTurnMarkersActAsControlTokens) {
    // Gemma-style conversions may type <end_of_turn> user-defined; it still
    // ends generation, is hidden from text and parsed only as special.
    ByteLevelVocab v("gpt2");
    std::vector<std::string> tokens = v.meta.find("tokenizer.ggml.tokens")->strs;
    tokens[ByteLevelVocab::kUser] = "<end_of_turn>";
    v.meta.set("tokenizer.ggml.tokens", strs_val(tokens));
    auto t = build(v.meta);
    ASSERT_TRUE(t);
    EXPECT_TRUE(t->is_eog(ByteLevelVocab::kUser));
    EXPECT_TRUE(t->is_special(ByteLevelVocab::kUser));
    EXPECT_EQ(t->eot(), ByteLevelVocab::kUser);  // preferred over <|end|>
    EXPECT_EQ(encode(*t, "<end_of_turn>", false, true), (Ids{ByteLevelVocab::kUser}));
    EXPECT_NE(encode(*t, "<end_of_turn>", false, false), (Ids{ByteLevelVocab::kUser}));
}

// SentencePiece vocab: <unk>, <s>, </s>, 256 byte tokens, then pieces with
// scores chosen so that the merge order can be followed by hand.
struct SpmVocab {
    Metadata meta;
    std::vector<std::string> tokens;
    int32_t id(const std::string& s) const {
        for (size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] == s) return static_cast<int32_t>(i);
        return -100;
    }
    explicit SpmVocab(bool with_bytes = true) {
        std::vector<int64_t> types;
        std::vector<double> scores;
        auto add = [&](const std::string& t, int64_t type, double score) {
            tokens.push_back(t);
            types.push_back(type);
            scores.push_back(score);
        };
        add("<unk>", 2, 0);
        add("<s>", 3, 0);
        add("</s>", 3, 0);
        if (with_bytes) {
            char name[8];
            for (int b = 0; b < 256; ++b) {
                std::snprintf(name, sizeof name, "<0x%02X>", b);
                add(name, 6, 0);
            }
        }
        const std::string S = "\xE2\x96\x81";  // ▁
        add(S, 1, -10);
        for (const char* c : {"h", "e", "l", "o", "w", "r", "d"}) add(c, 1, -20);
        add("ll", 1, -5);
        add("he", 1, -6);
        add("hell", 1, -3);
        add("hello", 1, -2);
        add(S + "hello", 1, -1);
        add("or", 1, -7);
        add("wor", 1, -4);
        add(S + "w", 1, -8);
        add("ld", 1, -9);
        meta.set("tokenizer.ggml.model", str_val("llama"));
        meta.set("tokenizer.ggml.tokens", strs_val(tokens));
        meta.set("tokenizer.ggml.token_type", ints_val(types));
        meta.set("tokenizer.ggml.scores", floats_val(scores));
        meta.set("tokenizer.ggml.bos_token_id", u32_val(1));
        meta.set("tokenizer.ggml.eos_token_id", u32_val(2));
        meta.set("tokenizer.ggml.unknown_token_id", u32_val(0));
    }
};

TEST(SentencePiece, ScoreOrderedMerges) {
    SpmVocab v;
    auto t = build(v.meta);
    ASSERT_TRUE(t);
    const std::string S = "\xE2\x96\x81";
    // "▁hello▁world": ll, he, hell, hello, ▁hello, or, wor (▁w is stale), ld.
    Ids expected = {1, v.id(S + "hello"), v.id(S), v.id("wor"), v.id("ld")};
    EXPECT_EQ(encode(*t, "hello world", true), expected);
    // Equal scores: the leftmost pair merges first.
    EXPECT_EQ(encode(*t, "lll"), (Ids{v.id(S), v.id("ll"), v.id("l")}));

    std::string text;
    ASSERT_TRUE(t->decode(expected.data(), expected.size(), true, &text).ok());
    EXPECT_EQ(text, "hello world");  // the prefix space is dropped again
    ASSERT_TRUE(t->decode(expected.data(), expected.size(), false, &text).ok());
    EXPECT_EQ(text, "<s> hello world");
}

TEST(SentencePiece, ByteFallbackAndUnknown) {
    SpmVocab v;
    auto t = build(v.meta);
    ASSERT_TRUE(t);
    const std::string S = "\xE2\x96\x81";
    // 'z' and 'é' (C3 A9) are not pieces: their bytes become <0x..> tokens.
    Ids ids = encode(*t, "z\xC3\xA9");
    EXPECT_EQ(ids, (Ids{v.id(S), v.id("<0x7A>"), v.id("<0xC3>"), v.id("<0xA9>")}));
    std::string text;
    ASSERT_TRUE(t->decode(ids.data(), ids.size(), true, &text).ok());
    EXPECT_EQ(text, "z\xC3\xA9");
    std::string piece;
    ASSERT_TRUE(t->token_to_piece(v.id("<0xC3>"), false, &piece).ok());
    EXPECT_EQ(piece, "\xC3");

    SpmVocab no_bytes(false);
    auto u = build(no_bytes.meta);
    ASSERT_TRUE(u);
    EXPECT_EQ(encode(*u, "hez"), (Ids{no_bytes.id(S), no_bytes.id("he"), 0}));
}

TEST(SentencePiece, SpacePrefixRule) {
    SpmVocab v;
    v.meta.set("tokenizer.ggml.add_space_prefix", bool_val(false));
    v.meta.set("tokenizer.ggml.add_bos_token", bool_val(false));
    auto t = build(v.meta);
    ASSERT_TRUE(t);
    EXPECT_EQ(encode(*t, "hello", true), (Ids{v.id("hello")}));

    SpmVocab w;
    auto p = build(w.meta);
    ASSERT_TRUE(p);
    const std::string S = "\xE2\x96\x81";
    // With the prefix rule, text after a special token gets the space too.
    EXPECT_EQ(encode(*p, "<s>hello</s>hello"),
              (Ids{1, w.id(S + "hello"), 2, w.id(S + "hello")}));
}

TEST(TokenizerMetadata, RejectsWhatItCannotRun) {
    Metadata empty;
    std::unique_ptr<Tokenizer> t;
    EXPECT_EQ(Tokenizer::from_metadata(empty, &t).code(), EKV_ERR_UNSUPPORTED);

    ByteLevelVocab bert("gpt2");
    bert.meta.set("tokenizer.ggml.model", str_val("bert"));
    ekv::Status st = Tokenizer::from_metadata(bert.meta, &t);
    EXPECT_EQ(st.code(), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(st.message().find("bert"), std::string::npos);

    ByteLevelVocab qwen("qwen2");
    st = Tokenizer::from_metadata(qwen.meta, &t);
    EXPECT_EQ(st.code(), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(st.message().find("qwen2"), std::string::npos);

    ByteLevelVocab short_types("gpt2");
    short_types.meta.set("tokenizer.ggml.token_type", ints_val({1, 1, 1}));
    EXPECT_EQ(Tokenizer::from_metadata(short_types.meta, &t).code(), EKV_ERR_INVALID_FILE);

    ByteLevelVocab bad_bos("gpt2");
    bad_bos.meta.set("tokenizer.ggml.bos_token_id", u32_val(1 << 20));
    EXPECT_EQ(Tokenizer::from_metadata(bad_bos.meta, &t).code(), EKV_ERR_INVALID_FILE);

    ByteLevelVocab no_merges("gpt2");
    Metadata m;
    for (const auto& [k, val] : no_merges.meta.all())
        if (k != "tokenizer.ggml.merges") m.set(k, val);
    EXPECT_EQ(Tokenizer::from_metadata(m, &t).code(), EKV_ERR_INVALID_FILE);

    ByteLevelVocab bad_merge("gpt2");
    bad_merge.meta.set("tokenizer.ggml.merges", strs_val({"nospace"}));
    EXPECT_EQ(Tokenizer::from_metadata(bad_merge.meta, &t).code(), EKV_ERR_INVALID_FILE);
    EXPECT_FALSE(t);  // never set on failure
}

}  // namespace
