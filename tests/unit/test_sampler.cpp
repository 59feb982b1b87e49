// Sampler tests: greedy, every filter on hand-made distributions, seeding,
// sampling frequencies against softmax, repetition penalty, no allocation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "generate/sampler.h"
#include "unit/alloc_counter.h"

namespace {

using ekv::Sampler;
using ekv::SamplerParams;

std::vector<float> log_probs(const std::vector<double>& probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
    return l;
}

// Draws n tokens (fresh copy of the logits every time, as a decode loop does).
std::vector<int> histogram(Sampler& s, const std::vector<float>& logits, int n) {
    std::vector<int> counts(logits.size(), 0);
    std::vector<float> work(logits.size());
    for (int i = 0; i < n; ++i) {
        work = logits;
        const int32_t t = s.sample(work.data(), nullptr, 0);
        EXPECT_GE(t, 0);
        EXPECT_LT(t, static_cast<int32_t>(logits.size()));
        if (t >= 0 && t < static_cast<int32_t>(logits.size())) counts[t]++;
    }
    return counts;
}

SamplerParams sampling(float temperature) {
    SamplerParams p;
    p.temperature = temperature;
    p.seed = 1234;
    return p;
}

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
    Sampler s(SamplerParams{}, 5);
    std::vector<float> l = {0.1f, 3.f, -2.f, 3.f, 1.f};
    EXPECT_EQ(s.sample(l.data(), nullptr, 0), 1);
    std::vector<float> nan_first = {NAN, -1.f, 0.5f, NAN, 0.5f};
    EXPECT_EQ(s.sample(nan_first.data(), nullptr, 0), 2);
    std::vector<float> all_neg_inf(5, -INFINITY);
    EXPECT_EQ(s.sample(all_neg_inf.data(), nullptr, 0), 0);
    EXPECT_EQ(ekv::argmax_logits(l.data(), 5), 1);
}

TEST(Sampler, TopKNeverYieldsTokensBelowK) {
    SamplerParams p = sampling(1.f);
    p.top_k = 2;
    Sampler s(p, 3);
    const auto counts = histogram(s, log_probs({0.4, 0.35, 0.25}), 10000);
    EXPECT_EQ(counts[2], 0);
    EXPECT_GT(counts[0], 0);
    EXPECT_GT(counts[1], 0);
    // Renormalised over the two kept: 0.4/0.75 = 0.533.
    EXPECT_NEAR(counts[0] / 10000.0, 0.4 / 0.75, 0.02);
}

TEST(Sampler, TopKKeepsTiesAtTheBoundary) {
    SamplerParams p = sampling(1.f);
    p.top_k = 2;
    Sampler s(p, 4);
    const auto counts = histogram(s, {2.f, 1.f, 1.f, 0.f}, 5000);
    EXPECT_GT(counts[1], 0);
    EXPECT_GT(counts[2], 0);
    EXPECT_EQ(counts[3], 0);
}

TEST(Sampler, TopPCutsExactlyAtTheCumulativeBoundary) {
    const auto logits = log_probs({0.5, 0.3, 0.2});
    {
        SamplerParams p = sampling(1.f);
        p.top_p = 0.8f;  // 0.5 + 0.3 reaches it: the third token goes
        Sampler s(p, 3);
        const auto counts = histogram(s, logits, 10000);
        EXPECT_EQ(counts[2], 0);
        EXPECT_NEAR(counts[0] / 10000.0, 0.5 / 0.8, 0.02);
    }
    {
        SamplerParams p = sampling(1.f);
        p.top_p = 0.81f;  // crossing token (the third) is kept
        Sampler s(p, 3);
        const auto counts = histogram(s, logits, 10000);
        EXPECT_NEAR(counts[2] / 10000.0, 0.2, 0.02);
    }
    {
        SamplerParams p = sampling(1.f);
        p.top_p = 0.5f;  // the head alone
        Sampler s(p, 3);
        const auto counts = histogram(s, logits, 2000);
        EXPECT_EQ(counts[0], 2000);
    }
}

TEST(Sampler, MinPIsRelativeToTheMostLikelyToken) {
    const auto logits = log_probs({0.5, 0.3, 0.15, 0.05});
    {
        SamplerParams p = sampling(1.f);
        p.min_p = 0.25f;  // threshold 0.125: only 0.05 goes
        Sampler s(p, 4);
        const auto counts = histogram(s, logits, 10000);
        EXPECT_EQ(counts[3], 0);
        EXPECT_NEAR(counts[2] / 10000.0, 0.15 / 0.95, 0.02);
    }
    {
        SamplerParams p = sampling(1.f);
        p.min_p = 0.5f;  // threshold 0.25: 0.5 and 0.3 stay
        Sampler s(p, 4);
        const auto counts = histogram(s, logits, 10000);
        EXPECT_EQ(counts[2] + counts[3], 0);
        EXPECT_NEAR(counts[1] / 10000.0, 0.3 / 0.8, 0.02);
    }
}

TEST(Sampler, TemperatureIsAppliedBeforeTopP) {
    // At T=1 the head has 0.5 < top_p 0.6, so two tokens survive. At T=0.25
    // the head dominates (0.5^4 vs 0.3^4 ...) and alone passes top_p.
    const auto logits = log_probs({0.5, 0.3, 0.2});
    SamplerParams p = sampling(0.25f);
    p.top_p = 0.6f;
    Sampler cold(p, 3);
    EXPECT_EQ(histogram(cold, logits, 2000)[0], 2000);
    p.temperature = 1.f;
    Sampler warm(p, 3);
    const auto counts = histogram(warm, logits, 4000);
    EXPECT_GT(counts[1], 0);
    EXPECT_EQ(counts[2], 0);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
    std::vector<float> logits(100);
    for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.37f) * 2.f;
    auto run = [&](uint64_t seed) {
        SamplerParams p = sampling(0.9f);
        p.seed = seed;
        p.top_k = 40;
        p.top_p = 0.95f;
        Sampler s(p, 100);
        std::vector<int32_t> out;
        std::vector<float> work;
        for (int i = 0; i < 200; ++i) {
            work = logits;
            out.push_back(s.sample(work.data(), nullptr, 0));
        }
        return out;
    };
    EXPECT_EQ(run(42), run(42));
    EXPECT_NE(run(42), run(43));
}

TEST(Sampler, ReseedRestartsTheStream) {
    SamplerParams p = sampling(1.f);
    Sampler s(p, 8);
    const std::vector<float> logits(8, 0.f);
    const auto a = histogram(s, logits, 300);
    s.reseed(p.seed);
    const auto b = histogram(s, logits, 300);
    EXPECT_EQ(a, b);
}

TEST(Sampler, RngIsBitExactAndUniform) {
    ekv::Rng a(7), b(7);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
    ekv::Rng r(99);
    double sum = 0;
    for (int i = 0; i < 100000; ++i) {
        const double u = r.next_double();
        ASSERT_GE(u, 0.0);
        ASSERT_LT(u, 1.0);
        sum += u;
    }
    EXPECT_NEAR(sum / 100000, 0.5, 0.01);
}

TEST(Sampler, FrequenciesFollowSoftmaxWithTemperature) {
    const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f, -1.0f, 0.7f};
    const float temperature = 0.7f;
    const int n = 20000;
    Sampler s(sampling(temperature), static_cast<int32_t>(logits.size()));
    const auto counts = histogram(s, logits, n);

    std::vector<double> expected(logits.size());
    double z = 0;
    for (size_t i = 0; i < logits.size(); ++i) z += expected[i] = std::exp(logits[i] / temperature);
    double chi2 = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
        const double e = n * expected[i] / z;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    // 7 degrees of freedom: P(chi2 > 24.3) = 0.001 for a correct sampler.
    EXPECT_LT(chi2, 24.3);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegativeOnce) {
    SamplerParams p;
    p.repetition_penalty = 1.25f;
    Sampler s(p, 5);
    std::vector<float> l = {2.0f, 1.9f, -1.0f, 0.5f, 0.0f};
    const int32_t history[] = {0, 2, 0, 0, 2, 99, -3};  // duplicates, invalid ids
    EXPECT_EQ(s.sample(l.data(), history, 7), 1);        // 2.0/1.25 = 1.6 < 1.9
    EXPECT_FLOAT_EQ(l[0], 2.0f / 1.25f);
    EXPECT_FLOAT_EQ(l[1], 1.9f);
    EXPECT_FLOAT_EQ(l[2], -1.0f * 1.25f);
    EXPECT_FLOAT_EQ(l[3], 0.5f);
    // Penalty applies per call (fresh logits, same history): still once.
    std::vector<float> again = {2.0f, 1.9f, -1.0f, 0.5f, 0.0f};
    s.sample(again.data(), history, 7);
    EXPECT_FLOAT_EQ(again[0], 2.0f / 1.25f);
}

TEST(Sampler, RepetitionPenaltyOnlyLooksAtTheLastN) {
    SamplerParams p;
    p.repetition_penalty = 2.f;
    p.repetition_last_n = 2;
    Sampler s(p, 4);
    std::vector<float> l = {1.f, 1.f, 1.f, 1.f};
    const int32_t history[] = {0, 1, 2, 2};
    s.sample(l.data(), history, 4);
    EXPECT_FLOAT_EQ(l[0], 1.f);
    EXPECT_FLOAT_EQ(l[1], 1.f);
    EXPECT_FLOAT_EQ(l[2], 0.5f);

    p.repetition_last_n = 0;  // whole history
    Sampler all(p, 4);
    std::vector<float> m = {1.f, 1.f, 1.f, 1.f};
    all.sample(m.data(), history, 4);
    EXPECT_FLOAT_EQ(m[0], 0.5f);
    EXPECT_FLOAT_EQ(m[1], 0.5f);
    EXPECT_FLOAT_EQ(m[3], 1.f);
}

// Reference top-k/top-p set by a full sort, for a vocabulary where the
// incremental sort has to grow several times.
TEST(Sampler, LargeVocabularyFiltersMatchAFullSort) {
    const int32_t n_vocab = 49152;
    std::vector<float> logits(n_vocab);
    ekv::Rng r(5);
    for (auto& v : logits) v = static_cast<float>(r.next_double() * 4.0);  // flat: many tokens needed

    SamplerParams p = sampling(1.f);
    p.top_k = 20000;
    p.top_p = 0.3f;
    Sampler s(p, n_vocab);

    std::vector<int32_t> order(n_vocab);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    const float max_l = logits[order[0]];
    double total = 0;
    for (int i = 0; i < p.top_k; ++i) total += std::exp(double(logits[order[i]]) - max_l);
    double cum = 0;
    int kept = 0;
    while (kept < p.top_k) {
        cum += std::exp(double(logits[order[kept]]) - max_l);
        ++kept;
        if (cum >= p.top_p * total) break;
    }
    ASSERT_GT(kept, 1000);  // the head is far longer than the first sort chunk
    const float cutoff = logits[order[kept - 1]];

    std::vector<float> work;
    float lowest_seen = INFINITY;
    for (int i = 0; i < 300; ++i) {
        work = logits;
        const int32_t t = s.sample(work.data(), nullptr, 0);
        ASSERT_GE(logits[t], cutoff) << "token " << t << " is outside the top-p set";
        lowest_seen = std::min(lowest_seen, logits[t]);
    }
    // Draws reach deep into the kept set (not just its first sorted chunk).
    EXPECT_LT(lowest_seen, logits[order[kept / 2]]);
}

TEST(Sampler, SampleDoesNotAllocate) {
    const int32_t n_vocab = 49152;
    SamplerParams p = sampling(0.8f);
    p.top_k = 0;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    p.repetition_penalty = 1.1f;
    Sampler s(p, n_vocab);
    std::vector<float> logits(n_vocab), work(n_vocab);
    for (int32_t i = 0; i < n_vocab; ++i) logits[i] = std::cos(i * 0.01f) * 3.f;
    std::vector<int32_t> history(300);
    for (int32_t i = 0; i < 300; ++i) history[i] = (i * 97) % n_vocab;

    ekv_test::AllocationCount count;
    for (int i = 0; i < 20; ++i) {
        std::copy(logits.begin(), logits.end(), work.begin());
        s.sample(work.data(), history.data(), 300);
    }
    EXPECT_EQ(count.stop(), 0);

    SamplerParams greedy_k;
    greedy_k.temperature = 1.f;
    greedy_k.top_k = 50;
    Sampler k(greedy_k, n_vocab);
    std::copy(logits.begin(), logits.end(), work.begin());
    ekv_test::AllocationCount count_k;
    k.sample(work.data(), nullptr, 0);
    EXPECT_EQ(count_k.stop(), 0);
}

TEST(Sampler, ValidateRejectsOutOfRangeParams) {
    EXPECT_TRUE(ekv::validate_sampler_params(SamplerParams{}, 10).ok());
    auto bad = [](void (*edit)(SamplerParams&)) {
        SamplerParams p;
        edit(p);
        return ekv::validate_sampler_params(p, 10).code();
    };
    EXPECT_EQ(bad([](SamplerParams& p) { p.temperature = -1.f; }), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bad([](SamplerParams& p) { p.temperature = NAN; }), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bad([](SamplerParams& p) { p.top_k = -1; }), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bad([](SamplerParams& p) { p.top_p = 1.5f; }), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bad([](SamplerParams& p) { p.min_p = -0.1f; }), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bad([](SamplerParams& p) { p.repetition_penalty = 0.f; }), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bad([](SamplerParams& p) { p.repetition_last_n = -1; }), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv::validate_sampler_params(SamplerParams{}, 0).code(), EKV_ERR_INVALID_ARGUMENT);
}

TEST(Sampler, UnvalidatedParamsDegradeSafely) {
    SamplerParams p;
    p.temperature = -3.f;  // treated as greedy
    p.top_p = 7.f;
    p.repetition_penalty = -2.f;
    Sampler s(p, 3);
    std::vector<float> l = {0.f, 5.f, 1.f};
    const int32_t history[] = {1};
    EXPECT_EQ(s.sample(l.data(), history, 1), 1);
    EXPECT_EQ(s.sample(nullptr, nullptr, 0), -1);
}

}  // namespace
