// Helpers shared by the model-level tests: fixture and model locations,
// reference-logit fixtures, RAII wrappers over the C handles.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/json.h"
#include "edgekv.h"

namespace ekv_test {

inline std::string fixtures_dir() {
    const char* d = std::getenv("EKV_FIXTURES_DIR");
    return d ? d : "tests/fixtures";
}

// The real SmolLM2 model; the test script always provides it, so a missing
// path is a failure there, not a skip.
inline std::string smollm2_path() {
    const char* p = std::getenv("EKV_SMOLLM2_GGUF");
    return p ? p : "";
}

// The real Gemma 3 270M model (tools/setup_deps.sh assembles it).
inline std::string gemma3_path() {
    const char* p = std::getenv("EKV_GEMMA3_GGUF");
    return p ? p : "";
}

// The real Whisper tiny.en (tools/setup_deps.sh converts it from PyPI).
inline std::string whisper_path() {
    const char* p = std::getenv("EKV_WHISPER_GGUF");
    return p ? p : "";
}

struct ModelDeleter {
    void operator()(ekv_model* m) const { ekv_model_free(m); }
};
struct CacheDeleter {
    void operator()(ekv_cache* c) const { ekv_cache_free(c); }
};
using ModelPtr = std::unique_ptr<ekv_model, ModelDeleter>;
using CachePtr = std::unique_ptr<ekv_cache, CacheDeleter>;

inline ModelPtr load_model(const std::string& path, int threads = 2) {
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    p.n_threads = threads;
    ekv_model* m = nullptr;
    const ekv_status st = ekv_model_load(path.c_str(), &p, &m);
    EXPECT_EQ(st, EKV_OK) << path << ": " << ekv_last_error();
    return ModelPtr(m);
}

inline CachePtr make_cache(ekv_model* m, ekv_cache_type type, int32_t max_len = 0) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = type;
    p.max_cache_len = max_len;
    ekv_cache* c = nullptr;
    const ekv_status st = ekv_cache_create(m, &p, &c);
    EXPECT_EQ(st, EKV_OK) << ekv_last_error();
    return CachePtr(c);
}

inline int32_t n_vocab(const ekv_model* m) {
    ekv_model_info info = ekv_model_info_default();
    ekv_model_get_info(m, &info);
    return info.n_vocab;
}

// A reference produced by tools/gen_*.py: the token sequence, the positions
// whose logits are stored, the logits, and HF's greedy continuation.
struct Reference {
    std::vector<int32_t> input_ids;
    std::vector<int32_t> positions;
    std::vector<int32_t> greedy;
    int32_t n_vocab = 0;
    std::vector<float> logits;  // [positions][n_vocab]
    const float* row(size_t i) const { return logits.data() + i * static_cast<size_t>(n_vocab); }
};

inline std::vector<int32_t> int_array(const ekv::json::Value* v) {
    std::vector<int32_t> out;
    if (v && v->is_array())
        for (const auto& e : v->arr) out.push_back(static_cast<int32_t>(e.num));
    return out;
}

inline bool load_reference(const std::string& dir, const std::string& name, Reference* ref) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    ekv::json::Value doc;
    if (!ekv::json::parse(ss.str(), &doc).ok()) return false;
    ref->input_ids = int_array(doc.get("input_ids"));
    ref->positions = int_array(doc.get("positions"));
    ref->greedy = int_array(doc.get("greedy_tokens"));
    ref->n_vocab = static_cast<int32_t>(doc.get("n_vocab")->num);
    std::ifstream lf(dir + "/" + doc.get("logits_file")->str, std::ios::binary);
    if (!lf) return false;
    ref->logits.resize(ref->positions.size() * static_cast<size_t>(ref->n_vocab));
    lf.read(reinterpret_cast<char*>(ref->logits.data()), static_cast<std::streamsize>(ref->logits.size() * 4));
    return static_cast<size_t>(lf.gcount()) == ref->logits.size() * 4;
}

// Largest |a-b| relative to the spread (RMS) of the reference row.
inline double normalized_max_error(const float* got, const float* want, int32_t n) {
    double rms = 0, max_err = 0;
    for (int32_t i = 0; i < n; ++i) {
        rms += static_cast<double>(want[i]) * want[i];
        max_err = std::fmax(max_err, std::fabs(static_cast<double>(got[i]) - want[i]));
    }
    rms = std::sqrt(rms / n);
    return max_err / (rms + 1e-12);
}

inline int32_t argmax(const float* v, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

}  // namespace ekv_test
