// Attention driver: validation, the split into work units, query
// preparation (scale, pinned-segment re-rotation), softmax-state merging and
// threading. The kernels (cpu_attention_kernels.h) do the per-key work.
//
// Determinism: a query's visible keys (in segment order) are cut into chunks
// whose length depends only on how many keys it sees. Each chunk starts from
// an empty softmax state and the chunk states are merged left to right, both
// when one thread walks all chunks (prefill) and when chunks are spread over
// threads and merged afterwards (decode).
#include "backend/cpu/cpu_attention.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "backend/attention_checks.h"
#include "backend/cpu/cpu_attention_kernels.h"
#include "core/kivi.h"

namespace ekv::cpu {
namespace {

using detail::AttnPiece;
using detail::AttnState;
using detail::PieceKernel;
using detail::kAttnBlock;
using detail::kAttnMaxPack;
using detail::kAttnMaxPackFloats;

constexpr int64_t kMinChunk = 256;        // keys; shorter splits cost more in merging than they gain
constexpr int64_t kMaxChunks = 32;        // per query
constexpr int kMaxSplitTokens = 64;       // decode-style splitting only for this many queries or fewer
constexpr int64_t kInlineWork = 1 << 16;  // key-channel products below which threads are not woken
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::atomic<bool> g_force_scalar{false};

const detail::AttnKernels* fast_kernels() {
    static const detail::AttnKernels* best = [] {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return detail::avx2_attention_kernels();
#elif defined(__aarch64__)
        return detail::neon_attention_kernels();
#endif
        return static_cast<const detail::AttnKernels*>(nullptr);
    }();
    return g_force_scalar.load(std::memory_order_relaxed) ? nullptr : best;
}

// Visible token range [i0, i1) of every segment for one query position,
// and the chunking of their concatenation.
struct TokenRanges {
    int32_t i0[KvView::kMaxSegments];
    int32_t i1[KvView::kMaxSegments];
    int64_t total = 0;
    int64_t chunk = kMinChunk;
    int64_t n_chunks = 0;
    bool any_pinned = false;
};

TokenRanges visible_ranges(const KvView& kv, int32_t q_pos) {
    TokenRanges r;
    for (int s = 0; s < kv.n_segments; ++s) {
        const KvSegment& seg = kv.seg[s];
        int64_t hi = static_cast<int64_t>(q_pos) - seg.first_pos + 1;  // keys at positions <= q_pos
        if (hi > seg.n_tokens) hi = seg.n_tokens;
        int64_t lo = 0;
        const int32_t window = seg.window > 0 ? seg.window : kv.window;
        if (!seg.pinned && window > 0) {  // and q_pos - pos < window
            lo = static_cast<int64_t>(q_pos) - window + 1 - seg.first_pos;
            if (lo < 0) lo = 0;
        }
        if (hi < lo) hi = lo;
        r.i0[s] = static_cast<int32_t>(lo);
        r.i1[s] = static_cast<int32_t>(hi);
        r.total += hi - lo;
        if (seg.pinned && hi > lo) r.any_pinned = true;
    }
    const int64_t per = (r.total + kMaxChunks - 1) / kMaxChunks;
    r.chunk = per <= kMinChunk ? kMinChunk : (per + kAttnBlock - 1) / kAttnBlock * kAttnBlock;
    r.n_chunks = (r.total + r.chunk - 1) / r.chunk;
    return r;
}

// Everything a unit of work needs, fixed for the call.
struct Plan {
    const Tensor* q;
    const int32_t* q_pos;
    const KvView* kv;
    const AttentionParams* p;
    Tensor* out;
    int hd;
    int gq;          // query heads per KV head
    int n_packs;     // packs per KV head
    int pack_base;   // heads in a pack: pack_base, +1 for the first pack_extra packs
    int pack_extra;
    int64_t kv_width;
    // [segment][0: pack_base heads, 1: pack_base + 1 heads]
    PieceKernel kernel[KvView::kMaxSegments][2];

    int pack_size(int pack) const { return pack_base + (pack < pack_extra ? 1 : 0); }
    int pack_first(int pack) const { return pack * pack_base + (pack < pack_extra ? pack : pack_extra); }
    int states_per_token() const { return p->n_kv_heads * n_packs; }
};

// The pack's queries scaled by p.scale, and (lazily) re-rotated from q_pos to
// min(q_pos, pinned_query_pos) for pinned segments.
struct PackQueries {
    alignas(32) float plain[kAttnMaxPackFloats];
    alignas(32) float pinned[kAttnMaxPackFloats];
    bool has_pinned = false;  // pinned[] differs from plain[]
};

// cos/sin of the pinned re-rotation of one query position (pairs 2i, 2i+1).
struct PinnedRotation {
    bool needed = false;
    bool neox = false;  // pairs (i, i + half) instead of (2i, 2i + 1)
    int half = 0;
    float cos_[detail::kAttnMaxHeadDim / 2];
    float sin_[detail::kAttnMaxHeadDim / 2];
};

PinnedRotation pinned_rotation(const Plan& pl, int32_t q_pos, const TokenRanges& tr) {
    PinnedRotation rot;
    const int32_t pinned_pos = q_pos < pl.kv->pinned_query_pos ? q_pos : pl.kv->pinned_query_pos;
    if (!tr.any_pinned || pinned_pos == q_pos) return rot;
    const RopeParams& rope = *pl.p->rope;
    rot.needed = true;
    rot.neox = rope.neox;
    rot.half = rope.rope_dim / 2;
    // Double precision: the distance reaches 1e5+ in long streams.
    const double delta = static_cast<double>(pinned_pos) - static_cast<double>(q_pos);
    for (int i = 0; i < rot.half; ++i) {
        const double angle = delta * static_cast<double>(rope.inv_freq[i]);
        rot.cos_[i] = static_cast<float>(std::cos(angle));
        rot.sin_[i] = static_cast<float>(std::sin(angle));
    }
    return rot;
}

void prepare_queries(const Plan& pl, int64_t t, int kv_head, int pack, const PinnedRotation& rot, PackQueries& pq) {
    const int hd = pl.hd;
    const int nq = pl.pack_size(pack);
    const int head0 = kv_head * pl.gq + pl.pack_first(pack);
    const float scale = pl.p->scale;
    for (int j = 0; j < nq; ++j) {
        const float* src = pl.q->ptr<float>(t) + static_cast<size_t>(head0 + j) * hd;
        float* dst = pq.plain + static_cast<size_t>(j) * hd;
        for (int c = 0; c < hd; ++c) dst[c] = src[c] * scale;
    }
    pq.has_pinned = rot.needed;
    if (!rot.needed) return;
    std::memcpy(pq.pinned, pq.plain, sizeof(float) * static_cast<size_t>(nq) * hd);
    for (int j = 0; j < nq; ++j) {
        float* v = pq.pinned + static_cast<size_t>(j) * hd;
        const int stride = rot.neox ? 1 : 2, partner = rot.neox ? rot.half : 1;
        for (int i = 0; i < rot.half; ++i) {
            float* x0 = v + stride * i;
            const float a = x0[0], b = x0[partner];
            x0[0] = a * rot.cos_[i] - b * rot.sin_[i];
            x0[partner] = a * rot.sin_[i] + b * rot.cos_[i];
        }
    }
}

void reset_state(AttnState& st, int nq, int hd) {
    for (int j = 0; j < nq; ++j) {
        st.max[j] = kNegInf;
        st.sum[j] = 0.f;
    }
    std::memset(st.acc, 0, sizeof(float) * static_cast<size_t>(nq) * hd);
}

// Folds chunk state b (max, sum, acc arrays) into a, the keys of b following a's.
void merge_state(AttnState& a, const float* bmax, const float* bsum, const float* bacc, int nq, int hd) {
    for (int j = 0; j < nq; ++j) {
        if (!(bsum[j] > 0.f)) continue;  // b saw no keys
        float* acc = a.acc + static_cast<size_t>(j) * hd;
        const float* bj = bacc + static_cast<size_t>(j) * hd;
        const float m = a.max[j] > bmax[j] ? a.max[j] : bmax[j];
        const float ea = std::exp(a.max[j] - m);  // 0 when a is empty (max = -inf)
        const float eb = std::exp(bmax[j] - m);
        for (int c = 0; c < hd; ++c) acc[c] = acc[c] * ea + bj[c] * eb;
        a.sum[j] = a.sum[j] * ea + bsum[j] * eb;
        a.max[j] = m;
    }
}

// Chunk `chunk` of a query's visible keys for one pack, from an empty state.
void run_chunk(const Plan& pl, const TokenRanges& tr, int64_t chunk, int kv_head, int pack, const PackQueries& pq,
               AttnState& st) {
    const int nq = pl.pack_size(pack);
    reset_state(st, nq, pl.hd);
    const int64_t lo = chunk * tr.chunk;
    const int64_t hi = lo + tr.chunk < tr.total ? lo + tr.chunk : tr.total;
    const int kernel_variant = nq == pl.pack_base ? 0 : 1;
    int64_t off = 0;  // offset of segment s's first visible token in the concatenation
    for (int s = 0; s < pl.kv->n_segments && off < hi; ++s) {
        const int64_t len = tr.i1[s] - tr.i0[s];
        const int64_t a = lo > off ? lo - off : 0;
        const int64_t b = hi - off < len ? hi - off : len;
        if (a < b) {
            const KvSegment& seg = pl.kv->seg[s];
            AttnPiece piece;
            piece.seg = &seg;
            piece.kv_head = kv_head;
            piece.head_dim = pl.hd;
            piece.kv_width = pl.kv_width;
            piece.nq = nq;
            piece.softcap = pl.p->softcap;
            piece.q = seg.pinned && pq.has_pinned ? pq.pinned : pq.plain;
            piece.i0 = static_cast<int32_t>(tr.i0[s] + a);
            piece.i1 = static_cast<int32_t>(tr.i0[s] + b);
            pl.kernel[s][kernel_variant](piece, st);
        }
        off += len;
    }
}

void write_output(const Plan& pl, int64_t t, int kv_head, int pack, const AttnState& st) {
    const int nq = pl.pack_size(pack);
    const int head0 = kv_head * pl.gq + pl.pack_first(pack);
    for (int j = 0; j < nq; ++j) {
        float* o = pl.out->ptr<float>(t) + static_cast<size_t>(head0 + j) * pl.hd;
        const float* acc = st.acc + static_cast<size_t>(j) * pl.hd;
        const float inv = st.sum[j] > 0.f ? 1.f / st.sum[j] : 0.f;
        for (int c = 0; c < pl.hd; ++c) o[c] = acc[c] * inv;
    }
}

// Whole query t, every pack, chunks merged in order on this thread.
void run_token(const Plan& pl, int64_t t) {
    const TokenRanges tr = visible_ranges(*pl.kv, pl.q_pos[t]);
    const PinnedRotation rot = pinned_rotation(pl, pl.q_pos[t], tr);
    PackQueries pq;
    AttnState st, chunk_st;
    for (int h = 0; h < pl.p->n_kv_heads; ++h) {
        for (int pk = 0; pk < pl.n_packs; ++pk) {
            const int nq = pl.pack_size(pk);
            prepare_queries(pl, t, h, pk, rot, pq);
            reset_state(st, nq, pl.hd);
            for (int64_t c = 0; c < tr.n_chunks; ++c) {
                if (c == 0) {
                    run_chunk(pl, tr, c, h, pk, pq, st);
                } else {
                    run_chunk(pl, tr, c, h, pk, pq, chunk_st);
                    merge_state(st, chunk_st.max, chunk_st.sum, chunk_st.acc, nq, pl.hd);
                }
            }
            write_output(pl, t, h, pk, st);
        }
    }
}

// Decode-style split: a unit is one chunk of one query's keys for a block of
// KV heads (all of them unless that leaves threads idle), every pack of the
// block in turn, so the chunk's rows stay in cache across heads. Chunk
// states go to the merge buffer; the caller merges them in key order.
struct SplitPlan {
    int64_t chunk_first[kMaxSplitTokens + 1];  // index of each query's first chunk among all chunks
    int head_blocks;                           // units per chunk
    size_t slot_floats;                        // one state: max, sum, acc of the largest pack
};

// Float offset of a (chunk, KV head, pack) state in the merge buffer.
size_t state_slot(const Plan& pl, const SplitPlan& sp, int64_t chunk, int kv_head, int pack) {
    const size_t index = static_cast<size_t>(chunk) * static_cast<size_t>(pl.states_per_token()) +
                         static_cast<size_t>(kv_head) * static_cast<size_t>(pl.n_packs) + static_cast<size_t>(pack);
    return index * sp.slot_floats;
}

void run_split_unit(const Plan& pl, const SplitPlan& sp, float* scratch, int64_t unit) {
    const int64_t chunk_index = unit / sp.head_blocks;
    const int block = static_cast<int>(unit % sp.head_blocks);
    int64_t t = 0;
    while (sp.chunk_first[t + 1] <= chunk_index) ++t;
    const int64_t chunk = chunk_index - sp.chunk_first[t];
    const TokenRanges tr = visible_ranges(*pl.kv, pl.q_pos[t]);
    const PinnedRotation rot = pinned_rotation(pl, pl.q_pos[t], tr);
    PackQueries pq;
    AttnState st;
    const int n_kv = pl.p->n_kv_heads;
    for (int h = block * n_kv / sp.head_blocks; h < (block + 1) * n_kv / sp.head_blocks; ++h) {
        for (int pk = 0; pk < pl.n_packs; ++pk) {
            const int nq = pl.pack_size(pk);
            prepare_queries(pl, t, h, pk, rot, pq);
            run_chunk(pl, tr, chunk, h, pk, pq, st);
            float* slot = scratch + state_slot(pl, sp, chunk_index, h, pk);
            std::memcpy(slot, st.max, sizeof(float) * nq);
            std::memcpy(slot + nq, st.sum, sizeof(float) * nq);
            std::memcpy(slot + 2 * nq, st.acc, sizeof(float) * static_cast<size_t>(nq) * pl.hd);
        }
    }
}

void merge_split_token(const Plan& pl, const SplitPlan& sp, const float* scratch, int64_t t) {
    AttnState st;
    for (int h = 0; h < pl.p->n_kv_heads; ++h) {
        for (int pk = 0; pk < pl.n_packs; ++pk) {
            const int nq = pl.pack_size(pk);
            reset_state(st, nq, pl.hd);
            for (int64_t c = sp.chunk_first[t]; c < sp.chunk_first[t + 1]; ++c) {
                const float* slot = scratch + state_slot(pl, sp, c, h, pk);
                if (c == sp.chunk_first[t]) {  // the first chunk is the state itself, as in run_token
                    std::memcpy(st.max, slot, sizeof(float) * nq);
                    std::memcpy(st.sum, slot + nq, sizeof(float) * nq);
                    std::memcpy(st.acc, slot + 2 * nq, sizeof(float) * static_cast<size_t>(nq) * pl.hd);
                } else {
                    merge_state(st, slot, slot + nq, slot + 2 * nq, nq, pl.hd);
                }
            }
            write_output(pl, t, h, pk, st);
        }
    }
}

// Runs f(unit) for every unit in [0, n), claimed dynamically by the pool's threads.
template <class F>
void for_units(ThreadPool& pool, int64_t n, bool parallel, F&& f) {
    if (!parallel || n <= 1 || pool.size() == 1) {
        for (int64_t u = 0; u < n; ++u) f(u);
        return;
    }
    std::atomic<int64_t> next{0};
    pool.parallel([&](int, int) {
        for (int64_t u = next.fetch_add(1, std::memory_order_relaxed); u < n;
             u = next.fetch_add(1, std::memory_order_relaxed))
            f(u);
    });
}

// Grows (never shrinks) this thread's merge buffer; false if memory ran out.
bool split_scratch(size_t floats, float** out) {
    thread_local std::vector<float> buffer;
    if (buffer.size() < floats) {
        try {
            buffer.resize(floats);
        } catch (const std::bad_alloc&) {
            return false;
        }
    }
    *out = buffer.data();
    return true;
}

}  // namespace

Status check_attention(const Tensor& q, const KvView& kv, const AttentionParams& p) {
    return check_attention_args(q, kv, p, detail::kAttnMaxHeadDim, /*host_data=*/true);
}

const char* attention_isa() {
    const detail::AttnKernels* k = fast_kernels();
    return k ? k->name : detail::scalar_attention_kernels().name;
}

void attention_force_scalar(bool force) { g_force_scalar.store(force, std::memory_order_relaxed); }

void attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p, Tensor& out,
               ThreadPool& pool) {
    if (q.rows <= 0 || !out.data) return;
    if (!q_pos || !check_attention(q, kv, p).ok()) {
        const size_t row = static_cast<size_t>(p.n_heads > 0 ? p.n_heads : 0) * (p.head_dim > 0 ? p.head_dim : 0);
        for (int64_t t = 0; t < q.rows; ++t) std::memset(out.ptr<float>(t), 0, row * sizeof(float));
        return;
    }
    Plan pl;
    pl.q = &q;
    pl.q_pos = q_pos;
    pl.kv = &kv;
    pl.p = &p;
    pl.out = &out;
    pl.hd = p.head_dim;
    pl.gq = p.n_heads / p.n_kv_heads;
    int max_pack = kAttnMaxPackFloats / pl.hd;
    if (max_pack > kAttnMaxPack) max_pack = kAttnMaxPack;
    pl.n_packs = (pl.gq + max_pack - 1) / max_pack;
    pl.pack_base = pl.gq / pl.n_packs;
    pl.pack_extra = pl.gq % pl.n_packs;
    pl.kv_width = static_cast<int64_t>(p.n_kv_heads) * pl.hd;
    const detail::AttnKernels* fast = fast_kernels();
    const detail::AttnKernels& scalar = detail::scalar_attention_kernels();
    for (int s = 0; s < kv.n_segments; ++s) {
        for (int v = 0; v < 2; ++v) {
            const int nq = pl.pack_base + v;
            PieceKernel k = fast && nq <= kAttnMaxPack ? fast->select(kv.seg[s], pl.hd, pl.kv_width, nq) : nullptr;
            pl.kernel[s][v] = k ? k : scalar.select(kv.seg[s], pl.hd, pl.kv_width, nq);
        }
    }

    // Size the work: visible keys over all queries.
    int64_t keys = 0;
    for (int64_t t = 0; t < q.rows; ++t) keys += visible_ranges(kv, q_pos[t]).total;
    const bool parallel = pool.size() > 1 && keys * p.n_heads * pl.hd >= kInlineWork;
    // Fewer queries than threads can use (decode): split each query's keys.
    if (parallel && q.rows < 2 * pool.size() && q.rows <= kMaxSplitTokens) {
        SplitPlan sp;
        sp.chunk_first[0] = 0;
        for (int64_t t = 0; t < q.rows; ++t)
            sp.chunk_first[t + 1] = sp.chunk_first[t] + visible_ranges(kv, q_pos[t]).n_chunks;
        const int64_t chunks = sp.chunk_first[q.rows];
        const int64_t blocks = chunks > 0 ? (4 * pool.size() + chunks - 1) / chunks : 1;  // ~4 units per thread
        sp.head_blocks = static_cast<int>(blocks < p.n_kv_heads ? blocks : p.n_kv_heads);
        const int max_nq = pl.pack_base + (pl.pack_extra > 0 ? 1 : 0);
        sp.slot_floats = static_cast<size_t>(max_nq) * (2 + static_cast<size_t>(pl.hd));
        float* scratch = nullptr;
        // Room for at least one query's most chunks: a growing context then
        // never regrows the buffer during decode (no per-token allocation).
        const size_t slots = static_cast<size_t>(chunks > kMaxChunks ? chunks : kMaxChunks);
        if (split_scratch(slots * pl.states_per_token() * sp.slot_floats, &scratch)) {
            for_units(pool, chunks * sp.head_blocks, true,
                      [&](int64_t u) { run_split_unit(pl, sp, scratch, u); });
            for (int64_t t = 0; t < q.rows; ++t) merge_split_token(pl, sp, scratch, t);
            return;
        }
    }
    for_units(pool, q.rows, parallel, [&](int64_t t) { run_token(pl, t); });
}

}  // namespace ekv::cpu
