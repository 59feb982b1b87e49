// Forward and generation: blocking (ekv_forward[_ex], ekv_generate) and step-wise
// (ekv_generator).
#include <cstring>

#include "api/api_internal.h"
#include "generate/forward.h"
#include "generate/generator.h"

using namespace ekv;

namespace {

ekv_generate_result to_c(const GenerateStats& g) {
    ekv_generate_result r = api::zeroed_struct<ekv_generate_result>();
    r.n_generated = g.n_generated;
    r.n_prompt_tokens = g.n_prompt_tokens;
    r.n_prompt_reused = g.n_prompt_reused;
    r.n_prompt_forwarded = g.n_prompt_forwarded;
    r.n_forwarded = g.n_forwarded;
    r.prefill_seconds = g.prefill_seconds;
    r.decode_seconds = g.decode_seconds;
    r.stop_reason = g.stop_reason;
    return r;
}

Status check_owner(const ekv_model* model, const ekv_cache* cache) {
    if (cache && cache->owner != model)
        return Error(EKV_ERR_MODEL_MISMATCH, "the cache was created for another model");
    return Status::Ok();
}

// Validates the C params and converts them (the callback stays with the caller).
Status generate_options(const ekv_model* model, const ekv_cache* cache, const ekv_generate_params* params,
                        ekv_generate_params* p, GenerateOptions* o) {
    EKV_TRY(api::read_params(params, api::generate_params_defaults(), "params", p));
    if (p->n_stop_tokens < 0 || (p->n_stop_tokens > 0 && !p->stop_tokens))
        return Error(EKV_ERR_INVALID_ARGUMENT, "stop_tokens is NULL or n_stop_tokens negative");
    if (p->n_stop_strings < 0 || (p->n_stop_strings > 0 && !p->stop_strings))
        return Error(EKV_ERR_INVALID_ARGUMENT, "stop_strings is NULL or n_stop_strings negative");
    if (p->use_cache && !cache)
        return Error(EKV_ERR_INVALID_ARGUMENT, "cache is NULL (pass use_cache = 0 to run without one)");
    o->sampler.temperature = p->temperature;
    o->sampler.top_k = p->top_k;
    o->sampler.top_p = p->top_p;
    o->sampler.min_p = p->min_p;
    o->sampler.repetition_penalty = p->repetition_penalty;
    o->sampler.repetition_last_n = p->repetition_last_n;
    o->sampler.seed = p->seed;
    o->max_new_tokens = p->max_new_tokens;
    o->stop_at_eos = p->stop_at_eos != 0;
    o->stop_tokens.assign(p->stop_tokens, p->stop_tokens + p->n_stop_tokens);
    for (int32_t i = 0; i < p->n_stop_strings; ++i) {
        if (!p->stop_strings[i]) return Error(EKV_ERR_INVALID_ARGUMENT, "stop_strings[%d] is NULL", i);
        o->stop_strings.emplace_back(p->stop_strings[i]);
    }
    EKV_TRY(validate_sampler_params(o->sampler, model->model->info().n_vocab));
    o->use_cache = p->use_cache != 0;
    o->cancel = api::cancel_set(p->cancel, o->use_cache ? cache : nullptr);
    return Status::Ok();
}

}  // namespace

extern "C" {

ekv_status ekv_forward(ekv_model* model, ekv_cache* cache, const int32_t* tokens, int32_t n_tokens,
                       const int32_t* cache_position, ekv_logits_mode mode, float* logits, size_t logits_len) {
    return ekv_forward_ex(model, cache, tokens, n_tokens, cache_position, mode, logits, logits_len, nullptr);
}

ekv_status ekv_forward_ex(ekv_model* model, ekv_cache* cache, const int32_t* tokens, int32_t n_tokens,
                          const int32_t* cache_position, ekv_logits_mode mode, float* logits, size_t logits_len,
                          const ekv_forward_params* params) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(tokens, "tokens");
        EKV_TRY(check_owner(model, cache));
        ekv_forward_params p;
        EKV_TRY(api::read_params(params, api::zeroed_struct<ekv_forward_params>(), "params", &p));
        const int raw_mode = api::enum_int(mode);
        if (raw_mode != EKV_LOGITS_LAST && raw_mode != EKV_LOGITS_ALL)
            return Error(EKV_ERR_INVALID_ARGUMENT, "unknown logits mode %d", raw_mode);
        const Model& m = *model->model;
        const bool all = mode == EKV_LOGITS_ALL;
        if (cache) {
            api::CacheUse use(cache);
            EKV_TRY(use.status());
            Session& s = *cache->session;
            // The call's request is only borrowed: the cache's own stays attached.
            return checked_forward(m, s.cache(), s.ws(), tokens, n_tokens, cache_position, all, logits, logits_len,
                                   api::cancel_set(p.cancel, cache));
        }
        // use_cache=False: the tokens are the whole sequence.
        if (cache_position) {
            for (int32_t i = 0; i < n_tokens; ++i) {
                if (cache_position[i] != i)
                    return Error(EKV_ERR_INVALID_ARGUMENT, "without a cache, cache_position must be 0..n-1");
            }
        }
        std::unique_ptr<Session> tmp;
        EKV_TRY(Session::create_default(m, &tmp));
        std::unique_lock<std::recursive_mutex> lock = tmp->use();
        return checked_forward(m, tmp->cache(), tmp->ws(), tokens, n_tokens, nullptr, all, logits, logits_len,
                               api::cancel_set(p.cancel, nullptr));
    });
}

ekv_status ekv_generate(ekv_model* model, ekv_cache* cache, const int32_t* prompt, int32_t n_prompt,
                        const ekv_generate_params* params, int32_t* out_tokens, int32_t out_capacity,
                        ekv_generate_result* result) {
    GenerateStats r;
    const ekv_status st = api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(prompt, "prompt");
        EKV_TRY(check_owner(model, cache));
        if (result && result->struct_size < sizeof(size_t))
            return Error(EKV_ERR_INVALID_ARGUMENT, "result.struct_size is %zu", result->struct_size);
        ekv_generate_params p;
        GenerateOptions o;
        EKV_TRY(generate_options(model, cache, params, &p, &o));
        if (!o.use_cache) return generate(*model->model, nullptr, prompt, n_prompt, std::move(o), p.on_token,
                                          p.user_data, out_tokens, out_capacity, &r);
        api::CacheUse use(cache);
        EKV_TRY(use.status());
        return generate(*model->model, cache->session.get(), prompt, n_prompt, std::move(o), p.on_token, p.user_data,
                        out_tokens, out_capacity, &r);
    });
    if (result && result->struct_size >= sizeof(size_t)) api::write_struct(result, to_c(r));
    return st;
}

ekv_status ekv_generator_create(ekv_model* model, ekv_cache* cache, const int32_t* prompt, int32_t n_prompt,
                                const ekv_generate_params* params, ekv_generator** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(prompt, "prompt");
        EKV_CHECK_HANDLE(out, "out");
        *out = nullptr;
        EKV_TRY(check_owner(model, cache));
        ekv_generate_params p;
        GenerateOptions o;
        EKV_TRY(generate_options(model, cache, params, &p, &o));
        std::unique_ptr<ekv_generator> g(new ekv_generator());
        api::retain(model);
        g->model = model;
        api::retain(p.cancel);
        g->cancel = p.cancel;
        Session* session = nullptr;
        if (o.use_cache) {
            // The cache stays busy for the generator's life: nothing else may
            // change it between steps.
            api::CacheUse use(cache);
            EKV_TRY(use.status());
            use.keep_busy();
            api::retain(cache);
            g->cache = cache;
            g->holds_busy = true;
            session = cache->session.get();
        }
        EKV_TRY(Generator::create(*model->model, session, prompt, n_prompt, std::move(o), &g->gen));
        *out = g.release();
        return Status::Ok();
    });
}

ekv_status ekv_generator_next(ekv_generator* gen, ekv_generator_event* event, char* text, size_t text_cap) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(gen, "gen");
        EKV_TRY(api::check_params(event, 0, "event"));
        if (!gen->has_pending) {
            const Status st = gen->gen->next(&gen->pending);
            if (gen->holds_busy) {
                std::unique_lock<std::recursive_mutex> lock = gen->cache->session->use();
                api::refresh_snapshot(gen->cache);
            }
            if (gen->gen->done()) gen->release_cache();  // it will not touch the cache again
            EKV_TRY(st);
            gen->has_pending = true;
        }
        const GenerateEvent& e = gen->pending;
        ekv_generator_event out = api::zeroed_struct<ekv_generator_event>();
        out.type = e.done ? EKV_EVENT_DONE : EKV_EVENT_TOKEN;
        out.token = e.done ? -1 : e.token;
        out.text_len = e.text.size();
        out.stop_reason = e.stop_reason;
        if (!text || text_cap < e.text.size() + 1) {
            api::write_struct(event, out);
            return Error(EKV_ERR_BUFFER_TOO_SMALL, "the event's text needs %zu bytes plus NUL, the buffer holds %zu",
                         e.text.size(), text ? text_cap : 0);
        }
        std::memcpy(text, e.text.data(), e.text.size());
        text[e.text.size()] = '\0';
        gen->has_pending = false;
        api::write_struct(event, out);
        return Status::Ok();
    });
}

ekv_status ekv_generator_get_result(const ekv_generator* gen, ekv_generate_result* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(gen, "gen");
        EKV_TRY(api::check_params(out, 0, "out"));
        api::write_struct(out, to_c(gen->gen->result()));
        return Status::Ok();
    });
}

void ekv_generator_free(ekv_generator* gen) { delete gen; }

}  // extern "C"
