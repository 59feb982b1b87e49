// CUDA backend: attention. The view's segments become a per-step AttnStep in
// the parameter arena (so a decode step over a static-shape cache launches
// the same kernels with the same arguments); pinned sinks get a per-query
// table of the re-rotation's cos/sin.
#include <cmath>

#include "backend/attention_checks.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "core/kivi.h"
#include "kernels.h"

namespace ekv {

namespace {
constexpr int kMaxHeadDim = 256;  // kernels.h AttnShape::head_dim
}

void CudaBackend::attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
                            Tensor& out) {
    if (!ok() || q.rows <= 0) return;
    if (!q_pos) return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA attention: no query positions"));
    Status st = check_attention_args(q, kv, p, kMaxHeadDim, /*host_data=*/false);
    if (!st.ok()) return fail(Status(st.code(), "CUDA " + st.message()));
    const int64_t q_width = static_cast<int64_t>(p.n_heads) * p.head_dim;
    if (out.cols < q_width || out.rows < q.rows)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA attention: out must be F32 rows of n_heads * head_dim"));
    const float* qp = f32_rows(q, q.rows, "attention", "q");
    float* op = f32_rows(out, q.rows, "attention", "out");
    if (!qp || !op) return;

    cuda::AttnShape shape;
    shape.n_heads = p.n_heads;
    shape.n_kv_heads = p.n_kv_heads;
    shape.head_dim = p.head_dim;
    shape.kv_width = static_cast<int64_t>(p.n_kv_heads) * p.head_dim;
    shape.scale = p.scale;
    shape.softcap = p.softcap;

    // One arena block for the step, the pinned table and the positions (a
    // second params() call could move the arena under the first).
    bool any_pinned = false;
    for (int s = 0; s < kv.n_segments; ++s) any_pinned = any_pinned || (kv.seg[s].pinned && kv.seg[s].n_tokens > 0);
    const int half = any_pinned && p.rope && p.rope->rope_dim > 0 ? p.rope->rope_dim / 2 : 0;
    const size_t step_bytes = (sizeof(cuda::AttnStep) + 15) / 16 * 16;
    const size_t table_bytes = (static_cast<size_t>(q.rows) * half * 2 * sizeof(float) + 15) / 16 * 16;
    const size_t pos_bytes = static_cast<size_t>(q.rows) * sizeof(int32_t);
    const void* d_block = nullptr;
    uint8_t* block = params(step_bytes + table_bytes + pos_bytes, &d_block);
    if (!block) return;
    const uint8_t* d_base = static_cast<const uint8_t*>(d_block);
    cuda::AttnStep* step = reinterpret_cast<cuda::AttnStep*>(block);
    *step = cuda::AttnStep{};
    step->n_segments = kv.n_segments;
    step->window = kv.window;
    step->pinned_query_pos = kv.pinned_query_pos;
    int64_t kv_tokens = 0;
    bool plain_f16 = true;
    for (int s = 0; s < kv.n_segments; ++s) {
        const KvSegment& seg = kv.seg[s];
        cuda::AttnSegment& d = step->seg[s];
        d.n_tokens = seg.n_tokens;
        if (seg.n_tokens == 0) continue;
        const bool kivi = seg.format == KvFormat::Kivi;
        const int64_t last = static_cast<int64_t>(seg.skip) + seg.n_tokens;
        const int64_t k_rows = kivi ? (last + seg.kivi.group - 1) / seg.kivi.group : last;
        d.k = byte_rows(seg.k, k_rows, "attention", "keys");
        d.v = byte_rows(seg.v, last, "attention", "values");
        if (!d.k || !d.v) return;
        d.kivi = kivi ? 1 : 0;
        d.plain_type = seg.k.type;
        plain_f16 = plain_f16 && !kivi && seg.k.type == DType::F16;
        if (!kivi && seg.k.type != seg.v.type)
            return fail(Error(EKV_ERR_UNSUPPORTED, "CUDA attention: segment %d mixes %s keys and %s values", s,
                              dtype_name(seg.k.type), dtype_name(seg.v.type)));
        d.k_row_bytes = seg.k.row_bytes;
        d.v_row_bytes = seg.v.row_bytes;
        d.first_pos = seg.first_pos;
        d.skip = seg.skip;
        d.pinned = seg.pinned ? 1 : 0;
        d.window = seg.window;
        d.kivi_nbits = seg.kivi.nbits;
        d.kivi_group = seg.kivi.group;
        // The split count follows the segments' capacity, not this step's
        // token count, so a static-shape cache's decode steps launch the same
        // grid (what graph replay needs); empty slices merge as nothing.
        kv_tokens += kivi ? seg.k.rows * seg.kivi.group : seg.k.rows;
    }

    shape.plain_f16 = plain_f16 ? 1 : 0;

    // The pinned re-rotation by min(q_pos, pinned_query_pos) - q_pos.
    const float* pinned_table = nullptr;
    if (half > 0) {
        shape.rope_dim = p.rope->rope_dim;
        shape.neox = p.rope->neox ? 1 : 0;
        float* t = reinterpret_cast<float*>(block + step_bytes);
        for (int64_t r = 0; r < q.rows; ++r) {
            const int32_t pinned_pos = q_pos[r] < kv.pinned_query_pos ? q_pos[r] : kv.pinned_query_pos;
            // Double precision like the CPU: the distance reaches 1e5+ in long streams.
            const double delta = static_cast<double>(pinned_pos) - static_cast<double>(q_pos[r]);
            for (int i = 0; i < half; ++i) {
                const double angle = delta * static_cast<double>(p.rope->inv_freq[i]);
                t[2 * (r * half + i)] = static_cast<float>(std::cos(angle));
                t[2 * (r * half + i) + 1] = static_cast<float>(std::sin(angle));
            }
        }
        pinned_table = reinterpret_cast<const float*>(d_base + step_bytes);
    }

    int32_t* pos = reinterpret_cast<int32_t*>(block + step_bytes + table_bytes);
    for (int64_t r = 0; r < q.rows; ++r) pos[r] = q_pos[r];

    if (!current()) return;
    void* s = scratch(1, cuda::attention_scratch_bytes(shape, q.rows, kv_tokens));
    if (!s) return;
    const cuda::ConstRows qr{qp, q.rows, q.cols, static_cast<int64_t>(q.row_bytes / sizeof(float))};
    const cuda::Rows orr{op, q.rows, out.cols, static_cast<int64_t>(out.row_bytes / sizeof(float))};
    launch("attention", cuda::attention, qr, reinterpret_cast<const int32_t*>(d_base + step_bytes + table_bytes),
           reinterpret_cast<const cuda::AttnStep*>(d_base), shape, pinned_table, kv_tokens, s, orr);
}

}  // namespace ekv
