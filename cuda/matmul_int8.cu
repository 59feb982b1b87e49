// matmul with int8 activations (kernels.h's int8_activations), the CPU int8
// path's arithmetic (backend/cpu/matmul_int8_scalar.cpp) on the device:
// 1. each token's row is quantized into scratch (Q8_1F blocks of 32 for the
//    32-element weight formats, Q8_K blocks of 256 for the K-quants), the
//    same bytes as the CPU's quantizers (q8_act.cuh, checked on the host);
// 2. one warp per weight row: integer block sums with dp4a, scaled per block
//    exactly like the CPU (per block for Q4_0..Q8_0, per super-block for the
//    K-quants, whose 8 slices are summed as integers across 8 lanes first);
//    for more than 8 tokens, tiles of 64 rows x 32 tokens instead
//    (tile32_kernel, tilek_kernel), each weight block read once per tile.
// Only the order in which the per-block floats are added differs from the CPU.
#include "common.cuh"
#include "matmul_internal.cuh"
#include "q8_act.cuh"

namespace ekv::cuda {
namespace {

constexpr int kWarps = 8;   // rows per block
constexpr int kTokens = 8;  // tokens per block (grid.y covers the rest)
constexpr int kQuantThreads = 128;

bool is_k_quant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

// One thread per activation block.
template <class Block, int kElems>
__global__ void quantize_kernel(const float* x, int64_t x_stride, int64_t n_tok, int64_t nb, uint8_t* act,
                                size_t act_row_bytes) {
    const int64_t total = n_tok * nb;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t t = idx / nb, b = idx % nb;
        Block* dst = reinterpret_cast<Block*>(act + static_cast<size_t>(t) * act_row_bytes) + b;
        if constexpr (kElems == kQK) {
            q8::quantize_q8_1f(x + t * x_stride + kElems * b, dst);
        } else {
            q8::quantize_q8_k(x + t * x_stride + kElems * b, dst);
        }
    }
}

// 32-element formats: lane per weight block.
template <DType T, int NT>
__global__ void __launch_bounds__(kWarps * 32, 1)
    dot32_kernel(const uint8_t* w, int64_t rows, int64_t nb, size_t row_bytes, const uint8_t* act,
                 size_t act_row_bytes, int64_t n_tok, float* out, int64_t out_stride) {
    const int lane = threadIdx.x % 32;
    const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * NT;
    if (r >= rows) return;
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    float acc[NT], corr[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = corr[t] = 0.0f;
    for (int64_t b = lane; b < nb; b += 32) {
        int q[8];
        float d, o;
        q8::Block32<T>::unpack(row + b * q8::Block32<T>::kBytes, q, &d, &o);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t0 + t >= n_tok) break;
            const BlockQ8_1F& xb =
                reinterpret_cast<const BlockQ8_1F*>(act + static_cast<size_t>(t0 + t) * act_row_bytes)[b];
            acc[t] += blocks::mul_rn(blocks::mul_rn(d, xb.d), static_cast<float>(q8::isum32(q, xb)));
            corr[t] += blocks::mul_rn(o, xb.s);
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float a = warp_sum(acc[t]), c = warp_sum(corr[t]);
        if (lane == 0 && t0 + t < n_tok) out[(t0 + t) * out_stride + r] = a + c;
    }
}

// K-quants: the warp's 4 groups of 8 lanes take super-blocks g, g + 4, ...;
// lane s of a group takes slice s (32 elements) and the group sums the
// slices' integer parts with shuffles before the one float scaling.
template <DType T, int NT>
__global__ void __launch_bounds__(kWarps * 32, 1)
    dotk_kernel(const uint8_t* w, int64_t rows, int64_t nb, size_t row_bytes, const uint8_t* act,
                size_t act_row_bytes, int64_t n_tok, float* out, int64_t out_stride) {
    const int lane = threadIdx.x % 32, g = lane / 8, s = lane % 8;
    const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * NT;
    if (r >= rows) return;
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    float acc[NT], corr[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = corr[t] = 0.0f;
    for (int64_t base = 0; base < nb; base += 4) {  // uniform over the warp: every lane reaches the shuffles
        const int64_t b = base + g;
        const bool active = b < nb;
        const uint8_t* wb = row + (active ? b : 0) * q8::BlockK<T>::kBytes;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            const bool tok = t0 + t < n_tok;
            const BlockQ8_K* xb = reinterpret_cast<const BlockQ8_K*>(
                                      act + static_cast<size_t>(tok ? t0 + t : t0) * act_row_bytes) +
                                  (active ? b : 0);
            int isum = 0, msum = 0;
            if (active && tok) q8::BlockK<T>::slice(wb, *xb, s, &isum, &msum);
#pragma unroll
            for (int o = 1; o < 8; o <<= 1) {
                isum += __shfl_xor_sync(kFullMask, isum, o);
                msum += __shfl_xor_sync(kFullMask, msum, o);
            }
            if (active && tok && s == 0) q8::BlockK<T>::finish(wb, xb->d, isum, msum, &acc[t], &corr[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float a = warp_sum(acc[t]), c = warp_sum(corr[t]);
        if (lane == 0 && t0 + t < n_tok) out[(t0 + t) * out_stride + r] = a - c;
    }
}

// Many tokens, 32-element formats: a block takes kTileRows weight rows x
// kTileTokens tokens, kTileBlocks weight blocks at a time. Each weight block
// is unpacked once into shared memory (not once per 8 tokens) and each
// activation block loaded once; a thread then owns 2 rows x 4 tokens. The
// per-block integer sums and float scalings are the CPU's; the blocks'
// floats are added in order.
constexpr int kTileRows = 64, kTileTokens = 32, kTileBlocks = 4, kTileThreads = 256;
static_assert(kTileRows * kTileBlocks == kTileThreads, "a thread unpacks one weight block per step");
static_assert((kTileRows / 2) * (kTileTokens / 4) == kTileThreads, "a thread owns 2 rows x 4 tokens");

// A thread's 2 rows x 4 tokens: acc + corr (or acc - corr), inside the matrix.
__device__ __forceinline__ void store_tile(const float (&acc)[2][4], const float (&corr)[2][4], bool subtract,
                                          int64_t r, int64_t rows, int64_t t, int64_t n_tok, float* out,
                                          int64_t out_stride) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (r + i < rows && t + j < n_tok)
                out[(t + j) * out_stride + r + i] = subtract ? acc[i][j] - corr[i][j] : acc[i][j] + corr[i][j];
}

template <DType T>
__global__ void __launch_bounds__(kTileThreads, 1)
    tile32_kernel(const uint8_t* w, int64_t rows, int64_t nb, size_t row_bytes, const uint8_t* act,
                  size_t act_row_bytes, int64_t n_tok, float* out, int64_t out_stride) {
    __shared__ int wq[kTileRows][kTileBlocks][8];
    __shared__ float wd[kTileRows][kTileBlocks], wo[kTileRows][kTileBlocks];
    __shared__ int xq[kTileTokens][kTileBlocks * 8 + 1];  // + 1: the 8 token groups' reads hit 8 banks
    __shared__ float xd[kTileTokens][kTileBlocks], xs[kTileTokens][kTileBlocks];
    const int tid = threadIdx.x;
    const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kTileTokens;
    const int my_r = (tid / (kTileTokens / 4)) * 2, my_t = (tid % (kTileTokens / 4)) * 4;
    float acc[2][4] = {}, corr[2][4] = {};
    for (int64_t b0 = 0; b0 < nb; b0 += kTileBlocks) {
        {  // one weight block per thread; blocks past the row or k end are zeros
            const int r = tid / kTileBlocks, kb = tid % kTileBlocks;
            int q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            float d = 0.0f, o = 0.0f;
            if (r0 + r < rows && b0 + kb < nb)
                q8::Block32<T>::unpack(w + static_cast<size_t>(r0 + r) * row_bytes + (b0 + kb) * q8::Block32<T>::kBytes,
                                       q, &d, &o);
#pragma unroll
            for (int i = 0; i < 8; ++i) wq[r][kb][i] = q[i];
            wd[r][kb] = d;
            wo[r][kb] = o;
        }
        for (int e = tid; e < kTileTokens * kTileBlocks; e += kTileThreads) {
            const int t = e / kTileBlocks, kb = e % kTileBlocks;
            const bool live = t0 + t < n_tok && b0 + kb < nb;
            const BlockQ8_1F* xb =
                live ? reinterpret_cast<const BlockQ8_1F*>(act + static_cast<size_t>(t0 + t) * act_row_bytes) + b0 + kb
                     : nullptr;
#pragma unroll
            for (int i = 0; i < 8; ++i) xq[t][kb * 8 + i] = live ? q8::load_i32(xb->qs + 4 * i) : 0;
            xd[t][kb] = live ? xb->d : 0.0f;
            xs[t][kb] = live ? xb->s : 0.0f;
        }
        __syncthreads();
        const int n_blocks = nb - b0 < kTileBlocks ? static_cast<int>(nb - b0) : kTileBlocks;
        for (int kb = 0; kb < n_blocks; ++kb) {
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    int isum = 0;
#pragma unroll
                    for (int k = 0; k < 8; ++k) isum = q8::dot4(wq[my_r + i][kb][k], xq[my_t + j][kb * 8 + k], isum);
                    acc[i][j] += blocks::mul_rn(blocks::mul_rn(wd[my_r + i][kb], xd[my_t + j][kb]),
                                                static_cast<float>(isum));
                    corr[i][j] += blocks::mul_rn(wo[my_r + i][kb], xs[my_t + j][kb]);
                }
        }
        __syncthreads();  // before the next step overwrites the tiles
    }
    store_tile(acc, corr, false, r0 + my_r, rows, t0 + my_t, n_tok, out, out_stride);
}

// The K-quants over many tokens: the same 64-row x 32-token tiles, one
// super-block step at a time, its weight bytes and activation blocks copied
// once into shared memory; a thread sums each (row, token)'s 8 slices as
// integers, then scales once per super-block, as dotk_kernel and the CPU do.
template <DType T>
__global__ void __launch_bounds__(kTileThreads, 1)
    tilek_kernel(const uint8_t* w, int64_t rows, int64_t nb, size_t row_bytes, const uint8_t* act,
                 size_t act_row_bytes, int64_t n_tok, float* out, int64_t out_stride) {
    constexpr int kWordsPerBlock = (q8::BlockK<T>::kBytes + 3) / 4;  // 4-byte aligned copies
    constexpr int kActWords = sizeof(BlockQ8_K) / 4;
    static_assert(sizeof(BlockQ8_K) % 4 == 0, "Q8_K blocks copy as words");
    __shared__ uint32_t wsb[kTileRows][kWordsPerBlock];
    __shared__ uint32_t xsb[kTileTokens][kActWords];
    const int tid = threadIdx.x;
    const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kTileTokens;
    const int my_r = (tid / (kTileTokens / 4)) * 2, my_t = (tid % (kTileTokens / 4)) * 4;
    float acc[2][4] = {}, corr[2][4] = {};
    for (int64_t b = 0; b < nb; ++b) {
        // Weight bytes (rows past the end: zeros, never written out).
        for (int e = tid; e < kTileRows * q8::BlockK<T>::kBytes; e += kTileThreads) {
            const int r = e / q8::BlockK<T>::kBytes, k = e % q8::BlockK<T>::kBytes;
            const uint8_t v = r0 + r < rows ? w[static_cast<size_t>(r0 + r) * row_bytes + b * q8::BlockK<T>::kBytes + k] : 0;
            reinterpret_cast<uint8_t*>(wsb[r])[k] = v;
        }
        for (int e = tid; e < kTileTokens * kActWords; e += kTileThreads) {
            const int t = e / kActWords, k = e % kActWords;
            xsb[t][k] = t0 + t < n_tok ? reinterpret_cast<const uint32_t*>(
                                             act + static_cast<size_t>(t0 + t) * act_row_bytes + b * sizeof(BlockQ8_K))[k]
                                       : 0u;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const uint8_t* wb = reinterpret_cast<const uint8_t*>(wsb[my_r + i]);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const BlockQ8_K& xb = *reinterpret_cast<const BlockQ8_K*>(xsb[my_t + j]);
                int isum = 0, msum = 0;
                for (int sl = 0; sl < 8; ++sl) {
                    int is, ms;
                    q8::BlockK<T>::slice(wb, xb, sl, &is, &ms);
                    isum += is;
                    msum += ms;
                }
                q8::BlockK<T>::finish(wb, xb.d, isum, msum, &acc[i][j], &corr[i][j]);
            }
        }
        __syncthreads();  // before the next super-block overwrites the tiles
    }
    store_tile(acc, corr, true, r0 + my_r, rows, t0 + my_t, n_tok, out, out_stride);
}

template <DType T, int NT>
void launch_dot(Stream s, const WeightRef& w, ConstRows x, Rows out, const uint8_t* act, size_t act_row_bytes) {
    const dim3 grid(static_cast<unsigned>(ceil_div(w.rows, kWarps)), static_cast<unsigned>(ceil_div(x.rows, NT)));
    const uint8_t* wd = static_cast<const uint8_t*>(w.data);
    if constexpr (T == DType::Q4_K || T == DType::Q5_K || T == DType::Q6_K) {
        dotk_kernel<T, NT><<<grid, kWarps * 32, 0, s>>>(wd, w.rows, w.cols / kQK_K, w.row_bytes, act,
                                                         act_row_bytes, x.rows, out.data, out.stride);
    } else {
        dot32_kernel<T, NT><<<grid, kWarps * 32, 0, s>>>(wd, w.rows, w.cols / kQK, w.row_bytes, act, act_row_bytes,
                                                          x.rows, out.data, out.stride);
    }
}

template <DType T>
void launch_dot_tokens(Stream s, const WeightRef& w, ConstRows x, Rows out, const uint8_t* act, size_t arb) {
    constexpr bool k_quant = T == DType::Q4_K || T == DType::Q5_K || T == DType::Q6_K;
    if (x.rows <= 1) return launch_dot<T, 1>(s, w, x, out, act, arb);
    if (x.rows <= kTokens) return launch_dot<T, kTokens>(s, w, x, out, act, arb);
    const dim3 grid(static_cast<unsigned>(ceil_div(w.rows, kTileRows)),
                    static_cast<unsigned>(ceil_div(x.rows, kTileTokens)));
    const uint8_t* wd = static_cast<const uint8_t*>(w.data);
    if constexpr (k_quant) {
        tilek_kernel<T><<<grid, kTileThreads, 0, s>>>(wd, w.rows, w.cols / kQK_K, w.row_bytes, act, arb, x.rows,
                                                      out.data, out.stride);
    } else {
        tile32_kernel<T><<<grid, kTileThreads, 0, s>>>(wd, w.rows, w.cols / kQK, w.row_bytes, act, arb, x.rows,
                                                       out.data, out.stride);
    }
}

}  // namespace

namespace detail {

size_t int8_act_row_bytes(DType t, int64_t k) {
    if (t == DType::F32 || t == DType::F16 || t == DType::BF16) return 0;
    if (is_k_quant(t)) return static_cast<size_t>(k / kQK_K) * sizeof(BlockQ8_K);
    return static_cast<size_t>(k / kQK) * sizeof(BlockQ8_1F);
}

void matmul_int8(Stream s, const WeightRef& w, ConstRows x, Rows out, void* scratch) {
    uint8_t* act = static_cast<uint8_t*>(scratch);
    const size_t arb = int8_act_row_bytes(w.type, w.cols);
    if (is_k_quant(w.type)) {
        const int64_t nb = w.cols / kQK_K;
        quantize_kernel<BlockQ8_K, kQK_K><<<grid_for(x.rows * nb, kQuantThreads), kQuantThreads, 0, s>>>(
            x.data, x.stride, x.rows, nb, act, arb);
    } else {
        const int64_t nb = w.cols / kQK;
        quantize_kernel<BlockQ8_1F, kQK><<<grid_for(x.rows * nb, kQuantThreads), kQuantThreads, 0, s>>>(
            x.data, x.stride, x.rows, nb, act, arb);
    }
    switch (w.type) {
        case DType::Q4_0: launch_dot_tokens<DType::Q4_0>(s, w, x, out, act, arb); break;
        case DType::Q4_1: launch_dot_tokens<DType::Q4_1>(s, w, x, out, act, arb); break;
        case DType::Q5_0: launch_dot_tokens<DType::Q5_0>(s, w, x, out, act, arb); break;
        case DType::Q5_1: launch_dot_tokens<DType::Q5_1>(s, w, x, out, act, arb); break;
        case DType::Q8_0: launch_dot_tokens<DType::Q8_0>(s, w, x, out, act, arb); break;
        case DType::Q4_K: launch_dot_tokens<DType::Q4_K>(s, w, x, out, act, arb); break;
        case DType::Q5_K: launch_dot_tokens<DType::Q5_K>(s, w, x, out, act, arb); break;
        case DType::Q6_K: launch_dot_tokens<DType::Q6_K>(s, w, x, out, act, arb); break;
        default: break;
    }
}

}  // namespace detail
}  // namespace ekv::cuda
