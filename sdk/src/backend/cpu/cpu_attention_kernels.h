// Internal contract between the attention driver (cpu_attention.cpp) and its
// kernel sets (cpu_attention_scalar.cpp, cpu_attention_avx2.cpp,
// cpu_attention_neon.cpp).
//
// The driver turns a call into pieces: one pack of query heads that share a
// KV head (a GQA group, or a slice of a large one), prepared queries (scaled
// by AttentionParams::scale, re-rotated for pinned segments), and a run of
// visible tokens [i0, i1) of one segment. A kernel folds the piece into an
// online-softmax state: running max and sum per query head and the
// unnormalized weighted sum of values. Each key/value row is read (and
// dequantized, for KIVI) once per pack, not once per query head.
//
// Files compiled with -mavx2 follow matmul_kernels.h's rule: everything they
// define has internal linkage and they call no shared inline function.
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace ekv {
namespace cpu {
namespace detail {

constexpr int kAttnBlock = 32;          // keys per online-softmax step
constexpr int kAttnMaxPack = 8;         // query heads per pack
constexpr int kAttnMaxHeadDim = 512;
constexpr int kAttnMaxPackFloats = 2048;  // pack * head_dim (state and query buffers live on the stack)

// Online-softmax state of a pack: for query j, max[j] and sum[j] of the
// scores seen so far and acc[j * head_dim + c] = sum_k exp(s_k - max) v_k[c].
// An empty state has max = -inf, sum = 0, acc = 0.
struct AttnState {
    float max[kAttnMaxPack];
    float sum[kAttnMaxPack];
    alignas(32) float acc[kAttnMaxPackFloats];
};

struct AttnPiece {
    const KvSegment* seg;
    int kv_head;
    int head_dim;
    int64_t kv_width;  // n_kv_heads * head_dim: the channels of a cache row
    int nq;            // query heads in the pack, 1..kAttnMaxPack
    const float* q;    // nq x head_dim prepared queries (contiguous)
    int32_t i0, i1;    // segment token indices, 0 <= i0 < i1 <= seg->n_tokens
    float softcap;     // > 0: scores become softcap * tanh(score / softcap)
};

using PieceKernel = void (*)(const AttnPiece& piece, AttnState& st);

struct AttnKernels {
    const char* name;
    // The kernel for a segment, head_dim and pack size; nullptr when this set
    // does not handle the shape (the driver then uses the scalar set).
    PieceKernel (*select)(const KvSegment& seg, int head_dim, int64_t kv_width, int nq);
};

const AttnKernels& scalar_attention_kernels();
// nullptr when this build has no AVX2 kernels (non-x86, or flags missing).
const AttnKernels* avx2_attention_kernels();
#if defined(__aarch64__)
// NEON kernels: compiled only for aarch64 (Advanced SIMD is baseline there).
const AttnKernels* neon_attention_kernels();
#endif

}  // namespace detail
}  // namespace cpu
}  // namespace ekv
