// KIVI quantization (core/kivi.h): round-trip error bounds against the exact
// ranges of the data, the documented byte layout and code order checked on
// hand-built inputs, constant groups, F16 vs F32 sources, bad shapes, and the
// CPU backend ops that wrap the quantizers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/fp16.h"
#include "core/kivi.h"

namespace ekv {
namespace {

float f16_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

// Random rows with a few outlier channels (what per-channel key ranges are for).
std::vector<float> random_rows(int rows, int64_t width, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(rows) * width);
    for (int r = 0; r < rows; ++r)
        for (int64_t c = 0; c < width; ++c) x[r * width + c] = nd(rng) * (c % 17 == 3 ? 20.f : 1.f) + (c % 5) * 0.3f;
    return x;
}

// The bound of a quantized range: half a step of the stored scale, plus what
// f16 rounding of the minimum and of the scale moved the grid by.
float error_bound(float lo, float hi, float stored_scale, float stored_min, int nbits) {
    const int qmax = (1 << nbits) - 1;
    const float exact_scale = (hi - lo) / qmax;
    return stored_scale / 2 + std::fabs(stored_min - lo) + qmax * std::fabs(stored_scale - exact_scale) +
           1e-6f * (std::fabs(lo) + std::fabs(hi));
}

class KiviRoundTrip : public ::testing::TestWithParam<int> {};

TEST_P(KiviRoundTrip, KeyGroupWithinHalfStepPerChannel) {
    const int nbits = GetParam();
    const int head_dim = 64, n_heads = 3, group = 32;
    const int64_t width = head_dim * n_heads;
    const std::vector<float> x = random_rows(group, width, 11u + nbits);
    std::vector<uint8_t> q(kivi_key_group_bytes(width, group, nbits), 0xAB);
    kivi_quantize_key_group(x.data(), false, width * sizeof(float), width, head_dim, group, nbits, q.data());
    const uint8_t* scales = q.data() + group * kivi_code_row_bytes(width, nbits);
    const uint8_t* mins = scales + 2 * width;
    std::vector<float> deq(width);
    for (int t = 0; t < group; ++t) {
        kivi_dequantize_key(q.data(), t, width, head_dim, group, nbits, deq.data());
        for (int64_t c = 0; c < width; ++c) {
            float lo = x[c], hi = x[c];
            for (int u = 0; u < group; ++u) {
                lo = std::fmin(lo, x[u * width + c]);
                hi = std::fmax(hi, x[u * width + c]);
            }
            const float s = f16_at(scales + 2 * c), m = f16_at(mins + 2 * c);
            // The stored range is the channel's own, to f16 precision.
            ASSERT_NEAR(s, (hi - lo) / ((1 << nbits) - 1), 1e-3f * std::fabs(s) + 1e-7f) << "channel " << c;
            ASSERT_NEAR(m, lo, 1e-3f * std::fabs(lo) + 1e-7f) << "channel " << c;
            ASSERT_LE(std::fabs(x[t * width + c] - deq[c]), error_bound(lo, hi, s, m, nbits))
                << "token " << t << " channel " << c;
        }
    }
}

TEST_P(KiviRoundTrip, ValueRowWithinHalfStepPerGroup) {
    const int nbits = GetParam();
    const int head_dim = 64, n_heads = 3;
    const int64_t width = head_dim * n_heads;
    for (int group : {32, 64, 96}) {
        const std::vector<float> x = random_rows(1, width, 99u + group);
        std::vector<uint8_t> q(kivi_value_row_bytes(width, group, nbits), 0xCD);
        kivi_quantize_value_row(x.data(), false, width, head_dim, group, nbits, q.data());
        const uint8_t* pairs = q.data() + kivi_code_row_bytes(width, nbits);
        std::vector<float> deq(width);
        kivi_dequantize_value(q.data(), width, head_dim, group, nbits, deq.data());
        for (int64_t g = 0; g < width / group; ++g) {
            float lo = x[g * group], hi = lo;
            for (int64_t c = g * group; c < (g + 1) * group; ++c) {
                lo = std::fmin(lo, x[c]);
                hi = std::fmax(hi, x[c]);
            }
            const float s = f16_at(pairs + 4 * g), m = f16_at(pairs + 4 * g + 2);
            for (int64_t c = g * group; c < (g + 1) * group; ++c)
                ASSERT_LE(std::fabs(x[c] - deq[c]), error_bound(lo, hi, s, m, nbits))
                    << "group size " << group << " channel " << c;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Bits, KiviRoundTrip, ::testing::Values(2, 4, 8));

// Values that are exactly codes (min 0, max 2^nbits - 1: scale 1) make the
// documented order checkable byte by byte: channel c of a head sits in byte
// c % L of the head's run at bit nbits * (c / L), L = head_dim * nbits / 8.
std::vector<uint8_t> expected_codes(const std::vector<int>& codes, int64_t width, int head_dim, int nbits) {
    const int run = head_dim * nbits / 8;
    std::vector<uint8_t> bytes(kivi_code_row_bytes(width, nbits), 0);
    for (int64_t ch = 0; ch < width; ++ch) {
        const int64_t head = ch / head_dim;
        const int c = static_cast<int>(ch % head_dim);
        bytes[head * run + c % run] |= static_cast<uint8_t>(codes[ch] << (nbits * (c / run)));
    }
    return bytes;
}

TEST(KiviLayout, ValueCodeOrderAndPairs) {
    const int head_dim = 16, n_heads = 2;
    const int64_t width = head_dim * n_heads;
    for (int nbits : {2, 4, 8}) {
        const int qmax = (1 << nbits) - 1;
        const int group = 16;  // one group per head
        std::vector<int> codes(width);
        std::vector<float> x(width);
        for (int64_t ch = 0; ch < width; ++ch) {
            codes[ch] = static_cast<int>((ch * 7 + 3) % (qmax + 1));
            if (ch % group == 0) codes[ch] = 0;  // every group spans [0, qmax]
            if (ch % group == 1) codes[ch] = qmax;
            x[ch] = static_cast<float>(codes[ch]);
        }
        std::vector<uint8_t> q(kivi_value_row_bytes(width, group, nbits));
        kivi_quantize_value_row(x.data(), false, width, head_dim, group, nbits, q.data());
        const std::vector<uint8_t> want = expected_codes(codes, width, head_dim, nbits);
        const size_t code_bytes = kivi_code_row_bytes(width, nbits);
        ASSERT_EQ(code_bytes, want.size());
        for (size_t b = 0; b < code_bytes; ++b) EXPECT_EQ(q[b], want[b]) << nbits << "-bit, byte " << b;
        for (int g = 0; g < width / group; ++g) {
            EXPECT_EQ(f16_at(q.data() + code_bytes + 4 * g), 1.0f);  // scale, then minimum
            EXPECT_EQ(f16_at(q.data() + code_bytes + 4 * g + 2), 0.0f);
        }
    }
}

TEST(KiviLayout, FourBitNibblesAsDocumented) {
    // head_dim 8, 4-bit: L = 4; channel j in the low nibble of byte j, channel j + 4 in the high one.
    const float x[8] = {1, 2, 3, 15, 0, 5, 6, 7};
    std::vector<uint8_t> q(kivi_value_row_bytes(8, 8, 4));
    kivi_quantize_value_row(x, false, 8, 8, 8, 4, q.data());
    EXPECT_EQ(q[0], 0x01);
    EXPECT_EQ(q[1], 0x52);
    EXPECT_EQ(q[2], 0x63);
    EXPECT_EQ(q[3], 0x7F);
}

TEST(KiviLayout, KeyGroupTokenMajorWithChannelRanges) {
    const int head_dim = 32, n_heads = 2;
    const int64_t width = head_dim * n_heads;
    for (int nbits : {2, 4, 8}) {
        const int qmax = (1 << nbits) - 1;
        const int group = 16;
        const int levels = qmax + 1 < group ? qmax + 1 : group;
        const float step = static_cast<float>(qmax) / static_cast<float>(levels - 1);  // 8-bit: codes 0, 17, .., 255
        std::vector<float> x(group * width);
        std::vector<std::vector<int>> codes(group, std::vector<int>(width));
        for (int t = 0; t < group; ++t)
            for (int64_t ch = 0; ch < width; ++ch) {
                const int level = static_cast<int>((t + ch) % levels);  // each channel sees every level
                codes[t][ch] = static_cast<int>(std::lround(level * step));
                x[t * width + ch] = static_cast<float>(codes[t][ch]) * 0.5f - 3.0f;  // scale 0.5, min -3
            }
        std::vector<uint16_t> xh(x.size());
        for (size_t i = 0; i < x.size(); ++i) xh[i] = f32_to_f16(x[i]);
        std::vector<uint8_t> q(kivi_key_group_bytes(width, group, nbits));
        kivi_quantize_key_group(xh.data(), true, width * 2, width, head_dim, group, nbits, q.data());
        const size_t code_bytes = kivi_code_row_bytes(width, nbits);
        for (int t = 0; t < group; ++t) {
            const std::vector<uint8_t> want = expected_codes(codes[t], width, head_dim, nbits);
            ASSERT_EQ(0, std::memcmp(q.data() + t * code_bytes, want.data(), code_bytes)) << nbits << "-bit token " << t;
        }
        for (int64_t ch = 0; ch < width; ++ch) {
            EXPECT_EQ(f16_at(q.data() + group * code_bytes + 2 * ch), 0.5f);
            EXPECT_EQ(f16_at(q.data() + group * code_bytes + 2 * width + 2 * ch), -3.0f);
        }
    }
}

TEST(KiviQuantize, ConstantGroupsAreExactAndFinite) {
    const int head_dim = 64, group = 32;
    const int64_t width = 128;
    for (int nbits : {2, 4, 8}) {
        for (float value : {0.0f, 0.75f, -2.5f, 0.1f}) {
            std::vector<float> x(group * width, value);
            std::vector<uint8_t> k(kivi_key_group_bytes(width, group, nbits));
            kivi_quantize_key_group(x.data(), false, width * 4, width, head_dim, group, nbits, k.data());
            std::vector<uint8_t> v(kivi_value_row_bytes(width, group, nbits));
            kivi_quantize_value_row(x.data(), false, width, head_dim, group, nbits, v.data());
            std::vector<float> dk(width), dv(width);
            kivi_dequantize_key(k.data(), group - 1, width, head_dim, group, nbits, dk.data());
            kivi_dequantize_value(v.data(), width, head_dim, group, nbits, dv.data());
            const float want = f16_to_f32(f32_to_f16(value));  // the stored minimum
            for (int64_t c = 0; c < width; ++c) {
                ASSERT_EQ(dk[c], want) << value;
                ASSERT_EQ(dv[c], want) << value;
            }
            for (size_t b = 0; b < kivi_code_row_bytes(width, nbits); ++b) ASSERT_EQ(v[b], 0) << "codes of a constant group";
        }
    }
}

TEST(KiviQuantize, F16SourceMatchesItsF32Values) {
    const int head_dim = 64, group = 32, nbits = 4;
    const int64_t width = 192;
    std::vector<float> x = random_rows(group, width, 5);
    std::vector<uint16_t> h(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        h[i] = f32_to_f16(x[i]);
        x[i] = f16_to_f32(h[i]);
    }
    std::vector<uint8_t> a(kivi_key_group_bytes(width, group, nbits)), b(a.size());
    kivi_quantize_key_group(x.data(), false, width * 4, width, head_dim, group, nbits, a.data());
    kivi_quantize_key_group(h.data(), true, width * 2, width, head_dim, group, nbits, b.data());
    EXPECT_EQ(a, b);
    std::vector<uint8_t> va(kivi_value_row_bytes(width, group, nbits)), vb(va.size());
    kivi_quantize_value_row(x.data(), false, width, head_dim, group, nbits, va.data());
    kivi_quantize_value_row(h.data(), true, width, head_dim, group, nbits, vb.data());
    EXPECT_EQ(va, vb);
}

TEST(KiviQuantize, BadShapesNeitherCrashNorWrite) {
    std::vector<float> x(64 * 64, 1.0f);
    std::vector<uint8_t> out(1 << 16, 0x5A);
    kivi_quantize_key_group(x.data(), false, 256, 64, 64, 32, 3, out.data());   // 3-bit
    kivi_quantize_key_group(x.data(), false, 256, 64, 48, 32, 4, out.data());   // 64 % 48 != 0
    kivi_quantize_value_row(x.data(), false, 64, 64, 48, 4, out.data());        // 64 % 48 != 0 (value groups)
    kivi_quantize_value_row(x.data(), false, 64, 64, 0, 4, out.data());         // group 0
    for (uint8_t b : out) ASSERT_EQ(b, 0x5A);
    std::vector<float> deq(64, 7.f);
    kivi_dequantize_value(out.data(), 64, 64, 32, 5, deq.data());
    for (float v : deq) ASSERT_EQ(v, 0.f);
    deq.assign(64, 7.f);
    kivi_dequantize_key(out.data(), 40, 64, 64, 32, 4, deq.data());  // token past the group
    for (float v : deq) ASSERT_EQ(v, 0.f);
}

// --- the CPU backend ops ------------------------------------------------------

Tensor host_tensor(std::vector<uint8_t>& mem, DType type, int64_t cols, int64_t rows, size_t row_bytes) {
    mem.assign(row_bytes * rows, 0);
    Tensor t;
    t.type = type;
    t.cols = cols;
    t.rows = rows;
    t.row_bytes = row_bytes;
    t.data = mem.data();
    return t;
}

TEST(CpuBackendKivi, QuantizeOpsWriteTheReferenceBytesAtTheirRows) {
    CpuBackend be(2, false);
    const int head_dim = 64, group = 32;
    const int64_t width = 192;
    for (int nbits : {2, 4, 8}) {
        const std::vector<float> x = random_rows(3 * group, width, 77u + nbits);
        std::vector<uint8_t> src_mem, k_mem, v_mem;
        Tensor src = host_tensor(src_mem, DType::F32, width, 3 * group, width * 4);
        std::memcpy(src.data, x.data(), x.size() * 4);
        const size_t kb = kivi_key_group_bytes(width, group, nbits) + 8;  // padded rows: strides must be honoured
        const size_t vb = kivi_value_row_bytes(width, group, nbits) + 4;
        Tensor kt = host_tensor(k_mem, DType::I8, static_cast<int64_t>(kb), 4, kb);
        Tensor vt = host_tensor(v_mem, DType::I8, static_cast<int64_t>(vb), 3 * group + 5, vb);
        KiviParams p;
        p.nbits = nbits;
        p.group = group;
        p.head_dim = head_dim;
        be.kivi_quantize_keys(src, group, kt, 2, p);       // tokens 32..63 -> group row 2
        be.kivi_quantize_values(src, 10, 70, vt, 3, p);    // rows 10..79 -> 3..72
        std::vector<uint8_t> want(kivi_key_group_bytes(width, group, nbits));
        kivi_quantize_key_group(x.data() + group * width, false, width * 4, width, head_dim, group, nbits, want.data());
        EXPECT_EQ(0, std::memcmp(kt.ptr<uint8_t>(2), want.data(), want.size()));
        for (int64_t r : {0, 1, 3}) EXPECT_EQ(kt.ptr<uint8_t>(r)[0], 0) << "untouched group row " << r;
        std::vector<uint8_t> vwant(kivi_value_row_bytes(width, group, nbits));
        for (int r = 0; r < 70; ++r) {
            kivi_quantize_value_row(x.data() + (10 + r) * width, false, width, head_dim, group, nbits, vwant.data());
            ASSERT_EQ(0, std::memcmp(vt.ptr<uint8_t>(3 + r), vwant.data(), vwant.size())) << "value row " << r;
        }
        // Out of range requests are ignored rather than written past the tensors.
        be.kivi_quantize_keys(src, 3 * group - 4, kt, 0, p);
        be.kivi_quantize_values(src, 0, 10, vt, 3 * group, p);
        EXPECT_EQ(kt.ptr<uint8_t>(0)[0], 0);
    }
}

TEST(CpuBackendKivi, CopyBytesBetweenBuffersAndRefusesOverruns) {
    CpuBackend be(1, false);
    std::unique_ptr<Buffer> a, b;
    ASSERT_TRUE(be.alloc(100, Placement::Host, &a).ok());
    ASSERT_TRUE(be.alloc(60, Placement::Device, &b).ok());
    for (int i = 0; i < 100; ++i) static_cast<uint8_t*>(a->host())[i] = static_cast<uint8_t>(i);
    be.copy_bytes(*a, 10, *b, 5, 50);
    const uint8_t* bb = static_cast<const uint8_t*>(b->host());
    for (int i = 0; i < 50; ++i) ASSERT_EQ(bb[5 + i], 10 + i);
    EXPECT_EQ(bb[4], 0);
    be.copy_bytes(*a, 90, *b, 0, 20);  // past the end of a
    be.copy_bytes(*a, 0, *b, 50, 20);  // past the end of b
    EXPECT_EQ(bb[0], 0);
    EXPECT_EQ(bb[55], 0);
    be.copy_bytes(*a, 0, *a, 1, 10);  // overlapping, same buffer
    const uint8_t* ab = static_cast<const uint8_t*>(a->host());
    for (int i = 0; i < 10; ++i) ASSERT_EQ(ab[1 + i], i);
}

}  // namespace
}  // namespace ekv
