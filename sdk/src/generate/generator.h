// Step-wise generation (the C ABI's ekv_generator): prefix reuse against the
// cache, prefill, sampling, stop rules and streamed text, one token per
// next(). The blocking generate() behind ekv_generate is a loop over it, so
// there is one implementation.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "edgekv.h"
#include "generate/sampler.h"
#include "generate/session.h"
#include "generate/stop_strings.h"
#include "model/model.h"
#include "text/utf8_stream.h"

namespace ekv {

struct GenerateOptions {
    SamplerParams sampler;
    int32_t max_new_tokens = 128;
    bool stop_at_eos = true;
    std::vector<int32_t> stop_tokens;
    std::vector<std::string> stop_strings;
    bool use_cache = true;
    CancelSet cancel;  // the call's flag and the cache's
};

// Counts and times of one generation (the C ABI's ekv_generate_result).
struct GenerateStats {
    int32_t n_generated = 0;
    int32_t n_prompt_tokens = 0;
    int32_t n_prompt_reused = 0;     // found in the cache, not recomputed
    int32_t n_prompt_forwarded = 0;  // computed
    int64_t n_forwarded = 0;         // every token run through the model
    double prefill_seconds = 0;
    double decode_seconds = 0;
    ekv_stop_reason stop_reason = EKV_STOP_NONE;
};

// Called with each token's released text; 0 stops the generation.
using TokenCallback = int (*)(int32_t token, const char* text, size_t len, void* user_data);

struct GenerateEvent {
    bool done = false;   // false: a token; true: the end (no token)
    int32_t token = -1;
    // Text released with this event: UTF-8 complete, never any part of a
    // stop string (held back until it cannot start one). The end event
    // carries what was still held.
    std::string text;
    ekv_stop_reason stop_reason = EKV_STOP_NONE;  // set on the end event
};

class Generator {
public:
    // session: the cache to extend (use_cache), or null with use_cache false
    // (a private cache recomputes the whole sequence every step). The
    // session must outlive the generator; next() takes its use() lock.
    static Status create(const Model& model, Session* session, const int32_t* prompt, int32_t n_prompt,
                         GenerateOptions opts, std::unique_ptr<Generator>* out);

    // The next event: the prefill happens in the first call. After the end
    // event (or a failure) the generator is done and next() refuses.
    Status next(GenerateEvent* ev);
    // Ends the generation early (the caller stopped consuming).
    void stop(ekv_stop_reason reason);
    bool done() const { return done_; }
    const GenerateStats& result() const { return result_; }

private:
    using Clock = std::chrono::steady_clock;
    Generator(const Model& model, Session* session, GenerateOptions opts);
    Status prefill();
    Status forward_last();
    // Samples a token and fills a token event; decides whether it ends the generation.
    void sample_into(GenerateEvent* ev);
    void finish(ekv_stop_reason reason, GenerateEvent* ev);
    Status fail(const Status& st);

    const Model& model_;
    Session* session_;
    std::unique_ptr<Session> private_;  // use_cache=false
    GenerateOptions opts_;
    Sampler sampler_;
    std::vector<float> logits_;
    std::vector<int32_t> seq_;  // prompt + generated, sized once
    Utf8StreamDecoder utf8_;
    StopStringFilter stops_;
    std::string piece_;  // scratch: the newest token's completed text
    GenerateStats result_;
    bool prefilled_ = false;
    bool done_ = false;
    ekv_stop_reason pending_stop_ = EKV_STOP_NONE;  // the last token ends it; the end event comes next
    Clock::time_point t_decode_;
};

// Generates after the prompt into out_tokens (at most out_capacity);
// on_token (optional) is called with each token's released text, and once
// more with token -1 for text released at the end; returning 0 stops.
// A stop request gives EKV_ERR_CANCELLED with *result filled.
Status generate(const Model& model, Session* session, const int32_t* prompt, int32_t n_prompt, GenerateOptions opts,
                TokenCallback on_token, void* user_data, int32_t* out_tokens, int32_t out_capacity,
                GenerateStats* result);

}  // namespace ekv
