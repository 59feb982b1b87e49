// edgekv perplexity: exp(mean negative log-likelihood) of a text file, over
// non-overlapping windows that each start from an empty cache.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"

namespace edgekv_cli {

namespace {

const CommandSpec& perplexity_spec() {
    static const CommandSpec spec{
        "perplexity",
        "perplexity of a text file over non-overlapping windows of --ctx tokens",
        {
            opt_model(),
            {"--file", "TEXT", "UTF-8 text file to score (required)"},
            {"--max-tokens", "N", "score only the first N tokens; 0 = all (default 0)"},
            {"--ctx", "C", "window length in tokens (default 512)"},
            opt_cache(),
            opt_max_cache_len(),
            opt_backend(),
            opt_threads(), opt_int8(),
            opt_json(),
        }};
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

// Sum over positions 1..n-1 of -log softmax(logits[i-1])[tokens[i]], in
// double with the row maximum subtracted first.
double window_nll(const float* logits, int32_t n_vocab, const int32_t* tokens, int32_t n) {
    double sum = 0.0;
    for (int32_t i = 1; i < n; ++i) {
        const float* row = logits + static_cast<size_t>(i - 1) * n_vocab;
        double max_logit = row[0];
        for (int32_t v = 1; v < n_vocab; ++v) max_logit = std::max(max_logit, static_cast<double>(row[v]));
        double z = 0.0;
        for (int32_t v = 0; v < n_vocab; ++v) z += std::exp(static_cast<double>(row[v]) - max_logit);
        sum += -(static_cast<double>(row[tokens[i]]) - max_logit - std::log(z));
    }
    return sum;
}

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

    const int32_t n_vocab = info.n_vocab;
    const int32_t window = static_cast<int32_t>(std::min<long long>(ctx, static_cast<long long>(tokens.size())));
    std::vector<float> logits(static_cast<size_t>(window) * n_vocab);

    double nll_sum = 0.0;
    long long scored = 0, forwarded = 0;
    int windows = 0;
    const double t0 = now_seconds();
    for (size_t start = 0; start + 2 <= tokens.size(); start += static_cast<size_t>(window)) {
        const int32_t n = static_cast<int32_t>(std::min<size_t>(window, tokens.size() - start));
        st = ekv_cache_reset(cache.get());
        if (st != EKV_OK) return library_error(out, st, "resetting the cache");
        st = ekv_forward(model.get(), cache.get(), tokens.data() + start, n, nullptr, EKV_LOGITS_ALL, logits.data(),
                         static_cast<size_t>(n) * n_vocab);
        if (st != EKV_OK) return library_error(out, st, "forward of window " + std::to_string(windows));
        nll_sum += window_nll(logits.data(), n_vocab, tokens.data() + start, n);
        scored += n - 1;
        forwarded += n;
        ++windows;
        if (!out.json)
            std::fprintf(stderr, "window %d: %lld tokens scored, running ppl %.4f\n", windows, scored,
                         std::exp(nll_sum / static_cast<double>(scored)));
    }
    const double seconds = now_seconds() - t0;
    const double mean_nll = nll_sum / static_cast<double>(scored);
    const double ppl = std::exp(mean_nll);

    if (!out.json) {
        std::printf("perplexity: %.4f (%lld tokens, %d windows of %d, %.2f s)\n", ppl, scored, windows, window,
                    seconds);
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.field("perplexity", ppl);
    w.field("mean_nll", mean_nll);
    w.field("tokens", scored);
    w.field("windows", windows);
    w.field("ctx", static_cast<long long>(ctx));
    w.field("seconds", seconds);
    w.field("tokens_per_s", safe_rate(static_cast<double>(forwarded), seconds));
    w.field("cache", cache_type_name(cache.get()));
    w.field("device", info.device);
    w.field("backend", ekv_backend_name(info.backend));
    w.end_object();
    print_json(w);
    return kExitOk;
}

}  // namespace edgekv_cli
