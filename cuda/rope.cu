// RoPE in place from a host-built cos/sin table (per step, in the parameter
// arena): the angles are the CPU backend's (double precision, attn_factor
// applied), and the rotation uses rounded, unfused products like its scalar
// code: x0' = x0*cos - x1*sin, x1' = x0*sin + x1*cos.
#include "common.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 256;

// One thread per (row, head, pair).
__global__ void rope_kernel(float* x, int64_t rows, int64_t stride, int32_t n_heads, int32_t head_dim,
                            int32_t half, bool neox, const float* cos_sin) {
    const int64_t total = rows * n_heads * half;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int32_t i = static_cast<int32_t>(idx % half);
        const int64_t th = idx / half;
        const int32_t h = static_cast<int32_t>(th % n_heads);
        const int64_t t = th / n_heads;
        float* v = x + t * stride + static_cast<int64_t>(h) * head_dim;
        const int32_t a_idx = neox ? i : 2 * i, b_idx = neox ? i + half : 2 * i + 1;
        const float c = cos_sin[2 * (t * half + i)], sn = cos_sin[2 * (t * half + i) + 1];
        const float a = v[a_idx], b = v[b_idx];
        v[a_idx] = blocks::sub_rn(blocks::mul_rn(a, c), blocks::mul_rn(b, sn));
        v[b_idx] = blocks::add_rn(blocks::mul_rn(a, sn), blocks::mul_rn(b, c));
    }
}

}  // namespace

void rope(Stream s, Rows x, int32_t n_heads, int32_t head_dim, int32_t rope_dim, bool neox, const float* cos_sin) {
    const int32_t half = rope_dim / 2;
    if (x.rows <= 0 || n_heads <= 0 || half <= 0) return;
    const int64_t total = x.rows * n_heads * half;
    rope_kernel<<<grid_for(total, kThreads), kThreads, 0, s>>>(x.data, x.rows, x.stride, n_heads, head_dim, half,
                                                                neox, cos_sin);
}

}  // namespace ekv::cuda
