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

// One cache per entry of `params`, each prefilled with 8 prompt tokens (its
// own prompt), then `steps` rounds of one greedy single-token forward per
// cache, the caches taking turns: so consecutive forwards on the stream
// alternate between the caches' steps. Rows and tokens are in forward order.
inline ReplayDecode replay_decode_in_turn(ekv_model* m, const std::vector<ekv_cache_params>& params, int steps) {
    ReplayDecode d;
    const int32_t nv = n_vocab(m);
    const size_t n = params.size();
    std::vector<CachePtr> caches;
    std::vector<std::vector<float>> rows(n, std::vector<float>(static_cast<size_t>(nv)));
    for (size_t c = 0; c < n; ++c) {
        ekv_cache_params p = params[c];
        ekv_cache* raw = nullptr;
        EXPECT_EQ(ekv_cache_create(m, &p, &raw), EKV_OK) << ekv_last_error();
        caches.emplace_back(raw);
        if (!raw) return d;
        std::vector<int32_t> prompt;
        for (int i = 0; i < 8; ++i) prompt.push_back(3 + (i * 37 + static_cast<int>(c) * 11) % (nv - 3));
        EXPECT_EQ(ekv_forward(m, raw, prompt.data(), 8, nullptr, EKV_LOGITS_LAST, rows[c].data(), rows[c].size()),
                  EKV_OK)
            << ekv_last_error();
    }
    ekv_backend_stats before = ekv_backend_stats_default();
    EXPECT_EQ(ekv_model_get_backend_stats(m, &before), EKV_OK);
    for (int s = 0; s < steps; ++s)
        for (size_t c = 0; c < n; ++c) {
            std::vector<float>& row = rows[c];
            int32_t next = argmax(row.data(), nv);
            d.tokens.push_back(next);
            EXPECT_EQ(ekv_forward(m, caches[c].get(), &next, 1, nullptr, EKV_LOGITS_LAST, row.data(), row.size()),
                      EKV_OK)
                << ekv_last_error();
            d.logits.insert(d.logits.end(), row.begin(), row.end());
        }
    EXPECT_EQ(ekv_model_get_backend_stats(m, &d.stats), EKV_OK);
    d.stats.submissions -= before.submissions;
    d.stats.replayed_submissions -= before.replayed_submissions;
    d.stats.record_ns -= before.record_ns;
    return d;
}

// A cache of `params`, 8 prompt tokens prefilled, then `steps` greedy
// single-token forwards.
inline ReplayDecode replay_decode(ekv_model* m, const ekv_cache_params& params, int steps) {
    return replay_decode_in_turn(m, {params}, steps);
}

}  // namespace ekv_test
