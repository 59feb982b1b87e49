// edgekv generate: one prompt in, generated text out (streamed, or as JSON
// with timing and KV-cache figures).
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"

namespace edgekv_cli {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

const CommandSpec& generate_spec() {
    static const CommandSpec spec = with_cache_options({
        "generate",
        "generate text after a prompt (streamed to stdout, stats on stderr)",
        {
            opt_model(),
            {"--prompt", "TEXT", "prompt text (required)"},
            {"--max-new-tokens", "N", "tokens to generate (default 128)"},
            {"--temperature", "T", "sampling temperature; 0 = greedy (default 0)"},
            {"--top-k", "K", "keep the K most likely tokens; 0 = off"},
            {"--top-p", "P", "nucleus sampling mass; 1 = off"},
            {"--min-p", "M", "drop tokens below M x the top probability; 0 = off"},
            {"--repeat-penalty", "R", "repetition penalty (HF semantics); 1 = off"},
            {"--repeat-last-n", "N", "tokens the penalty looks at; 0 = all (default 64)"},
            {"--seed", "S", "sampling seed (default 0)"},
            {"--chat", nullptr, "wrap the prompt as a user message with the chat template"},
            {"--system", "TEXT", "system message (with --chat)"},
            opt_backend(),
            opt_threads(), opt_int8(),
            {"--no-cache", nullptr, "recompute the whole sequence every step (use_cache=0)"},
            {"--load-cache", "FILE", "start from a cache saved by --save-cache (the prompt continues it)"},
            {"--save-cache", "FILE", "save the cache after generating"},
            {"--stop", "STR", "stop when STR appears in the output", true},
            {"--ignore-eos", nullptr, "keep going past end-of-generation tokens"},
            opt_json(),
        }});
    return spec;
}

struct Options {
    std::string prompt;
    std::string system;
    bool chat = false;
    bool no_cache = false;
    std::vector<std::string> stops;
    ekv_generate_params gp = ekv_generate_default_params();
};

// Reads the sampling/generation options; false + *error on bad values.
bool read_options(const ParsedArgs& args, Options* o, std::string* error) {
    if (!args.has("--prompt")) {
        *error = "--prompt is required";
        return false;
    }
    o->prompt = args.get("--prompt");
    o->chat = args.has("--chat");
    o->system = args.get("--system");
    o->no_cache = args.has("--no-cache");
    o->stops = args.all("--stop");
    if (args.has("--system") && !o->chat) {
        *error = "--system needs --chat";
        return false;
    }
    if (o->no_cache && (args.has("--cache") || args.has("--max-cache-len") || args.has("--load-cache") ||
                        args.has("--save-cache"))) {
        *error = "--no-cache cannot be combined with cache options";
        return false;
    }
    if (args.has("--load-cache") && args.has("--cache")) {
        *error = "--load-cache takes the cache type from the file; drop --cache";
        return false;
    }
    long long max_new = 0, top_k = 0, last_n = 0;
    double temperature = 0, top_p = 1, min_p = 0, penalty = 1;
    unsigned long long seed = 0;
    const bool ok = args.get_int("--max-new-tokens", 128, 0, 1 << 24, &max_new, error) &&
                    args.get_double("--temperature", 0.0, 0.0, 1e6, &temperature, error) &&
                    args.get_int("--top-k", 0, 0, INT32_MAX, &top_k, error) &&
                    args.get_double("--top-p", 1.0, 0.0, 1.0, &top_p, error) &&
                    args.get_double("--min-p", 0.0, 0.0, 1.0, &min_p, error) &&
                    args.get_double("--repeat-penalty", 1.0, 1e-6, 1e6, &penalty, error) &&
                    args.get_int("--repeat-last-n", 64, 0, INT32_MAX, &last_n, error) &&
                    args.get_u64("--seed", 0, &seed, error);
    if (!ok) return false;
    ekv_generate_params& gp = o->gp;
    gp.max_new_tokens = static_cast<int32_t>(max_new);
    gp.temperature = static_cast<float>(temperature);
    gp.top_k = static_cast<int32_t>(top_k);
    gp.top_p = static_cast<float>(top_p);
    gp.min_p = static_cast<float>(min_p);
    gp.repetition_penalty = static_cast<float>(penalty);
    gp.repetition_last_n = static_cast<int32_t>(last_n);
    gp.seed = seed;
    gp.use_cache = o->no_cache ? 0 : 1;
    gp.stop_at_eos = args.has("--ignore-eos") ? 0 : 1;
    return true;
}

struct StreamState {
    bool print = false;
};

int stream_token(int32_t, const char* piece, size_t len, void* user_data) {
    const StreamState* s = static_cast<const StreamState*>(user_data);
    if (s->print && len > 0) {
        std::fwrite(piece, 1, len, stdout);
        std::fflush(stdout);
    }
    return g_interrupted ? 0 : 1;  // Ctrl-C cancels cleanly
}

}  // namespace

int cmd_generate(int argc, char** argv, int first) {
    const CommandSpec& spec = generate_spec();
    ParsedArgs args;
    std::string error;
    if (!parse_args(argc, argv, first, spec, &args, &error)) return usage_error(spec, error);
    if (args.has("--help")) {
        print_command_usage(stdout, spec);
        return kExitOk;
    }
    const Output out{args.has("--json")};
    Options opt;
    if (!read_options(args, &opt, &error)) return usage_error(spec, error);

    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    ekv_model_info info;
    ekv_status st = model_info(model.get(), &info);
    if (st != EKV_OK) return library_error(out, st, "reading model info");

    CachePtr cache;
    if (args.has("--load-cache")) {
        ekv_cache* raw = nullptr;
        st = ekv_cache_load(model.get(), args.get("--load-cache").c_str(), &raw);
        if (st != EKV_OK) return library_error(out, st, "loading the cache");
        cache.reset(raw);
    } else if (!opt.no_cache) {
        if (int rc = create_cache_from_args(args, spec, out, model.get(), 0, &cache)) return rc;
    }

    // A chat template writes its own special tokens (BOS included); the
    // prompt the user typed stays text.
    std::vector<int32_t> prompt;
    if (opt.chat) {
        st = chat_tokens(model.get(), opt.system, opt.prompt, &prompt);
        if (st != EKV_OK) return library_error(out, st, "applying the chat template");
    } else {
        st = tokenize(model.get(), opt.prompt, true, false, &prompt);
        if (st != EKV_OK) return library_error(out, st, "tokenizing the prompt");
    }

    std::vector<const char*> stop_ptrs;
    for (const std::string& s : opt.stops) stop_ptrs.push_back(s.c_str());
    ekv_generate_params gp = opt.gp;
    gp.stop_strings = stop_ptrs.empty() ? nullptr : stop_ptrs.data();
    gp.n_stop_strings = static_cast<int32_t>(stop_ptrs.size());
    StreamState stream;
    stream.print = !out.json;
    gp.on_token = stream_token;
    gp.user_data = &stream;

    std::vector<int32_t> generated(static_cast<size_t>(gp.max_new_tokens) + 1);
    ekv_generate_result res = ekv_generate_default_result();
    g_interrupted = 0;
    void (*previous)(int) = std::signal(SIGINT, on_sigint);
    st = ekv_generate(model.get(), cache.get(), prompt.data(), static_cast<int32_t>(prompt.size()), &gp,
                      generated.data(), gp.max_new_tokens, &res);
    std::signal(SIGINT, previous == SIG_ERR ? SIG_DFL : previous);
    if (stream.print) std::fputc('\n', stdout);
    if (st != EKV_OK) return library_error(out, st, "generating");
    generated.resize(static_cast<size_t>(res.n_generated));

    if (args.has("--save-cache")) {
        st = ekv_cache_save(cache.get(), args.get("--save-cache").c_str());
        if (st != EKV_OK) return library_error(out, st, "saving the cache");
    }
    ekv_cache_stats stats = ekv_cache_stats_default();
    if (cache) {
        st = ekv_cache_get_stats(cache.get(), &stats);
        if (st != EKV_OK) return library_error(out, st, "reading cache stats");
    }
    std::string text;
    st = detokenize(model.get(), generated, true, &text);
    if (st != EKV_OK) return library_error(out, st, "detokenizing");

    const double prefill_tps = safe_rate(res.n_prompt_forwarded, res.prefill_seconds);
    // The first token comes out of the prefill; decode produces the rest.
    const double decode_tps = safe_rate(res.n_generated > 1 ? res.n_generated - 1 : 0, res.decode_seconds);
    const std::string cache_name = cache_type_name(cache.get());
    const uint64_t kv_bytes = cache ? stats.used_bytes : 0;
    const uint64_t kv_per_token = cache ? stats.bytes_per_token : 0;

    if (!out.json) {
        std::fprintf(stderr,
                     "[prompt %d tok (%d reused) %.1f tok/s | generated %d tok %.1f tok/s | kv %.2f MiB, %llu B/tok "
                     "(%s) | %s | stop: %s]\n",
                     res.n_prompt_tokens, res.n_prompt_reused, prefill_tps, res.n_generated, decode_tps,
                     kv_bytes / (1024.0 * 1024.0), static_cast<unsigned long long>(kv_per_token), cache_name.c_str(),
                     info.device, stop_reason_name(res.stop_reason));
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.key("tokens").begin_array();
    for (int32_t t : generated) w.value(t);
    w.end_array();
    w.field("text", text);
    w.field("prompt_tokens", res.n_prompt_tokens);
    w.field("prompt_reused", res.n_prompt_reused);
    w.field("prompt_forwarded", res.n_prompt_forwarded);
    w.field("n_generated", res.n_generated);
    w.field("n_forwarded", static_cast<long long>(res.n_forwarded));
    w.field("prefill_seconds", res.prefill_seconds);
    w.field("decode_seconds", res.decode_seconds);
    w.field("prefill_tokens_per_s", prefill_tps);
    w.field("decode_tokens_per_s", decode_tps);
    w.field("kv_bytes", static_cast<unsigned long long>(kv_bytes));
    cache_json(w, cache.get());
    w.field("device", info.device);
    w.field("backend", ekv_backend_name(info.backend));
    w.field("stop_reason", stop_reason_name(res.stop_reason));
    w.field("model", info.name);
    w.end_object();
    print_json(w);
    return kExitOk;
}

}  // namespace edgekv_cli
