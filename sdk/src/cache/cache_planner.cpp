#include "cache/cache_planner.h"

#include <algorithm>
#include <cstring>

namespace ekv {
namespace {

// The shortest sink window worth proposing: below it a "cache" forgets the
// conversation within a sentence or two.
constexpr int32_t kMinSinkWindow = 128;

// KIVI bit widths, most precise first.
constexpr int32_t kKiviBits[] = {8, 4, 2};

int raw_enum(const void* e) {
    int v;
    std::memcpy(&v, e, sizeof v);
    return v;
}

std::string storage_name(const CacheConfig& c) {
    if (c.storage == KvStorage::Kivi) return "KIVI " + std::to_string(c.nbits) + "-bit";
    return c.kv_dtype == DType::F32 ? "f32" : "f16";
}

// The planner's fixed inputs while it walks the candidates.
struct Planner {
    const PlanTarget& target;
    const ekv_cache_params& params;
    int32_t context;
    uint64_t budget;

    const DeviceDescription& device() const { return target.backend->device(); }

    // Free device memory the cache may use: on a GPU with its own memory,
    // what the device reported when the model loaded less its weights.
    uint64_t device_room() const {
        const DeviceDescription& d = device();
        if (d.unified_memory) return kNoByteLimit;
        return d.free_bytes > target.weight_bytes ? d.free_bytes - target.weight_bytes : 0;
    }

    Status size(const CacheConfig& cfg, PlanCandidate* out) const {
        out->config = cfg;
        EKV_TRY(size_cache(cfg, target.shape, device(), context, &out->at_context));
        const int32_t full = out->at_context.capacity >= 0 ? static_cast<int32_t>(out->at_context.capacity)
                                                            : std::max(target.shape.context_length, 0);
        return size_cache(cfg, target.shape, device(), full, &out->at_capacity);
    }

    // A candidate of `type` with the given storage and window, resolved as
    // ekv_cache_create would, placed in device memory when it fits there.
    // False when the model or backend cannot make it.
    bool make(ekv_cache_type type, ekv_kv_dtype dtype, int32_t nbits, int32_t window, PlanCandidate* out) const {
        ekv_cache_params q = params;
        q.type = type;
        q.dtype = dtype;
        q.nbits = nbits;
        q.window_length = window;
        q.max_cache_len = 0;
        q.offload = EKV_PLACEMENT_DEVICE;
        q.memory_budget_bytes = budget;
        if (!target.accepts(type).ok()) return false;
        CacheConfig cfg;
        if (!resolve_cache_config(q, type, target.shape, *target.backend, &cfg).ok()) return false;
        if (!size(cfg, out).ok()) return false;
        if (out->at_context.at_tokens.device <= device_room()) return true;
        // A discrete GPU without room for it: host memory, staged per layer.
        q.offload = EKV_PLACEMENT_HOST;
        if (type == EKV_CACHE_DYNAMIC) q.type = type = EKV_CACHE_OFFLOADED;
        if (!resolve_cache_config(q, type, target.shape, *target.backend, &cfg).ok()) return false;
        return size(cfg, out).ok();
    }

    // The sink candidate of one storage with the longest window that fits,
    // or the shortest window when none does. False when none can be made.
    bool longest_sink(ekv_kv_dtype dtype, int32_t nbits, PlanCandidate* out) const {
        const int32_t sinks = params.num_sink_tokens;
        const int32_t lo = std::max(sinks + 1, std::min(kMinSinkWindow, context - 1));
        const int32_t hi = context - 1;  // a window of the whole context is full retention
        if (hi < lo) return false;
        PlanCandidate best;
        if (!make(EKV_CACHE_SINK, dtype, nbits, lo, &best)) return false;
        if (best.at_context.fits) {
            // Bytes grow with the window: the longest that fits, by bisection.
            int32_t good = lo, bad = hi + 1;
            while (bad - good > 1) {
                const int32_t mid = good + (bad - good) / 2;
                PlanCandidate c;
                if (make(EKV_CACHE_SINK, dtype, nbits, mid, &c) && c.at_context.fits) {
                    good = mid;
                    best = c;
                } else {
                    bad = mid;
                }
            }
        }
        *out = best;
        return true;
    }
};

// The natural type with KIVI storage: a dynamic cache becomes HF's
// `quantized`; model-specific types keep their name.
ekv_cache_type kivi_type(ekv_cache_type natural) {
    return natural == EKV_CACHE_DYNAMIC ? EKV_CACHE_QUANTIZED : natural;
}

std::string total_of(const PlanCandidate& c) { return describe_bytes(c.at_context.at_tokens.total()); }

void explain_choice(const CachePlan& plan, int32_t context, uint64_t budget, std::string* out) {
    const PlanCandidate& c = plan.candidates[static_cast<size_t>(plan.chosen)];
    const PlanCandidate& first = plan.candidates.front();
    char buf[512];
    if (plan.chosen == 0) {
        std::snprintf(buf, sizeof buf, "%s holds all %d tokens in %s, within the budget of %s",
                      describe_config(c.config).c_str(), context, total_of(c).c_str(), describe_bytes(budget).c_str());
    } else if (c.config.retention != Retention::Sink) {
        std::snprintf(buf, sizeof buf, "%s would need %s for %d tokens, over the budget of %s; %s holds them all in %s",
                      storage_name(first.config).c_str(), total_of(first).c_str(), context,
                      describe_bytes(budget).c_str(), describe_config(c.config).c_str(), total_of(c).c_str());
    } else {
        // The smallest full-retention option says by how much they all miss.
        const PlanCandidate* full = nullptr;
        for (const PlanCandidate& x : plan.candidates)
            if (x.config.retention != Retention::Sink &&
                (!full || x.at_context.at_tokens.total() < full->at_context.at_tokens.total()))
                full = &x;
        std::snprintf(buf, sizeof buf,
                      "no cache holds all %d tokens within %s (the smallest, %s, needs %s); %s keeps the first %d "
                      "and the last %d in %s",
                      context, describe_bytes(budget).c_str(), full ? describe_config(full->config).c_str() : "-",
                      full ? total_of(*full).c_str() : "-", describe_config(c.config).c_str(),
                      c.config.num_sink_tokens, c.config.window_length - c.config.num_sink_tokens,
                      total_of(c).c_str());
    }
    *out = buf;
}

}  // namespace

Status check_cache_params(const ekv_cache_params& p) {
    const int type = raw_enum(&p.type), dtype = raw_enum(&p.dtype), offload = raw_enum(&p.offload);
    if (type < EKV_CACHE_AUTO || type > EKV_CACHE_ENCODER_DECODER)
        return Error(EKV_ERR_INVALID_ARGUMENT, "unknown cache type %d", type);
    if (p.max_cache_len < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "max_cache_len %d is negative", p.max_cache_len);
    if (dtype < EKV_KV_F16 || dtype > EKV_KV_KIVI) return Error(EKV_ERR_INVALID_ARGUMENT, "unknown kv dtype %d", dtype);
    if (offload < EKV_PLACEMENT_DEVICE || offload > EKV_PLACEMENT_UNIFIED)
        return Error(EKV_ERR_INVALID_ARGUMENT, "unknown placement %d", offload);
    return Status::Ok();
}

std::string describe_config(const CacheConfig& c) {
    if (c.type == EKV_CACHE_MAMBA) return "mamba (recurrent state)";  // no KV: no storage format
    std::string s = std::string(ekv_cache_type_name(c.type)) + " " + storage_name(c);
    if (c.retention == Retention::Sink)
        s += ", window " + std::to_string(c.window_length) + " (" + std::to_string(c.num_sink_tokens) + " sinks)";
    else if (c.retention == Retention::Window && c.type != EKV_CACHE_HYBRID)
        s += ", window " + std::to_string(c.window_length);
    if (c.retention == Retention::Fixed) s += ", " + std::to_string(c.max_cache_len) + " tokens";
    if (c.placement == Placement::Host) s += ", host";
    if (c.placement == Placement::Unified) s += ", unified";
    return s;
}

Status plan_cache(const PlanTarget& target, const ekv_cache_params& params, int32_t context, CachePlan* out) {
    *out = CachePlan();
    EKV_TRY(check_cache_params(params));
    if (context <= 0 || context > INT32_MAX / 2)
        return Error(EKV_ERR_INVALID_ARGUMENT, "context of %d tokens: expected 1 to %d", context, INT32_MAX / 2);
    const uint64_t budget = params.memory_budget_bytes;
    const Planner pl{target, params, context, budget};

    if (params.type != EKV_CACHE_AUTO || budget == 0) {
        // Sizing one configuration: exactly what ekv_cache_create makes.
        const ekv_cache_type type = params.type == EKV_CACHE_AUTO ? target.natural : params.type;
        EKV_TRY(target.accepts(type));
        CacheConfig cfg;
        EKV_TRY(resolve_cache_config(params, type, target.shape, *target.backend, &cfg));
        PlanCandidate c;
        EKV_TRY(pl.size(cfg, &c));
        out->candidates.push_back(c);
        out->chosen = out->smallest = 0;
        out->reason = describe_config(cfg) + (c.at_context.fits ? " takes " : " does not fit: ") +
                      (c.at_context.fits ? total_of(c) + " at " + std::to_string(context) + " tokens" : c.at_context.why);
        if (c.at_context.fits && budget) out->reason += ", within the budget of " + describe_bytes(budget);
        return Status::Ok();
    }

    // 1-2: the natural cache holding everything, f16 then KIVI 8, 4, 2 bits.
    PlanCandidate c;
    if (pl.make(target.natural, EKV_KV_F16, params.nbits, 0, &c)) out->candidates.push_back(c);
    if (target.natural != EKV_CACHE_MAMBA)
        for (int32_t bits : kKiviBits)
            if (pl.make(kivi_type(target.natural), EKV_KV_KIVI, bits, 0, &c)) out->candidates.push_back(c);
    const size_t n_full = out->candidates.size();
    // 3: sink caches, the longest window each storage reaches.
    if (target.shape.count(LayerKind::Recurrent) == 0) {
        if (pl.longest_sink(EKV_KV_F16, params.nbits, &c)) out->candidates.push_back(c);
        for (int32_t bits : kKiviBits)
            if (pl.longest_sink(EKV_KV_KIVI, bits, &c)) out->candidates.push_back(c);
    }
    if (out->candidates.empty())
        return Error(EKV_ERR_UNSUPPORTED, "no cache type of this model can be planned on this backend");

    for (size_t i = 0; i < out->candidates.size(); ++i) {
        const PlanCandidate& x = out->candidates[i];
        if (out->smallest < 0 ||
            x.at_context.at_tokens.total() <
                out->candidates[static_cast<size_t>(out->smallest)].at_context.at_tokens.total())
            out->smallest = static_cast<int>(i);
        if (!x.at_context.fits) continue;
        if (i < n_full) {
            if (out->chosen < 0) out->chosen = static_cast<int>(i);  // retention first: the first that fits
        } else if (out->chosen < 0 || (static_cast<size_t>(out->chosen) >= n_full &&
                                       x.config.window_length >
                                           out->candidates[static_cast<size_t>(out->chosen)].config.window_length)) {
            out->chosen = static_cast<int>(i);  // then the longest window, the most precise of equals
        }
    }
    if (out->chosen >= 0) {
        explain_choice(*out, context, budget, &out->reason);
        return Status::Ok();
    }
    const PlanCandidate& s = out->candidates[static_cast<size_t>(out->smallest)];
    out->reason = "nothing fits the budget of " + describe_bytes(budget) + ": the smallest option, " +
                  describe_config(s.config) + ", takes " + total_of(s);
    return Error(EKV_ERR_OUT_OF_MEMORY, "%s", out->reason.c_str());
}

}  // namespace ekv
