// Model fidelity on the tiny random Llama: edgekv's logits against HF
// transformers' (tools/gen_tiny_llama.py) for every stored format, over a
// single prefill, token-by-token decode and chunked prefill; greedy tokens
// identical.
#include "model/test_util.h"

using namespace ekv_test;

namespace {

struct Variant {
    const char* model;      // relative to fixtures/tiny_llama
    const char* reference;  // reference json
    ekv_kv_dtype kv;
    double tolerance;       // normalized max error per logits row
};

// Tolerances: with f32 KV every stored format differs from HF (run on the
// same dequantized weights) only by summation order, since the default
// matmul keeps activations in f32; an F16 KV cache adds ~0.5%.
const Variant kVariants[] = {
    {"tiny_llama_f32.gguf", "ref_f32.json", EKV_KV_F32, 1e-4},
    {"tiny_llama_f16.gguf", "ref_f16.json", EKV_KV_F32, 1e-4},
    {"tiny_llama_q8_0.gguf", "ref_q8_0.json", EKV_KV_F32, 1e-4},
    {"hf", "ref_f32.json", EKV_KV_F32, 1e-4},
    {"tiny_llama_f32.gguf", "ref_f32.json", EKV_KV_F16, 1e-2},
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.model << " (" << v.reference << ")"; }

class TinyLlama : public ::testing::TestWithParam<Variant> {
protected:
    void SetUp() override {
        const std::string dir = fixtures_dir() + "/tiny_llama";
        ASSERT_TRUE(load_reference(dir, GetParam().reference, &ref_)) << "missing reference " << GetParam().reference;
        model_ = load_model(dir + "/" + GetParam().model);
        ASSERT_TRUE(model_);
        ASSERT_EQ(n_vocab(model_.get()), ref_.n_vocab);
        seq_ = ref_.input_ids;
        seq_.insert(seq_.end(), ref_.greedy.begin(), ref_.greedy.end() - 1);
        ASSERT_EQ(seq_.size(), ref_.positions.size());
    }
    CachePtr cache(ekv_cache_type type = EKV_CACHE_DYNAMIC) {
        ekv_cache_params p = ekv_cache_default_params();
        p.type = type;
        p.dtype = GetParam().kv;
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_OK) << ekv_last_error();
        return CachePtr(c);
    }
    void expect_row(const float* got, size_t ref_row, const char* what) {
        const double err = normalized_max_error(got, ref_.row(ref_row), ref_.n_vocab);
        EXPECT_LT(err, GetParam().tolerance) << what << " position " << ref_row;
        EXPECT_EQ(argmax(got, ref_.n_vocab), argmax(ref_.row(ref_row), ref_.n_vocab)) << what << " position " << ref_row;
    }
    Reference ref_;
    ModelPtr model_;
    std::vector<int32_t> seq_;
};

TEST_P(TinyLlama, SinglePassLogitsMatchHF) {
    CachePtr c = cache();
    const size_t nv = static_cast<size_t>(ref_.n_vocab);
    std::vector<float> logits(seq_.size() * nv);
    ASSERT_EQ(ekv_forward(model_.get(), c.get(), seq_.data(), static_cast<int32_t>(seq_.size()), nullptr,
                          EKV_LOGITS_ALL, logits.data(), logits.size()),
              EKV_OK)
        << ekv_last_error();
    for (size_t i = 0; i < seq_.size(); ++i) expect_row(logits.data() + i * nv, i, "single pass");
}

TEST_P(TinyLlama, TokenByTokenDecodeMatchesHF) {
    CachePtr c = cache();
    std::vector<float> logits(static_cast<size_t>(ref_.n_vocab));
    const int32_t n_prompt = static_cast<int32_t>(ref_.input_ids.size());
    ASSERT_EQ(ekv_forward(model_.get(), c.get(), seq_.data(), n_prompt, nullptr, EKV_LOGITS_LAST, logits.data(),
                          logits.size()),
              EKV_OK);
    expect_row(logits.data(), static_cast<size_t>(n_prompt - 1), "prefill");
    for (size_t i = static_cast<size_t>(n_prompt); i < seq_.size(); ++i) {
        ASSERT_EQ(ekv_forward(model_.get(), c.get(), &seq_[i], 1, nullptr, EKV_LOGITS_LAST, logits.data(),
                              logits.size()),
                  EKV_OK);
        expect_row(logits.data(), i, "decode");
    }
}

TEST_P(TinyLlama, ChunkedPrefillWithCachePositionMatchesHF) {
    CachePtr c = cache(EKV_CACHE_STATIC);
    std::vector<float> logits(static_cast<size_t>(ref_.n_vocab));
    const int32_t pos_a[] = {0, 1, 2, 3, 4, 5, 6};
    const int32_t pos_b[] = {7, 8, 9, 10, 11};
    ASSERT_EQ(ekv_forward(model_.get(), c.get(), seq_.data(), 7, pos_a, EKV_LOGITS_LAST, logits.data(), logits.size()),
              EKV_OK);
    expect_row(logits.data(), 6, "chunk 1");
    ASSERT_EQ(ekv_forward(model_.get(), c.get(), seq_.data() + 7, 5, pos_b, EKV_LOGITS_LAST, logits.data(),
                          logits.size()),
              EKV_OK);
    expect_row(logits.data(), 11, "chunk 2");
}

TEST_P(TinyLlama, GreedyGenerationEqualsHF) {
    CachePtr c = cache();
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = static_cast<int32_t>(ref_.greedy.size());
    gp.stop_at_eos = 0;
    std::vector<int32_t> out(ref_.greedy.size());
    ekv_generate_result r = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), ref_.input_ids.data(), static_cast<int32_t>(ref_.input_ids.size()),
                           &gp, out.data(), static_cast<int32_t>(out.size()), &r),
              EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(out, ref_.greedy);
    EXPECT_EQ(r.stop_reason, EKV_STOP_MAX_TOKENS);

    // use_cache=false recomputes every step and must pick the same tokens.
    gp.use_cache = 0;
    std::vector<int32_t> out_nc(ref_.greedy.size());
    ekv_generate_result r2 = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), nullptr, ref_.input_ids.data(), static_cast<int32_t>(ref_.input_ids.size()),
                           &gp, out_nc.data(), static_cast<int32_t>(out_nc.size()), &r2),
              EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(out_nc, out);
    EXPECT_GT(r2.n_forwarded, r.n_forwarded);  // it really recomputed
}

INSTANTIATE_TEST_SUITE_P(Formats, TinyLlama, ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<Variant>& info) {
                             std::string n = std::string(info.param.model) + "_kv" +
                                             (info.param.kv == EKV_KV_F16 ? "f16" : "f32");
                             for (char& ch : n)
                                 if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                             return n;
                         });

}  // namespace
