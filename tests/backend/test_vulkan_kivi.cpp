// KIVI on Vulkan against the CPU backend: the quantize shaders write the
// reference's bytes and attention over quantized groups matches (the shared
// cases: backend/parity_attention_cases.h), and shapes the word-addressed
// shaders cannot take are refused with a status, not garbage.
#include "backend/parity_attention_cases.h"
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {
namespace {

class VulkanKivi : public AttentionParityCases<VulkanParity> {};

TEST_F(VulkanKivi, QuantizeWritesTheReferenceBytes) { kivi_quantize_writes_the_reference_bytes(); }

TEST_F(VulkanKivi, AttentionOverQuantizedGroupsMatchesCpu) { kivi_attention_over_quantized_groups_matches_cpu(); }

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
    EXPECT_EQ(vkb().status().code(), EKV_ERR_UNSUPPORTED);  // like the CPU's (backend/attention_checks.cpp)
    EXPECT_NE(vkb().status().message().find("KIVI"), std::string::npos) << vkb().status().message();
    vkb().clear_error();
}

}  // namespace
}  // namespace ekv_vk_test
