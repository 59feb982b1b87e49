// The decode loop behind ekv_generate: prefix reuse against the cache,
// prefill, sampling, stop rules, streaming, and the use_cache=false path.
#pragma once
#include <string>
#include <vector>

#include "cache/cache.h"
#include "edgekv.h"
#include "generate/sampler.h"
#include "model/model.h"

namespace ekv {

struct GenerateOptions {
    SamplerParams sampler;
    int32_t max_new_tokens = 128;
    bool stop_at_eos = true;
    std::vector<int32_t> stop_tokens;
    std::vector<std::string> stop_strings;
    bool use_cache = true;
    ekv_token_callback on_token = nullptr;
    void* user_data = nullptr;
};

// cache/ws may be null only when use_cache is false. out_tokens receives at
// most out_capacity ids. `scratch_logits` must hold n_vocab floats.
Status generate(const Model& model, Cache* cache, Workspace* ws, const int32_t* prompt, int32_t n_prompt,
                const GenerateOptions& opts, int32_t* out_tokens, int32_t out_capacity, ekv_generate_result* result);

}  // namespace ekv
