// edgekv: command-line front end over the public C API (edgekv.h only).
//   edgekv <generate|perplexity|bench|bench-chats|tokenize|info|devices|plan|serve> [options] [--json]
#include <cstdio>
#include <cstring>

#include "commands.h"
#include "edgekv.h"

namespace {

struct Subcommand {
    const char* name;
    int (*run)(int argc, char** argv, int first);
    const char* summary;
};

const Subcommand kSubcommands[] = {
    {"generate", edgekv_cli::cmd_generate, "generate text after a prompt"},
    {"perplexity", edgekv_cli::cmd_perplexity, "perplexity of a text file"},
    {"bench", edgekv_cli::cmd_bench, "prefill / decode throughput and memory"},
    {"bench-chats", edgekv_cli::cmd_bench_chats, "decode throughput of concurrent chats on one model"},
    {"tokenize", edgekv_cli::cmd_tokenize, "token ids and pieces of a text"},
    {"info", edgekv_cli::cmd_info, "model architecture and sizes"},
    {"devices", edgekv_cli::cmd_devices, "devices of every backend"},
    {"plan", edgekv_cli::cmd_plan, "the cache that fits a memory budget, and the alternatives"},
    {"serve", edgekv_cli::cmd_serve, "OpenAI-compatible chat server with a web chat page"},
};

void print_usage(std::FILE* f) {
    std::fprintf(f, "edgekv %s - on-device LLM inference\n\nusage: edgekv <command> [options]\n\ncommands:\n",
                 ekv_version());
    for (const Subcommand& c : kSubcommands) std::fprintf(f, "  %-12s %s\n", c.name, c.summary);
    std::fprintf(f,
                 "\nEvery command accepts --json (one JSON object on stdout) and --help.\n"
                 "Exit codes: 0 ok, 1 library error, 2 bad arguments.\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char* name = argv[1];
    if (std::strcmp(name, "--help") == 0 || std::strcmp(name, "-h") == 0 || std::strcmp(name, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (std::strcmp(name, "--version") == 0) {
        std::printf("edgekv %s\n", ekv_version());
        return 0;
    }
    for (const Subcommand& c : kSubcommands)
        if (std::strcmp(name, c.name) == 0) return c.run(argc, argv, 2);
    std::fprintf(stderr, "edgekv: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return 2;
}
