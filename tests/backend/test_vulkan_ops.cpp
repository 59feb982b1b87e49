// Backend parity, op by op: the Vulkan backend against the CPU backend on the
// same bytes (the shared cases: backend/parity_ops_cases.h), and what is
// Vulkan's own: the matmul's shapes (CPU and GPU), device memory the host cannot
// map, buffers bound a window at a time.
#include <algorithm>

#include "backend/parity_ops_cases.h"
#include "backend/vulkan_test_util.h"

namespace ekv_vk_test {

namespace {

class VulkanOps : public OpsParityCases<VulkanParity> {};

TEST_F(VulkanOps, ReadAndCopyBytesRoundTrip) { read_and_copy_bytes_round_trip(); }

TEST_F(VulkanOps, GetRowsEveryFormat) { get_rows_every_format(); }

TEST_F(VulkanOps, MatmulEveryFormatAndBatch) { matmul_every_format_and_batch(); }

// The GPU matmul shape (matmul.comp: 16 lanes per row reduced in shared
// memory), forced on lavapipe, whose default is the CPU shape (matmul_rows.comp:
// whole rows per invocation): the matmul cases again on a backend made with
// EKV_VULKAN_MATMUL_LANES=16.
class VulkanOpsGpuMatmulShape : public OpsParityCases<VulkanParity> {
protected:
    static void SetUpTestSuite() {
        setenv("EKV_VULKAN_MATMUL_LANES", "16", 1);
        OpsParityCases<VulkanParity>::SetUpTestSuite();
        unsetenv("EKV_VULKAN_MATMUL_LANES");
    }
};

TEST_F(VulkanOpsGpuMatmulShape, MatmulEveryFormatAndBatch) { matmul_every_format_and_batch(); }

TEST_F(VulkanOpsGpuMatmulShape, MatmulManyRows) { matmul_many_rows(); }

// matmul.comp with one lane per row (what EKV_VULKAN_MATMUL_LANES=1 selects,
// and what the f16-accumulation variants run on CPU devices).
TEST_F(VulkanOps, MatmulWithOneLanePerRow) {
    setenv("EKV_VULKAN_MATMUL_LANES", "1", 1);
    std::unique_ptr<Backend> one_lane;
    const Status st = create_backend(EKV_BACKEND_VULKAN, BackendOptions{}, &one_lane);
    unsetenv("EKV_VULKAN_MATMUL_LANES");
    ASSERT_TRUE(st.ok()) << st.message();
    std::mt19937 rng(12);
    for (DType t : {DType::Q4_1, DType::Q6_K, DType::F32}) {
        SCOPED_TRACE(dtype_name(t));
        const int64_t rows = 70, cols = t == DType::F32 ? 200 : 512, tokens = 5;
        std::vector<uint8_t> w = random_weight(t, rows, cols, rng);
        std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
        Tensor wc = upload(*cpu_, t, rows, cols, w.data()), wv = upload(*one_lane, t, rows, cols, w.data());
        Tensor xc = upload_f32(*cpu_, tokens, cols, x), xv = upload_f32(*one_lane, tokens, cols, x);
        Tensor oc = zeros(*cpu_, DType::F32, tokens, rows), ov = zeros(*one_lane, DType::F32, tokens, rows);
        cpu_->matmul(wc, xc, oc);
        one_lane->matmul(wv, xv, ov);
        EXPECT_LT(normalized_error(download_f32(*one_lane, ov), download_f32(*cpu_, oc)), 1e-4);
    }
    EXPECT_TRUE(static_cast<VulkanBackend&>(*one_lane).status().ok());
    buffers_.clear();  // before `one_lane` goes
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

TEST_F(VulkanOps, MatmulManyRows) { matmul_many_rows(); }

// Buffers past maxStorageBufferRange (128 MiB on lavapipe: a large
// vocabulary's embedding, an all-logits batch over it) are bound a window at
// a time. Rows padded to 1 MiB make such buffers cheap to compute on: a
// table read by get_rows and matmul in two windows, and a matmul whose
// output batch spans two.
TEST_F(VulkanOps, TensorsPastOneBinding) {
    const size_t span = vkb().max_binding_span();
    ASSERT_LE(span, size_t{1} << 30) << "this device binds a large buffer whole: nothing would be split";
    constexpr size_t kStride = 1 << 20;
    const int64_t rows = static_cast<int64_t>(span / kStride) + 20, cols = 64;
    // A Vulkan tensor of `n` rows kStride apart; row r holds bytes r * rb.. of `packed`.
    auto padded = [&](DType type, int64_t n, int64_t width, const std::vector<uint8_t>* packed) {
        Tensor t;
        t.type = type;
        t.rows = n;
        t.cols = width;
        t.row_bytes = kStride;
        std::unique_ptr<Buffer> buf;
        EXPECT_TRUE(vk_->alloc(static_cast<size_t>(n) * kStride, Placement::Device, &buf).ok());  // zeroed
        if (!buf) return t;
        t.buffer = buf.get();
        if (packed) {
            const size_t rb = dtype_row_bytes(type, width);
            Tensor src = upload(*vk_, type, n, width, packed->data(), 0, Placement::Host);
            for (int64_t r = 0; r < n; ++r)
                vk_->copy_bytes(*src.buffer, static_cast<size_t>(r) * rb, *buf, static_cast<size_t>(r) * kStride, rb);
        }
        buffers_.push_back(std::move(buf));
        return t;
    };
    std::mt19937 rng(16);
    const std::vector<uint8_t> w = random_weight(DType::Q8_0, rows, cols, rng);
    Tensor wc = upload(*cpu_, DType::Q8_0, rows, cols, w.data()), wv = padded(DType::Q8_0, rows, cols, &w);
    const int32_t ids[] = {static_cast<int32_t>(rows - 1), 0, static_cast<int32_t>(rows / 2), 7};
    Tensor ec = zeros(*cpu_, DType::F32, 4, cols), ev = zeros(*vk_, DType::F32, 4, cols);
    cpu_->get_rows(wc, ids, 4, ec);
    vk_->get_rows(wv, ids, 4, ev);
    EXPECT_EQ(download_f32(*vk_, ev), download_f32(*cpu_, ec));
    std::vector<float> x = random_floats(static_cast<size_t>(3 * cols), rng);
    Tensor xc = upload_f32(*cpu_, 3, cols, x), xv = upload_f32(*vk_, 3, cols, x);
    Tensor oc = zeros(*cpu_, DType::F32, 3, rows), ov = zeros(*vk_, DType::F32, 3, rows);
    cpu_->matmul(wc, xc, oc);
    vk_->matmul(wv, xv, ov);
    EXPECT_LT(normalized_error(download_f32(*vk_, ov), download_f32(*cpu_, oc)), 1e-4);

    // The output batch: `rows` tokens of 40 logits, rows 1 MiB apart.
    const int64_t n_out = 40;
    const std::vector<uint8_t> small = random_weight(DType::Q8_0, n_out, cols, rng);
    const std::vector<float> xs = random_floats(static_cast<size_t>(rows * cols), rng);
    Tensor sc = upload(*cpu_, DType::Q8_0, n_out, cols, small.data());
    Tensor sv = upload(*vk_, DType::Q8_0, n_out, cols, small.data());
    Tensor xsc = upload_f32(*cpu_, rows, cols, xs), xsv = upload_f32(*vk_, rows, cols, xs);
    Tensor pc = zeros(*cpu_, DType::F32, rows, n_out), pv = padded(DType::F32, rows, n_out, nullptr);
    cpu_->matmul(sc, xsc, pc);  // (the CPU backend needs contiguous rows)
    vk_->matmul(sv, xsv, pv);
    std::vector<float> got(static_cast<size_t>(rows * n_out));
    for (int64_t t = 0; t < rows; ++t)
        vk_->read(pv.row_range(t, 1), got.data() + t * n_out, static_cast<size_t>(n_out) * 4);
    vk_->synchronize();
    EXPECT_LT(normalized_error(got, download_f32(*cpu_, pc)), 1e-4);
}

TEST_F(VulkanOps, LoadWeightKeepsTheFileFormat) { load_weight_keeps_the_file_format(); }

TEST_F(VulkanOps, RmsNormAndInPlace) { rms_norm_and_in_place(); }

TEST_F(VulkanOps, RopeFullAndPartial) { rope_full_and_partial(); }

TEST_F(VulkanOps, CopyRowsToF16AndF32) { copy_rows_to_f16_and_f32(); }

TEST_F(VulkanOps, SiluMulAndAdd) { silu_mul_and_add(); }

TEST_F(VulkanOps, GeluMulAndScale) { gelu_mul_and_scale(); }

TEST_F(VulkanOps, SoftcappedAttentionWithNeoxPinnedSegment) { softcapped_attention_with_neox_pinned_segment(); }

TEST_F(VulkanOps, CopyRawClonesRows) { copy_raw_clones_rows(); }

TEST_F(VulkanOps, BadOpsAreReportedNotCrashing) { bad_ops_are_reported_not_crashing(); }

}  // namespace
}  // namespace ekv_vk_test
