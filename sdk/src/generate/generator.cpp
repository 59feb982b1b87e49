#include "generate/generator.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "generate/forward.h"
#include "text/utf8_stream.h"

namespace ekv {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Detects stop strings in the generated text without rescanning all of it.
class StopStringMatcher {
public:
    explicit StopStringMatcher(const std::vector<std::string>& stops) : stops_(stops) {
        for (const std::string& s : stops_) longest_ = std::max(longest_, s.size());
        if (!stops_.empty()) text_.reserve(4096);  // unused (and unallocated) without stops
    }
    bool empty() const { return stops_.empty(); }
    // Appends bytes; true if a stop string now occurs in the text.
    bool push(const std::string& piece) {
        const size_t before = text_.size();
        text_ += piece;
        const size_t from = before >= longest_ ? before - longest_ + 1 : 0;
        for (const std::string& s : stops_) {
            if (!s.empty() && text_.find(s, from) != std::string::npos) return true;
        }
        // Only the tail can still take part in a future match.
        if (text_.size() > 4 * longest_ + 1024) text_.erase(0, text_.size() - longest_);
        return false;
    }

private:
    const std::vector<std::string>& stops_;
    size_t longest_ = 0;
    std::string text_;
};

}  // namespace

Status generate(const Model& model, Cache* cache, Workspace* ws, const int32_t* prompt, int32_t n_prompt,
                const GenerateOptions& opts, int32_t* out_tokens, int32_t out_capacity, ekv_generate_result* res) {
    if (!prompt || n_prompt <= 0) return Error(EKV_ERR_INVALID_ARGUMENT, "the prompt is empty");
    if (opts.max_new_tokens < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "max_new_tokens is negative");
    if (out_capacity > 0 && !out_tokens) return Error(EKV_ERR_INVALID_ARGUMENT, "out_tokens is NULL");
    EKV_TRY(check_tokens(model, prompt, n_prompt));
    for (int32_t t : opts.stop_tokens) EKV_TRY(check_tokens(model, &t, 1));

    const int32_t n_vocab = model.info().n_vocab;
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    Sampler sampler(opts.sampler, n_vocab);
    const int32_t max_new = std::min(opts.max_new_tokens, std::max(out_capacity, 0));
    // Sized once for prompt + every generated token: one allocation per call.
    std::vector<int32_t> seq;
    seq.reserve(static_cast<size_t>(n_prompt) + static_cast<size_t>(max_new) + 1);
    seq.assign(prompt, prompt + n_prompt);

    // use_cache=false: a private cache recomputes the whole sequence each step.
    std::unique_ptr<Cache> scratch_cache;
    std::unique_ptr<Workspace> scratch_ws;
    if (!opts.use_cache) {
        CacheConfig cc;
        EKV_TRY(default_cache_config(model.arch->natural_cache(), model.arch->cache_shape(), *model.backend, &cc));
        EKV_TRY(create_cache(cc, model.arch->cache_shape(), *model.backend, &scratch_cache));
        EKV_TRY(model.arch->create_workspace(&scratch_ws));
    } else if (!cache || !ws) {
        return Error(EKV_ERR_INVALID_ARGUMENT, "generation with use_cache needs a cache");
    }

    ekv_generate_result r = *res;
    r.n_prompt_tokens = n_prompt;
    r.n_generated = 0;
    r.stop_reason = EKV_STOP_NONE;

    // Prefill (with prefix reuse when a cache is kept across calls).
    const auto t_prefill = Clock::now();
    if (opts.use_cache) {
        const int32_t cap = cache->max_seq_len();
        if (cap >= 0 && n_prompt > cap)
            return Error(EKV_ERR_CONTEXT_OVERFLOW, "prompt of %d tokens does not fit the cache's %d tokens", n_prompt,
                         cap);
        const std::vector<int32_t>& held = cache->tokens();
        int32_t reuse = 0;
        const int32_t limit = std::min<int32_t>(static_cast<int32_t>(held.size()), n_prompt - 1);
        while (reuse < limit && held[static_cast<size_t>(reuse)] == prompt[reuse]) ++reuse;
        if (static_cast<int32_t>(held.size()) != cache->seq_len()) reuse = 0;  // history not reusable
        if (reuse < cache->seq_len()) {
            // A ring or KIVI cache may no longer hold what the shorter prefix
            // needs: then recompute from scratch.
            const Status cropped = cache->crop(reuse);
            if (!cropped.ok()) {
                if (cropped.code() != EKV_ERR_INVALID_STATE) return cropped;
                cache->reset();
                reuse = 0;
            }
        }
        // The cache now holds exactly `reuse` tokens, so the suffix continues
        // at its seq_len (no position array to allocate).
        EKV_TRY(checked_forward(model, *cache, *ws, prompt + reuse, n_prompt - reuse, nullptr, false, logits.data(),
                                logits.size()));
        r.n_prompt_reused = reuse;
        r.n_prompt_forwarded = n_prompt - reuse;
        r.n_forwarded += n_prompt - reuse;
    } else {
        EKV_TRY(checked_forward(model, *scratch_cache, *scratch_ws, seq.data(), n_prompt, nullptr, false,
                                logits.data(), logits.size()));
        r.n_prompt_reused = 0;
        r.n_prompt_forwarded = n_prompt;
        r.n_forwarded += n_prompt;
    }
    r.prefill_seconds = seconds_since(t_prefill);

    const auto t_decode = Clock::now();
    Utf8StreamDecoder utf8;
    StopStringMatcher stops(opts.stop_strings);
    std::string text;  // a token's text piece, only for callbacks and stop strings
    if (opts.on_token || !stops.empty()) text.reserve(256);
    for (;;) {
        if (r.n_generated >= max_new) {
            r.stop_reason = EKV_STOP_MAX_TOKENS;
            break;
        }
        const int32_t tok = sampler.sample(logits.data(), seq.data(), static_cast<int32_t>(seq.size()));
        out_tokens[r.n_generated++] = tok;
        seq.push_back(tok);

        const bool is_eog = model.tokenizer && model.tokenizer->is_eog(tok);
        if (opts.on_token || !stops.empty()) {
            text.clear();
            if (model.tokenizer) utf8.push(model.tokenizer->piece_view(tok, false), &text);
            if (opts.on_token && !opts.on_token(tok, text.data(), text.size(), opts.user_data)) {
                r.stop_reason = EKV_STOP_CANCELLED;
                break;
            }
            if (stops.push(text)) {
                r.stop_reason = EKV_STOP_STRING;
                break;
            }
        }
        if (opts.stop_at_eos && is_eog) {
            r.stop_reason = EKV_STOP_EOS;
            break;
        }
        if (std::find(opts.stop_tokens.begin(), opts.stop_tokens.end(), tok) != opts.stop_tokens.end()) {
            r.stop_reason = EKV_STOP_TOKEN;
            break;
        }
        if (r.n_generated >= max_new) {
            r.stop_reason = EKV_STOP_MAX_TOKENS;
            break;
        }
        Status st;
        if (opts.use_cache) {
            st = checked_forward(model, *cache, *ws, &tok, 1, nullptr, false, logits.data(), logits.size());
        } else {
            scratch_cache->reset();
            st = checked_forward(model, *scratch_cache, *scratch_ws, seq.data(), static_cast<int32_t>(seq.size()),
                                 nullptr, false, logits.data(), logits.size());
        }
        if (st.code() == EKV_ERR_CACHE_FULL) {
            r.stop_reason = EKV_STOP_CACHE_FULL;
            break;
        }
        EKV_TRY(st);
        r.n_forwarded += opts.use_cache ? 1 : static_cast<int64_t>(seq.size());
    }
    r.decode_seconds = seconds_since(t_decode);
    *res = r;
    return Status::Ok();
}

}  // namespace ekv
