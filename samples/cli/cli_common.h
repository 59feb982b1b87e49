// Pieces every edgekv subcommand shares: exit codes, error reporting, RAII
// handles over the C API, model/cache setup from common options, and text
// helpers that grow their buffer on EKV_ERR_BUFFER_TOO_SMALL.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "edgekv.h"
#include "json_writer.h"

namespace edgekv_cli {

enum ExitCode { kExitOk = 0, kExitLibraryError = 1, kExitUsage = 2 };

struct ModelDeleter {
    void operator()(ekv_model* m) const { ekv_model_free(m); }
};
struct CacheDeleter {
    void operator()(ekv_cache* c) const { ekv_cache_free(c); }
};
using ModelPtr = std::unique_ptr<ekv_model, ModelDeleter>;
using CachePtr = std::unique_ptr<ekv_cache, CacheDeleter>;

// Output mode of one command run.
struct Output {
    bool json = false;
};

// A failed library call: "edgekv: <what>: <status>: <details>" on stderr and,
// in JSON mode, {"error": ..., "status": ...} on stdout. Returns 1.
int library_error(const Output& out, ekv_status status, const std::string& what);
// Bad arguments: message and the command's usage on stderr. Returns 2.
int usage_error(const CommandSpec& spec, const std::string& message);
// Prints a finished JSON document on stdout (one object, newline).
void print_json(const JsonWriter& w);

// Option-table entries shared by the commands that load a model.
OptionSpec opt_model();
OptionSpec opt_backend();
OptionSpec opt_threads();
OptionSpec opt_int8();
// Appends the cache options (named after HF's parameters) to a command.
CommandSpec with_cache_options(CommandSpec spec);
OptionSpec opt_json();

// Loads --model with --backend / --threads. On failure returns the exit code
// (usage or library error, already reported) and leaves *model empty.
int load_model_from_args(const ParsedArgs& args, const CommandSpec& spec, const Output& out,
                         ModelPtr* model);
// The cache options as parameters (usage errors reported, exit code 2).
int cache_params_from_args(const ParsedArgs& args, const CommandSpec& spec, int32_t default_max_len,
                           ekv_cache_params* params);
// Creates a cache from the cache options; default_max_len is used for
// fixed-capacity caches when --max-cache-len is absent (0 = model context).
int create_cache_from_args(const ParsedArgs& args, const CommandSpec& spec, const Output& out,
                           ekv_model* model, int32_t default_max_len, CachePtr* cache);

ekv_status model_info(const ekv_model* model, ekv_model_info* info);
ekv_status tokenize(const ekv_model* model, const std::string& text, bool add_special, bool parse_special,
                    std::vector<int32_t>* tokens);
ekv_status detokenize(const ekv_model* model, const std::vector<int32_t>& tokens, bool skip_special,
                      std::string* text);
ekv_status token_piece(const ekv_model* model, int32_t token, std::string* piece);
// Renders (optional system +) user message with the model's template, with
// the generation prompt appended.
ekv_status chat_prompt(const ekv_model* model, const std::string& system, const std::string& user,
                       std::string* text);
// The same conversation's token ids: the template's markers as control
// tokens, the messages as text (ekv_chat_tokenize).
ekv_status chat_tokens(const ekv_model* model, const std::string& system, const std::string& user,
                       std::vector<int32_t>* tokens);
// Cache type and memory figures as JSON fields.
void cache_json(JsonWriter& w, const ekv_cache* cache);
// Name of the resolved cache type, or "none" for a NULL cache.
std::string cache_type_name(const ekv_cache* cache);
const char* stop_reason_name(ekv_stop_reason r);

// Monotonic seconds.
double now_seconds();
// a / b, or 0 when b is not positive.
double safe_rate(double a, double b);

}  // namespace edgekv_cli
