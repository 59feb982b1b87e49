// ekv_model_info.decode_weight_bytes, the weights one decode step streams
// (what `edgekv bench` divides the read bandwidth by), checked against an
// account made here from the file's own tensor list: every tensor, minus an
// untied embedding table but one row, only the active share of the experts,
// and for Whisper only the decoder.
#include <gtest/gtest.h>

#include <string>

#include "model/model_file.h"
#include "model/test_util.h"

namespace ekv_test {
namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& x) {
    return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

// Bytes of one row of a tensor stored as [cols, rows].
uint64_t row_bytes(const ekv::TensorRef& t) { return t.nbytes / static_cast<uint64_t>(t.n_elements() / t.ne[0]); }

uint64_t expected_decode_bytes(const std::string& path) {
    ekv::ModelFile f;
    EXPECT_TRUE(ekv::load_gguf_file(path, &f).ok()) << path;
    std::string arch;
    f.meta.get_string("general.architecture", &arch);
    const bool whisper = arch == "whisper";
    int64_t n_expert = 0, n_used = 0;
    f.meta.get_int(arch + ".expert_count", &n_expert);
    f.meta.get_int(arch + ".expert_used_count", &n_used);
    const bool tied = f.find_tensor("output.weight") == nullptr;
    const std::string table = whisper ? "dec.token_embd.weight" : "token_embd.weight";
    uint64_t sum = 0;
    for (const ekv::TensorRef& t : f.tensors()) {
        if (whisper && !starts_with(t.name, "dec.") && t.name != "output.weight") continue;  // the encoder
        if ((t.name == table && !tied) || t.name == "dec.position_embd.weight") {
            sum += row_bytes(t);  // looked up by id or position: one row a step
        } else if (ends_with(t.name, "_exps.weight")) {
            EXPECT_GT(n_expert, 0) << t.name;
            sum += t.nbytes / static_cast<uint64_t>(n_expert) * static_cast<uint64_t>(n_used);
        } else {
            sum += t.nbytes;
        }
    }
    return sum;
}

void expect_accounted(const std::string& path) {
    SCOPED_TRACE(path);
    ModelPtr m = load_model(path);
    ASSERT_TRUE(m) << ekv_last_error();
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(m.get(), &info), EKV_OK);
    EXPECT_EQ(info.decode_weight_bytes, expected_decode_bytes(path));
    EXPECT_LE(info.decode_weight_bytes, info.weight_bytes);
}

TEST(DecodeWeightBytes, TinyModelsOfEveryArchitecture) {
    for (const char* f : {"tiny_llama/tiny_llama_f32.gguf", "tiny_gemma3/tiny_gemma3_q8_0.gguf",
                          "tiny_mamba/tiny_mamba_f32.gguf", "tiny_jamba/tiny_jamba_f32.gguf",
                          "tiny_whisper/tiny_whisper.gguf"})
        expect_accounted(fixtures_dir() + "/" + f);
}

TEST(DecodeWeightBytes, RealModels) {
    ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
    expect_accounted(smollm2_path());  // tied: the output head reads the whole table
    ASSERT_FALSE(gemma3_path().empty()) << "EKV_GEMMA3_GGUF is not set";
    expect_accounted(gemma3_path());
}

}  // namespace
}  // namespace ekv_test
