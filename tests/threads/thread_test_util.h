// Helpers of the thread, cancel and lifetime tests: greedy generation through
// the C ABI and a clock.
#pragma once
#include <chrono>
#include <string>
#include <vector>

#include "model/test_util.h"

namespace ekv_test {

inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Greedy ids after `prompt` on `cache` (fresh state expected by the caller).
inline std::vector<int32_t> greedy(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& prompt, int32_t n_new,
                                   ekv_status* status = nullptr) {
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = n_new;
    gp.stop_at_eos = 0;
    std::vector<int32_t> out(static_cast<size_t>(n_new));
    ekv_generate_result r = ekv_generate_default_result();
    const ekv_status st = ekv_generate(m, c, prompt.data(), static_cast<int32_t>(prompt.size()), &gp, out.data(),
                                       n_new, &r);
    if (status) *status = st;
    out.resize(static_cast<size_t>(st == EKV_OK ? r.n_generated : 0));
    return out;
}

inline std::vector<int32_t> tokenize(ekv_model* m, const std::string& text) {
    std::vector<int32_t> ids(text.size() + 8);
    int32_t n = 0;
    EXPECT_EQ(ekv_tokenize(m, text.data(), text.size(), 1, 0, ids.data(), static_cast<int32_t>(ids.size()), &n), EKV_OK)
        << ekv_last_error();
    ids.resize(static_cast<size_t>(n));
    return ids;
}

inline std::string tiny_llama_path() { return fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf"; }

// A prompt of n ids in [lo, hi) (deterministic).
inline std::vector<int32_t> synthetic_prompt(int32_t n, int32_t lo, int32_t hi, uint32_t seed) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    uint32_t x = seed * 2654435761u + 1;
    for (int32_t& t : p) {
        x = x * 1664525u + 1013904223u;
        t = lo + static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(hi - lo));
    }
    return p;
}

}  // namespace ekv_test
