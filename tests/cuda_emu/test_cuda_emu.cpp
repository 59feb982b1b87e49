// Tests of the CUDA emulator itself: the checks the CUDA tests rely on when
// they run on it (tests/cuda, preset cuda-emu) do fire. Kernels here are
// written as the emulator sees them after tests/cuda_emu/transform_cu.cmake
// (a launch is ::cuda_emu::launch(...)(args)). Faults are sticky for the
// process, so each one runs in a death-test child (which leaves by _exit:
// LSan would count the child's abandoned allocations).
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mma.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

__global__ void record_order(int* order, int* count) {
    order[(*count)++] = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
}

// Block sum through shared memory and a barrier, then a warp-shuffle sum.
__global__ void sums(const float* x, float* block_total, float* warp_total) {
    __shared__ float part[64];
    const unsigned t = threadIdx.x;
    part[t] = x[blockIdx.x * blockDim.x + t];
    __syncthreads();
    if (t == 0) {
        float s = 0;
        for (unsigned i = 0; i < blockDim.x; ++i) s += part[i];
        block_total[blockIdx.x] = s;
    }
    float v = part[t];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (t % 32 == 0) warp_total[blockIdx.x * 2 + t / 32] = v;
}

__global__ void shuffle_after_lane0_exits(float* out) {
    if (threadIdx.x == 0) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

__global__ void divergent_barrier(float* out) {
    float v = 1.0f;
    if (threadIdx.x < 16)
        __syncthreads();
    else
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

__global__ void fill(float* out, float value, int n) {
    const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) out[i] = value;
}

__global__ void add_one(float* out, int n) {
    const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) out[i] += 1.0f;
}

// One warp: d = a * b + c, then the product added once more into d in place
// (a load, multiply, store back, as attention's accumulators do).
__global__ void wmma_tiles(const __half* a, const __half* b_cols, const float* c, float* d) {
    namespace wmma = nvcuda::wmma;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b_cols, 16);
    wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
    wmma::load_matrix_sync(acc, d, 16, wmma::mem_row_major);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// A tile 16 bytes off the 32-byte alignment a GPU needs, or a load half the
// warp never reaches.
__global__ void wmma_misaligned(const __half* a) {
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> fa;
    nvcuda::wmma::load_matrix_sync(fa, a + 8, 16);
}
__global__ void wmma_divergent(const __half* a) {
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> fa;
    if (threadIdx.x < 16) nvcuda::wmma::load_matrix_sync(fa, a, 16);
}

// Small integers are exact halves: sign, biased exponent, top mantissa bits.
__half half_of(int v) {
    const float f = static_cast<float>(v);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const uint16_t h = static_cast<uint16_t>(((bits >> 16) & 0x8000u) |
                                             (v == 0 ? 0u : ((((bits >> 23) & 0xffu) - 112u) << 10) | ((bits >> 13) & 0x3ffu)));
    return __half{h};
}

float* device_floats(int n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, sizeof(float) * static_cast<size_t>(n)), cudaSuccess);
    return static_cast<float*>(p);
}

TEST(CudaEmulator, ThreadsAndBlocksRunInOrder) {
    int order[8] = {}, count = 0;
    ::cuda_emu::launch("record_order", record_order, 2, 4)(order, &count);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    ASSERT_EQ(count, 8);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(order[i], i);
}

// Death-test children: each ends the process with 0 when the emulator did
// what it should.
[[noreturn]] void reversed_child() {
    setenv("EKV_CUDA_EMU_REVERSE", "1", 1);  // read at the first launch
    int order[8] = {}, count = 0;
    ::cuda_emu::launch("record_order", record_order, 2, 4)(order, &count);
    bool reversed = count == 8;
    for (int i = 0; i < 8; ++i) reversed = reversed && order[i] == 7 - i;
    _exit(reversed ? 0 : 1);
}

[[noreturn]] void exited_lane_child() {
    float* p = device_floats(32);
    ::cuda_emu::launch("shuffle_after_lane0_exits", shuffle_after_lane0_exits, 1, 32)(p);
    const bool failed = cudaGetLastError() == cudaErrorLaunchFailure;
    void* q = nullptr;
    const bool sticky = cudaMalloc(&q, 4) == cudaErrorLaunchFailure;
    _exit(failed && sticky ? 0 : 1);
}

[[noreturn]] void divergent_barrier_child() {
    float* p = device_floats(32);
    ::cuda_emu::launch("divergent_barrier", divergent_barrier, 1, 32)(p);
    _exit(cudaGetLastError() == cudaErrorLaunchFailure ? 0 : 1);
}

[[noreturn]] void leaking_child() {
    void* p = nullptr;
    (void)cudaMalloc(&p, 16);
    std::exit(0);  // the exit-time check turns the forgotten block into a failure
}

TEST(CudaEmulatorDeathTest, MemoryNeverFreedFailsTheProcess) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(leaking_child(), ::testing::ExitedWithCode(1), "1 device and 0 pinned blocks .16 bytes.");
}

TEST(CudaEmulatorDeathTest, ReverseOrderRunsLastToFirst) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(reversed_child(), ::testing::ExitedWithCode(0), "");
}

TEST(CudaEmulator, BarriersAndShufflesExchangeValues) {
    std::vector<float> x(128);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
    float* dx = device_floats(128);
    float* block_total = device_floats(2);
    float* warp_total = device_floats(4);
    ASSERT_EQ(cudaMemcpyAsync(dx, x.data(), sizeof(float) * 128, cudaMemcpyHostToDevice), cudaSuccess);
    ::cuda_emu::launch("sums", sums, 2, 64)(dx, block_total, warp_total);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    EXPECT_EQ(block_total[0], 2016.0f);  // 0 + ... + 63
    EXPECT_EQ(block_total[1], 6112.0f);  // 64 + ... + 127
    EXPECT_EQ(warp_total[0], 496.0f);    // 0 + ... + 31
    EXPECT_EQ(warp_total[3], 3568.0f);   // 96 + ... + 127
    for (float* p : {dx, block_total, warp_total}) EXPECT_EQ(cudaFree(p), cudaSuccess);
}

TEST(CudaEmulator, WmmaMultipliesWholeTilesOncePerWarp) {
    std::vector<__half> a(256), b_cols(256);
    std::vector<float> c(256), want(256);
    for (int i = 0; i < 256; ++i) {
        a[i] = half_of(i % 7 - 3);
        b_cols[i] = half_of(i % 5 - 2);
        c[i] = static_cast<float>(i % 11);
    }
    for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col) {
            float ab = 0;
            for (int k = 0; k < 16; ++k)
                ab += static_cast<float>((r * 16 + k) % 7 - 3) * static_cast<float>((col * 16 + k) % 5 - 2);
            want[r * 16 + col] = c[r * 16 + col] + 2 * ab;
        }
    void *da = nullptr, *db = nullptr;
    ASSERT_EQ(cudaMalloc(&da, 512), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&db, 512), cudaSuccess);
    float* dc = device_floats(256);
    float* dd = device_floats(256);
    ASSERT_EQ(cudaMemcpyAsync(da, a.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(db, b_cols.data(), 512, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(dc, c.data(), 1024, cudaMemcpyHostToDevice), cudaSuccess);
    ::cuda_emu::launch("wmma_tiles", wmma_tiles, 1, 32)(static_cast<const __half*>(da),
                                                         static_cast<const __half*>(db), dc, dd);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    for (int i = 0; i < 256; ++i) EXPECT_EQ(dd[i], want[i]) << i;
    for (void* p : {da, db, static_cast<void*>(dc), static_cast<void*>(dd)}) EXPECT_EQ(cudaFree(p), cudaSuccess);
}

[[noreturn]] void wmma_child(bool misaligned) {
    void* p = nullptr;
    (void)cudaMalloc(&p, 1024);
    const __half* a = static_cast<const __half*>(p);
    if (misaligned)
        ::cuda_emu::launch("wmma_misaligned", wmma_misaligned, 1, 32)(a);
    else
        ::cuda_emu::launch("wmma_divergent", wmma_divergent, 1, 32)(a);
    _exit(cudaGetLastError() == cudaErrorLaunchFailure ? 0 : 1);
}

TEST(CudaEmulatorDeathTest, AMisalignedWmmaTileIsALaunchFailure) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(wmma_child(true), ::testing::ExitedWithCode(0), "not 32-byte aligned");
}

TEST(CudaEmulatorDeathTest, AWmmaLoadHalfTheWarpSkipsIsALaunchFailure) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(wmma_child(false), ::testing::ExitedWithCode(0), "lane of the warp exited");
}

TEST(CudaEmulator, NeverWrittenMemoryReadsAsNaN) {
    float* p = device_floats(4);
    EXPECT_TRUE(std::isnan(p[0]) && std::isnan(p[3]));
    EXPECT_EQ(cudaFree(p), cudaSuccess);
}

TEST(CudaEmulator, RefusedLaunchesAndAllocationsAreNotSticky) {
    float* p = device_floats(1);
    ::cuda_emu::launch("fill", fill, 1, 2048)(p, 1.0f, 1);  // more than 1024 threads
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    ::cuda_emu::launch("fill", fill, 1, 32, 64 << 10)(p, 1.0f, 1);  // 64 KiB of dynamic shared memory
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    void* huge = nullptr;
    EXPECT_EQ(cudaMalloc(&huge, size_t(1) << 50), cudaErrorMemoryAllocation);
    EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    ::cuda_emu::launch("fill", fill, 1, 32)(p, 5.0f, 1);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    EXPECT_EQ(p[0], 5.0f);
    EXPECT_EQ(cudaFree(p), cudaSuccess);
}

TEST(CudaEmulatorDeathTest, AShuffleWithAnExitedLaneIsAStickyLaunchFailure) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(exited_lane_child(), ::testing::ExitedWithCode(0), "not in the same shuffle");
}

TEST(CudaEmulatorDeathTest, ABarrierHalfAWarpNeverReachesIsALaunchFailure) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(divergent_barrier_child(), ::testing::ExitedWithCode(0), "can never complete");
}

TEST(CudaEmulator, CaptureRecordsAndGraphsReplay) {
    cudaStream_t s = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    float* p = device_floats(8);
    ::cuda_emu::launch("fill", fill, 1, 32, 0, s)(p, 0.0f, 8);
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    ::cuda_emu::launch("add_one", add_one, 1, 32, 0, s)(p, 8);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    EXPECT_EQ(p[0], 0.0f) << "a captured launch must not run";
    EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
    cudaGraph_t g = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated) << "a sync invalidates the capture";
    EXPECT_EQ(g, nullptr);
    (void)cudaGetLastError();

    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    ::cuda_emu::launch("add_one", add_one, 1, 32, 0, s)(p, 8);
    ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    EXPECT_EQ(p[7], 2.0f);

    // Same node kinds and kernels: updated; another kernel: refused.
    cudaGraph_t g2 = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    ::cuda_emu::launch("add_one", add_one, 1, 32, 0, s)(p, 4);
    ASSERT_EQ(cudaStreamEndCapture(s, &g2), cudaSuccess);
    cudaGraphExecUpdateResultInfo info;
    EXPECT_EQ(cudaGraphExecUpdate(exec, g2, &info), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    EXPECT_EQ(p[3], 3.0f);
    EXPECT_EQ(p[7], 2.0f);
    cudaGraph_t g3 = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    ::cuda_emu::launch("fill", fill, 1, 32, 0, s)(p, 9.0f, 8);
    ASSERT_EQ(cudaStreamEndCapture(s, &g3), cudaSuccess);
    EXPECT_EQ(cudaGraphExecUpdate(exec, g3, &info), cudaErrorGraphExecUpdateFailure);
    EXPECT_EQ(info.result, cudaGraphExecUpdateErrorFunctionChanged);
    (void)cudaGetLastError();
    for (cudaGraph_t x : {g, g2, g3}) EXPECT_EQ(cudaGraphDestroy(x), cudaSuccess);
    EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
    EXPECT_EQ(cudaFree(p), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

TEST(CudaEmulator, CapturesFollowCudasForkAndJoinRules) {
    cudaStream_t s = nullptr, side = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), cudaSuccess);
    cudaEvent_t outside = nullptr, fork = nullptr, join = nullptr;
    for (cudaEvent_t* e : {&outside, &fork, &join}) ASSERT_EQ(cudaEventCreateWithFlags(e, cudaEventDisableTiming), cudaSuccess);
    float* p = device_floats(8);
    cudaGraph_t g = nullptr;

    // Waiting on work outside the capture: isolation, and the capture is lost.
    ASSERT_EQ(cudaEventRecord(outside, side), cudaSuccess);
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    EXPECT_EQ(cudaStreamWaitEvent(s, outside, 0), cudaErrorStreamCaptureIsolation);
    EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
    (void)cudaGetLastError();

    // A fork that never joins back.
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(fork, s), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(p, 0, sizeof(float) * 8, side), cudaSuccess);
    EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureUnjoined);
    (void)cudaGetLastError();

    // Joined: the side stream's copy is part of the graph.
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(fork, s), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(p, 0, sizeof(float) * 8, side), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(join, side), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
    ::cuda_emu::launch("add_one", add_one, 1, 32, 0, s)(p, 8);
    ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
    p[5] = 41.0f;
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    EXPECT_EQ(p[5], 1.0f);
    EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
    EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
    for (cudaEvent_t e : {outside, fork, join}) EXPECT_EQ(cudaEventDestroy(e), cudaSuccess);
    EXPECT_EQ(cudaFree(p), cudaSuccess);
    for (cudaStream_t x : {s, side}) EXPECT_EQ(cudaStreamDestroy(x), cudaSuccess);
}

}  // namespace
