// The server's request parsing and error mapping: what an OpenAI client may
// send, what it must be told when a field is wrong, and the JSON shapes it
// reads back (errors, completions, stream chunks).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "request.h"
#include "response.h"

namespace edgekv_server {
namespace {

using json = nlohmann::json;

ekv_cache_params defaults() { return ekv_cache_default_params(); }

CompletionRequest parse_ok(Endpoint e, const std::string& body) {
    CompletionRequest r;
    ApiError err;
    EXPECT_TRUE(parse_request(e, body, defaults(), &r, &err)) << body << " -> " << err.message;
    return r;
}

ApiError parse_bad(Endpoint e, const std::string& body) {
    CompletionRequest r;
    ApiError err;
    EXPECT_FALSE(parse_request(e, body, defaults(), &r, &err)) << body;
    EXPECT_EQ(err.http_status, 400) << body;
    EXPECT_EQ(err.type, "invalid_request_error");
    EXPECT_FALSE(err.message.empty());
    return err;
}

TEST(ServerRequests, AFullChatRequestIsRead) {
    const CompletionRequest r = parse_ok(Endpoint::kChat, R"({
        "model": "smollm2", "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": null},
            {"role": "user", "content": "again", "name": "ann"}],
        "max_completion_tokens": 12, "temperature": 0, "top_p": 0.9, "seed": 7,
        "stop": ["\n\n", "END"], "stream": true, "stream_options": {"include_usage": true},
        "n": 1, "presence_penalty": 0, "user": "u1", "logprobs": false, "top_k": 40, "min_p": 0.05,
        "repetition_penalty": 1.1, "ignore_eos": true})");
    EXPECT_EQ(r.model, "smollm2");
    ASSERT_EQ(r.messages.size(), 4u);
    EXPECT_EQ(r.messages[0].role, "system");  // developer is OpenAI's new name
    EXPECT_EQ(r.messages[1].content, "Hello there");
    EXPECT_EQ(r.messages[2].content, "");
    EXPECT_EQ(r.messages[3].content, "again");
    EXPECT_EQ(r.max_tokens.value(), 12);
    EXPECT_EQ(r.temperature.value(), 0.f);
    EXPECT_FLOAT_EQ(r.top_p.value(), 0.9f);
    EXPECT_EQ(r.seed.value(), 7u);
    EXPECT_EQ(r.stop, (std::vector<std::string>{"\n\n", "END"}));
    EXPECT_TRUE(r.stream);
    EXPECT_TRUE(r.include_usage);
    EXPECT_EQ(r.top_k.value(), 40);
    EXPECT_FLOAT_EQ(r.min_p.value(), 0.05f);
    EXPECT_FLOAT_EQ(r.repetition_penalty.value(), 1.1f);
    EXPECT_TRUE(r.ignore_eos);
    EXPECT_FALSE(r.has_cache);
}

TEST(ServerRequests, OmittedFieldsStayUnset) {
    const CompletionRequest r = parse_ok(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "hi"}]})");
    EXPECT_FALSE(r.max_tokens.has_value());
    EXPECT_FALSE(r.temperature.has_value());
    EXPECT_FALSE(r.seed.has_value());
    EXPECT_FALSE(r.stream);
    EXPECT_TRUE(r.stop.empty());
    EXPECT_FALSE(r.ignore_eos);
    const CompletionRequest c = parse_ok(Endpoint::kCompletion, R"({"prompt": ["Once upon"], "max_tokens": null})");
    EXPECT_EQ(c.prompt, "Once upon");
    EXPECT_FALSE(c.max_tokens.has_value());
}

TEST(ServerRequests, MalformedBodiesAreRefusedWithTheReason) {
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{\"messages\": [").code, "invalid_json");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "[1, 2]").code, "invalid_json");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "").code, "invalid_json");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{\"messages\": \"\xff\xfe\"}").code, "invalid_json");  // not UTF-8
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{}").param, "messages");
    EXPECT_EQ(parse_bad(Endpoint::kChat, R"({"messages": []})").param, "messages");
    EXPECT_EQ(parse_bad(Endpoint::kCompletion, R"({"messages": [{"role": "user", "content": "x"}]})").param, "prompt");
    EXPECT_EQ(parse_bad(Endpoint::kCompletion, R"({"prompt": ["a", "b"]})").param, "prompt");
    EXPECT_EQ(parse_bad(Endpoint::kCompletion, R"({"prompt": [1, 2, 3]})").param, "prompt");
}

TEST(ServerRequests, UnknownFieldsAreNamed) {
    const ApiError e = parse_bad(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "temprature": 1})");
    EXPECT_EQ(e.param, "temprature");
    EXPECT_EQ(e.code, "unknown_parameter");
    EXPECT_NE(e.message.find("temprature"), std::string::npos);
    EXPECT_EQ(parse_bad(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x", "mood": 1}]})").param,
              "messages");
    EXPECT_EQ(parse_bad(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "cache": {"windw": 3}})")
                  .param,
              "cache.windw");
}

TEST(ServerRequests, ValuesOutOfRangeAreRefused) {
    const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
    auto bad_param = [&](const std::string& field) {
        return parse_bad(Endpoint::kChat, "{" + m + ", " + field + "}").param;
    };
    EXPECT_EQ(bad_param(R"("temperature": "hot")"), "temperature");
    EXPECT_EQ(bad_param(R"("temperature": 2.5)"), "temperature");
    EXPECT_EQ(bad_param(R"("top_p": 0)"), "top_p");
    EXPECT_EQ(bad_param(R"("max_tokens": 0)"), "max_tokens");
    EXPECT_EQ(bad_param(R"("max_tokens": 1.5)"), "max_tokens");
    EXPECT_EQ(bad_param(R"("max_tokens": 1e12)"), "max_tokens");
    EXPECT_EQ(bad_param(R"("seed": "x")"), "seed");
    EXPECT_EQ(bad_param(R"("stream": "yes")"), "stream");
    EXPECT_EQ(bad_param(R"("ignore_eos": 1)"), "ignore_eos");
    EXPECT_EQ(bad_param(R"("stop": ["a", "b", "c", "d", "e"])"), "stop");
    EXPECT_EQ(bad_param(R"("stop": [1])"), "stop");
    EXPECT_EQ(bad_param(R"("stream_options": {"include_usage": true})"), "stream_options");  // without stream
    EXPECT_EQ(bad_param(R"("n": 2)"), "n");
    EXPECT_EQ(bad_param(R"("presence_penalty": 0.5)"), "presence_penalty");
    EXPECT_EQ(bad_param(R"("logprobs": true)"), "logprobs");
    EXPECT_EQ(bad_param(R"("tools": [{"type": "function"}])"), "tools");
    EXPECT_EQ(bad_param(R"("response_format": {"type": "json_object"})"), "response_format");
    EXPECT_EQ(parse_bad(Endpoint::kChat, R"({"messages": [{"role": "tool", "content": "x"}]})").param, "messages");
    EXPECT_EQ(parse_bad(Endpoint::kChat, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})")
                  .param,
              "messages");
}

TEST(ServerRequests, TheCacheObjectSetsHfParameters) {
    CompletionRequest r = parse_ok(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}],
        "cache": {"type": "sink", "window_length": 64, "num_sink_tokens": 4, "nbits": 2, "q_group_size": 16,
                  "residual_length": 32, "offload": "host"}})");
    ASSERT_TRUE(r.has_cache);
    EXPECT_EQ(r.cache.type, EKV_CACHE_SINK);
    EXPECT_EQ(r.cache.window_length, 64);
    EXPECT_EQ(r.cache.num_sink_tokens, 4);
    EXPECT_EQ(r.cache.dtype, EKV_KV_KIVI);  // KIVI fields on another type quantize its storage
    EXPECT_EQ(r.cache.nbits, 2);
    EXPECT_EQ(r.cache.q_group_size, 16);
    EXPECT_EQ(r.cache.residual_length, 32);
    EXPECT_EQ(r.cache.offload, EKV_PLACEMENT_HOST);

    r = parse_ok(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}],
        "cache": {"type": "quantized", "nbits": 4}})");
    EXPECT_EQ(r.cache.type, EKV_CACHE_QUANTIZED);
    EXPECT_EQ(r.cache.dtype, EKV_KV_F16);  // the quantized type is KIVI by itself
    r = parse_ok(Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}],
        "cache": {"type": "static", "dtype": "f32", "max_cache_len": 100}})");
    EXPECT_EQ(r.cache.dtype, EKV_KV_F32);
    EXPECT_EQ(r.cache.max_cache_len, 100);

    const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{" + m + R"(, "cache": {"type": "bogus"}})").param, "cache.type");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{" + m + R"(, "cache": {"dtype": "q4_0"}})").param, "cache.dtype");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{" + m + R"(, "cache": {"dtype": "f32", "nbits": 4}})").param,
              "cache.dtype");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{" + m + R"(, "cache": {"offload": "disk"}})").param, "cache.offload");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{" + m + R"(, "cache": {"window_length": -1}})").param,
              "cache.window_length");
    EXPECT_EQ(parse_bad(Endpoint::kChat, "{" + m + R"(, "cache": "sink"})").param, "cache");
}

TEST(ServerRequests, CacheKeysTellConfigurationsApart) {
    ekv_cache_params a = defaults(), b = defaults();
    EXPECT_EQ(cache_key(a), cache_key(b));
    b.type = EKV_CACHE_SINK;
    EXPECT_NE(cache_key(a), cache_key(b));
    b = defaults();
    b.nbits = 2;
    EXPECT_NE(cache_key(a), cache_key(b));
}

TEST(ServerRequests, CancelBodies) {
    std::string id;
    ApiError err;
    EXPECT_TRUE(parse_cancel_request(R"({"id": "chatcmpl-1"})", &id, &err));
    EXPECT_EQ(id, "chatcmpl-1");
    EXPECT_FALSE(parse_cancel_request(R"({"id": 5})", &id, &err));
    EXPECT_EQ(err.http_status, 400);
    EXPECT_FALSE(parse_cancel_request("nope", &id, &err));
}

TEST(ServerResponses, ErrorsHaveOpenAIsShape) {
    const json e = json::parse(error_body(bad_request("bad \"x\"", "temperature", "invalid_value")));
    EXPECT_EQ(e["error"]["message"], "bad \"x\"");
    EXPECT_EQ(e["error"]["type"], "invalid_request_error");
    EXPECT_EQ(e["error"]["param"], "temperature");
    EXPECT_EQ(e["error"]["code"], "invalid_value");
    const json n = json::parse(error_body(ApiError{500, "server_error", "m", "", ""}));
    EXPECT_TRUE(n["error"]["param"].is_null());
    EXPECT_TRUE(n["error"]["code"].is_null());
}

TEST(ServerResponses, LibraryStatusesMapToHttp) {
    EXPECT_EQ(library_failure(EKV_ERR_UNSUPPORTED, "x").http_status, 400);
    EXPECT_EQ(library_failure(EKV_ERR_INVALID_ARGUMENT, "x").http_status, 400);
    EXPECT_EQ(library_failure(EKV_ERR_CACHE_FULL, "x").http_status, 413);
    EXPECT_EQ(library_failure(EKV_ERR_OUT_OF_MEMORY, "x").http_status, 507);
    EXPECT_EQ(library_failure(EKV_ERR_BACKEND, "x").http_status, 500);
    EXPECT_NE(library_failure(EKV_ERR_BACKEND, "creating").message.find("creating"), std::string::npos);
}

json sse_json(const std::string& event) {
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    EXPECT_GE(event.size(), 8u);
    EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
    return json::parse(event.substr(6, event.size() - 8));
}

TEST(ServerResponses, StreamChunksFollowOpenAI) {
    ResponseHead head{Endpoint::kChat, "chatcmpl-abc", 1700000000, "m"};
    GenerationReport r;
    r.prompt_tokens = 10;
    r.completion_tokens = 3;
    r.prompt_reused = 6;
    r.prompt_computed = 4;
    r.finish_reason = "length";
    r.stop_reason = EKV_STOP_MAX_TOKENS;
    r.cache_type = "sink";
    r.kv_bytes = 1024;
    ModelDescription m;
    m.device = "cpu0";
    m.backend = "cpu";

    json first = sse_json(sse_first_chunk(head));
    EXPECT_EQ(first["object"], "chat.completion.chunk");
    EXPECT_EQ(first["id"], "chatcmpl-abc");
    EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
    json text = sse_json(sse_text_chunk(head, "h\xc3\xa9 \xf0\x9f\x98\x80"));
    EXPECT_EQ(text["choices"][0]["delta"]["content"], "h\xc3\xa9 \xf0\x9f\x98\x80");
    EXPECT_TRUE(text["choices"][0]["finish_reason"].is_null());
    json last = sse_json(sse_final_chunk(head, r, m));
    EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
    EXPECT_TRUE(last["choices"][0]["delta"].empty());
    EXPECT_EQ(last["edgekv"]["prompt_tokens_reused"], 6);
    EXPECT_EQ(last["edgekv"]["cache_type"], "sink");
    EXPECT_EQ(last["edgekv"]["stop_reason"], "max_tokens");
    json usage = sse_json(sse_usage_chunk(head, r));
    EXPECT_TRUE(usage["choices"].empty());
    EXPECT_EQ(usage["usage"]["total_tokens"], 13);
    EXPECT_EQ(sse_done(), "data: [DONE]\n\n");

    // Invalid UTF-8 never breaks the JSON.
    EXPECT_NO_THROW(sse_json(sse_text_chunk(head, "bad \xff byte")));

    head.endpoint = Endpoint::kCompletion;
    r.text = "once";
    json whole = json::parse(completion_body(head, r, m));
    EXPECT_EQ(whole["object"], "text_completion");
    EXPECT_EQ(whole["choices"][0]["text"], "once");
    EXPECT_EQ(whole["usage"]["prompt_tokens"], 10);
    EXPECT_EQ(whole["edgekv"]["prompt_tokens_computed"], 4);
}

}  // namespace
}  // namespace edgekv_server
