// Forward and generation.
#include <cstring>

#include "api/api_internal.h"
#include "generate/forward.h"
#include "generate/generator.h"

using namespace ekv;

namespace {

Status check_owner(const ekv_model* model, const ekv_cache* cache) {
    if (cache && cache->owner != model)
        return Error(EKV_ERR_MODEL_MISMATCH, "the cache was created for another model");
    return Status::Ok();
}

}  // namespace

extern "C" {

ekv_status ekv_forward(ekv_model* model, ekv_cache* cache, const int32_t* tokens, int32_t n_tokens,
                       const int32_t* cache_position, ekv_logits_mode mode, float* logits, size_t logits_len) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(tokens, "tokens");
        EKV_TRY(check_owner(model, cache));
        const int raw_mode = api::enum_int(mode);
        if (raw_mode != EKV_LOGITS_LAST && raw_mode != EKV_LOGITS_ALL)
            return Error(EKV_ERR_INVALID_ARGUMENT, "unknown logits mode %d", raw_mode);
        const Model& m = *model->model;
        const bool all = mode == EKV_LOGITS_ALL;
        if (cache) return checked_forward(m, *cache->cache, *cache->ws, tokens, n_tokens, cache_position, all, logits,
                                          logits_len);
        // use_cache=False: the tokens are the whole sequence.
        if (cache_position) {
            for (int32_t i = 0; i < n_tokens; ++i) {
                if (cache_position[i] != i)
                    return Error(EKV_ERR_INVALID_ARGUMENT, "without a cache, cache_position must be 0..n-1");
            }
        }
        CacheConfig cc;
        EKV_TRY(default_cache_config(m.arch->natural_cache(), m.arch->cache_shape(), *m.backend, &cc));
        std::unique_ptr<Cache> tmp;
        std::unique_ptr<Workspace> ws;
        EKV_TRY(create_cache(cc, m.arch->cache_shape(), *m.backend, &tmp));
        EKV_TRY(m.arch->create_workspace(&ws));
        return checked_forward(m, *tmp, *ws, tokens, n_tokens, nullptr, all, logits, logits_len);
    });
}

ekv_generate_params ekv_generate_default_params(void) {
    ekv_generate_params p;
    std::memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.max_new_tokens = 128;
    p.temperature = 0.f;
    p.top_k = 0;
    p.top_p = 1.f;
    p.min_p = 0.f;
    p.repetition_penalty = 1.f;
    p.repetition_last_n = 64;
    p.seed = 0;
    p.stop_at_eos = 1;
    p.use_cache = 1;
    return p;
}

ekv_generate_result ekv_generate_default_result(void) {
    ekv_generate_result r;
    std::memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    return r;
}

ekv_status ekv_generate(ekv_model* model, ekv_cache* cache, const int32_t* prompt, int32_t n_prompt,
                        const ekv_generate_params* params, int32_t* out_tokens, int32_t out_capacity,
                        ekv_generate_result* result) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(prompt, "prompt");
        EKV_TRY(check_owner(model, cache));
        ekv_generate_params p = ekv_generate_default_params();
        if (params) {
            EKV_TRY(api::check_params(params, offsetof(ekv_generate_params, user_data) + sizeof(void*), "params"));
            std::memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
        }
        if (p.n_stop_tokens < 0 || (p.n_stop_tokens > 0 && !p.stop_tokens))
            return Error(EKV_ERR_INVALID_ARGUMENT, "stop_tokens is NULL or n_stop_tokens negative");
        if (p.n_stop_strings < 0 || (p.n_stop_strings > 0 && !p.stop_strings))
            return Error(EKV_ERR_INVALID_ARGUMENT, "stop_strings is NULL or n_stop_strings negative");
        if (p.use_cache && !cache) return Error(EKV_ERR_INVALID_ARGUMENT, "cache is NULL (pass use_cache = 0 to run without one)");

        GenerateOptions o;
        o.sampler.temperature = p.temperature;
        o.sampler.top_k = p.top_k;
        o.sampler.top_p = p.top_p;
        o.sampler.min_p = p.min_p;
        o.sampler.repetition_penalty = p.repetition_penalty;
        o.sampler.repetition_last_n = p.repetition_last_n;
        o.sampler.seed = p.seed;
        o.max_new_tokens = p.max_new_tokens;
        o.stop_at_eos = p.stop_at_eos != 0;
        o.stop_tokens.assign(p.stop_tokens, p.stop_tokens + p.n_stop_tokens);
        for (int32_t i = 0; i < p.n_stop_strings; ++i) {
            if (!p.stop_strings[i]) return Error(EKV_ERR_INVALID_ARGUMENT, "stop_strings[%d] is NULL", i);
            o.stop_strings.emplace_back(p.stop_strings[i]);
        }
        EKV_TRY(validate_sampler_params(o.sampler, model->model->info().n_vocab));
        o.use_cache = p.use_cache != 0;
        o.on_token = p.on_token;
        o.user_data = p.user_data;

        ekv_generate_result r = ekv_generate_default_result();
        Cache* c = o.use_cache ? cache->cache.get() : nullptr;
        Workspace* ws = o.use_cache ? cache->ws.get() : nullptr;
        const Status st = generate(*model->model, c, ws, prompt, n_prompt, o, out_tokens, out_capacity, &r);
        if (result) {
            if (result->struct_size == 0) return Error(EKV_ERR_INVALID_ARGUMENT, "result.struct_size is 0");
            api::write_struct(result, r);
        }
        return st;
    });
}

}  // extern "C"
