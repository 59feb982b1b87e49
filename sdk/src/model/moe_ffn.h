// A sparse mixture-of-experts SiLU-gated FFN with HF's top-k router (Jamba,
// Mixtral-style): softmax over the router logits, the k most probable
// experts run, each output weighted by its probability (no renormalization).
// GGUF tensors as llama.cpp merges them: blk.N.ffn_gate_inp.weight [n_embd,
// n_expert] and blk.N.ffn_{gate,up}_exps.weight [n_embd, n_ff, n_expert],
// blk.N.ffn_down_exps.weight [n_ff, n_embd, n_expert].
//
// Routing is decided on the host: the router logits of a chunk are read back
// once per MoE layer (a synchronization point on GPU backends), then each
// expert runs on the rows routed to it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/arch_common.h"
#include "model/model_file.h"

namespace ekv {

struct MoeDims {
    int32_t n_embd = 0;
    int32_t n_ff = 0;
    int32_t n_expert = 0;
    int32_t n_used = 0;  // experts per token (top-k)
};

struct MoeWeights {
    Tensor router;           // [n_expert x n_embd]
    Tensor gate, up, down;   // all experts, expert e at rows e * n_ff (gate, up) or e * n_embd (down)
};

// Per-chunk scratch, sized once for `rows` tokens: activations on the
// backend, routing tables on the host (no allocation per token).
struct MoeScratch {
    Tensor logits;  // [rows x n_expert]
    Tensor xe;      // [rows x n_embd] the rows routed to one expert
    Tensor gate, up;  // [rows x n_ff]
    Tensor down;    // [rows x n_embd]
    Tensor scaled;  // [1 x n_embd] one weighted expert output
    std::vector<float> host_logits;            // rows * n_expert
    std::vector<int32_t> routed;               // n_expert * rows: token rows per expert
    std::vector<float> routed_weight;          // n_expert * rows
    std::vector<int32_t> n_routed;             // n_expert
    void add_to(ActivationArena& arena, int64_t rows, const MoeDims& dims);
    void size_host(int64_t rows, const MoeDims& dims);
};

// Loads and validates the router and the merged expert tensors of one layer
// (prefix = "blk.N."). Weight bytes and parameters are added to *bytes and
// *params (the experts are 3-D, outside WeightLoader).
Status load_moe(const ModelFile& file, Backend& backend, const std::string& prefix, const MoeDims& dims,
                WeightLoader& loader, std::vector<std::unique_ptr<Buffer>>* owners, uint64_t* bytes,
                uint64_t* params, MoeWeights* out);

// x[t] += sum over the top-k experts e of p_e(h[t]) * expert_e(h[t]) for the
// n rows of h.
void moe_forward(Backend& be, const MoeWeights& w, const MoeDims& dims, const Tensor& h, int32_t n, MoeScratch& s,
                 Tensor& x);

}  // namespace ekv
