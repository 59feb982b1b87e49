// edgekv serve: the local OpenAI-compatible chat server (samples/server/)
// with its web page, on one model. Built when cpp-httplib and nlohmann-json
// were found at configure time; otherwise the command says how to get it.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "cli_common.h"
#include "commands.h"

#if defined(EDGEKV_HAVE_SERVER)
#include <pthread.h>

#include "chat_service.h"
#include "http_server.h"
#endif

namespace edgekv_cli {

namespace {

const CommandSpec& serve_spec() {
    static const CommandSpec spec = with_cache_options({
        "serve",
        "serve the model over HTTP: OpenAI chat/completions API and a web chat page at /",
        {
            opt_model(),
            {"--host", "ADDR", "address to listen on (default 127.0.0.1: this machine only)"},
            {"--port", "N", "port (default 8080; 0 picks a free one)"},
            {"--model-id", "NAME", "model name clients see (default: the model file's name without .gguf)"},
            {"--parallel", "N", "generations at once, one cache each (default 4)"},
            {"--queue", "N", "requests that may wait for a turn before 503 (default 16)"},
            {"--max-conversations", "N", "conversation caches kept for reuse (default 16)"},
            {"--conversation-mib", "N", "memory those caches may hold, MiB (default 512)"},
            {"--temperature", "T", "sampling temperature of requests that give none (default 0.7)"},
            {"--max-tokens-limit", "N", "most tokens one request may generate (default 4096)"},
            opt_backend(),
            opt_threads(),
            opt_int8(),
        }});
    return spec;
}

}  // namespace

#if !defined(EDGEKV_HAVE_SERVER)

int cmd_serve(int argc, char** argv, int first) {
    (void)argc;
    (void)argv;
    (void)first;
    std::fprintf(stderr,
                 "edgekv serve: this build has no server (configure found no cpp-httplib / nlohmann-json; on "
                 "Debian: apt-get install libcpp-httplib-dev nlohmann-json3-dev, then reconfigure)\n");
    return kExitLibraryError;
}

#else

namespace {

std::string file_stem(const std::string& path) {
    std::string name = path.substr(path.find_last_of('/') + 1);
    const size_t dot = name.rfind(".gguf");
    return dot != std::string::npos && dot > 0 ? name.substr(0, dot) : name;
}

}  // namespace

int cmd_serve(int argc, char** argv, int first) {
    const CommandSpec& spec = serve_spec();
    ParsedArgs args;
    std::string error;
    if (!parse_args(argc, argv, first, spec, &args, &error)) return usage_error(spec, error);
    if (args.has("--help")) {
        print_command_usage(stdout, spec);
        return kExitOk;
    }
    const Output out{false};
    long long port = 0, parallel = 0, queue = 0, max_conv = 0, conv_mib = 0, max_tokens = 0;
    double temperature = 0;
    if (!args.get_int("--port", 8080, 0, 65535, &port, &error) ||
        !args.get_int("--parallel", 4, 1, 256, &parallel, &error) ||
        !args.get_int("--queue", 16, 0, 4096, &queue, &error) ||
        !args.get_int("--max-conversations", 16, 0, 100000, &max_conv, &error) ||
        !args.get_int("--conversation-mib", 512, 0, 1 << 24, &conv_mib, &error) ||
        !args.get_int("--max-tokens-limit", 4096, 1, INT32_MAX, &max_tokens, &error) ||
        !args.get_double("--temperature", 0.7, 0.0, 2.0, &temperature, &error))
        return usage_error(spec, error);

    edgekv_server::ServiceConfig config;
    if (int rc = cache_params_from_args(args, spec, 0, &config.default_cache)) return rc;
    config.default_temperature = static_cast<float>(temperature);
    config.max_tokens_limit = static_cast<int32_t>(max_tokens);
    config.parallel = static_cast<int32_t>(parallel);
    config.queue = static_cast<int32_t>(queue);
    config.max_conversations = static_cast<int32_t>(max_conv);
    config.conversation_bytes = static_cast<uint64_t>(conv_mib) << 20;

    // SIGINT/SIGTERM go to one waiting thread (set before any thread starts,
    // so every thread inherits the mask); a vanished client must not kill
    // the process with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    ekv_model_info info{};
    if (ekv_status st = model_info(model.get(), &info)) return library_error(out, st, "reading the model info");
    {
        // A cache the model cannot use is refused now, not per request.
        CachePtr probe;
        ekv_cache* raw = nullptr;
        if (ekv_status st = ekv_cache_create(model.get(), &config.default_cache, &raw))
            return library_error(out, st, "creating the default cache");
        probe.reset(raw);
    }

    edgekv_server::ModelDescription desc;
    desc.id = args.get("--model-id", file_stem(args.get("--model")));
    desc.device = info.device;
    desc.backend = ekv_backend_name(info.backend);
    desc.architecture = info.architecture;
    desc.natural_cache = ekv_cache_type_name(info.natural_cache);
    desc.context_length = info.context_length;
    desc.n_vocab = info.n_vocab;

    edgekv_server::ChatService service(model.get(), desc, config);
    edgekv_server::HttpConfig http;
    http.host = args.get("--host", "127.0.0.1");
    http.port = static_cast<int>(port);
    edgekv_server::HttpServer server(service, http);
    if (!server.bind(&error)) {
        std::fprintf(stderr, "edgekv serve: %s\n", error.c_str());
        return kExitLibraryError;
    }
    std::printf("edgekv serve: listening on http://%s:%d (%s on %s, backend %s)\n", http.host.c_str(), server.port(),
                desc.id.c_str(), desc.device.c_str(), desc.backend.c_str());
    std::fflush(stdout);

    std::atomic<bool> signalled{false};
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        signalled = true;
        server.stop();
    });
    const bool ok = server.serve();
    // serve() also returns on its own failure: wake the stopper to join it.
    if (!signalled) pthread_kill(stopper.native_handle(), SIGTERM);
    stopper.join();
    std::fprintf(stderr, "edgekv serve: stopped\n");
    return ok ? kExitOk : kExitLibraryError;
}

#endif

}  // namespace edgekv_cli
