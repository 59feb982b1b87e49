// Causal multi-head attention over a segmented KV view (F32 or F16 rows),
// with grouped-query heads and an online softmax, so no buffer grows with
// the context length.
#pragma once
#include "backend/backend.h"
#include "core/thread_pool.h"

namespace ekv::cpu {

void attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
               Tensor& out, ThreadPool& pool);

}  // namespace ekv::cpu
