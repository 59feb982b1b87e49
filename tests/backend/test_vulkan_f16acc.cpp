// The f16-accumulation matmul variants (EKV_VULKAN_F16_ACCUMULATE=1 on a
// device with shaderFloat16): every weight format against the CPU backend
// within a half-precision tolerance, and visibly different from the default
// f32 variants (so the float16 path is the one that ran).
#include <cstdio>
#include <cstdlib>

#include "backend/vulkan/vk_context.h"
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {
namespace {

// Sets (value non-null) or clears EKV_VULKAN_F16_ACCUMULATE for its scope.
class ScopedF16AccumulateEnv {
public:
    explicit ScopedF16AccumulateEnv(const char* value) {
        const char* before = std::getenv(kName);
        had_ = before != nullptr;
        if (had_) saved_ = before;
        if (value)
            setenv(kName, value, 1);
        else
            unsetenv(kName);
    }
    ~ScopedF16AccumulateEnv() {
        if (had_)
            setenv(kName, saved_.c_str(), 1);
        else
            unsetenv(kName);
    }

private:
    static constexpr const char* kName = "EKV_VULKAN_F16_ACCUMULATE";
    bool had_ = false;
    std::string saved_;
};

class VulkanF16Acc : public VulkanParity {
protected:
    // A Vulkan backend (and a bare context, to read what the device offers)
    // opened with EKV_VULKAN_F16_ACCUMULATE=1.
    static Status open_f16acc(std::unique_ptr<Backend>* backend, std::shared_ptr<vk::Context>* ctx) {
        ScopedF16AccumulateEnv env("1");
        EKV_TRY(vk::Context::create(ekv::BackendOptions(), ctx));
        return create_backend(EKV_BACKEND_VULKAN, BackendOptions{}, backend);
    }
};

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                              DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Each 32-element unit's dot runs in half precision (11-bit significand,
// inputs rounded to half too): a unit sum of magnitude ~2 carries an error
// of a few 1e-3 (ulp 2^-10, 32 rounded products and adds), and the units'
// errors add like a random walk, as does the output, so the normalized error
// does not grow with k. Measured on lavapipe (these seeds): 2.3e-3 .. 3.9e-3
// per format; 1e-2 leaves room for GPUs that fuse or reorder the half
// arithmetic and is still far below a wrong decode or a dropped unit (~1).
constexpr double kF16Tolerance = 1e-2;
// The default f32 variants match the CPU to float round-off.
constexpr double kF32Tolerance = 1e-4;

TEST_F(VulkanF16Acc, EnvRequestFollowsDeviceSupport) {
    std::unique_ptr<Backend> f16;
    std::shared_ptr<vk::Context> ctx;
    ASSERT_TRUE(open_f16acc(&f16, &ctx).ok());
    // Requested: on exactly when the device has shaderFloat16, else silently f32.
    EXPECT_EQ(ctx->f16_accumulate(), ctx->shader_float16());
    std::shared_ptr<vk::Context> plain;
    {
        ScopedF16AccumulateEnv env(nullptr);
        ASSERT_TRUE(vk::Context::create(ekv::BackendOptions(), &plain).ok());
    }
    EXPECT_FALSE(plain->f16_accumulate());
    EXPECT_EQ(plain->shader_float16(), ctx->shader_float16());
}

TEST_F(VulkanF16Acc, MatmulEveryFormatNearCpuAndUnlikeF32) {
    std::unique_ptr<Backend> f16;
    std::shared_ptr<vk::Context> ctx;
    ASSERT_TRUE(open_f16acc(&f16, &ctx).ok());
    if (!ctx->shader_float16()) GTEST_SKIP() << "the device has no shaderFloat16";
    ASSERT_TRUE(ctx->f16_accumulate());
    struct Shape {
        int64_t rows, cols, tokens;
    };
    // k 200: plain formats end a row inside a unit (the shader's partial loop).
    const Shape shapes[] = {{37, 256, 1}, {21, 2048, 5}, {9, 200, 3}};
    std::mt19937 rng(41);
    for (DType t : kWeightTypes) {
        double worst_f16 = 0, worst_f32 = 0;
        bool differs = false;
        for (const Shape& s : shapes) {
            if (s.cols % dtype_traits(t).block_size) continue;
            SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                         " tokens " + std::to_string(s.tokens));
            std::vector<uint8_t> w = random_weight(t, s.rows, s.cols, rng);
            std::vector<float> x = random_floats(static_cast<size_t>(s.tokens * s.cols), rng);
            Tensor wc = upload(*cpu_, t, s.rows, s.cols, w.data()), wv = upload(*vk_, t, s.rows, s.cols, w.data());
            Tensor wh = upload(*f16, t, s.rows, s.cols, w.data(), t == DType::F32 ? 4 : 2);
            Tensor xc = upload_f32(*cpu_, s.tokens, s.cols, x), xv = upload_f32(*vk_, s.tokens, s.cols, x);
            Tensor xh = upload_f32(*f16, s.tokens, s.cols, x, 16);
            Tensor oc = zeros(*cpu_, DType::F32, s.tokens, s.rows), ov = zeros(*vk_, DType::F32, s.tokens, s.rows);
            Tensor oh = zeros(*f16, DType::F32, s.tokens, s.rows);
            cpu_->matmul(wc, xc, oc);
            vk_->matmul(wv, xv, ov);
            f16->matmul(wh, xh, oh);
            const std::vector<float> want = download_f32(*cpu_, oc);
            const std::vector<float> got_f32 = download_f32(*vk_, ov), got_f16 = download_f32(*f16, oh);
            const double e16 = normalized_error(got_f16, want), e32 = normalized_error(got_f32, want);
            EXPECT_LT(e16, kF16Tolerance);
            EXPECT_LT(e32, kF32Tolerance);
            worst_f16 = std::fmax(worst_f16, e16);
            worst_f32 = std::fmax(worst_f32, e32);
            differs = differs || got_f16 != got_f32;
        }
        // Half rounding of the inputs alone changes some output bits.
        EXPECT_TRUE(differs) << dtype_name(t) << ": the f16acc results equal the f32 variant's";
        std::printf("[ f16acc   ] %-5s normalized max error vs CPU: f16acc %.2e, f32 %.2e\n", dtype_name(t),
                    worst_f16, worst_f32);
    }
    EXPECT_TRUE(static_cast<VulkanBackend&>(*f16).status().ok()) << static_cast<VulkanBackend&>(*f16).status().message();
    buffers_.clear();  // before `f16` goes
}

}  // namespace
}  // namespace ekv_vk_test
