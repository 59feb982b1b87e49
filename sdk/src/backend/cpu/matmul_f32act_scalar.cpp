// Portable scalar f32-activation matmul kernels for every weight type: each
// weight block is decoded with the reference dequantize_row (once per token
// tile) and multiplied with f32 x, accumulating in double. Slower than the
// SIMD kernels but exact up to the final rounding, and like them each output
// is a fixed sequence of operations: independent of tiling and threads.
#include "backend/cpu/matmul_kernels.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

// Tokens sharing one decoded weight block.
constexpr int kScalarTokenTile = 8;
// Elements decoded at a time: one block of the widest format.
constexpr int64_t kChunk = kQK_K;

void rows_f32act(const MatmulJob& job, DType type, int64_t r0, int64_t r1) {
    const DTypeTraits& tr = dtype_traits(type);
    // Float types take any k; decode them in runs of kChunk (last one shorter).
    const int64_t chunk = tr.block_size == 1 ? kChunk : tr.block_size;
    float wdeq[kChunk];
    double acc[kScalarTokenTile];
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* w = job.w + static_cast<size_t>(r) * job.w_row_bytes;
        for (int t0 = 0; t0 < job.ntok; t0 += kScalarTokenTile) {
            const int nt = job.ntok - t0 < kScalarTokenTile ? job.ntok - t0 : kScalarTokenTile;
            for (int j = 0; j < nt; ++j) acc[j] = 0.0;
            for (int64_t k0 = 0; k0 < job.k_dim; k0 += chunk) {
                const int64_t n = job.k_dim - k0 < chunk ? job.k_dim - k0 : chunk;
                dequantize_row(type, w + static_cast<size_t>(k0 / tr.block_size) * tr.block_bytes, wdeq, n);
                for (int j = 0; j < nt; ++j) {
                    const float* x = reinterpret_cast<const float*>(job.act + static_cast<size_t>(t0 + j) *
                                                                                  job.act_row_bytes) + k0;
                    double a = acc[j];
                    for (int64_t i = 0; i < n; ++i) a += static_cast<double>(wdeq[i]) * static_cast<double>(x[i]);
                    acc[j] = a;
                }
            }
            for (int j = 0; j < nt; ++j) {
                job.y[static_cast<size_t>(t0 + j) * static_cast<size_t>(job.rows) + static_cast<size_t>(r)] =
                    static_cast<float>(acc[j]);
            }
        }
    }
}

template <DType T>
void rows(const MatmulJob& job, int64_t r0, int64_t r1) {
    rows_f32act(job, T, r0, r1);
}

RowsKernel scalar_f32act_rows_kernel(DType t) {
    switch (t) {
        case DType::F32: return rows<DType::F32>;
        case DType::F16: return rows<DType::F16>;
        case DType::BF16: return rows<DType::BF16>;
        case DType::Q4_0: return rows<DType::Q4_0>;
        case DType::Q4_1: return rows<DType::Q4_1>;
        case DType::Q5_0: return rows<DType::Q5_0>;
        case DType::Q5_1: return rows<DType::Q5_1>;
        case DType::Q8_0: return rows<DType::Q8_0>;
        case DType::Q4_K: return rows<DType::Q4_K>;
        case DType::Q5_K: return rows<DType::Q5_K>;
        case DType::Q6_K: return rows<DType::Q6_K>;
        default: return nullptr;
    }
}

// The scalar kernels do not use the block sums (the weights' offsets are
// part of the dequantized values); they are still produced, for the contract.
void block_sums(const float* x, void* dst, int64_t n) {
    float* out = static_cast<float*>(dst);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float s = 0.0f;
        for (int j = 0; j < kQK; ++j) s += x[j];
        out[i] = s;
    }
}

}  // namespace

const F32ActKernels& scalar_f32act_kernels() {
    static const F32ActKernels set = {block_sums, scalar_f32act_rows_kernel};
    return set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv
