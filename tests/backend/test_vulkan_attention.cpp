// Attention parity: the Vulkan backend against the CPU backend over cache
// views of plain F16/F32 segments (each in its own buffer), including
// causal prefill, several 64-key blocks, skip offsets, a sliding window and
// pinned sink segments with their query re-rotation.
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {
namespace {

class VulkanAttention : public VulkanParity {};

struct SegSpec {
    int32_t n_tokens, first_pos, skip;
    bool pinned;
};

struct Case {
    const char* name;
    DType type;
    int n_heads, n_kv_heads, head_dim;
    std::vector<SegSpec> segs;
    int32_t window, pinned_query_pos;
    std::vector<int32_t> q_pos;
};

std::vector<uint8_t> kv_bytes(DType t, size_t n, std::mt19937& rng) {
    std::vector<float> v = random_floats(n, rng, -2.f, 2.f);
    std::vector<uint8_t> out(n * (t == DType::F16 ? 2 : 4));
    for (size_t i = 0; i < n; ++i) {
        if (t == DType::F16) {
            const uint16_t h = f32_to_f16(v[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        } else {
            std::memcpy(out.data() + 4 * i, &v[i], 4);
        }
    }
    return out;
}

TEST_F(VulkanAttention, MatchesCpuOverSegmentViews) {
    const std::vector<Case> cases = {
        {"decode_f16", DType::F16, 9, 3, 64, {{37, 0, 0, false}}, 0, 0, {36}},
        {"prefill_causal_f16", DType::F16, 9, 3, 64, {{20, 0, 0, false}}, 0, 0, {15, 16, 17, 18, 19}},
        {"three_key_blocks_hd128", DType::F16, 4, 2, 128, {{150, 0, 0, false}}, 0, 0, {149, 100}},
        {"two_segments_skip_f32", DType::F32, 6, 2, 64, {{10, 0, 0, false}, {12, 10, 5, false}}, 0, 0, {21, 15}},
        {"sink_ring_window_pinned", DType::F16, 9, 3, 64,
         {{4, 0, 0, true}, {5, 30, 3, false}, {6, 35, 0, false}}, 8, 12, {40, 38}},
        {"odd_head_dim_window", DType::F16, 2, 1, 40, {{70, 0, 0, false}}, 9, 0, {69, 30, 5}},
        {"nothing_visible", DType::F16, 2, 2, 64, {{5, 10, 0, false}}, 0, 0, {3}},
        {"empty_view", DType::F16, 2, 2, 64, {}, 0, 0, {0}},
    };
    std::mt19937 rng(11);
    for (const Case& c : cases) {
        SCOPED_TRACE(c.name);
        const int64_t kv_width = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
        const int64_t q_width = static_cast<int64_t>(c.n_heads) * c.head_dim;
        const int64_t n_q = static_cast<int64_t>(c.q_pos.size());
        std::vector<float> inv_freq(static_cast<size_t>(c.head_dim / 2));
        for (size_t i = 0; i < inv_freq.size(); ++i)
            inv_freq[i] = std::pow(10000.f, -2.f * static_cast<float>(i) / static_cast<float>(c.head_dim));
        RopeParams rope;
        rope.n_heads = c.n_kv_heads;
        rope.head_dim = c.head_dim;
        rope.rope_dim = c.head_dim;
        rope.inv_freq = inv_freq.data();
        AttentionParams p;
        p.n_heads = c.n_heads;
        p.n_kv_heads = c.n_kv_heads;
        p.head_dim = c.head_dim;
        p.scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
        p.rope = &rope;

        KvView view_c, view_v;
        view_c.n_segments = view_v.n_segments = static_cast<int>(c.segs.size());
        view_c.window = view_v.window = c.window;
        view_c.pinned_query_pos = view_v.pinned_query_pos = c.pinned_query_pos;
        for (size_t s = 0; s < c.segs.size(); ++s) {
            const SegSpec& ss = c.segs[s];
            const int64_t rows = ss.skip + ss.n_tokens + 2;  // spare rows after the segment
            std::vector<uint8_t> k = kv_bytes(c.type, static_cast<size_t>(rows * kv_width), rng);
            std::vector<uint8_t> v = kv_bytes(c.type, static_cast<size_t>(rows * kv_width), rng);
            for (KvView* view : {&view_c, &view_v}) {
                Backend& b = view == &view_c ? *cpu_ : *vk_;
                const size_t pad = view == &view_c ? 0 : 2 * s;  // Vulkan: F16 rows at half-word offsets
                KvSegment& seg = view->seg[s];
                seg.k = upload(b, c.type, rows, kv_width, k.data(), c.type == DType::F32 ? 4 * s : pad);
                seg.v = upload(b, c.type, rows, kv_width, v.data());
                seg.n_tokens = ss.n_tokens;
                seg.first_pos = ss.first_pos;
                seg.skip = ss.skip;
                seg.pinned = ss.pinned;
            }
        }
        std::vector<float> q = random_floats(static_cast<size_t>(n_q * q_width), rng, -2.f, 2.f);
        Tensor qc = upload_f32(*cpu_, n_q, q_width, q), qv = upload_f32(*vk_, n_q, q_width, q, 8);
        Tensor oc = zeros(*cpu_, DType::F32, n_q, q_width), ov = zeros(*vk_, DType::F32, n_q, q_width);
        cpu_->attention(qc, c.q_pos.data(), view_c, p, oc);
        vk_->attention(qv, c.q_pos.data(), view_v, p, ov);
        const std::vector<float> want = download_f32(*cpu_, oc), got = download_f32(*vk_, ov);
        bool all_zero = true;
        for (float x : want) all_zero = all_zero && x == 0.f;
        if (all_zero)
            EXPECT_EQ(got, want);
        else
            EXPECT_LT(normalized_error(got, want), 1e-4);
    }
}

}  // namespace
}  // namespace ekv_vk_test
