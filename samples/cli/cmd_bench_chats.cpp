// edgekv bench-chats: N conversations on one model at once, each on its own
// thread with its own cache (the C ABI's thread model): every chat prefills
// its prompt, then all decode together; prints the aggregate and per-chat
// decode rates.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cli_common.h"
#include "commands.h"

namespace edgekv_cli {

namespace {

const CommandSpec& bench_chats_spec() {
    static const CommandSpec spec = with_cache_options({
        "bench-chats",
        "--chats conversations on one model at once, one thread and cache each",
        {
            opt_model(),
            {"--chats", "N", "concurrent conversations (default 2)"},
            {"--ctx", "T", "prompt tokens each chat prefills first (default 64)"},
            {"--n-decode", "M", "tokens each chat decodes, all chats at once (default 64)"},
            opt_backend(),
            opt_threads(), opt_int8(),
            opt_json(),
        }});
    return spec;
}

struct Chat {
    ekv_cache* cache = nullptr;
    ekv_status status = EKV_OK;
    std::string error;
    double decode_end = 0;
};

}  // namespace

int cmd_bench_chats(int argc, char** argv, int first) {
    const CommandSpec& spec = bench_chats_spec();
    ParsedArgs args;
    std::string error;
    if (!parse_args(argc, argv, first, spec, &args, &error)) return usage_error(spec, error);
    if (args.has("--help")) {
        print_command_usage(stdout, spec);
        return kExitOk;
    }
    const Output out{args.has("--json")};
    long long n_chats = 0, ctx = 0, n_decode = 0;
    if (!args.get_int("--chats", 2, 1, 64, &n_chats, &error) || !args.get_int("--ctx", 64, 1, 1 << 20, &ctx, &error) ||
        !args.get_int("--n-decode", 64, 1, 1 << 20, &n_decode, &error))
        return usage_error(spec, error);

    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    ekv_model_info info;
    ekv_status st = model_info(model.get(), &info);
    if (st != EKV_OK) return library_error(out, st, "reading model info");
    std::vector<CachePtr> caches(static_cast<size_t>(n_chats));
    for (CachePtr& c : caches)
        if (int rc = create_cache_from_args(args, spec, out, model.get(), static_cast<int32_t>(ctx + n_decode), &c))
            return rc;

    std::vector<Chat> chats(static_cast<size_t>(n_chats));
    std::atomic<int> prefilled{0};
    std::atomic<bool> go{false};
    double decode_start = 0;
    std::vector<std::thread> threads;
    for (long long i = 0; i < n_chats; ++i) {
        threads.emplace_back([&, i] {
            Chat& chat = chats[static_cast<size_t>(i)];
            ekv_cache* cache = caches[static_cast<size_t>(i)].get();
            std::vector<float> logits(static_cast<size_t>(info.n_vocab));
            // Each chat its own prompt: ids spread over the vocabulary.
            std::vector<int32_t> prompt(static_cast<size_t>(ctx));
            const int32_t base = info.n_vocab > 512 ? 256 : 0;
            for (long long t = 0; t < ctx; ++t)
                prompt[static_cast<size_t>(t)] =
                    base + static_cast<int32_t>((t * 7919 + 13 + i * 104729) % (info.n_vocab - base));
            chat.status = ekv_forward(model.get(), cache, prompt.data(), static_cast<int32_t>(ctx), nullptr,
                                      EKV_LOGITS_LAST, logits.data(), logits.size());
            if (chat.status != EKV_OK) chat.error = ekv_last_error();
            prefilled.fetch_add(1);
            while (!go.load()) std::this_thread::yield();
            for (long long s = 0; s < n_decode && chat.status == EKV_OK; ++s) {
                const int32_t next =
                    static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
                chat.status =
                    ekv_forward(model.get(), cache, &next, 1, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size());
                if (chat.status != EKV_OK) chat.error = ekv_last_error();
            }
            chat.decode_end = now_seconds();
        });
    }
    while (prefilled.load() < n_chats) std::this_thread::yield();
    decode_start = now_seconds();
    go.store(true);
    for (std::thread& t : threads) t.join();
    for (const Chat& c : chats)
        if (c.status != EKV_OK) return library_error(out, c.status, "chat: " + c.error);

    double last_end = decode_start;
    std::vector<double> per_chat;
    for (const Chat& c : chats) {
        last_end = std::max(last_end, c.decode_end);
        per_chat.push_back(safe_rate(static_cast<double>(n_decode), c.decode_end - decode_start));
    }
    const double aggregate = safe_rate(static_cast<double>(n_chats * n_decode), last_end - decode_start);
    if (!out.json) {
        std::printf("%s | %s | %lld chats | ctx %lld, %lld decode steps each\n",
                    info.name[0] ? info.name : info.architecture, info.device, n_chats, ctx, n_decode);
        std::printf("aggregate decode: %.2f tok/s\n", aggregate);
        for (size_t i = 0; i < per_chat.size(); ++i) std::printf("  chat %zu: %.2f tok/s\n", i, per_chat[i]);
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.field("chats", n_chats);
    w.field("ctx", ctx);
    w.field("n_decode", n_decode);
    w.field("aggregate_decode_tokens_per_s", aggregate);
    w.key("per_chat_decode_tokens_per_s");
    w.begin_array();
    for (double r : per_chat) w.value(r);
    w.end_array();
    w.field("device", info.device);
    w.field("backend", ekv_backend_name(info.backend));
    w.field("model", info.name);
    w.end_object();
    print_json(w);
    return kExitOk;
}

}  // namespace edgekv_cli
