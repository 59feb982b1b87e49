// Validation of an attention call's arguments that every backend shares:
// head counts and sizes, the query's shape, the segment count and each
// segment's formats and sizes, the RoPE parameters pinned segments need.
// Backends add their own memory checks (host data, device buffers).
#pragma once
#include "backend/backend.h"
#include "core/status.h"

namespace ekv {

// max_head_dim: the backend's kernels' limit. host_data: q and the segments
// must be host-addressable (the CPU backend).
Status check_attention_args(const Tensor& q, const KvView& kv, const AttentionParams& p, int max_head_dim,
                            bool host_data);

}  // namespace ekv
