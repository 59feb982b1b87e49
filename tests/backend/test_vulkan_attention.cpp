// Attention parity: the Vulkan backend against the CPU backend over cache
// views of plain F16/F32 segments (backend/parity_attention_cases.h), in
// the device's own attention shape (on lavapipe the CPU shape,
// attention_segment_rows.comp) and, forced, in the GPU shape
// (attention_segment.comp), so both shaders stay tested on lavapipe.
#include <cmath>
#include <cstdlib>
#include <random>

#include "backend/parity_attention_cases.h"
#include "backend/parity_ops_cases.h"
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {
namespace {

class VulkanAttention : public AttentionParityCases<VulkanParity> {};

TEST_F(VulkanAttention, MatchesCpuOverSegmentViews) { attention_matches_cpu_over_segment_views(); }
TEST_F(VulkanAttention, PrefillMatchesCpu) { prefill_attention_matches_cpu(); }
TEST_F(VulkanAttention, KiviRunBetweenPinnedSinksAndAWindowMatchesCpu) {
    kivi_run_between_pinned_sinks_and_a_window_matches_cpu();
}

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
TEST_F(VulkanAttentionGpuShape, PrefillMatchesCpu) { prefill_attention_matches_cpu(); }
TEST_F(VulkanAttentionGpuShape, KiviRunBetweenPinnedSinksAndAWindowMatchesCpu) {
    kivi_run_between_pinned_sinks_and_a_window_matches_cpu();
}

TEST_F(VulkanAttentionGpuShape, KiviOverQuantizedGroupsMatchesCpu) {
    kivi_attention_over_quantized_groups_matches_cpu();
}

TEST_F(VulkanAttentionGpuShape, SoftcappedWithNeoxPinnedSegment) { softcapped_attention_with_neox_pinned_segment(); }

// One segment longer than an invocation of attention_segment.comp may walk
// on llvmpipe, which silently ends an invocation after 65535 loop iterations
// (~7.8k keys at head_dim 256 in one pass): vulkan_attention.cpp splits it
// into passes there. GQA (2 query heads on 1 KV head), ring skips, and a
// decode query next to a small causal batch.
template <class Base>
class LongSegmentCases : public Base {
protected:
    struct LongCase {
        const char* name;
        int head_dim;
        int nbits, group;  // nbits 0: F16 rows, else KIVI codes in groups of `group` tokens
        int32_t n_tokens, skip, window;
        std::vector<int32_t> q_pos;
    };

    // The largest error of the Vulkan output against the CPU's, relative to its RMS.
    double long_segment_error(const LongCase& c) {
        const int n_heads = 2, n_kv_heads = 1;
        const int kv_width = n_kv_heads * c.head_dim, q_width = n_heads * c.head_dim;
        const int32_t rows = c.skip + c.n_tokens;
        std::mt19937 rng(static_cast<uint32_t>(c.n_tokens));
        KiviParams kp;
        kp.nbits = c.nbits;
        kp.group = c.group;
        kp.head_dim = c.head_dim;
        DType type = DType::F16;
        int64_t k_rows = rows, k_cols = kv_width, v_cols = kv_width;
        std::vector<uint8_t> k, v;
        if (c.nbits == 0) {
            k = kv_bytes(DType::F16, static_cast<size_t>(rows) * kv_width, rng);
            v = kv_bytes(DType::F16, static_cast<size_t>(rows) * kv_width, rng);
        } else {
            type = DType::I8;
            k_rows = (rows + c.group - 1) / c.group;
            k_cols = static_cast<int64_t>(kivi_key_group_bytes(kv_width, c.group, c.nbits));
            v_cols = static_cast<int64_t>(kivi_value_row_bytes(kv_width, c.group, c.nbits));
            const std::vector<float> kx = kv_rows(static_cast<int>(k_rows) * c.group, kv_width, rng);
            const std::vector<float> vx = kv_rows(rows, kv_width, rng);
            k.resize(static_cast<size_t>(k_rows * k_cols));
            v.resize(static_cast<size_t>(rows * v_cols));
            for (int64_t g = 0; g < k_rows; ++g)
                kivi_quantize_key_group(kx.data() + g * c.group * kv_width, false, 4 * kv_width, kv_width, c.head_dim,
                                        c.group, c.nbits, k.data() + g * k_cols);
            for (int32_t t = 0; t < rows; ++t)
                kivi_quantize_value_row(vx.data() + static_cast<size_t>(t) * kv_width, false, kv_width, c.head_dim,
                                        c.group, c.nbits, v.data() + t * v_cols);
        }
        const int64_t n_q = static_cast<int64_t>(c.q_pos.size());
        const std::vector<float> q = random_floats(static_cast<size_t>(n_q * q_width), rng, -1.f, 1.f);
        AttentionParams ap;
        ap.n_heads = n_heads;
        ap.n_kv_heads = n_kv_heads;
        ap.head_dim = c.head_dim;
        ap.scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
        std::vector<float> out[2];
        for (int b = 0; b < 2; ++b) {
            Backend& be = b ? *this->dev_ : *this->cpu_;
            KvView view;
            view.n_segments = 1;
            view.window = c.window;
            KvSegment& seg = view.seg[0];
            seg.format = c.nbits == 0 ? KvFormat::Plain : KvFormat::Kivi;
            seg.k = this->upload(be, type, k_rows, k_cols, k.data(), 4 * static_cast<size_t>(b));
            seg.v = this->upload(be, type, rows, v_cols, v.data());
            seg.n_tokens = c.n_tokens;
            seg.skip = c.skip;
            seg.kivi = kp;
            Tensor qt = this->upload_f32(be, n_q, q_width, q), ot = this->zeros(be, DType::F32, n_q, q_width);
            be.attention(qt, c.q_pos.data(), view, ap, ot);
            out[b] = this->download_f32(be, ot);
        }
        return normalized_error(out[1], out[0]);
    }
};

// The GPU shape, forced.
class VulkanAttentionLongSegment : public LongSegmentCases<VulkanAttentionGpuShape> {};

TEST_F(VulkanAttentionLongSegment, PastLavapipesLoopCapMatchesCpu) {
    const LongCase cases[] = {
        {"f16_hd256_decode", 256, 0, 0, 9000, 0, 0, {8999}},
        {"f16_hd256_batch_ring_window", 256, 0, 0, 9000, 37, 8500, {8999, 8998, 7200, 3000}},
        // A ring's skip of 10: pass boundaries fall inside quantization groups.
        {"kivi4_hd256_decode", 256, 4, 64, 9014, 10, 0, {9013}},
        {"kivi2_hd256_batch", 256, 2, 64, 9014, 10, 0, {9013, 7500}},
    };
    for (const LongCase& c : cases) {
        SCOPED_TRACE(c.name);
        EXPECT_LT(long_segment_error(c), 1e-4);
    }
}

// The device's own shape: on lavapipe its KIVI segments, too, take attention_segment.comp.
class VulkanAttentionLongKivi : public LongSegmentCases<VulkanAttention> {};

TEST_F(VulkanAttentionLongKivi, PastLavapipesLoopCapMatchesCpu) {
    EXPECT_LT(long_segment_error({"kivi8_hd256_group128", 256, 8, 128, 8100, 60, 0, {8099, 8000}}), 1e-4);
}

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
