// Prefill attention on tensor cores (warp matrix multiply, f16 inputs, f32
// accumulators) for views whose segments all hold plain F16 rows; everything
// else takes attention.cu's kernel. Same semantics as there: rings via
// skip, pinned sinks with the re-rotated query, windows, softcap, causal by
// position; a query with no visible key outputs zeros.
//
// Float accuracy from half inputs: F16 keys and values are exact halves;
// each query element q (scaled, maybe rotated) is split into hi = half(q)
// and lo = half(q - hi), and each softmax weight p likewise, so q . k =
// hi . k + lo . k and p . v = p_hi . v + p_lo . v carry ~22 bits (two
// multiplies per tile instead of one; the products are exact, the sums f32).
//
// A block: one KV head, `rows` query rows (tq tokens x pack query heads of
// that head, attn_common.cuh's TcPlan), 16 per warp; each tile of tk keys
// is loaded once into shared memory and used by every warp. Per tile a warp
// computes its 16 x tk scores, runs the online softmax over them (a lane per
// key), rescales its rows' output accumulators (kept in shared memory: the
// fragment element layout is unspecified, so no per-row scaling in
// registers) and adds weights x values.
#include <mma.h>

#include "attn_common.cuh"
#include "common.cuh"

namespace ekv::cuda {
namespace {

namespace wmma = nvcuda::wmma;
using attn::kTcMaxRows;
using attn::TcPlan;
constexpr float kNegInf = -__builtin_huge_valf();
constexpr int kTcThreads = 32 * attn::kTcMaxWarps;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major>;
using FragKeysT = wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major>;  // keys as columns
using FragValues = wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

struct TcArgs {
    const float* q;
    int64_t q_stride;
    const int32_t* q_pos;
    int64_t n_tokens;
    const AttnStep* step;
    AttnShape shape;
    const float* pinned_cos_sin;
    TcPlan plan;
    float* out;
    int64_t out_stride;
};

__device__ __forceinline__ const __half* halves(const uint16_t* p) { return reinterpret_cast<const __half*>(p); }

// Rows x head_dim of F16 key or value rows [i0, i0 + n) of one KV head into
// dst (ldh halves a row); rows n .. tk - 1 become zeros.
__device__ void load_tile(const uint8_t* base, size_t row_bytes, int64_t first, int n, int tk, int hd, int kv_head,
                          uint16_t* dst, int ldh, int tid, int nthreads) {
    for (int e = tid; e < tk * hd; e += nthreads) {
        const int t = e / hd, d = e % hd;
        uint16_t h = 0;
        if (t < n) h = reinterpret_cast<const uint16_t*>(base + static_cast<size_t>(first + t) * row_bytes)[kv_head * hd + d];
        dst[t * ldh + d] = h;
    }
}

__global__ void __launch_bounds__(kTcThreads) attention_tc_kernel(TcArgs a) {
    __shared__ alignas(alignof(AttnStep)) unsigned char st_raw[sizeof(AttnStep)];
    AttnStep& st = *reinterpret_cast<AttnStep*>(st_raw);
    __shared__ int32_t row_lo[kTcMaxRows][kMaxAttnSegments], row_hi[kTcMaxRows][kMaxAttnSegments];
    __shared__ int32_t u_lo[kMaxAttnSegments], u_hi[kMaxAttnSegments];
    __shared__ int32_t row_pos[kTcMaxRows];
    __shared__ float row_max[kTcMaxRows], row_sum[kTcMaxRows], row_rescale[kTcMaxRows];
    extern __shared__ __align__(128) uint8_t tc_smem[];

    const TcPlan& pl = a.plan;
    const int hd = a.shape.head_dim, tk = pl.tk, ldh = pl.ldh, ldo = pl.ldo;
    const int n_rows = 16 * pl.warps;  // rows >= pl.rows are padding
    const int kv_head = blockIdx.x / pl.n_packs, pack_idx = blockIdx.x % pl.n_packs;
    const int64_t tok0 = static_cast<int64_t>(blockIdx.y) * pl.tq;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nthreads = 32 * pl.warps;
    uint16_t* q_hi = reinterpret_cast<uint16_t*>(tc_smem + pl.q_hi);  // [n_rows][ldh]
    uint16_t* q_lo = reinterpret_cast<uint16_t*>(tc_smem + pl.q_lo);
    uint16_t* kv_s = reinterpret_cast<uint16_t*>(tc_smem + pl.kv);       // [tk][ldh]: keys, then values
    float* acc_s = reinterpret_cast<float*>(tc_smem + pl.acc);           // [n_rows][ldo]
    // This warp's scores [16][tk], overwritten by its weights' halves [16][tk] hi, then lo.
    float* s_w = reinterpret_cast<float*>(tc_smem + pl.scores) + warp * 16 * tk;
    uint16_t* p_hi = reinterpret_cast<uint16_t*>(s_w);
    uint16_t* p_lo = p_hi + 16 * tk;

    auto row_token = [&](int r) { return tok0 + r / pl.pack; };
    auto row_head = [&](int r) { return kv_head * pl.gq + pack_idx * pl.pack + r % pl.pack; };
    auto row_active = [&](int r) {
        return r < pl.rows && row_token(r) < a.n_tokens && pack_idx * pl.pack + r % pl.pack < pl.gq;
    };

    attn::copy_step(a.step, st_raw, tid, nthreads);
    for (int e = tid; e < n_rows * ldo; e += nthreads) acc_s[e] = 0.0f;
    __syncthreads();
    const int n_seg = attn::segment_count(st);
    if (tid < n_rows) {
        const bool active = row_active(tid);
        const int32_t pos = active ? a.q_pos[row_token(tid)] : 0;
        row_pos[tid] = pos;
        row_max[tid] = kNegInf;
        row_sum[tid] = 0.0f;
        attn::row_ranges(st, n_seg, active, pos, row_lo[tid], row_hi[tid]);
    }
    __syncthreads();
    if (tid == 0)
        for (int s = 0; s < n_seg; ++s)
            attn::union_range(&row_lo[0][s], &row_hi[0][s], kMaxAttnSegments, n_rows, &u_lo[s], &u_hi[s]);
    __syncthreads();

    const float inv_cap = a.shape.softcap > 0.0f ? blocks::div_rn(1.0f, a.shape.softcap) : 0.0f;
    const int half = a.shape.rope_dim / 2;
    const int r0 = warp * 16;  // this warp's first row
    int loaded = -1;           // query variant in q_hi/q_lo: 0 plain, 1 pinned
    for (int s = 0; s < n_seg; ++s) {
        const AttnSegment& seg = st.seg[s];
        const int64_t begin = u_lo[s], end = u_hi[s];
        if (begin >= end) continue;
        const int variant = seg.pinned ? 1 : 0;
        if (variant != loaded) {
            __syncthreads();  // the previous tile's scores may still read the queries
            for (int e = tid; e < n_rows * hd; e += nthreads) {
                const int r = e / hd, d = e % hd;
                float v = 0.0f;
                if (row_active(r)) {
                    const float* qrow = a.q + row_token(r) * a.q_stride + static_cast<int64_t>(row_head(r)) * hd;
                    const int32_t pos = row_pos[r];
                    const int32_t pinned_pos = pos < st.pinned_query_pos ? pos : st.pinned_query_pos;
                    const float* cs = variant == 1 && pinned_pos != pos ? a.pinned_cos_sin + 2 * row_token(r) * half
                                                                        : nullptr;
                    v = attn::query_elem(qrow, d, a.shape.scale, half, a.shape.neox != 0, cs);
                }
                const uint16_t h = blocks::f32_to_f16(v);
                q_hi[r * ldh + d] = h;
                q_lo[r * ldh + d] = blocks::f32_to_f16(blocks::sub_rn(v, blocks::f16_to_f32(h)));
            }
            loaded = variant;
            __syncthreads();
        }
        const int64_t first = static_cast<int64_t>(seg.skip);
        for (int64_t i0 = begin; i0 < end; i0 += tk) {
            const int n = static_cast<int>(end - i0 < tk ? end - i0 : tk);
            // 1. Keys into shared memory; the warp's 16 x tk scores.
            load_tile(seg.k, seg.k_row_bytes, first + i0, n, tk, hd, kv_head, kv_s, ldh, tid, nthreads);
            __syncthreads();
            for (int j = 0; j < tk / 16; ++j) {
                FragAcc sc;
                wmma::fill_fragment(sc, 0.0f);
                for (int c = 0; c < hd / 16; ++c) {
                    FragKeysT kt;
                    wmma::load_matrix_sync(kt, halves(kv_s + j * 16 * ldh + c * 16), ldh);
                    FragA qa;
                    wmma::load_matrix_sync(qa, halves(q_hi + r0 * ldh + c * 16), ldh);
                    wmma::mma_sync(sc, qa, kt, sc);
                    wmma::load_matrix_sync(qa, halves(q_lo + r0 * ldh + c * 16), ldh);
                    wmma::mma_sync(sc, qa, kt, sc);
                }
                wmma::store_matrix_sync(s_w + j * 16, sc, tk, wmma::mem_row_major);
            }
            __syncwarp();
            // 2. Online softmax of the warp's rows, a lane per key: masked
            // scores into registers first, since the weights overwrite them.
            float sv[16];
#pragma unroll
            for (int rr = 0; rr < 16; ++rr) {
                const int r = r0 + rr;
                const int64_t i = i0 + lane;
                float v = kNegInf;
                if (lane < n && row_active(r) && i >= row_lo[r][s] && i < row_hi[r][s]) {
                    v = s_w[rr * tk + lane];
                    if (a.shape.softcap > 0.0f) v = a.shape.softcap * tanhf(v * inv_cap);
                }
                sv[rr] = v;
            }
            __syncwarp();
#pragma unroll
            for (int rr = 0; rr < 16; ++rr) {
                const int r = r0 + rr;
                const float tile_max = warp_max(sv[rr]);
                float w = 0.0f;
                if (tile_max == kNegInf) {  // the row sees none of these keys
                    if (lane == 0) row_rescale[r] = 1.0f;
                } else {
                    const float m_old = row_max[r];
                    const float m_new = m_old > tile_max ? m_old : tile_max;
                    w = sv[rr] == kNegInf ? 0.0f : expf(sv[rr] - m_new);
                    const float sum = warp_sum(w);
                    if (lane == 0) {
                        const float rescale = expf(m_old - m_new);  // 0 for the first keys (m_old = -inf)
                        row_rescale[r] = rescale;
                        row_sum[r] = row_sum[r] * rescale + sum;
                        row_max[r] = m_new;
                    }
                }
                if (lane < tk) {
                    const uint16_t h = blocks::f32_to_f16(w);
                    p_hi[rr * tk + lane] = h;
                    p_lo[rr * tk + lane] = blocks::f32_to_f16(blocks::sub_rn(w, blocks::f16_to_f32(h)));
                }
            }
            __syncwarp();
            // 3. The warp's accumulators times their rows' rescale.
            for (int e = lane; e < 16 * hd; e += 32) {
                const int rr = e / hd, d = e % hd;
                acc_s[(r0 + rr) * ldo + d] *= row_rescale[r0 + rr];
            }
            __syncthreads();  // every warp is done with the keys
            // 4. Values into shared memory; accumulators += weights x values.
            load_tile(seg.v, seg.v_row_bytes, first + i0, n, tk, hd, kv_head, kv_s, ldh, tid, nthreads);
            __syncthreads();
            for (int c = 0; c < hd / 16; ++c) {
                FragAcc o;
                wmma::load_matrix_sync(o, acc_s + r0 * ldo + c * 16, ldo, wmma::mem_row_major);
                for (int j = 0; j < tk / 16; ++j) {
                    FragValues vb;
                    wmma::load_matrix_sync(vb, halves(kv_s + j * 16 * ldh + c * 16), ldh);
                    FragA pa;
                    wmma::load_matrix_sync(pa, halves(p_hi + j * 16), tk);
                    wmma::mma_sync(o, pa, vb, o);
                    wmma::load_matrix_sync(pa, halves(p_lo + j * 16), tk);
                    wmma::mma_sync(o, pa, vb, o);
                }
                wmma::store_matrix_sync(acc_s + r0 * ldo + c * 16, o, ldo, wmma::mem_row_major);
            }
            __syncthreads();  // before the next tile's keys overwrite the values
        }
    }

    for (int e = tid; e < n_rows * hd; e += nthreads) {
        const int r = e / hd, d = e % hd;
        if (!row_active(r)) continue;
        const float inv = row_sum[r] > 0.0f ? blocks::div_rn(1.0f, row_sum[r]) : 0.0f;
        a.out[row_token(r) * a.out_stride + static_cast<int64_t>(row_head(r)) * hd + d] =
            blocks::mul_rn(acc_s[r * ldo + d], inv);
    }
}

}  // namespace

void attention_prefill_tc(Stream s, ConstRows q, const int32_t* q_pos, const AttnStep* step,
                            const AttnShape& shape, const float* pinned_cos_sin, const TcPlan& plan, Rows out) {
    TcArgs a{q.data, q.stride, q_pos, q.rows, step, shape, pinned_cos_sin, plan, out.data, out.stride};
    const dim3 grid(static_cast<unsigned>(shape.n_kv_heads * plan.n_packs), static_cast<unsigned>(plan.token_tiles));
    attention_tc_kernel<<<grid, 32 * plan.warps, plan.smem_bytes, s>>>(a);
}

}  // namespace ekv::cuda
