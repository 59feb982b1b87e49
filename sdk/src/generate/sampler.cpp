#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ekv {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Relative slack when comparing a cumulative probability with top_p, so that
// a distribution whose head sums to top_p exactly (0.5 + 0.3 for top_p 0.8)
// is cut there despite rounding in exp().
constexpr double kTopPSlack = 1e-6;

uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

// Best first; ties by id so that the order is a total one.
bool Sampler::better(const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// ---- Rng ------------------------------------------------------------------

void Rng::reseed(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& word : s_) word = splitmix64(x);
}

uint64_t Rng::next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

// ---- parameter checks -------------------------------------------------------

Status validate_sampler_params(const SamplerParams& p, int32_t n_vocab) {
    if (n_vocab <= 0) return Error(EKV_ERR_INVALID_ARGUMENT, "sampler: n_vocab must be > 0 (got %d)", n_vocab);
    if (!std::isfinite(p.temperature) || p.temperature < 0.f)
        return Error(EKV_ERR_INVALID_ARGUMENT, "temperature must be finite and >= 0 (got %g)",
                     static_cast<double>(p.temperature));
    if (p.top_k < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "top_k must be >= 0 (got %d)", p.top_k);
    if (!(p.top_p >= 0.f && p.top_p <= 1.f))
        return Error(EKV_ERR_INVALID_ARGUMENT, "top_p must be in [0, 1] (got %g)", static_cast<double>(p.top_p));
    if (!(p.min_p >= 0.f && p.min_p <= 1.f))
        return Error(EKV_ERR_INVALID_ARGUMENT, "min_p must be in [0, 1] (got %g)", static_cast<double>(p.min_p));
    if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0.f)
        return Error(EKV_ERR_INVALID_ARGUMENT, "repetition_penalty must be finite and > 0 (got %g)",
                     static_cast<double>(p.repetition_penalty));
    if (p.repetition_last_n < 0)
        return Error(EKV_ERR_INVALID_ARGUMENT, "repetition_last_n must be >= 0 (got %d)", p.repetition_last_n);
    return Status::Ok();
}

// ---- argmax -----------------------------------------------------------------

int32_t argmax_logits(const float* logits, int32_t n_vocab) {
    int32_t best = -1;
    for (int32_t i = 0; i < n_vocab; ++i) {
        const float v = logits[i];
        if (std::isnan(v)) continue;
        if (best < 0 || v > logits[best]) best = i;  // strict: ties keep the lowest id
    }
    return best < 0 ? 0 : best;
}

// ---- Sampler ------------------------------------------------------------------

Sampler::Sampler(const SamplerParams& p, int32_t n_vocab)
    : params_(p), n_vocab_(n_vocab > 0 ? n_vocab : 0), rng_(p.seed) {
    // Unvalidated values degrade to "off" instead of misbehaving.
    if (!(params_.temperature > 0.f) || !std::isfinite(params_.temperature)) params_.temperature = 0.f;
    if (params_.top_k < 0) params_.top_k = 0;
    if (!(params_.top_p >= 0.f && params_.top_p <= 1.f)) params_.top_p = 1.f;
    if (!(params_.min_p >= 0.f && params_.min_p <= 1.f)) params_.min_p = 0.f;
    if (!(params_.repetition_penalty > 0.f) || !std::isfinite(params_.repetition_penalty))
        params_.repetition_penalty = 1.f;
    if (params_.repetition_last_n < 0) params_.repetition_last_n = 0;

    const size_t n = static_cast<size_t>(n_vocab_);
    if (params_.temperature > 0.f) {
        cands_.resize(n);
        weights_.resize(n);
    }
    if (params_.repetition_penalty != 1.f) penalized_stamp_.assign(n, 0);
}

void Sampler::apply_repetition_penalty(float* logits, const int32_t* history, int32_t n_history) {
    const float penalty = params_.repetition_penalty;
    if (penalty == 1.f || history == nullptr || n_history <= 0) return;
    const int32_t last_n = params_.repetition_last_n;
    const int32_t start = (last_n > 0 && n_history > last_n) ? n_history - last_n : 0;

    // A fresh stamp per call marks tokens already penalized, so each distinct
    // token is penalized once without clearing a table.
    if (++stamp_ == 0) {
        std::fill(penalized_stamp_.begin(), penalized_stamp_.end(), 0u);
        stamp_ = 1;
    }
    for (int32_t j = start; j < n_history; ++j) {
        const int32_t t = history[j];
        if (t < 0 || t >= n_vocab_ || penalized_stamp_[t] == stamp_) continue;
        penalized_stamp_[t] = stamp_;
        const float v = logits[t];
        logits[t] = v < 0.f ? v * penalty : v / penalty;
    }
}

void Sampler::sort_prefix(int32_t begin, int32_t end, int32_t n) {
    // Select the next best (end - begin) in linear time, then sort only them.
    if (end < n) std::nth_element(cands_.begin() + begin, cands_.begin() + end, cands_.begin() + n, better);
    std::sort(cands_.begin() + begin, cands_.begin() + end, better);
}

float Sampler::filter_threshold(const float* logits, float max_logit) {
    const bool use_top_k = params_.top_k > 0;
    const bool use_top_p = params_.top_p < 1.f;
    float threshold = kNegInf;
    if (!use_top_k && !use_top_p) return threshold;

    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab_; ++i)
        if (logits[i] > kNegInf) cands_[n++] = Candidate{i, logits[i]};  // NaN fails too

    // Top-k: keep logits >= the k-th largest (ties at the boundary stay, as
    // in HF's TopKLogitsWarper).
    if (use_top_k && params_.top_k < n) {
        std::nth_element(cands_.begin(), cands_.begin() + (params_.top_k - 1), cands_.begin() + n, better);
        threshold = cands_[params_.top_k - 1].logit;
        int32_t kept = 0;
        for (int32_t j = 0; j < n; ++j)
            if (cands_[j].logit >= threshold) cands_[kept++] = cands_[j];
        n = kept;
    }

    // Top-p: the smallest head (by probability) whose mass reaches top_p;
    // the token that crosses the boundary is kept. The head is sorted
    // incrementally because it is usually tiny compared with the vocabulary.
    if (use_top_p && n > 0) {
        double total = 0.0;
        for (int32_t j = 0; j < n; ++j) total += std::exp(static_cast<double>(cands_[j].logit) - max_logit);
        const double target = static_cast<double>(params_.top_p) * total - kTopPSlack * total;
        double cumulative = 0.0;
        int32_t sorted = 0;
        for (int32_t j = 0; j < n; ++j) {
            if (j == sorted) {
                const int32_t next = std::min(n, std::max<int32_t>(64, sorted * 2));
                sort_prefix(sorted, next, n);
                sorted = next;
            }
            cumulative += std::exp(static_cast<double>(cands_[j].logit) - max_logit);
            if (cumulative >= target) {
                threshold = std::max(threshold, cands_[j].logit);
                break;
            }
        }
    }
    return threshold;
}

int32_t Sampler::sample(float* logits, const int32_t* history, int32_t n_history) {
    if (logits == nullptr || n_vocab_ <= 0) return -1;
    apply_repetition_penalty(logits, history, n_history);
    if (params_.temperature <= 0.f) return argmax_logits(logits, n_vocab_);

    const float temperature = params_.temperature;
    float max_logit = kNegInf;
    for (int32_t i = 0; i < n_vocab_; ++i) {
        logits[i] /= temperature;  // divide (not multiply by 1/T) as HF does
        if (logits[i] > max_logit) max_logit = logits[i];
    }
    // Nothing finite to sample from, or an infinitely likely token.
    if (!(max_logit > kNegInf) || std::isinf(max_logit)) return argmax_logits(logits, n_vocab_);

    const float threshold = filter_threshold(logits, max_logit);
    // Min-p: p_i >= min_p * p_max  <=>  exp(l_i - l_max) >= min_p.
    const double min_weight = params_.min_p;

    // Weights are accumulated in token-id order so that the draw does not
    // depend on how the standard library orders equal elements when sorting.
    double total = 0.0;
    for (int32_t i = 0; i < n_vocab_; ++i) {
        const float v = logits[i];
        double w = 0.0;
        if (v >= threshold && v > kNegInf) {  // NaN fails both
            w = std::exp(static_cast<double>(v) - max_logit);
            if (w < min_weight) w = 0.0;
        }
        weights_[i] = w;
        total += w;
    }
    if (!(total > 0.0)) return argmax_logits(logits, n_vocab_);

    const double u = rng_.next_double() * total;
    double cumulative = 0.0;
    int32_t last_kept = -1;
    for (int32_t i = 0; i < n_vocab_; ++i) {
        if (weights_[i] <= 0.0) continue;
        cumulative += weights_[i];
        last_kept = i;
        if (cumulative > u) return i;
    }
    return last_kept;  // rounding put u at the very end
}

}  // namespace ekv
