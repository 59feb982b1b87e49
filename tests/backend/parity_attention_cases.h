// Attention and KIVI parity cases shared by the device backends' tests
// (Vulkan, CUDA), against the CPU backend: attention over cache views of
// plain F16/F32 segments (each in its own buffer: causal prefill, several
// 64-key blocks, skip offsets, a sliding window, pinned sink segments with
// their query re-rotation); KIVI quantization writing the reference's bytes
// (codes, f16 scales and minimums) for keys and values; attention over
// quantized groups (with a ring's skip) next to a full-precision residual.
#pragma once
#include "backend/device_parity.h"
#include "core/kivi.h"

namespace ekv_parity {

struct SegSpec {
    int32_t n_tokens, first_pos, skip;
    bool pinned;
};

struct AttentionCase {
    const char* name;
    DType type;
    int n_heads, n_kv_heads, head_dim;
    std::vector<SegSpec> segs;
    int32_t window, pinned_query_pos;
    std::vector<int32_t> q_pos;
    float softcap = 0.f;
};

// Positions from .. to, inclusive.
inline std::vector<int32_t> positions(int32_t from, int32_t to) {
    std::vector<int32_t> p;
    for (int32_t i = from; i <= to; ++i) p.push_back(i);
    return p;
}

inline std::vector<uint8_t> kv_bytes(DType t, size_t n, std::mt19937& rng) {
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

struct QuantCase {
    int kv_width, head_dim, group, nbits;
    DType src;
};

inline const QuantCase kQuantCases[] = {
    {192, 64, 32, 2, DType::F16}, {192, 64, 32, 4, DType::F16}, {192, 64, 32, 8, DType::F32},
    {128, 32, 16, 4, DType::F32}, {256, 128, 64, 2, DType::F16}, {64, 16, 8, 2, DType::F16},
};

inline std::vector<uint8_t> rows_of(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> out(x.size() * (t == DType::F16 ? 2 : 4));
    for (size_t i = 0; i < x.size(); ++i) {
        if (t == DType::F16) {
            const uint16_t h = f32_to_f16(x[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        } else {
            std::memcpy(out.data() + 4 * i, &x[i], 4);
        }
    }
    return out;
}

// Random rows with per-channel outliers (the case KIVI's per-channel keys exist for).
inline std::vector<float> kv_rows(int rows, int kv_width, std::mt19937& rng) {
    std::vector<float> x = random_floats(static_cast<size_t>(rows) * kv_width, rng, -1.f, 1.f);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < kv_width; c += 17) x[static_cast<size_t>(r) * kv_width + c] *= 12.f;
    return x;
}

// Fixture: a DeviceParity<Kind> (or a class derived from one).
template <class Fixture>
class AttentionParityCases : public Fixture {
protected:
    using Fixture::cpu_;
    using Fixture::dev_;
    using Fixture::download;
    using Fixture::download_f32;
    using Fixture::upload;
    using Fixture::upload_f32;
    using Fixture::zeros;

    void attention_matches_cpu_over_segment_views() {
        const std::vector<AttentionCase> cases = {
            {"decode_f16", DType::F16, 9, 3, 64, {{37, 0, 0, false}}, 0, 0, {36}},
            {"prefill_causal_f16", DType::F16, 9, 3, 64, {{20, 0, 0, false}}, 0, 0, {15, 16, 17, 18, 19}},
            {"three_key_blocks_hd128", DType::F16, 4, 2, 128, {{150, 0, 0, false}}, 0, 0, {149, 100}},
            {"two_segments_skip_f32", DType::F32, 6, 2, 64, {{10, 0, 0, false}, {12, 10, 5, false}}, 0, 0, {21, 15}},
            {"sink_ring_window_pinned", DType::F16, 9, 3, 64,
             {{4, 0, 0, true}, {5, 30, 3, false}, {6, 35, 0, false}}, 8, 12, {40, 38}},
            {"odd_head_dim_window", DType::F16, 2, 1, 40, {{70, 0, 0, false}}, 9, 0, {69, 30, 5}},
            {"nothing_visible", DType::F16, 2, 2, 64, {{5, 10, 0, false}}, 0, 0, {3}},
            {"empty_view", DType::F16, 2, 2, 64, {}, 0, 0, {0}},
            // Whisper's cross-attention: 1500 encoder keys, enough queries for
            // several workgroups of the CPU shape.
            {"whisper_cross_1500_keys_f32", DType::F32, 6, 6, 64, {{1500, 0, 0, false}}, 0, 0,
             std::vector<int32_t>(36, 1499)},
            // More keys than the CPU shape walks in one pass at head_dim 256
            // (lavapipe's loop budget, vulkan_attention.cpp): two passes.
            {"long_segment_hd256_f16", DType::F16, 2, 1, 256, {{5000, 0, 0, false}}, 0, 0, {4999, 2000}},
        };
        std::mt19937 rng(11);
        for (const AttentionCase& c : cases) check_attention_case(c, rng);
    }

    // Many queries at once (a prompt's prefill): on CUDA, plain F16 views
    // take the tensor-core kernel; F32 and head_dim 40 stay on the other.
    void prefill_attention_matches_cpu() {
        const std::vector<AttentionCase> cases = {
            {"prefill_gqa_hd64", DType::F16, 9, 3, 64, {{60, 0, 0, false}}, 0, 0, positions(0, 59)},
            {"prefill_hd128_two_segments_skip", DType::F16, 8, 2, 128,
             {{40, 0, 0, false}, {30, 40, 7, false}}, 0, 0, positions(35, 69)},
            {"prefill_hd256_window_softcap", DType::F16, 4, 1, 256, {{50, 0, 0, false}}, 16, 0, positions(10, 49),
             4.f},
            {"prefill_sink_ring_window_pinned", DType::F16, 9, 3, 64,
             {{4, 0, 0, true}, {20, 30, 5, false}, {12, 50, 0, false}}, 24, 40, positions(45, 61)},
            {"prefill_no_gqa_hd32_two_token_tiles", DType::F16, 2, 2, 32, {{33, 0, 0, false}}, 0, 0,
             positions(0, 32)},
            {"prefill_f32", DType::F32, 4, 2, 64, {{30, 0, 0, false}}, 0, 0, positions(0, 29)},
            {"prefill_hd40", DType::F16, 4, 2, 40, {{30, 0, 0, false}}, 0, 0, positions(0, 29)},
        };
        std::mt19937 rng(12);
        for (const AttentionCase& c : cases) check_attention_case(c, rng);
    }

    void check_attention_case(const AttentionCase& c, std::mt19937& rng) {
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
        p.softcap = c.softcap;

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
                Backend& b = view == &view_c ? *cpu_ : *dev_;
                const size_t pad = view == &view_c ? 0 : 2 * s;  // device: F16 rows at half-word offsets
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
        Tensor qc = upload_f32(*cpu_, n_q, q_width, q), qv = upload_f32(*dev_, n_q, q_width, q, 8);
        Tensor oc = zeros(*cpu_, DType::F32, n_q, q_width), ov = zeros(*dev_, DType::F32, n_q, q_width);
        cpu_->attention(qc, c.q_pos.data(), view_c, p, oc);
        dev_->attention(qv, c.q_pos.data(), view_v, p, ov);
        const std::vector<float> want = download_f32(*cpu_, oc), got = download_f32(*dev_, ov);
        bool all_zero = true;
        for (float x : want) all_zero = all_zero && x == 0.f;
        if (all_zero)
            EXPECT_EQ(got, want);
        else
            EXPECT_LT(normalized_error(got, want), 1e-4);
        if (std::getenv("EKV_PRINT_ATTENTION_ERROR"))
            std::printf("%s: %.3g\n", c.name, static_cast<double>(normalized_error(got, want)));
    }

    void kivi_quantize_writes_the_reference_bytes() {
        std::mt19937 rng(5);
        for (const QuantCase& c : kQuantCases) {
            SCOPED_TRACE(std::to_string(c.kv_width) + "/" + std::to_string(c.head_dim) + " group " +
                         std::to_string(c.group) + ", " + std::to_string(c.nbits) + " bits, " + dtype_name(c.src));
            KiviParams p;
            p.nbits = c.nbits;
            p.group = c.group;
            p.head_dim = c.head_dim;
            const int src_rows = c.group + 3;  // quantize rows 2 .. group + 1
            const std::vector<uint8_t> src = rows_of(c.src, kv_rows(src_rows, c.kv_width, rng));
            const int64_t kb = static_cast<int64_t>(kivi_key_group_bytes(c.kv_width, c.group, c.nbits));
            const int64_t vb = static_cast<int64_t>(kivi_value_row_bytes(c.kv_width, c.group, c.nbits));
            std::vector<uint8_t> got[2][2];  // [backend][keys, values]
            for (int b = 0; b < 2; ++b) {
                Backend& be = b ? *dev_ : *cpu_;
                Tensor s = upload(be, c.src, src_rows, c.kv_width, src.data(), 4 * static_cast<size_t>(b));
                Tensor k = zeros(be, DType::I8, 3, kb), v = zeros(be, DType::I8, src_rows + 1, vb);
                be.kivi_quantize_keys(s, 2, k, 1, p);
                be.kivi_quantize_values(s, 2, c.group, v, 1, p);
                got[b][0] = download(be, k);
                got[b][1] = download(be, v);
            }
            // Untouched rows stay zero on both, and every written byte matches.
            EXPECT_EQ(got[1][0], got[0][0]) << "key group";
            EXPECT_EQ(got[1][1], got[0][1]) << "value rows";
            EXPECT_NE(got[0][0], std::vector<uint8_t>(got[0][0].size(), 0)) << "the reference wrote nothing";
        }
    }

    // A KIVI segment (quantized groups, the first `skip` tokens of its first
    // group already dropped by a ring) followed by a plain F16 residual segment.
    void kivi_attention_over_quantized_groups_matches_cpu() {
        struct Case {
            int n_heads, n_kv_heads, head_dim, group, nbits, n_groups, skip, residual;
            std::vector<int32_t> q_pos;  // relative to the segment's first position
        };
        const Case cases[] = {
            {9, 3, 64, 32, 2, 3, 0, 20, {115}},          // SmolLM2's shape, decode
            {9, 3, 64, 32, 4, 2, 5, 9, {60, 62, 30}},    // ring skip, causal queries inside the groups
            {4, 2, 128, 64, 8, 2, 0, 70, {197, 150}},    // wide heads, several key blocks
            {4, 4, 16, 8, 2, 5, 3, 4, {40, 10}},         // tiny head_dim: one code byte per head
        };
        std::mt19937 rng(9);
        for (const Case& c : cases) {
            SCOPED_TRACE(std::to_string(c.head_dim) + " head_dim, " + std::to_string(c.nbits) + " bits, group " +
                         std::to_string(c.group));
            const int kv_width = c.n_kv_heads * c.head_dim, q_width = c.n_heads * c.head_dim;
            KiviParams kp;
            kp.nbits = c.nbits;
            kp.group = c.group;
            kp.head_dim = c.head_dim;
            const int q_tokens = c.n_groups * c.group;
            const std::vector<float> kx = kv_rows(q_tokens, kv_width, rng), vx = kv_rows(q_tokens, kv_width, rng);
            const size_t kb = kivi_key_group_bytes(kv_width, c.group, c.nbits);
            const size_t vb = kivi_value_row_bytes(kv_width, c.group, c.nbits);
            std::vector<uint8_t> kq(kb * c.n_groups), vq(vb * q_tokens);
            for (int g = 0; g < c.n_groups; ++g)
                kivi_quantize_key_group(kx.data() + static_cast<size_t>(g) * c.group * kv_width, false, 4 * kv_width,
                                        kv_width, c.head_dim, c.group, c.nbits, kq.data() + g * kb);
            for (int t = 0; t < q_tokens; ++t)
                kivi_quantize_value_row(vx.data() + static_cast<size_t>(t) * kv_width, false, kv_width, c.head_dim,
                                        c.group, c.nbits, vq.data() + t * vb);
            const std::vector<uint8_t> rk = rows_of(DType::F16, kv_rows(c.residual, kv_width, rng));
            const std::vector<uint8_t> rv = rows_of(DType::F16, kv_rows(c.residual, kv_width, rng));
            const int32_t n_quant = q_tokens - c.skip;
            std::vector<int32_t> q_pos = c.q_pos;
            const int n_q = static_cast<int>(q_pos.size());
            const std::vector<float> q = random_floats(static_cast<size_t>(n_q) * q_width, rng, -1.f, 1.f);
            AttentionParams ap;
            ap.n_heads = c.n_heads;
            ap.n_kv_heads = c.n_kv_heads;
            ap.head_dim = c.head_dim;
            ap.scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
            std::vector<float> out[2];
            for (int b = 0; b < 2; ++b) {
                Backend& be = b ? *dev_ : *cpu_;
                KvView view;
                view.n_segments = 2;
                KvSegment& s0 = view.seg[0];
                s0.format = KvFormat::Kivi;
                s0.k = upload(be, DType::I8, c.n_groups, static_cast<int64_t>(kb), kq.data(),
                              8 * static_cast<size_t>(b));
                s0.v = upload(be, DType::I8, q_tokens, static_cast<int64_t>(vb), vq.data());
                s0.n_tokens = n_quant;
                s0.skip = c.skip;
                s0.first_pos = 0;
                s0.kivi = kp;
                KvSegment& s1 = view.seg[1];
                s1.k = upload(be, DType::F16, c.residual, kv_width, rk.data());
                s1.v = upload(be, DType::F16, c.residual, kv_width, rv.data());
                s1.n_tokens = c.residual;
                s1.first_pos = n_quant;
                Tensor qt = upload_f32(be, n_q, q_width, q), ot = zeros(be, DType::F32, n_q, q_width);
                be.attention(qt, q_pos.data(), view, ap, ot);
                out[b] = download_f32(be, ot);
            }
            EXPECT_LT(normalized_error(out[1], out[0]), 1e-4);
        }
    }

    // A sink cache's KIVI view after a crop (seen in CudaCacheOps'
    // crop/clone test): pinned f16 sinks, a KIVI run that starts inside one
    // key group and ends in the next, the f16 residual, a window.
    void kivi_run_between_pinned_sinks_and_a_window_matches_cpu() {
        const int n_heads = 4, n_kv_heads = 2, head_dim = 16, group = 8, nbits = 4, kv_width = n_kv_heads * head_dim;
        const int q_width = n_heads * head_dim, n_sinks = 4, skip = 6, n_groups = 2, residual = 10;
        std::mt19937 rng(12);
        KiviParams kp;
        kp.nbits = nbits;
        kp.group = group;
        kp.head_dim = head_dim;
        const int q_tokens = n_groups * group, n_quant = q_tokens - skip;
        const std::vector<float> kx = kv_rows(q_tokens, kv_width, rng), vx = kv_rows(q_tokens, kv_width, rng);
        const size_t kb = kivi_key_group_bytes(kv_width, group, nbits), vb = kivi_value_row_bytes(kv_width, group, nbits);
        std::vector<uint8_t> kq(kb * n_groups), vq(vb * q_tokens);
        for (int g = 0; g < n_groups; ++g)
            kivi_quantize_key_group(kx.data() + static_cast<size_t>(g) * group * kv_width, false, 4 * kv_width, kv_width,
                                    head_dim, group, nbits, kq.data() + g * kb);
        for (int t = 0; t < q_tokens; ++t)
            kivi_quantize_value_row(vx.data() + static_cast<size_t>(t) * kv_width, false, kv_width, head_dim, group,
                                    nbits, vq.data() + t * vb);
        const std::vector<uint8_t> sk = rows_of(DType::F16, kv_rows(n_sinks, kv_width, rng));
        const std::vector<uint8_t> sv = rows_of(DType::F16, kv_rows(n_sinks, kv_width, rng));
        const std::vector<uint8_t> rk = rows_of(DType::F16, kv_rows(residual, kv_width, rng));
        const std::vector<uint8_t> rv = rows_of(DType::F16, kv_rows(residual, kv_width, rng));
        std::vector<float> inv_freq(head_dim / 2);
        for (size_t i = 0; i < inv_freq.size(); ++i)
            inv_freq[i] = std::pow(10000.f, -2.f * static_cast<float>(i) / static_cast<float>(head_dim));
        RopeParams rope;
        rope.n_heads = n_kv_heads;
        rope.head_dim = head_dim;
        rope.rope_dim = head_dim;
        rope.inv_freq = inv_freq.data();
        AttentionParams ap;
        ap.n_heads = n_heads;
        ap.n_kv_heads = n_kv_heads;
        ap.head_dim = head_dim;
        ap.scale = 1.f / std::sqrt(static_cast<float>(head_dim));
        ap.rope = &rope;
        const int32_t first = 178;  // the KIVI run's first position
        for (std::vector<int32_t> q_pos : {std::vector<int32_t>{197}, std::vector<int32_t>{198}, std::vector<int32_t>{197, 196}}) {
            SCOPED_TRACE("query at " + std::to_string(q_pos[0]));
            const int n_q = static_cast<int>(q_pos.size());
            const std::vector<float> q = random_floats(static_cast<size_t>(n_q) * q_width, rng, -1.f, 1.f);
            std::vector<float> out[2];
            for (int b = 0; b < 2; ++b) {
                Backend& be = b ? *dev_ : *cpu_;
                KvView view;
                view.n_segments = 3;
                view.window = 20;
                view.pinned_query_pos = 23;
                KvSegment& s0 = view.seg[0];
                s0.k = upload(be, DType::F16, n_sinks, kv_width, sk.data());
                s0.v = upload(be, DType::F16, n_sinks, kv_width, sv.data());
                s0.n_tokens = n_sinks;
                s0.pinned = true;
                KvSegment& s1 = view.seg[1];
                s1.format = KvFormat::Kivi;
                s1.k = upload(be, DType::I8, n_groups, static_cast<int64_t>(kb), kq.data());
                s1.v = upload(be, DType::I8, q_tokens, static_cast<int64_t>(vb), vq.data());
                s1.n_tokens = n_quant;
                s1.skip = skip;
                s1.first_pos = first;
                s1.kivi = kp;
                KvSegment& s2 = view.seg[2];
                s2.k = upload(be, DType::F16, residual, kv_width, rk.data());
                s2.v = upload(be, DType::F16, residual, kv_width, rv.data());
                s2.n_tokens = residual;
                s2.first_pos = first + n_quant;
                Tensor qt = upload_f32(be, n_q, q_width, q), ot = zeros(be, DType::F32, n_q, q_width);
                be.attention(qt, q_pos.data(), view, ap, ot);
                out[b] = download_f32(be, ot);
            }
            EXPECT_LT(normalized_error(out[1], out[0]), 1e-4);
        }
    }
};

}  // namespace ekv_parity
