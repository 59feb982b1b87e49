#include "args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace edgekv_cli {

namespace {

const OptionSpec* find_option(const CommandSpec& spec, const std::string& name) {
    for (const OptionSpec& o : spec.options)
        if (name == o.name) return &o;
    return nullptr;
}

}  // namespace

std::string ParsedArgs::get(const std::string& name, const std::string& def) const {
    auto it = values_.find(name);
    return it == values_.end() || it->second.empty() ? def : it->second.back();
}

std::vector<std::string> ParsedArgs::all(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>() : it->second;
}

bool ParsedArgs::get_int(const std::string& name, long long def, long long min, long long max,
                         long long* out, std::string* error) const {
    if (!has(name)) {
        *out = def;
        return true;
    }
    const std::string text = get(name);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || v < min || v > max) {
        *error = name + ": expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                 "], got '" + text + "'";
        return false;
    }
    *out = v;
    return true;
}

bool ParsedArgs::get_u64(const std::string& name, unsigned long long def, unsigned long long* out,
                         std::string* error) const {
    if (!has(name)) {
        *out = def;
        return true;
    }
    const std::string text = get(name);
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE) {
        *error = name + ": expected a non-negative integer, got '" + text + "'";
        return false;
    }
    *out = v;
    return true;
}

bool ParsedArgs::get_double(const std::string& name, double def, double min, double max, double* out,
                            std::string* error) const {
    if (!has(name)) {
        *out = def;
        return true;
    }
    const std::string text = get(name);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v) || v < min || v > max) {
        char range[96];
        std::snprintf(range, sizeof range, "[%g, %g]", min, max);
        *error = name + ": expected a number in " + range + ", got '" + text + "'";
        return false;
    }
    *out = v;
    return true;
}

bool parse_args(int argc, char** argv, int first, const CommandSpec& spec, ParsedArgs* out,
                std::string* error) {
    for (int i = first; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            out->add("--help", "");
            continue;
        }
        if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
            *error = "unexpected argument '" + arg + "'";
            return false;
        }
        std::string value;
        bool inline_value = false;
        const size_t eq = arg.find('=');
        if (eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg.resize(eq);
            inline_value = true;
        }
        const OptionSpec* opt = find_option(spec, arg);
        if (opt == nullptr) {
            *error = "unknown option '" + arg + "' for '" + spec.name + "'";
            return false;
        }
        if (opt->value_name == nullptr) {
            if (inline_value) {
                *error = arg + " takes no value";
                return false;
            }
        } else if (!inline_value) {
            if (i + 1 >= argc) {
                *error = arg + " needs a value (" + opt->value_name + ")";
                return false;
            }
            value = argv[++i];
        }
        if (!opt->repeatable && out->has(arg)) {
            *error = arg + " given more than once";
            return false;
        }
        out->add(arg, value);
    }
    return true;
}

void print_command_usage(std::FILE* f, const CommandSpec& spec) {
    std::fprintf(f, "usage: edgekv %s [options]\n  %s\n\noptions:\n", spec.name, spec.summary);
    for (const OptionSpec& o : spec.options) {
        std::string left = o.name;
        if (o.value_name) left += std::string(" ") + o.value_name;
        std::fprintf(f, "  %-26s %s%s\n", left.c_str(), o.help, o.repeatable ? " (repeatable)" : "");
    }
    std::fprintf(f, "  %-26s %s\n", "-h, --help", "show this help");
}

}  // namespace edgekv_cli
