// matmul with f32 activations, weights read in place in their GGUF format:
//  - few tokens (decode, <= kMaxMatvecTokens): one warp per weight row, each
//    lane decoding whole 32-element chunks into registers and dotting them
//    with up to NT (1 or 8) tokens at once, then a warp sum;
//  - many tokens (prefill): a tile of kTileRows rows x kTileTokens tokens per
//    block; each weight chunk is decoded once per tile into shared memory and
//    reused by every token of the tile.
// Decoding is the shared, host-checked gguf_blocks.cuh; products and sums are
// f32 in an order that differs from the CPU's (results agree to float
// rounding, not bit for bit). Also the public matmul() entry, which sends
// int8_activations with quantized weights to matmul_int8.cu.
#include "common.cuh"
#include "matmul_internal.cuh"

namespace ekv::cuda {
namespace {

constexpr int kMatvecWarps = 8;  // rows per block
constexpr int kMaxMatvecTokens = 8;
constexpr int kTileRows = 128;
constexpr int kTileTokens = 32;
constexpr int kTileChunks = 2;  // 32-element chunks per k step
constexpr int kTileK = 32 * kTileChunks;
constexpr int kTileThreads = 256;

template <DType T, int NT>
__global__ void __launch_bounds__(kMatvecWarps * 32, 1)
    matvec_kernel(const uint8_t* w, int64_t rows, int64_t cols, size_t row_bytes, const float* x, int64_t x_stride,
                  int64_t n_tok, float* out, int64_t out_stride) {
    const int lane = threadIdx.x % 32;
    const int64_t r = static_cast<int64_t>(blockIdx.x) * kMatvecWarps + threadIdx.x / 32;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * NT;
    if (r >= rows) return;  // the whole warp: no block-wide barriers below
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    const int64_t n_chunks = (cols + 31) / 32;
    for (int64_t c = lane; c < n_chunks; c += 32) {
        float v[32];
        blocks::decode_chunk<T>(row, cols, c, v);
        const int64_t valid = cols - 32 * c;  // >= 32 except in a plain format's last chunk
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t0 + t >= n_tok) break;
            const float* xr = x + (t0 + t) * x_stride + 32 * c;
            float s = 0.0f;
            if (blocks::Format<T>::kBlockElems > 1 || valid >= 32) {
#pragma unroll
                for (int l = 0; l < 32; ++l) s += v[l] * xr[l];
            } else {  // static indices keep v in registers
#pragma unroll
                for (int l = 0; l < 32; ++l)
                    if (l < valid) s += v[l] * xr[l];
            }
            acc[t] += s;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float s = warp_sum(acc[t]);
        if (lane == 0 && t0 + t < n_tok) out[(t0 + t) * out_stride + r] = s;
    }
}

// Thread (tr = tid % 32, tc = tid / 32) accumulates rows tr + 32i (i < 4) for
// tokens tc + 8j (j < 4) of the tile.
template <DType T>
__global__ void __launch_bounds__(kTileThreads, 1)
    tiled_kernel(const uint8_t* w, int64_t rows, int64_t cols, size_t row_bytes, const float* x, int64_t x_stride,
                 int64_t n_tok, float* out, int64_t out_stride) {
    __shared__ float ws[kTileRows][kTileK + 1];  // +1: rows fall in different banks
    __shared__ float xs[kTileTokens][kTileK + 1];
    const int tid = threadIdx.x, tr = tid % 32, tc = tid / 32;
    const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kTileTokens;
    const int64_t n_chunks = (cols + 31) / 32;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int64_t c0 = 0; c0 < n_chunks; c0 += kTileChunks) {
        {  // decode: one 32-element chunk per thread (kTileRows * kTileChunks == threads)
            const int lr = tid / kTileChunks, h = tid % kTileChunks;
            const int64_t r = r0 + lr, c = c0 + h;
            float v[32];
            if (r < rows && c < n_chunks) {
                blocks::decode_chunk<T>(w + static_cast<size_t>(r) * row_bytes, cols, c, v);
            } else {
#pragma unroll
                for (int l = 0; l < 32; ++l) v[l] = 0.0f;
            }
#pragma unroll
            for (int l = 0; l < 32; ++l) ws[lr][32 * h + l] = v[l];
        }
        for (int idx = tid; idx < kTileTokens * kTileK; idx += kTileThreads) {
            const int tok = idx / kTileK, kk = idx % kTileK;
            const int64_t col = 32 * c0 + kk;
            xs[tok][kk] = t0 + tok < n_tok && col < cols ? x[(t0 + tok) * x_stride + col] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < kTileK; ++kk) {
            float wv[4], xv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) wv[i] = ws[tr + 32 * i][kk];
#pragma unroll
            for (int j = 0; j < 4; ++j) xv[j] = xs[tc + 8 * j][kk];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += wv[i] * xv[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int64_t r = r0 + tr + 32 * i, t = t0 + tc + 8 * j;
            if (r < rows && t < n_tok) out[t * out_stride + r] = acc[i][j];
        }
}

template <DType T, int NT>
void launch_matvec(Stream s, const WeightRef& w, ConstRows x, Rows out) {
    const dim3 grid(static_cast<unsigned>(ceil_div(w.rows, kMatvecWarps)), static_cast<unsigned>(ceil_div(x.rows, NT)));
    matvec_kernel<T, NT><<<grid, kMatvecWarps * 32, 0, s>>>(static_cast<const uint8_t*>(w.data), w.rows, w.cols,
                                                             w.row_bytes, x.data, x.stride, x.rows, out.data,
                                                             out.stride);
}

struct F32Launch {
    Stream s;
    const WeightRef& w;
    ConstRows x;
    Rows out;
    template <DType T>
    void run() {
        if (x.rows <= 1) {
            launch_matvec<T, 1>(s, w, x, out);
        } else if (x.rows <= kMaxMatvecTokens) {
            launch_matvec<T, kMaxMatvecTokens>(s, w, x, out);
        } else {
            const dim3 grid(static_cast<unsigned>(ceil_div(w.rows, kTileRows)),
                            static_cast<unsigned>(ceil_div(x.rows, kTileTokens)));
            tiled_kernel<T><<<grid, kTileThreads, 0, s>>>(static_cast<const uint8_t*>(w.data), w.rows, w.cols,
                                                          w.row_bytes, x.data, x.stride, x.rows, out.data,
                                                          out.stride);
        }
    }
};

bool is_quantized(DType t) { return t != DType::F32 && t != DType::F16 && t != DType::BF16; }

struct NoLaunch {
    template <DType T>
    void run() {}
};

}  // namespace

bool weight_type_supported(DType type) {
    NoLaunch nothing;
    return blocks::dispatch_format(type, nothing);
}

size_t matmul_scratch_bytes(int64_t k, int64_t n_tokens) {
    if (k <= 0 || n_tokens <= 0) return 0;
    const size_t a = detail::int8_act_row_bytes(DType::Q4_0, k), b = detail::int8_act_row_bytes(DType::Q4_K, k);
    return static_cast<size_t>(n_tokens) * (a > b ? a : b);
}

void matmul(Stream s, const WeightRef& w, ConstRows x, Rows out, bool int8_activations, void* scratch) {
    if (x.rows <= 0 || w.rows <= 0) return;
    if (int8_activations && is_quantized(w.type) && scratch) {
        detail::matmul_int8(s, w, x, out, scratch);
        return;
    }
    F32Launch launch{s, w, x, out};
    blocks::dispatch_format(w.type, launch);
}

}  // namespace ekv::cuda
