// The CUDA backend as the C ABI presents it in each configuration:
// - not built: asking for CUDA is EKV_ERR_UNSUPPORTED naming the option;
// - built, on a machine without an NVIDIA driver (CI): the library loads,
//   CUDA has no devices, asking for it is EKV_ERR_BACKEND with the CUDA
//   runtime's own message, and AUTO runs on another backend;
// - built, with a driver: devices are listed and a model loads on CUDA.
// Whether a driver exists is read from the kernel module's /proc entry, not
// from edgekv, so each branch checks something edgekv could get wrong.
#include <unistd.h>

#include <string>
#include <vector>

#include "model/test_util.h"

using namespace ekv_test;

namespace {

const std::string& tiny_llama() {
    static const std::string path = fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
    return path;
}

ekv_status load_on(ekv_backend_kind kind, ekv_model** out) {
    ekv_model_params p = ekv_model_default_params();
    p.backend = kind;
    p.n_threads = 1;
    return ekv_model_load(tiny_llama().c_str(), &p, out);
}

#if !defined(EKV_TEST_BUILT_WITH_CUDA)

TEST(CudaAvailability, NotBuiltIsRefusedWithTheOptionThatAddsIt) {
    ekv_model* m = nullptr;
    EXPECT_EQ(load_on(EKV_BACKEND_CUDA, &m), EKV_ERR_UNSUPPORTED);
    EXPECT_EQ(m, nullptr);
    EXPECT_NE(std::string(ekv_last_error()).find("EDGEKV_CUDA"), std::string::npos) << ekv_last_error();
    EXPECT_EQ(ekv_backend_available(EKV_BACKEND_CUDA), 0);
}

#else

bool nvidia_driver_present() { return access("/proc/driver/nvidia/version", R_OK) == 0; }

TEST(CudaAvailability, DevicesMatchTheDriver) {
    int32_t n = -1;
    ASSERT_EQ(ekv_device_count(EKV_BACKEND_CUDA, &n), EKV_OK) << ekv_last_error();
    ekv_device_info info = ekv_device_info_default();
    if (!nvidia_driver_present()) {
        EXPECT_EQ(n, 0);
        EXPECT_EQ(ekv_backend_available(EKV_BACKEND_CUDA), 0);
        EXPECT_NE(ekv_device_get_info(EKV_BACKEND_CUDA, 0, &info), EKV_OK);
        EXPECT_NE(std::string(ekv_last_error()).find("CUDA"), std::string::npos) << ekv_last_error();
        return;
    }
    ASSERT_GE(n, 1) << "an NVIDIA driver is loaded but CUDA lists no device";
    EXPECT_EQ(ekv_backend_available(EKV_BACKEND_CUDA), 1);
    for (int32_t i = 0; i < n; ++i) {
        ASSERT_EQ(ekv_device_get_info(EKV_BACKEND_CUDA, i, &info), EKV_OK) << ekv_last_error();
        EXPECT_EQ(info.backend, EKV_BACKEND_CUDA);
        EXPECT_NE(std::string(info.name).find("sm_"), std::string::npos) << info.name;
        EXPECT_GT(info.device_memory_bytes, 0u);
        EXPECT_LE(info.device_memory_free_bytes, info.device_memory_bytes);
    }
    EXPECT_EQ(ekv_device_get_info(EKV_BACKEND_CUDA, n, &info), EKV_ERR_INVALID_ARGUMENT);
}

TEST(CudaAvailability, AskingForCudaWithoutADriverIsABackendErrorAndAutoFallsBack) {
    ekv_model* m = nullptr;
    const ekv_status st = load_on(EKV_BACKEND_CUDA, &m);
    ModelPtr on_cuda(m);
    if (nvidia_driver_present()) {
        ASSERT_EQ(st, EKV_OK) << ekv_last_error();
    } else {
        EXPECT_EQ(st, EKV_ERR_BACKEND);
        EXPECT_EQ(m, nullptr);
        // The CUDA runtime's own words (cudaErrorInsufficientDriver or
        // cudaErrorNoDevice), not a generic message.
        const std::string msg = ekv_last_error();
        EXPECT_NE(msg.find("CUDA"), std::string::npos) << msg;
        EXPECT_TRUE(msg.find("driver") != std::string::npos || msg.find("device") != std::string::npos) << msg;
        EXPECT_NE(msg.find("cudaError"), std::string::npos) << msg;
    }
    // AUTO: CUDA when there is a device, else Vulkan's GPU or the CPU; the
    // model runs either way.
    m = nullptr;
    ASSERT_EQ(load_on(EKV_BACKEND_AUTO, &m), EKV_OK) << ekv_last_error();
    ModelPtr on_auto(m);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(m, &info), EKV_OK) << ekv_last_error();
    if (nvidia_driver_present())
        EXPECT_EQ(info.backend, EKV_BACKEND_CUDA) << info.device;
    else
        EXPECT_NE(info.backend, EKV_BACKEND_CUDA) << info.device;
    ekv_cache_params cp = ekv_cache_default_params();
    ekv_cache* c = nullptr;
    ASSERT_EQ(ekv_cache_create(m, &cp, &c), EKV_OK) << ekv_last_error();
    CachePtr cache(c);
    const int32_t ids[] = {1, 2, 3};
    std::vector<float> logits(static_cast<size_t>(info.n_vocab));
    ASSERT_EQ(ekv_forward(m, c, ids, 3, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()), EKV_OK)
        << ekv_last_error();
    float sum = 0.f;
    for (float x : logits) sum += x * x;
    EXPECT_GT(sum, 0.f);
}

#endif

}  // namespace
