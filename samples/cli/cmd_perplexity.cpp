// edgekv perplexity: exp(mean negative log-likelihood) of a text file, either
// over non-overlapping windows that each start from an empty cache, or
// (--stream) as one continuous stream through the cache, every token scored
// given what the cache holds then: StreamingLLM's long-text experiment.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"

namespace edgekv_cli {

namespace {

const CommandSpec& perplexity_spec() {
    static const CommandSpec spec = with_cache_options({
        "perplexity",
        "perplexity of a text file over windows of --ctx tokens, or as one --stream",
        {
            opt_model(),
            {"--file", "TEXT", "UTF-8 text file to score (required)"},
            {"--max-tokens", "N", "score only the first N tokens; 0 = all (default 0)"},
            {"--ctx", "C", "window length in tokens (default 512)"},
            {"--stream", nullptr, "score the tokens as one stream through the cache (no windows)"},
            {"--batch", "B", "tokens per forward (default: a whole window; 32 with --stream)"},
            {"--report-every", "N", "--stream: a progress point every N tokens (default 256)"},
            {"--curve", "CSV", "--stream: write the progress points (running ppl, memory) to CSV"},
            opt_backend(),
            opt_threads(), opt_int8(),
            opt_json(),
        }});
    return spec;
}

bool read_file(const std::string& path, std::string* text) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    std::ostringstream ss;
    ss << f.rdbuf();
    *text = ss.str();
    return !f.bad();
}

// -log softmax(row)[target], in double with the row maximum subtracted first.
double token_nll(const float* row, int32_t n_vocab, int32_t target) {
    double max_logit = row[0];
    for (int32_t v = 1; v < n_vocab; ++v) max_logit = std::max(max_logit, static_cast<double>(row[v]));
    double z = 0.0;
    for (int32_t v = 0; v < n_vocab; ++v) z += std::exp(static_cast<double>(row[v]) - max_logit);
    return -(static_cast<double>(row[target]) - max_logit - std::log(z));
}

// Feeds tokens[begin, end) through the cache in forwards of `batch` tokens
// and scores every token whose predecessor's logits it has (the first token
// of a window has none). Calls progress(scored) after each forward.
struct Scorer {
    ekv_model* model;
    ekv_cache* cache;
    int32_t n_vocab;
    int32_t batch;
    std::vector<float> rows;      // logits of the current forward
    std::vector<float> prev_row;  // last row of the previous forward
    double nll_sum = 0.0;
    long long scored = 0;
    long long forwarded = 0;

    ekv_status run(const std::vector<int32_t>& tokens, size_t begin, size_t end,
                   const std::function<void()>& after_forward) {
        rows.resize(static_cast<size_t>(batch) * n_vocab);
        prev_row.resize(static_cast<size_t>(n_vocab));
        for (size_t s = begin; s < end; s += static_cast<size_t>(batch)) {
            const int32_t n = static_cast<int32_t>(std::min<size_t>(static_cast<size_t>(batch), end - s));
            const ekv_status st = ekv_forward(model, cache, tokens.data() + s, n, nullptr, EKV_LOGITS_ALL,
                                              rows.data(), static_cast<size_t>(n) * n_vocab);
            if (st != EKV_OK) return st;
            forwarded += n;
            for (int32_t j = 0; j < n; ++j) {
                if (j == 0 && s == begin) continue;  // nothing predicts a window's first token
                const float* row = j == 0 ? prev_row.data() : rows.data() + static_cast<size_t>(j - 1) * n_vocab;
                nll_sum += token_nll(row, n_vocab, tokens[s + static_cast<size_t>(j)]);
                ++scored;
            }
            const float* last = rows.data() + static_cast<size_t>(n - 1) * n_vocab;
            std::copy(last, last + n_vocab, prev_row.begin());
            if (after_forward) after_forward();
        }
        return EKV_OK;
    }
    double ppl() const { return scored ? std::exp(nll_sum / static_cast<double>(scored)) : 0.0; }
};

}  // namespace

int cmd_perplexity(int argc, char** argv, int first) {
    const CommandSpec& spec = perplexity_spec();
    ParsedArgs args;
    std::string error;
    if (!parse_args(argc, argv, first, spec, &args, &error)) return usage_error(spec, error);
    if (args.has("--help")) {
        print_command_usage(stdout, spec);
        return kExitOk;
    }
    const Output out{args.has("--json")};
    const std::string path = args.get("--file");
    if (path.empty()) return usage_error(spec, "--file is required");
    long long max_tokens = 0, ctx = 0;
    if (!args.get_int("--max-tokens", 0, 0, INT32_MAX, &max_tokens, &error) ||
        !args.get_int("--ctx", 512, 2, 1 << 20, &ctx, &error))
        return usage_error(spec, error);

    std::string text;
    if (!read_file(path, &text)) {
        const std::string msg = "cannot read '" + path + "'";
        std::fprintf(stderr, "edgekv: %s\n", msg.c_str());
        if (out.json) {
            JsonWriter w;
            w.begin_object().field("error", msg).field("status", ekv_status_string(EKV_ERR_IO)).end_object();
            print_json(w);
        }
        return kExitLibraryError;
    }

    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    ekv_model_info info;
    ekv_status st = model_info(model.get(), &info);
    if (st != EKV_OK) return library_error(out, st, "reading model info");
    // Fixed-capacity caches only ever need one window.
    CachePtr cache;
    if (int rc = create_cache_from_args(args, spec, out, model.get(), static_cast<int32_t>(ctx), &cache)) return rc;

    std::vector<int32_t> tokens;
    st = tokenize(model.get(), text, true, false, &tokens);
    if (st != EKV_OK) return library_error(out, st, "tokenizing '" + path + "'");
    if (max_tokens > 0 && tokens.size() > static_cast<size_t>(max_tokens)) tokens.resize(static_cast<size_t>(max_tokens));
    if (tokens.size() < 2) return usage_error(spec, "the file gives fewer than 2 tokens to score");

    const bool stream = args.has("--stream");
    long long batch = 0, report_every = 0;
    const long long default_batch = stream ? 32 : ctx;
    if (!args.get_int("--batch", default_batch, 1, 1 << 20, &batch, &error) ||
        !args.get_int("--report-every", 256, 1, 1 << 30, &report_every, &error))
        return usage_error(spec, error);
    if (!stream && (args.has("--curve") || args.has("--report-every")))
        return usage_error(spec, "--curve and --report-every need --stream");
    std::FILE* curve = nullptr;
    if (args.has("--curve")) {
        curve = std::fopen(args.get("--curve").c_str(), "w");
        if (!curve) return usage_error(spec, "cannot create '" + args.get("--curve") + "'");
        std::fprintf(curve, "tokens,running_ppl,recent_ppl,tokens_held,kv_used_bytes,kv_device_bytes,kv_host_bytes,"
                            "peak_rss_bytes\n");
    }
    struct CurveCloser {
        std::FILE* f;
        ~CurveCloser() {
            if (f) std::fclose(f);
        }
    } closer{curve};

    Scorer sc{model.get(), cache.get(), info.n_vocab, static_cast<int32_t>(batch), {}, {}};
    const int32_t window = static_cast<int32_t>(std::min<long long>(ctx, static_cast<long long>(tokens.size())));
    int windows = 0;
    const double t0 = now_seconds();
    if (stream) {
        long long next_report = report_every, last_scored = 0;
        double last_nll = 0.0;
        auto report = [&]() {
            if (sc.scored < next_report) return;
            next_report += report_every;
            ekv_cache_stats cs = ekv_cache_stats_default();
            ekv_cache_get_stats(cache.get(), &cs);
            const double recent = std::exp((sc.nll_sum - last_nll) / static_cast<double>(sc.scored - last_scored));
            last_nll = sc.nll_sum;
            last_scored = sc.scored;
            if (curve)
                std::fprintf(curve, "%lld,%.6f,%.6f,%d,%llu,%llu,%llu,%llu\n", sc.scored, sc.ppl(), recent,
                             cs.tokens_held, static_cast<unsigned long long>(cs.used_bytes),
                             static_cast<unsigned long long>(cs.device_bytes),
                             static_cast<unsigned long long>(cs.host_bytes),
                             static_cast<unsigned long long>(ekv_peak_rss_bytes()));
            if (!out.json)
                std::fprintf(stderr, "%lld tokens: running ppl %.4f, last %lld: %.4f, cache holds %d tokens (%.1f MiB)\n",
                             sc.scored, sc.ppl(), report_every, recent, cs.tokens_held,
                             static_cast<double>(cs.used_bytes) / (1024.0 * 1024.0));
        };
        st = sc.run(tokens, 0, tokens.size(), report);
        if (st != EKV_OK) return library_error(out, st, "forward at token " + std::to_string(sc.forwarded));
        windows = 1;
    } else {
        for (size_t start = 0; start + 2 <= tokens.size(); start += static_cast<size_t>(window)) {
            const size_t end = std::min(tokens.size(), start + static_cast<size_t>(window));
            st = ekv_cache_reset(cache.get());
            if (st != EKV_OK) return library_error(out, st, "resetting the cache");
            st = sc.run(tokens, start, end, nullptr);
            if (st != EKV_OK) return library_error(out, st, "forward of window " + std::to_string(windows));
            ++windows;
            if (!out.json)
                std::fprintf(stderr, "window %d: %lld tokens scored, running ppl %.4f\n", windows, sc.scored,
                             sc.ppl());
        }
    }
    const double seconds = now_seconds() - t0;
    const double mean_nll = sc.nll_sum / static_cast<double>(sc.scored);
    const double ppl = sc.ppl();

    if (!out.json) {
        if (stream)
            std::printf("perplexity: %.4f (%lld tokens as one stream, %.2f s)\n", ppl, sc.scored, seconds);
        else
            std::printf("perplexity: %.4f (%lld tokens, %d windows of %d, %.2f s)\n", ppl, sc.scored, windows,
                        window, seconds);
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.field("perplexity", ppl);
    w.field("mean_nll", mean_nll);
    w.field("tokens", sc.scored);
    w.field("mode", stream ? "stream" : "windows");
    w.field("windows", windows);
    w.field("ctx", static_cast<long long>(ctx));
    w.field("batch", batch);
    w.field("seconds", seconds);
    w.field("tokens_per_s", safe_rate(static_cast<double>(sc.forwarded), seconds));
    cache_json(w, cache.get());
    w.field("peak_rss_bytes", static_cast<unsigned long long>(ekv_peak_rss_bytes()));
    w.field("device", info.device);
    w.field("backend", ekv_backend_name(info.backend));
    w.end_object();
    print_json(w);
    return kExitOk;
}

}  // namespace edgekv_cli
