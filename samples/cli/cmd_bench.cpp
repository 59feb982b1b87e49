// edgekv bench: prefill and decode throughput on synthetic tokens, plus the
// memory figures (KV bytes, peak RSS) that go with them.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "read_bandwidth.h"

namespace edgekv_cli {

namespace {

const CommandSpec& bench_spec() {
    static const CommandSpec spec = with_cache_options({
        "bench",
        "prefill --ctx tokens in one forward, then --n-decode single-token forwards",
        {
            opt_model(),
            {"--ctx", "N", "prompt tokens prefilled in one forward (default 512)"},
            {"--n-decode", "M", "decode steps after the prefill (default 128)"},
            {"--reps", "R", "repetitions; rates are averaged (default 1)"},
            {"--no-warmup", nullptr, "skip the short warm-up forward"},
            opt_backend(),
            opt_threads(), opt_int8(),
            opt_json(),
        }});
    return spec;
}

// The decode bandwidth floor: a step streams the weights it reads and the
// live KV at least once, so no decode beats read bandwidth / those bytes.
struct BandwidthFloor {
    uint64_t bytes_per_token = 0;  // decode weight bytes + mean live KV of the decode steps
    double read_bytes_per_s = 0;   // measured, same thread count
    double tokens_per_s = 0;       // read_bytes_per_s / bytes_per_token
};

BandwidthFloor bandwidth_floor(const ekv_model_info& info, const ekv_cache_stats& stats, long long n_decode,
                               long long threads) {
    BandwidthFloor f;
    // The cache ends holding the prompt and every decode step: on average a
    // step saw half of those steps fewer.
    const uint64_t decoded = static_cast<uint64_t>(n_decode / 2) * stats.bytes_per_token;
    const uint64_t kv = stats.used_bytes - std::min(stats.used_bytes, decoded);
    f.bytes_per_token = info.decode_weight_bytes + kv;
    // 128 MiB: several times any last-level cache the CPU backend runs on.
    f.read_bytes_per_s = measure_read_bandwidth(static_cast<int>(threads), size_t{128} << 20, 8);
    if (f.bytes_per_token > 0) f.tokens_per_s = f.read_bytes_per_s / static_cast<double>(f.bytes_per_token);
    return f;
}

// Deterministic prompt: valid ids spread over the vocabulary, away from the
// low ids where special tokens usually live.
std::vector<int32_t> synthetic_tokens(int32_t n, int32_t n_vocab) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    const int32_t base = n_vocab > 512 ? 256 : 0;
    const int32_t span = n_vocab - base;
    for (int32_t i = 0; i < n; ++i)
        t[static_cast<size_t>(i)] = base + static_cast<int32_t>((static_cast<int64_t>(i) * 7919 + 13) % span);
    return t;
}

int32_t argmax(const std::vector<float>& v) {
    return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct MeanStd {
    double mean = 0, std = 0;
};

MeanStd mean_std(const std::vector<double>& xs) {
    MeanStd r;
    if (xs.empty()) return r;
    for (double x : xs) r.mean += x;
    r.mean /= static_cast<double>(xs.size());
    for (double x : xs) r.std += (x - r.mean) * (x - r.mean);
    r.std = xs.size() > 1 ? std::sqrt(r.std / static_cast<double>(xs.size() - 1)) : 0.0;
    return r;
}

}  // namespace

int cmd_bench(int argc, char** argv, int first) {
    const CommandSpec& spec = bench_spec();
    ParsedArgs args;
    std::string error;
    if (!parse_args(argc, argv, first, spec, &args, &error)) return usage_error(spec, error);
    if (args.has("--help")) {
        print_command_usage(stdout, spec);
        return kExitOk;
    }
    const Output out{args.has("--json")};
    long long ctx = 0, n_decode = 0, reps = 0;
    if (!args.get_int("--ctx", 512, 1, 1 << 20, &ctx, &error) ||
        !args.get_int("--n-decode", 128, 0, 1 << 20, &n_decode, &error) ||
        !args.get_int("--reps", 1, 1, 1000, &reps, &error))
        return usage_error(spec, error);

    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    ekv_model_info info;
    ekv_status st = model_info(model.get(), &info);
    if (st != EKV_OK) return library_error(out, st, "reading model info");
    CachePtr cache;
    if (int rc = create_cache_from_args(args, spec, out, model.get(), static_cast<int32_t>(ctx + n_decode), &cache))
        return rc;

    const int32_t n_vocab = info.n_vocab;
    const std::vector<int32_t> prompt = synthetic_tokens(static_cast<int32_t>(ctx), n_vocab);
    std::vector<float> logits(static_cast<size_t>(n_vocab));

    if (!args.has("--no-warmup")) {
        // Touches the memory-mapped weights once so that page faults do not
        // land in the first measurement.
        const int32_t n_warm = static_cast<int32_t>(std::min<long long>(ctx, 8));
        st = ekv_forward(model.get(), cache.get(), prompt.data(), n_warm, nullptr, EKV_LOGITS_LAST, logits.data(),
                         logits.size());
        if (st != EKV_OK) return library_error(out, st, "warm-up forward");
    }

    std::vector<double> prefill_rates, decode_rates;
    // The decode steps' device submissions: how many replayed a recording.
    uint64_t decode_submits = 0, decode_replays = 0, decode_record_ns = 0;
    for (long long rep = 0; rep < reps; ++rep) {
        st = ekv_cache_reset(cache.get());
        if (st != EKV_OK) return library_error(out, st, "resetting the cache");
        const double t0 = now_seconds();
        st = ekv_forward(model.get(), cache.get(), prompt.data(), static_cast<int32_t>(ctx), nullptr, EKV_LOGITS_LAST,
                         logits.data(), logits.size());
        if (st != EKV_OK) return library_error(out, st, "prefill forward");
        ekv_backend_stats before = ekv_backend_stats_default();
        st = ekv_model_get_backend_stats(model.get(), &before);
        if (st != EKV_OK) return library_error(out, st, "reading backend stats");
        const double t1 = now_seconds();
        for (long long i = 0; i < n_decode; ++i) {
            const int32_t next = argmax(logits);
            st = ekv_forward(model.get(), cache.get(), &next, 1, nullptr, EKV_LOGITS_LAST, logits.data(),
                             logits.size());
            if (st != EKV_OK) return library_error(out, st, "decode forward " + std::to_string(i));
        }
        const double t2 = now_seconds();
        ekv_backend_stats after = ekv_backend_stats_default();
        st = ekv_model_get_backend_stats(model.get(), &after);
        if (st != EKV_OK) return library_error(out, st, "reading backend stats");
        decode_submits += after.submissions - before.submissions;
        decode_replays += after.replayed_submissions - before.replayed_submissions;
        decode_record_ns += after.record_ns - before.record_ns;
        prefill_rates.push_back(safe_rate(static_cast<double>(ctx), t1 - t0));
        decode_rates.push_back(safe_rate(static_cast<double>(n_decode), t2 - t1));
        if (!out.json)
            std::fprintf(stderr, "rep %lld: prefill %.1f tok/s, decode %.2f tok/s\n", rep + 1, prefill_rates.back(),
                         decode_rates.back());
    }

    ekv_cache_stats stats = ekv_cache_stats_default();
    st = ekv_cache_get_stats(cache.get(), &stats);
    if (st != EKV_OK) return library_error(out, st, "reading cache stats");
    long long threads = 0;
    if (!args.get_int("--threads", 0, 0, 4096, &threads, &error)) return usage_error(spec, error);
    if (threads == 0) {
        ekv_device_info cpu = ekv_device_info_default();
        if (ekv_device_get_info(EKV_BACKEND_CPU, 0, &cpu) == EKV_OK) threads = cpu.n_threads;
    }
    const MeanStd prefill = mean_std(prefill_rates), decode = mean_std(decode_rates);
    const uint64_t peak_rss = ekv_peak_rss_bytes();  // before the probe's buffer
    const std::string cache_name = cache_type_name(cache.get());
    // Only the CPU backend decodes from the memory the probe reads.
    const bool on_cpu = info.backend == EKV_BACKEND_CPU;
    const BandwidthFloor floor = on_cpu && n_decode > 0 ? bandwidth_floor(info, stats, n_decode, threads)
                                                        : BandwidthFloor{};
    const double fraction = floor.tokens_per_s > 0 ? decode.mean / floor.tokens_per_s : 0.0;

    if (!out.json) {
        std::printf("%s | %s | %s cache | ctx %lld\n", info.name[0] ? info.name : info.architecture, info.device,
                    cache_name.c_str(), ctx);
        std::printf("prefill: %.1f +- %.1f tok/s\n", prefill.mean, prefill.std);
        std::printf("decode:  %.2f +- %.2f tok/s (%lld steps)\n", decode.mean, decode.std, n_decode);
        std::printf("kv: %.2f MiB (%llu B/token), peak RSS %.1f MiB, %lld threads\n",
                    stats.used_bytes / (1024.0 * 1024.0), static_cast<unsigned long long>(stats.bytes_per_token),
                    peak_rss / (1024.0 * 1024.0), threads);
        if (floor.tokens_per_s > 0)
            std::printf("bandwidth bound: %.1f tok/s (%.1f MB a token at %.1f GB/s read); decode reached %.0f %%\n",
                        floor.tokens_per_s, floor.bytes_per_token / 1e6, floor.read_bytes_per_s / 1e9,
                        100.0 * fraction);
        if (decode_submits > 0) {
            const uint64_t recorded = decode_submits - decode_replays;
            std::printf("decode submissions: %llu, %llu replayed; recording %.1f us per recorded one\n",
                        static_cast<unsigned long long>(decode_submits),
                        static_cast<unsigned long long>(decode_replays),
                        recorded > 0 ? decode_record_ns / 1e3 / static_cast<double>(recorded) : 0.0);
        }
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.field("prefill_tokens_per_s", prefill.mean);
    w.field("prefill_tokens_per_s_std", prefill.std);
    w.field("decode_tokens_per_s", decode.mean);
    w.field("decode_tokens_per_s_std", decode.std);
    w.field("ctx", ctx);
    w.field("n_decode", n_decode);
    w.field("reps", reps);
    w.field("kv_bytes", static_cast<unsigned long long>(stats.used_bytes));
    cache_json(w, cache.get());
    w.field("decode_submissions", static_cast<unsigned long long>(decode_submits));
    w.field("decode_replayed_submissions", static_cast<unsigned long long>(decode_replays));
    w.field("decode_record_ns", static_cast<unsigned long long>(decode_record_ns));
    w.field("peak_rss_bytes", static_cast<unsigned long long>(peak_rss));
    w.field("threads", threads);
    w.field("int8_activations", args.has("--int8-activations"));
    w.field("n_params", static_cast<unsigned long long>(info.n_params));
    w.field("weight_bytes", static_cast<unsigned long long>(info.weight_bytes));
    w.field("decode_weight_bytes", static_cast<unsigned long long>(info.decode_weight_bytes));
    // null where not measured (a GPU backend, no decode steps).
    if (floor.tokens_per_s > 0) {
        w.field("decode_bytes_per_token", static_cast<unsigned long long>(floor.bytes_per_token));
        w.field("read_bandwidth_bytes_per_s", floor.read_bytes_per_s);
        w.field("bandwidth_floor_tokens_per_s", floor.tokens_per_s);
        w.field("bandwidth_fraction", fraction);
    } else {
        for (const char* k : {"decode_bytes_per_token", "read_bandwidth_bytes_per_s", "bandwidth_floor_tokens_per_s",
                              "bandwidth_fraction"}) {
            w.key(k);
            w.null();
        }
    }
    w.field("device", info.device);
    w.field("backend", ekv_backend_name(info.backend));
    w.field("model", info.name);
    w.end_object();
    print_json(w);
    return kExitOk;
}

}  // namespace edgekv_cli
