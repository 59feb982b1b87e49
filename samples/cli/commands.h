// Subcommands of the edgekv tool. Each parses argv[first, argc) itself and
// returns the process exit code (0 ok, 1 library error, 2 bad arguments).
#pragma once

namespace edgekv_cli {

int cmd_generate(int argc, char** argv, int first);
int cmd_perplexity(int argc, char** argv, int first);
int cmd_bench(int argc, char** argv, int first);
int cmd_bench_chats(int argc, char** argv, int first);
int cmd_tokenize(int argc, char** argv, int first);
int cmd_info(int argc, char** argv, int first);
int cmd_devices(int argc, char** argv, int first);
int cmd_serve(int argc, char** argv, int first);
int cmd_plan(int argc, char** argv, int first);

}  // namespace edgekv_cli
