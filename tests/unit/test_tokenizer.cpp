// Byte-level BPE on the real SmolLM2 tokenizer, against ids produced by Hugging
// Face `tokenizers` (tools/gen_tokenizer_fixtures.py), for the model's own
// "smollm" pre-tokenizer and, with the same vocab, "gpt2" and "llama-bpe".
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "text/utf8_stream.h"
#include "text_test_util.h"

namespace {

using ekv::Tokenizer;
using ekv_text_test::ids_of;
using ekv_text_test::str_of;

class SmolLM2Tokenizer : public ::testing::Test {
protected:
    void SetUp() override {
        std::string why;
        file_ = ekv_text_test::smollm2_file(&why);
        if (!file_) {
            if (why == "EKV_SMOLLM2_GGUF is not set") GTEST_SKIP() << why;
            FAIL() << why;
        }
        ekv::Status st = Tokenizer::from_metadata(file_->meta, &tok_);
        ASSERT_TRUE(st.ok()) << st.message();
        ASSERT_TRUE(ekv_text_test::load_json(ekv_text_test::tokenizer_fixtures_dir() + "/smollm2_cases.json",
                                             &fixture_));
    }

    // The SmolLM2 vocab with another pre-tokenizer.
    std::unique_ptr<Tokenizer> with_pre(const std::string& pre) const {
        ekv::Metadata meta = file_->meta;
        ekv::MetaValue v;
        v.type = ekv::MetaType::STRING;
        v.str = pre;
        meta.set("tokenizer.ggml.pre", v);
        std::unique_ptr<Tokenizer> t;
        ekv::Status st = Tokenizer::from_metadata(meta, &t);
        EXPECT_TRUE(st.ok()) << st.message();
        return t;
    }

    std::vector<int32_t> encode(const Tokenizer& t, const std::string& text, bool parse_special = true) const {
        std::vector<int32_t> ids;
        ekv::Status st = t.encode(text, false, parse_special, &ids);
        EXPECT_TRUE(st.ok()) << st.message();
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
        std::string text;
        ekv::Status st = tok_->decode(ids.data(), ids.size(), skip_special, &text);
        EXPECT_TRUE(st.ok()) << st.message();
        return text;
    }

    const ekv::ModelFile* file_ = nullptr;
    std::unique_ptr<Tokenizer> tok_;
    ekv::json::Value fixture_;
};

TEST_F(SmolLM2Tokenizer, MatchesHuggingFaceIds) {
    const ekv::json::Value* cases = fixture_.get("cases");
    ASSERT_TRUE(cases && cases->is_array() && cases->arr.size() > 10);
    for (const auto& c : cases->arr) {
        const std::string& text = str_of(c, "text");
        EXPECT_EQ(encode(*tok_, text), ids_of(c.get("ids"))) << "text: " << text;
    }
}

TEST_F(SmolLM2Tokenizer, DecodeInvertsEncode) {
    for (const auto& c : fixture_.get("cases")->arr) {
        const std::string& text = str_of(c, "text");
        EXPECT_EQ(decode(encode(*tok_, text)), text);
        EXPECT_EQ(decode(encode(*tok_, text, false)), text);  // specials spelled out as text
    }
}

TEST_F(SmolLM2Tokenizer, OtherPreTokenizersMatchHuggingFace) {
    const ekv::json::Value* cases = fixture_.get("cases");
    const ekv::json::Value* variants = fixture_.get("variants");
    ASSERT_TRUE(variants);
    for (const char* pre : {"gpt2", "llama-bpe"}) {
        std::unique_ptr<Tokenizer> t = with_pre(pre);
        ASSERT_TRUE(t);
        const ekv::json::Value* expected = variants->get(pre);
        ASSERT_TRUE(expected && expected->arr.size() == cases->arr.size()) << pre;
        for (size_t i = 0; i < cases->arr.size(); ++i) {
            const std::string& text = str_of(cases->arr[i], "text");
            EXPECT_EQ(encode(*t, text), ids_of(&expected->arr[i])) << pre << " text: " << text;
        }
    }
}

TEST_F(SmolLM2Tokenizer, Gpl3PrefixMatchesHuggingFace) {
    std::string gpl;
    if (!ekv_text_test::read_text_file("/usr/share/common-licenses/GPL-3", &gpl)) {
        GTEST_SKIP() << "/usr/share/common-licenses/GPL-3 is not installed";
    }
    const ekv::json::Value* ref = fixture_.get("gpl3");
    ASSERT_TRUE(ref);
    // The fixture counts Unicode characters; the text is ASCII.
    const size_t chars = static_cast<size_t>(ref->get("chars")->num);
    EXPECT_EQ(encode(*tok_, gpl.substr(0, chars)), ids_of(ref->get("ids")));
}

TEST_F(SmolLM2Tokenizer, WholeGpl3RoundTripsAndReportsSpeed) {
    std::string gpl;
    if (!ekv_text_test::read_text_file("/usr/share/common-licenses/GPL-3", &gpl)) {
        GTEST_SKIP() << "/usr/share/common-licenses/GPL-3 is not installed";
    }
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids = encode(*tok_, gpl);
    auto t1 = std::chrono::steady_clock::now();
    const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    std::printf("[ info ] GPL-3: %zu bytes -> %zu tokens in %.2f ms\n", gpl.size(), ids.size(), ms);
    EXPECT_GT(ids.size(), gpl.size() / 8);
    EXPECT_EQ(decode(ids), gpl);
}

TEST_F(SmolLM2Tokenizer, SpecialTokens) {
    // Facts of the SmolLM2 GGUF metadata: bos 1 <|im_start|>, eos/pad 2
    // <|im_end|>, no add_bos; <|im_end|> is also the end-of-turn token.
    EXPECT_EQ(tok_->n_vocab(), 49152);
    EXPECT_EQ(tok_->bos(), 1);
    EXPECT_EQ(tok_->eos(), 2);
    EXPECT_EQ(tok_->pad(), 2);
    EXPECT_EQ(tok_->eot(), 2);
    EXPECT_TRUE(tok_->is_eog(2));
    EXPECT_TRUE(tok_->is_eog(0));  // <|endoftext|>
    EXPECT_FALSE(tok_->is_eog(1));
    EXPECT_TRUE(tok_->is_special(1));
    EXPECT_FALSE(tok_->is_special(tok_->vocab().find("hello")));
    EXPECT_NE(tok_->chat_template().find("<|im_start|>"), std::string::npos);

    std::vector<int32_t> with, without;
    ASSERT_TRUE(tok_->encode("<|im_start|>user", true, true, &with).ok());
    ASSERT_TRUE(tok_->encode("<|im_start|>user", true, false, &without).ok());
    ASSERT_FALSE(with.empty());
    EXPECT_EQ(with[0], 1);  // no BOS prepended: add_bos_token is false
    EXPECT_EQ(std::count(with.begin(), with.end(), 1), 1);
    EXPECT_EQ(decode(with), "<|im_start|>user");
    for (int32_t id : without) EXPECT_FALSE(tok_->is_special(id));
    EXPECT_EQ(decode(without), "<|im_start|>user");
}

TEST_F(SmolLM2Tokenizer, PiecesAndErrors) {
    std::string piece;
    ASSERT_TRUE(tok_->token_to_piece(1, true, &piece).ok());
    EXPECT_EQ(piece, "<|im_start|>");
    ASSERT_TRUE(tok_->token_to_piece(1, false, &piece).ok());
    EXPECT_EQ(piece, "");
    const int32_t the = tok_->vocab().find("\xC4\xA0the");  // "Ġthe"
    ASSERT_GE(the, 0);
    ASSERT_TRUE(tok_->token_to_piece(the, false, &piece).ok());
    EXPECT_EQ(piece, " the");
    EXPECT_EQ(tok_->piece_view(the, false), " the");
    EXPECT_EQ(tok_->token_to_piece(-1, true, &piece).code(), EKV_ERR_INVALID_TOKEN);
    EXPECT_EQ(tok_->token_to_piece(tok_->n_vocab(), true, &piece).code(), EKV_ERR_INVALID_TOKEN);
    EXPECT_TRUE(tok_->piece_view(-5, true).empty());

    const int32_t bad[] = {the, 1 << 30};
    std::string text;
    EXPECT_EQ(tok_->decode(bad, 2, false, &text).code(), EKV_ERR_INVALID_TOKEN);

    const int32_t chat[] = {1, the, 2};
    ASSERT_TRUE(tok_->decode(chat, 3, true, &text).ok());
    EXPECT_EQ(text, " the");
    ASSERT_TRUE(tok_->decode(chat, 3, false, &text).ok());
    EXPECT_EQ(text, "<|im_start|> the<|im_end|>");
}

TEST_F(SmolLM2Tokenizer, ArbitraryBytesSurvive) {
    // Invalid UTF-8 is still tokenized byte by byte: the raw pieces give the
    // bytes back, decode() shows them as U+FFFD as Hugging Face does.
    const std::string bytes = "ok \x80\xC3 x";
    std::vector<int32_t> ids = encode(*tok_, bytes);
    std::string raw, piece;
    for (int32_t id : ids) {
        ASSERT_TRUE(tok_->token_to_piece(id, true, &piece).ok());
        raw += piece;
    }
    EXPECT_EQ(raw, bytes);
    EXPECT_EQ(decode(ids), "ok \xEF\xBF\xBD\xEF\xBF\xBD x");
    // Bytes missing from the vocab (0xFF never occurs in UTF-8) are dropped.
    EXPECT_EQ(encode(*tok_, "a\xFF"), encode(*tok_, "a"));
}

TEST_F(SmolLM2Tokenizer, LossyCasesMatchHuggingFace) {
    // Characters whose bytes the vocab lacks (U+0004) vanish in HF too.
    const ekv::json::Value* cases = fixture_.get("lossy_cases");
    ASSERT_TRUE(cases && cases->is_array() && !cases->arr.empty());
    for (const auto& c : cases->arr) {
        EXPECT_EQ(encode(*tok_, str_of(c, "text")), ids_of(c.get("ids")));
    }
}

TEST_F(SmolLM2Tokenizer, StreamingDetokenizationMatchesDecode) {
    for (const auto& c : fixture_.get("cases")->arr) {
        const std::string& text = str_of(c, "text");
        std::vector<int32_t> ids = encode(*tok_, text);
        ekv::Utf8StreamDecoder stream;
        std::string streamed, chunk;
        for (int32_t id : ids) {
            chunk.clear();
            stream.push(tok_->piece_view(id, true), &chunk);
            // Every released chunk is whole characters.
            std::string clean;
            ekv::utf8_sanitize(chunk, &clean);
            EXPECT_EQ(clean, chunk);
            streamed += chunk;
        }
        EXPECT_EQ(stream.pending_bytes(), 0u);
        EXPECT_EQ(streamed, text);
    }
}

}  // namespace
