// Hostile and mismatched model files through ekv_model_load: every one gets a
// clear status and message, never a crash, and nothing leaks.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "model/test_util.h"
#include "unit/gguf_test_writer.h"

using namespace ekv_test;

namespace {

constexpr uint32_t kTypeF32 = 0;

std::vector<uint8_t> f32_bytes(size_t n, float v = 0.01f) {
    std::vector<uint8_t> b(n * 4);
    for (size_t i = 0; i < n; ++i) std::memcpy(&b[i * 4], &v, 4);
    return b;
}

// A complete one-layer llama in F32 (n_embd 32, 2 heads, ffn 64, vocab 8).
// `tweak` edits the writer before building, to break one thing at a time.
std::string write_llama(const std::string& name, const std::function<void(GgufWriter&)>& tweak) {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.block_count", 1);
    w.add_u32("llama.context_length", 64);
    w.add_u32("llama.embedding_length", 32);
    w.add_u32("llama.feed_forward_length", 64);
    w.add_u32("llama.attention.head_count", 2);
    w.add_u32("llama.attention.head_count_kv", 2);
    w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.add_tensor("token_embd.weight", {32, 8}, kTypeF32, f32_bytes(32 * 8));
    w.add_tensor("output_norm.weight", {32}, kTypeF32, f32_bytes(32, 1.f));
    for (const char* t : {"attn_q", "attn_k", "attn_v", "attn_output"})
        w.add_tensor(std::string("blk.0.") + t + ".weight", {32, 32}, kTypeF32, f32_bytes(32 * 32));
    w.add_tensor("blk.0.attn_norm.weight", {32}, kTypeF32, f32_bytes(32, 1.f));
    w.add_tensor("blk.0.ffn_norm.weight", {32}, kTypeF32, f32_bytes(32, 1.f));
    w.add_tensor("blk.0.ffn_gate.weight", {32, 64}, kTypeF32, f32_bytes(32 * 64));
    w.add_tensor("blk.0.ffn_up.weight", {32, 64}, kTypeF32, f32_bytes(32 * 64));
    w.add_tensor("blk.0.ffn_down.weight", {64, 32}, kTypeF32, f32_bytes(64 * 32));
    tweak(w);
    const std::string path = ::testing::TempDir() + "ekv_" + name + ".gguf";
    const std::vector<uint8_t> bytes = w.build();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                static_cast<std::streamsize>(bytes.size()));
    return path;
}

ekv_status try_load(const std::string& path, std::string* message) {
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    ekv_model* m = nullptr;
    const ekv_status st = ekv_model_load(path.c_str(), &p, &m);
    *message = ekv_last_error();
    if (st != EKV_OK) EXPECT_EQ(m, nullptr);
    ekv_model_free(m);
    return st;
}

TEST(BadModels, TheValidBaselineLoadsAndRuns) {
    std::string msg;
    const std::string path = write_llama("valid", [](GgufWriter&) {});
    ModelPtr m = load_model(path);
    ASSERT_TRUE(m);
    std::vector<float> logits(8);
    const int32_t toks[] = {1, 2, 3};
    EXPECT_EQ(ekv_forward(m.get(), nullptr, toks, 3, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()), EKV_OK)
        << ekv_last_error();
    // No tokenizer in this file: text calls say so.
    int32_t n = 0;
    EXPECT_EQ(ekv_tokenize(m.get(), "hi", 2, 0, 0, nullptr, 0, &n), EKV_ERR_UNSUPPORTED);
}

TEST(BadModels, UnsupportedArchitectureIsNamed) {
    std::string msg;
    const std::string path = write_llama("arch", [](GgufWriter& w) { w.add_string("general.architecture", "gptx"); });
    // The duplicate key makes the file itself invalid; a clean unknown-arch file:
    GgufWriter clean;
    clean.add_string("general.architecture", "gptx");
    const std::vector<uint8_t> b = clean.build();
    const std::string p2 = ::testing::TempDir() + "ekv_arch2.gguf";
    std::ofstream(p2, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    EXPECT_EQ(try_load(p2, &msg), EKV_ERR_UNSUPPORTED_ARCH);
    EXPECT_NE(msg.find("gptx"), std::string::npos) << msg;
    EXPECT_EQ(try_load(path, &msg), EKV_ERR_INVALID_FILE) << msg;  // duplicate key
}

TEST(BadModels, MissingOrInconsistentMetadataIsInvalidFile) {
    std::string msg;
    GgufWriter no_layers;
    no_layers.add_string("general.architecture", "llama");
    const std::vector<uint8_t> b = no_layers.build();
    const std::string p = ::testing::TempDir() + "ekv_nolayers.gguf";
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    EXPECT_EQ(try_load(p, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("block_count"), std::string::npos) << msg;

    const std::string kv = write_llama("kvheads", [](GgufWriter& w) {
        w = GgufWriter();
        w.add_string("general.architecture", "llama");
        w.add_u32("llama.block_count", 1);
        w.add_u32("llama.context_length", 64);
        w.add_u32("llama.embedding_length", 32);
        w.add_u32("llama.feed_forward_length", 64);
        w.add_u32("llama.attention.head_count", 3);
        w.add_u32("llama.attention.head_count_kv", 2);
        w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    });
    EXPECT_EQ(try_load(kv, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("head_count"), std::string::npos) << msg;
}

TEST(BadModels, WrongTensorShapeNamesTheTensor) {
    std::string msg;
    const std::string path = write_llama("shape", [](GgufWriter& w) {
        for (auto& t : w.tensors)
            if (t.name == "blk.0.attn_k.weight") {
                t.dims = {32, 16};
                t.data = f32_bytes(32 * 16);
            }
    });
    EXPECT_EQ(try_load(path, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("blk.0.attn_k.weight"), std::string::npos) << msg;

    const std::string missing = write_llama("missing", [](GgufWriter& w) { w.tensors.pop_back(); });
    EXPECT_EQ(try_load(missing, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("blk.0.ffn_down.weight"), std::string::npos) << msg;
}

TEST(BadModels, TruncatedRealModelIsInvalidFile) {
    ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
    std::ifstream in(smollm2_path(), std::ios::binary);
    ASSERT_TRUE(in);
    for (size_t keep : {size_t(3), size_t(4096), size_t(2) << 20, size_t(90) << 20}) {
        std::vector<char> head(keep);
        in.seekg(0);
        in.read(head.data(), static_cast<std::streamsize>(keep));
        const std::string p = ::testing::TempDir() + "ekv_truncated.gguf";
        std::ofstream(p, std::ios::binary).write(head.data(), static_cast<std::streamsize>(keep));
        std::string msg;
        EXPECT_EQ(try_load(p, &msg), EKV_ERR_INVALID_FILE) << "kept " << keep << " bytes";
        EXPECT_FALSE(msg.empty());
    }
}

TEST(BadModels, MissingPathsAndNullArguments) {
    std::string msg;
    EXPECT_EQ(try_load("/nonexistent/model.gguf", &msg), EKV_ERR_IO);
    EXPECT_NE(msg.find("/nonexistent/model.gguf"), std::string::npos) << msg;
    EXPECT_EQ(try_load(::testing::TempDir(), &msg), EKV_ERR_IO) << msg;  // a directory without config.json
    ekv_model* m = nullptr;
    EXPECT_EQ(ekv_model_load(nullptr, nullptr, &m), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_model_load("x", nullptr, nullptr), EKV_ERR_INVALID_ARGUMENT);
    // A backend left out of the build is refused with the option that adds it
    // (CUDA: test_cuda_availability.cpp).
#if !defined(EKV_TEST_BUILT_WITH_VULKAN)
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_VULKAN;
    EXPECT_EQ(ekv_model_load((fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf").c_str(), &p, &m),
              EKV_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(ekv_last_error()).find("EDGEKV_VULKAN"), std::string::npos) << ekv_last_error();
#endif
    ekv_model_free(nullptr);
    ekv_cache_free(nullptr);
}

}  // namespace
