// Attention pieces shared by the kernels (attention.cu) and the host test:
// the launch plan, which keys a query sees (the CPU's visible_ranges), and
// reading one key/value element of a segment in place (plain F16/F32 rows,
// or KIVI codes per core/kivi.h, dequantized like core/kivi.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "gguf_blocks.cuh"
#include "kernels.h"
#include "kivi_codes.cuh"

namespace ekv::cuda::attn {

constexpr int kThreads = 256;
constexpr int kAccPerThread = 8;                            // output floats each thread accumulates
constexpr int kMaxRowFloats = kThreads * kAccPerThread;     // rows * head_dim per block
constexpr int kMaxRows = 32;                                // query rows (token, head) per block
constexpr int kMaxHeadDim = 256;
constexpr int64_t kMinKeysPerSplit = 128;
constexpr int kMaxSplits = 64;
constexpr int64_t kTargetBlocks = 256;  // enough blocks to fill a large GPU twice over

// How one attention call is cut into blocks. A block serves `rows` query
// rows: `tq` consecutive tokens x `pack` query heads of one KV head, over
// split `blockIdx.y` of the keys; `tk` keys per tile.
struct Plan {
    int32_t gq = 1;       // query heads per KV head
    int32_t pack = 1;     // query heads per block
    int32_t n_packs = 1;  // blocks per KV head
    int32_t tq = 1;       // tokens per block
    int32_t rows = 1;     // pack * tq
    int32_t tk = 32;
    int32_t splits = 1;
    int64_t token_tiles = 1;
    size_t smem_bytes = 0;  // dynamic shared memory
};

inline Plan make_plan(const AttnShape& shape, int64_t n_tokens, int64_t max_kv_tokens) {
    Plan p;
    const int hd = shape.head_dim > 0 ? shape.head_dim : 1;
    p.gq = shape.n_kv_heads > 0 && shape.n_heads >= shape.n_kv_heads ? shape.n_heads / shape.n_kv_heads : 1;
    int cap = kMaxRowFloats / hd;
    if (cap > kMaxRows) cap = kMaxRows;
    if (cap < 1) cap = 1;
    p.pack = p.gq < cap ? p.gq : cap;
    p.n_packs = (p.gq + p.pack - 1) / p.pack;
    int64_t tq = cap / p.pack;
    if (tq > n_tokens) tq = n_tokens;
    p.tq = tq < 1 ? 1 : static_cast<int32_t>(tq);
    p.rows = p.pack * p.tq;
    p.tk = hd <= 128 ? 32 : 16;
    p.token_tiles = n_tokens > 0 ? (n_tokens + p.tq - 1) / p.tq : 1;
    const int64_t base = static_cast<int64_t>(shape.n_kv_heads > 0 ? shape.n_kv_heads : 1) * p.n_packs * p.token_tiles;
    if (base < kTargetBlocks && max_kv_tokens > kMinKeysPerSplit) {
        int64_t s = (max_kv_tokens + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
        const int64_t want = (kTargetBlocks + base - 1) / base;
        if (s > want) s = want;
        if (s > kMaxSplits) s = kMaxSplits;
        p.splits = s < 1 ? 1 : static_cast<int32_t>(s);
    }
    const size_t floats = static_cast<size_t>(p.rows) * hd + static_cast<size_t>(p.tk) * (hd + 1) +
                          static_cast<size_t>(p.tk) * hd + static_cast<size_t>(p.rows) * p.tk;
    p.smem_bytes = floats * sizeof(float);
    return p;
}

// Floats of split-K partial state: per (token, query head, split) the
// running max, the sum and head_dim accumulators.
inline size_t partial_floats(const AttnShape& shape, int64_t n_tokens, const Plan& p) {
    if (p.splits <= 1) return 0;
    return static_cast<size_t>(n_tokens) * static_cast<size_t>(shape.n_heads) * static_cast<size_t>(p.splits) *
           static_cast<size_t>(shape.head_dim + 2);
}

// The tensor-core prefill kernel (attention_tc.cu): used when every segment
// holds plain F16 rows (keys and values are then exact halves) and the call
// has at least kTcMinTokens queries. A warp owns 16 rows; the block's warps share
// each tile of tk keys. Queries and softmax weights go to the tensor cores
// as two halves each (x = hi + lo, the rest of the float after the first
// half), so scores and outputs keep float accuracy.
constexpr int kTcMaxWarps = 2;
constexpr int kTcMaxRows = 16 * kTcMaxWarps;
constexpr int64_t kTcMinTokens = 16;
constexpr size_t kTcSmemBudget = size_t(44) << 10;  // plus ~2.6 KiB of static shared memory

struct TcPlan {
    bool ok = false;
    int32_t gq = 1, pack = 1, n_packs = 1, tq = 1, rows = 1;
    int32_t warps = 1, tk = 32;
    int32_t ldh = 0;  // halves per row of the query and key/value tiles (head_dim + 8: fewer bank conflicts)
    int32_t ldo = 0;  // floats per row of the output accumulators (head_dim + 4)
    int64_t token_tiles = 1;
    // Byte offsets into the dynamic shared memory, each 128-aligned.
    size_t q_hi = 0, q_lo = 0, kv = 0, scores = 0, acc = 0, smem_bytes = 0;
};

inline size_t align128(size_t n) { return (n + 127) / 128 * 128; }

inline TcPlan make_tc_plan(const AttnShape& shape, int64_t n_tokens) {
    TcPlan p;
    const int hd = shape.head_dim;
    if (hd <= 0 || hd % 16 != 0 || hd > kMaxHeadDim || n_tokens <= 0 || shape.n_kv_heads <= 0 ||
        shape.n_heads % shape.n_kv_heads != 0)
        return p;
    p.gq = shape.n_heads / shape.n_kv_heads;
    p.ldh = hd + 8;
    p.ldo = hd + 4;
    bool fits = false;
    for (int warps = kTcMaxWarps; warps >= 1 && !fits; --warps) {
        for (int tk = 32; tk >= 16 && !fits; tk -= 16) {
            const size_t r = static_cast<size_t>(16 * warps);
            p.q_hi = 0;
            p.q_lo = align128(r * p.ldh * 2);
            p.kv = p.q_lo + align128(r * p.ldh * 2);
            p.scores = p.kv + align128(static_cast<size_t>(tk) * p.ldh * 2);
            p.acc = p.scores + align128(r * tk * 4);
            p.smem_bytes = p.acc + align128(r * p.ldo * 4);
            p.warps = warps;
            p.tk = tk;
            fits = p.smem_bytes <= kTcSmemBudget;
        }
    }
    if (!fits) return p;
    const int cap = 16 * p.warps;
    p.pack = p.gq < cap ? p.gq : cap;
    p.n_packs = (p.gq + p.pack - 1) / p.pack;
    int64_t tq = cap / p.pack;
    if (tq > n_tokens) tq = n_tokens;
    p.tq = static_cast<int32_t>(tq);
    p.rows = p.pack * p.tq;
    p.token_tiles = (n_tokens + p.tq - 1) / p.tq;
    // Prompts only: a few tokens (decode) would leave most of each warp's 16
    // rows empty and want attention.cu's split-K over long caches. The
    // grid's y dimension holds the token tiles.
    p.ok = n_tokens >= kTcMinTokens && p.token_tiles <= 65535;
    return p;
}

}  // namespace ekv::cuda::attn

namespace ekv::cuda {
// attention_tc.cu's launcher (attention() picks it when the plan is ok).
void attention_prefill_tc(Stream s, ConstRows q, const int32_t* q_pos, const AttnStep* step,
                            const AttnShape& shape, const float* pinned_cos_sin, const attn::TcPlan& plan, Rows out);
}  // namespace ekv::cuda

namespace ekv::cuda::attn {

// Visible token range [lo, hi) of a segment for a query at q_pos (causal by
// position, the view's or the segment's own window unless pinned).
EKV_HD void visible_range(const AttnSegment& seg, int32_t view_window, int32_t q_pos, int32_t* lo_out,
                          int32_t* hi_out) {
    int64_t hi = static_cast<int64_t>(q_pos) - seg.first_pos + 1;
    if (hi > seg.n_tokens) hi = seg.n_tokens;
    int64_t lo = 0;
    const int32_t window = seg.window > 0 ? seg.window : view_window;
    if (!seg.pinned && window > 0) {
        lo = static_cast<int64_t>(q_pos) - window + 1 - seg.first_pos;
        if (lo < 0) lo = 0;
    }
    if (hi < lo) hi = lo;
    *lo_out = static_cast<int32_t>(lo);
    *hi_out = static_cast<int32_t>(hi);
}

// Threads tid, tid + nthreads, ... copy the step's descriptors (mapped host
// or device memory) into shared memory, as 32-bit words.
EKV_HD void copy_step(const AttnStep* src, void* dst, int tid, int nthreads) {
    static_assert(sizeof(AttnStep) % 4 == 0, "the step is copied as 32-bit words");
    const uint32_t* from = reinterpret_cast<const uint32_t*>(src);
    uint32_t* to = static_cast<uint32_t*>(dst);
    for (int i = tid; i < static_cast<int>(sizeof(AttnStep) / 4); i += nthreads) to[i] = from[i];
}

EKV_HD int segment_count(const AttnStep& st) {
    return st.n_segments < 0 ? 0 : (st.n_segments > kMaxAttnSegments ? kMaxAttnSegments : st.n_segments);
}

// A query row's visible range [lo[s], hi[s]) in each segment; [0, 0) for
// an inactive row (padding, or past the last token).
EKV_HD void row_ranges(const AttnStep& st, int n_seg, bool active, int32_t q_pos, int32_t* lo, int32_t* hi) {
    for (int s = 0; s < n_seg; ++s) {
        lo[s] = hi[s] = 0;
        if (active) visible_range(st.seg[s], st.window, q_pos, &lo[s], &hi[s]);
    }
}

// Union [u_lo, u_hi) of the non-empty ranges lo[r * stride], hi[r * stride]
// (r < rows); [0, 0) when all are empty.
EKV_HD void union_range(const int32_t* lo, const int32_t* hi, int stride, int rows, int32_t* u_lo, int32_t* u_hi) {
    int32_t a = 0, b = 0;
    bool any = false;
    for (int r = 0; r < rows; ++r) {
        const int32_t l = lo[r * stride], h = hi[r * stride];
        if (l >= h) continue;
        a = any && a < l ? a : l;
        b = any && b > h ? b : h;
        any = true;
    }
    *u_lo = a;
    *u_hi = b;
}

// The keys a block walks: per segment the union [lo, hi) of its rows'
// visible ranges; the unions laid end to end are cut into `splits` equal
// slices, and block `split` takes its slice's part of each segment.
EKV_HD void split_slice(int64_t total, int splits, int split, int64_t* a, int64_t* b) {
    const int64_t per = (total + splits - 1) / splits;
    *a = split * per;
    if (*a > total) *a = total;
    *b = *a + per < total ? *a + per : total;
}
// Part [begin, end) (segment token indices) of a segment whose union is
// [u_lo, u_hi) and starts at `off` in the concatenation, inside slice [a, b).
EKV_HD void slice_part(int32_t u_lo, int32_t u_hi, int64_t off, int64_t a, int64_t b, int64_t* begin,
                       int64_t* end) {
    const int64_t len = u_hi - u_lo;
    const int64_t sa = a > off ? a - off : 0;
    int64_t sb = b - off < len ? b - off : len;
    if (sb < sa) sb = sa;
    *begin = u_lo + sa;
    *end = u_lo + sb;
}

// Element d of a query row as attention scores it (the CPU's
// prepare_queries): scaled, and when cs (the token's pinned cos/sin pairs)
// is given, the first 2 * half dims rotated like RoPE with unfused products.
EKV_HD float query_elem(const float* qrow, int d, float scale, int half, bool neox, const float* cs) {
    if (!cs || d >= 2 * half) return qrow[d] * scale;
    const int i = neox ? (d < half ? d : d - half) : d / 2;
    const bool first = neox ? d < half : d % 2 == 0;
    const float xa = qrow[neox ? i : 2 * i] * scale, xb = qrow[neox ? i + half : 2 * i + 1] * scale;
    const float c = cs[2 * i], sn = cs[2 * i + 1];
    return first ? blocks::sub_rn(blocks::mul_rn(xa, c), blocks::mul_rn(xb, sn))
                 : blocks::add_rn(blocks::mul_rn(xa, sn), blocks::mul_rn(xb, c));
}

// Element d of KV head kv_head of token i (0-based in the segment).
EKV_HD float plain_elem(const uint8_t* base, size_t row_bytes, DType type, int64_t row, int64_t ch) {
    const uint8_t* p = base + static_cast<size_t>(row) * row_bytes;
    if (type == DType::F16) return blocks::f16_to_f32(reinterpret_cast<const uint16_t*>(p)[ch]);
    return reinterpret_cast<const float*>(p)[ch];
}

EKV_HD float key_elem(const AttnSegment& seg, int64_t kv_width, int head_dim, int64_t i, int kv_head, int d) {
    const int64_t idx = static_cast<int64_t>(seg.skip) + i;
    const int64_t ch = static_cast<int64_t>(kv_head) * head_dim + d;
    if (!seg.kivi) return plain_elem(seg.k, seg.k_row_bytes, seg.plain_type, idx, ch);
    const int nbits = seg.kivi_nbits, group = seg.kivi_group;
    const size_t code_bytes = static_cast<size_t>(kv_width) * nbits / 8;
    const int run = head_dim * nbits / 8;
    const uint8_t* grow = seg.k + static_cast<size_t>(idx / group) * seg.k_row_bytes;
    const uint8_t* codes = grow + static_cast<size_t>(idx % group) * code_bytes + static_cast<size_t>(kv_head) * run;
    const uint8_t* scales = grow + static_cast<size_t>(group) * code_bytes;
    const uint8_t* mins = scales + 2 * static_cast<size_t>(kv_width);
    return kivi::dequant(kivi::read_code(codes, d, run, nbits), kivi::load_f16(scales + 2 * ch),
                         kivi::load_f16(mins + 2 * ch));
}

EKV_HD float value_elem(const AttnSegment& seg, int64_t kv_width, int head_dim, int64_t i, int kv_head, int d) {
    const int64_t idx = static_cast<int64_t>(seg.skip) + i;
    const int64_t ch = static_cast<int64_t>(kv_head) * head_dim + d;
    if (!seg.kivi) return plain_elem(seg.v, seg.v_row_bytes, seg.plain_type, idx, ch);
    const int nbits = seg.kivi_nbits;
    const size_t code_bytes = static_cast<size_t>(kv_width) * nbits / 8;
    const int run = head_dim * nbits / 8;
    const uint8_t* row = seg.v + static_cast<size_t>(idx) * seg.v_row_bytes;
    const uint8_t* pairs = row + code_bytes + 4 * static_cast<size_t>(ch / seg.kivi_group);
    return kivi::dequant(kivi::read_code(row + static_cast<size_t>(kv_head) * run, d, run, nbits),
                         kivi::load_f16(pairs), kivi::load_f16(pairs + 2));
}

}  // namespace ekv::cuda::attn
