// Attention parity: the Vulkan backend against the CPU backend over cache
// views of plain F16/F32 segments (backend/parity_attention_cases.h).
#include "backend/parity_attention_cases.h"
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {
namespace {

class VulkanAttention : public AttentionParityCases<VulkanParity> {};

TEST_F(VulkanAttention, MatchesCpuOverSegmentViews) { attention_matches_cpu_over_segment_views(); }

}  // namespace
}  // namespace ekv_vk_test
