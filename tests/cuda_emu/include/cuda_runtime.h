// edgekv's CUDA emulator (tests only; see cuda_runtime_api.h): the runtime
// API plus what kernel source needs to compile as host C++ — the CUDA
// keywords, dim3, threadIdx & co., __syncthreads, warp shuffles — and the
// launcher that tests/cuda_emu/transform_cu.cmake substitutes for the
// `kernel<<<grid, block, shared, stream>>>(args)` syntax. __shared__ arrays
// become function statics: blocks run one at a time, so that is one block's
// shared memory (never zeroed between blocks, as on a GPU).
#pragma once
#include <cmath>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

namespace cuda_emu {

// Where the CUDA thread running on this OS thread is.
struct ThreadCoords {
    uint3 thread;
    uint3 block;
    dim3 block_dim;
    dim3 grid_dim;
};
extern thread_local const ThreadCoords* t_coords;
inline const ThreadCoords& coords() { return *t_coords; }

void sync_block();
void sync_warp(unsigned mask);
// Ends the calling CUDA thread's kernel with a launch failure (sticky), as a
// GPU's trap would: for device functions the emulator checks (wmma).
void device_fault(const char* why);
// A barrier of the calling warp that every lane must reach (a lane that
// exited instead is a fault): the wmma operations' rule.
void warp_collective();
// Writes this lane's `bytes` (<= 16) and reads lane (lane ^ lane_mask)'s
// value of the same shuffle into `out`.
void shuffle_xor(unsigned mask, const void* value, void* out, size_t bytes, int lane_mask, int width);
void* dynamic_shared_memory();
template <class T>
T* dynamic_shared() {
    return static_cast<T*>(dynamic_shared_memory());
}

// Test hook: the kernel run `after` kernel runs from now faults (a sticky
// launch failure, as an illegal address on a GPU); negative: never.
void inject_kernel_fault(long after);

// Runs (or, on a capturing stream, records) grid x block threads of `body`.
cudaError_t launch_kernel(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, std::function<void()> body);

template <class... P>
struct Launcher {
    const char* name;  // the kernel expression, for reports
    void (*kernel)(P...);
    dim3 grid, block;
    size_t shared_bytes;
    cudaStream_t stream;
    // Arguments convert to the parameter types as in a call, and each CUDA
    // thread gets its own copies (a kernel may modify its parameters).
    template <class... A>
    void operator()(A&&... a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
        std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
        auto* k = kernel;
        (void)launch_kernel(name, reinterpret_cast<const void*>(k), grid, block, shared_bytes, stream,
                            [k, args]() { std::apply(k, args); });
    }
};

template <class... P>
Launcher<P...> launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes = 0,
                      cudaStream_t stream = nullptr) {
    return Launcher<P...>{name, kernel, grid, block, shared_bytes, stream};
}

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::coords().thread)
#define blockIdx (::cuda_emu::coords().block)
#define blockDim (::cuda_emu::coords().block_dim)
#define gridDim (::cuda_emu::coords().grid_dim)

inline void __syncthreads() { ::cuda_emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::cuda_emu::sync_warp(mask); }

template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "shuffled type");
    T out;
    ::cuda_emu::shuffle_xor(mask, &value, &out, sizeof(T), lane_mask, width);
    return out;
}

// Device intrinsics, IEEE round-to-nearest like their CUDA namesakes.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 4; ++k)
        c += static_cast<int>(static_cast<signed char>(a >> (8 * k))) * static_cast<int>(static_cast<signed char>(b >> (8 * k)));
    return c;
}
