// The Mamba and Whisper ops on Vulkan against the CPU backend on the same
// bytes (backend/parity_model_ops_cases.h), then whole models
// (backend/parity_model_cases.h): the tiny Mamba, Jamba and Whisper
// fixtures give the CPU's greedy tokens and logits on Vulkan with their
// natural caches, also in device memory the host cannot map, and (opt-in,
// slow on lavapipe) the real Whisper tiny.en the CPU's transcript.
#define EKV_EXPERIMENTAL  // the audio API
#include <cstdio>
#include <cstdlib>

#include "backend/parity_model_cases.h"
#include "backend/parity_model_ops_cases.h"
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {
namespace {

class VulkanModelOps : public ModelOpsParityCases<VulkanParity> {
protected:
    // The recorded error's message (cleared), or "" when there is none.
    std::string take_vk_error() {
        vk_->synchronize();
        const std::string msg = vkb().status().ok() ? "" : vkb().status().message();
        vkb().clear_error();
        return msg;
    }
};

TEST_F(VulkanModelOps, SsmConvMatchesCpu) { ssm_conv_matches_cpu(); }

TEST_F(VulkanModelOps, SsmScanMatchesCpu) { ssm_scan_matches_cpu(); }

TEST_F(VulkanModelOps, LayerNormMatchesCpu) { layer_norm_matches_cpu(); }

TEST_F(VulkanModelOps, GeluErfMatchesCpu) { gelu_erf_matches_cpu(); }

TEST_F(VulkanModelOps, AddBiasMatchesCpu) { add_bias_matches_cpu(); }

TEST_F(VulkanModelOps, Im2Col1dMatchesCpu) { im2col_1d_matches_cpu(); }

// Contract violations are recorded errors naming the op, never reads or
// writes out of bounds; the backend works again once the error is cleared.
TEST_F(VulkanModelOps, MisuseIsReportedAndRecoverable) {
    std::mt19937 rng(27);
    const Pair x = both(10, 4, rng);
    Pair out = both_zeros(9, 12);  // a kernel of 3, pad 1 gives 10 rows
    vk_->im2col_1d(x.dev, 3, 1, 1, out.dev);
    EXPECT_NE(take_vk_error().find("im2col_1d"), std::string::npos);

    const Pair state = both(3, 4, rng), w = both(4, 4, rng), b = both(1, 4, rng);
    Pair conv_out = both_zeros(10, 4);
    Tensor aliased = state.dev;  // state_out over state_in
    vk_->ssm_conv(x.dev, state.dev, w.dev, b.dev, aliased, conv_out.dev);
    EXPECT_NE(take_vk_error().find("ssm_conv"), std::string::npos);

    const Pair wide_a = both(4, 2000, rng, -1.f, -0.5f), wide_state = both_zeros(4, 2000);
    const Pair bm = both(10, 2000, rng), ones = both(1, 4, rng);
    Pair y = both_zeros(10, 4), state_out = both_zeros(4, 2000);
    vk_->ssm_scan(x.dev, x.dev, ones.dev, wide_a.dev, bm.dev, bm.dev, ones.dev, wide_state.dev, state_out.dev, y.dev);
    EXPECT_NE(take_vk_error().find("states per channel"), std::string::npos);

    Pair fine = both_zeros(10, 12);
    cpu_->im2col_1d(x.cpu, 3, 1, 1, fine.cpu);
    vk_->im2col_1d(x.dev, 3, 1, 1, fine.dev);
    EXPECT_TRUE(equal(fine));
}

// ---- Whole models -----------------------------------------------------------

// expect_device_matches_cpu on Vulkan; unmapped: Vulkan device memory the
// host cannot map (as on discrete GPUs), so any host access to it from the
// model code would fail. The validation layer must stay silent.
double expect_vulkan_matches_cpu(const std::string& path, const Decode& decode, double tolerance,
                                 bool unmapped = false) {
    const int64_t validation_errors = vk::validation_error_count();
    const double worst =
        expect_device_matches_cpu(EKV_BACKEND_VULKAN, path, decode, tolerance, [unmapped](const std::string& p) {
            if (unmapped) setenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY", "1", 1);
            ekv_test::ModelPtr m = load_on(p, EKV_BACKEND_VULKAN);
            if (unmapped) unsetenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY");
            return m;
        });
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
    return worst;
}

TEST(VulkanModelArchitectures, TinyMambaMatchesCpu) {
    const Decode d = tiny_mamba_decode();
    ASSERT_FALSE(d.prompt.empty());
    const double worst = expect_vulkan_matches_cpu(tiny_mamba_path(), d, kF32KvTolerance);
    const double unmapped = expect_vulkan_matches_cpu(tiny_mamba_path(), d, kF32KvTolerance, true);
    std::printf("[ vulkan   ] tiny mamba: worst normalized logit error vs CPU %.2e (unmapped memory: %.2e)\n",
                worst, unmapped);
}

TEST(VulkanModelArchitectures, TinyJambaMatchesCpu) {
    Decode d = tiny_jamba_decode();
    ASSERT_FALSE(d.prompt.empty());
    const double worst = expect_vulkan_matches_cpu(tiny_jamba_path(), d, kF32KvTolerance);
    d.dtype = EKV_KV_F16;  // and the hybrid cache's states and KV in memory the host cannot map
    const double worst_f16 = expect_vulkan_matches_cpu(tiny_jamba_path(), d, kF16KvTolerance, true);
    std::printf("[ vulkan   ] tiny jamba: worst normalized logit error vs CPU %.2e (f32 KV), %.2e (f16 KV, "
                "unmapped memory)\n",
                worst, worst_f16);
}

TEST(VulkanModelArchitectures, TinyWhisperMatchesCpu) {
    Pcm audio;
    ASSERT_TRUE(audio.read(tiny_whisper_dir() + "/speech.wav"));
    const Decode d = tiny_whisper_decode(audio);
    ASSERT_FALSE(d.prompt.empty());
    const double worst = expect_vulkan_matches_cpu(tiny_whisper_dir() + "/tiny_whisper.gguf", d, kWhisperTolerance);
    std::printf("[ vulkan   ] tiny whisper: worst normalized logit error vs CPU %.2e\n", worst);
}

// Real weights: tiny.en's greedy transcript of the speech fixture on Vulkan
// equals the CPU's (which test_whisper_real.cpp checks is the sentence), with
// the default F16 KV. Its encoder takes about a minute on lavapipe
// (measured 69 s, error 2.1e-4).
TEST(VulkanModelArchitectures, WhisperTinyEnTranscriptMatchesCpu) {
    const std::string path = ekv_test::whisper_path();
    if (path.empty()) GTEST_SKIP() << "EKV_WHISPER_GGUF is not set";
    Pcm audio;
    ASSERT_TRUE(audio.read(ekv_test::fixtures_dir() + "/whisper_real/quick_brown_fox.wav"));
    const double worst = expect_vulkan_matches_cpu(path, whisper_tiny_en_decode(audio), kF16KvTolerance);
    std::printf("[ vulkan   ] whisper tiny.en: worst normalized logit error vs CPU %.2e\n", worst);
}

}  // namespace
}  // namespace ekv_vk_test
