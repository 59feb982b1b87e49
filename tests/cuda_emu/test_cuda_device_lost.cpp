// A kernel fault on the CUDA backend (issue 15: "a kernel fault ->
// EKV_ERR_DEVICE_LOST, sticky, the model and caches still freeable"), made
// by the CUDA emulator's fault hook, which a real GPU does not offer. Its own
// executable: the fault is sticky for the whole process, as on a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/device_parity.h"
#include "model/cache_family_util.h"

namespace {

ekv_status forward_one(ekv_model* m, ekv_cache* c, int32_t token, std::vector<float>* logits) {
    logits->assign(static_cast<size_t>(ekv_test::n_vocab(m)), 0.f);
    return ekv_forward(m, c, &token, 1, nullptr, EKV_LOGITS_LAST, logits->data(), logits->size());
}

TEST(CudaDeviceLost, AKernelFaultIsStickyAndEverythingStillFrees) {
    const std::string path = ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
    ekv_test::ModelPtr cpu = ekv_parity::load_on(path, EKV_BACKEND_CPU);
    ekv_test::ModelPtr dev = ekv_parity::load_on(path, EKV_BACKEND_CUDA);
    ASSERT_TRUE(cpu && dev);
    ekv_test::CacheSpec spec;
    spec.dtype = EKV_KV_F16;
    spec.name = "dynamic f16";
    ekv_test::CachePtr a = ekv_test::make(dev.get(), spec), b = ekv_test::make(dev.get(), spec);
    ekv_test::CachePtr on_cpu = ekv_test::make(cpu.get(), spec);
    ASSERT_TRUE(a && b && on_cpu);
    std::vector<float> logits, before;
    ASSERT_EQ(forward_one(dev.get(), a.get(), 7, &logits), EKV_OK) << ekv_last_error();
    before = logits;

    ::cuda_emu::inject_kernel_fault(3);  // the 4th kernel of the next forward
    logits.assign(logits.size(), -1.f);
    EXPECT_EQ(forward_one(dev.get(), a.get(), 8, &logits), EKV_ERR_DEVICE_LOST);
    const std::string message = ekv_last_error();
    EXPECT_NE(message.find("lost"), std::string::npos) << message;
    // Sticky: the model's other cache, and a new one, fail the same way.
    EXPECT_EQ(forward_one(dev.get(), b.get(), 8, &logits), EKV_ERR_DEVICE_LOST) << ekv_last_error();
    ekv_test::CachePtr c;
    EXPECT_EQ(ekv_test::try_make(dev.get(), spec, &c), EKV_ERR_DEVICE_LOST) << ekv_last_error();
    // The CPU model is not touched.
    EXPECT_EQ(forward_one(cpu.get(), on_cpu.get(), 7, &logits), EKV_OK) << ekv_last_error();
    float worst = 0.f;
    for (size_t i = 0; i < logits.size(); ++i) worst = std::max(worst, std::abs(logits[i] - before[i]));
    EXPECT_LT(worst, 1e-3f) << "the CPU model's first step should equal the CUDA model's, taken before the fault";
    // Everything frees (LSan checks that nothing leaks).
    a.reset();
    b.reset();
    c.reset();
    dev.reset();
}

}  // namespace
