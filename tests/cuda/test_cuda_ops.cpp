// CUDA backend parity, op by op, against the CPU backend: the cases the
// Vulkan tests run (backend/parity_*_cases.h), then what is CUDA's own:
// int8 activations in matmuls, streams on two threads, out of memory and
// misuse reported through take_error() with the backend still usable.
#include <algorithm>
#include <cmath>
#include <thread>

#include "backend/parity_attention_cases.h"
#include "backend/parity_model_ops_cases.h"
#include "backend/parity_ops_cases.h"
#include "cuda/cuda_parity.h"
#include "kernels.h"

namespace ekv_cuda_test {
namespace {

class CudaOps : public OpsParityCases<CudaParity> {};

TEST_F(CudaOps, ReadAndCopyBytesRoundTrip) { read_and_copy_bytes_round_trip(); }
TEST_F(CudaOps, GetRowsEveryFormat) { get_rows_every_format(); }
TEST_F(CudaOps, MatmulEveryFormatAndBatch) { matmul_every_format_and_batch(); }
TEST_F(CudaOps, MatmulManyRows) { matmul_many_rows(); }
TEST_F(CudaOps, LoadWeightKeepsTheFileFormat) { load_weight_keeps_the_file_format(); }
TEST_F(CudaOps, RmsNormAndInPlace) { rms_norm_and_in_place(); }
TEST_F(CudaOps, RopeFullAndPartial) { rope_full_and_partial(); }
TEST_F(CudaOps, CopyRowsToF16AndF32) { copy_rows_to_f16_and_f32(); }
TEST_F(CudaOps, SiluMulAndAdd) { silu_mul_and_add(); }
TEST_F(CudaOps, GeluMulAndScale) { gelu_mul_and_scale(); }
TEST_F(CudaOps, SoftcappedAttentionWithNeoxPinnedSegment) { softcapped_attention_with_neox_pinned_segment(); }
TEST_F(CudaOps, CopyRawClonesRows) { copy_raw_clones_rows(); }
TEST_F(CudaOps, BadOpsAreReportedNotCrashing) { bad_ops_are_reported_not_crashing(); }

class CudaAttention : public AttentionParityCases<CudaParity> {};

TEST_F(CudaAttention, MatchesCpuOverSegmentViews) { attention_matches_cpu_over_segment_views(); }
TEST_F(CudaAttention, PrefillMatchesCpuOnTensorCoresAndOff) {
    ASSERT_TRUE(cuda::attention_tensor_cores());  // the default
    const uint64_t before = cuda::attention_tensor_core_launches();
    prefill_attention_matches_cpu();
    // Five of the seven cases are plain F16 with head_dim a multiple of 16.
    EXPECT_EQ(cuda::attention_tensor_core_launches() - before, 5u);
    cuda::set_attention_tensor_cores(false);
    prefill_attention_matches_cpu();
    cuda::set_attention_tensor_cores(true);
    EXPECT_EQ(cuda::attention_tensor_core_launches() - before, 5u);
}
TEST_F(CudaAttention, KiviQuantizeWritesTheReferenceBytes) { kivi_quantize_writes_the_reference_bytes(); }
TEST_F(CudaAttention, KiviAttentionOverQuantizedGroupsMatchesCpu) {
    kivi_attention_over_quantized_groups_matches_cpu();
}
TEST_F(CudaAttention, KiviRunBetweenPinnedSinksAndAWindowMatchesCpu) {
    kivi_run_between_pinned_sinks_and_a_window_matches_cpu();
}

class CudaModelOps : public ModelOpsParityCases<CudaParity> {};

TEST_F(CudaModelOps, SsmConvMatchesCpu) { ssm_conv_matches_cpu(); }
TEST_F(CudaModelOps, SsmScanMatchesCpu) { ssm_scan_matches_cpu(); }
TEST_F(CudaModelOps, LayerNormMatchesCpu) { layer_norm_matches_cpu(); }
TEST_F(CudaModelOps, GeluErfMatchesCpu) { gelu_erf_matches_cpu(); }
TEST_F(CudaModelOps, AddBiasMatchesCpu) { add_bias_matches_cpu(); }
TEST_F(CudaModelOps, Im2Col1dMatchesCpu) { im2col_1d_matches_cpu(); }

// ---- CUDA's own ----------------------------------------------------------------

// int8 activations (BackendOptions::int8_activations) on both backends: the
// same Q8 rounding of each token's row and integer block products, so CUDA
// matches the CPU's int8 path closely, and visibly not its f32 path.
TEST_F(CudaOps, Int8ActivationMatmulMatchesCpuInt8Path) {
    BackendOptions o;
    o.int8_activations = true;
    std::unique_ptr<Backend> cpu8, cuda8;
    ASSERT_TRUE(create_backend(EKV_BACKEND_CPU, o, &cpu8).ok());
    const Status st = create_backend(EKV_BACKEND_CUDA, o, &cuda8);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_TRUE(cpu8->reserve_scratch(4096, 16).ok());
    ASSERT_TRUE(cuda8->reserve_scratch(4096, 16).ok());
    std::mt19937 rng(31);
    const DType quantized[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                               DType::Q4_K, DType::Q5_K, DType::Q6_K};
    for (DType t : quantized) {
        // 9 and 70 tokens: the tiled kernel for the 32-element formats (70:
        // three token tiles, the last partial; 544 columns: a partial step).
        for (int64_t tokens : {1, 3, 9, 70}) {
            SCOPED_TRACE(std::string(dtype_name(t)) + ", " + std::to_string(tokens) + " tokens");
            const int64_t rows = 37, cols = cols_for(t, tokens == 70 ? 544 : 512);
            const std::vector<uint8_t> w = random_weight(t, rows, cols, rng);
            const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
            Tensor wc = upload(*cpu8, t, rows, cols, w.data()), wd = upload(*cuda8, t, rows, cols, w.data(), 2);
            Tensor xc = upload_f32(*cpu8, tokens, cols, x), xd = upload_f32(*cuda8, tokens, cols, x, 8);
            Tensor oc = zeros(*cpu8, DType::F32, tokens, rows), od = zeros(*cuda8, DType::F32, tokens, rows);
            Tensor wf = upload(*cpu_, t, rows, cols, w.data()), xf = upload_f32(*cpu_, tokens, cols, x);
            Tensor of = zeros(*cpu_, DType::F32, tokens, rows);
            cpu8->matmul(wc, xc, oc);
            cuda8->matmul(wd, xd, od);
            cpu_->matmul(wf, xf, of);
            const std::vector<float> got = download_f32(*cuda8, od), want = download_f32(*cpu8, oc);
            EXPECT_LT(normalized_error(got, want), 1e-4);
            // 8-bit activations move the result by about a quantization step.
            EXPECT_GT(normalized_error(got, download_f32(*cpu_, of)), 1e-4) << "CUDA did not use int8 activations";
        }
    }
    cuda8->synchronize();
    const Status err = cuda8->take_error();
    EXPECT_TRUE(err.ok()) << err.message();
    buffers_.clear();  // before the backends go
}

// Two streams of one device on two threads at once: each runs a chain of
// ops (matmul over shared weights, rms_norm, rope, attention over its own
// KV) on its own inputs 20 times, and every result equals that chain run
// alone on the backend itself.
TEST_F(CudaOps, StreamsOnTwoThreadsGiveTheSingleThreadResults) {
    std::unique_ptr<Backend> streams[2];
    for (auto& s : streams) {
        const Status st = dev_->create_stream(&s);
        ASSERT_TRUE(st.ok()) << st.message();
        ASSERT_TRUE(s) << "the CUDA backend must give streams of its own";
        ASSERT_TRUE(s->reserve_scratch(4096, 16).ok());
    }
    std::mt19937 rng(32);
    constexpr int n_heads = 4, head_dim = 64, width = n_heads * head_dim, tokens = 6, kv_tokens = 80, k = 256;
    const std::vector<uint8_t> w = random_weight(DType::Q4_K, width, k, rng);
    const Tensor wd = upload(*dev_, DType::Q4_K, width, k, w.data());  // weights shared by the streams
    const Tensor nd = upload_f32(*dev_, 1, width, random_floats(width, rng));
    std::vector<float> inv_freq(head_dim / 2);
    for (size_t i = 0; i < inv_freq.size(); ++i)
        inv_freq[i] = std::pow(10000.f, -2.f * static_cast<float>(i) / static_cast<float>(head_dim));
    RopeParams rope;
    rope.n_heads = n_heads;
    rope.head_dim = head_dim;
    rope.rope_dim = head_dim;
    rope.inv_freq = inv_freq.data();
    AttentionParams ap;
    ap.n_heads = ap.n_kv_heads = n_heads;
    ap.head_dim = head_dim;
    ap.scale = 0.125f;
    const int32_t positions[tokens] = {74, 75, 76, 77, 78, 79};
    std::vector<float> x[2];
    std::vector<uint8_t> kv[2][2];
    for (int i = 0; i < 2; ++i) {
        x[i] = random_floats(static_cast<size_t>(tokens * k), rng);
        for (auto& b : kv[i]) b = rows_of(DType::F16, random_floats(static_cast<size_t>(kv_tokens * width), rng));
    }
    // Chain i's tensors on backend b, allocated up front (the helpers are
    // not thread-safe); run() only enqueues ops and reads back.
    struct Chain {
        Tensor x, h, q, o;
        KvView view;
    };
    auto prepare = [&](Backend& b, int i) {
        Chain c;
        c.x = upload_f32(b, tokens, k, x[i]);
        c.h = zeros(b, DType::F32, tokens, width);
        c.q = zeros(b, DType::F32, tokens, width);
        c.o = zeros(b, DType::F32, tokens, width);
        c.view.n_segments = 1;
        c.view.seg[0].k = upload(b, DType::F16, kv_tokens, width, kv[i][0].data());
        c.view.seg[0].v = upload(b, DType::F16, kv_tokens, width, kv[i][1].data());
        c.view.seg[0].n_tokens = kv_tokens;
        return c;
    };
    auto run = [&](Backend& b, Chain& c) {
        b.matmul(wd, c.x, c.h);
        b.rms_norm(c.h, nd, 1e-5f, c.q);
        b.rope(c.q, positions, rope);
        b.attention(c.q, positions, c.view, ap, c.o);
        std::vector<float> out(static_cast<size_t>(tokens * width));
        b.read(c.o, out.data(), out.size() * 4);
        b.synchronize();
        return out;
    };
    std::vector<float> alone[2];
    for (int i = 0; i < 2; ++i) {
        Chain c = prepare(*dev_, i);
        alone[i] = run(*dev_, c);
        ASSERT_FALSE(std::all_of(alone[i].begin(), alone[i].end(), [](float v) { return v == 0.f; }));
    }
    Chain chains[2] = {prepare(*streams[0], 0), prepare(*streams[1], 1)};
    int mismatches[2] = {0, 0};
    std::thread threads[2];
    for (int i = 0; i < 2; ++i)
        threads[i] = std::thread([&, i] {
            for (int round = 0; round < 20; ++round) mismatches[i] += run(*streams[i], chains[i]) != alone[i];
        });
    for (auto& t : threads) t.join();
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(mismatches[i], 0) << "stream " << i << ": rounds that differ from the single-thread result";
        const Status st = streams[i]->take_error();
        EXPECT_TRUE(st.ok()) << st.message();
    }
    buffers_.clear();  // before the streams go
}

// An allocation the device cannot hold: EKV_ERR_OUT_OF_MEMORY naming the
// requested bytes; nothing is left broken (no sticky error, the next
// allocation and op work).
TEST_F(CudaOps, OutOfMemoryIsReportedAndRecoverable) {
    const size_t huge = size_t(1) << 50;
    std::unique_ptr<Buffer> buf;
    const Status st = dev_->alloc(huge, Placement::Device, &buf);
    EXPECT_EQ(st.code(), EKV_ERR_OUT_OF_MEMORY) << st.message();
    EXPECT_NE(st.message().find(std::to_string(huge)), std::string::npos) << st.message();
    EXPECT_FALSE(buf);
    const Status host = dev_->alloc(huge, Placement::Host, &buf);
    EXPECT_EQ(host.code(), EKV_ERR_OUT_OF_MEMORY) << host.message();
    EXPECT_TRUE(dev_->take_error().ok()) << "a refused allocation must not leave an error behind";
    std::mt19937 rng(33);
    const std::vector<float> a = random_floats(300, rng), b = random_floats(300, rng);
    Tensor ad = upload_f32(*dev_, 3, 100, a), bd = upload_f32(*dev_, 3, 100, b), od = zeros(*dev_, DType::F32, 3, 100);
    Tensor ac = upload_f32(*cpu_, 3, 100, a), bc = upload_f32(*cpu_, 3, 100, b), oc = zeros(*cpu_, DType::F32, 3, 100);
    dev_->add(ad, bd, od);
    cpu_->add(ac, bc, oc);
    EXPECT_EQ(download_f32(*dev_, od), download_f32(*cpu_, oc));
}

// A CPU tensor handed to a CUDA op is a recorded EKV_ERR_INVALID_ARGUMENT
// (no host pointer is dereferenced on the device); the next op works.
TEST_F(CudaOps, TensorOfAnotherBackendIsInvalidArgument) {
    std::mt19937 rng(34);
    const std::vector<float> v = random_floats(128, rng);
    Tensor on_cpu = upload_f32(*cpu_, 2, 64, v), a = upload_f32(*dev_, 2, 64, v);
    Tensor out = zeros(*dev_, DType::F32, 2, 64);
    dev_->silu_mul(on_cpu, a, out);
    Status st = dev_->take_error();
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_ARGUMENT) << st.message();
    EXPECT_NE(st.message().find("silu_mul"), std::string::npos) << st.message();
    dev_->copy_bytes(*on_cpu.buffer, 0, *a.buffer, 0, 64);
    st = dev_->take_error();
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_ARGUMENT) << st.message();
    Tensor oc = zeros(*cpu_, DType::F32, 2, 64);
    dev_->silu_mul(a, a, out);
    cpu_->silu_mul(on_cpu, on_cpu, oc);
    EXPECT_LT(normalized_error(download_f32(*dev_, out), download_f32(*cpu_, oc)), 1e-5);
}

}  // namespace
}  // namespace ekv_cuda_test
