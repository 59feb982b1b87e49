// Attention parity: the Vulkan backend against the CPU backend over cache
// views of plain F16/F32 segments (backend/parity_attention_cases.h), in
// the device's own attention shape (on lavapipe the CPU shape,
// attention_segment_rows.comp) and, forced, in the GPU shape
// (attention_segment.comp), so both shaders stay tested on lavapipe.
#include <cstdlib>

#include "backend/parity_attention_cases.h"
#include "backend/parity_ops_cases.h"
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {
namespace {

class VulkanAttention : public AttentionParityCases<VulkanParity> {};

TEST_F(VulkanAttention, MatchesCpuOverSegmentViews) { attention_matches_cpu_over_segment_views(); }

// Every attention case (plain and KIVI segments, windows, pinned sinks,
// soft-capping, GQA) again on a backend made with
// EKV_VULKAN_ATTENTION_SHAPE=keys: 64 keys per workgroup, shared-memory
// reductions, attention_finish after the passes.
using AllAttentionCases = AttentionParityCases<OpsParityCases<VulkanParity>>;
class VulkanAttentionGpuShape : public AllAttentionCases {
protected:
    static void SetUpTestSuite() {
        setenv("EKV_VULKAN_ATTENTION_SHAPE", "keys", 1);
        AllAttentionCases::SetUpTestSuite();
        unsetenv("EKV_VULKAN_ATTENTION_SHAPE");
    }
};

TEST_F(VulkanAttentionGpuShape, MatchesCpuOverSegmentViews) { attention_matches_cpu_over_segment_views(); }

TEST_F(VulkanAttentionGpuShape, KiviOverQuantizedGroupsMatchesCpu) {
    kivi_attention_over_quantized_groups_matches_cpu();
}

TEST_F(VulkanAttentionGpuShape, SoftcappedWithNeoxPinnedSegment) { softcapped_attention_with_neox_pinned_segment(); }

TEST(VulkanAttentionShape, UnknownShapeIsAClearError) {
    setenv("EKV_VULKAN_ATTENTION_SHAPE", "diagonal", 1);
    std::unique_ptr<Backend> b;
    const Status st = create_backend(EKV_BACKEND_VULKAN, BackendOptions{}, &b);
    unsetenv("EKV_VULKAN_ATTENTION_SHAPE");
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(st.message().find("EKV_VULKAN_ATTENTION_SHAPE"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ekv_vk_test
