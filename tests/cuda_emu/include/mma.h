// edgekv's CUDA emulator (tests only): the warp matrix functions
// (nvcuda::wmma) of CUDA's mma.h for half inputs and float accumulators.
//
// A GPU spreads a fragment over the warp's 32 lanes in an unspecified
// layout, so portable kernels only load, store, fill and multiply whole
// fragments. Here every lane holds the whole tile and does the whole
// operation: the same results for such kernels. Loads and stores are
// collective, as on a GPU: every lane of the warp must reach them (else the
// block is stuck: a launch failure), a load reads after all lanes arrived
// and before any lane goes on (so a load, multiply, store back of one tile
// adds once, not once per lane), a store writes after all lanes arrived.
// The pointer and leading-dimension rules a GPU enforces (32-byte aligned
// tiles; ldm a multiple of 16 bytes) fault.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
    static constexpr int num_elements = rows * cols;
    float x[num_elements];  // row-major; exact for half inputs
};

namespace detail {
inline void check_tile(const void* p, unsigned ldm, size_t elem_bytes) {
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
        ::cuda_emu::device_fault("wmma load/store: the tile pointer is not 32-byte aligned");
    if (ldm * elem_bytes % 16 != 0)
        ::cuda_emu::device_fault("wmma load/store: ldm is not a multiple of 16 bytes");
}
inline size_t offset(int r, int c, unsigned ldm, bool row_major) {
    return row_major ? static_cast<size_t>(r) * ldm + static_cast<size_t>(c)
                     : static_cast<size_t>(c) * ldm + static_cast<size_t>(r);
}
}  // namespace detail

template <class Use, int M, int N, int K, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, __half, Layout>& f, const __half* p, unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "half accumulators are not emulated");
    detail::check_tile(p, ldm, sizeof(__half));
    using F = fragment<Use, M, N, K, __half, Layout>;
    ::cuda_emu::warp_collective();
    for (int r = 0; r < F::rows; ++r)
        for (int c = 0; c < F::cols; ++c)
            f.x[r * F::cols + c] = __half2float(p[detail::offset(r, c, ldm, std::is_same<Layout, row_major>::value)]);
    ::cuda_emu::warp_collective();
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t layout) {
    detail::check_tile(p, ldm, sizeof(float));
    ::cuda_emu::warp_collective();
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) f.x[r * N + c] = p[detail::offset(r, c, ldm, layout == mem_row_major)];
    ::cuda_emu::warp_collective();
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
    detail::check_tile(p, ldm, sizeof(float));
    ::cuda_emu::warp_collective();
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) p[detail::offset(r, c, ldm, layout == mem_row_major)] = f.x[r * N + c];
}

template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
    for (float& x : f.x) x = v;
}

// d = a * b + c; products of halves are exact in float, summed in order.
template <int M, int N, int K, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, __half, LA>& a,
              const fragment<matrix_b, M, N, K, __half, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
    float out[M * N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; ++k) s += a.x[i * K + k] * b.x[k * N + j];
            out[i * N + j] = s;
        }
    std::memcpy(d.x, out, sizeof(out));
}

}  // namespace wmma
}  // namespace nvcuda
