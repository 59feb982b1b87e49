// What the CUDA emulator's two halves share (tests only): the runtime
// (cuda_emu_runtime.cpp: memory, streams, capture, graphs, errors) and the
// kernel executor (cuda_emu_fibers.cpp: blocks of fibers).
#pragma once
#include <cstddef>
#include <functional>
#include <mutex>

#include "cuda_runtime.h"

namespace cuda_emu {

constexpr int kMaxBlockThreads = 1024;
constexpr size_t kMaxDynamicShared = 48 << 10;  // without cudaFuncSetAttribute

// Every API call and kernel runs under this one lock.
std::recursive_mutex& api_mutex();
using Lock = std::lock_guard<std::recursive_mutex>;

cudaError_t fail(cudaError_t e);  // a non-sticky error for cudaGetLastError
cudaError_t launch_failure();     // a kernel fault: sticky
void report(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Work on a stream: run at once, or recorded into the capturing graph.
enum class NodeKind { Kernel, Memcpy, Memset };
struct Node {
    NodeKind kind;
    const void* kernel = nullptr;  // Kernel
    std::function<bool()> run;     // false: a launch failure
};
cudaError_t submit(cudaStream_t stream, Node node);

// Runs every block of a kernel; false (after a report) on a fault.
bool run_grid(const char* name, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body);

}  // namespace cuda_emu
