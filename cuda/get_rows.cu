// get_rows: embedding lookup, each id's row decoded to f32 by the shared
// block decoders (bit-identical to core/quant.cpp's dequantize_row).
#include "common.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 128;

// One block per output row, a thread per 32-element chunk. An id outside the
// table (per-step data the host never sees) yields a zero row, not a fault.
template <DType T>
__global__ void get_rows_kernel(const uint8_t* table, int64_t rows, int64_t cols, size_t row_bytes,
                                const int32_t* ids, float* out, int64_t out_stride) {
    const int64_t i = blockIdx.x;
    const int32_t id = ids[i];
    float* o = out + i * out_stride;
    const bool valid = id >= 0 && id < rows;
    const uint8_t* row = table + static_cast<size_t>(valid ? id : 0) * row_bytes;
    const int64_t n_chunks = (cols + 31) / 32;
    for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
        float v[32];
        if (valid) {
            blocks::decode_chunk<T>(row, cols, c, v);
        } else {
#pragma unroll
            for (int l = 0; l < 32; ++l) v[l] = 0.0f;
        }
#pragma unroll
        for (int l = 0; l < 32; ++l)
            if (32 * c + l < cols) o[32 * c + l] = v[l];
    }
}

struct GetRowsLaunch {
    Stream s;
    const WeightRef& table;
    const int32_t* ids;
    int32_t n;
    Rows out;
    template <DType T>
    void run() {
        get_rows_kernel<T><<<n, kThreads, 0, s>>>(static_cast<const uint8_t*>(table.data), table.rows, table.cols,
                                                  table.row_bytes, ids, out.data, out.stride);
    }
};

}  // namespace

void get_rows(Stream s, const WeightRef& table, const int32_t* ids, int32_t n, Rows out) {
    if (n <= 0) return;
    GetRowsLaunch launch{s, table, ids, n, out};
    blocks::dispatch_format(table.type, launch);
}

}  // namespace ekv::cuda
