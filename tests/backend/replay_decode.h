// A greedy decode through the C ABI that also reports the backend stats of
// its decode steps: what the replay tests of the device backends compare
// (Vulkan command-buffer replay, CUDA graphs) with replay on and off.
#pragma once
#include <gtest/gtest.h>

#include <vector>

#include "model/test_util.h"

namespace ekv_test {

struct ReplayDecode {
    std::vector<float> logits;  // one row per decode step
    std::vector<int32_t> tokens;
    ekv_backend_stats stats = ekv_backend_stats_default();  // of the decode steps
};

// A cache of `params`, 8 prompt tokens prefilled, then `steps` greedy
// single-token forwards.
inline ReplayDecode replay_decode(ekv_model* m, const ekv_cache_params& params, int steps) {
    ReplayDecode d;
    const int32_t nv = n_vocab(m);
    ekv_cache_params p = params;
    ekv_cache* raw = nullptr;
    EXPECT_EQ(ekv_cache_create(m, &p, &raw), EKV_OK) << ekv_last_error();
    CachePtr cache(raw);
    if (!cache) return d;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 8; ++i) prompt.push_back(3 + (i * 37) % (nv - 3));
    std::vector<float> row(static_cast<size_t>(nv));
    EXPECT_EQ(ekv_forward(m, cache.get(), prompt.data(), 8, nullptr, EKV_LOGITS_LAST, row.data(), row.size()), EKV_OK)
        << ekv_last_error();
    ekv_backend_stats before = ekv_backend_stats_default();
    EXPECT_EQ(ekv_model_get_backend_stats(m, &before), EKV_OK);
    for (int s = 0; s < steps; ++s) {
        int32_t next = argmax(row.data(), nv);
        d.tokens.push_back(next);
        EXPECT_EQ(ekv_forward(m, cache.get(), &next, 1, nullptr, EKV_LOGITS_LAST, row.data(), row.size()), EKV_OK)
            << ekv_last_error();
        d.logits.insert(d.logits.end(), row.begin(), row.end());
    }
    EXPECT_EQ(ekv_model_get_backend_stats(m, &d.stats), EKV_OK);
    d.stats.submissions -= before.submissions;
    d.stats.replayed_submissions -= before.replayed_submissions;
    d.stats.record_ns -= before.record_ns;
    return d;
}

}  // namespace ekv_test
