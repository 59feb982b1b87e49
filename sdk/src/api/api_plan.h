// Cache planning for a loaded model: what ekv_cache_plan answers and what
// ekv_cache_create builds for EKV_CACHE_AUTO under a budget.
#pragma once
#include "cache/cache_planner.h"
#include "model/model.h"

namespace ekv::api {

// The planner's view of a model (its shape, backend, natural cache, the
// cache types it accepts and its weights' bytes).
PlanTarget plan_target(const Model& m);
// With type AUTO and a budget: the configuration the planner chooses for a
// context of max_cache_len tokens (0: the model's context length). Any
// other params: resolved as given.
Status cache_config_for(const Model& m, const ekv_cache_params& p, CacheConfig* out);

}  // namespace ekv::api
