// Causal attention over the cache's segments (backend.h's KvSegment/KvView
// semantics, CPU: backend/cpu/cpu_attention*.cpp), read in place: plain
// F16/F32 rows and KIVI 2/4/8-bit codes.
//
// One kernel serves decode and prefill (prefill over plain F16 segments goes
// to attention_tc.cu's tensor-core kernel instead). A block owns one KV head and a set of
// query rows (tq tokens x pack query heads of that KV head; decode: 1 token x
// every query head), so each KV element a block needs is read and decoded
// once, into shared memory, and used by all of its rows. Keys go in tiles of
// tk through an online softmax (running max, sum, accumulators).
//
// Grid: (KV heads x head packs, splits, token tiles). With splits > 1
// (decode over long caches) each block takes one slice of the keys its rows
// can see and writes its softmax state to scratch; combine_kernel merges the
// slices in order. Everything per step (positions, segment descriptors, the
// pinned re-rotation table) is read on the device, so a replayed graph sees
// the new values.
//
// Rules mirrored from the CPU: queries are scaled, then (pinned segments
// only) re-rotated by the host-built cos/sin of min(q_pos, pinned_query_pos)
// - q_pos; softcap gives cap * tanh(s / cap); a query with no visible key
// outputs zeros.
#include <atomic>
#include <cstdlib>

#include "attn_common.cuh"
#include "common.cuh"

namespace ekv::cuda {
namespace {

using attn::kAccPerThread;
using attn::kMaxRows;
using attn::kThreads;
constexpr float kNegInf = -__builtin_huge_valf();

struct Args {
    const float* q;
    int64_t q_stride;
    const int32_t* q_pos;
    int64_t n_tokens;
    const AttnStep* step;
    AttnShape shape;
    const float* pinned_cos_sin;
    attn::Plan plan;
    float* partial;  // splits > 1
    float* out;
    int64_t out_stride;
};

__global__ void __launch_bounds__(kThreads, 1) attention_kernel(Args a) {
    // Raw storage: AttnStep's default member initialisers must not run here.
    __shared__ alignas(alignof(AttnStep)) unsigned char st_raw[sizeof(AttnStep)];
    AttnStep& st = *reinterpret_cast<AttnStep*>(st_raw);
    __shared__ int32_t row_lo[kMaxRows][kMaxAttnSegments], row_hi[kMaxRows][kMaxAttnSegments];
    __shared__ int32_t u_lo[kMaxAttnSegments], u_hi[kMaxAttnSegments];
    __shared__ int32_t row_pos[kMaxRows];
    __shared__ float row_max[kMaxRows], row_sum[kMaxRows], row_rescale[kMaxRows];
    __shared__ int64_t total_keys;
    extern __shared__ float dyn[];

    const attn::Plan& pl = a.plan;
    const int hd = a.shape.head_dim, tk = pl.tk, rows = pl.rows;
    const int64_t kv_width = a.shape.kv_width;
    const int kv_head = blockIdx.x / pl.n_packs, pack_idx = blockIdx.x % pl.n_packs;
    const int split = blockIdx.y;
    const int64_t tok0 = static_cast<int64_t>(blockIdx.z) * pl.tq;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    float* q_s = dyn;                                   // [rows][hd], scaled (and rotated for pinned)
    float* k_s = q_s + rows * hd;                       // [tk][hd + 1]
    float* v_s = k_s + tk * (hd + 1);                   // [tk][hd]
    float* p_s = v_s + tk * hd;                         // [rows][tk]: scores, then weights

    // Row r: token tok0 + r / pack, query head kv_head * gq + pack_idx * pack + r % pack.
    auto row_token = [&](int r) { return tok0 + r / pl.pack; };
    auto row_head = [&](int r) { return kv_head * pl.gq + pack_idx * pl.pack + r % pl.pack; };
    auto row_active = [&](int r) { return row_token(r) < a.n_tokens && pack_idx * pl.pack + r % pl.pack < pl.gq; };

    attn::copy_step(a.step, st_raw, tid, kThreads);
    __syncthreads();
    const int n_seg = attn::segment_count(st);
    if (tid < rows) {
        const bool active = row_active(tid);
        const int32_t pos = active ? a.q_pos[row_token(tid)] : 0;
        row_pos[tid] = pos;
        row_max[tid] = kNegInf;
        row_sum[tid] = 0.0f;
        attn::row_ranges(st, n_seg, active, pos, row_lo[tid], row_hi[tid]);
    }
    __syncthreads();
    if (tid == 0) {  // the union of the rows' ranges, per segment
        int64_t total = 0;
        for (int s = 0; s < n_seg; ++s) {
            attn::union_range(&row_lo[0][s], &row_hi[0][s], kMaxAttnSegments, rows, &u_lo[s], &u_hi[s]);
            total += u_hi[s] - u_lo[s];
        }
        total_keys = total;
    }
    __syncthreads();

    // This block's slice [slice_a, slice_b) of the concatenated union.
    int64_t slice_a, slice_b;
    attn::split_slice(total_keys, pl.splits, split, &slice_a, &slice_b);

    float acc[kAccPerThread];
#pragma unroll
    for (int k = 0; k < kAccPerThread; ++k) acc[k] = 0.0f;

    const float inv_cap = a.shape.softcap > 0.0f ? blocks::div_rn(1.0f, a.shape.softcap) : 0.0f;
    const int half = a.shape.rope_dim / 2;
    int loaded = -1;  // query variant in q_s: 0 plain, 1 pinned
    int64_t off = 0;
    for (int s = 0; s < n_seg; ++s) {
        const AttnSegment& seg = st.seg[s];
        int64_t begin, end;
        attn::slice_part(u_lo[s], u_hi[s], off, slice_a, slice_b, &begin, &end);
        off += u_hi[s] - u_lo[s];
        if (begin >= end) continue;
        const int variant = seg.pinned ? 1 : 0;
        if (variant != loaded) {
            __syncthreads();  // q_s may still be in use by the previous tile's scores
            for (int e = tid; e < rows * hd; e += kThreads) {
                const int r = e / hd, d = e % hd;
                float v = 0.0f;
                if (row_active(r)) {
                    const float* qrow = a.q + row_token(r) * a.q_stride + static_cast<int64_t>(row_head(r)) * hd;
                    const int32_t pos = row_pos[r];
                    const int32_t pinned_pos = pos < st.pinned_query_pos ? pos : st.pinned_query_pos;
                    // Rotated only where the CPU rotates: pinned keys and a moved position.
                    const float* cs = variant == 1 && pinned_pos != pos
                                          ? a.pinned_cos_sin + 2 * row_token(r) * half
                                          : nullptr;
                    v = attn::query_elem(qrow, d, a.shape.scale, half, a.shape.neox != 0, cs);
                }
                q_s[e] = v;
            }
            loaded = variant;
            __syncthreads();
        }
        for (int64_t i0 = begin; i0 < end; i0 += tk) {
            const int n = static_cast<int>(end - i0 < tk ? end - i0 : tk);
            // 1. Decode the tile's keys and values (zeros past n).
            for (int e = tid; e < tk * hd; e += kThreads) {
                const int t = e / hd, d = e % hd;
                float kv = 0.0f, vv = 0.0f;
                if (t < n) {
                    kv = attn::key_elem(seg, kv_width, hd, i0 + t, kv_head, d);
                    vv = attn::value_elem(seg, kv_width, hd, i0 + t, kv_head, d);
                }
                k_s[t * (hd + 1) + d] = kv;
                v_s[t * hd + d] = vv;
            }
            __syncthreads();
            // 2. Scores of every (row, key); keys a row does not see are -inf.
            for (int p = tid; p < rows * tk; p += kThreads) {
                const int r = p / tk, t = p % tk;
                const int64_t i = i0 + t;
                float sc = kNegInf;
                if (t < n && row_active(r) && i >= row_lo[r][s] && i < row_hi[r][s]) {
                    const float* qr = q_s + r * hd;
                    const float* kr = k_s + t * (hd + 1);
                    float dot = 0.0f;
                    for (int d = 0; d < hd; ++d) dot += qr[d] * kr[d];
                    if (a.shape.softcap > 0.0f) dot = a.shape.softcap * tanhf(dot * inv_cap);
                    sc = dot;
                }
                p_s[p] = sc;
            }
            __syncthreads();
            // 3. Online softmax, a warp per row (tk <= 32: a lane per key).
            for (int r = warp; r < rows; r += kThreads / 32) {
                const float sc = lane < tk ? p_s[r * tk + lane] : kNegInf;
                const float tile_max = warp_max(sc);
                if (tile_max == kNegInf) {  // the row sees none of these keys
                    if (lane < tk) p_s[r * tk + lane] = 0.0f;
                    if (lane == 0) row_rescale[r] = 1.0f;
                    continue;
                }
                const float m_old = row_max[r];
                const float m_new = m_old > tile_max ? m_old : tile_max;
                const float w = sc == kNegInf ? 0.0f : expf(sc - m_new);
                const float sum = warp_sum(w);
                if (lane < tk) p_s[r * tk + lane] = w;
                if (lane == 0) {
                    const float rescale = expf(m_old - m_new);  // 0 for the first keys (m_old = -inf)
                    row_rescale[r] = rescale;
                    row_sum[r] = row_sum[r] * rescale + sum;
                    row_max[r] = m_new;
                }
            }
            __syncthreads();
            // 4. Accumulators: thread element e = tid + k * kThreads of [rows][hd].
#pragma unroll
            for (int k = 0; k < kAccPerThread; ++k) {
                const int e = tid + k * kThreads;
                if (e < rows * hd) {
                    const int r = e / hd, d = e % hd;
                    float v = acc[k] * row_rescale[r];
                    const float* pr = p_s + r * tk;
                    for (int t = 0; t < n; ++t) v += pr[t] * v_s[t * hd + d];
                    acc[k] = v;
                }
            }
            __syncthreads();  // before the next tile overwrites k_s, v_s, p_s
        }
    }

    // Results: normalised output (one split) or this slice's softmax state.
    const int n_heads = a.shape.n_heads;
#pragma unroll
    for (int k = 0; k < kAccPerThread; ++k) {
        const int e = tid + k * kThreads;
        if (e >= rows * hd) continue;
        const int r = e / hd, d = e % hd;
        if (!row_active(r)) continue;
        const int64_t t = row_token(r);
        const int h = row_head(r);
        if (pl.splits == 1) {
            const float inv = row_sum[r] > 0.0f ? blocks::div_rn(1.0f, row_sum[r]) : 0.0f;
            a.out[t * a.out_stride + static_cast<int64_t>(h) * hd + d] = blocks::mul_rn(acc[k], inv);
        } else {
            float* state = a.partial + ((t * n_heads + h) * pl.splits + split) * static_cast<int64_t>(hd + 2);
            if (d == 0) {
                state[0] = row_max[r];
                state[1] = row_sum[r];
            }
            state[2 + d] = acc[k];
        }
    }
}

// Merges the splits' states of one (token, query head): block (head, token).
__global__ void combine_kernel(const float* partial, int32_t splits, int32_t n_heads, int32_t hd, float* out,
                               int64_t out_stride) {
    const int h = blockIdx.x;
    const int64_t t = blockIdx.y;
    const float* base = partial + (t * n_heads + h) * splits * static_cast<int64_t>(hd + 2);
    float m = kNegInf;
    for (int s = 0; s < splits; ++s) {
        const float* st = base + s * static_cast<int64_t>(hd + 2);
        if (st[1] > 0.0f && st[0] > m) m = st[0];
    }
    float total = 0.0f;
    for (int s = 0; s < splits; ++s) {
        const float* st = base + s * static_cast<int64_t>(hd + 2);
        if (st[1] > 0.0f) total += st[1] * expf(st[0] - m);
    }
    const float inv = total > 0.0f ? blocks::div_rn(1.0f, total) : 0.0f;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int s = 0; s < splits; ++s) {
            const float* st = base + s * static_cast<int64_t>(hd + 2);
            if (st[1] > 0.0f) v += st[2 + d] * expf(st[0] - m);
        }
        out[t * out_stride + static_cast<int64_t>(h) * hd + d] = v * inv;
    }
}

bool shape_ok(const AttnShape& sh) {
    return sh.n_heads > 0 && sh.n_kv_heads > 0 && sh.n_heads % sh.n_kv_heads == 0 && sh.head_dim > 0 &&
           sh.head_dim <= attn::kMaxHeadDim && sh.kv_width == static_cast<int64_t>(sh.n_kv_heads) * sh.head_dim &&
           sh.rope_dim >= 0 && sh.rope_dim <= sh.head_dim;
}

}  // namespace

// The most any call with 1 .. n_tokens queries needs: fewer queries get more
// splits, so the need is not monotone in the token count.
size_t attention_scratch_bytes(const AttnShape& shape, int64_t n_tokens, int64_t max_kv_tokens) {
    if (!shape_ok(shape) || n_tokens <= 0) return 0;
    size_t most = 0;
    for (int64_t t = 1; t <= n_tokens; ++t) {
        const size_t need = attn::partial_floats(shape, t, attn::make_plan(shape, t, max_kv_tokens));
        most = need > most ? need : most;
    }
    return most * sizeof(float);
}

namespace {
std::atomic<int> g_tensor_cores{-1};  // -1: not yet read from the environment
std::atomic<uint64_t> g_tensor_core_launches{0};
}  // namespace

uint64_t attention_tensor_core_launches() { return g_tensor_core_launches.load(); }

void set_attention_tensor_cores(bool on) { g_tensor_cores.store(on ? 1 : 0); }

bool attention_tensor_cores() {
    int v = g_tensor_cores.load();
    if (v < 0) {
        const char* e = std::getenv("EKV_CUDA_TENSOR_CORES");
        int from_env = e && e[0] == '0' && e[1] == 0 ? 0 : 1;
        g_tensor_cores.compare_exchange_strong(v, from_env);
        v = g_tensor_cores.load();
    }
    return v != 0;
}

void attention(Stream s, ConstRows q, const int32_t* q_pos, const AttnStep* step, const AttnShape& shape,
               const float* pinned_cos_sin, int64_t max_kv_tokens, void* scratch, Rows out) {
    if (q.rows <= 0 || !shape_ok(shape)) return;
    if (shape.plain_f16 && attention_tensor_cores()) {
        const attn::TcPlan tp = attn::make_tc_plan(shape, q.rows);
        if (tp.ok) {
            g_tensor_core_launches.fetch_add(1);
            return attention_prefill_tc(s, q, q_pos, step, shape, pinned_cos_sin, tp, out);
        }
    }
    const attn::Plan p = attn::make_plan(shape, q.rows, max_kv_tokens);
    Args a{q.data, q.stride, q_pos, q.rows, step, shape, pinned_cos_sin, p, static_cast<float*>(scratch),
           out.data, out.stride};
    if (p.splits > 1 && !scratch) return;  // the backend sizes scratch with attention_scratch_bytes
    const dim3 grid(static_cast<unsigned>(shape.n_kv_heads * p.n_packs), static_cast<unsigned>(p.splits),
                    static_cast<unsigned>(p.token_tiles));
    attention_kernel<<<grid, kThreads, p.smem_bytes, s>>>(a);
    if (p.splits > 1) {
        const dim3 cgrid(static_cast<unsigned>(shape.n_heads), static_cast<unsigned>(q.rows));
        combine_kernel<<<cgrid, 128, 0, s>>>(static_cast<const float*>(scratch), p.splits, shape.n_heads,
                                             shape.head_dim, out.data, out.stride);
    }
}

}  // namespace ekv::cuda
