// CPU matmul against a double-precision reference built from dequantize_row
// (itself pinned to gguf-py by test_quant), for every weight type, a spread of
// shapes, both activation precisions, both kernel sets (run-time choice and
// forced scalar) and 1 vs 2 threads. On aarch64 also the NEON int8 set
// without SDOT against the SDOT one (same bits).
//
// Tolerances, each error normalized by l2 = sqrt(sum (W_deq * x)^2) (the
// typical size of the dot for random data) or by l1 = sum |W_deq * x|:
//  - F32 activations (and float weights): against W_deq . x,
//    max err/l2 < 1e-5 (observed: AVX2 <= 2.5e-6 for the formats with block
//    offsets, whose m * sum(x) term cancels part of d * (q . x), ~1e-6
//    otherwise; scalar, which accumulates in double, <= 2e-7); scalar and
//    run-time ISA agree within 1e-6 * l1.
//  - Int8 activations: "exact" against W_deq . x_deq, where x_deq is the
//    activation after the kernels' own 8-bit quantization (d * q); only float
//    rounding differs: |err| <= 2e-5 * sum|W_deq * x_deq| per output.
//    "Quantized" against W_deq . x: the 8-bit activation quantization costs
//    ~0.7%: rms over outputs of err/l2 < 2e-2, max err/l2 < 6e-2 (observed:
//    ~0.011 and ~0.03).
//  - Both precisions: 1 and 2 threads give bit-identical y, and every output
//    is bitwise the same whatever the batch size, the token's place in the
//    batch and the thread count (BitwiseIndependentOfBatching).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#include "backend/cpu/matmul.h"
#include "backend/cpu/matmul_kernels.h"
#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace ekv {
namespace cpu {
namespace {

struct Shape {
    int64_t k;
    int64_t rows;
    int ntok;
};

// k = 32..2048 incl. 576 and 1536, odd rows, ntok 1,2,3,5,8,9,17,128 (from 4
// tokens on the quantized formats take the panel GEMM: several k chunks, and
// rows that are not whole panels or register tiles).
const Shape kShapes32[] = {
    {32, 1, 1},    {32, 7, 2},     {64, 3, 3},     {96, 300, 5},  {160, 17, 8},  {576, 1, 1},
    {576, 64, 17}, {576, 299, 2},  {1536, 33, 5},  {1536, 1, 8},  {2048, 129, 3}, {2048, 5, 17},
    {512, 2, 1},   {1024, 255, 1}, {288, 100, 4},  {672, 31, 128}, {800, 16, 9},
};
// K-quants need multiples of 256.
const Shape kShapesK[] = {
    {256, 1, 1},  {256, 7, 2},    {512, 3, 3},  {768, 300, 5}, {1536, 17, 8},
    {1536, 64, 17}, {2048, 129, 3}, {2048, 5, 1}, {1024, 255, 1}, {256, 100, 4},
    {1280, 29, 128}, {512, 14, 9},
};
// Float weights also take any k (exercises the SIMD tails).
const Shape kShapesOddK[] = {{7, 5, 1}, {13, 3, 5}, {37, 17, 3}, {100, 9, 17}, {1, 4, 2}};

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                           DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Offsets of the half-precision scale fields in one block, so random block
// bytes get finite, moderate scales (everything else is valid for any bits).
std::vector<size_t> half_field_offsets(DType t) {
    switch (t) {
        case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return {0};
        case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
        case DType::Q6_K: return {208};
        default: return {};
    }
}

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// Rows of random weights in format t: quantized random floats where a
// reference quantizer exists (and `raw_bytes` is false), else random bytes.
std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t k, bool raw_bytes, std::mt19937& rng) {
    const size_t row_bytes = dtype_row_bytes(t, k);
    std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
    if (quantize_row_supported(t) && !(raw_bytes && !is_float_type(t))) {
        for (int64_t r = 0; r < rows; ++r) {
            auto fr = random_floats(static_cast<size_t>(k), rng);
            EXPECT_TRUE(quantize_row(t, fr.data(), w.data() + r * row_bytes, k));
        }
        return w;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(0.002f, 0.05f);
    for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
    const size_t bb = dtype_traits(t).block_bytes;
    for (size_t off = 0; off < w.size(); off += bb) {
        for (size_t f : half_field_offsets(t)) {
            const float v = (byte(rng) & 1 ? 1.0f : -1.0f) * scale(rng);
            const uint16_t h = f32_to_f16(v);
            std::memcpy(w.data() + off + f, &h, 2);
        }
    }
    return w;
}

// The activations as the int8 kernels see them after 8-bit quantization.
std::vector<float> kernel_view_of_x(DType t, const std::vector<float>& x) {
    const int64_t n = static_cast<int64_t>(x.size());
    std::vector<float> out(x.size());
    switch (detail::act_format(t, ActivationPrecision::Int8)) {
        case detail::ActFormat::Q8_1F: {
            std::vector<BlockQ8_1F> q(static_cast<size_t>(n / kQK));
            quantize_row_q8_1f(x.data(), q.data(), n);
            for (int64_t i = 0; i < n; ++i) out[i] = q[i / kQK].d * q[i / kQK].qs[i % kQK];
            return out;
        }
        case detail::ActFormat::Q8_K: {
            std::vector<BlockQ8_K> q(static_cast<size_t>(n / kQK_K));
            quantize_row_q8_k(x.data(), q.data(), n);
            for (int64_t i = 0; i < n; ++i) out[i] = q[i / kQK_K].d * q[i / kQK_K].qs[i % kQK_K];
            return out;
        }
        default:
            return x;
    }
}

struct Reference {
    std::vector<double> exact;     // W_deq . x_kernel_view (int8 view of x)
    std::vector<double> abs_sum;   // sum |W_deq * x_kernel_view|
    std::vector<double> true_x;    // W_deq . x
    std::vector<double> l2;        // sqrt(sum (W_deq * x)^2): typical |W_deq . x| for random data
    std::vector<double> l1;        // sum |W_deq * x|
};

Reference reference(DType t, const std::vector<uint8_t>& w, const Shape& s, const std::vector<float>& x) {
    const size_t row_bytes = dtype_row_bytes(t, s.k);
    const size_t k = static_cast<size_t>(s.k);
    std::vector<std::vector<float>> xq(static_cast<size_t>(s.ntok));
    for (int tok = 0; tok < s.ntok; ++tok) {
        const std::vector<float> xt(x.begin() + tok * s.k, x.begin() + (tok + 1) * s.k);
        xq[tok] = kernel_view_of_x(t, xt);
    }
    Reference ref;
    const size_t n_out = static_cast<size_t>(s.rows) * s.ntok;
    ref.exact.resize(n_out);
    ref.abs_sum.resize(n_out);
    ref.true_x.resize(n_out);
    ref.l2.resize(n_out);
    ref.l1.resize(n_out);
    std::vector<float> wdeq(k);
    for (int64_t r = 0; r < s.rows; ++r) {
        dequantize_row(t, w.data() + r * row_bytes, wdeq.data(), s.k);
        for (int tok = 0; tok < s.ntok; ++tok) {
            double exact = 0, abs_sum = 0, true_x = 0, sq = 0, l1 = 0;
            for (size_t i = 0; i < k; ++i) {
                const double p = static_cast<double>(wdeq[i]) * xq[tok][i];
                const double p_true = static_cast<double>(wdeq[i]) * x[tok * k + i];
                exact += p;
                abs_sum += std::fabs(p);
                true_x += p_true;
                sq += p_true * p_true;
                l1 += std::fabs(p_true);
            }
            const size_t o = static_cast<size_t>(tok) * s.rows + r;
            ref.exact[o] = exact;
            ref.abs_sum[o] = abs_sum;
            ref.true_x[o] = true_x;
            ref.l2[o] = std::sqrt(sq);
            ref.l1[o] = l1;
        }
    }
    return ref;
}

// Runs matmul with a canary after y and a deliberately misaligned scratch.
std::vector<float> run_matmul(DType t, const std::vector<uint8_t>& w, const Shape& s, const float* x,
                              ThreadPool& pool, ActivationPrecision precision) {
    const size_t n_out = static_cast<size_t>(s.rows) * s.ntok;
    std::vector<float> y(n_out + 1, NAN);
    y[n_out] = 1234.5f;
    std::vector<uint8_t> scratch(matmul_scratch_bytes(t, s.k, s.ntok, precision) + 1);
    matmul(t, w.data(), s.rows, s.k, x, s.ntok, y.data(), scratch.data() + 1, pool, precision);
    EXPECT_EQ(y[n_out], 1234.5f) << "matmul wrote past y";
    y.pop_back();
    return y;
}

const char* precision_name(ActivationPrecision p) { return p == ActivationPrecision::F32 ? "f32" : "int8"; }

std::string describe(DType t, const Shape& s, ActivationPrecision p, const char* isa, int threads) {
    return std::string(dtype_name(t)) + " k=" + std::to_string(s.k) + " rows=" + std::to_string(s.rows) +
           " ntok=" + std::to_string(s.ntok) + " act=" + precision_name(p) + " isa=" + isa +
           " threads=" + std::to_string(threads);
}

// F32 activations: max err/l2 < 1e-5 against W_deq . x.
void check_f32_against_reference(const Reference& ref, const std::vector<float>& y, const std::string& what) {
    double max_rel = 0;
    size_t worst = 0;
    for (size_t o = 0; o < y.size(); ++o) {
        ASSERT_TRUE(std::isfinite(y[o])) << what << " output " << o;
        const double rel = std::fabs(y[o] - ref.true_x[o]) / (ref.l2[o] + 1e-30);
        if (rel > max_rel) {
            max_rel = rel;
            worst = o;
        }
    }
    if (std::getenv("EKV_TEST_VERBOSE")) std::printf("%-62s max %.3g\n", what.c_str(), max_rel);
    EXPECT_LT(max_rel, 1e-5) << what << " worst output " << worst << ": got " << y[worst] << " want "
                             << ref.true_x[worst];
}

// Int8 activations: checks one result against both references (see the
// tolerances above).
void check_int8_against_reference(const Reference& ref, const std::vector<float>& y, const std::string& what) {
    int bad = 0;
    double rel2 = 0, max_rel = 0;
    for (size_t o = 0; o < y.size(); ++o) {
        ASSERT_TRUE(std::isfinite(y[o])) << what << " output " << o;
        const double tol = 2e-5 * ref.abs_sum[o] + 1e-30;
        if (std::fabs(y[o] - ref.exact[o]) > tol && bad++ < 3) {
            ADD_FAILURE() << what << " output " << o << ": got " << y[o] << " want " << ref.exact[o]
                          << " (tol " << tol << ")";
        }
        const double rel = std::fabs(y[o] - ref.true_x[o]) / (ref.l2[o] + 1e-30);
        rel2 += rel * rel;
        max_rel = std::fmax(max_rel, rel);
    }
    EXPECT_EQ(bad, 0) << what;
    const double rms_rel = std::sqrt(rel2 / static_cast<double>(y.size()));
    if (std::getenv("EKV_TEST_VERBOSE")) std::printf("%-62s rms %.5f max %.5f\n", what.c_str(), rms_rel, max_rel);
    EXPECT_LT(rms_rel, 2e-2) << what;
    EXPECT_LT(max_rel, 6e-2) << what;
}

std::vector<Shape> shapes_for(DType t) {
    if (t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K) {
        return std::vector<Shape>(std::begin(kShapesK), std::end(kShapesK));
    }
    std::vector<Shape> shapes(std::begin(kShapes32), std::end(kShapes32));
    if (is_float_type(t)) {
        for (const Shape& s : kShapesOddK) shapes.push_back(s);
    }
    return shapes;
}

class MatmulTypeTest : public ::testing::TestWithParam<DType> {
protected:
    void TearDown() override { matmul_force_scalar(false); }
};

TEST_P(MatmulTypeTest, MatchesDequantizedReference) {
    const DType t = GetParam();
    ASSERT_TRUE(matmul_supported(t));
    const std::vector<Shape> shapes = shapes_for(t);
    ThreadPool pool1(1), pool2(2);
    std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
    int case_index = 0;
    for (const Shape& s : shapes) {
        const auto w = random_weights(t, s.rows, s.k, (case_index++ % 2) == 1, rng);
        auto x = random_floats(static_cast<size_t>(s.k) * s.ntok, rng);
        if (s.k >= 64) std::fill(x.begin(), x.begin() + 32, 0.0f);  // an all-zero activation block
        const Reference ref = reference(t, w, s, x);

        for (ActivationPrecision p : {ActivationPrecision::F32, ActivationPrecision::Int8}) {
            const bool f32_act = p == ActivationPrecision::F32 || is_float_type(t);
            std::vector<std::vector<float>> results;
            for (bool force_scalar : {false, true}) {
                matmul_force_scalar(force_scalar);
                const char* isa = matmul_isa();
                const auto y1 = run_matmul(t, w, s, x.data(), pool1, p);
                const auto y2 = run_matmul(t, w, s, x.data(), pool2, p);
                if (f32_act) {
                    check_f32_against_reference(ref, y1, describe(t, s, p, isa, 1));
                } else {
                    check_int8_against_reference(ref, y1, describe(t, s, p, isa, 1));
                }
                ASSERT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)))
                    << describe(t, s, p, isa, 2) << ": 1 and 2 threads differ";
                results.push_back(y1);
            }
            // Run-time ISA vs scalar: same quantity, only float rounding differs.
            double max_rel = 0;
            for (size_t o = 0; o < results[0].size(); ++o) {
                const double tol = f32_act ? 1e-6 * ref.l1[o] : 2e-5 * ref.abs_sum[o];
                ASSERT_NEAR(results[0][o], results[1][o], tol + 1e-30)
                    << describe(t, s, p, "both", 1) << " output " << o;
                max_rel = std::fmax(max_rel, std::fabs(results[0][o] - results[1][o]) / (ref.l2[o] + 1e-30));
            }
            if (std::getenv("EKV_TEST_VERBOSE")) {
                std::printf("%-62s isa vs scalar: max diff/l2 %.3g\n", describe(t, s, p, "both", 1).c_str(), max_rel);
            }
        }
    }
}

// Transformer activations are not centred white noise: a per-channel offset
// and a few channels two orders of magnitude above the rest are common. The
// kernels' m * sum(x) term must not lose the dot product to cancellation.
TEST_P(MatmulTypeTest, F32ActivationsWithOutlierChannelsMatchReference) {
    const DType t = GetParam();
    const bool kquant = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
    const Shape s{kquant ? 1536 : 576, 97, 5};
    std::mt19937 rng(static_cast<unsigned>(t) * 31337u + 7u);
    const auto w = random_weights(t, s.rows, s.k, false, rng);
    auto x = random_floats(static_cast<size_t>(s.k) * s.ntok, rng);
    std::vector<float> channel_offset(static_cast<size_t>(s.k));
    std::normal_distribution<float> offset(0.0f, 2.0f);
    for (auto& o : channel_offset) o = offset(rng);
    for (int tok = 0; tok < s.ntok; ++tok) {
        float* xt = x.data() + tok * s.k;
        for (int64_t i = 0; i < s.k; ++i) xt[i] += channel_offset[i];
        xt[5] *= 150.0f;
        xt[s.k / 2 + 3] *= -120.0f;
        xt[s.k - 7] *= 200.0f;
    }
    const Reference ref = reference(t, w, s, x);
    ThreadPool pool(2);
    for (bool force_scalar : {false, true}) {
        matmul_force_scalar(force_scalar);
        const auto y = run_matmul(t, w, s, x.data(), pool, ActivationPrecision::F32);
        check_f32_against_reference(ref, y, describe(t, s, ActivationPrecision::F32, matmul_isa(), 2) + " outliers");
    }
    matmul_force_scalar(false);
}

// Each token computed alone must give bitwise the same outputs as inside any
// batch: whatever the batch size, the token's position (and so its token
// tile), the thread count (and so the row split).
TEST_P(MatmulTypeTest, BitwiseIndependentOfBatching) {
    const DType t = GetParam();
    const bool kquant = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
    const int64_t k = is_float_type(t) ? 203 : (kquant ? 768 : 576);
    const int64_t rows = 37;  // not a multiple of the 16-row blocks; splits unevenly
    const int kTokens = 17;
    std::mt19937 rng(static_cast<unsigned>(t) * 104729u + 3u);
    const auto w = random_weights(t, rows, k, false, rng);
    const auto x = random_floats(static_cast<size_t>(k) * kTokens, rng);
    ThreadPool pool1(1), pool2(2), pool3(3);
    ThreadPool* pools[] = {&pool1, &pool2, &pool3};

    for (ActivationPrecision p : {ActivationPrecision::F32, ActivationPrecision::Int8}) {
        for (bool force_scalar : {false, true}) {
            matmul_force_scalar(force_scalar);
            const char* isa = matmul_isa();
            std::vector<std::vector<float>> alone(kTokens);
            for (int tok = 0; tok < kTokens; ++tok) {
                alone[tok] = run_matmul(t, w, {k, rows, 1}, x.data() + tok * k, pool1, p);
            }
            for (int ntok : {2, 3, 5, 8, 17}) {
                for (int first : {0, 1, 2, kTokens - ntok}) {
                    if (first + ntok > kTokens) continue;
                    for (ThreadPool* pool : pools) {
                        const Shape s{k, rows, ntok};
                        const auto y = run_matmul(t, w, s, x.data() + first * k, *pool, p);
                        for (int j = 0; j < ntok; ++j) {
                            ASSERT_EQ(0, std::memcmp(y.data() + j * rows, alone[first + j].data(),
                                                     rows * sizeof(float)))
                                << describe(t, s, p, isa, pool->size()) << ": token " << first + j
                                << " at batch position " << j << " differs from the token alone";
                        }
                    }
                }
            }
        }
    }
    matmul_force_scalar(false);
}

// The same for a prefill-sized batch (the panel GEMM with many token tiles
// and k chunks) against the single-token GEMV, rows split unevenly.
TEST_P(MatmulTypeTest, LargeBatchBitwiseMatchesSingleTokens) {
    const DType t = GetParam();
    const bool kquant = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
    const int64_t k = is_float_type(t) ? 203 : (kquant ? 1280 : 1312);  // 1312: 41 blocks, a partial group of 8
    const int64_t rows = 47;
    const int kTokens = 128;
    std::mt19937 rng(static_cast<unsigned>(t) * 15485863u + 11u);
    const auto w = random_weights(t, rows, k, false, rng);
    const auto x = random_floats(static_cast<size_t>(k) * kTokens, rng);
    ThreadPool pool1(1), pool3(3);
    for (ActivationPrecision p : {ActivationPrecision::F32, ActivationPrecision::Int8}) {
        const auto batch = run_matmul(t, w, {k, rows, kTokens}, x.data(), pool3, p);
        for (int tok = 0; tok < kTokens; ++tok) {
            const auto alone = run_matmul(t, w, {k, rows, 1}, x.data() + tok * k, pool1, p);
            ASSERT_EQ(0, std::memcmp(batch.data() + tok * rows, alone.data(), rows * sizeof(float)))
                << describe(t, {k, rows, kTokens}, p, matmul_isa(), 3) << ": token " << tok;
        }
    }
}

// Many row chunks per thread in one call, then calls with other
// activations on the same threads: per-call work a thread keeps between its
// chunks (the f32 GEMM's regrouped activations) must be redone for every
// call and never leak into the next one.
TEST_P(MatmulTypeTest, ManyRowChunksPerThreadAndBackToBackCalls) {
    const DType t = GetParam();
    const bool kquant = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
    const int64_t k = is_float_type(t) ? 203 : (kquant ? 512 : 320);
    const int64_t rows = 301;  // ~20 claims of whole panels for 2 threads
    const int kTokens = 9;
    std::mt19937 rng(static_cast<unsigned>(t) * 7727u + 5u);
    const auto w = random_weights(t, rows, k, false, rng);
    const auto xa = random_floats(static_cast<size_t>(k) * kTokens, rng);
    const auto xb = random_floats(static_cast<size_t>(k) * kTokens, rng);
    ThreadPool pool1(1), pool2(2);
    for (ActivationPrecision p : {ActivationPrecision::F32, ActivationPrecision::Int8}) {
        for (const auto* x : {&xa, &xb, &xa}) {
            const auto batch = run_matmul(t, w, {k, rows, kTokens}, x->data(), pool2, p);
            for (int tok = 0; tok < kTokens; ++tok) {
                const auto alone = run_matmul(t, w, {k, rows, 1}, x->data() + tok * k, pool1, p);
                ASSERT_EQ(0, std::memcmp(batch.data() + tok * rows, alone.data(), rows * sizeof(float)))
                    << describe(t, {k, rows, kTokens}, p, matmul_isa(), 2) << ": token " << tok;
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTypeTest, ::testing::ValuesIn(kAllTypes),
                         [](const ::testing::TestParamInfo<DType>& info) {
                             return std::string(dtype_name(info.param));
                         });

TEST(Matmul, IsaNameAndForceScalar) {
    const std::string isa = matmul_isa();
    EXPECT_TRUE(isa == "avx2" || isa == "neon+dotprod" || isa == "neon" || isa == "scalar") << isa;
    // Cross builds run on an emulated CPU whose features the preset knows:
    // the SIMD set must be the one in use, not a silent scalar fallback.
    if (const char* want = std::getenv("EKV_TEST_EXPECT_MATMUL_ISA")) EXPECT_EQ(isa, want);
    matmul_force_scalar(true);
    EXPECT_STREQ(matmul_isa(), "scalar");
    matmul_force_scalar(false);
    EXPECT_EQ(isa, matmul_isa());
}

// A SIMD set's activation quantizers must produce the scalar quantizers'
// bytes, or the kernel sets would compute different quantities.
void expect_scalar_quantizer_bytes(const detail::Int8ActKernels& set) {
    std::mt19937 rng(5);
    auto x = random_floats(256 * 6, rng);
    for (size_t i = 0; i < x.size(); i += 7) x[i] *= 50.0f;       // varied block scales
    std::fill(x.begin() + 256, x.begin() + 512, 0.0f);            // zero blocks
    for (int i = 0; i < 64; ++i) x[600 + i] = 0.5f * (i - 32);    // exact .5 ties after scaling

    std::vector<BlockQ8_1F> a(x.size() / kQK), b(x.size() / kQK);
    quantize_row_q8_1f(x.data(), a.data(), static_cast<int64_t>(x.size()));
    set.quantize_q8_1f(x.data(), b.data(), static_cast<int64_t>(x.size()));
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(BlockQ8_1F)));

    std::vector<BlockQ8_K> c(x.size() / kQK_K), d(x.size() / kQK_K);
    quantize_row_q8_k(x.data(), c.data(), static_cast<int64_t>(x.size()));
    set.quantize_q8_k(x.data(), d.data(), static_cast<int64_t>(x.size()));
    EXPECT_EQ(0, std::memcmp(c.data(), d.data(), c.size() * sizeof(BlockQ8_K)));
}

#if defined(__x86_64__) || defined(__i386__)
TEST(Matmul, Avx2QuantizersMatchScalarBytes) {
    const detail::Int8ActKernels* avx2 = detail::avx2_int8_kernels();
    if (!avx2 || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        GTEST_SKIP() << "no AVX2 kernels on this build/CPU";
    }
    expect_scalar_quantizer_bytes(*avx2);
}
#endif

#if defined(__aarch64__)
bool cpu_has_dotprod() {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return false;
#endif
}

TEST(Matmul, NeonQuantizersMatchScalarBytes) {
    expect_scalar_quantizer_bytes(*detail::neon_int8_kernels());
    if (!cpu_has_dotprod()) GTEST_SKIP() << "the CPU has no dotprod: the SDOT build's quantizers were not run";
    ASSERT_NE(detail::neon_dotprod_int8_kernels(), nullptr) << "built without the dotprod kernels";
    expect_scalar_quantizer_bytes(*detail::neon_dotprod_int8_kernels());
}

// One int8 kernel set run directly: its own quantizer, then every row.
std::vector<float> run_int8_set(const detail::Int8ActKernels& set, DType t, const std::vector<uint8_t>& w,
                                const Shape& s, const std::vector<float>& x) {
    const bool k_quant = detail::act_format(t, ActivationPrecision::Int8) == detail::ActFormat::Q8_K;
    const size_t act_row_bytes = k_quant ? static_cast<size_t>(s.k / kQK_K) * sizeof(BlockQ8_K)
                                         : static_cast<size_t>(s.k / kQK) * sizeof(BlockQ8_1F);
    std::vector<uint8_t> act(act_row_bytes * static_cast<size_t>(s.ntok));
    (k_quant ? set.quantize_q8_k : set.quantize_q8_1f)(x.data(), act.data(), s.k * s.ntok);
    std::vector<float> y(static_cast<size_t>(s.rows) * s.ntok, NAN);
    detail::MatmulJob job{w.data(), dtype_row_bytes(t, s.k), s.k, act.data(), act_row_bytes,
                          nullptr, s.ntok, s.rows, y.data()};
    detail::RowsKernel rows = set.rows(t);
    EXPECT_NE(rows, nullptr) << dtype_name(t);
    if (rows) rows(job, 0, s.rows);
    return y;
}

// The SDOT kernels (picked on CPUs with dotprod) and the widening-multiply
// ones (every other ARMv8 CPU) share their code but for the integer dot:
// block sums are exact, so every output must be bitwise the same. The SDOT
// set is the one the other tests exercise through matmul() on such a CPU.
TEST(Matmul, NeonInt8SetsWithAndWithoutDotprodGiveTheSameBits) {
    if (!cpu_has_dotprod()) GTEST_SKIP() << "the CPU has no dotprod: nothing to compare the plain NEON set with";
    const detail::Int8ActKernels* sdot = detail::neon_dotprod_int8_kernels();
    const detail::Int8ActKernels* plain = detail::neon_int8_kernels();
    ASSERT_NE(sdot, nullptr);
    for (DType t : kAllTypes) {
        if (is_float_type(t)) continue;
        std::mt19937 rng(static_cast<unsigned>(t) * 6007u + 11u);
        int case_index = 0;
        for (const Shape& s : shapes_for(t)) {
            const auto w = random_weights(t, s.rows, s.k, (case_index++ % 2) == 1, rng);
            const auto x = random_floats(static_cast<size_t>(s.k) * s.ntok, rng);
            const auto a = run_int8_set(*sdot, t, w, s, x);
            const auto b = run_int8_set(*plain, t, w, s, x);
            ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
                << describe(t, s, ActivationPrecision::Int8, "neon vs neon+dotprod", 1);
            for (float v : a) ASSERT_TRUE(std::isfinite(v)) << describe(t, s, ActivationPrecision::Int8, "neon", 1);
        }
    }
}
#endif

TEST(Matmul, BadArgumentsZeroFillWithoutCrashing) {
    const ActivationPrecision kInt8 = ActivationPrecision::Int8;
    ThreadPool pool(2);
    std::vector<uint8_t> w(4096, 0x11);
    std::vector<float> x(256, 1.0f), y(8, 7.0f);
    std::vector<uint8_t> scratch(matmul_scratch_bytes(DType::Q4_1, 64, 2, kInt8));

    EXPECT_FALSE(matmul_supported(DType::Q2_K));
    for (ActivationPrecision p : {ActivationPrecision::F32, kInt8}) {
        EXPECT_EQ(matmul_scratch_bytes(DType::Q2_K, 256, 1, p), 0u);
        EXPECT_EQ(matmul_scratch_bytes(DType::Q4_0, 48, 1, p), 0u);  // k not a multiple of 32
        EXPECT_EQ(matmul_scratch_bytes(DType::F16, 64, 4, p), 0u);   // float weights need none
        EXPECT_GT(matmul_scratch_bytes(DType::Q4_K, 256, 1, p), 0u);
        EXPECT_GT(matmul_scratch_bytes(DType::Q4_1, 64, 1, p), 0u);
    }
    // F32 activations: block sums only where the weights have offsets.
    for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0}) EXPECT_EQ(matmul_scratch_bytes(t, 64, 3), 0u);
    EXPECT_EQ(matmul_scratch_bytes(DType::Q6_K, 256, 3), 0u);
    EXPECT_GT(matmul_scratch_bytes(DType::Q5_1, 64, 3), 0u);
    EXPECT_GT(matmul_scratch_bytes(DType::Q5_K, 256, 3), 0u);
    EXPECT_GT(matmul_scratch_bytes(DType::Q8_0, 64, 3, kInt8), 0u);
    EXPECT_LT(matmul_scratch_bytes(DType::Q4_1, 4096, 8), matmul_scratch_bytes(DType::Q4_1, 4096, 8, kInt8));

    matmul(DType::Q2_K, w.data(), 2, 256, x.data(), 1, y.data(), scratch.data(), pool);
    EXPECT_EQ(y[0], 0.0f);
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[2], 7.0f);

    for (ActivationPrecision p : {ActivationPrecision::F32, kInt8}) {
        std::fill(y.begin(), y.end(), 7.0f);
        matmul(DType::Q4_0, w.data(), 4, 48, x.data(), 2, y.data(), scratch.data(), pool, p);
        for (float v : y) EXPECT_EQ(v, 0.0f);

        std::fill(y.begin(), y.end(), 7.0f);
        matmul(DType::Q4_1, w.data(), 4, 64, x.data(), 2, y.data(), nullptr, pool, p);  // missing scratch
        for (float v : y) EXPECT_EQ(v, 0.0f);

        matmul(DType::Q4_0, w.data(), 0, 64, x.data(), 2, y.data(), scratch.data(), pool, p);  // nothing to do
        matmul(DType::Q4_0, w.data(), 4, 64, x.data(), 0, y.data(), scratch.data(), pool, p);
    }

    // Q8_0 with f32 activations needs no scratch: a null one is fine.
    // Every block is d = half(0x1111) ~ 6.1e-5 with quants 0x11 = 17.
    std::fill(y.begin(), y.end(), 7.0f);
    matmul(DType::Q8_0, w.data(), 4, 64, x.data(), 2, y.data(), nullptr, pool);
    const float want = 64.0f * 17.0f * f16_to_f32(0x1111);
    for (float v : y) EXPECT_FLOAT_EQ(v, want);
}

}  // namespace
}  // namespace cpu
}  // namespace ekv
