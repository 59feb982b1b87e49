// NEON int8-activation matmul kernels for CPUs without the dotprod extension
// (ARMv8.0-A, e.g. Cortex-A53/A72 phones): integer dot products by widening
// multiplies (SMULL, exact in int16) and pairwise accumulation into int32.
// The kernels themselves are in matmul_int8_neon_body.h, shared with the
// SDOT build (matmul_int8_dotprod.cpp); both give the same bits. aarch64
// only, compiled with -ffp-contract=off (matmul_neon_util.h).
#include "backend/cpu/matmul_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include "backend/cpu/matmul_neon_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

static inline int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

#include "backend/cpu/matmul_int8_neon_body.h"

}  // namespace

const Int8ActKernels* neon_int8_kernels() { return &kNeonInt8Kernels; }

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
