// Gemma files with missing or inconsistent metadata and wrongly shaped
// tensors: each is refused at load with EKV_ERR_INVALID_FILE and a message
// naming what is wrong, never a crash.
#include <fstream>

#include "model/test_util.h"
#include "unit/gguf_test_writer.h"

using namespace ekv_test;

namespace {

constexpr uint32_t kTypeF32 = 0;
constexpr uint32_t kTypeBool = 7;

std::vector<uint8_t> f32_bytes(size_t n, float v = 0.01f) {
    std::vector<uint8_t> b(n * 4);
    for (size_t i = 0; i < n; ++i) std::memcpy(&b[i * 4], &v, 4);
    return b;
}

// What to break in an otherwise valid two-layer Gemma 3 (n_embd 32, 2 heads
// of 16, 1 KV head, ffn 64, vocab 8).
struct Breakage {
    bool no_window = false;
    int window = 4;
    std::vector<uint8_t> pattern;  // sliding_window_pattern flags, if set
    uint64_t q_norm_len = 16;
    bool no_post_ffw_norm = false;
    float attn_softcap = 0.0f;
};

std::string write_gemma3(const std::string& name, const Breakage& b) {
    GgufWriter w;
    w.add_string("general.architecture", "gemma3");
    w.add_u32("gemma3.block_count", 2);
    w.add_u32("gemma3.context_length", 64);
    w.add_u32("gemma3.embedding_length", 32);
    w.add_u32("gemma3.feed_forward_length", 64);
    w.add_u32("gemma3.attention.head_count", 2);
    w.add_u32("gemma3.attention.head_count_kv", 1);
    w.add_u32("gemma3.attention.key_length", 16);
    w.add_f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
    if (!b.no_window) w.add_u32("gemma3.attention.sliding_window", static_cast<uint32_t>(b.window));
    if (!b.pattern.empty()) w.add_array("gemma3.attention.sliding_window_pattern", kTypeBool, b.pattern);
    if (b.attn_softcap != 0.0f) w.add_f32("gemma3.attn_logit_softcapping", b.attn_softcap);
    w.add_tensor("token_embd.weight", {32, 8}, kTypeF32, f32_bytes(32 * 8));
    w.add_tensor("output_norm.weight", {32}, kTypeF32, f32_bytes(32, 1.f));
    for (int l = 0; l < 2; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        w.add_tensor(p + "attn_q.weight", {32, 32}, kTypeF32, f32_bytes(32 * 32));
        w.add_tensor(p + "attn_k.weight", {32, 16}, kTypeF32, f32_bytes(32 * 16));
        w.add_tensor(p + "attn_v.weight", {32, 16}, kTypeF32, f32_bytes(32 * 16));
        w.add_tensor(p + "attn_output.weight", {32, 32}, kTypeF32, f32_bytes(32 * 32));
        w.add_tensor(p + "attn_q_norm.weight", {b.q_norm_len}, kTypeF32, f32_bytes(b.q_norm_len, 1.f));
        w.add_tensor(p + "attn_k_norm.weight", {16}, kTypeF32, f32_bytes(16, 1.f));
        for (const char* n : {"attn_norm", "post_attention_norm", "ffn_norm"})
            w.add_tensor(p + n + ".weight", {32}, kTypeF32, f32_bytes(32, 1.f));
        if (!b.no_post_ffw_norm) w.add_tensor(p + "post_ffw_norm.weight", {32}, kTypeF32, f32_bytes(32, 1.f));
        w.add_tensor(p + "ffn_gate.weight", {32, 64}, kTypeF32, f32_bytes(32 * 64));
        w.add_tensor(p + "ffn_up.weight", {32, 64}, kTypeF32, f32_bytes(32 * 64));
        w.add_tensor(p + "ffn_down.weight", {64, 32}, kTypeF32, f32_bytes(64 * 32));
    }
    const std::string path = ::testing::TempDir() + "ekv_gemma_" + name + ".gguf";
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
    if (st != EKV_OK) {
        EXPECT_EQ(m, nullptr);
    }
    ekv_model_free(m);
    return st;
}

TEST(GemmaBadFiles, TheValidBaselineLoadsWithItsLayerPattern) {
    Breakage b;
    b.pattern = {1, 0};  // layer 0 local, layer 1 global
    ModelPtr m = load_model(write_gemma3("valid", b));
    ASSERT_TRUE(m);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(m.get(), &info), EKV_OK);
    EXPECT_EQ(info.n_sliding_layers, 1);
    EXPECT_EQ(info.sliding_window, 4);
    std::vector<float> logits(8);
    const int32_t toks[] = {1, 2, 3, 4, 5, 6};
    EXPECT_EQ(ekv_forward(m.get(), nullptr, toks, 6, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()), EKV_OK)
        << ekv_last_error();
}

TEST(GemmaBadFiles, BrokenMetadataOrTensorsAreRefusedByName) {
    struct Case {
        const char* name;
        Breakage b;
        const char* expect;  // in the message
    };
    std::vector<Case> cases(5);
    cases[0] = {"no_window", {}, "sliding_window"};
    cases[0].b.no_window = true;
    cases[1] = {"zero_window", {}, "sliding_window"};
    cases[1].b.window = 0;
    cases[2] = {"pattern_length", {}, "sliding_window_pattern"};
    cases[2].b.pattern = {1, 0, 1};
    cases[3] = {"q_norm_shape", {}, "attn_q_norm"};
    cases[3].b.q_norm_len = 32;
    cases[4] = {"no_post_ffw_norm", {}, "post_ffw_norm"};
    cases[4].b.no_post_ffw_norm = true;
    for (const Case& c : cases) {
        std::string msg;
        EXPECT_EQ(try_load(write_gemma3(c.name, c.b), &msg), EKV_ERR_INVALID_FILE) << c.name << ": " << msg;
        EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
    }
    Breakage negative_cap;
    negative_cap.attn_softcap = -5.0f;
    std::string msg;
    EXPECT_EQ(try_load(write_gemma3("softcap", negative_cap), &msg), EKV_ERR_INVALID_FILE) << msg;
    EXPECT_NE(msg.find("soft-capping"), std::string::npos) << msg;
}

}  // namespace
