#include "model/moe_ffn.h"

#include <cmath>

namespace ekv {
namespace {

// A merged expert tensor: GGUF ne = [cols, rows, n_expert].
Status load_experts(const ModelFile& file, Backend& backend, const std::string& name, int64_t cols, int64_t rows,
                    int64_t n_expert, std::vector<std::unique_ptr<Buffer>>* owners, uint64_t* bytes,
                    uint64_t* params, Tensor* out) {
    const TensorRef* t = file.find_tensor(name);
    if (!t) return Error(EKV_ERR_INVALID_FILE, "missing tensor %s", name.c_str());
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != n_expert || t->ne[3] != 1)
        return Error(EKV_ERR_INVALID_FILE, "tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                     name.c_str(), static_cast<long long>(t->ne[0]), static_cast<long long>(t->ne[1]),
                     static_cast<long long>(t->ne[2]), static_cast<long long>(cols), static_cast<long long>(rows),
                     static_cast<long long>(n_expert));
    std::unique_ptr<Buffer> owner;
    EKV_TRY(backend.load_weight(*t, out, &owner));
    if (owner) owners->push_back(std::move(owner));
    *bytes += t->nbytes;
    *params += static_cast<uint64_t>(t->n_elements());
    return Status::Ok();
}

// Fills the per-expert routing tables of n tokens from their router logits.
void route(const MoeDims& d, int32_t n, MoeScratch& s) {
    const int32_t n_exp = d.n_expert;
    const size_t rows = s.routed.size() / static_cast<size_t>(n_exp);
    for (int32_t e = 0; e < n_exp; ++e) s.n_routed[static_cast<size_t>(e)] = 0;
    for (int32_t t = 0; t < n; ++t) {
        float* p = s.host_logits.data() + static_cast<size_t>(t) * n_exp;
        float hi = p[0];
        for (int32_t e = 1; e < n_exp; ++e) hi = std::fmax(hi, p[e]);
        float sum = 0.0f;
        for (int32_t e = 0; e < n_exp; ++e) sum += p[e] = std::exp(p[e] - hi);
        for (int32_t e = 0; e < n_exp; ++e) p[e] /= sum;
        // Top-k by repeated selection (k and the expert count are small);
        // a picked expert is marked with -1, below every probability.
        for (int32_t k = 0; k < d.n_used; ++k) {
            int32_t best = 0;
            for (int32_t e = 1; e < n_exp; ++e)
                if (p[e] > p[best]) best = e;
            const size_t slot = static_cast<size_t>(best) * rows + static_cast<size_t>(s.n_routed[best]++);
            s.routed[slot] = t;
            s.routed_weight[slot] = p[best];
            p[best] = -1.0f;
        }
    }
}

}  // namespace

void MoeScratch::add_to(ActivationArena& arena, int64_t rows, const MoeDims& d) {
    arena.add(&logits, rows, d.n_expert);
    arena.add(&xe, rows, d.n_embd);
    arena.add(&gate, rows, d.n_ff);
    arena.add(&up, rows, d.n_ff);
    arena.add(&down, rows, d.n_embd);
    arena.add(&scaled, 1, d.n_embd);
}

void MoeScratch::size_host(int64_t rows, const MoeDims& d) {
    host_logits.assign(static_cast<size_t>(rows * d.n_expert), 0.0f);
    routed.assign(static_cast<size_t>(rows * d.n_expert), 0);
    routed_weight.assign(static_cast<size_t>(rows * d.n_expert), 0.0f);
    n_routed.assign(static_cast<size_t>(d.n_expert), 0);
}

Status load_moe(const ModelFile& file, Backend& backend, const std::string& p, const MoeDims& d, WeightLoader& wl,
                std::vector<std::unique_ptr<Buffer>>* owners, uint64_t* bytes, uint64_t* params, MoeWeights* w) {
    EKV_TRY(wl.load(p + "ffn_gate_inp.weight", d.n_embd, d.n_expert, &w->router));
    EKV_TRY(load_experts(file, backend, p + "ffn_gate_exps.weight", d.n_embd, d.n_ff, d.n_expert, owners, bytes,
                         params, &w->gate));
    EKV_TRY(load_experts(file, backend, p + "ffn_up_exps.weight", d.n_embd, d.n_ff, d.n_expert, owners, bytes,
                         params, &w->up));
    EKV_TRY(load_experts(file, backend, p + "ffn_down_exps.weight", d.n_ff, d.n_embd, d.n_expert, owners, bytes,
                         params, &w->down));
    return Status::Ok();
}

void moe_forward(Backend& be, const MoeWeights& w, const MoeDims& d, const Tensor& h, int32_t n, MoeScratch& s,
                 Tensor& x) {
    Tensor logits = s.logits.row_range(0, n);
    be.matmul(w.router, h, logits);
    be.read(logits, s.host_logits.data(), static_cast<size_t>(n) * static_cast<size_t>(d.n_expert) * sizeof(float));
    be.synchronize();
    route(d, n, s);
    const size_t rows = s.routed.size() / static_cast<size_t>(d.n_expert);
    for (int32_t e = 0; e < d.n_expert; ++e) {
        const int32_t m = s.n_routed[static_cast<size_t>(e)];
        if (m == 0) continue;
        const int32_t* tokens = s.routed.data() + static_cast<size_t>(e) * rows;
        const float* weights = s.routed_weight.data() + static_cast<size_t>(e) * rows;
        Tensor xe = s.xe.row_range(0, m), gate = s.gate.row_range(0, m), up = s.up.row_range(0, m);
        Tensor down = s.down.row_range(0, m);
        be.get_rows(h, tokens, m, xe);
        be.matmul(w.gate.row_range(static_cast<int64_t>(e) * d.n_ff, d.n_ff), xe, gate);
        be.matmul(w.up.row_range(static_cast<int64_t>(e) * d.n_ff, d.n_ff), xe, up);
        be.silu_mul(gate, up, gate);
        be.matmul(w.down.row_range(static_cast<int64_t>(e) * d.n_embd, d.n_embd), gate, down);
        for (int32_t i = 0; i < m; ++i) {
            Tensor xr = x.row_range(tokens[i], 1);
            be.scale(down.row_range(i, 1), weights[i], s.scaled);
            be.add(xr, s.scaled, xr);
        }
    }
}

}  // namespace ekv
