// Gemma on Vulkan (NeoX RoPE, GeGLU, the embedding scale, Gemma 2's
// soft-capped attention, sliding-window layers): the tiny random fixtures
// give the CPU backend's logits and greedy tokens with the hybrid and dynamic
// caches (and a sink cache, whose pinned keys need the NeoX re-rotation),
// and the real Gemma 3 270M (Q4_K/Q6_K/Q5_0/Q8_0 weights) generates the
// CPU's tokens.
#define EKV_EXPERIMENTAL  // the audio API (backend/parity_model_cases.h)
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/vulkan/vk_instance.h"
#include "backend/parity_model_cases.h"
#include "backend/vulkan_test_util.h"
#include "model/test_util.h"

namespace ekv_vk_test {
namespace {

class VulkanTinyGemma : public ::testing::TestWithParam<const char*> {};

// The fixtures' 12-token prompt and 16 greedy steps (backend/parity_model_cases.h).
TEST_P(VulkanTinyGemma, GreedyTokensAndLogitsEqualCpu) {
    const int64_t validation_errors = vk::validation_error_count();
    tiny_gemma_greedy_tokens_and_logits_equal_cpu(EKV_BACKEND_VULKAN, GetParam());
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, VulkanTinyGemma, ::testing::Values("tiny_gemma2", "tiny_gemma3"),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });

}  // namespace
}  // namespace ekv_vk_test
