// Token sampler: Hugging Face's default logits processors/warpers in their
// order (repetition penalty, temperature, top-k, top-p, min-p), then a draw
// from a seeded, platform-independent PRNG. All working memory is allocated
// in the constructor, so sample() is safe on the per-token path.
#pragma once
#include <cstdint>
#include <vector>

#include "core/status.h"

namespace ekv {

struct SamplerParams {
    float temperature = 0.f;         // <= 0: greedy argmax
    int32_t top_k = 0;               // 0: off
    float top_p = 1.f;               // 1: off
    float min_p = 0.f;               // 0: off
    float repetition_penalty = 1.f;  // 1: off (HF/CTRL semantics)
    int32_t repetition_last_n = 64;  // tokens of history considered; 0: all
    uint64_t seed = 0;
};

// Checks ranges (finite values, top_p in (0,1], min_p in [0,1], penalty > 0,
// top_k and last_n >= 0, n_vocab > 0). EKV_ERR_INVALID_ARGUMENT otherwise.
Status validate_sampler_params(const SamplerParams& p, int32_t n_vocab);

// xoshiro256** seeded through splitmix64: small, fast and bit-identical on
// every platform (std:: distributions are not).
class Rng {
public:
    explicit Rng(uint64_t seed) { reseed(seed); }
    void reseed(uint64_t seed);
    uint64_t next_u64();
    // Uniform in [0, 1) with 53 random bits.
    double next_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

private:
    uint64_t s_[4];
};

class Sampler {
public:
    // Params are expected to be validated; out-of-range values are clamped to
    // "off" rather than trusted.
    Sampler(const SamplerParams& p, int32_t n_vocab);

    // Picks the next token. logits (n_vocab) are modified in place. history =
    // tokens so far (prompt + generated) for the repetition penalty; ids out of
    // range are ignored. NaN logits never win. No heap allocation.
    int32_t sample(float* logits, const int32_t* history, int32_t n_history);

    // Restarts the random stream (same seed gives the same draws again).
    void reseed(uint64_t seed) { rng_.reseed(seed); }

    const SamplerParams& params() const { return params_; }
    int32_t n_vocab() const { return n_vocab_; }

private:
    struct Candidate {
        int32_t id;
        float logit;
    };

    void apply_repetition_penalty(float* logits, const int32_t* history, int32_t n_history);
    // Largest logit threshold that top-k and top-p impose (-inf if none).
    float filter_threshold(const float* logits, float max_logit);
    // Makes cands_[0, end) the `end` best of cands_[0, n) in descending
    // order, given that [0, begin) already is. In place, no allocation.
    void sort_prefix(int32_t begin, int32_t end, int32_t n);
    static bool better(const Candidate& a, const Candidate& b);

    SamplerParams params_;
    int32_t n_vocab_;
    Rng rng_;
    std::vector<Candidate> cands_;       // top-k / top-p working set
    std::vector<double> weights_;        // exp(logit - max) of kept tokens
    std::vector<uint32_t> penalized_stamp_;  // per token: call stamp when last penalized
    uint32_t stamp_ = 0;
};

// Greedy argmax; ties go to the lowest id; NaN never wins (all NaN -> 0).
int32_t argmax_logits(const float* logits, int32_t n_vocab);

}  // namespace ekv
