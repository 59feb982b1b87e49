// The per-step RoPE table cache the device backends share
// (backend/rope_table_cache.h): a table is reused only for the same position
// values, frequencies (address and values), pair count and factor, at most
// kSlots tables are kept (the oldest replaced), and reset() forgets them all.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/rope_table_cache.h"

namespace ekv {
namespace {

TEST(RopeTableCache, FindsATableByValueNotByPositionsAddress) {
    RopeTableCache cache;
    std::vector<int32_t> pos_q = {7, 8};
    std::vector<int32_t> pos_k = {7, 8};  // another array, the same positions
    std::vector<float> inv_freq = {1.f, 0.5f, 0.25f};
    uint64_t loc = 0;
    RopeTableCache::Key key{pos_q.data(), 2, inv_freq.data(), 3, 1.f};
    EXPECT_FALSE(cache.find(key, &loc));
    cache.insert(key, 4096);
    RopeTableCache::Key same{pos_k.data(), 2, inv_freq.data(), 3, 1.f};
    ASSERT_TRUE(cache.find(same, &loc));
    EXPECT_EQ(loc, 4096u);
}

TEST(RopeTableCache, AnyChangedInputIsAMiss) {
    RopeTableCache cache;
    std::vector<int32_t> pos = {3, 4, 5};
    std::vector<float> inv_freq = {1.f, 0.1f};
    std::vector<float> other_freq = inv_freq;  // same values elsewhere
    const RopeTableCache::Key key{pos.data(), 3, inv_freq.data(), 2, 1.f};
    cache.insert(key, 64);
    uint64_t loc = 0;
    ASSERT_TRUE(cache.find(key, &loc));

    std::vector<int32_t> moved = {3, 4, 6};
    EXPECT_FALSE(cache.find({moved.data(), 3, inv_freq.data(), 2, 1.f}, &loc));
    EXPECT_FALSE(cache.find({pos.data(), 2, inv_freq.data(), 2, 1.f}, &loc));         // fewer rows
    EXPECT_FALSE(cache.find({pos.data(), 3, inv_freq.data(), 1, 1.f}, &loc));         // fewer pairs
    EXPECT_FALSE(cache.find({pos.data(), 3, inv_freq.data(), 2, 0.5f}, &loc));        // factor
    EXPECT_FALSE(cache.find({pos.data(), 3, inv_freq.data(), 2, -1.f}, &loc));        // factor sign
    EXPECT_FALSE(cache.find({pos.data(), 3, other_freq.data(), 2, 1.f}, &loc));       // frequencies' address
    inv_freq[1] = 0.2f;                                                              // rewritten in place
    EXPECT_FALSE(cache.find(key, &loc));
    inv_freq[1] = 0.1f;
    EXPECT_TRUE(cache.find(key, &loc));
}

TEST(RopeTableCache, KeepsTheNewestSlotsAndForgetsAllOnReset) {
    RopeTableCache cache;
    std::vector<float> inv_freq = {1.f};
    std::vector<std::vector<int32_t>> pos;
    for (int i = 0; i <= RopeTableCache::kSlots; ++i) pos.push_back({i});
    for (int i = 0; i <= RopeTableCache::kSlots; ++i)
        cache.insert({pos[i].data(), 1, inv_freq.data(), 1, 1.f}, 100 + i);
    uint64_t loc = 0;
    EXPECT_FALSE(cache.find({pos[0].data(), 1, inv_freq.data(), 1, 1.f}, &loc));  // the oldest went
    for (int i = 1; i <= RopeTableCache::kSlots; ++i) {
        ASSERT_TRUE(cache.find({pos[i].data(), 1, inv_freq.data(), 1, 1.f}, &loc)) << i;
        EXPECT_EQ(loc, static_cast<uint64_t>(100 + i));
    }
    cache.reset();
    for (int i = 0; i <= RopeTableCache::kSlots; ++i)
        EXPECT_FALSE(cache.find({pos[i].data(), 1, inv_freq.data(), 1, 1.f}, &loc)) << i;
}

TEST(RopeTableCache, RefusesEmptyKeys) {
    RopeTableCache cache;
    std::vector<int32_t> pos = {1};
    std::vector<float> inv_freq = {1.f};
    cache.insert({pos.data(), 0, inv_freq.data(), 1, 1.f}, 1);
    cache.insert({nullptr, 1, inv_freq.data(), 1, 1.f}, 2);
    uint64_t loc = 0;
    EXPECT_FALSE(cache.find({pos.data(), 0, inv_freq.data(), 1, 1.f}, &loc));
    EXPECT_FALSE(cache.find({pos.data(), 1, inv_freq.data(), 1, 1.f}, &loc));
}

TEST(RopeTableCache, FillsCosSinPairsPerRowWithTheFactor) {
    const std::vector<int32_t> pos = {0, 5, 123457};
    const std::vector<float> inv_freq = {1.f, 0.01f};
    const float factor = 0.75f;
    std::vector<float> table(pos.size() * inv_freq.size() * 2, -9.f);
    fill_rope_table({pos.data(), 3, inv_freq.data(), 2, factor}, table.data());
    for (size_t t = 0; t < pos.size(); ++t)
        for (size_t i = 0; i < inv_freq.size(); ++i) {
            // Long double reference: a float angle would be off by ~1e-2 at 123457.
            const long double angle = static_cast<long double>(pos[t]) * static_cast<long double>(inv_freq[i]);
            EXPECT_NEAR(table[2 * (t * 2 + i)], static_cast<double>(std::cos(angle) * factor), 1e-6) << t << "," << i;
            EXPECT_NEAR(table[2 * (t * 2 + i) + 1], static_cast<double>(std::sin(angle) * factor), 1e-6) << t << "," << i;
        }
}

}  // namespace
}  // namespace ekv
