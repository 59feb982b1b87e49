// The Mamba 1 mixer (selective state space block) shared by the Mamba and
// Jamba architectures: in-projection to x and gate z, causal depthwise
// convolution, input-dependent dt/B/C, selective scan, gating, out-projection.
// GGUF names and layouts are llama.cpp's (tools/gen_tiny_mamba.py lists them).
#pragma once
#include <string>

#include "backend/backend.h"
#include "cache/cache.h"
#include "model/arch_common.h"
#include "model/model_file.h"

namespace ekv {

struct MambaDims {
    int32_t n_embd = 0;
    int32_t d_inner = 0;
    int32_t d_state = 0;
    int32_t d_conv = 0;
    int32_t dt_rank = 0;
    RecurrentShape state_shape() const { return {d_conv - 1, d_inner, d_inner, d_state}; }
};

struct MambaMixerWeights {
    Tensor in, conv_w, conv_b, x_proj, dt_w, dt_b, a, d, out;
    // Jamba: RMSNorms of dt, B and C after x_proj (no tensor: not applied).
    Tensor dt_norm, b_norm, c_norm;
    bool bcdt_norms = false;
};

// Activations of one chunk of up to `rows` tokens.
struct MambaScratch {
    Tensor xz;      // [rows x 2*d_inner] in-projection: x then the gate z
    Tensor xc;      // [rows x d_inner] convolution output
    Tensor dbc;     // [rows x dt_rank + 2*d_state] x_proj output: dt, B, C
    Tensor dt_low;  // [rows x dt_rank] dt, contiguous for its projection
    Tensor dt;      // [rows x d_inner]
    Tensor y;       // [rows x d_inner] scan output, gated in place
    void add_to(ActivationArena& arena, int64_t rows, const MambaDims& dims);
};

// "<arch>.ssm.*" and embedding_length, validated.
Status read_mamba_dims(const ModelFile& file, const std::string& arch, MambaDims* dims);

// Refuses a backend without the Mamba kernels, naming the op.
Status check_mamba_ops(const Backend& backend, const std::string& arch);

// Loads blk.N.ssm_* with the shapes of `dims` (prefix = "blk.N."); the
// vectors the kernels read directly must be F32. bcdt_norms: Jamba's
// ssm_dt_norm / ssm_b_norm / ssm_c_norm are loaded too.
Status load_mamba_mixer(WeightLoader& loader, const std::string& prefix, const MambaDims& dims, bool bcdt_norms,
                        MambaMixerWeights* w);

// out[t] = mixer(h[t]) for the n tokens of the chunk, reading the layer's
// state from st.*_in and writing the state after the chunk to st.*_out.
// norm_eps: the epsilon of Jamba's dt/B/C norms (unused otherwise).
void mamba_mixer_forward(Backend& be, const MambaMixerWeights& w, const MambaDims& dims, const RecurrentState& st,
                         const Tensor& h, int32_t n, float norm_eps, MambaScratch& s, Tensor& out);

}  // namespace ekv
