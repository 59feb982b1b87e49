// Internal contract between the matmul dispatcher (matmul.cpp) and its
// kernel sets (scalar, AVX2, NEON). Not part of the SDK's internal API beyond
// backend/cpu.
//
// Two families of kernels:
//  - f32-activation kernels (matmul_f32act_*): every weight type. Quantized
//    weights are decoded per block as w_i = d * q_i + m (q centred on zero
//    for the 32-element formats; m = 0 but for Q4_1, Q5_1 and the sub-block
//    mins of Q4_K/Q5_K); the SIMD kernels compute
//      acc += (d * q_i) * x_i           corr += m * sum_i(x_i)
//    in f32 (d * q_i exact but for Q6_K), with sum_i(x_i) precomputed once
//    per call and block of 32 (ActFormat::F32BlockSums); the scalar kernels
//    accumulate the dequantize_row values times x in double.
//  - int8-activation kernels (matmul_int8_*): quantized weights against
//    activations quantized to 8-bit blocks with the same rounding in every
//    kernel set (the SIMD quantizers produce the scalar quantizers' bytes);
//    integer dot products per block and per block
//      acc += (d_w * d_x) * isum      corr += o_w * s_x
//    so sets differ only in float summation order.
//
// Reproducibility: in every kernel the arithmetic of one (row, token) output
// is a fixed sequence of operations that does not depend on the batch size,
// the token tile the token falls in or the row range (tests check this
// bitwise). SIMD kernels decode a weight block once per token tile (or, for
// the GEMMs of the quantized formats in f32 mode and of the 32-element
// formats in int8 mode, once per row panel) and then run, for each token,
// exactly the operations a lone token gets.
//
// Files compiled with -mavx2 (or -march=armv8.2-a+dotprod) define everything
// they use with internal linkage and call no shared inline function (std::
// templates, dtype_row_bytes, f16_to_f32, ...): otherwise the linker could
// keep their AVX2-compiled copy of such a function for the whole program,
// which would then crash on CPUs without AVX2. (`nm -C matmul_*avx2.o` should
// list no weak symbols.)
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/cpu/matmul.h"
#include "core/dtype.h"

namespace ekv {
namespace cpu {
namespace detail {

// How the activations are fed to a weight type's kernel.
enum class ActFormat {
    F32,           // x as is
    F32BlockSums,  // x as is plus the sum of each 32-element block (Q4_1, Q5_1, Q4_K, Q5_K)
    Q8_1F,         // 8-bit blocks of 32 (int8 path, 32-element weight formats)
    Q8_K,          // 8-bit blocks of 256 (int8 path, K-quants)
};

// Activation format for a weight type and precision (F32 for the float types).
ActFormat act_format(DType wtype, ActivationPrecision precision);

// One matmul as the kernels see it.
struct MatmulJob {
    const uint8_t* w;      // row r starts at w + r * w_row_bytes
    size_t w_row_bytes;
    int64_t k_dim;
    const uint8_t* act;    // token t starts at act + t * act_row_bytes (f32 or 8-bit blocks)
    size_t act_row_bytes;
    const float* block_sums;  // F32BlockSums: token t's at block_sums + t * (k_dim / 32); else null
    int ntok;
    int64_t rows;
    float* y;              // y[t * rows + r]
    // Distinct for every matmul() call (0: unknown). A call's row chunks
    // reach a thread several times; per-call work on the activations (the
    // f32 GEMM's regrouping) is then done once per thread, not per chunk.
    uint64_t call_id = 0;
};

// Computes y for rows [row_begin, row_end) and every token.
using RowsKernel = void (*)(const MatmulJob& job, int64_t row_begin, int64_t row_end);
// Turns n floats (a multiple of the format's block size) into the format's
// per-block data: 8-bit blocks, or one float sum per 32 elements.
using PrepareKernel = void (*)(const float* x, void* dst, int64_t n);

// f32-activation kernels: every supported weight type.
struct F32ActKernels {
    PrepareKernel block_sums;         // n floats -> n / 32 sums
    RowsKernel (*rows)(DType wtype);  // nullptr for unsupported types
};

// int8-activation kernels: the quantized weight types only.
struct Int8ActKernels {
    PrepareKernel quantize_q8_1f;
    PrepareKernel quantize_q8_k;
    RowsKernel (*rows)(DType wtype);  // nullptr for float and unsupported types
};

const F32ActKernels& scalar_f32act_kernels();
const Int8ActKernels& scalar_int8_kernels();
// nullptr when this build has no AVX2 kernels (non-x86, or flags missing).
const F32ActKernels* avx2_f32act_kernels();
const Int8ActKernels* avx2_int8_kernels();
// AVX2 f32-activation kernels of the quantized formats
// (matmul_f32act_quant_avx2.cpp), int8 kernels of the 32-element formats
// (matmul_int8_rows8_avx2.cpp), of Q4_K/Q5_K (matmul_int8_q45k_rows8_avx2.cpp),
// of Q6_K (matmul_int8_q6k_rows8_avx2.cpp) and the K-quant dispatch
// (matmul_int8_kquants_avx2.cpp); nullptr where unavailable.
RowsKernel avx2_f32act_quant_rows_kernel(DType wtype);
RowsKernel avx2_int8_blocks32_rows_kernel(DType wtype);
RowsKernel avx2_int8_q45k_rows_kernel(DType wtype);
RowsKernel avx2_int8_q6k_rows_kernel(DType wtype);
RowsKernel avx2_int8_kquant_rows_kernel(DType wtype);

// A 64-byte aligned buffer of at least `floats` floats owned by the calling
// thread (kept and reused: allocates only when a larger one is asked for);
// nullptr when it cannot be allocated. For the GEMM kernels' dequantized
// weight panels. Defined in matmul.cpp (not compiled for AVX2).
float* thread_panel_buffer(size_t floats);
#if defined(__aarch64__)
// NEON kernels (matmul_*neon*.cpp, matmul_int8_dotprod.cpp): compiled only
// for aarch64, where Advanced SIMD is baseline. Every weight type.
const F32ActKernels* neon_f32act_kernels();
RowsKernel neon_f32act_kquant_rows_kernel(DType wtype);
// Integer dot products by widening multiplies: any ARMv8-A CPU.
const Int8ActKernels* neon_int8_kernels();
// The same kernels with SDOT (ARMv8.2 dotprod; the dispatcher checks
// HWCAP_ASIMDDP); same bits as neon_int8_kernels(). nullptr when built
// without the flag.
const Int8ActKernels* neon_dotprod_int8_kernels();
#endif

// Tiling shared by the SIMD kernels: each weight block is decoded once and
// applied to up to kTokenTile tokens, and kRowBlock rows are swept per token
// tile so a row block's weights and a tile's activations both stay in L1
// during prefill.
constexpr int kTokenTile = 4;
constexpr int64_t kRowBlock = 16;
// Rows the f32-activation GEMM dequantizes per panel; the dispatcher hands
// out rows in multiples of it.
constexpr int64_t kPanelRows = 15;

}  // namespace detail
}  // namespace cpu
}  // namespace ekv
