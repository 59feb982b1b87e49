// AVX2 f32-activation kernels for every quantized weight format (Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K). Weights are decoded to f32 by
// matmul_dequant_avx2.h (w = scale * q, exact but for Q6_K) and each output is
//   y = hsum(acc) [+ (hsum(corr) + tail)]
// where lane l of acc is one FMA chain over the elements k = l (mod 8) in
// order, and corr/tail the same over the per-32 offsets m against the
// per-32 activation sums. Two paths compute exactly this sequence:
//  - GEMV (fewer than kGemmMinTokens tokens: decode): weights decoded in
//    registers, a few rows at a time so their chains overlap, the rows
//    ahead prefetched as one sequential stream;
//  - GEMM (prefill): a panel of rows is dequantized, a chunk of k at a time,
//    into a per-thread f32 buffer and swept by 3-row x 4-token register
//    tiles for every token, so decoding is paid once per call, not per token
//    tile.
// The results are therefore bitwise independent of the batch size, the
// token's position, the row split and the path taken (matmul_kernels.h).
#include "backend/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "backend/cpu/matmul_avx2_util.h"
#include "backend/cpu/matmul_dequant_avx2.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

using namespace avx2;

// From this many tokens on, dequantizing a panel once pays for itself.
constexpr int kGemmMinTokens = 4;
// Rows the one-token GEMV interleaves: a row's accumulator is one chain of 4
// dependent FMAs per 32 elements, so 8 rows keep the FMA units busy; 4 for
// the formats with offsets, whose second accumulators would not fit the 16
// registers with 8.
constexpr int kGemvRows = 8;
constexpr int kGemvRowsWithOffsets = 4;
static_assert(kGemvRows <= 8 && kGemvRowsWithOffsets <= 8, "gemv_rows() runs the rest as 4 + 3/2/1 rows");
// Register tile of the GEMM: rows x tokens (12 accumulators + 3 weight
// vectors + 1 activation vector = the 16 ymm registers).
constexpr int kTileRows = 3;
constexpr int kTileTokens = 4;
// The GEMM dequantizes kPanelRows rows x kChunkElems elements at a time (15
// KiB: stays in L1 while every token tile sweeps it, with the tile's 4 KiB
// of activations); between chunks the accumulators wait in a buffer.
constexpr int64_t kChunkElems = 256;
static_assert(kPanelRows % kTileRows == 0, "panels are whole register tiles");

// y from the dot-product lanes and the offset term (one fixed order).
static inline float finish(__m256 acc, __m256 corr, float tail) {
    return hsum_ps(acc) + (hsum_ps(corr) + tail);
}

// The offset term of one (row, token): nm offsets m against the sums xs.
static inline float offset_dot(const float* m, const float* xs, int64_t nm, __m256* corr_out) {
    __m256 corr = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + 8 <= nm; g += 8) corr = _mm256_fmadd_ps(_mm256_load_ps(m + g), _mm256_loadu_ps(xs + g), corr);
    __m128 tail = _mm_setzero_ps();
    for (; g < nm; ++g) tail = _mm_fmadd_ss(_mm_load_ss(m + g), _mm_load_ss(xs + g), tail);
    *corr_out = corr;
    return _mm_cvtss_f32(tail);
}

template <class F>
struct QuantKernels {
    using Block = typename F::Block;
    static constexpr int kElems = 32 * F::kChunks;

    static const float* token_sums(const MatmulJob& job, int t) {
        return job.block_sums + static_cast<size_t>(t) * static_cast<size_t>(job.k_dim / kQK);
    }

    // ---- GEMV: NR rows from r, NT tokens from t0, decoded in registers ----
    // The rows are interleaved a chunk (32 elements) at a time, so NR x NT
    // independent FMA chains overlap (one chain alone waits 4 FMA latencies
    // per chunk); the loops over a group of blocks have no branches.

    template <int NR, int NT>
    static void store_rows(const MatmulJob& job, int64_t r, int t0, const __m256 (&acc)[NR][NT],
                           const __m256 (&corr)[NR][NT], const float (&m8)[NR][8], const float* const (&xs)[NT]) {
        const int64_t nm = job.k_dim / kQK;
        EKV_UNROLL
        for (int i = 0; i < NR; ++i) {
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                float y;
                if (F::kOffset) {
                    __m128 tail = _mm_setzero_ps();  // the blocks after the last group of 8
                    for (int64_t g = nm - nm % 8; g < nm; ++g) {
                        tail = _mm_fmadd_ss(_mm_load_ss(m8[i] + g % 8), _mm_load_ss(xs[j] + g), tail);
                    }
                    y = finish(acc[i][j], corr[i][j], _mm_cvtss_f32(tail));
                } else {
                    y = hsum_ps(acc[i][j]);
                }
                *out_at(job, t0 + j, r + i) = y;
            }
        }
    }

    // One decoded chunk of row i into its NT chains.
    template <int NT>
    static inline void fma_chunk(const __m256 (&wv)[4], const float* const (&x)[NT], int64_t k0, __m256 (&acc)[NT]) {
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            EKV_UNROLL
            for (int c = 0; c < 4; ++c) acc[j] = _mm256_fmadd_ps(wv[c], _mm256_loadu_ps(x[j] + k0 + 8 * c), acc[j]);
        }
    }

    // Prefetch of the rows lead bytes ahead, in address order: while block b
    // of row i is decoded, the block-sized slice b * NR + i of those rows'
    // bytes (so one sweep of the group's blocks covers the group ahead, as
    // one sequential stream: 8 interleaved row streams defeat the hardware
    // prefetchers).
    template <int NR>
    static inline void prefetch_slice(const char* ahead, int64_t b, int i) {
        const char* c = ahead + (b * NR + i) * static_cast<int64_t>(sizeof(Block));
        for (int off = 0; off < static_cast<int>(sizeof(Block)); off += 64) prefetch_line(c + off);
    }

    template <int NR, int NT>
    static void gemv(const MatmulJob& job, int64_t r, int t0) {
        const int64_t nb = job.k_dim / kElems;
        const char* ahead = reinterpret_cast<const char*>(weight_row(job, r)) + prefetch_lead(job.w_row_bytes, NR);
        const Block* w[NR];
        const float* x[NT];
        const float* xs[NT];
        __m256 acc[NR][NT], corr[NR][NT];
        EKV_UNROLL
        for (int i = 0; i < NR; ++i) {
            w[i] = reinterpret_cast<const Block*>(weight_row(job, r + i));
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                acc[i][j] = _mm256_setzero_ps();
                corr[i][j] = _mm256_setzero_ps();
            }
        }
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) {
            x[j] = token_x(job, t0 + j);
            xs[j] = F::kOffset ? token_sums(job, t0 + j) : nullptr;
        }
        alignas(32) float m8[NR][8] = {};  // offsets of the current group of 8
        if constexpr (F::kChunks == 1) {
            // Groups of 8 blocks: their scales (and offsets) converted at once.
            alignas(32) float d8[NR][8];
            alignas(32) float c8[NR][8];  // -kMagic * d
            const int64_t full = nb - nb % 8;
            for (int64_t g = 0; g < full; g += 8) {
                EKV_UNROLL
                for (int i = 0; i < NR; ++i) {
                    __m256 d;
                    if constexpr (F::kOffset) {
                        __m256 m;
                        group_halves(w[i] + g, &d, &m);
                        _mm256_store_ps(m8[i], _mm256_fmadd_ps(d, _mm256_set1_ps(F::kCenter), m));  // as centred_offset()
                    } else {
                        d = group_scales(w[i] + g);
                    }
                    _mm256_store_ps(d8[i], d);
                    _mm256_store_ps(c8[i], _mm256_mul_ps(d, _mm256_set1_ps(-kMagic)));
                }
                for (int bb = 0; bb < 8; ++bb) {
                    EKV_UNROLL
                    for (int i = 0; i < NR; ++i) {
                        prefetch_slice<NR>(ahead, g + bb, i);
                        typename F::Prep prep;
                        prep.d = _mm256_broadcast_ss(d8[i] + bb);
                        prep.c = _mm256_broadcast_ss(c8[i] + bb);
                        __m256 wv[4];
                        F::chunk(w[i][g + bb], prep, 0, wv);
                        fma_chunk<NT>(wv, x, 32 * (g + bb), acc[i]);
                    }
                }
                if constexpr (F::kOffset) {
                    EKV_UNROLL
                    for (int i = 0; i < NR; ++i) {
                        const __m256 m = _mm256_load_ps(m8[i]);
                        EKV_UNROLL
                        for (int j = 0; j < NT; ++j) corr[i][j] = _mm256_fmadd_ps(m, _mm256_loadu_ps(xs[j] + g), corr[i][j]);
                    }
                }
            }
            for (int64_t b = full; b < nb; ++b) {  // the blocks after the last group: offsets summed in store_rows
                EKV_UNROLL
                for (int i = 0; i < NR; ++i) {
                    prefetch_slice<NR>(ahead, b, i);
                    typename F::Prep prep;
                    F::prepare(w[i][b], &prep);
                    __m256 wv[4];
                    F::chunk(w[i][b], prep, 0, wv);
                    fma_chunk<NT>(wv, x, 32 * b, acc[i]);
                    if (F::kOffset) F::offsets(w[i][b], m8[i] + b % 8);
                }
            }
        } else {
            // K-quants: each row's super-block unpacked once, then its 8
            // chunks interleaved with the other rows'.
            typename F::Prep prep[NR];
            for (int64_t b = 0; b < nb; ++b) {
                EKV_UNROLL
                for (int i = 0; i < NR; ++i) {
                    prefetch_slice<NR>(ahead, b, i);
                    F::prepare(w[i][b], &prep[i]);
                }
                for (int s = 0; s < 8; ++s) {
                    EKV_UNROLL
                    for (int i = 0; i < NR; ++i) {
                        __m256 wv[4];
                        F::chunk(w[i][b], prep[i], s, wv);
                        fma_chunk<NT>(wv, x, kElems * b + 32 * s, acc[i]);
                    }
                }
                if constexpr (F::kOffset) {
                    EKV_UNROLL
                    for (int i = 0; i < NR; ++i) {
                        F::offsets(w[i][b], m8[i]);
                        const __m256 m = _mm256_load_ps(m8[i]);
                        EKV_UNROLL
                        for (int j = 0; j < NT; ++j) corr[i][j] = _mm256_fmadd_ps(m, _mm256_loadu_ps(xs[j] + 8 * b), corr[i][j]);
                    }
                }
            }
        }
        store_rows<NR, NT>(job, r, t0, acc, corr, m8, xs);
    }

    template <int NT>
    static void gemv_rows(const MatmulJob& job, int64_t r0, int64_t r1, int t0) {
        constexpr int NR = NT == 1 ? (F::kOffset ? kGemvRowsWithOffsets : kGemvRows) : 2;
        int64_t r = r0;
        for (; r + NR <= r1; r += NR) gemv<NR, NT>(job, r, t0);
        // The rest in few calls: a lone row's chains would wait on FMA latency.
        if constexpr (NR > 4) {
            if (r1 - r >= 4) {
                gemv<4, NT>(job, r, t0);
                r += 4;
            }
        }
        if constexpr (NR > 2) {
            if (r1 - r == 3) gemv<3, NT>(job, r, t0);
            if (r1 - r == 2) gemv<2, NT>(job, r, t0);
        }
        if (r1 - r == 1) gemv<1, NT>(job, r, t0);
    }

    static void gemv_all(const MatmulJob& job, int64_t r0, int64_t r1) {
        int t0 = 0;
        for (; t0 + 3 <= job.ntok; t0 += 3) gemv_rows<3>(job, r0, r1, t0);
        if (job.ntok - t0 == 2) gemv_rows<2>(job, r0, r1, t0);
        if (job.ntok - t0 == 1) gemv_rows<1>(job, r0, r1, t0);
    }

    // ---- GEMM: dequantized panel chunks swept by register tiles -----------

    // Elements [k0, k0 + kn) of rows [r, r + n) -> n rows of kn floats at wbuf
    // (kChunkElems apart); their offsets into mbuf (rows mstride apart).
    static void dequantize_chunk(const MatmulJob& job, int64_t r, int64_t n, int64_t k0, int64_t kn, float* wbuf,
                                 float* mbuf, int64_t mstride) {
        typename F::Prep prep;
        for (int64_t i = 0; i < n; ++i) {
            const Block* w = reinterpret_cast<const Block*>(weight_row(job, r + i)) + k0 / kElems;
            float* out = wbuf + i * kChunkElems;
            for (int64_t b = 0; b < kn / kElems; ++b) {
                F::prepare(w[b], &prep);
                for (int s = 0; s < F::kChunks; ++s) {
                    __m256 wv[4];
                    F::chunk(w[b], prep, s, wv);
                    EKV_UNROLL
                    for (int c = 0; c < 4; ++c) _mm256_store_ps(out + kElems * b + 32 * s + 8 * c, wv[c]);
                }
                if (F::kOffset) F::offsets(w[b], mbuf + i * mstride + (k0 / kElems + b) * F::kChunks);
            }
        }
    }

    struct Panel {
        const float* x;  // the chunk's activations, kChunkElems floats per token
        const float* w;  // kChunkElems floats per row
        const float* m;  // offsets, mstride per row
        int64_t mstride;
        float* acc;      // partial accumulators between chunks: 8 floats per (row, token)
        int64_t r;       // first matrix row
        int64_t k0, kn;  // the chunk
        bool first, last;
    };

    // Tokens [t0, t0 + NT) x panel rows [i0, i0 + MR) over the current chunk.
    template <int MR, int NT>
    static void tile(const MatmulJob& job, const Panel& p, int64_t i0, int t0) {
        const float* wr[MR];
        const float* x[NT];
        __m256 acc[MR][NT];
        EKV_UNROLL
        for (int i = 0; i < MR; ++i) {
            wr[i] = p.w + (i0 + i) * kChunkElems;
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                acc[i][j] = p.first ? _mm256_setzero_ps() : _mm256_load_ps(acc_slot(job, p, i0 + i, t0 + j));
            }
        }
        EKV_UNROLL
        for (int j = 0; j < NT; ++j) x[j] = p.x + (t0 + j) * kChunkElems;
        for (int64_t k = 0; k < p.kn; k += 8) {
            __m256 wv[MR];
            EKV_UNROLL
            for (int i = 0; i < MR; ++i) wv[i] = _mm256_load_ps(wr[i] + k);
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                const __m256 xv = _mm256_load_ps(x[j] + k);
                EKV_UNROLL
                for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
            }
        }
        const int64_t nm = job.k_dim / kQK;
        EKV_UNROLL
        for (int i = 0; i < MR; ++i) {
            EKV_UNROLL
            for (int j = 0; j < NT; ++j) {
                if (!p.last) {
                    _mm256_store_ps(acc_slot(job, p, i0 + i, t0 + j), acc[i][j]);
                    continue;
                }
                float y;
                if (F::kOffset) {
                    __m256 corr;
                    const float tail = offset_dot(p.m + (i0 + i) * p.mstride, token_sums(job, t0 + j), nm, &corr);
                    y = finish(acc[i][j], corr, tail);
                } else {
                    y = hsum_ps(acc[i][j]);
                }
                *out_at(job, t0 + j, p.r + i0 + i) = y;
            }
        }
    }

    static float* acc_slot(const MatmulJob& job, const Panel& p, int64_t i, int t) {
        // Token tile major, so one register tile's 12 vectors are contiguous.
        (void)job;
        return p.acc + ((t / kTileTokens * kPanelRows + i) * kTileTokens + t % kTileTokens) * 8;
    }

    template <int NT>
    static void tile_rows(const MatmulJob& job, const Panel& p, int64_t n, int t0) {
        int64_t i = 0;
        for (; i + kTileRows <= n; i += kTileRows) tile<kTileRows, NT>(job, p, i, t0);
        if (n - i == 2) tile<2, NT>(job, p, i, t0);
        if (n - i == 1) tile<1, NT>(job, p, i, t0);
    }

    // False when no panel buffer could be had (the caller then runs the GEMV).
    static bool gemm(const MatmulJob& job, int64_t r0, int64_t r1) {
        const int64_t K = job.k_dim;
        const int64_t mstride = F::kOffset ? (K / kQK + 7) / 8 * 8 : 0;
        const int64_t acc_floats = K > kChunkElems ? kPanelRows * (job.ntok + kTileTokens) * 8 : 0;
        const int64_t n_chunks = (K + kChunkElems - 1) / kChunkElems;
        const int64_t x_floats = n_chunks * job.ntok * kChunkElems;
        float* buf = thread_panel_buffer(static_cast<size_t>(kPanelRows * (kChunkElems + mstride) + acc_floats + x_floats));
        if (!buf) return false;
        // The activations regrouped chunk-major: a chunk's rows for all tokens are
        // contiguous (token rows of a power-of-two size would share cache sets).
        // Once per call on this thread: the buffer and its layout stay the same
        // for all of a call's row chunks (redoing it per chunk made the GEMMs of
        // Gemma 3's shapes 4-18 % slower at 512 tokens on 2 threads).
        float* xp = buf + kPanelRows * (kChunkElems + mstride) + acc_floats;
        thread_local uint64_t regrouped_call = 0;
        const bool regrouped = job.call_id != 0 && regrouped_call == job.call_id;
        regrouped_call = job.call_id;
        for (int64_t c = 0; c < n_chunks && !regrouped; ++c) {
            const int64_t k0 = c * kChunkElems;
            const int64_t kn = K - k0 < kChunkElems ? K - k0 : kChunkElems;
            for (int t = 0; t < job.ntok; ++t) {
                const float* src = token_x(job, t) + k0;
                float* dst = xp + (c * job.ntok + t) * kChunkElems;
                for (int64_t e = 0; e < kn; e += 8) _mm256_store_ps(dst + e, _mm256_loadu_ps(src + e));
            }
        }
        Panel p;
        p.w = buf;
        p.m = buf + kPanelRows * kChunkElems;
        p.mstride = mstride;
        p.acc = buf + kPanelRows * (kChunkElems + mstride);
        for (int64_t rb = r0; rb < r1; rb += kPanelRows) {
            const int64_t n = rb + kPanelRows < r1 ? kPanelRows : r1 - rb;
            p.r = rb;
            for (int64_t k0 = 0; k0 < K; k0 += kChunkElems) {
                p.k0 = k0;
                p.x = xp + k0 / kChunkElems * job.ntok * kChunkElems;
                p.kn = K - k0 < kChunkElems ? K - k0 : kChunkElems;
                p.first = k0 == 0;
                p.last = k0 + p.kn == K;
                dequantize_chunk(job, rb, n, k0, p.kn, buf, buf + kPanelRows * kChunkElems, mstride);
                int t0 = 0;
                for (; t0 + kTileTokens <= job.ntok; t0 += kTileTokens) tile_rows<kTileTokens>(job, p, n, t0);
                switch (job.ntok - t0) {
                    case 3: tile_rows<3>(job, p, n, t0); break;
                    case 2: tile_rows<2>(job, p, n, t0); break;
                    case 1: tile_rows<1>(job, p, n, t0); break;
                    default: break;
                }
            }
        }
        return true;
    }

    static void rows(const MatmulJob& job, int64_t r0, int64_t r1) {
        if (job.ntok >= kGemmMinTokens && gemm(job, r0, r1)) return;
        gemv_all(job, r0, r1);
    }
};

}  // namespace

RowsKernel avx2_f32act_quant_rows_kernel(DType t) {
    switch (t) {
        case DType::Q4_0: return QuantKernels<DecQ4_0>::rows;
        case DType::Q4_1: return QuantKernels<DecQ4_1>::rows;
        case DType::Q5_0: return QuantKernels<DecQ5_0>::rows;
        case DType::Q5_1: return QuantKernels<DecQ5_1>::rows;
        case DType::Q8_0: return QuantKernels<DecQ8_0>::rows;
        case DType::Q4_K: return QuantKernels<DecQ45K<false>>::rows;
        case DType::Q5_K: return QuantKernels<DecQ45K<true>>::rows;
        case DType::Q6_K: return QuantKernels<DecQ6K>::rows;
        default: return nullptr;
    }
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#else  // built without AVX2 flags (or not x86)

namespace ekv {
namespace cpu {
namespace detail {
RowsKernel avx2_f32act_quant_rows_kernel(DType) { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
