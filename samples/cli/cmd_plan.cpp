// edgekv plan: which cache fits a memory budget for a wanted context, why,
// and the alternatives with their bytes. The choice is the library's
// (ekv_cache_plan); this command only prints it. Nothing is allocated but
// the model.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <strings.h>  // strcasecmp
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"

namespace edgekv_cli {

namespace {

const CommandSpec& plan_spec() {
    static const CommandSpec spec = with_cache_options({
        "plan",
        "choose the cache that fits --budget for --context tokens (with --cache auto, the default), or size the "
        "cache the options name; exit 1 when it does not fit",
        {
            opt_model(),
            {"--budget", "SIZE", "memory the cache may take: bytes, or a number with B, KiB, MiB or GiB (e.g. 64MiB)"},
            {"--context", "N", "tokens the conversation should reach (default: the model's context length)"},
            opt_backend(),
            opt_threads(),
            opt_json(),
        }});
    return spec;
}

// "64MiB", "1.5 GiB", "4096" (bytes). False for anything else.
bool parse_size(const std::string& text, uint64_t* out) {
    const char* s = text.c_str();
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s, &end);
    if (end == s || errno == ERANGE || !std::isfinite(v) || v < 0 || text[0] == '-') return false;
    while (*end == ' ') ++end;
    const struct {
        const char* suffix;
        double scale;
    } units[] = {{"", 1}, {"B", 1}, {"KiB", 1024.0}, {"MiB", 1024.0 * 1024}, {"GiB", 1024.0 * 1024 * 1024}};
    for (const auto& u : units) {
        if (strcasecmp(end, u.suffix) != 0) continue;
        const double bytes = v * u.scale;
        if (bytes >= 1.8e19 || bytes != std::floor(bytes)) return false;
        *out = static_cast<uint64_t>(bytes);
        return true;
    }
    return false;
}

std::string mib(uint64_t bytes) {
    char buf[48];
    if (bytes >= (1ull << 30))
        std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
    else if (bytes >= (1ull << 20))
        std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1ull << 20));
    else if (bytes >= (1ull << 10))
        std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / (1ull << 10));
    else
        std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    return buf;
}

const char* dtype_name(const ekv_cache_plan_result& r) {
    switch (r.dtype) {
        case EKV_KV_F32: return "f32";
        case EKV_KV_KIVI: return "kivi";
        default: return "f16";
    }
}

const char* placement_name(ekv_placement p) {
    switch (p) {
        case EKV_PLACEMENT_HOST: return "host";
        case EKV_PLACEMENT_UNIFIED: return "unified";
        default: return "device";
    }
}

// "quantized KIVI 4-bit", "sink f16, window 2048": one line per candidate.
std::string label(const ekv_cache_plan_result& r) {
    std::string s = ekv_cache_type_name(r.type);
    if (r.type == EKV_CACHE_MAMBA) return s + " (recurrent state)";  // no KV, no storage format
    s += r.dtype == EKV_KV_KIVI ? " KIVI " + std::to_string(r.nbits) + "-bit" : std::string(" ") + dtype_name(r);
    if (r.type == EKV_CACHE_SINK || r.type == EKV_CACHE_SLIDING_WINDOW)
        s += ", window " + std::to_string(r.window_length);
    if (r.max_cache_len > 0) s += ", " + std::to_string(r.max_cache_len) + " tokens";
    if (r.offload != EKV_PLACEMENT_DEVICE) s += std::string(", ") + placement_name(r.offload);
    return s;
}

void candidate_json(JsonWriter& w, const ekv_cache_plan_result& r) {
    w.begin_object();
    w.field("index", r.candidate_index);
    w.field("label", label(r));
    w.field("type", ekv_cache_type_name(r.type));
    w.field("dtype", dtype_name(r));
    w.field("nbits", r.nbits);
    w.field("window_length", r.window_length);
    w.field("num_sink_tokens", r.num_sink_tokens);
    w.field("max_cache_len", r.max_cache_len);
    w.field("offload", placement_name(r.offload));
    w.field("tokens_held", r.tokens_held);
    w.field("capacity", r.capacity);
    w.field("max_tokens", r.max_tokens);
    w.field("device_bytes", static_cast<unsigned long long>(r.device_bytes));
    w.field("host_bytes", static_cast<unsigned long long>(r.host_bytes));
    w.field("bytes", static_cast<unsigned long long>(r.device_bytes + r.host_bytes));
    w.field("capacity_bytes", static_cast<unsigned long long>(r.capacity_device_bytes + r.capacity_host_bytes));
    w.field("fits", r.fits != 0);
    w.field("reason", r.reason);
    w.end_object();
}

}  // namespace

int cmd_plan(int argc, char** argv, int first) {
    const CommandSpec& spec = plan_spec();
    ParsedArgs args;
    std::string error;
    if (!parse_args(argc, argv, first, spec, &args, &error)) return usage_error(spec, error);
    if (args.has("--help")) {
        print_command_usage(stdout, spec);
        return kExitOk;
    }
    const Output out{args.has("--json")};
    uint64_t budget = 0;
    if (args.has("--budget") && !parse_size(args.get("--budget"), &budget))
        return usage_error(spec, "--budget: expected bytes or a size like 64MiB, got '" + args.get("--budget") + "'");
    long long context = 0;
    if (!args.get_int("--context", 0, 1, INT32_MAX / 2, &context, &error)) return usage_error(spec, error);
    ekv_cache_params cp = ekv_cache_default_params();
    if (int rc = cache_params_from_args(args, spec, 0, &cp)) return rc;
    cp.memory_budget_bytes = budget;

    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    ekv_model_info info;
    ekv_status st = model_info(model.get(), &info);
    if (st != EKV_OK) return library_error(out, st, "reading model info");
    if (context == 0) context = info.context_length;
    if (context <= 0) return usage_error(spec, "the model states no context length: give --context");

    ekv_cache_plan_result plan = ekv_cache_plan_result_default();
    const ekv_status plan_st = ekv_cache_plan(model.get(), &cp, static_cast<int32_t>(context), nullptr, &plan);
    const std::string plan_error = plan_st == EKV_OK ? "" : ekv_last_error();
    if (plan_st != EKV_OK && plan.n_candidates == 0) return library_error(out, plan_st, "planning the cache");
    std::vector<ekv_cache_plan_result> candidates;
    for (int32_t i = 0; i < plan.n_candidates; ++i) {
        ekv_cache_plan_result c = ekv_cache_plan_result_default();
        st = ekv_cache_plan_candidate(model.get(), &cp, static_cast<int32_t>(context), i, nullptr, &c);
        if (st != EKV_OK) return library_error(out, st, "sizing candidate " + std::to_string(i));
        candidates.push_back(c);
    }
    const bool fits = plan_st == EKV_OK && plan.fits;

    if (out.json) {
        JsonWriter w;
        w.begin_object();
        w.field("model", info.name[0] ? info.name : info.architecture);
        w.field("backend", ekv_backend_name(info.backend));
        w.field("budget_bytes", static_cast<unsigned long long>(budget));
        w.field("context_tokens", static_cast<long long>(context));
        w.field("fits", fits);
        w.key("chosen");
        if (plan_st == EKV_OK)
            candidate_json(w, plan);
        else
            w.null();
        w.field("reason", plan.reason);
        w.key("candidates").begin_array();
        for (const ekv_cache_plan_result& c : candidates) candidate_json(w, c);
        w.end_array();
        if (plan_st != EKV_OK) {
            w.field("error", plan_error);
            w.field("status", ekv_status_string(plan_st));
        }
        w.end_object();
        print_json(w);
        return fits ? kExitOk : kExitLibraryError;
    }

    std::printf("model:    %s (%s, %d layers) on %s\n", info.name[0] ? info.name : info.architecture,
                info.architecture, info.n_layers, ekv_backend_name(info.backend));
    std::printf("budget:   %s, context %lld tokens\n", budget ? mib(budget).c_str() : "none", context);
    if (plan_st == EKV_OK) {
        std::printf("%s %s\n", fits ? "chosen:  " : "sized:   ", label(plan).c_str());
        std::printf("          holds %d of %lld tokens in %s (device %s, host %s)%s\n", plan.tokens_held, context,
                    mib(plan.device_bytes + plan.host_bytes).c_str(), mib(plan.device_bytes).c_str(),
                    mib(plan.host_bytes).c_str(), fits ? "" : ": does not fit");
    } else {
        std::printf("chosen:   nothing fits\n");
    }
    std::printf("why:      %s\n\ncandidates (bytes holding the context):\n", plan.reason);
    std::printf("     %-38s %8s %12s %12s  %s\n", "cache", "holds", "bytes", "full", "fits");
    for (const ekv_cache_plan_result& c : candidates) {
        const bool chosen = plan_st == EKV_OK && c.candidate_index == plan.chosen_index;
        const std::string full = c.capacity >= 0 || c.max_cache_len > 0
                                     ? mib(c.capacity_device_bytes + c.capacity_host_bytes)
                                     : mib(c.capacity_device_bytes + c.capacity_host_bytes) + "*";
        std::printf("  %s%-2d %-38s %8d %12s %12s  %s\n", chosen ? ">" : " ", c.candidate_index, label(c).c_str(),
                    c.tokens_held, mib(c.device_bytes + c.host_bytes).c_str(), full.c_str(), c.fits ? "yes" : "no");
    }
    std::printf("  (full: at capacity; * unbounded: at the model's context of %d tokens)\n", info.context_length);
    if (plan_st != EKV_OK) std::fprintf(stderr, "edgekv plan: %s\n", plan_error.c_str());
    return fits ? kExitOk : kExitLibraryError;
}

}  // namespace edgekv_cli
