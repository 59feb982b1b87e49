// tokenizer.json -> GGUF tokenizer metadata: a small tokenizer trained with
// Hugging Face `tokenizers` must give the ids `tokenizers` gives, and the
// pre-tokenizer / file-shape rules must hold on hand-written files.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "text/tokenizer_json.h"
#include "text_test_util.h"

namespace {

using ekv::Metadata;
using ekv::Tokenizer;
using ekv_text_test::ids_of;
using ekv_text_test::str_of;

std::string meta_str(const Metadata& m, const char* key) {
    std::string s;
    m.get_string(key, &s);
    return s;
}

int64_t meta_int(const Metadata& m, const char* key) {
    int64_t v = -1;
    m.get_int(key, &v);
    return v;
}

TEST(TokenizerJson, TrainedTokenizerMatchesHuggingFace) {
    const std::string dir = ekv_text_test::tokenizer_fixtures_dir() + "/tiny_bytelevel";
    Metadata meta;
    ekv::Status st = ekv::tokenizer_json_to_metadata(dir, &meta);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(meta_str(meta, "tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(meta_str(meta, "tokenizer.ggml.pre"), "smollm");
    EXPECT_EQ(meta_int(meta, "tokenizer.ggml.bos_token_id"), 1);
    EXPECT_EQ(meta_int(meta, "tokenizer.ggml.eos_token_id"), 2);
    EXPECT_EQ(meta_int(meta, "tokenizer.ggml.padding_token_id"), 0);
    EXPECT_NE(meta_str(meta, "tokenizer.chat_template").find("<|im_start|>"), std::string::npos);

    std::unique_ptr<Tokenizer> tok;
    st = Tokenizer::from_metadata(meta, &tok);
    ASSERT_TRUE(st.ok()) << st.message();

    ekv::json::Value doc;
    ASSERT_TRUE(ekv_text_test::load_json(dir + "/cases.json", &doc));
    EXPECT_EQ(tok->n_vocab(), static_cast<int32_t>(doc.get("vocab_size")->num));
    for (const auto& c : doc.get("cases")->arr) {
        const std::string& text = str_of(c, "text");
        std::vector<int32_t> ids;
        ASSERT_TRUE(tok->encode(text, false, true, &ids).ok());
        EXPECT_EQ(ids, ids_of(c.get("ids"))) << "text: " << text;
        std::string back;
        ASSERT_TRUE(tok->decode(ids.data(), ids.size(), false, &back).ok());
        EXPECT_EQ(back, text);
    }
    // "<think>" is a non-special added token: user-defined, always matched.
    const int32_t think = tok->vocab().find("<think>");
    ASSERT_GE(think, 0);
    EXPECT_EQ(tok->vocab().type(think), ekv::kTokenUserDefined);
    EXPECT_EQ(tok->vocab().type(2), ekv::kTokenControl);
    std::vector<int32_t> ids;
    ASSERT_TRUE(tok->encode("<think>", false, false, &ids).ok());
    EXPECT_EQ(ids, std::vector<int32_t>{think});
}

// A minimal byte-level tokenizer.json: vocab "a", "b", "ab", "Ġ" + added tokens.
std::string make_json(const std::string& pre_tokenizer, const std::string& merges = "[\"a b\"]",
                      const std::string& extra = "") {
    return "{\"added_tokens\":[{\"id\":4,\"content\":\"<|begin_of_text|>\",\"special\":true}],"
           "\"normalizer\":null,\"pre_tokenizer\":" +
           pre_tokenizer + "," + extra +
           "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\xC4\xA0\":3},"
           "\"merges\":" +
           merges + "}}";
}

const char* kByteLevel = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}";

ekv::Status translate(const std::string& tokenizer_json, Metadata* meta, const std::string& config = "") {
    return ekv::tokenizer_json_text_to_metadata(tokenizer_json, config, "", meta);
}

TEST(TokenizerJson, PreTokenizerInference) {
    Metadata m;
    ASSERT_TRUE(translate(make_json(kByteLevel), &m).ok());
    EXPECT_EQ(meta_str(m, "tokenizer.ggml.pre"), "gpt2");

    const std::string llama3 =
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
        "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
        "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
        "\"trim_offsets\":true,\"use_regex\":false}]}";
    Metadata l;
    ekv::Status st = translate(make_json(llama3), &l);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(meta_str(l, "tokenizer.ggml.pre"), "llama-bpe");

    Metadata s;
    const std::string smollm = std::string("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
                                           "\"individual_digits\":true},") + kByteLevel + "]}";
    ASSERT_TRUE(translate(make_json(smollm), &s).ok());
    EXPECT_EQ(meta_str(s, "tokenizer.ggml.pre"), "smollm");

    Metadata u;
    st = translate(make_json("{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\"}"), &u);
    EXPECT_EQ(st.code(), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(st.message().find("Metaspace"), std::string::npos) << st.message();
    st = translate(make_json("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
                             "\"individual_digits\":false}," + std::string(kByteLevel) + "]}"),
                   &u);
    EXPECT_EQ(st.code(), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(st.message().find("Digits, ByteLevel(regex)"), std::string::npos) << st.message();
}

TEST(TokenizerJson, MergeFormsAndSpecialTokens) {
    for (const char* merges : {"[\"a b\"]", "[[\"a\",\"b\"]]"}) {
        Metadata m;
        ekv::Status st = translate(make_json(kByteLevel, merges), &m,
                                   "{\"bos_token\":{\"content\":\"<|begin_of_text|>\"},\"add_bos_token\":true,"
                                   "\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"x\"},"
                                   "{\"name\":\"default\",\"template\":\"<|im_start|>\"}]}");
        ASSERT_TRUE(st.ok()) << st.message();
        EXPECT_EQ(meta_str(m, "tokenizer.chat_template"), "<|im_start|>");
        std::unique_ptr<Tokenizer> tok;
        st = Tokenizer::from_metadata(m, &tok);
        ASSERT_TRUE(st.ok()) << st.message();
        std::vector<int32_t> ids;
        ASSERT_TRUE(tok->encode("ab a", true, true, &ids).ok());
        EXPECT_EQ(ids, (std::vector<int32_t>{4, 2, 3, 0}));  // BOS, "ab", "Ġ", "a"
        EXPECT_TRUE(tok->is_special(4));
    }
}

TEST(TokenizerJson, PostProcessorBosAndErrors) {
    // Llama 3 style: BOS added by the post-processor, no add_bos_token key.
    Metadata m;
    const std::string pp =
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
        "{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}]},";
    ASSERT_TRUE(translate(make_json(kByteLevel, "[\"a b\"]", pp), &m).ok());
    EXPECT_EQ(meta_int(m, "tokenizer.ggml.bos_token_id"), 4);
    bool add_bos = false;
    ASSERT_TRUE(m.get_bool("tokenizer.ggml.add_bos_token", &add_bos));
    EXPECT_TRUE(add_bos);

    Metadata e;
    EXPECT_EQ(translate("{not json", &e).code(), EKV_ERR_INVALID_FILE);
    EXPECT_EQ(translate("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", &e).code(), EKV_ERR_UNSUPPORTED);
    std::string nfc = make_json(kByteLevel);
    nfc.replace(nfc.find("\"normalizer\":null"), 17, "\"normalizer\":{\"type\":\"NFC\"}");
    EXPECT_EQ(translate(nfc, &e).code(), EKV_ERR_UNSUPPORTED);
    std::string huge_id = make_json(kByteLevel);
    huge_id.replace(huge_id.find("\"b\":1"), 5, "\"b\":99999999");
    EXPECT_EQ(translate(huge_id, &e).code(), EKV_ERR_INVALID_FILE);
    EXPECT_EQ(translate(make_json(kByteLevel, "[42]"), &e).code(), EKV_ERR_INVALID_FILE);
    EXPECT_EQ(ekv::tokenizer_json_to_metadata("/nonexistent/dir", &e).code(), EKV_ERR_IO);
}

}  // namespace
