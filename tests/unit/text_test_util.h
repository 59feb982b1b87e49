// Helpers shared by the text-layer tests: fixture files, JSON access, and
// the SmolLM2 GGUF's tokenizer metadata (loaded once per process).
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/json.h"
#include "model/model_file.h"

namespace ekv_text_test {

inline std::string fixtures_dir() {
    const char* d = std::getenv("EKV_FIXTURES_DIR");
    return d ? d : "tests/fixtures";
}

inline std::string tokenizer_fixtures_dir() { return fixtures_dir() + "/tokenizer"; }

inline bool read_text_file(const std::string& path, std::string* out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    std::stringstream ss;
    ss << f.rdbuf();
    *out = ss.str();
    return true;
}

// Parses a fixture JSON file; failures are reported as test failures.
inline bool load_json(const std::string& path, ekv::json::Value* out) {
    std::string text;
    if (!read_text_file(path, &text)) {
        ADD_FAILURE() << "cannot read " << path << " (set EKV_FIXTURES_DIR)";
        return false;
    }
    ekv::Status st = ekv::json::parse(text, out);
    if (!st.ok()) {
        ADD_FAILURE() << path << ": " << st.message();
        return false;
    }
    return true;
}

inline std::vector<int32_t> ids_of(const ekv::json::Value* v) {
    std::vector<int32_t> out;
    if (v && v->is_array()) {
        for (const auto& e : v->arr) out.push_back(static_cast<int32_t>(e.num));
    }
    return out;
}

inline const std::string& str_of(const ekv::json::Value& obj, const char* key) {
    static const std::string empty;
    const ekv::json::Value* v = obj.get(key);
    return (v && v->is_string()) ? v->str : empty;
}

// The SmolLM2 GGUF from $EKV_SMOLLM2_GGUF; nullptr (and *why set) when the
// variable is unset or the file cannot be read.
inline const ekv::ModelFile* smollm2_file(std::string* why) {
    static ekv::ModelFile file;
    static std::string error;
    static bool loaded = false;
    if (!loaded) {
        loaded = true;
        const char* path = std::getenv("EKV_SMOLLM2_GGUF");
        if (!path || !*path) {
            error = "EKV_SMOLLM2_GGUF is not set";
        } else {
            ekv::Status st = ekv::load_gguf_file(path, &file);
            if (!st.ok()) error = std::string(path) + ": " + st.message();
        }
    }
    *why = error;
    return error.empty() ? &file : nullptr;
}

}  // namespace ekv_text_test
