// Chat rendering against transformers' apply_chat_template output for the
// SmolLM2 template, a plain ChatML one, and the canonical Llama 3 and Gemma 3
// templates (tools/gen_tokenizer_fixtures.py).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "text/chat_template.h"
#include "text_test_util.h"

namespace {

using ekv::ChatFormat;
using ekv::ChatMessage;
using ekv_text_test::str_of;

TEST(ChatTemplate, MatchesTransformersRenders) {
    ekv::json::Value doc;
    ASSERT_TRUE(ekv_text_test::load_json(ekv_text_test::tokenizer_fixtures_dir() + "/smollm2_cases.json", &doc));
    const ekv::json::Value* chats = doc.get("chat");
    ASSERT_TRUE(chats && chats->is_array() && !chats->arr.empty());
    int checked = 0;
    for (const auto& c : chats->arr) {
        ChatFormat fmt = ChatFormat::Unknown;
        ASSERT_TRUE(ekv::chat_format_from_name(str_of(c, "format"), &fmt)) << str_of(c, "format");
        const std::string& templ = str_of(c, "template");
        EXPECT_EQ(ekv::detect_chat_format(templ), fmt) << str_of(c, "template_name");
        std::vector<ChatMessage> msgs;
        for (const auto& m : c.get("messages")->arr) msgs.push_back({str_of(m, "role"), str_of(m, "content")});
        const bool gen = c.get("add_generation_prompt")->b;
        std::string out;
        ekv::Status st = ekv::render_chat(fmt, templ, msgs, gen, &out);
        const ekv::json::Value* expected = c.get("expected");
        if (expected->is_null()) {  // the template raised
            EXPECT_FALSE(st.ok()) << str_of(c, "template_name");
            continue;
        }
        ASSERT_TRUE(st.ok()) << st.message();
        EXPECT_EQ(out, expected->str) << str_of(c, "template_name") << " #" << checked;
        ++checked;
    }
    EXPECT_GE(checked, 16);
}

TEST(ChatTemplate, DefaultSystemPromptComesFromTheTemplate) {
    const std::string smollm2 =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
        "+ '<|im_end|>' + '\n'}}{% endfor %}";
    EXPECT_EQ(ekv::chatml_default_system_prompt(smollm2),
              "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    // Qwen style: the literal that only opens a system turn is not a default;
    // escapes inside Jinja literals are decoded.
    const std::string qwen =
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] "
        "+ '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou\\'re Qwen, \"helpful\".<|im_end|>\\n' }}"
        "{%- endif %}";
    EXPECT_EQ(ekv::chatml_default_system_prompt(qwen), "You're Qwen, \"helpful\".");
    EXPECT_EQ(ekv::chatml_default_system_prompt("{{ '<|im_start|>' + message['role'] }}"), "");
    EXPECT_EQ(ekv::chatml_default_system_prompt("{% if x %}unterminated '"), "");

    std::string out;
    ASSERT_TRUE(ekv::render_chat(ChatFormat::ChatML, qwen, {{"user", "hi"}}, true, &out).ok());
    EXPECT_EQ(out,
              "<|im_start|>system\nYou're Qwen, \"helpful\".<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
              "<|im_start|>assistant\n");
}

TEST(ChatTemplate, FormatNamesAndDetection) {
    ChatFormat f;
    ASSERT_TRUE(ekv::chat_format_from_name("chatml", &f));
    EXPECT_EQ(f, ChatFormat::ChatML);
    ASSERT_TRUE(ekv::chat_format_from_name("llama3", &f));
    EXPECT_EQ(f, ChatFormat::Llama3);
    ASSERT_TRUE(ekv::chat_format_from_name("gemma", &f));
    EXPECT_EQ(f, ChatFormat::Gemma);
    EXPECT_FALSE(ekv::chat_format_from_name("vicuna", &f));
    EXPECT_EQ(ekv::detect_chat_format("{{ messages }}"), ChatFormat::Unknown);
    EXPECT_EQ(ekv::detect_chat_format(""), ChatFormat::Unknown);
    EXPECT_STREQ(ekv::chat_format_name(ChatFormat::Gemma), "gemma");

    std::string out;
    EXPECT_EQ(ekv::render_chat(ChatFormat::Unknown, "", {{"user", "x"}}, true, &out).code(),
              EKV_ERR_UNSUPPORTED);
}

TEST(ChatTemplate, GemmaRolesMustAlternate) {
    std::string out;
    ekv::Status st = ekv::render_chat(ChatFormat::Gemma, "", {{"user", "a"}, {"user", "b"}}, true, &out);
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_ARGUMENT);
    st = ekv::render_chat(ChatFormat::Gemma, "", {{"assistant", "a"}}, true, &out);
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_ARGUMENT);
    // Explicit BOS text and a system prompt merged into the first user turn.
    ASSERT_TRUE(ekv::render_chat(ChatFormat::Gemma, {{"system", "Be brief."}, {"user", " Hi "}}, false,
                                 "<B>", "", &out)
                    .ok());
    EXPECT_EQ(out, "<B><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n");
}

}  // namespace
