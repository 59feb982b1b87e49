// Backend parity fixture shared by the device backends' op tests (Vulkan,
// CUDA): the device backend against the CPU backend on the same bytes.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/fp16.h"
#include "core/quant.h"
#include "model/test_util.h"

namespace ekv_parity {

using namespace ekv;

// The reference CPU backend and one device backend of kind Kind per suite,
// helpers that put the same bytes on both, and a check after every test that
// the device backend recorded no error. No device is a failure, not a skip:
// these tests only run where the backend has one.
template <ekv_backend_kind Kind>
class DeviceParity : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        Status st = create_backend(EKV_BACKEND_CPU, BackendOptions{}, &cpu_);
        if (st.ok()) st = cpu_->reserve_scratch(4096, 16);
        if (!st.ok()) error_ = "CPU backend: " + st.message();
        st = create_backend(Kind, BackendOptions{}, &dev_);
        if (st.ok()) st = dev_->reserve_scratch(4096, 16);
        if (!st.ok()) error_ = std::string(ekv_backend_name(Kind)) + " backend: " + st.message();
    }
    static void TearDownTestSuite() {
        dev_.reset();
        cpu_.reset();
    }
    void SetUp() override { ASSERT_TRUE(cpu_ && dev_ && error_.empty()) << error_; }
    void TearDown() override {
        if (!dev_) return;
        dev_->synchronize();
        const Status st = dev_->take_error();
        EXPECT_TRUE(st.ok()) << st.message();
        buffers_.clear();
    }

    // rows x cols of `type` on backend b holding `bytes` (dtype_row_bytes per
    // row), `pad` bytes into its buffer. Memory the host cannot map is filled
    // through a host staging buffer and copy_bytes.
    Tensor upload(Backend& b, DType type, int64_t rows, int64_t cols, const void* bytes, size_t pad = 0,
                  Placement placement = Placement::Device) {
        Tensor t;
        t.type = type;
        t.rows = rows;
        t.cols = cols;
        t.row_bytes = dtype_row_bytes(type, cols);
        const size_t n = t.row_bytes * static_cast<size_t>(rows);
        std::unique_ptr<Buffer> buf;
        Status st = b.alloc(pad + n, placement, &buf);
        EXPECT_TRUE(st.ok()) << st.message();
        if (!st.ok()) return t;
        if (buf->host()) {
            std::memcpy(static_cast<uint8_t*>(buf->host()) + pad, bytes, n);
        } else {
            std::unique_ptr<Buffer> staging;
            st = b.alloc(n, Placement::Host, &staging);
            EXPECT_TRUE(st.ok() && staging->host()) << st.message();
            if (!st.ok() || !staging->host()) return t;
            std::memcpy(staging->host(), bytes, n);
            b.copy_bytes(*staging, 0, *buf, pad, n);
            b.synchronize();
        }
        t.buffer = buf.get();
        t.offset = pad;
        t.data = buf->host() ? static_cast<uint8_t*>(buf->host()) + pad : nullptr;
        buffers_.push_back(std::move(buf));
        return t;
    }
    Tensor upload_f32(Backend& b, int64_t rows, int64_t cols, const std::vector<float>& v, size_t pad = 0) {
        EXPECT_EQ(v.size(), static_cast<size_t>(rows * cols));
        return upload(b, DType::F32, rows, cols, v.data(), pad);
    }
    Tensor zeros(Backend& b, DType type, int64_t rows, int64_t cols, size_t pad = 0) {
        std::vector<uint8_t> z(dtype_row_bytes(type, cols) * static_cast<size_t>(rows), 0);
        return upload(b, type, rows, cols, z.data(), pad);
    }
    // The tensor's rows as bytes, after the backend finished its work.
    std::vector<uint8_t> download(Backend& b, const Tensor& t) {
        std::vector<uint8_t> out(t.row_bytes * static_cast<size_t>(t.rows));
        b.read(t, out.data(), out.size());
        b.synchronize();
        return out;
    }
    std::vector<float> download_f32(Backend& b, const Tensor& t) {
        std::vector<uint8_t> bytes = download(b, t);
        std::vector<float> out(bytes.size() / 4);
        std::memcpy(out.data(), bytes.data(), bytes.size());
        return out;
    }

    static inline std::unique_ptr<Backend> cpu_, dev_;
    static inline std::string error_;
    std::vector<std::unique_ptr<Buffer>> buffers_;
};

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// Largest |got - want| over the RMS of want (inf on a size mismatch or NaN).
inline double normalized_error(const std::vector<float>& got, const std::vector<float>& want) {
    if (got.size() != want.size() || want.empty()) return INFINITY;
    double rms = 0, worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        rms += static_cast<double>(want[i]) * want[i];
        worst = std::fmax(worst, std::fabs(static_cast<double>(got[i]) - want[i]));
    }
    return worst / (std::sqrt(rms / static_cast<double>(want.size())) + 1e-12);
}

// Valid random rows of a weight format: reference-quantized random values
// where edgekv has a quantizer, else random bytes with small finite scales.
inline std::vector<uint8_t> random_weight(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
    const size_t rb = dtype_row_bytes(t, cols);
    std::vector<uint8_t> out(rb * static_cast<size_t>(rows));
    if (quantize_row_supported(t)) {
        for (int64_t r = 0; r < rows; ++r) {
            std::vector<float> x = random_floats(static_cast<size_t>(cols), rng);
            EXPECT_TRUE(quantize_row(t, x.data(), out.data() + static_cast<size_t>(r) * rb, cols));
        }
        return out;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (uint8_t& b : out) b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> scale(0.001f, 0.02f);
    const size_t bb = dtype_traits(t).block_bytes;
    auto put_f16 = [&](size_t at, float v) {
        const uint16_t h = f32_to_f16(v);
        std::memcpy(out.data() + at, &h, 2);
    };
    for (size_t b = 0; b < out.size(); b += bb) {
        if (t == DType::Q4_K || t == DType::Q5_K) {
            put_f16(b, scale(rng));
            put_f16(b + 2, scale(rng));
        } else if (t == DType::Q6_K) {
            put_f16(b + 208, scale(rng));
        }
    }
    return out;
}

// A model loaded through the C ABI on one backend (2 CPU threads).
inline ekv_test::ModelPtr load_on(const std::string& path, ekv_backend_kind kind) {
    ekv_model_params p = ekv_model_default_params();
    p.backend = kind;
    p.n_threads = 2;
    ekv_model* m = nullptr;
    EXPECT_EQ(ekv_model_load(path.c_str(), &p, &m), EKV_OK) << ekv_backend_name(kind) << ": " << ekv_last_error();
    return ekv_test::ModelPtr(m);
}

}  // namespace ekv_parity
