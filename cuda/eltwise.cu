// Element-wise ops with the CPU backend's formulas (cpu_backend.cpp,
// cpu_audio_ops.cpp). Transcendentals are CUDA's full-precision expf / tanhf
// / erff (within 2 ulp of the host libm, so results may differ from the CPU
// in the last bits); products are left to the compiler.
#include "common.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 256;

template <Eltwise kOp>
__device__ __forceinline__ float apply(float a, float b, float scalar) {
    if constexpr (kOp == Eltwise::SiluMul) {
        return a / (1.0f + expf(-a)) * b;
    } else if constexpr (kOp == Eltwise::GeluMul) {
        const float k0 = 0.7978845608028654f;  // sqrt(2 / pi)
        return 0.5f * a * (1.0f + tanhf(k0 * (a + 0.044715f * a * a * a))) * b;
    } else if constexpr (kOp == Eltwise::Scale) {
        return a * scalar;
    } else if constexpr (kOp == Eltwise::Add || kOp == Eltwise::AddBias) {
        return a + b;
    } else {  // GeluErf
        return 0.5f * a * (1.0f + erff(a * 0.70710678118654752f));
    }
}

// b is read at row 0 for AddBias (one broadcast row) and not at all for the
// unary ops (Scale, GeluErf), whose b may be empty.
template <Eltwise kOp>
__global__ void eltwise_kernel(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float scalar,
                               float* out, int64_t out_stride, int64_t rows, int64_t cols) {
    constexpr bool kReadsB = kOp == Eltwise::SiluMul || kOp == Eltwise::GeluMul || kOp == Eltwise::Add ||
                             kOp == Eltwise::AddBias;
    const int64_t total = rows * cols;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = idx / cols, c = idx % cols;
        float bv = 0.0f;
        if constexpr (kReadsB) bv = b[(kOp == Eltwise::AddBias ? 0 : r * b_stride) + c];
        out[r * out_stride + c] = apply<kOp>(a[r * a_stride + c], bv, scalar);
    }
}

template <Eltwise kOp>
void launch(Stream s, ConstRows a, ConstRows b, float scalar, Rows out) {
    const int64_t total = a.rows * a.cols;
    eltwise_kernel<kOp><<<grid_for(total, kThreads), kThreads, 0, s>>>(a.data, a.stride, b.data, b.stride, scalar,
                                                                        out.data, out.stride, a.rows, a.cols);
}

}  // namespace

void eltwise(Stream s, Eltwise op, ConstRows a, ConstRows b, float scalar, Rows out) {
    if (a.rows <= 0 || a.cols <= 0) return;
    switch (op) {
        case Eltwise::SiluMul: launch<Eltwise::SiluMul>(s, a, b, scalar, out); break;
        case Eltwise::GeluMul: launch<Eltwise::GeluMul>(s, a, b, scalar, out); break;
        case Eltwise::Scale: launch<Eltwise::Scale>(s, a, b, scalar, out); break;
        case Eltwise::Add: launch<Eltwise::Add>(s, a, b, scalar, out); break;
        case Eltwise::AddBias: launch<Eltwise::AddBias>(s, a, b, scalar, out); break;
        case Eltwise::GeluErf: launch<Eltwise::GeluErf>(s, a, b, scalar, out); break;
    }
}

}  // namespace ekv::cuda
