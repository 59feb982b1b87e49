// AVX2/FMA/F16C attention kernels: plain F16/F32 rows and KIVI 2/4/8-bit
// segments, for packs of 1..8 query heads (templated so every accumulator
// of a pack lives in a register). Compiled with -mavx2 -mfma -mf16c; used
// only when the CPU reports AVX2 and FMA.
//
// Rows are decoded in "units" of 8 bytes of codes (KIVI) or 8 elements
// (plain): one load gives 8 / nbits planes of 8 consecutive channels, plane
// s of unit u holding channels s * L + 8u .. + 7 (L = head_dim * nbits / 8,
// the layout of core/kivi.h), so 4-bit codes cost one load, one mask and one
// shift per 16 channels.
//  - Keys: every key row is decoded once and dotted with all queries of the
//    pack; 8 keys' partial sums are reduced together. KIVI keys are scored as
//    dot(q * scale, codes) + dot(q, min), the scaled queries and the bias
//    computed once per key group.
//  - Values: channel units outer, keys inner, so the pack's accumulators stay
//    in registers over a block. KIVI values add (w * scale) * code per key
//    and the w * min terms once per block and channel group.
#include "backend/cpu/cpu_attention_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__clang__)
#define EKV_ATTN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define EKV_ATTN_UNROLL _Pragma("GCC unroll 16")
#else
#define EKV_ATTN_UNROLL
#endif

namespace ekv {
namespace cpu {
namespace detail {
namespace {

constexpr int kMaxWeightRows = 64;  // KIVI values: pack heads x channel groups of a head

// ---- vector helpers --------------------------------------------------------

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Eight rows of 8 floats (p[8 * r + i]) -> their eight row sums.
inline __m256 row_sums8(const float* p) {
    const __m256 t0 = _mm256_hadd_ps(_mm256_load_ps(p), _mm256_load_ps(p + 8));
    const __m256 t1 = _mm256_hadd_ps(_mm256_load_ps(p + 16), _mm256_load_ps(p + 24));
    const __m256 t2 = _mm256_hadd_ps(_mm256_load_ps(p + 32), _mm256_load_ps(p + 40));
    const __m256 t3 = _mm256_hadd_ps(_mm256_load_ps(p + 48), _mm256_load_ps(p + 56));
    const __m256 u0 = _mm256_hadd_ps(t0, t1);  // rows 0..3: low-lane sums | high-lane sums
    const __m256 u1 = _mm256_hadd_ps(t2, t3);  // rows 4..7
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// exp(x) for x <= 0 (a score minus the running max): 2^n * e^r with
// |r| <= ln2 / 2 and e^r by its Taylor series to degree 7 (relative error
// < 1e-7). Inputs below -87 (and NaN) give exp(-87) ~ 1.6e-38, not a
// denormal; masked lanes are zeroed by the caller.
inline __m256 exp_nonpos(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x - n * ln2 with ln2 split in two so n * ln2_hi is exact.
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606820309417e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// Rows of the next block, prefetched into L1 one row per key of the current
// block (all at once would overflow the line fill buffers). Decode reads each
// cached row once per step, strided by the other heads' data, so on a
// DRAM-bound device every new row is a demand miss (the profile's hot spots
// are those first loads). On the development VM, whose L3 holds the whole
// test cache, it measured neutral; matmul's weight prefetch measured 20-35%.
struct RowPrefetch {
    const uint8_t* p = nullptr;
    size_t stride = 0;
    int rows = 0;
    size_t bytes = 0;
    void row(int r) const {
        if (r >= rows) return;
        const char* c = reinterpret_cast<const char*>(p + static_cast<size_t>(r) * stride);
        for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(c + off, _MM_HINT_T0);
        _mm_prefetch(c + bytes - 1, _MM_HINT_T0);  // the last line of an unaligned run
    }
};

struct NextRows {
    RowPrefetch part[3];
    int count = 0;
    void add(const uint8_t* p, size_t stride, int rows, size_t bytes) {
        if (rows > 0 && bytes > 0) part[count++] = RowPrefetch{p, stride, rows, bytes};
    }
    void row(int r) const {
        for (int i = 0; i < count; ++i) part[i].row(r);
    }
};

inline float exp_nonpos1(float x) { return _mm256_cvtss_f32(exp_nonpos(_mm256_set1_ps(x))); }

inline float load_half(const uint8_t* p) {
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// ---- row formats: kUnits(head_dim) units of kPlanes x 8 channels -----------

struct F32Rows {
    static constexpr int kPlanes = 1;
    static constexpr size_t kElemBytes = 4;
    static int units(int hd) { return hd / 8; }
    static int run(int hd) { return hd; }
    static void load(const uint8_t* row, int u, __m256* out) {
        out[0] = _mm256_loadu_ps(reinterpret_cast<const float*>(row) + 8 * u);
    }
};

struct F16Rows {
    static constexpr int kPlanes = 1;
    static constexpr size_t kElemBytes = 2;
    static int units(int hd) { return hd / 8; }
    static int run(int hd) { return hd; }
    static void load(const uint8_t* row, int u, __m256* out) {
        out[0] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * u)));
    }
};

template <int NB>
struct KiviRows {
    static constexpr int kPlanes = 8 / NB;
    static int units(int hd) { return hd * NB / 64; }
    static int run(int hd) { return hd * NB / 8; }  // L
    static void load(const uint8_t* row, int u, __m256* out) {
        const __m256i raw = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 8 * u)));
        const __m256i mask = _mm256_set1_epi32((1 << NB) - 1);
        EKV_ATTN_UNROLL
        for (int s = 0; s < kPlanes; ++s) {
            __m256i v = s == 0 ? raw : _mm256_srli_epi32(raw, NB * s);
            if (s + 1 < kPlanes) v = _mm256_and_si256(v, mask);  // the top plane has no higher bits
            out[s] = _mm256_cvtepi32_ps(v);
        }
    }
};

// ---- one block of up to kAttnBlock keys ------------------------------------

// s[j][jj] = dot(q_j, key row jj) + bias[j] for jj < n (rows `stride` apart).
template <int NQ, class Rows>
void block_scores(const uint8_t* row0, size_t stride, int n, const float* q, int hd, const float* bias,
                  const NextRows& next, float (*s)[kAttnBlock]) {
    alignas(32) float part[NQ][64];
    const int units = Rows::units(hd);
    const int run = Rows::run(hd);
    for (int jb = 0; jb < n; jb += 8) {
        const int m = n - jb < 8 ? n - jb : 8;
        for (int jj = 0; jj < m; ++jj) {
            const uint8_t* row = row0 + static_cast<size_t>(jb + jj) * stride;
            next.row(jb + jj);
            __m256 acc[NQ];
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) acc[j] = _mm256_setzero_ps();
            for (int u = 0; u < units; ++u) {
                __m256 k[Rows::kPlanes];
                Rows::load(row, u, k);
                EKV_ATTN_UNROLL
                for (int p = 0; p < Rows::kPlanes; ++p) {
                    const float* qc = q + p * run + 8 * u;
                    EKV_ATTN_UNROLL
                    for (int j = 0; j < NQ; ++j)
                        acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(qc + static_cast<size_t>(j) * hd), k[p], acc[j]);
                }
            }
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) _mm256_store_ps(part[j] + 8 * jj, acc[j]);
        }
        for (int jj = m; jj < 8; ++jj) {
            next.row(jb + jj);  // a short block still fetches the next one's rows
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) _mm256_store_ps(part[j] + 8 * jj, _mm256_setzero_ps());
        }
        EKV_ATTN_UNROLL
        for (int j = 0; j < NQ; ++j)
            _mm256_storeu_ps(s[j] + jb, _mm256_add_ps(row_sums8(part[j]), _mm256_set1_ps(bias[j])));
    }
}

// Online-softmax step: rescales the state to the block's max and turns the
// Soft-capping (Gemma 2) is rare enough that scalar tanh is fine; it keeps
// this file's no-shared-inline rule (matmul_kernels.h).
template <int NQ>
void capped_scores(float (*s)[kAttnBlock], int n, float cap) {
    const float inv = 1.0f / cap;
    for (int j = 0; j < NQ; ++j)
        for (int i = 0; i < n; ++i) s[j][i] = cap * std::tanh(s[j][i] * inv);
}

// scores s[j][0..n) into weights (0 beyond n), adding them to the sums.
template <int NQ>
void softmax_block(float (*s)[kAttnBlock], int n, int hd, AttnState& st) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 neg_inf = _mm256_set1_ps(-__builtin_inff());
    __m256 valid[kAttnBlock / 8];
    for (int b = 0; b < kAttnBlock / 8; ++b)
        valid[b] = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * b), iota));  // lane i of block b: 8b + i < n
    for (int j = 0; j < NQ; ++j) {
        __m256 v[kAttnBlock / 8];
        __m256 vmax = neg_inf;
        for (int b = 0; b < kAttnBlock / 8; ++b) {
            v[b] = _mm256_blendv_ps(neg_inf, _mm256_loadu_ps(s[j] + 8 * b), valid[b]);
            vmax = _mm256_max_ps(vmax, v[b]);
        }
        const float bm = hmax(vmax);
        if (bm > st.max[j]) {
            const float r = exp_nonpos1(st.max[j] - bm);
            st.sum[j] *= r;
            const __m256 rv = _mm256_set1_ps(r);
            float* acc = st.acc + static_cast<size_t>(j) * hd;
            for (int c = 0; c < hd; c += 8) _mm256_store_ps(acc + c, _mm256_mul_ps(_mm256_load_ps(acc + c), rv));
            st.max[j] = bm;
        }
        const __m256 mv = _mm256_set1_ps(st.max[j]);
        __m256 sum = _mm256_setzero_ps();
        for (int b = 0; b < kAttnBlock / 8; ++b) {
            const __m256 w = _mm256_and_ps(exp_nonpos(_mm256_sub_ps(v[b], mv)), valid[b]);
            _mm256_storeu_ps(s[j] + 8 * b, w);
            sum = _mm256_add_ps(sum, w);
        }
        st.sum[j] += hsum(sum);
    }
}

// Units [u0, u0 + UB) of acc_j += sum_jj w[j][jj] * value row jj, plain rows.
template <int NQ, class Rows, int UB>
void values_plain_units(const uint8_t* row0, size_t stride, int n, const float (*w)[kAttnBlock], int hd,
                        float* acc, int u0) {
    __m256 a[NQ][UB];
    EKV_ATTN_UNROLL
    for (int j = 0; j < NQ; ++j) {
        EKV_ATTN_UNROLL
        for (int b = 0; b < UB; ++b) a[j][b] = _mm256_load_ps(acc + static_cast<size_t>(j) * hd + 8 * (u0 + b));
    }
    for (int jj = 0; jj < n; ++jj) {
        const uint8_t* row = row0 + static_cast<size_t>(jj) * stride;
        if constexpr (UB == 1) {  // large packs: the weights straight from memory (no registers left)
            __m256 v[1];
            Rows::load(row, u0, v);
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) a[j][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(&w[j][jj]), v[0], a[j][0]);
        } else {
            __m256 wj[NQ];
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) wj[j] = _mm256_broadcast_ss(&w[j][jj]);
            EKV_ATTN_UNROLL
            for (int b = 0; b < UB; ++b) {
                __m256 v[1];
                Rows::load(row, u0 + b, v);
                EKV_ATTN_UNROLL
                for (int j = 0; j < NQ; ++j) a[j][b] = _mm256_fmadd_ps(wj[j], v[0], a[j][b]);
            }
        }
    }
    EKV_ATTN_UNROLL
    for (int j = 0; j < NQ; ++j) {
        EKV_ATTN_UNROLL
        for (int b = 0; b < UB; ++b) _mm256_store_ps(acc + static_cast<size_t>(j) * hd + 8 * (u0 + b), a[j][b]);
    }
}

// acc_j += sum_jj w[j][jj] * value row jj, plain rows. Several units per
// pass: with one, a pack's NQ accumulators wait on FMA latency at every key;
// NQ x UB chains (at most 12: with the NQ broadcasts and a row vector, the
// 16 registers) overlap. Each lane still adds the keys in order, so the
// bits do not change. Measured (one pack, 512 f16 keys): head_dim 64 x 3
// queries 1.15x, 256 x 4 1.17x.
template <int NQ, class Rows>
void block_values_plain(const uint8_t* row0, size_t stride, int n, const float (*w)[kAttnBlock], int hd,
                        float* acc) {
    constexpr int UB = NQ <= 3 ? 4 : (NQ <= 4 ? 2 : 1);
    const int units = Rows::units(hd);
    int u = 0;
    for (; u + UB <= units; u += UB) values_plain_units<NQ, Rows, UB>(row0, stride, n, w, hd, acc, u);
    for (; u < units; ++u) values_plain_units<NQ, Rows, 1>(row0, stride, n, w, hd, acc, u);
}

// Where one head's channels fall in the value rows' channel groups.
struct ValueGroups {
    int64_t head_ch0;  // absolute channel of the head's channel 0
    int group;         // G
    int64_t first;     // first group touching the head
    int count;         // groups touching the head
    int of(int c) const { return static_cast<int>((head_ch0 + c) / group - first); }
};

// KIVI values: acc_j += sum_jj (w * scale_g) * code + (sum_jj w * min_g).
template <int NQ, int NB>
void block_values_kivi(const uint8_t* vrow0, size_t stride, size_t head_codes, size_t code_bytes, int n,
                       const float (*w)[kAttnBlock], int hd, const ValueGroups& vg, float* acc) {
    using Rows = KiviRows<NB>;
    alignas(32) float scale[kMaxWeightRows][kAttnBlock];
    alignas(32) float mins[kMaxWeightRows][kAttnBlock];
    alignas(32) float ws[kMaxWeightRows][kAttnBlock];  // row g * NQ + j: w[j][jj] * scale[g][jj]
    float min_sum[kMaxWeightRows];                      // g * NQ + j: sum_jj w[j][jj] * min[g][jj]
    for (int g = 0; g < vg.count; ++g) {
        for (int jj = 0; jj < kAttnBlock; ++jj) {
            if (jj < n) {
                const uint8_t* pair = vrow0 + static_cast<size_t>(jj) * stride + code_bytes + 4 * (vg.first + g);
                scale[g][jj] = load_half(pair);
                mins[g][jj] = load_half(pair + 2);
            } else {
                scale[g][jj] = 0.f;  // weights are 0 there too: keep garbage out of the products
                mins[g][jj] = 0.f;
            }
        }
        for (int j = 0; j < NQ; ++j) {
            __m256 msum = _mm256_setzero_ps();
            for (int b = 0; b < kAttnBlock; b += 8) {
                const __m256 wv = _mm256_loadu_ps(w[j] + b);
                _mm256_store_ps(ws[g * NQ + j] + b, _mm256_mul_ps(wv, _mm256_load_ps(scale[g] + b)));
                msum = _mm256_fmadd_ps(wv, _mm256_load_ps(mins[g] + b), msum);
            }
            min_sum[g * NQ + j] = hsum(msum);
        }
    }
    const int units = Rows::units(hd);
    const int run = Rows::run(hd);
    const uint8_t* codes0 = vrow0 + head_codes;
    for (int u = 0; u < units; ++u) {
        __m256 a[NQ][Rows::kPlanes];
        const float* wrow[Rows::kPlanes];
        EKV_ATTN_UNROLL
        for (int p = 0; p < Rows::kPlanes; ++p) {
            wrow[p] = ws[vg.of(p * run + 8 * u) * NQ];
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) a[j][p] = _mm256_load_ps(acc + static_cast<size_t>(j) * hd + p * run + 8 * u);
        }
        for (int jj = 0; jj < n; ++jj) {
            __m256 v[Rows::kPlanes];
            Rows::load(codes0 + static_cast<size_t>(jj) * stride, u, v);
            EKV_ATTN_UNROLL
            for (int p = 0; p < Rows::kPlanes; ++p) {
                EKV_ATTN_UNROLL
                for (int j = 0; j < NQ; ++j)
                    a[j][p] = _mm256_fmadd_ps(_mm256_broadcast_ss(wrow[p] + j * kAttnBlock + jj), v[p], a[j][p]);
            }
        }
        EKV_ATTN_UNROLL
        for (int p = 0; p < Rows::kPlanes; ++p) {
            EKV_ATTN_UNROLL
            for (int j = 0; j < NQ; ++j) _mm256_store_ps(acc + static_cast<size_t>(j) * hd + p * run + 8 * u, a[j][p]);
        }
    }
    for (int g = 0; g < vg.count; ++g) {
        int64_t c0 = (vg.first + g) * vg.group - vg.head_ch0;
        int64_t c1 = c0 + vg.group;
        if (c0 < 0) c0 = 0;
        if (c1 > hd) c1 = hd;
        for (int j = 0; j < NQ; ++j) {
            const __m256 m = _mm256_set1_ps(min_sum[g * NQ + j]);
            float* aj = acc + static_cast<size_t>(j) * hd;
            for (int64_t c = c0; c < c1; c += 8) _mm256_store_ps(aj + c, _mm256_add_ps(_mm256_load_ps(aj + c), m));
        }
    }
}

// ---- piece kernels ---------------------------------------------------------

// Scaled queries q * scale[c] and biases dot(q, min) of one key group.
template <int NQ>
void prepare_key_group(const uint8_t* scales, const uint8_t* mins, const float* q, int hd, float* qs, float* bias) {
    __m256 b[NQ];
    EKV_ATTN_UNROLL
    for (int j = 0; j < NQ; ++j) b[j] = _mm256_setzero_ps();
    for (int c = 0; c < hd; c += 8) {
        const __m256 ks = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 2 * c)));
        const __m256 km = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mins + 2 * c)));
        EKV_ATTN_UNROLL
        for (int j = 0; j < NQ; ++j) {
            const __m256 qv = _mm256_loadu_ps(q + static_cast<size_t>(j) * hd + c);
            _mm256_store_ps(qs + static_cast<size_t>(j) * hd + c, _mm256_mul_ps(qv, ks));
            b[j] = _mm256_fmadd_ps(qv, km, b[j]);
        }
    }
    EKV_ATTN_UNROLL
    for (int j = 0; j < NQ; ++j) bias[j] = hsum(b[j]);
}

#include "backend/cpu/cpu_attention_pieces.inc"

}  // namespace

const AttnKernels* avx2_attention_kernels() {
    static const AttnKernels set = {"avx2", select_pieces};
    return &set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#else  // built without AVX2 flags (or not x86): the scalar kernels serve

namespace ekv {
namespace cpu {
namespace detail {
const AttnKernels* avx2_attention_kernels() { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
