// KIVI on Vulkan against the CPU backend: the quantize shaders write the
// reference's bytes (codes, f16 scales and minimums) for keys and values,
// attention over quantized groups (with a ring's skip) next to a
// full-precision residual matches, and shapes the word-addressed shaders
// cannot take are refused with a status, not garbage.
#include "backend/vulkan_test_util.h"
#include "core/kivi.h"

namespace ekv_vk_test {
namespace {

class VulkanKivi : public VulkanParity {};

struct QuantCase {
    int kv_width, head_dim, group, nbits;
    DType src;
};

const QuantCase kQuantCases[] = {
    {192, 64, 32, 2, DType::F16}, {192, 64, 32, 4, DType::F16}, {192, 64, 32, 8, DType::F32},
    {128, 32, 16, 4, DType::F32}, {256, 128, 64, 2, DType::F16}, {64, 16, 8, 2, DType::F16},
};

std::vector<uint8_t> rows_of(DType t, const std::vector<float>& x) {
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
std::vector<float> kv_rows(int rows, int kv_width, std::mt19937& rng) {
    std::vector<float> x = random_floats(static_cast<size_t>(rows) * kv_width, rng, -1.f, 1.f);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < kv_width; c += 17) x[static_cast<size_t>(r) * kv_width + c] *= 12.f;
    return x;
}

TEST_F(VulkanKivi, QuantizeWritesTheReferenceBytes) {
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
            Backend& be = b ? *vk_ : *cpu_;
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
TEST_F(VulkanKivi, AttentionOverQuantizedGroupsMatchesCpu) {
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
            Backend& be = b ? *vk_ : *cpu_;
            KvView view;
            view.n_segments = 2;
            KvSegment& s0 = view.seg[0];
            s0.format = KvFormat::Kivi;
            s0.k = upload(be, DType::I8, c.n_groups, static_cast<int64_t>(kb), kq.data(), 8 * static_cast<size_t>(b));
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

TEST_F(VulkanKivi, ShapesTheShadersCannotTakeAreRefused) {
    // head_dim 4 at 2 bits: a head's codes are one byte, a token's row 3 bytes.
    KiviParams p;
    p.nbits = 2;
    p.group = 4;
    p.head_dim = 4;
    Tensor src = zeros(*vk_, DType::F32, 4, 12), dst = zeros(*vk_, DType::I8, 2, 64);
    vk_->kivi_quantize_keys(src, 0, dst, 0, p);
    EXPECT_EQ(vkb().status().code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(vkb().status().message().find("kivi_quantize_keys"), std::string::npos) << vkb().status().message();
    vkb().clear_error();
    p.head_dim = 64;
    p.nbits = 3;
    Tensor src2 = zeros(*vk_, DType::F16, 8, 64), q = zeros(*vk_, DType::F32, 1, 64), o = zeros(*vk_, DType::F32, 1, 64);
    vk_->kivi_quantize_values(src2, 0, 1, dst, 0, p);
    EXPECT_EQ(vkb().status().code(), EKV_ERR_INVALID_ARGUMENT);
    vkb().clear_error();
    KvView view;
    view.n_segments = 1;
    view.seg[0].format = KvFormat::Kivi;
    view.seg[0].k = dst;
    view.seg[0].v = dst;
    view.seg[0].n_tokens = 1;
    view.seg[0].kivi = p;  // 3 bits
    AttentionParams ap;
    ap.n_heads = ap.n_kv_heads = 1;
    ap.head_dim = 64;
    const int32_t pos = 0;
    vk_->attention(q, &pos, view, ap, o);
    EXPECT_EQ(vkb().status().code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(vkb().status().message().find("KIVI"), std::string::npos) << vkb().status().message();
    vkb().clear_error();
}

}  // namespace
}  // namespace ekv_vk_test
