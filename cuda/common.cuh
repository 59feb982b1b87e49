// Helpers shared by the kernel files (device only): launch sizing, warp and
// block reductions.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "gguf_blocks.cuh"
#include "kernels.h"

namespace ekv::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for one thread per element, capped (kernels loop grid-stride).
inline unsigned grid_for(int64_t n, int threads) {
    const int64_t blocks = ceil_div(n > 0 ? n : 1, threads);
    return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}
__device__ __forceinline__ int warp_sum(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the total. `shared` holds 32 values; callable repeatedly.
template <class T>
__device__ T block_sum(T v, T* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();  // shared may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    T total = lane < n_warps ? shared[lane] : T(0);
    return warp_sum(total);
}

}  // namespace ekv::cuda
