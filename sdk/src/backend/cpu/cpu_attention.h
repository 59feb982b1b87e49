// Causal multi-head attention over a segmented KV view (core/backend.h):
// plain F16/F32 rows and KIVI-quantized segments (dequantized inside the
// kernel, never into a buffer), sliding windows and pinned sink segments,
// grouped-query heads processed together so each cached row is read once
// per GQA group, and an online softmax, so no buffer grows with the context.
//
// Threads: work is split over query tokens, and for a few queries (decode)
// over chunks of the keys (flash-decoding: partial softmax states merged at
// the end). Chunk boundaries depend only on a query's visible key count, and
// states are always merged in key order, so every output is bitwise the same
// whatever the thread count and however a prompt is split into calls.
// Kernels: AVX2/FMA/F16C when the CPU has them, NEON on aarch64, else
// portable scalar code.
#pragma once
#include "backend/backend.h"
#include "core/status.h"
#include "core/thread_pool.h"

namespace ekv::cpu {

// out row t = attention of q row t (position q_pos[t]) over kv. q and out are
// F32 [q.rows x n_heads * head_dim]. Allocates nothing per call once warm
// (decode keeps a thread-local merge buffer that only grows). Anything
// check_attention() rejects zero-fills out instead.
void attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p, Tensor& out,
               ThreadPool& pool);

// Validates the shapes and segments attention() accepts.
Status check_attention(const Tensor& q, const KvView& kv, const AttentionParams& p);

// Name of the kernel set in use ("avx2", "neon" or "scalar").
const char* attention_isa();

// Test hook: force the portable kernels (true) or return to the run-time
// choice (false). Not for concurrent use with attention().
void attention_force_scalar(bool force);

}  // namespace ekv::cpu
