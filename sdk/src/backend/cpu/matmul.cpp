// matmul dispatch: validates arguments, picks the kernel set at run time,
// prepares the activations (8-bit blocks, or per-block sums) in one parallel
// region and runs the dot products in a second (the pool has no barrier
// inside a region).
#include "backend/cpu/matmul.h"

#include <atomic>
#include <cstring>
#include <new>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)  // older kernel headers (Linux and Android: same bit)
#endif
#endif

#include "backend/cpu/matmul_kernels.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {

namespace detail {

ActFormat act_format(DType wtype, ActivationPrecision precision) {
    const bool int8 = precision == ActivationPrecision::Int8;
    switch (wtype) {
        case DType::Q4_1: case DType::Q5_1:  // stored block offsets: need sum(x) per block
            return int8 ? ActFormat::Q8_1F : ActFormat::F32BlockSums;
        case DType::Q4_0: case DType::Q5_0: case DType::Q8_0:
            return int8 ? ActFormat::Q8_1F : ActFormat::F32;
        case DType::Q4_K: case DType::Q5_K:  // sub-block mins: need sum(x) per 32
            return int8 ? ActFormat::Q8_K : ActFormat::F32BlockSums;
        case DType::Q6_K:
            return int8 ? ActFormat::Q8_K : ActFormat::F32;
        default:
            return ActFormat::F32;
    }
}

namespace {

// The calling thread's panel buffer; freed when the thread exits.
struct PanelBuffer {
    float* data = nullptr;
    size_t floats = 0;
    ~PanelBuffer() { ::operator delete(data, std::align_val_t(64)); }
};

}  // namespace

float* thread_panel_buffer(size_t floats) {
    thread_local PanelBuffer buf;
    if (buf.floats < floats) {
        ::operator delete(buf.data, std::align_val_t(64));
        buf.data = static_cast<float*>(::operator new(floats * sizeof(float), std::align_val_t(64), std::nothrow));
        buf.floats = buf.data ? floats : 0;
    }
    return buf.data;
}

}  // namespace detail

namespace {

using detail::ActFormat;

// The kernels of one ISA for both precisions.
struct KernelSet {
    const char* name;
    const detail::F32ActKernels* f32act;
    const detail::Int8ActKernels* int8;
};

constexpr size_t kScratchAlign = 64;
// Below this many activation elements preparing them on the caller thread is
// cheaper than waking the pool for an extra parallel region.
constexpr int64_t kParallelPrepareMin = 16384;
// Likewise for the dot products (multiply-adds): tiny products run inline.
constexpr int64_t kParallelMatmulMin = 16384;
// Row chunks per thread in the dot-product region (dynamic balance).
constexpr int64_t kChunksPerThread = 8;
// At most this many weight bytes per chunk: on a large matrix (an output
// head of 100+ MB streamed from memory) the threads then finish within a
// chunk's time (~0.1 ms) of each other.
constexpr size_t kMaxChunkBytes = size_t(1) << 20;
// Rows a chunk holds a multiple of: whole row groups of the one-token GEMV
// (8, matmul_f32act_quant_avx2.cpp) for decode, whole GEMM panels otherwise
// (f32 activations: kPanelRows; int8: two 8-row groups of
// matmul_int8_rows8_avx2.cpp, and the K-quants' kRowBlock).
constexpr int64_t kDecodeRowUnit = 8;
constexpr int64_t kInt8GemmRowUnit = 16;

std::atomic<bool> g_force_scalar{false};

const KernelSet& scalar_set() {
    static const KernelSet set = {"scalar", &detail::scalar_f32act_kernels(), &detail::scalar_int8_kernels()};
    return set;
}

const KernelSet* detect_best_set() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        const detail::F32ActKernels* f = detail::avx2_f32act_kernels();
        const detail::Int8ActKernels* i = detail::avx2_int8_kernels();
        if (f && i) {
            static const KernelSet set = {"avx2", f, i};
            return &set;
        }
    }
#elif defined(__aarch64__)
    // Advanced SIMD is baseline on aarch64; SDOT for the int8 path where the
    // kernel reports it (Linux/Android; elsewhere the widening-multiply set).
    bool dotprod = false;
#if defined(__linux__)
    dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
    const detail::Int8ActKernels* sdot = dotprod ? detail::neon_dotprod_int8_kernels() : nullptr;
    if (sdot) {
        static const KernelSet set = {"neon+dotprod", detail::neon_f32act_kernels(), sdot};
        return &set;
    }
    static const KernelSet set = {"neon", detail::neon_f32act_kernels(), detail::neon_int8_kernels()};
    return &set;
#endif
    return &scalar_set();
}

const KernelSet& active_set() {
    static const KernelSet* best = detect_best_set();
    return g_force_scalar.load(std::memory_order_relaxed) ? scalar_set() : *best;
}

// Per-block data the activations are prepared into (F32: none).
struct ActLayout {
    int64_t block_elems;
    size_t block_bytes;
};

ActLayout act_layout(ActFormat f) {
    switch (f) {
        case ActFormat::F32BlockSums: return {kQK, sizeof(float)};
        case ActFormat::Q8_1F: return {kQK, sizeof(BlockQ8_1F)};
        case ActFormat::Q8_K: return {kQK_K, sizeof(BlockQ8_K)};
        default: return {1, 0};
    }
}

detail::PrepareKernel prepare_kernel(const KernelSet& ks, ActFormat f) {
    switch (f) {
        case ActFormat::F32BlockSums: return ks.f32act->block_sums;
        case ActFormat::Q8_1F: return ks.int8->quantize_q8_1f;
        case ActFormat::Q8_K: return ks.int8->quantize_q8_k;
        default: return nullptr;
    }
}

bool valid_shape(DType wtype, int64_t k_dim) {
    return matmul_supported(wtype) && k_dim > 0 && k_dim % dtype_traits(wtype).block_size == 0;
}

void zero_output(float* y, int64_t rows, int ntok) {
    if (y && rows > 0 && ntok > 0) std::memset(y, 0, static_cast<size_t>(rows) * ntok * sizeof(float));
}

// Prepares every token's activations into `dst` (all tokens as one long row:
// blocks never straddle tokens), on the pool when there is enough work.
void prepare_activations(detail::PrepareKernel prepare, const ActLayout& l, const float* x, int64_t k_dim, int ntok,
                         uint8_t* dst, ThreadPool& pool) {
    const int64_t total_blocks = static_cast<int64_t>(ntok) * (k_dim / l.block_elems);
    if (pool.size() == 1 || total_blocks * l.block_elems < kParallelPrepareMin) {
        prepare(x, dst, total_blocks * l.block_elems);
        return;
    }
    pool.parallel([&](int i, int n) {
        const int64_t chunk = (total_blocks + n - 1) / n;
        const int64_t b0 = chunk * i;
        const int64_t b1 = b0 + chunk < total_blocks ? b0 + chunk : total_blocks;
        if (b0 < b1) {
            prepare(x + b0 * l.block_elems, dst + static_cast<size_t>(b0) * l.block_bytes, (b1 - b0) * l.block_elems);
        }
    });
}

}  // namespace

bool matmul_supported(DType wtype) {
    switch (wtype) {
        case DType::F32: case DType::F16: case DType::BF16:
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

size_t matmul_scratch_bytes(DType wtype, int64_t k_dim, int ntok, ActivationPrecision precision) {
    if (!valid_shape(wtype, k_dim) || ntok <= 0) return 0;
    const ActFormat f = detail::act_format(wtype, precision);
    if (f == ActFormat::F32) return 0;
    const ActLayout l = act_layout(f);
    return static_cast<size_t>(k_dim / l.block_elems) * l.block_bytes * static_cast<size_t>(ntok) + kScratchAlign;
}

void matmul(DType wtype, const void* w, int64_t rows, int64_t k_dim, const float* x, int ntok, float* y,
            void* scratch, ThreadPool& pool, ActivationPrecision precision) {
    if (rows <= 0 || ntok <= 0 || !y) return;
    const ActFormat fmt = detail::act_format(wtype, precision);
    if (!valid_shape(wtype, k_dim) || !w || !x || (fmt != ActFormat::F32 && !scratch)) {
        zero_output(y, rows, ntok);
        return;
    }
    const KernelSet& ks = active_set();
    const bool int8 = fmt == ActFormat::Q8_1F || fmt == ActFormat::Q8_K;
    detail::RowsKernel kernel = int8 ? ks.int8->rows(wtype) : ks.f32act->rows(wtype);
    if (!kernel) {  // a SIMD set without this format: the scalar kernel (same prepared activations)
        const KernelSet& sc = scalar_set();
        kernel = int8 ? sc.int8->rows(wtype) : sc.f32act->rows(wtype);
    }
    if (!kernel) {
        zero_output(y, rows, ntok);
        return;
    }

    detail::MatmulJob job;
    job.w = static_cast<const uint8_t*>(w);
    job.w_row_bytes = dtype_row_bytes(wtype, k_dim);
    job.k_dim = k_dim;
    job.act = reinterpret_cast<const uint8_t*>(x);
    job.act_row_bytes = static_cast<size_t>(k_dim) * sizeof(float);
    job.block_sums = nullptr;
    job.ntok = ntok;
    job.rows = rows;
    job.y = y;
    static std::atomic<uint64_t> calls{0};
    job.call_id = calls.fetch_add(1, std::memory_order_relaxed) + 1;

    if (fmt != ActFormat::F32) {
        const ActLayout l = act_layout(fmt);
        const uintptr_t p = reinterpret_cast<uintptr_t>(scratch);
        uint8_t* prepared = static_cast<uint8_t*>(scratch) + ((kScratchAlign - p % kScratchAlign) % kScratchAlign);
        prepare_activations(prepare_kernel(ks, fmt), l, x, k_dim, ntok, prepared, pool);
        if (int8) {
            job.act = prepared;
            job.act_row_bytes = static_cast<size_t>(k_dim / l.block_elems) * l.block_bytes;
        } else {
            job.block_sums = reinterpret_cast<const float*>(prepared);
        }
    }

    if (pool.size() == 1 || rows * k_dim * ntok < kParallelMatmulMin) {
        kernel(job, 0, rows);
        return;
    }
    // Rows are claimed in chunks (a few per thread, of whole row groups) so a
    // thread that was descheduled or started late does not hold up the rest.
    const int64_t target = static_cast<int64_t>(pool.size()) * kChunksPerThread;
    int64_t chunk = (rows + target - 1) / target;
    const int64_t max_rows = static_cast<int64_t>(kMaxChunkBytes / job.w_row_bytes);
    if (chunk > max_rows) chunk = max_rows > 0 ? max_rows : 1;
    const int64_t unit = ntok < detail::kTokenTile ? kDecodeRowUnit : int8 ? kInt8GemmRowUnit : detail::kPanelRows;
    chunk = (chunk + unit - 1) / unit * unit;
    std::atomic<int64_t> next{0};
    pool.parallel([&](int, int) {
        for (;;) {
            const int64_t r0 = next.fetch_add(chunk, std::memory_order_relaxed);
            if (r0 >= rows) break;
            kernel(job, r0, r0 + chunk < rows ? r0 + chunk : rows);
        }
    });
}

const char* matmul_isa() { return active_set().name; }

void matmul_force_scalar(bool force) { g_force_scalar.store(force, std::memory_order_relaxed); }

}  // namespace cpu
}  // namespace ekv
