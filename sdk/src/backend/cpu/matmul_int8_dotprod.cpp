// NEON int8-activation matmul kernels with the ARMv8.2 dotprod extension
// (SDOT: four int8 products summed into each int32 lane per instruction),
// picked at run time when the CPU reports HWCAP_ASIMDDP. Compiled with
// -march=armv8.2-a+dotprod, so like the AVX2 files it defines everything
// with internal linkage and calls no shared inline function (see
// matmul_kernels.h; `nm -C matmul_int8_dotprod.cpp.o` lists no weak
// symbols). The kernels are matmul_int8_neon_body.h's, the same as the
// plain NEON set's, and give the same bits.
#include "backend/cpu/matmul_kernels.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>

#include "backend/cpu/matmul_neon_util.h"
#include "core/quant.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

static inline int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }

#include "backend/cpu/matmul_int8_neon_body.h"

}  // namespace

const Int8ActKernels* neon_dotprod_int8_kernels() { return &kNeonInt8Kernels; }

}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#else  // built without the dotprod flag: the plain NEON set serves

namespace ekv {
namespace cpu {
namespace detail {
const Int8ActKernels* neon_dotprod_int8_kernels() { return nullptr; }
}  // namespace detail
}  // namespace cpu
}  // namespace ekv

#endif
