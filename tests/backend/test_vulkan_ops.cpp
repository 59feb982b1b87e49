// Backend parity, op by op: the Vulkan backend against the CPU backend on the
// same bytes, for every weight format and a spread of shapes (odd widths,
// buffer offsets, batches across the matmul token tile).
#include <algorithm>

#include "backend/vulkan_test_util.h"
#include "model/model_file.h"

namespace ekv_vk_test {

std::unique_ptr<Backend> VulkanParity::cpu_;
std::unique_ptr<Backend> VulkanParity::vk_;
std::string VulkanParity::error_;

namespace {

class VulkanOps : public VulkanParity {};

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                              DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

int64_t cols_for(DType t, int64_t want) {
    const int64_t bs = dtype_traits(t).block_size;
    return std::max<int64_t>(bs, want / bs * bs);
}

TEST_F(VulkanOps, ReadAndCopyBytesRoundTrip) {
    std::mt19937 rng(1);
    std::vector<float> v = random_floats(300, rng);
    Tensor a = upload_f32(*vk_, 3, 100, v, 12);
    EXPECT_EQ(download_f32(*vk_, a), v);
    // Device -> host-placed buffer -> back to device at another offset.
    std::unique_ptr<Buffer> host, dev;
    ASSERT_TRUE(vk_->alloc(1200, Placement::Host, &host).ok());
    ASSERT_TRUE(vk_->alloc(1300, Placement::Device, &dev).ok());
    vk_->copy_bytes(*a.buffer, a.offset, *host, 0, 1200);
    vk_->copy_bytes(*host, 0, *dev, 100, 1200);
    Tensor b = a;
    b.buffer = dev.get();
    b.offset = 100;
    b.data = nullptr;
    EXPECT_EQ(download_f32(*vk_, b), v);
    buffers_.push_back(std::move(host));
    buffers_.push_back(std::move(dev));
}

TEST_F(VulkanOps, GetRowsEveryFormat) {
    std::mt19937 rng(2);
    for (DType t : kWeightTypes) {
        SCOPED_TRACE(dtype_name(t));
        const int64_t cols = cols_for(t, t == DType::F32 || t == DType::F16 ? 50 : 512);
        const int64_t rows = 13;
        std::vector<uint8_t> w = random_weight(t, rows, cols, rng);
        const int32_t ids[] = {0, 12, 5, 5, 7};
        Tensor tc = upload(*cpu_, t, rows, cols, w.data());
        // Half-word offset (F32: one word): blocks are read in place at any even address.
        Tensor tv = upload(*vk_, t, rows, cols, w.data(), t == DType::F32 ? 4 : 2);
        Tensor oc = zeros(*cpu_, DType::F32, 5, cols), ov = zeros(*vk_, DType::F32, 5, cols, 4);
        cpu_->get_rows(tc, ids, 5, oc);
        vk_->get_rows(tv, ids, 5, ov);
        EXPECT_EQ(download_f32(*vk_, ov), download_f32(*cpu_, oc));  // exact: same float expressions
    }
}

TEST_F(VulkanOps, MatmulEveryFormatAndBatch) {
    std::mt19937 rng(3);
    struct Shape {
        int64_t rows, cols, tokens;
    };
    const Shape shapes[] = {{7, 256, 1}, {33, 512, 3}, {19, 256, 9}};
    for (DType t : kWeightTypes) {
        for (const Shape& s : shapes) {
            const int64_t cols = cols_for(t, s.cols + (dtype_traits(t).block_size == 1 ? 8 : 0));
            SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(cols) +
                         " tokens " + std::to_string(s.tokens));
            std::vector<uint8_t> w = random_weight(t, s.rows, cols, rng);
            std::vector<float> x = random_floats(static_cast<size_t>(s.tokens * cols), rng);
            Tensor wc = upload(*cpu_, t, s.rows, cols, w.data()), wv = upload(*vk_, t, s.rows, cols, w.data(), t == DType::F32 ? 8 : 6);
            Tensor xc = upload_f32(*cpu_, s.tokens, cols, x), xv = upload_f32(*vk_, s.tokens, cols, x, 16);
            Tensor oc = zeros(*cpu_, DType::F32, s.tokens, s.rows), ov = zeros(*vk_, DType::F32, s.tokens, s.rows);
            cpu_->matmul(wc, xc, oc);
            vk_->matmul(wv, xv, ov);
            EXPECT_LT(normalized_error(download_f32(*vk_, ov), download_f32(*cpu_, oc)), 1e-4);
        }
    }
}

// The other matmul shape (the lanes of a row reduced in shared memory, as on
// GPUs; lavapipe defaults to one invocation per row).
TEST_F(VulkanOps, MatmulWithLanesPerRow) {
    setenv("EKV_VULKAN_MATMUL_LANES", "16", 1);
    std::unique_ptr<Backend> wide;
    const Status st = create_backend(EKV_BACKEND_VULKAN, BackendOptions{}, &wide);
    unsetenv("EKV_VULKAN_MATMUL_LANES");
    ASSERT_TRUE(st.ok()) << st.message();
    std::mt19937 rng(12);
    for (DType t : {DType::Q4_1, DType::Q6_K, DType::F32}) {
        SCOPED_TRACE(dtype_name(t));
        const int64_t rows = 70, cols = t == DType::F32 ? 200 : 512, tokens = 5;
        std::vector<uint8_t> w = random_weight(t, rows, cols, rng);
        std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
        Tensor wc = upload(*cpu_, t, rows, cols, w.data()), wv = upload(*wide, t, rows, cols, w.data());
        Tensor xc = upload_f32(*cpu_, tokens, cols, x), xv = upload_f32(*wide, tokens, cols, x);
        Tensor oc = zeros(*cpu_, DType::F32, tokens, rows), ov = zeros(*wide, DType::F32, tokens, rows);
        cpu_->matmul(wc, xc, oc);
        wide->matmul(wv, xv, ov);
        EXPECT_LT(normalized_error(download_f32(*wide, ov), download_f32(*cpu_, oc)), 1e-4);
    }
    EXPECT_TRUE(static_cast<VulkanBackend&>(*wide).status().ok());
    buffers_.clear();  // before `wide` goes
}

// Device memory the host cannot map (discrete GPUs), simulated on lavapipe:
// weights upload through staging, results come back through staging, inputs
// arrive by copy_bytes from host-placed buffers.
TEST_F(VulkanOps, UnmappedDeviceMemoryGoesThroughStaging) {
    setenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY", "1", 1);
    std::unique_ptr<Backend> dgpu;
    const Status st = create_backend(EKV_BACKEND_VULKAN, BackendOptions{}, &dgpu);
    unsetenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY");
    ASSERT_TRUE(st.ok()) << st.message();
    std::mt19937 rng(13);
    const int64_t rows = 40, cols = 256, tokens = 2;
    std::vector<uint8_t> w = random_weight(DType::Q4_0, rows, cols, rng);
    TensorRef ref;
    ref.name = "w";
    ref.type = DType::Q4_0;
    ref.n_dims = 2;
    ref.ne[0] = cols;
    ref.ne[1] = rows;
    ref.data = w.data();
    ref.nbytes = w.size();
    Tensor wv;
    std::unique_ptr<Buffer> owner;
    ASSERT_TRUE(dgpu->load_weight(ref, &wv, &owner).ok());
    EXPECT_EQ(owner->host(), nullptr);
    EXPECT_EQ(download(*dgpu, wv), w);
    std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
    Tensor xv = upload_f32(*dgpu, tokens, cols, x, 32);
    EXPECT_EQ(xv.data, nullptr);
    Tensor ov = zeros(*dgpu, DType::F32, tokens, rows);
    Tensor wc = upload(*cpu_, DType::Q4_0, rows, cols, w.data()), xc = upload_f32(*cpu_, tokens, cols, x);
    Tensor oc = zeros(*cpu_, DType::F32, tokens, rows);
    cpu_->matmul(wc, xc, oc);
    dgpu->matmul(wv, xv, ov);
    EXPECT_LT(normalized_error(download_f32(*dgpu, ov), download_f32(*cpu_, oc)), 1e-4);
    EXPECT_TRUE(static_cast<VulkanBackend&>(*dgpu).status().ok());
    buffers_.clear();
    owner.reset();
}

TEST_F(VulkanOps, MatmulManyRows) {
    std::mt19937 rng(4);
    const int64_t rows = 65600, cols = 32;  // more row groups than one dispatch dimension holds with 64 lanes
    std::vector<uint8_t> w = random_weight(DType::Q8_0, rows, cols, rng);
    std::vector<float> x = random_floats(cols, rng);
    Tensor wc = upload(*cpu_, DType::Q8_0, rows, cols, w.data()), wv = upload(*vk_, DType::Q8_0, rows, cols, w.data());
    Tensor xc = upload_f32(*cpu_, 1, cols, x), xv = upload_f32(*vk_, 1, cols, x);
    Tensor oc = zeros(*cpu_, DType::F32, 1, rows), ov = zeros(*vk_, DType::F32, 1, rows);
    cpu_->matmul(wc, xc, oc);
    vk_->matmul(wv, xv, ov);
    EXPECT_LT(normalized_error(download_f32(*vk_, ov), download_f32(*cpu_, oc)), 1e-4);
}

TEST_F(VulkanOps, LoadWeightKeepsTheFileFormat) {
    std::mt19937 rng(5);
    const int64_t rows = 9, cols = 256;
    std::vector<uint8_t> w = random_weight(DType::Q4_K, rows, cols, rng);
    TensorRef ref;
    ref.name = "test.weight";
    ref.type = DType::Q4_K;
    ref.n_dims = 2;
    ref.ne[0] = cols;
    ref.ne[1] = rows;
    ref.data = w.data();
    ref.nbytes = w.size();
    Tensor t;
    std::unique_ptr<Buffer> owner;
    ASSERT_TRUE(vk_->load_weight(ref, &t, &owner).ok());
    EXPECT_EQ(t.type, DType::Q4_K);
    EXPECT_EQ(owner->size(), w.size());  // quantized bytes, no f32 copy
    EXPECT_EQ(download(*vk_, t), w);
    ref.type = DType::Q8_K;  // an activation format: not a weight type
    EXPECT_EQ(vk_->load_weight(ref, &t, &owner).code(), EKV_ERR_UNSUPPORTED);
    ref.type = DType::Q4_K;
    ref.nbytes = w.size() - 1;  // truncated data
    EXPECT_EQ(vk_->load_weight(ref, &t, &owner).code(), EKV_ERR_INVALID_FILE);
}

TEST_F(VulkanOps, RmsNormAndInPlace) {
    std::mt19937 rng(6);
    for (int64_t cols : {576, 37}) {
        std::vector<float> x = random_floats(static_cast<size_t>(3 * cols), rng, -3.f, 3.f);
        std::vector<float> w = random_floats(static_cast<size_t>(cols), rng);
        Tensor xc = upload_f32(*cpu_, 3, cols, x), xv = upload_f32(*vk_, 3, cols, x, 8);
        Tensor wc = upload_f32(*cpu_, 1, cols, w), wv = upload_f32(*vk_, 1, cols, w);
        Tensor oc = zeros(*cpu_, DType::F32, 3, cols), ov = zeros(*vk_, DType::F32, 3, cols);
        cpu_->rms_norm(xc, wc, 1e-5f, oc);
        vk_->rms_norm(xv, wv, 1e-5f, ov);
        EXPECT_LT(normalized_error(download_f32(*vk_, ov), download_f32(*cpu_, oc)), 1e-5) << cols;
        vk_->rms_norm(xv, wv, 1e-5f, xv);  // in place
        EXPECT_LT(normalized_error(download_f32(*vk_, xv), download_f32(*cpu_, oc)), 1e-5) << cols;
    }
}

TEST_F(VulkanOps, RopeFullAndPartial) {
    std::mt19937 rng(7);
    const int n_heads = 3, head_dim = 64, tokens = 4;
    const int32_t positions[tokens] = {0, 1, 977, 5000};
    for (int rope_dim : {64, 32}) {
        for (float factor : {1.0f, 1.25f}) {
            std::vector<float> inv_freq(static_cast<size_t>(rope_dim / 2));
            for (size_t i = 0; i < inv_freq.size(); ++i)
                inv_freq[i] = std::pow(10000.f, -2.f * static_cast<float>(i) / static_cast<float>(rope_dim));
            RopeParams p;
            p.n_heads = n_heads;
            p.head_dim = head_dim;
            p.rope_dim = rope_dim;
            p.inv_freq = inv_freq.data();
            p.attn_factor = factor;
            std::vector<float> x = random_floats(static_cast<size_t>(tokens * n_heads * head_dim), rng);
            Tensor xc = upload_f32(*cpu_, tokens, n_heads * head_dim, x);
            Tensor xv = upload_f32(*vk_, tokens, n_heads * head_dim, x, 4);
            cpu_->rope(xc, positions, p);
            vk_->rope(xv, positions, p);
            EXPECT_LT(normalized_error(download_f32(*vk_, xv), download_f32(*cpu_, xc)), 1e-6)
                << rope_dim << " " << factor;
        }
    }
}

TEST_F(VulkanOps, CopyRowsToF16AndF32) {
    std::mt19937 rng(8);
    for (DType dt : {DType::F16, DType::F32}) {
        for (int64_t cols : {192, 7}) {  // 7: F16 rows share 32-bit words with their neighbours
            SCOPED_TRACE(std::string(dtype_name(dt)) + " cols " + std::to_string(cols));
            std::vector<float> src = random_floats(static_cast<size_t>(5 * cols), rng, -70000.f, 70000.f);
            src[1] = 1e-6f;  // an f16 subnormal
            src[2] = -0.f;
            Tensor sc = upload_f32(*cpu_, 5, cols, src), sv = upload_f32(*vk_, 5, cols, src);
            Tensor dc = zeros(*cpu_, dt, 11, cols), dv = zeros(*vk_, dt, 11, cols, dt == DType::F16 ? 2 : 4);
            cpu_->copy_rows(sc, dc, 3);
            vk_->copy_rows(sv, dv, 3);
            cpu_->copy_rows(sc.row_range(1, 2), dc, 9);
            vk_->copy_rows(sv.row_range(1, 2), dv, 9);
            EXPECT_EQ(download(*vk_, dv), download(*cpu_, dc));  // f16 rounding is bit exact
        }
    }
}

TEST_F(VulkanOps, SiluMulAndAdd) {
    std::mt19937 rng(9);
    const int64_t rows = 3, cols = 1536 + 5;
    std::vector<float> a = random_floats(static_cast<size_t>(rows * cols), rng, -8.f, 8.f);
    std::vector<float> b = random_floats(static_cast<size_t>(rows * cols), rng, -2.f, 2.f);
    Tensor ac = upload_f32(*cpu_, rows, cols, a), av = upload_f32(*vk_, rows, cols, a);
    Tensor bc = upload_f32(*cpu_, rows, cols, b), bv = upload_f32(*vk_, rows, cols, b, 4);
    Tensor oc = zeros(*cpu_, DType::F32, rows, cols), ov = zeros(*vk_, DType::F32, rows, cols);
    cpu_->silu_mul(ac, bc, oc);
    vk_->silu_mul(av, bv, ov);
    EXPECT_LT(normalized_error(download_f32(*vk_, ov), download_f32(*cpu_, oc)), 1e-5);
    cpu_->add(ac, bc, ac);  // in place, as the residual stream
    vk_->add(av, bv, av);
    EXPECT_EQ(download_f32(*vk_, av), download_f32(*cpu_, ac));
}

TEST_F(VulkanOps, CopyRawClonesRows) {
    std::mt19937 rng(10);
    std::vector<float> v = random_floats(6 * 64, rng);
    std::vector<uint8_t> h(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
        const uint16_t x = f32_to_f16(v[i]);
        std::memcpy(h.data() + 2 * i, &x, 2);
    }
    Tensor src = upload(*vk_, DType::F16, 6, 64, h.data()), dst = zeros(*vk_, DType::F16, 6, 64, 10);
    vk_->copy_raw(src, dst, 4);
    std::vector<uint8_t> got = download(*vk_, dst);
    EXPECT_TRUE(std::equal(h.begin(), h.begin() + 4 * 128, got.begin()));
    EXPECT_TRUE(std::all_of(got.begin() + 4 * 128, got.end(), [](uint8_t b) { return b == 0; }));
}

TEST_F(VulkanOps, BadOpsAreReportedNotCrashing) {
    std::vector<float> x(64, 1.f);
    Tensor a = upload_f32(*vk_, 1, 64, x);
    Tensor o = zeros(*vk_, DType::F32, 1, 8);
    vk_->add(a, a, o);  // out narrower than the inputs
    EXPECT_EQ(vkb().status().code(), EKV_ERR_INVALID_ARGUMENT);
    vkb().clear_error();
    const int32_t bad_id = 5;
    Tensor big = zeros(*vk_, DType::F32, 1, 64);
    vk_->get_rows(a, &bad_id, 1, big);  // id past the table
    EXPECT_EQ(vkb().status().code(), EKV_ERR_INVALID_ARGUMENT);
    vkb().clear_error();
    Tensor host_only = a;
    host_only.buffer = nullptr;
    vk_->silu_mul(host_only, a, big);
    EXPECT_EQ(vkb().status().code(), EKV_ERR_INVALID_ARGUMENT);
    vkb().clear_error();
    Tensor kv = zeros(*vk_, DType::F32, 1, 64);
    KiviParams kp;
    kp.nbits = 4;
    kp.group = 32;
    vk_->kivi_quantize_values(kv, 0, 1, kv, 0, kp);
    EXPECT_EQ(vkb().status().code(), EKV_ERR_UNSUPPORTED);
    vkb().clear_error();
    vk_->synchronize();
    EXPECT_TRUE(vkb().status().ok());
}

}  // namespace
}  // namespace ekv_vk_test
