// Command-line parsing for the edgekv tool: "--name value", "--name=value",
// flags and repeatable options, checked against a per-command option table.
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace edgekv_cli {

struct OptionSpec {
    const char* name;        // "--model"
    const char* value_name;  // "FILE"; nullptr for a flag
    const char* help;
    bool repeatable = false;
};

struct CommandSpec {
    const char* name;     // "generate"
    const char* summary;  // one line
    std::vector<OptionSpec> options;
};

class ParsedArgs {
public:
    bool has(const std::string& name) const { return values_.count(name) != 0; }
    // Last value given (flags have ""), or def when absent.
    std::string get(const std::string& name, const std::string& def = "") const;
    // Every value of a repeatable option, in order.
    std::vector<std::string> all(const std::string& name) const;

    // Typed getters: false and *error set when present but not a number in
    // [min, max]; def when absent.
    bool get_int(const std::string& name, long long def, long long min, long long max, long long* out,
                 std::string* error) const;
    bool get_u64(const std::string& name, unsigned long long def, unsigned long long* out,
                 std::string* error) const;
    bool get_double(const std::string& name, double def, double min, double max, double* out,
                    std::string* error) const;

    void add(const std::string& name, const std::string& value) { values_[name].push_back(value); }

private:
    std::map<std::string, std::vector<std::string>> values_;
};

// Parses argv[first, argc) against spec. "--help"/"-h" is recorded as
// "--help". Returns false with *error for unknown options, missing values,
// repeated non-repeatable options and positional arguments.
bool parse_args(int argc, char** argv, int first, const CommandSpec& spec, ParsedArgs* out,
                std::string* error);

void print_command_usage(std::FILE* f, const CommandSpec& spec);

}  // namespace edgekv_cli
