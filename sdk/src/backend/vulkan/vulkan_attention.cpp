// Vulkan backend: attention over a cache view. One pass per KV segment
// folds its keys into an online-softmax state (max, sum, weighted value sum
// per query and head), then attention_finish divides. Two shapes of pass
// (vk_pipelines.h AttentionShape): attention_segment.comp on GPUs, 64 keys
// per workgroup; attention_segment_rows.comp on CPU implementations, a whole
// key walk per invocation, which ends a one-pass view itself. KIVI segments
// always take attention_segment.comp; the state layout is shared. On CPU
// implementations long segments take several passes of either shape.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/attention_checks.h"
#include "backend/vulkan/vk_op_util.h"
#include "backend/vulkan/vk_pipelines.h"
#include "backend/vulkan/vk_shaders.h"
#include "backend/vulkan/vk_stream.h"
#include "backend/vulkan/vulkan_backend.h"
#include "core/kivi.h"

namespace ekv {
using vk::groups;
using vk::invalid;
using vk::is_f32;

namespace {

constexpr int32_t kMaxHeadDim = 256;      // MAX_HEAD_DIM in attention_segment.comp and _rows.comp
constexpr uint32_t kAttnRowsQueries = 4;  // NQ in attention_segment_rows.comp
constexpr uint32_t kAttnRowsGroup = 8;    // its local_size_x
constexpr uint32_t kNoRotation = 0xFFFFFFFFu;

// llvmpipe silently ends an invocation after 65535 loop iterations, all
// loops together (LP_MAX_TGSI_LOOP_ITERATIONS), counting one more per loop
// entered (its exit test). Each pass keeps a margin under it.
constexpr int64_t kLoopBudget = 60000;

// attention_segment_rows.comp spends per key one iteration of the key loop
// and two loops of ceil(pairs / CHUNK) iterations, and at most
// NQ * 4 * (head_dim + 1) on its queries and state (measured on lavapipe: a
// pass of 3288 keys at head_dim 256 fails, 3200 pass).
constexpr int64_t kRowsPairChunk = 16;  // CHUNK

int64_t rows_keys_per_pass(int32_t head_dim) {
    const int64_t pairs = (head_dim + 1) / 2;
    const int64_t per_key = 1 + 2 * ((pairs + kRowsPairChunk - 1) / kRowsPairChunk + 1);
    return (kLoopBudget - kAttnRowsQueries * 4 * (kMaxHeadDim + 1)) / per_key;
}

// attention_segment.comp spends per block of 64 keys head_dim + 1 iterations
// on its key's dot product, 66 per accumulator slot (ceil(head_dim / 64) per
// invocation: 64 + 1 of its value loop, 1 of the slot loop), and ~16 on the
// block loop and its two reductions: head_dim + 17 + 66 * ceil(head_dim / 64),
// taken here as + 20. KIVI reads its codes without loops, so F16, F32 and
// KIVI 2/4/8-bit cost the same. Outside the blocks: q, re-rotation and state
// loops, under 256 at head_dim 256. Measured on lavapipe (one pass, F16 and
// KIVI alike): 7778 keys pass at head_dim 256, 7779 fail; 15061 / 15062 at
// 128; 17024 / 17025 at 96; 28318 / 28319 at 64. This gives 7040, 13632,
// 15360, 25472 (about 90 % of each).
constexpr int64_t kKeysBlock = 64;  // local_size_x
constexpr int64_t kKeysFixedLoops = 256;

int64_t keys_per_pass(int32_t head_dim) {
    const int64_t per_block = head_dim + 20 + 66 * ((head_dim + kKeysBlock - 1) / kKeysBlock);
    return (kLoopBudget - kKeysFixedLoops) / per_block * kKeysBlock;
}

// One dispatch: keys [start, start + count) of segment `seg` (-1: the empty
// view's pass, which only starts the state).
struct Pass {
    int seg;
    int32_t start, count;
    bool rows;  // attention_segment_rows.comp, else attention_segment.comp
};

// A segment per pass, except that the CPU shape walks at most
// rows_keys_per_pass keys per pass, and the GPU shape keys_per_pass on
// devices that may cap loops like llvmpipe (`capped`: CPU implementations,
// as for the choice of shape; GPUs keep a pass per segment). A part of a
// segment starts at any key: attention_segment.comp finds a KIVI key's group
// from its row, so a pass boundary may fall inside a group. The number of
// passes follows the segment lengths, so a replayed decode step is
// re-recorded when it changes (the command log compares the dispatches).
std::vector<Pass> plan_passes(const KvView& kv, bool rows_shape, bool capped, int32_t head_dim) {
    std::vector<Pass> passes;
    if (kv.n_segments == 0) passes.push_back({-1, 0, 0, rows_shape});
    const int32_t most_rows = static_cast<int32_t>(rows_keys_per_pass(head_dim));
    const int32_t most_keys = static_cast<int32_t>(keys_per_pass(head_dim));
    for (int s = 0; s < kv.n_segments; ++s) {
        const KvSegment& seg = kv.seg[s];
        const bool rows = rows_shape && seg.format != KvFormat::Kivi;
        const int32_t most = rows ? most_rows : capped ? most_keys : seg.n_tokens;
        int32_t start = 0;
        do {
            const int32_t count = std::min(most, seg.n_tokens - start);
            passes.push_back({s, start, count, rows});
            start += count;
        } while (start < seg.n_tokens);
    }
    return passes;
}

}  // namespace

void VulkanBackend::attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
                              Tensor& out) {
    if (!stream().ok() || q.rows <= 0) return;
    const int64_t width = static_cast<int64_t>(p.n_heads) * p.head_dim;
    Status checked = check_attention_args(q, kv, p, kMaxHeadDim, /*host_data=*/false);
    if (!checked.ok()) return fail(Status(checked.code(), "Vulkan " + checked.message()));
    if (!is_f32(out) || out.cols < width)
        return fail(invalid("attention: out must be F32 rows of n_heads * head_dim (%lld)", static_cast<long long>(width)));
    vk::Binding qb, ob;
    uint32_t q_off, q_stride, o_off, o_stride;
    if (!bind_plain(q, q.rows, "attention", "q", &qb, &q_off, &q_stride) ||
        !bind_plain(out, q.rows, "attention", "out", &ob, &o_off, &o_stride))
        return;
    const int64_t kv_width = static_cast<int64_t>(p.n_kv_heads) * p.head_dim;
    bool any_pinned = false;
    for (int s = 0; s < kv.n_segments; ++s) {
        const KvSegment& seg = kv.seg[s];
        if (seg.format == KvFormat::Kivi) {
            if (!kivi_layout_ok(kv_width, seg.kivi, p.head_dim))
                return fail(invalid("attention: KIVI segment %d (%d bits, group %d) does not fit head_dim %d", s,
                                    seg.kivi.nbits, seg.kivi.group, p.head_dim));
        } else if (seg.k.type != seg.v.type || seg.k.cols < kv_width || seg.v.cols < kv_width) {
            return fail(invalid("attention: segment %d has mismatched or narrow K/V", s));
        }
        any_pinned = any_pinned || (seg.pinned && seg.n_tokens > 0);
    }
    const bool rows_shape = ctx_->pipelines().attention_shape() == vk::AttentionShape::Rows;
    const bool capped = ctx_->properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    const std::vector<Pass> passes = plan_passes(kv, rows_shape, capped, p.head_dim);
    const size_t n_passes = passes.size();
    // A single pass of the CPU shape writes `out` where the state would go;
    // otherwise the passes meet in the state.
    const bool fused_finish = n_passes == 1 && passes[0].rows;
    const size_t state_bytes = static_cast<size_t>(q.rows) * p.n_heads * (p.head_dim + 2) * sizeof(float);
    if (!fused_finish && !ensure_attention_state(state_bytes)) return;

    // Params: query positions, then (pinned segments) the per-token (cos, sin)
    // that moves the query to min(q_pos, pinned_query_pos), then each pass's
    // (n_keys, first_pos, skip, window, k_off, v_off): every per-step value
    // lives here (a ring's runs move through its buffer), so the recorded
    // commands of a decode step can be replayed.
    const bool rotate = any_pinned && p.rope->rope_dim > 0;
    const int32_t n_pairs = rotate ? p.rope->rope_dim / 2 : 0;
    const size_t pos_rot_words = static_cast<size_t>(q.rows) * (1 + 2 * static_cast<size_t>(n_pairs));
    uint32_t pos_off = 0;
    constexpr size_t kSegWords = 6;
    uint8_t* prm = stream().params((pos_rot_words + kSegWords * n_passes) * 4, &pos_off);
    if (!prm) return;
    int32_t* seg_words = reinterpret_cast<int32_t*>(prm) + pos_rot_words;
    const uint32_t seg_off = pos_off + static_cast<uint32_t>(pos_rot_words);
    int32_t* pos = reinterpret_cast<int32_t*>(prm);
    float* rot = reinterpret_cast<float*>(prm) + q.rows;
    for (int64_t t = 0; t < q.rows; ++t) {
        pos[t] = q_pos[t];
        const int32_t delta = (q_pos[t] < kv.pinned_query_pos ? q_pos[t] : kv.pinned_query_pos) - q_pos[t];
        for (int32_t i = 0; i < n_pairs; ++i) {  // double: the distance reaches 1e5+ in long streams
            const double angle = static_cast<double>(delta) * static_cast<double>(p.rope->inv_freq[i]);
            *rot++ = static_cast<float>(std::cos(angle));
            *rot++ = static_cast<float>(std::sin(angle));
        }
    }
    const uint32_t rot_off = rotate ? pos_off + static_cast<uint32_t>(q.rows) : kNoRotation;

    struct {
        uint32_t q_off, q_stride, k_stride, v_stride, n_heads, group, head_dim, seg_off, pos_off, rot_off, n_pairs,
            init;
        float scale;
        uint32_t neox;
        float softcap;
        uint32_t nbits, kgroup, code_words;
        uint32_t n_tokens, finish, o_off, o_stride;  // attention_segment_rows.comp only
    } pc{};
    pc.q_off = q_off;
    pc.q_stride = q_stride;
    pc.n_heads = static_cast<uint32_t>(p.n_heads);
    pc.group = static_cast<uint32_t>(p.n_heads / p.n_kv_heads);
    pc.head_dim = static_cast<uint32_t>(p.head_dim);
    pc.pos_off = pos_off;
    pc.n_pairs = static_cast<uint32_t>(n_pairs);
    pc.scale = p.scale;
    pc.neox = rotate && p.rope->neox ? 1u : 0u;
    pc.softcap = p.softcap;
    pc.n_tokens = static_cast<uint32_t>(q.rows);
    pc.finish = fused_finish ? 1u : 0u;
    pc.o_off = o_off;
    pc.o_stride = o_stride;
    const vk::Binding state = fused_finish ? ob : vk::Binding(attn_state_->handle());
    const uint32_t gx = static_cast<uint32_t>(p.n_heads), gy = static_cast<uint32_t>(q.rows);
    // The CPU shape: NQ queries of one KV head per invocation, a KV head per row of workgroups.
    const uint64_t rows_queries = static_cast<uint64_t>(q.rows) * pc.group;
    const uint32_t rows_gx = groups(groups(rows_queries, kAttnRowsQueries), kAttnRowsGroup);
    for (size_t i = 0; i < n_passes; ++i) {
        const Pass& pass = passes[i];
        vk::Binding kb, vb;
        vk::ShaderId shader = pass.rows ? vk::ShaderId::AttnSegmentRowsF32 : vk::ShaderId::AttnSegmentF32;
        int32_t* sw = seg_words + kSegWords * i;  // n_keys, first_pos, skip, window, k_off, v_off
        std::fill(sw, sw + kSegWords, 0);
        uint32_t k_off = 0, v_off = 0;
        pc.k_stride = pc.v_stride = 0;
        pc.nbits = pc.kgroup = pc.code_words = 0;
        pc.rot_off = kNoRotation;
        if (pass.seg >= 0) {
            const KvSegment& seg = kv.seg[pass.seg];
            const int64_t rows = static_cast<int64_t>(seg.skip) + seg.n_tokens;
            if (seg.format == KvFormat::Kivi) {
                const int64_t groups = (rows + seg.kivi.group - 1) / seg.kivi.group;
                if (!bind_words(seg.k, groups, "attention", "KIVI keys", &kb, &k_off, &pc.k_stride) ||
                    !bind_words(seg.v, rows, "attention", "KIVI values", &vb, &v_off, &pc.v_stride))
                    return;
                shader = vk::ShaderId::AttnSegmentKivi;
                pc.nbits = static_cast<uint32_t>(seg.kivi.nbits);
                pc.kgroup = static_cast<uint32_t>(seg.kivi.group);
                pc.code_words = static_cast<uint32_t>(kivi_code_row_bytes(kv_width, seg.kivi.nbits) / 4);
            } else {
                if (!bind_plain(seg.k, rows, "attention", "segment K", &kb, &k_off, &pc.k_stride) ||
                    !bind_plain(seg.v, rows, "attention", "segment V", &vb, &v_off, &pc.v_stride))
                    return;
                const bool f16 = seg.k.type == DType::F16;
                shader = pass.rows ? (f16 ? vk::ShaderId::AttnSegmentRowsF16 : vk::ShaderId::AttnSegmentRowsF32)
                                   : (f16 ? vk::ShaderId::AttnSegmentF16 : vk::ShaderId::AttnSegmentF32);
            }
            // A part of a segment is the segment that starts `start` keys later.
            sw[0] = pass.count;
            sw[1] = seg.first_pos + pass.start;
            sw[2] = seg.skip + pass.start;
            sw[3] = seg.pinned ? 0 : seg.window > 0 ? seg.window : kv.window;
            sw[4] = static_cast<int32_t>(k_off);
            sw[5] = static_cast<int32_t>(v_off);
            pc.rot_off = seg.pinned ? rot_off : kNoRotation;
        }
        pc.seg_off = seg_off + static_cast<uint32_t>(kSegWords * i);
        pc.init = i == 0 ? 1u : 0u;
        if (pass.rows)
            stream().dispatch(shader, {qb, kb, vb, state, VK_NULL_HANDLE}, &pc, sizeof pc, rows_gx,
                              static_cast<uint32_t>(p.n_kv_heads));
        else
            stream().dispatch(shader, {qb, kb, vb, state, VK_NULL_HANDLE}, &pc, sizeof pc, gx, gy);
    }
    if (fused_finish) return;
    struct {
        uint32_t o_off, o_stride, n_heads, head_dim;
    } fin = {o_off, o_stride, static_cast<uint32_t>(p.n_heads), static_cast<uint32_t>(p.head_dim)};
    stream().dispatch(vk::ShaderId::AttnFinish, {ob, VK_NULL_HANDLE, VK_NULL_HANDLE, state, VK_NULL_HANDLE}, &fin,
                      sizeof fin, gx, gy);
}

}  // namespace ekv
