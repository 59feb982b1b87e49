// Chooses a cache for a model, a memory budget and a wanted context, and
// sizes any configuration, without allocating: the policy behind
// ekv_cache_plan and EKV_CACHE_AUTO under a budget (the header states it).
// Every size comes from size_cache, the arithmetic the caches allocate by,
// so a plan equals what the created cache then reports.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "cache/cache.h"

namespace ekv {

// What the planner needs of a model (the cache layer knows no models).
struct PlanTarget {
    CacheShape shape;
    const Backend* backend = nullptr;
    ekv_cache_type natural = EKV_CACHE_DYNAMIC;
    std::function<Status(ekv_cache_type)> accepts;  // the model's check_cache
    uint64_t weight_bytes = 0;                      // what the weights already take on the device
};

struct PlanCandidate {
    CacheConfig config;
    CacheSize at_context;   // holding the wanted context
    CacheSize at_capacity;  // full: its capacity, or the model's context when unbounded
};

struct CachePlan {
    std::vector<PlanCandidate> candidates;
    int chosen = -1;    // index into candidates; -1 when none fits
    int smallest = -1;  // the candidate taking the fewest bytes at the context
    std::string reason;
};

// Rejects out-of-range enums and negative lengths in public parameters.
Status check_cache_params(const ekv_cache_params& p);

// With type AUTO and a budget: the candidates in the documented order and
// the choice (EKV_ERR_OUT_OF_MEMORY, with the numbers, when none fits; *out
// is filled either way). Otherwise the one configuration the parameters
// name, sized (chosen whether or not it fits).
Status plan_cache(const PlanTarget& target, const ekv_cache_params& params, int32_t context, CachePlan* out);

// "quantized KIVI 4-bit", "sink f16, window 2048 (4 sinks), host": a
// configuration in a few words.
std::string describe_config(const CacheConfig& c);

}  // namespace ekv
