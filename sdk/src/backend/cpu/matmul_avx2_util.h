// Helpers shared by the AVX2 kernel files. Include only from files compiled
// with -mavx2 -mfma -mf16c, and only under __AVX2__. Everything here is static
// (internal linkage) on purpose: see matmul_kernels.h.
#pragma once
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/matmul_kernels.h"

// Fully unroll the small fixed-count loops (over the tokens of a tile, the
// chunks of a block) so accumulator arrays live in registers; -O2 alone keeps
// them on the stack.
#if defined(__clang__)
#define EKV_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define EKV_UNROLL _Pragma("GCC unroll 16")
#else
#define EKV_UNROLL
#endif

namespace ekv {
namespace cpu {
namespace detail {
namespace avx2 {

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Sums adjacent pairs of u8*s8 products into 16 x i16, then pairs again into 8 x i32.
static inline __m256i dot_u8_s8_epi32(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles first, then high nibbles.
// (Both halves get the same 16 bytes; the upper half is shifted down by 4.)
static inline __m256i unpack_nibbles16(const uint8_t* qs) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
    const __m256i v = _mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

// Bit j of `bits` -> byte j = 0x10 when set, else 0 (the fifth bit of Q5 quants).
static inline __m256i bits_to_fifth_bit(uint32_t bits) {
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int>(bits)),
        _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL, 0x0101010101010101LL, 0));
    const __m256i select = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

static inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// The eight 6-bit scales and mins of a Q4_K/Q5_K block (layout as
// unpack_scale_min_k4), decoded four at a time from 32-bit words.
struct ScalesMins {
    uint8_t sc[8];
    uint8_t mn[8];
};

static inline ScalesMins unpack_scales_mins(const uint8_t* packed) {
    uint32_t a[3];
    std::memcpy(a, packed, 12);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, low2 = 0x03030303u;
    const uint32_t sc_lo = a[0] & low6;
    const uint32_t mn_lo = a[1] & low6;
    const uint32_t sc_hi = (a[2] & low4) | (((a[0] >> 6) & low2) << 4);
    const uint32_t mn_hi = ((a[2] >> 4) & low4) | (((a[1] >> 6) & low2) << 4);
    ScalesMins s;
    std::memcpy(s.sc, &sc_lo, 4);
    std::memcpy(s.sc + 4, &sc_hi, 4);
    std::memcpy(s.mn, &mn_lo, 4);
    std::memcpy(s.mn + 4, &mn_hi, 4);
    return s;
}


// 8 unsigned / signed bytes -> 8 floats (exact).
static inline __m256 u8x8_to_ps(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
static inline __m256 s8x8_to_ps(const void* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Software prefetch distance for weight rows. When every row is swept once
// (decode, small batches) the hardware prefetchers alone leave much of the
// DRAM bandwidth unused (measured: 20-35% slower on large matrices without
// this); in prefill a row block is swept once per token tile and then comes
// from cache, where prefetching only costs issue slots.
constexpr int kPrefetchAhead = 4096;

// Prefetches the `bytes` bytes kPrefetchAhead past p into L1, one line per
// 64 bytes (consecutive calls over a stream miss no line). Inline asm: GCC
// 12's DCE at -O2 deletes these _mm_prefetch calls (no prefetch reached the
// binary).
static inline void prefetch_ahead(const void* p, int bytes) {
    const char* c = static_cast<const char*>(p) + kPrefetchAhead;
    for (int off = 0; off < bytes; off += 64) __asm__ volatile("prefetcht0 %0" : : "m"(*(c + off)));
}

// prefetch_ahead() when the job reads each weight once.
static inline void prefetch_weights(const MatmulJob& job, const void* p, int bytes) {
    if (job.ntok > kTokenTile) return;
    prefetch_ahead(p, bytes);
}

// The row-group GEMVs (matmul_f32act_quant_avx2.cpp, matmul_int8_rows8_avx2.cpp)
// prefetch the weights at least this many bytes ahead, in whole groups of
// rows (a group's rows are contiguous). Measured on Zen 3 (Gemma 3's 178 MB
// Q8_0 output head, one thread): 4-8 KiB alike, 16 KiB and more slower;
// without software prefetch 40 % slower.
constexpr int64_t kGemvPrefetchBytes = 8192;

// Byte distance from a group of nr rows to the weights its GEMV prefetches.
static inline ptrdiff_t prefetch_lead(size_t row_bytes, int nr) {
    const int64_t group = static_cast<int64_t>(row_bytes) * nr;
    return static_cast<ptrdiff_t>((kGemvPrefetchBytes + group - 1) / group * group);
}

// Inline asm, as prefetch_ahead() (GCC may drop _mm_prefetch).
static inline void prefetch_line(const void* p) {
    __asm__ volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
}

// Runs Tile<NT>::run(job, r, t0) over rows [r0, r1) and all tokens, in token
// tiles of kTokenTile (remainder tiles of 1..3) and row blocks of kRowBlock.
template <template <int> class Tile>
static void drive_tiles(const MatmulJob& job, int64_t r0, int64_t r1) {
    for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
        const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
        int t0 = 0;
        for (; t0 + kTokenTile <= job.ntok; t0 += kTokenTile) {
            for (int64_t r = rb; r < re; ++r) Tile<kTokenTile>::run(job, r, t0);
        }
        switch (job.ntok - t0) {
            case 3: for (int64_t r = rb; r < re; ++r) Tile<3>::run(job, r, t0); break;
            case 2: for (int64_t r = rb; r < re; ++r) Tile<2>::run(job, r, t0); break;
            case 1: for (int64_t r = rb; r < re; ++r) Tile<1>::run(job, r, t0); break;
            default: break;
        }
    }
}

static inline const uint8_t* weight_row(const MatmulJob& job, int64_t r) {
    return job.w + static_cast<size_t>(r) * job.w_row_bytes;
}

static inline const uint8_t* act_row(const MatmulJob& job, int t) {
    return job.act + static_cast<size_t>(t) * job.act_row_bytes;
}

// Token t's f32 activations (f32-activation kernels).
static inline const float* token_x(const MatmulJob& job, int t) {
    return reinterpret_cast<const float*>(act_row(job, t));
}

static inline float* out_at(const MatmulJob& job, int t, int64_t r) {
    return job.y + static_cast<size_t>(t) * static_cast<size_t>(job.rows) + static_cast<size_t>(r);
}

}  // namespace avx2
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
