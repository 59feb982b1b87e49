// Explicit cache_position (HF's) on the rings: sliding-window and sink caches
// on the 1-layer tiny Llama driven with explicit positions far past twice the
// window and past the ring's rows, continuing and rewriting (p < seq_len
// crops first). Every logit row must equal a fresh forward over exactly the
// tokens the cache keeps, at their in-cache positions; rewrites reaching
// tokens a ring dropped are refused and change nothing. (F32 KV: measured
// 3.3e-6 of the logit spread, summation order only.)
#include "model/one_layer_llama.h"

using namespace ekv_test;

namespace {

constexpr int32_t kWindow = 24, kSinks = 4;

class RingPositions : public ::testing::Test {
protected:
    void SetUp() override {
        one_ = load_one_layer_llama(dir_);
        ASSERT_TRUE(one_);
        nv_ = n_vocab(one_.get());
        for (int i = 0; i < 260; ++i) a_.push_back(3 + (i * 97 + i / 5) % (nv_ - 3));
        for (int i = 0; i < 260; ++i) b_.push_back(3 + (i * 61 + 17) % (nv_ - 3));
    }
    // Logits of the last of `kept`, fed fresh at positions 0..n-1.
    std::vector<float> recompute(const std::vector<int32_t>& kept) {
        CacheSpec d;
        d.name = "reference";
        CachePtr c = make(one_.get(), d);
        std::vector<float> all = feed(one_.get(), c.get(), kept, 0, kept.size(), kept.size());
        return std::vector<float>(all.end() - nv_, all.end());
    }
    // What a cache of spec `s` keeps when the token at position t of seq_ is
    // the query: the sinks, then the newest window - sinks tokens.
    std::vector<int32_t> kept(const CacheSpec& s, size_t t) const {
        const size_t sinks = static_cast<size_t>(s.sinks), recent = static_cast<size_t>(s.window - s.sinks);
        std::vector<int32_t> k(seq_.begin(), seq_.begin() + std::min(sinks, t + 1));
        const size_t from = std::max(k.size(), t + 1 > recent ? t + 1 - recent : 0);
        k.insert(k.end(), seq_.begin() + from, seq_.begin() + t + 1);
        return k;
    }
    // Forwards src[first, first + n) at positions p..p+n-1 and checks every
    // row against the recompute; seq_ becomes what the cache has consumed.
    void step(ekv_cache* c, const CacheSpec& s, const std::vector<int32_t>& src, size_t first, int32_t p, int32_t n) {
        std::vector<int32_t> pos(static_cast<size_t>(n));
        for (int32_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = p + i;
        std::vector<float> got(static_cast<size_t>(n) * nv_);
        ASSERT_EQ(ekv_forward(one_.get(), c, &src[first], n, pos.data(), EKV_LOGITS_ALL, got.data(), got.size()),
                  EKV_OK)
            << s.name << " at " << p << ": " << ekv_last_error();
        seq_.resize(static_cast<size_t>(p));
        seq_.insert(seq_.end(), src.begin() + static_cast<long>(first), src.begin() + static_cast<long>(first) + n);
        for (int32_t i = 0; i < n; ++i) {
            const size_t t = static_cast<size_t>(p + i);
            const double err = normalized_max_error(got.data() + static_cast<size_t>(i) * nv_, recompute(kept(s, t)).data(), nv_);
            ASSERT_LT(err, 3e-5) << s.name << ", position " << t << " (forward at " << p << " of " << n << ")";
            worst_ = std::max(worst_, err);
        }
        EXPECT_EQ(stats_of(c).seq_len, p + n) << s.name;
    }
    TempDir dir_;
    ModelPtr one_;
    int32_t nv_ = 0;
    std::vector<int32_t> a_, b_, seq_;
    double worst_ = 0;
};

TEST_F(RingPositions, ExplicitPositionsContinueAndRewriteLikeARecomputeOfTheKeptTokens) {
    CacheSpec sw;
    sw.type = EKV_CACHE_SLIDING_WINDOW;
    sw.window = kWindow;
    sw.name = "sliding_window";
    CacheSpec sk = sw;
    sk.type = EKV_CACHE_SINK;
    sk.sinks = kSinks;
    sk.name = "sink";
    for (const CacheSpec& s : {sw, sk}) {
        seq_.clear();
        CachePtr c = make(one_.get(), s);
        ASSERT_TRUE(c);
        step(c.get(), s, a_, 0, 0, 10);
        step(c.get(), s, a_, 10, 10, 30);  // one forward longer than the window
        for (int32_t p = 40; p < 60; ++p) step(c.get(), s, a_, static_cast<size_t>(p), p, 1);
        step(c.get(), s, b_, 0, 55, 3);      // rewrite inside the window
        step(c.get(), s, a_, 58, 58, 100);   // past the ring's rows (window + a chunk of slack)
        for (int32_t p = 158; p < 170; ++p) step(c.get(), s, a_, static_cast<size_t>(p), p, 1);
        step(c.get(), s, b_, 20, 165, 5);    // rewrite after the ring wrapped
        step(c.get(), s, a_, 170, 170, 30);  // 200 tokens: 8x the window

        // Back to position 20: the ring overwrote what it needs. Refused, unchanged.
        std::vector<int32_t> pos(4);
        for (int32_t i = 0; i < 4; ++i) pos[static_cast<size_t>(i)] = 20 + i;
        std::vector<float> logits(4 * static_cast<size_t>(nv_));
        EXPECT_EQ(ekv_forward(one_.get(), c.get(), b_.data(), 4, pos.data(), EKV_LOGITS_ALL, logits.data(),
                              logits.size()),
                  EKV_ERR_INVALID_STATE)
            << s.name;
        EXPECT_NE(std::string(ekv_last_error()).find("reset and recompute"), std::string::npos) << ekv_last_error();
        // Past seq_len, or not consecutive: invalid positions, nothing changes.
        pos = {201, 202, 203, 204};
        EXPECT_EQ(ekv_forward(one_.get(), c.get(), b_.data(), 4, pos.data(), EKV_LOGITS_ALL, logits.data(),
                              logits.size()),
                  EKV_ERR_INVALID_ARGUMENT);
        pos = {200, 201, 203, 204};
        EXPECT_EQ(ekv_forward(one_.get(), c.get(), b_.data(), 4, pos.data(), EKV_LOGITS_ALL, logits.data(),
                              logits.size()),
                  EKV_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(stats_of(c.get()).seq_len, 200) << s.name;
        step(c.get(), s, a_, 200, 200, 2);  // the refusals left it intact

        // Into the sinks: they are never evicted, so a sink cache rewrites from
        // position 2 on; a window cache refuses.
        if (s.type == EKV_CACHE_SINK) {
            step(c.get(), s, b_, 0, 2, 2);
            step(c.get(), s, b_, 2, 4, 40);
        } else {
            pos = {2, 3};
            EXPECT_EQ(ekv_forward(one_.get(), c.get(), b_.data(), 2, pos.data(), EKV_LOGITS_ALL, logits.data(),
                                  logits.size()),
                      EKV_ERR_INVALID_STATE);
            EXPECT_EQ(stats_of(c.get()).seq_len, 202);
        }
    }
    std::printf("[ rings ] worst normalized logit error against the recompute: %.2e\n", worst_);
}

}  // namespace
