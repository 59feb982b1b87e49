// use_cache=False on every architecture: ekv_forward without a cache and
// ekv_generate with use_cache = 0 run on a private cache of the model's
// natural type (a Mamba model has no attention KV to fall back on), and give
// what the cached path gives.
#include "model/test_util.h"

using namespace ekv_test;

namespace {

class Cacheless : public ::testing::TestWithParam<const char*> {};

TEST_P(Cacheless, ForwardAndGenerateEqualTheCachedPath) {
    ModelPtr model = load_model(fixtures_dir() + "/" + GetParam());
    ASSERT_TRUE(model);
    const size_t nv = static_cast<size_t>(n_vocab(model.get()));
    std::vector<int32_t> seq;
    for (int32_t i = 0; i < 20; ++i) seq.push_back((i * 29 + 5) % static_cast<int32_t>(nv));
    std::vector<float> without(seq.size() * nv), with(seq.size() * nv);
    ASSERT_EQ(ekv_forward(model.get(), nullptr, seq.data(), static_cast<int32_t>(seq.size()), nullptr, EKV_LOGITS_ALL,
                          without.data(), without.size()),
              EKV_OK)
        << ekv_last_error();
    CachePtr c = make_cache(model.get(), EKV_CACHE_AUTO);
    ASSERT_EQ(ekv_forward(model.get(), c.get(), seq.data(), static_cast<int32_t>(seq.size()), nullptr, EKV_LOGITS_ALL,
                          with.data(), with.size()),
              EKV_OK)
        << ekv_last_error();
    for (size_t i = 0; i < seq.size(); ++i)
        EXPECT_LT(normalized_max_error(without.data() + i * nv, with.data() + i * nv, static_cast<int32_t>(nv)), 1e-5)
            << "position " << i;

    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 6;
    gp.stop_at_eos = 0;
    std::vector<int32_t> a(6), b(6);
    ekv_generate_result r = ekv_generate_default_result();
    CachePtr fresh = make_cache(model.get(), EKV_CACHE_AUTO);
    ASSERT_EQ(ekv_generate(model.get(), fresh.get(), seq.data(), 8, &gp, a.data(), 6, &r), EKV_OK) << ekv_last_error();
    gp.use_cache = 0;
    ASSERT_EQ(ekv_generate(model.get(), nullptr, seq.data(), 8, &gp, b.data(), 6, &r), EKV_OK) << ekv_last_error();
    EXPECT_EQ(a, b);
}

INSTANTIATE_TEST_SUITE_P(Architectures, Cacheless,
                         ::testing::Values("tiny_gemma2/tiny_gemma2_f32.gguf", "tiny_gemma3/tiny_gemma3_f32.gguf",
                                           "tiny_mamba/tiny_mamba_f32.gguf", "tiny_jamba/tiny_jamba_f32.gguf"));

}  // namespace
