// Helpers of the int8 kernels that keep eight weight rows in the eight
// 32-bit lanes of a vector (matmul_int8_rows8_avx2.cpp for the 32-element
// formats, matmul_int8_kquants_avx2.cpp for the K-quants): per block, each
// row's sum is an exact integer in its own lane, so the float work after it
// is one vector operation for eight rows. Include only from files compiled
// with -mavx2 -mfma -mf16c; everything is static (see matmul_kernels.h).
#pragma once
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cpu/matmul_avx2_util.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace avx2 {

constexpr int kLanes = 8;  // rows per group: one per 32-bit lane
// From this many tokens on the GEMM decodes a row group once for all of them
// (a panel) and sweeps it with tiles of kSweepTokens tokens.
constexpr int kGemmMinTokens = 4;
constexpr int kSweepTokens = 4;

// Lane i of the result = the sum of the 8 lanes of v[i] (integers: exact in
// any order).
static inline __m256i fold_rows(const __m256i (&v)[kLanes]) {
    const __m256i t0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i t1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    // t0: rows 0-3, four sums in each 128-bit half; t1: rows 4-7.
    return _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20), _mm256_permute2x128_si256(t0, t1, 0x31));
}

// dst[c] gets, in lane i, the 32-bit word c of v[i] (an 8 x 8 transpose), so
// 4 bytes of a token broadcast to all lanes meet all eight rows at once.
static inline void transpose_words(const __m256i (&v)[kLanes], __m256i* dst) {
    __m256i t[kLanes], u[kLanes];
    EKV_UNROLL
    for (int i = 0; i < kLanes; i += 2) {  // rows i, i + 1 interleaved by words
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    EKV_UNROLL
    for (int h = 0; h < kLanes; h += 4) {  // rows h..h+3 of words c (low half) and c + 4 (high half)
        u[h] = _mm256_unpacklo_epi64(t[h], t[h + 2]);
        u[h + 1] = _mm256_unpackhi_epi64(t[h], t[h + 2]);
        u[h + 2] = _mm256_unpacklo_epi64(t[h + 1], t[h + 3]);
        u[h + 3] = _mm256_unpackhi_epi64(t[h + 1], t[h + 3]);
    }
    EKV_UNROLL
    for (int c = 0; c < 4; ++c) {
        _mm256_store_si256(dst + c, _mm256_permute2x128_si256(u[c], u[c + 4], 0x20));
        _mm256_store_si256(dst + c + 4, _mm256_permute2x128_si256(u[c], u[c + 4], 0x31));
    }
}

// Calls group(r, n) for the row groups of [r0, r1): n = kLanes rows but for
// a shorter last group.
template <class Group>
static inline void for_row_groups(int64_t r0, int64_t r1, Group&& group) {
    for (int64_t r = r0; r < r1; r += kLanes) group(r, r1 - r < kLanes ? static_cast<int>(r1 - r) : kLanes);
}

// Calls tile(std::integral_constant<int, NT>(), t0) over tokens [0, ntok):
// tiles of kTile tokens, then the rest as one tile.
template <int kTile, class Tile>
static inline void for_token_tiles(int ntok, Tile&& tile) {
    static_assert(kTile >= 1 && kTile <= 4, "the rest is a tile of 1 to 3 tokens");
    int t0 = 0;
    for (; t0 + kTile <= ntok; t0 += kTile) tile(std::integral_constant<int, kTile>(), t0);
    switch (ntok - t0) {
        case 3: tile(std::integral_constant<int, 3>(), t0); break;
        case 2: tile(std::integral_constant<int, 2>(), t0); break;
        case 1: tile(std::integral_constant<int, 1>(), t0); break;
        default: break;
    }
}

// Four bytes at p in every 32-bit lane.
static inline __m256i broadcast_word(const void* p) {
    int32_t word;
    std::memcpy(&word, p, 4);
    return _mm256_set1_epi32(word);
}

// Lanes [0, n) of y to token t's outputs of rows r.. (contiguous in y).
static inline void store_lanes(const MatmulJob& job, int64_t r, int n, int t, __m256 y) {
    float* dst = out_at(job, t, r);
    if (n == kLanes) {
        _mm256_storeu_ps(dst, y);
        return;
    }
    alignas(32) float lanes[kLanes];
    _mm256_store_ps(lanes, y);
    std::memcpy(dst, lanes, static_cast<size_t>(n) * sizeof(float));
}

// The group's row pointers; spare lanes repeat the last row.
template <class Block>
static inline void group_rows(const MatmulJob& job, int64_t r, int n, const Block* (&w)[kLanes]) {
    EKV_UNROLL
    for (int i = 0; i < kLanes; ++i) {
        w[i] = reinterpret_cast<const Block*>(weight_row(job, r + (i < n ? i : n - 1)));
    }
}

// The two halves at the start of the rows' blocks w[i][b] (d and the
// offset, or d and dmin; for formats with one half the second is unused) as
// floats: 32-bit loads and in-lane shuffles, as group_halves does along a row.
template <class Block>
static inline void gather_half_pairs(const Block* const (&w)[kLanes], int64_t b, __m256* first, __m256* second) {
    auto word = [&](int i) {
        return _mm_cvtsi32_si128(static_cast<int>(load_u32(reinterpret_cast<const uint8_t*>(&w[i][b]))));
    };
    const __m128i p01 = _mm_unpacklo_epi32(word(0), word(1));
    const __m128i p23 = _mm_unpacklo_epi32(word(2), word(3));
    const __m128i p45 = _mm_unpacklo_epi32(word(4), word(5));
    const __m128i p67 = _mm_unpacklo_epi32(word(6), word(7));
    // Rows [0 1 4 5] and [2 3 6 7] widen to floats that one in-lane shuffle
    // turns into rows 0..7.
    const __m256 a = _mm256_cvtph_ps(_mm_unpacklo_epi64(p01, p45));
    const __m256 c = _mm256_cvtph_ps(_mm_unpacklo_epi64(p23, p67));
    *first = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(2, 0, 2, 0));
    *second = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(3, 1, 3, 1));
}

// The K-quant GEMM's shape: per row group, decode(w, b, panel + kVectors * b)
// for each of the nb super-blocks into the thread's panel, then
// sweep(std::integral_constant<int, NT>(), panel, r, n, t0) over token tiles.
// False (nothing done) when the panel cannot be had.
template <class Block, int kVectors, class Decode, class Sweep>
static inline bool panel_gemm(const MatmulJob& job, int64_t r0, int64_t r1, int64_t nb, Decode&& decode,
                              Sweep&& sweep) {
    float* buf = thread_panel_buffer(static_cast<size_t>(nb) * kVectors * 8);
    if (!buf) return false;
    __m256i* panel = reinterpret_cast<__m256i*>(buf);
    for_row_groups(r0, r1, [&](int64_t r, int n) {
        const Block* w[kLanes];
        group_rows(job, r, n, w);
        for (int64_t b = 0; b < nb; ++b) decode(w, b, panel + kVectors * b);
        for_token_tiles<kSweepTokens>(job.ntok, [&](auto nt, int t0) { sweep(nt, panel, r, n, t0); });
    });
    return true;
}

// Prefetch, while block b of a group of n rows is read, of the b-th
// block-sized slice of the bytes `ahead` (the groups ahead as one stream).
static inline void prefetch_group_slice(const char* ahead, int64_t b, size_t slice) {
    const char* p = ahead + static_cast<size_t>(b) * slice;
    for (size_t off = 0; off < slice; off += 64) prefetch_line(p + off);
}

}  // namespace avx2
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
