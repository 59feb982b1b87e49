// KIVI quantization on the device, byte-identical to core/kivi.cpp: the work
// items of kivi_codes.cuh (checked on the host against core/kivi.cpp) run
// as two phases in one block. The barrier between them also makes phase 1's
// global writes (the f16 ranges) visible to the whole block.
#include "common.cuh"
#include "kivi_codes.cuh"

namespace ekv::cuda {
namespace {

constexpr int kThreads = 256;

// One block per key group.
__global__ void kivi_keys_kernel(kivi::KeyGroupJob job) {
    for (int64_t ch = threadIdx.x; ch < job.kv_width; ch += blockDim.x) job.channel_range(ch);
    __syncthreads();
    for (int64_t idx = threadIdx.x; idx < job.n_code_bytes(); idx += blockDim.x) job.code_byte_item(idx);
}

// One block per value row.
__global__ void kivi_values_kernel(kivi::ValueRowJob job, size_t src_row_bytes, size_t dst_row_bytes) {
    job.src += blockIdx.x * src_row_bytes;
    job.dst += blockIdx.x * dst_row_bytes;
    for (int64_t g = threadIdx.x; g < job.n_groups(); g += blockDim.x) job.group_range(g);
    __syncthreads();
    for (int64_t b = threadIdx.x; b < static_cast<int64_t>(job.code_bytes()); b += blockDim.x) job.code_byte_item(b);
}

}  // namespace

void kivi_quantize_keys(Stream s, const void* src, DType src_type, size_t src_row_bytes, int64_t kv_width,
                        int32_t head_dim, int32_t group, int32_t nbits, uint8_t* dst) {
    if (!kivi::shape_ok(kv_width, head_dim, group, nbits) || (src_type != DType::F16 && src_type != DType::F32))
        return;
    const kivi::KeyGroupJob job{static_cast<const uint8_t*>(src), src_type == DType::F16, src_row_bytes, kv_width,
                                head_dim, group, nbits, dst};
    kivi_keys_kernel<<<1, kThreads, 0, s>>>(job);
}

void kivi_quantize_values(Stream s, const void* src, DType src_type, size_t src_row_bytes, int64_t n,
                          int64_t kv_width, int32_t head_dim, int32_t group, int32_t nbits, uint8_t* dst,
                          size_t dst_row_bytes) {
    if (n <= 0 || !kivi::shape_ok(kv_width, head_dim, group, nbits) || kv_width % group != 0 ||
        (src_type != DType::F16 && src_type != DType::F32))
        return;
    const kivi::ValueRowJob job{static_cast<const uint8_t*>(src), src_type == DType::F16, kv_width, head_dim,
                                group, nbits, dst};
    kivi_values_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(job, src_row_bytes, dst_row_bytes);
}

}  // namespace ekv::cuda
