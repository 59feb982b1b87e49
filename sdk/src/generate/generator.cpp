#include "generate/generator.h"

#include <algorithm>
#include <new>

#include "generate/forward.h"

namespace ekv {
namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

}  // namespace

Generator::Generator(const Model& model, Session* session, GenerateOptions opts)
    : model_(model),
      session_(session),
      opts_(std::move(opts)),
      sampler_(opts_.sampler, model.info().n_vocab),
      stops_(opts_.stop_strings) {
}

Status Generator::create(const Model& model, Session* session, const int32_t* prompt, int32_t n_prompt,
                         GenerateOptions opts, std::unique_ptr<Generator>* out) {
    if (!prompt || n_prompt <= 0) return Error(EKV_ERR_INVALID_ARGUMENT, "the prompt is empty");
    if (opts.max_new_tokens < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "max_new_tokens is negative");
    EKV_TRY(check_tokens(model, prompt, n_prompt));
    for (int32_t t : opts.stop_tokens) EKV_TRY(check_tokens(model, &t, 1));
    EKV_TRY(validate_sampler_params(opts.sampler, model.info().n_vocab));
    if (opts.use_cache && !session) return Error(EKV_ERR_INVALID_ARGUMENT, "generation with use_cache needs a cache");
    if (opts.use_cache) {
        const int32_t cap = session->cache().max_seq_len();
        if (cap >= 0 && n_prompt > cap)
            return Error(EKV_ERR_CONTEXT_OVERFLOW, "prompt of %d tokens does not fit the cache's %d tokens", n_prompt,
                         cap);
    }
    std::unique_ptr<Generator> g(new (std::nothrow) Generator(model, session, std::move(opts)));
    if (!g) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate a generator");
    if (!g->opts_.use_cache) {
        EKV_TRY(Session::create_default(model, &g->private_));
        g->session_ = g->private_.get();
    }
    // Sized once for prompt + every generated token: no allocation per step.
    g->logits_.resize(static_cast<size_t>(model.info().n_vocab));
    g->seq_.reserve(static_cast<size_t>(n_prompt) + static_cast<size_t>(g->opts_.max_new_tokens) + 1);
    g->seq_.assign(prompt, prompt + n_prompt);
    g->piece_.reserve(256);
    g->result_.n_prompt_tokens = n_prompt;
    *out = std::move(g);
    return Status::Ok();
}

Status Generator::prefill() {
    const auto t0 = Clock::now();
    Cache& cache = session_->cache();
    const int32_t n_prompt = result_.n_prompt_tokens;
    int32_t reuse = 0;
    if (opts_.use_cache) {
        // Multi-turn reuse: keep the longest prefix the cache already holds
        // (at least the last prompt token is computed, for its logits).
        reuse = cache.reusable_prefix(seq_.data(), n_prompt - 1);
        if (opts_.cancel.raised()) return Error(EKV_ERR_CANCELLED, "cancelled before the prefill");
        if (reuse < cache.seq_len()) {
            // A ring or KIVI cache may no longer hold what the shorter prefix
            // needs: then recompute from scratch.
            const Status cropped = cache.crop(reuse);
            if (!cropped.ok()) {
                if (cropped.code() != EKV_ERR_INVALID_STATE) return cropped;
                cache.reset();
                reuse = 0;
            }
        }
    } else {
        cache.reset();
    }
    // The cache now holds exactly `reuse` tokens, so the suffix continues at
    // its seq_len (no position array to allocate).
    EKV_TRY(checked_forward(model_, cache, session_->ws(), seq_.data() + reuse, n_prompt - reuse, nullptr, false,
                            logits_.data(), logits_.size(), opts_.cancel));
    result_.n_prompt_reused = reuse;
    result_.n_prompt_forwarded = n_prompt - reuse;
    result_.n_forwarded += n_prompt - reuse;
    t_decode_ = Clock::now();
    result_.prefill_seconds = seconds_between(t0, t_decode_);
    return Status::Ok();
}

Status Generator::forward_last() {
    Cache& cache = session_->cache();
    const int32_t tok = seq_.back();
    if (opts_.use_cache) {
        EKV_TRY(checked_forward(model_, cache, session_->ws(), &tok, 1, nullptr, false, logits_.data(), logits_.size(),
                                opts_.cancel));
        result_.n_forwarded += 1;
        return Status::Ok();
    }
    if (opts_.cancel.raised()) return Error(EKV_ERR_CANCELLED, "cancelled between tokens");
    cache.reset();
    EKV_TRY(checked_forward(model_, cache, session_->ws(), seq_.data(), static_cast<int32_t>(seq_.size()), nullptr,
                            false, logits_.data(), logits_.size(), opts_.cancel));
    result_.n_forwarded += static_cast<int64_t>(seq_.size());
    return Status::Ok();
}

void Generator::sample_into(GenerateEvent* ev) {
    const int32_t tok = sampler_.sample(logits_.data(), seq_.data(), static_cast<int32_t>(seq_.size()));
    seq_.push_back(tok);
    result_.n_generated++;
    ev->token = tok;

    piece_.clear();
    if (model_.tokenizer) utf8_.push(model_.tokenizer->piece_view(tok, false), &piece_);
    if (stops_.push(piece_, &ev->text)) {
        pending_stop_ = EKV_STOP_STRING;
    } else if (opts_.stop_at_eos && model_.tokenizer && model_.tokenizer->is_eog(tok)) {
        pending_stop_ = EKV_STOP_EOS;
    } else if (std::find(opts_.stop_tokens.begin(), opts_.stop_tokens.end(), tok) != opts_.stop_tokens.end()) {
        pending_stop_ = EKV_STOP_TOKEN;
    } else if (result_.n_generated >= opts_.max_new_tokens) {
        pending_stop_ = EKV_STOP_MAX_TOKENS;
    }
    if (pending_stop_ != EKV_STOP_NONE && pending_stop_ != EKV_STOP_STRING) {
        // The last token: release everything still held with it.
        piece_.clear();
        utf8_.flush(&piece_);
        if (stops_.push(piece_, &ev->text))
            pending_stop_ = EKV_STOP_STRING;
        else
            stops_.flush(&ev->text);
    }
}

void Generator::finish(ekv_stop_reason reason, GenerateEvent* ev) {
    if (ev) {
        ev->done = true;
        ev->token = -1;
        ev->stop_reason = reason;
        if (reason != EKV_STOP_STRING) {
            piece_.clear();
            utf8_.flush(&piece_);
            if (!stops_.push(piece_, &ev->text)) stops_.flush(&ev->text);
        }
    }
    stop(reason);
}

void Generator::stop(ekv_stop_reason reason) {
    if (done_) return;
    done_ = true;
    result_.stop_reason = reason;
    if (prefilled_) result_.decode_seconds = seconds_between(t_decode_, Clock::now());
}

Status Generator::fail(const Status& st) {
    stop(EKV_STOP_ERROR);
    return st;
}

Status Generator::next(GenerateEvent* ev) {
    if (!ev) return Error(EKV_ERR_INVALID_ARGUMENT, "event is NULL");
    if (done_) return Error(EKV_ERR_INVALID_STATE, "the generation is over (stop reason %d)", result_.stop_reason);
    ev->done = false;
    ev->token = -1;
    ev->text.clear();
    ev->stop_reason = EKV_STOP_NONE;
    if (pending_stop_ != EKV_STOP_NONE) {
        finish(pending_stop_, ev);
        return Status::Ok();
    }
    std::unique_lock<std::recursive_mutex> lock = session_->use();
    const Status st = prefilled_ ? forward_last() : prefill();
    if (!st.ok()) {
        if (st.code() == EKV_ERR_CANCELLED) {
            finish(EKV_STOP_CANCELLED, ev);
            return Status::Ok();
        }
        if (prefilled_ && st.code() == EKV_ERR_CACHE_FULL) {
            finish(EKV_STOP_CACHE_FULL, ev);
            return Status::Ok();
        }
        return fail(st);
    }
    prefilled_ = true;
    if (result_.n_generated >= opts_.max_new_tokens) {  // max_new_tokens == 0: prefill only
        finish(EKV_STOP_MAX_TOKENS, ev);
        return Status::Ok();
    }
    sample_into(ev);
    return Status::Ok();
}

Status generate(const Model& model, Session* session, const int32_t* prompt, int32_t n_prompt, GenerateOptions opts,
                TokenCallback on_token, void* user_data, int32_t* out_tokens, int32_t out_capacity,
                GenerateStats* result) {
    if (out_capacity > 0 && !out_tokens) return Error(EKV_ERR_INVALID_ARGUMENT, "out_tokens is NULL");
    opts.max_new_tokens = std::min(opts.max_new_tokens, std::max(out_capacity, 0));
    std::unique_ptr<Generator> gen;
    EKV_TRY(Generator::create(model, session, prompt, n_prompt, std::move(opts), &gen));
    GenerateEvent ev;
    ev.text.reserve(256);
    Status st;
    bool callback_stopped = false;
    for (;;) {
        st = gen->next(&ev);
        if (!st.ok()) break;
        if (ev.done) {
            if (on_token && !ev.text.empty()) on_token(-1, ev.text.data(), ev.text.size(), user_data);
            break;
        }
        out_tokens[gen->result().n_generated - 1] = ev.token;
        if (on_token && !on_token(ev.token, ev.text.data(), ev.text.size(), user_data)) {
            gen->stop(EKV_STOP_CANCELLED);
            callback_stopped = true;
            break;
        }
    }
    *result = gen->result();
    EKV_TRY(st);
    if (result->stop_reason == EKV_STOP_CANCELLED && !callback_stopped)
        return Error(EKV_ERR_CANCELLED, "generation cancelled after %d tokens", result->n_generated);
    return Status::Ok();
}

}  // namespace ekv
