// ekv_cache_plan and ekv_cache_plan_candidate: the planner (cache_planner.h)
// behind the C ABI.
#include "api/api_plan.h"

#include <cstdio>

#include "api/api_internal.h"

using namespace ekv;

namespace ekv::api {

PlanTarget plan_target(const Model& m) {
    PlanTarget t;
    t.shape = m.cache_shape();
    t.backend = m.backend.get();
    t.natural = m.arch->natural_cache();
    const Architecture* arch = m.arch.get();
    t.accepts = [arch](ekv_cache_type type) { return arch->check_cache(type); };
    t.weight_bytes = m.info().weight_bytes;
    return t;
}

Status cache_config_for(const Model& m, const ekv_cache_params& p, CacheConfig* out) {
    EKV_TRY(check_cache_params(p));
    if (p.type == EKV_CACHE_AUTO && p.memory_budget_bytes > 0) {
        const int32_t context = p.max_cache_len > 0 ? p.max_cache_len : m.info().context_length;
        if (context <= 0)
            return Error(EKV_ERR_INVALID_ARGUMENT,
                         "the model states no context length: set max_cache_len to the context to plan the cache for");
        CachePlan plan;
        EKV_TRY(plan_cache(plan_target(m), p, context, &plan));
        *out = plan.candidates[static_cast<size_t>(plan.chosen)].config;
        return Status::Ok();
    }
    const ekv_cache_type type = p.type == EKV_CACHE_AUTO ? m.arch->natural_cache() : p.type;
    EKV_TRY(m.arch->check_cache(type));
    return resolve_cache_config(p, type, m.cache_shape(), *m.backend, out);
}

}  // namespace ekv::api

namespace {

int32_t to_int32(int64_t v) { return v > INT32_MAX ? INT32_MAX : static_cast<int32_t>(v); }

ekv_cache_plan_result describe(const CachePlan& plan, int index, int32_t context, uint64_t budget) {
    ekv_cache_plan_result r = api::zeroed_struct<ekv_cache_plan_result>();
    const PlanCandidate& c = plan.candidates[static_cast<size_t>(index)];
    const ekv_cache_params p = public_cache_params(c.config);
    r.type = p.type;
    r.dtype = p.dtype;
    r.nbits = p.dtype == EKV_KV_KIVI ? p.nbits : 0;
    r.window_length = c.config.retention == Retention::Window || c.config.retention == Retention::Sink ||
                              c.config.type == EKV_CACHE_HYBRID
                          ? p.window_length
                          : 0;
    r.num_sink_tokens = p.num_sink_tokens;
    r.max_cache_len = c.config.retention == Retention::Fixed ? p.max_cache_len : 0;
    r.offload = p.offload;
    r.context_tokens = context;
    r.tokens_held = c.at_context.tokens_held;
    r.capacity = c.at_context.capacity >= 0 ? to_int32(c.at_context.capacity)
                 : c.config.retention == Retention::Window || c.config.retention == Retention::Sink
                     ? c.config.window_length
                     : -1;
    r.max_tokens = c.at_context.max_tokens >= 0 ? to_int32(c.at_context.max_tokens) : -1;
    r.device_bytes = c.at_context.at_tokens.device;
    r.host_bytes = c.at_context.at_tokens.host;
    r.capacity_device_bytes = c.at_capacity.at_tokens.device;
    r.capacity_host_bytes = c.at_capacity.at_tokens.host;
    r.budget_bytes = budget;
    r.fits = c.at_context.fits ? 1 : 0;
    r.n_candidates = static_cast<int32_t>(plan.candidates.size());
    r.candidate_index = index;
    r.chosen_index = plan.chosen;
    const std::string& why = index == plan.chosen || (plan.chosen < 0 && index == plan.smallest)
                                 ? plan.reason
                                 : describe_config(c.config) + (c.at_context.fits ? ": fits" : ": " + c.at_context.why);
    std::snprintf(r.reason, sizeof r.reason, "%s", why.c_str());
    return r;
}

// Plans and writes candidate `index` (-1: the chosen one, or the smallest
// when none fits) to *out and its configuration to *config.
Status plan_and_describe(const ekv_model* model, const ekv_cache_params* params, int32_t context_tokens, int index,
                         ekv_cache_params* config, ekv_cache_plan_result* out) {
    EKV_CHECK_HANDLE(model, "model");
    EKV_TRY(api::check_params(out, 0, "out"));
    if (config) EKV_TRY(api::check_params(config, 0, "config"));
    ekv_cache_params p;
    EKV_TRY(api::read_params(params, api::cache_params_defaults(), "params", &p));
    CachePlan plan;
    const Status st = plan_cache(api::plan_target(*model->model), p, context_tokens, &plan);
    if (plan.candidates.empty()) return st;
    const int n = static_cast<int>(plan.candidates.size());
    if (index >= n || index < -1)
        return Error(EKV_ERR_INVALID_ARGUMENT, "candidate %d of a plan with %d candidates", index, n);
    const int shown = index >= 0 ? index : (plan.chosen >= 0 ? plan.chosen : plan.smallest);
    api::write_struct(out, describe(plan, shown, context_tokens, p.memory_budget_bytes));
    if (config && (st.ok() || index >= 0))
        api::write_struct(config, public_cache_params(plan.candidates[static_cast<size_t>(shown)].config));
    return index >= 0 ? Status::Ok() : st;
}

}  // namespace

extern "C" {

ekv_status ekv_cache_plan_result_init(ekv_cache_plan_result* r, size_t size) {
    return api::guarded([&] {
        ekv_cache_plan_result d = api::zeroed_struct<ekv_cache_plan_result>();
        d.candidate_index = d.chosen_index = -1;
        d.capacity = d.max_tokens = -1;
        return api::init_struct(r, size, d, "result");
    });
}

ekv_status ekv_cache_plan(const ekv_model* model, const ekv_cache_params* params, int32_t context_tokens,
                          ekv_cache_params* config, ekv_cache_plan_result* out) {
    return api::guarded([&] { return plan_and_describe(model, params, context_tokens, -1, config, out); });
}

ekv_status ekv_cache_plan_candidate(const ekv_model* model, const ekv_cache_params* params, int32_t context_tokens,
                                    int32_t index, ekv_cache_params* config, ekv_cache_plan_result* out) {
    return api::guarded([&]() -> Status {
        if (index < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "candidate index %d is negative", index);
        return plan_and_describe(model, params, context_tokens, index, config, out);
    });
}

}  // extern "C"
