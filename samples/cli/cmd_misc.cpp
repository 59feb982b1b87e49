// edgekv tokenize / info / devices: small inspection commands.
#include <cstdio>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"

namespace edgekv_cli {

namespace {

const CommandSpec& tokenize_spec() {
    static const CommandSpec spec{
        "tokenize",
        "print the token ids and pieces of a text",
        {
            opt_model(),
            {"--prompt", "TEXT", "text to tokenize (required)"},
            {"--chat", nullptr, "apply the chat template first (special tokens parsed)"},
            {"--system", "TEXT", "system message (with --chat)"},
            {"--no-special", nullptr, "do not add BOS where the model would"},
            opt_backend(),
            opt_json(),
        }};
    return spec;
}

const CommandSpec& info_spec() {
    static const CommandSpec spec{"info", "print the model's architecture and sizes",
                                  {opt_model(), opt_backend(), opt_threads(), opt_json()}};
    return spec;
}

const CommandSpec& devices_spec() {
    static const CommandSpec spec{"devices", "list the devices of every backend in this build", {opt_json()}};
    return spec;
}

// Parses options and handles --help; returns -1 to go on, else an exit code.
int parse_or_exit(int argc, char** argv, int first, const CommandSpec& spec, ParsedArgs* args) {
    std::string error;
    if (!parse_args(argc, argv, first, spec, args, &error)) return usage_error(spec, error);
    if (args->has("--help")) {
        print_command_usage(stdout, spec);
        return kExitOk;
    }
    return -1;
}

const char* cache_type_or_unknown(ekv_cache_type t) {
    const char* name = ekv_cache_type_name(t);
    return name ? name : "unknown";
}

}  // namespace

int cmd_tokenize(int argc, char** argv, int first) {
    const CommandSpec& spec = tokenize_spec();
    ParsedArgs args;
    if (int rc = parse_or_exit(argc, argv, first, spec, &args); rc >= 0) return rc;
    const Output out{args.has("--json")};
    if (!args.has("--prompt")) return usage_error(spec, "--prompt is required");
    const bool chat = args.has("--chat");
    if (args.has("--system") && !chat) return usage_error(spec, "--system needs --chat");

    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    std::string text = args.get("--prompt");
    if (chat) {
        const ekv_status st = chat_prompt(model.get(), args.get("--system"), args.get("--prompt"), &text);
        if (st != EKV_OK) return library_error(out, st, "applying the chat template");
    }
    std::vector<int32_t> ids;
    const bool add_special = !chat && !args.has("--no-special");
    ekv_status st = tokenize(model.get(), text, add_special, chat, &ids);
    if (st != EKV_OK) return library_error(out, st, "tokenizing");
    std::vector<std::string> pieces(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        st = token_piece(model.get(), ids[i], &pieces[i]);
        if (st != EKV_OK) return library_error(out, st, "rendering token " + std::to_string(ids[i]));
    }

    if (!out.json) {
        for (size_t i = 0; i < ids.size(); ++i)
            std::printf("%6d  '%s'\n", ids[i], json_escape(pieces[i]).c_str());
        std::fprintf(stderr, "%zu tokens\n", ids.size());
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.field("n_tokens", static_cast<long long>(ids.size()));
    w.key("ids").begin_array();
    for (int32_t id : ids) w.value(id);
    w.end_array();
    w.key("pieces").begin_array();
    for (const std::string& p : pieces) w.value(p);
    w.end_array();
    if (chat) w.field("text", text);
    w.end_object();
    print_json(w);
    return kExitOk;
}

int cmd_info(int argc, char** argv, int first) {
    const CommandSpec& spec = info_spec();
    ParsedArgs args;
    if (int rc = parse_or_exit(argc, argv, first, spec, &args); rc >= 0) return rc;
    const Output out{args.has("--json")};
    ModelPtr model;
    if (int rc = load_model_from_args(args, spec, out, &model)) return rc;
    ekv_model_info info;
    const ekv_status st = model_info(model.get(), &info);
    if (st != EKV_OK) return library_error(out, st, "reading model info");

    if (!out.json) {
        std::printf("architecture:   %s\nname:           %s\n", info.architecture, info.name);
        std::printf("layers:         %d\nheads:          %d (kv %d, head_dim %d)\n", info.n_layers, info.n_heads,
                    info.n_kv_heads, info.head_dim);
        std::printf("embedding:      %d\nfeed-forward:   %d\ncontext:        %d\nvocabulary:     %d\n", info.n_embd,
                    info.n_ff, info.context_length, info.n_vocab);
        std::printf("parameters:     %llu\nweight bytes:   %llu (%llu read a decode step)\n",
                    static_cast<unsigned long long>(info.n_params), static_cast<unsigned long long>(info.weight_bytes),
                    static_cast<unsigned long long>(info.decode_weight_bytes));
        if (info.n_sliding_layers > 0)
            std::printf("local layers:   %d of %d (sliding window %d)\n", info.n_sliding_layers, info.n_layers,
                        info.sliding_window);
        if (info.n_recurrent_layers > 0)
            std::printf("mamba layers:   %d of %d\n", info.n_recurrent_layers, info.n_layers);
        std::printf("backend:        %s\ndevice:         %s\nnatural cache:  %s\n", ekv_backend_name(info.backend),
                    info.device, cache_type_or_unknown(info.natural_cache));
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.field("architecture", info.architecture);
    w.field("name", info.name);
    w.field("n_layers", info.n_layers);
    w.field("n_heads", info.n_heads);
    w.field("n_kv_heads", info.n_kv_heads);
    w.field("head_dim", info.head_dim);
    w.field("n_embd", info.n_embd);
    w.field("n_ff", info.n_ff);
    w.field("context_length", info.context_length);
    w.field("n_vocab", info.n_vocab);
    w.field("n_params", static_cast<unsigned long long>(info.n_params));
    w.field("weight_bytes", static_cast<unsigned long long>(info.weight_bytes));
    w.field("decode_weight_bytes", static_cast<unsigned long long>(info.decode_weight_bytes));
    w.field("backend", ekv_backend_name(info.backend));
    w.field("device", info.device);
    w.field("natural_cache", cache_type_or_unknown(info.natural_cache));
    w.field("n_sliding_layers", info.n_sliding_layers);
    w.field("sliding_window", info.sliding_window);
    w.field("n_recurrent_layers", info.n_recurrent_layers);
    w.field("version", ekv_version());
    w.end_object();
    print_json(w);
    return kExitOk;
}

int cmd_devices(int argc, char** argv, int first) {
    const CommandSpec& spec = devices_spec();
    ParsedArgs args;
    if (int rc = parse_or_exit(argc, argv, first, spec, &args); rc >= 0) return rc;
    const Output out{args.has("--json")};

    const ekv_backend_kind kinds[] = {EKV_BACKEND_CPU, EKV_BACKEND_VULKAN, EKV_BACKEND_CUDA};
    struct Found {
        ekv_backend_kind kind;
        bool available;
        std::vector<ekv_device_info> devices;
    };
    std::vector<Found> found;
    for (ekv_backend_kind kind : kinds) {
        Found f{kind, ekv_backend_available(kind) != 0, {}};
        int32_t count = 0;
        ekv_status st = ekv_device_count(kind, &count);
        if (st != EKV_OK) return library_error(out, st, std::string("counting ") + ekv_backend_name(kind) + " devices");
        for (int32_t i = 0; i < count; ++i) {
            ekv_device_info d = ekv_device_info_default();
            st = ekv_device_get_info(kind, i, &d);
            if (st != EKV_OK) return library_error(out, st, std::string("describing ") + ekv_backend_name(kind) + " device");
            f.devices.push_back(d);
        }
        found.push_back(std::move(f));
    }

    if (!out.json) {
        for (const Found& f : found) {
            std::printf("%s: %s\n", ekv_backend_name(f.kind), f.available ? "available" : "not available");
            for (const ekv_device_info& d : f.devices)
                std::printf("  [%d] %s, %.1f GiB%s, %d threads\n", d.index, d.name,
                            d.device_memory_bytes / (1024.0 * 1024.0 * 1024.0), d.unified_memory ? " (unified)" : "",
                            d.n_threads);
        }
        return kExitOk;
    }
    JsonWriter w;
    w.begin_object();
    w.field("version", ekv_version());
    w.key("backends").begin_array();
    for (const Found& f : found) {
        w.begin_object();
        w.field("backend", ekv_backend_name(f.kind));
        w.field("available", f.available);
        w.field("n_devices", static_cast<long long>(f.devices.size()));
        w.end_object();
    }
    w.end_array();
    w.key("devices").begin_array();
    for (const Found& f : found) {
        for (const ekv_device_info& d : f.devices) {
            w.begin_object();
            w.field("backend", ekv_backend_name(d.backend));
            w.field("index", d.index);
            w.field("name", d.name);
            w.field("device_memory_bytes", static_cast<unsigned long long>(d.device_memory_bytes));
            w.field("unified_memory", d.unified_memory != 0);
            w.field("n_threads", d.n_threads);
            w.end_object();
        }
    }
    w.end_array();
    w.end_object();
    print_json(w);
    return kExitOk;
}

}  // namespace edgekv_cli
