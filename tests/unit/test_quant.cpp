// Quantization formats: dequantize_row against gguf-py fixtures (which pins
// the block layouts independently of this code), reference quantizers byte
// for byte against gguf-py, and the activation quantizers' invariants.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant.h"

#ifndef EKV_FIXTURES_DIR
#define EKV_FIXTURES_DIR "tests/fixtures"
#endif

namespace ekv {
namespace {

struct QuantFixture {
    uint32_t type_id = 0;
    uint32_t n = 0;
    std::vector<float> src;  // empty when the fixture has no source floats
    std::vector<uint8_t> raw;
    std::vector<float> expected;
};

std::string fixture_path(const std::string& name) {
    const char* env = std::getenv("EKV_FIXTURES_DIR");
    return std::string(env ? env : EKV_FIXTURES_DIR) + "/quant/" + name + ".bin";
}

template <class T>
bool read_vec(std::ifstream& f, std::vector<T>& v, size_t count) {
    v.resize(count);
    f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)));
    return static_cast<bool>(f);
}

// Reads tools/gen_quant_fixtures.py output; false (with a message) on failure.
bool load_fixture(const std::string& name, QuantFixture* fx, std::string* why) {
    std::ifstream f(fixture_path(name), std::ios::binary);
    if (!f) {
        *why = "cannot open " + fixture_path(name) + " (run tools/gen_quant_fixtures.py)";
        return false;
    }
    char magic[4];
    uint32_t hdr[5];
    f.read(magic, 4);
    f.read(reinterpret_cast<char*>(hdr), sizeof(hdr));
    if (!f || std::memcmp(magic, "EKVQ", 4) != 0 || hdr[0] != 1) {
        *why = "bad header in " + fixture_path(name);
        return false;
    }
    fx->type_id = hdr[1];
    fx->n = hdr[2];
    const uint32_t nbytes = hdr[3];
    const bool has_src = (hdr[4] & 1u) != 0;
    if ((has_src && !read_vec(f, fx->src, fx->n)) || !read_vec(f, fx->raw, nbytes) ||
        !read_vec(f, fx->expected, fx->n)) {
        *why = "truncated " + fixture_path(name);
        return false;
    }
    return true;
}

uint32_t float_bits(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return b;
}

// Equal bits, both NaN, or adjacent floats of the same sign (1 ulp).
bool within_one_ulp(float got, float want) {
    if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
    const uint32_t a = float_bits(got), b = float_bits(want);
    if (a == b) return true;
    if ((a ^ b) & 0x80000000u) return got == want;  // +0 vs -0
    return (a > b ? a - b : b - a) <= 1;
}

class DequantFixtureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(DequantFixtureTest, MatchesGgufPy) {
    QuantFixture fx;
    std::string why;
    ASSERT_TRUE(load_fixture(GetParam(), &fx, &why)) << why;
    DType t;
    ASSERT_TRUE(dtype_from_u32(fx.type_id, &t));
    ASSERT_STREQ(dtype_name(t), GetParam());
    ASSERT_TRUE(dequantize_supported(t));
    ASSERT_EQ(fx.raw.size(), dtype_row_bytes(t, fx.n));

    std::vector<float> got(fx.n, -12345.0f);
    dequantize_row(t, fx.raw.data(), got.data(), fx.n);
    int bad = 0;
    for (uint32_t i = 0; i < fx.n; ++i) {
        if (!within_one_ulp(got[i], fx.expected[i]) && bad++ < 5) {
            ADD_FAILURE() << GetParam() << " element " << i << ": got " << got[i] << " want "
                          << fx.expected[i];
        }
    }
    EXPECT_EQ(bad, 0);

    // Row by row (one block at a time) gives the same values: no hidden state.
    const int64_t bs = dtype_traits(t).block_size;
    const size_t bb = dtype_traits(t).block_bytes;
    std::vector<float> one(static_cast<size_t>(bs));
    for (int64_t b = 0; b < static_cast<int64_t>(fx.n) / bs; ++b) {
        dequantize_row(t, fx.raw.data() + b * bb, one.data(), bs);
        ASSERT_EQ(0, std::memcmp(one.data(), got.data() + b * bs, static_cast<size_t>(bs) * 4))
            << "block " << b;
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantFixtureTest,
                         ::testing::Values("f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                                           "q4_k", "q5_k", "q6_k"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

class QuantizeFixtureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(QuantizeFixtureTest, ReferenceQuantizerMatchesGgufPyBytes) {
    QuantFixture fx;
    std::string why;
    ASSERT_TRUE(load_fixture(GetParam(), &fx, &why)) << why;
    ASSERT_FALSE(fx.src.empty());
    DType t;
    ASSERT_TRUE(dtype_from_u32(fx.type_id, &t));
    ASSERT_TRUE(quantize_row_supported(t));
    std::vector<uint8_t> bytes(dtype_row_bytes(t, fx.n), 0xAB);
    ASSERT_TRUE(quantize_row(t, fx.src.data(), bytes.data(), fx.n));
    const size_t bb = dtype_traits(t).block_bytes;
    for (size_t i = 0; i < bytes.size(); ++i) {
        ASSERT_EQ(bytes[i], fx.raw[i]) << GetParam() << " byte " << i << " (block " << i / bb << ")";
    }
}

INSTANTIATE_TEST_SUITE_P(QuantizableTypes, QuantizeFixtureTest,
                         ::testing::Values("q4_0", "q4_1", "q5_0", "q5_1", "q8_0"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

TEST(Dequantize, BadInputZeroFills) {
    std::vector<uint8_t> raw(1024, 0x55);
    std::vector<float> out(64, 1.0f);
    dequantize_row(DType::Q2_K, raw.data(), out.data(), 64);  // unsupported type
    for (float v : out) EXPECT_EQ(v, 0.0f);
    std::fill(out.begin(), out.end(), 1.0f);
    dequantize_row(DType::Q4_0, raw.data(), out.data(), 48);  // not a whole number of blocks
    for (int i = 0; i < 48; ++i) EXPECT_EQ(out[i], 0.0f);
    EXPECT_EQ(out[48], 1.0f);
    dequantize_row(DType::Q4_0, raw.data(), out.data(), 0);  // nothing to do
    EXPECT_FALSE(quantize_row(DType::Q4_K, out.data(), raw.data(), 256));
    EXPECT_FALSE(quantize_row(DType::Q8_0, out.data(), raw.data(), 40));
}

// Pack 6-bit scales/mins the way the format describes (Q4_K docs) and unpack.
TEST(KQuantScales, UnpackInvertsPacking) {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        uint8_t sc[8], mn[8], packed[12] = {};
        for (int j = 0; j < 8; ++j) {
            sc[j] = static_cast<uint8_t>(rng() % 64);
            mn[j] = static_cast<uint8_t>(rng() % 64);
        }
        for (int j = 0; j < 4; ++j) {
            packed[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            packed[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
            packed[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
        for (int j = 0; j < 8; ++j) {
            uint8_t s, m;
            unpack_scale_min_k4(packed, j, &s, &m);
            ASSERT_EQ(s, sc[j]);
            ASSERT_EQ(m, mn[j]);
        }
    }
}

std::vector<float> random_floats(size_t n, unsigned seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

TEST(ActivationQuant, Q8_1FRoundTripAndSums) {
    auto x = random_floats(32 * 40, 11, 3.0f);
    std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // zero block
    std::vector<BlockQ8_1F> q(40);
    quantize_row_q8_1f(x.data(), q.data(), static_cast<int64_t>(x.size()));
    for (int b = 0; b < 40; ++b) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b * 32 + j]));
        EXPECT_FLOAT_EQ(q[b].d, amax / 127.0f);
        int sum = 0, maxq = 0;
        for (int j = 0; j < 32; ++j) {
            sum += q[b].qs[j];
            maxq = std::max(maxq, std::abs(static_cast<int>(q[b].qs[j])));
            EXPECT_LE(std::fabs(q[b].d * q[b].qs[j] - x[b * 32 + j]), 0.5f * q[b].d * 1.0001f + 1e-30f);
        }
        EXPECT_EQ(q[b].s, q[b].d * static_cast<float>(sum));
        EXPECT_EQ(maxq, amax > 0 ? 127 : 0);
    }
}

TEST(ActivationQuant, Q8_KRoundTripAndBlockSums) {
    auto x = random_floats(256 * 3, 12, 0.5f);
    std::vector<BlockQ8_K> q(3);
    quantize_row_q8_k(x.data(), q.data(), static_cast<int64_t>(x.size()));
    for (int b = 0; b < 3; ++b) {
        for (int g = 0; g < 16; ++g) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += q[b].qs[16 * g + j];
            EXPECT_EQ(q[b].bsums[g], sum);
        }
        for (int j = 0; j < 256; ++j) {
            EXPECT_LE(std::fabs(q[b].d * q[b].qs[j] - x[b * 256 + j]), 0.5f * q[b].d * 1.0001f);
        }
    }
}

TEST(ActivationQuant, GgufQ8_1MatchesQ8_0PlusSum) {
    auto x = random_floats(32 * 8, 13, 1.0f);
    std::vector<BlockQ8_1> q1(8);
    std::vector<BlockQ8_0> q0(8);
    quantize_row_q8_1(x.data(), q1.data(), 256);
    quantize_row_q8_0(x.data(), q0.data(), 256);
    for (int b = 0; b < 8; ++b) {
        EXPECT_EQ(q1[b].d, q0[b].d);
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            EXPECT_EQ(q1[b].qs[j], q0[b].qs[j]);
            sum += q1[b].qs[j];
        }
        const float d = f16_to_f32(q1[b].d);
        EXPECT_NEAR(f16_to_f32(q1[b].s), d * sum, std::fabs(d * sum) * 1e-3f + 1e-6f);
    }
}

TEST(ActivationQuant, NonFiniteInputDoesNotCrash) {
    std::vector<float> x(256, 1.0f);
    x[3] = INFINITY;
    x[40] = NAN;
    std::vector<BlockQ8_K> qk(1);
    std::vector<BlockQ8_1F> q1(8);
    quantize_row_q8_k(x.data(), qk.data(), 256);
    quantize_row_q8_1f(x.data(), q1.data(), 256);
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0}) {
        std::vector<uint8_t> w(dtype_row_bytes(t, 256));
        EXPECT_TRUE(quantize_row(t, x.data(), w.data(), 256));
    }
}

}  // namespace
}  // namespace ekv
