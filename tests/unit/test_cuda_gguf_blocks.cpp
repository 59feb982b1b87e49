// The host-checkable logic of the CUDA kernels (cuda/*.cuh, written as
// __host__ __device__ code), compiled here by the host compiler: the same
// source the kernels run.
//  - GGUF block decoders (gguf_blocks.cuh): every format's random blocks
//    decode bit for bit like core/quant.cpp's dequantize_row, through both the
//    32-element chunk path and the one-element path; f16/bf16 conversions
//    match core/fp16.h.
//  - int8 activations (q8_act.cuh): the quantizers give core/quant.cpp's
//    bytes and the integer block dots give the CPU scalar int8 matmul's
//    results bit for bit.
//  - KIVI (kivi_codes.cuh): the quantize kernels' work items, run in order,
//    give core/kivi.cpp's bytes; attention's in-place element reads
//    (attn_common.cuh) give core/kivi.cpp's dequantized values.
//  - attention's launch plan fits its shared memory and register budget.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "../../cuda/attn_common.cuh"
#include "../../cuda/gguf_blocks.cuh"
#include "../../cuda/kivi_codes.cuh"
#include "../../cuda/q8_act.cuh"
#include "backend/cpu/matmul.h"
#include "core/dtype.h"
#include "core/fp16.h"
#include "core/kivi.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace ekv {
namespace {

namespace blk = cuda::blocks;
using cuda::AttnSegment;
using cuda::AttnShape;
using cuda::AttnStep;
using cuda::kMaxAttnSegments;

uint32_t bits_of(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

// A finite half, often small or subnormal, sometimes zero or negative: the
// scale fields of real blocks.
uint16_t random_scale(std::mt19937& rng) {
    const uint32_t pick = rng() % 16;
    if (pick == 0) return 0;
    if (pick == 1) return static_cast<uint16_t>(rng() % 0x400);  // subnormal
    uint16_t exp = static_cast<uint16_t>(1 + rng() % 30);        // never inf/nan
    return static_cast<uint16_t>((rng() & 0x8000u) | (exp << 10) | (rng() & 0x3ffu));
}

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Random bytes for a row of `blocks` blocks of t, with every f16 field a
// finite value (so the comparison is about arithmetic, not NaN payloads).
std::vector<uint8_t> random_row(DType t, int64_t n, std::mt19937& rng) {
    std::vector<uint8_t> row(dtype_row_bytes(t, n) + 16);
    for (auto& b : row) b = static_cast<uint8_t>(rng());
    const size_t bb = dtype_traits(t).block_bytes;
    const int64_t blocks = n / dtype_traits(t).block_size;
    for (int64_t i = 0; i < blocks; ++i) {
        uint8_t* b = row.data() + static_cast<size_t>(i) * bb;
        switch (t) {
            case DType::F32: {
                const float v = std::uniform_real_distribution<float>(-1e4f, 1e4f)(rng);
                std::memcpy(b, &v, 4);
                break;
            }
            case DType::F16: put_u16(b, random_scale(rng)); break;
            case DType::BF16: break;  // every bf16 pattern decodes by a shift; NaNs compare by bits
            case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: put_u16(b, random_scale(rng)); break;
            case DType::Q4_1: case DType::Q5_1: put_u16(b, random_scale(rng)); put_u16(b + 2, random_scale(rng)); break;
            case DType::Q4_K: case DType::Q5_K: put_u16(b, random_scale(rng)); put_u16(b + 2, random_scale(rng)); break;
            case DType::Q6_K: put_u16(b + offsetof(BlockQ6_K, d), random_scale(rng)); break;
            default: break;
        }
    }
    return row;
}

// Decodes a whole row through the header, chunk by chunk and element by element.
struct HeaderDecode {
    const uint8_t* row;
    int64_t n;
    std::vector<float>* chunks;
    std::vector<float>* singles;
    template <DType T>
    void run() {
        const int64_t n_chunks = (n + 31) / 32;
        chunks->assign(static_cast<size_t>(n_chunks) * 32, -1.0f);
        for (int64_t c = 0; c < n_chunks; ++c) blk::decode_chunk<T>(row, n, c, chunks->data() + 32 * c);
        singles->resize(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) (*singles)[static_cast<size_t>(j)] = blk::Format<T>::decode1(row, j);
        EXPECT_EQ(static_cast<size_t>(blk::Format<T>::kBlockBytes), dtype_traits(T).block_bytes);
        EXPECT_EQ(blk::Format<T>::kBlockElems, dtype_traits(T).block_size);
    }
};

const DType kFormats[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                          DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

TEST(CudaGgufBlocks, EveryFormatDecodesBitExactlyLikeCoreQuant) {
    std::mt19937 rng(1234);
    for (DType t : kFormats) {
        SCOPED_TRACE(dtype_name(t));
        const int64_t bs = dtype_traits(t).block_size;
        for (int trial = 0; trial < 40; ++trial) {
            // Whole blocks; plain formats also get rows that end inside a chunk.
            int64_t n = bs * (1 + static_cast<int64_t>(rng() % 6));
            if (bs == 1) n = 1 + static_cast<int64_t>(rng() % 200);
            const std::vector<uint8_t> row = random_row(t, n, rng);
            std::vector<float> expected(static_cast<size_t>(n));
            dequantize_row(t, row.data(), expected.data(), n);
            std::vector<float> chunks, singles;
            HeaderDecode dec{row.data(), n, &chunks, &singles};
            ASSERT_TRUE(blk::dispatch_format(t, dec));
            int bad = 0;
            for (int64_t j = 0; j < n && bad < 5; ++j) {
                const size_t i = static_cast<size_t>(j);
                if (bits_of(chunks[i]) != bits_of(expected[i]) || bits_of(singles[i]) != bits_of(expected[i])) {
                    ADD_FAILURE() << "element " << j << " of " << n << ": core " << expected[i] << ", decode32 "
                                  << chunks[i] << ", decode1 " << singles[i];
                    ++bad;
                }
            }
            for (size_t i = static_cast<size_t>(n); i < chunks.size(); ++i) EXPECT_EQ(chunks[i], 0.0f) << i;
            if (bad) return;
        }
    }
}

struct NeverDispatched {
    template <DType T>
    void run() { ADD_FAILURE() << "dispatched " << dtype_name(T); }
};

TEST(CudaGgufBlocks, UnsupportedTypesAreRefused) {
    NeverDispatched never;
    EXPECT_FALSE(blk::dispatch_format(DType::Q8_1, never));
    EXPECT_FALSE(blk::dispatch_format(DType::Q2_K, never));
    EXPECT_FALSE(blk::dispatch_format(DType::I32, never));
}

TEST(CudaGgufBlocks, HalfConversionsMatchCoreOnEveryHalf) {
    for (uint32_t h = 0; h <= 0xffffu; ++h) {
        const uint16_t v = static_cast<uint16_t>(h);
        ASSERT_EQ(bits_of(blk::f16_to_f32(v)), bits_of(f16_to_f32(v))) << std::hex << h;
        ASSERT_EQ(bits_of(blk::bf16_to_f32(v)), bits_of(bf16_to_f32(v))) << std::hex << h;
        // Every half and its neighbours in f32 round back like core's f32_to_f16.
        const float f = f16_to_f32(v);
        const uint32_t fb = bits_of(f);
        for (int64_t delta : {-4097, -4096, -4095, -1, 0, 1, 4095, 4096, 4097}) {
            const uint32_t nb = static_cast<uint32_t>(static_cast<int64_t>(fb) + delta);
            float g;
            std::memcpy(&g, &nb, 4);
            ASSERT_EQ(blk::f32_to_f16(g), f32_to_f16(g)) << std::hex << nb;
        }
    }
}

TEST(CudaGgufBlocks, FloatToHalfMatchesCoreOnRandomBits) {
    std::mt19937 rng(99);
    for (int i = 0; i < 500000; ++i) {
        const uint32_t b = rng();
        float f;
        std::memcpy(&f, &b, 4);
        ASSERT_EQ(blk::f32_to_f16(f), f32_to_f16(f)) << std::hex << b;
    }
}

TEST(CudaGgufBlocks, ByteLoadsAreLittleEndianAndUnaligned) {
    const uint8_t bytes[] = {0x11, 0x22, 0x33, 0x44, 0x55};
    EXPECT_EQ(blk::load_u16(bytes + 1), 0x3322u);
    EXPECT_EQ(blk::load_u32(bytes + 1), 0x55443322u);
    for (int j = 0; j < 8; ++j) {
        const uint8_t scales[12] = {0xc1, 0x42, 0x83, 0xf4, 0x45, 0x86, 0x07, 0xc8, 0x9a, 0x2b, 0xfc, 0x3d};
        uint8_t sc, mn;
        unpack_scale_min_k4(scales, j, &sc, &mn);
        int sc2, mn2;
        blk::scale_min_k4(scales, j, &sc2, &mn2);
        EXPECT_EQ(sc2, sc) << j;
        EXPECT_EQ(mn2, mn) << j;
    }
}

// ---- int8 activations -----------------------------------------------------

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

TEST(CudaHostInt8, ActivationQuantizersGiveCoreBytes) {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 50; ++trial) {
        std::vector<float> x = random_floats(kQK_K, rng, trial % 5 == 0 ? 1e-3f : 3.0f);
        if (trial == 1) std::fill(x.begin(), x.end(), 0.0f);  // d = 0
        if (trial == 2) for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 9) - 4) * 0.5f;
        std::vector<BlockQ8_1F> want(kQK_K / kQK), got(kQK_K / kQK);
        std::memset(got.data(), 0, got.size() * sizeof(BlockQ8_1F));
        quantize_row_q8_1f(x.data(), want.data(), kQK_K);
        for (size_t b = 0; b < got.size(); ++b) cuda::q8::quantize_q8_1f(x.data() + kQK * b, &got[b]);
        ASSERT_EQ(std::memcmp(want.data(), got.data(), got.size() * sizeof(BlockQ8_1F)), 0) << trial;
        BlockQ8_K wk, gk;
        std::memset(&gk, 0, sizeof(gk));
        quantize_row_q8_k(x.data(), &wk, kQK_K);
        cuda::q8::quantize_q8_k(x.data(), &gk);
        ASSERT_EQ(std::memcmp(&wk, &gk, sizeof(gk)), 0) << trial;
    }
}

TEST(CudaHostInt8, BlockDotsMatchCpuScalarInt8Matmul) {
    cpu::matmul_force_scalar(true);
    ThreadPool pool(1);
    std::mt19937 rng(11);
    const int64_t k = 512, rows = 6;
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K,
                    DType::Q6_K}) {
        SCOPED_TRACE(dtype_name(t));
        const size_t rb = dtype_row_bytes(t, k);
        std::vector<uint8_t> w;
        for (int64_t r = 0; r < rows; ++r) {
            const std::vector<uint8_t> row = random_row(t, k, rng);
            w.insert(w.end(), row.begin(), row.begin() + static_cast<std::ptrdiff_t>(rb));
        }
        const std::vector<float> x = random_floats(static_cast<size_t>(k), rng, 1.0f);
        std::vector<float> want(static_cast<size_t>(rows));
        std::vector<uint8_t> scratch(cpu::matmul_scratch_bytes(t, k, 1, cpu::ActivationPrecision::Int8));
        cpu::matmul(t, w.data(), rows, k, x.data(), 1, want.data(), scratch.data(), pool,
                    cpu::ActivationPrecision::Int8);
        const bool kq = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
        std::vector<BlockQ8_1F> a32(static_cast<size_t>(k / kQK));
        std::vector<BlockQ8_K> ak(static_cast<size_t>(k / kQK_K));
        for (size_t b = 0; b < a32.size(); ++b) cuda::q8::quantize_q8_1f(x.data() + kQK * b, &a32[b]);
        for (size_t b = 0; b < ak.size(); ++b) cuda::q8::quantize_q8_k(x.data() + kQK_K * b, &ak[b]);
        for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* wr = w.data() + static_cast<size_t>(r) * rb;
            float got = 0.0f;
            switch (t) {
                case DType::Q4_0: got = cuda::q8::row_dot32<DType::Q4_0>(wr, a32.data(), k / kQK); break;
                case DType::Q4_1: got = cuda::q8::row_dot32<DType::Q4_1>(wr, a32.data(), k / kQK); break;
                case DType::Q5_0: got = cuda::q8::row_dot32<DType::Q5_0>(wr, a32.data(), k / kQK); break;
                case DType::Q5_1: got = cuda::q8::row_dot32<DType::Q5_1>(wr, a32.data(), k / kQK); break;
                case DType::Q8_0: got = cuda::q8::row_dot32<DType::Q8_0>(wr, a32.data(), k / kQK); break;
                case DType::Q4_K: got = cuda::q8::row_dot_k<DType::Q4_K>(wr, ak.data(), k / kQK_K); break;
                case DType::Q5_K: got = cuda::q8::row_dot_k<DType::Q5_K>(wr, ak.data(), k / kQK_K); break;
                case DType::Q6_K: got = cuda::q8::row_dot_k<DType::Q6_K>(wr, ak.data(), k / kQK_K); break;
                default: break;
            }
            (void)kq;
            EXPECT_EQ(bits_of(got), bits_of(want[static_cast<size_t>(r)]))
                << "row " << r << ": cpu " << want[static_cast<size_t>(r)] << ", cuda " << got;
        }
    }
    cpu::matmul_force_scalar(false);
}

// ---- KIVI ----------------------------------------------------------------------

struct KiviCase {
    int nbits, head_dim, n_kv_heads, group;
    bool f16;
};
const KiviCase kKiviCases[] = {{2, 64, 2, 32, true}, {4, 64, 2, 32, false}, {8, 32, 3, 16, true},
                               {4, 8, 4, 4, false},  {2, 16, 1, 8, false},  {4, 128, 1, 64, true},
                               {2, 4, 2, 4, true}};

// Source rows (F16 or F32) with some constant channels and outliers.
std::vector<uint8_t> kivi_source(const KiviCase& c, int n_rows, std::mt19937& rng, size_t* row_bytes) {
    const int64_t w = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
    *row_bytes = static_cast<size_t>(w) * (c.f16 ? 2 : 4) + 8;  // padded rows: stride != width
    std::vector<uint8_t> src(*row_bytes * static_cast<size_t>(n_rows));
    std::normal_distribution<float> dist(0.0f, 1.5f);
    for (int r = 0; r < n_rows; ++r)
        for (int64_t ch = 0; ch < w; ++ch) {
            float v = ch % 7 == 3 ? 0.25f : dist(rng);
            if (ch % 13 == 5) v *= 40.0f;
            uint8_t* p = src.data() + static_cast<size_t>(r) * *row_bytes;
            if (c.f16) {
                const uint16_t h = f32_to_f16(v);
                std::memcpy(p + 2 * ch, &h, 2);
            } else {
                std::memcpy(p + 4 * ch, &v, 4);
            }
        }
    return src;
}

TEST(CudaHostKivi, QuantizeWorkItemsGiveCoreBytes) {
    std::mt19937 rng(5);
    for (const KiviCase& c : kKiviCases) {
        SCOPED_TRACE(testing::Message() << c.nbits << " bits, head_dim " << c.head_dim << ", group " << c.group);
        const int64_t w = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
        size_t srb = 0;
        const std::vector<uint8_t> src = kivi_source(c, c.group, rng, &srb);
        // Keys: one group row. The CUDA output starts as garbage: every byte must be written.
        const size_t kb = kivi_key_group_bytes(w, c.group, c.nbits);
        std::vector<uint8_t> want(kb, 0), got(kb, 0xA5);
        kivi_quantize_key_group(src.data(), c.f16, srb, w, c.head_dim, c.group, c.nbits, want.data());
        const cuda::kivi::KeyGroupJob kj{src.data(), c.f16, srb, w, c.head_dim, c.group, c.nbits, got.data()};
        ASSERT_TRUE(cuda::kivi::shape_ok(w, c.head_dim, c.group, c.nbits));
        for (int64_t ch = 0; ch < w; ++ch) kj.channel_range(ch);
        for (int64_t i = 0; i < kj.n_code_bytes(); ++i) kj.code_byte_item(i);
        EXPECT_EQ(want, got);
        // Values: each row.
        const size_t vb = kivi_value_row_bytes(w, c.group, c.nbits);
        for (int r = 0; r < c.group; ++r) {
            std::vector<uint8_t> vw(vb, 0), vg(vb, 0x5A);
            const uint8_t* row = src.data() + static_cast<size_t>(r) * srb;
            kivi_quantize_value_row(row, c.f16, w, c.head_dim, c.group, c.nbits, vw.data());
            const cuda::kivi::ValueRowJob vj{row, c.f16, w, c.head_dim, c.group, c.nbits, vg.data()};
            for (int64_t g = 0; g < vj.n_groups(); ++g) vj.group_range(g);
            for (int64_t b = 0; b < static_cast<int64_t>(vj.code_bytes()); ++b) vj.code_byte_item(b);
            ASSERT_EQ(vw, vg) << "value row " << r;
        }
    }
}

TEST(CudaHostKivi, AttentionReadsSegmentsLikeCoreDequantize) {
    std::mt19937 rng(3);
    for (const KiviCase& c : kKiviCases) {
        SCOPED_TRACE(testing::Message() << c.nbits << " bits, head_dim " << c.head_dim << ", group " << c.group);
        const int64_t w = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
        const int n_groups = 3, n_tok = n_groups * c.group;
        size_t srb = 0;
        const std::vector<uint8_t> src = kivi_source(c, n_tok, rng, &srb);
        const size_t kb = kivi_key_group_bytes(w, c.group, c.nbits) + 2;  // padded rows
        const size_t vb = kivi_value_row_bytes(w, c.group, c.nbits) + 2;
        std::vector<uint8_t> keys(kb * n_groups), values(vb * static_cast<size_t>(n_tok));
        for (int g = 0; g < n_groups; ++g)
            kivi_quantize_key_group(src.data() + static_cast<size_t>(g) * c.group * srb, c.f16, srb, w, c.head_dim,
                                    c.group, c.nbits, keys.data() + static_cast<size_t>(g) * kb);
        for (int t = 0; t < n_tok; ++t)
            kivi_quantize_value_row(src.data() + static_cast<size_t>(t) * srb, c.f16, w, c.head_dim, c.group,
                                    c.nbits, values.data() + static_cast<size_t>(t) * vb);
        AttnSegment seg;
        seg.kivi = 1;
        seg.k = keys.data();
        seg.v = values.data();
        seg.k_row_bytes = kb;
        seg.v_row_bytes = vb;
        seg.kivi_nbits = c.nbits;
        seg.kivi_group = c.group;
        seg.skip = c.group / 2 + 1;  // a ring that dropped tokens from the first group
        seg.n_tokens = n_tok - seg.skip;
        std::vector<float> kref(static_cast<size_t>(w)), vref(static_cast<size_t>(w));
        for (int i = 0; i < seg.n_tokens; ++i) {
            const int idx = seg.skip + i;
            kivi_dequantize_key(keys.data() + static_cast<size_t>(idx / c.group) * kb, idx % c.group, w, c.head_dim,
                                c.group, c.nbits, kref.data());
            kivi_dequantize_value(values.data() + static_cast<size_t>(idx) * vb, w, c.head_dim, c.group, c.nbits,
                                  vref.data());
            for (int h = 0; h < c.n_kv_heads; ++h)
                for (int d = 0; d < c.head_dim; ++d) {
                    const size_t ch = static_cast<size_t>(h) * c.head_dim + d;
                    ASSERT_EQ(bits_of(cuda::attn::key_elem(seg, w, c.head_dim, i, h, d)), bits_of(kref[ch]))
                        << "key token " << i << " head " << h << " dim " << d;
                    ASSERT_EQ(bits_of(cuda::attn::value_elem(seg, w, c.head_dim, i, h, d)), bits_of(vref[ch]))
                        << "value token " << i << " head " << h << " dim " << d;
                }
        }
        // The same rows read as a plain segment (the source, F16 or F32).
        AttnSegment plain;
        plain.plain_type = c.f16 ? DType::F16 : DType::F32;
        plain.k = plain.v = src.data();
        plain.k_row_bytes = plain.v_row_bytes = srb;
        plain.skip = 2;
        plain.n_tokens = n_tok - 2;
        for (int i = 0; i < plain.n_tokens; ++i) {
            const uint8_t* row = src.data() + static_cast<size_t>(i + 2) * srb;
            for (int64_t ch = 0; ch < w; ++ch) {
                const float want = cuda::kivi::load_elem(row, c.f16, ch);
                const int h = static_cast<int>(ch / c.head_dim), d = static_cast<int>(ch % c.head_dim);
                ASSERT_EQ(bits_of(cuda::attn::key_elem(plain, w, c.head_dim, i, h, d)), bits_of(want));
                ASSERT_EQ(bits_of(cuda::attn::value_elem(plain, w, c.head_dim, i, h, d)), bits_of(want));
            }
        }
    }
}

// ---- attention plan and visibility ---------------------------------------------

TEST(CudaHostAttention, VisibleRangesFollowCausalWindowAndPinnedRules) {
    AttnSegment seg;
    seg.first_pos = 100;
    seg.n_tokens = 50;
    int32_t lo, hi;
    cuda::attn::visible_range(seg, 0, 120, &lo, &hi);  // causal: positions 100..120
    EXPECT_EQ(lo, 0);
    EXPECT_EQ(hi, 21);
    cuda::attn::visible_range(seg, 0, 99, &lo, &hi);  // before the segment: nothing
    EXPECT_EQ(hi - lo, 0);
    cuda::attn::visible_range(seg, 0, 1000, &lo, &hi);  // after it: everything
    EXPECT_EQ(lo, 0);
    EXPECT_EQ(hi, 50);
    cuda::attn::visible_range(seg, 8, 120, &lo, &hi);  // view window 8: positions 113..120
    EXPECT_EQ(lo, 13);
    EXPECT_EQ(hi, 21);
    seg.window = 4;  // the segment's own window wins: 117..120
    cuda::attn::visible_range(seg, 8, 120, &lo, &hi);
    EXPECT_EQ(lo, 17);
    EXPECT_EQ(hi, 21);
    seg.window = 0;
    seg.pinned = 1;  // pinned: no window
    cuda::attn::visible_range(seg, 8, 120, &lo, &hi);
    EXPECT_EQ(lo, 0);
    EXPECT_EQ(hi, 21);
    seg.pinned = 0;
    cuda::attn::visible_range(seg, 8, 400, &lo, &hi);  // window past the segment
    EXPECT_EQ(hi - lo, 0);
}

// The walk attention_kernel does: every row's visible keys are visited by
// exactly one split, once, whatever the rows, segments and split count.
TEST(CudaHostAttention, SplitsVisitEveryVisibleKeyOnce) {
    std::mt19937 rng(17);
    for (int trial = 0; trial < 300; ++trial) {
        AttnStep st;
        st.n_segments = 1 + static_cast<int>(rng() % kMaxAttnSegments);
        st.window = rng() % 3 == 0 ? 1 + static_cast<int>(rng() % 40) : 0;
        int32_t pos = static_cast<int32_t>(rng() % 5);
        for (int s = 0; s < st.n_segments; ++s) {
            AttnSegment& seg = st.seg[s];
            seg.first_pos = pos;
            seg.n_tokens = static_cast<int32_t>(rng() % 70);
            seg.pinned = s == 0 && rng() % 2;
            seg.window = rng() % 5 == 0 ? 1 + static_cast<int>(rng() % 20) : 0;
            pos += seg.n_tokens + static_cast<int32_t>(rng() % 3);
        }
        const int rows = 1 + static_cast<int>(rng() % cuda::attn::kMaxRows);
        const int splits = 1 + static_cast<int>(rng() % 9);
        const int tk = rng() % 2 ? 32 : 16;
        std::vector<int32_t> q_pos(static_cast<size_t>(rows));
        const int32_t base = static_cast<int32_t>(rng() % static_cast<uint32_t>(pos + 10));
        for (int r = 0; r < rows; ++r) q_pos[static_cast<size_t>(r)] = base + r / 4;  // 4 heads per token
        int32_t lo[cuda::attn::kMaxRows][kMaxAttnSegments], hi[cuda::attn::kMaxRows][kMaxAttnSegments];
        for (int r = 0; r < rows; ++r)
            for (int s = 0; s < st.n_segments; ++s)
                cuda::attn::visible_range(st.seg[s], st.window, q_pos[static_cast<size_t>(r)], &lo[r][s], &hi[r][s]);
        int32_t u_lo[kMaxAttnSegments], u_hi[kMaxAttnSegments];
        int64_t total = 0;
        for (int s = 0; s < st.n_segments; ++s) {
            cuda::attn::union_range(&lo[0][s], &hi[0][s], kMaxAttnSegments, rows, &u_lo[s], &u_hi[s]);
            total += u_hi[s] - u_lo[s];
        }
        // visits[r][s][i]: how often row r scored key i of segment s.
        std::vector<int> visits(static_cast<size_t>(rows) * kMaxAttnSegments * 80, 0);
        for (int split = 0; split < splits; ++split) {
            int64_t a, b, off = 0;
            cuda::attn::split_slice(total, splits, split, &a, &b);
            for (int s = 0; s < st.n_segments; ++s) {
                int64_t begin, end;
                cuda::attn::slice_part(u_lo[s], u_hi[s], off, a, b, &begin, &end);
                off += u_hi[s] - u_lo[s];
                for (int64_t i0 = begin; i0 < end; i0 += tk)
                    for (int64_t i = i0; i < std::min<int64_t>(end, i0 + tk); ++i) {
                        ASSERT_GE(i, 0);
                        ASSERT_LT(i, st.seg[s].n_tokens);
                        for (int r = 0; r < rows; ++r)
                            if (i >= lo[r][s] && i < hi[r][s])
                                ++visits[(static_cast<size_t>(r) * kMaxAttnSegments + s) * 80 + static_cast<size_t>(i)];
                    }
            }
        }
        for (int r = 0; r < rows; ++r)
            for (int s = 0; s < st.n_segments; ++s)
                for (int i = 0; i < 80; ++i) {
                    const int want = i >= lo[r][s] && i < hi[r][s] ? 1 : 0;
                    ASSERT_EQ(visits[(static_cast<size_t>(r) * kMaxAttnSegments + s) * 80 + static_cast<size_t>(i)],
                              want)
                        << "trial " << trial << " row " << r << " segment " << s << " key " << i;
                }
    }
}

// The query attention scores pinned keys with, against the CPU's
// prepare_queries arithmetic (scale, then rotate the scaled pairs).
TEST(CudaHostAttention, PinnedQueryRotationMatchesCpuArithmetic) {
    std::mt19937 rng(23);
    for (bool neox : {false, true})
        for (const auto& [hd, rope_dim] : {std::pair{8, 8}, std::pair{64, 64}, std::pair{80, 64}, std::pair{128, 96}}) {
            const int half = rope_dim / 2;  // rope_dim < head_dim too
            const std::vector<float> q = random_floats(static_cast<size_t>(hd), rng, 2.0f);
            const std::vector<float> cs = random_floats(static_cast<size_t>(2 * half), rng, 0.7f);
            const float scale = 0.125f + static_cast<float>(rng() % 100) / 1000.0f;
            std::vector<float> want(static_cast<size_t>(hd));
            for (int c = 0; c < hd; ++c) want[static_cast<size_t>(c)] = q[static_cast<size_t>(c)] * scale;
            const int stride = neox ? 1 : 2, partner = neox ? half : 1;
            for (int i = 0; i < half; ++i) {
                float* x0 = want.data() + stride * i;
                const float a = x0[0], b = x0[partner];
                x0[0] = a * cs[static_cast<size_t>(2 * i)] - b * cs[static_cast<size_t>(2 * i + 1)];
                x0[partner] = a * cs[static_cast<size_t>(2 * i + 1)] + b * cs[static_cast<size_t>(2 * i)];
            }
            for (int d = 0; d < hd; ++d) {
                ASSERT_EQ(bits_of(cuda::attn::query_elem(q.data(), d, scale, half, neox, cs.data())),
                          bits_of(want[static_cast<size_t>(d)]))
                    << (neox ? "neox" : "adjacent") << " hd " << hd << " dim " << d;
                ASSERT_EQ(bits_of(cuda::attn::query_elem(q.data(), d, scale, half, neox, nullptr)),
                          bits_of(q[static_cast<size_t>(d)] * scale));
            }
        }
}

TEST(CudaHostAttention, PlanFitsSharedMemoryAndAccumulators) {
    for (int hd : {1, 4, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256})
        for (int gq : {1, 2, 3, 4, 7, 8, 16, 32})
            for (int64_t n_tok : {1, 3, 9, 128, 1000})
                for (int64_t max_kv : {0, 1, 100, 4096, 131072}) {
                    AttnShape sh;
                    sh.n_kv_heads = 2;
                    sh.n_heads = 2 * gq;
                    sh.head_dim = hd;
                    sh.kv_width = 2 * hd;
                    const cuda::attn::Plan p = cuda::attn::make_plan(sh, n_tok, max_kv);
                    SCOPED_TRACE(testing::Message() << "hd " << hd << " gq " << gq << " tokens " << n_tok);
                    ASSERT_LE(p.rows * hd, cuda::attn::kMaxRowFloats);
                    ASSERT_LE(p.rows, cuda::attn::kMaxRows);
                    ASSERT_LE(p.tk, 32);
                    // Dynamic plus the kernel's ~2.5 KiB of static shared memory stay
                    // under the 48 KiB a block gets without opting in.
                    ASSERT_LE(p.smem_bytes + 4096, size_t(48) << 10);
                    ASSERT_EQ(p.pack * p.n_packs >= gq && p.pack * (p.n_packs - 1) < gq, true);
                    ASSERT_EQ(p.rows, p.pack * p.tq);
                    ASSERT_GE(p.token_tiles * p.tq, n_tok);
                    ASSERT_GE(p.splits, 1);
                    ASSERT_LE(p.splits, cuda::attn::kMaxSplits);
                    if (max_kv <= cuda::attn::kMinKeysPerSplit) {
                        ASSERT_EQ(p.splits, 1);
                    }
                    const size_t partial = cuda::attn::partial_floats(sh, n_tok, p);
                    ASSERT_EQ(partial, p.splits > 1 ? static_cast<size_t>(n_tok) * sh.n_heads * p.splits * (hd + 2) : 0u);
                }
}

TEST(CudaHostAttention, TensorCorePlanFitsSharedMemoryWithAlignedTiles) {
    for (int hd = 8; hd <= 272; hd += 8)
        for (int gq : {1, 2, 3, 4, 7, 8, 16, 32, 64})
            for (int64_t n_tok : {1, 2, 5, 15, 16, 17, 100, 1000}) {
                AttnShape sh;
                sh.n_kv_heads = 2;
                sh.n_heads = 2 * gq;
                sh.head_dim = hd;
                sh.kv_width = 2 * hd;
                const cuda::attn::TcPlan p = cuda::attn::make_tc_plan(sh, n_tok);
                SCOPED_TRACE(testing::Message() << "hd " << hd << " gq " << gq << " tokens " << n_tok);
                const bool tile_shape = hd % 16 == 0 && hd <= cuda::attn::kMaxHeadDim;
                // Prompts of 16+ tokens get the kernel, decode steps never.
                ASSERT_EQ(p.ok, tile_shape && n_tok >= 16);
                if (!p.ok) continue;
                // The kernel's static shared memory is ~2.6 KiB: together under 48 KiB.
                ASSERT_LE(p.smem_bytes + 4096, size_t(48) << 10);
                const size_t r = 16 * static_cast<size_t>(p.warps);
                ASSERT_TRUE(p.warps >= 1 && p.warps <= cuda::attn::kTcMaxWarps);
                ASSERT_TRUE(p.tk == 16 || p.tk == 32);
                // wmma: tiles 32-byte aligned, leading dimensions multiples of 16 bytes.
                for (size_t off : {p.q_hi, p.q_lo, p.kv, p.scores, p.acc}) ASSERT_EQ(off % 128, 0u);
                ASSERT_EQ(p.ldh * 2 % 16, 0);
                ASSERT_EQ(p.ldo * 4 % 16, 0);
                ASSERT_GE(p.ldh, hd);
                ASSERT_GE(p.ldo, hd);
                // The regions do not overlap.
                ASSERT_GE(p.q_lo, p.q_hi + r * p.ldh * 2);
                ASSERT_GE(p.kv, p.q_lo + r * p.ldh * 2);
                ASSERT_GE(p.scores, p.kv + static_cast<size_t>(p.tk) * p.ldh * 2);
                ASSERT_GE(p.acc, p.scores + r * p.tk * 4);
                ASSERT_GE(p.smem_bytes, p.acc + r * p.ldo * 4);
                ASSERT_LE(p.rows, static_cast<int>(r));
                ASSERT_EQ(p.rows, p.pack * p.tq);
                ASSERT_TRUE(p.pack * p.n_packs >= gq && p.pack * (p.n_packs - 1) < gq);
                ASSERT_GE(p.token_tiles * p.tq, n_tok);
                ASSERT_LT((p.token_tiles - 1) * p.tq, n_tok);
            }
}

}  // namespace
}  // namespace ekv
