// Checked forward pass shared by ekv_forward and the generator: validates
// tokens, positions and capacity before anything changes, applies HF's
// cache_position semantics, then runs the architecture.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cache/cache.h"
#include "model/model.h"

namespace ekv {

Status check_tokens(const Model& model, const int32_t* tokens, int32_t n);

// cache_position may be null (continue at seq_len). logits_len is the number
// of floats the caller's buffer holds. A stop request (`cancel`) returns
// EKV_ERR_CANCELLED with the cache as it was before the call: it is polled
// before anything changes, and between layers and chunks where the cache
// can be rewound (Cache::rewindable; not past a rewrite's crop).
Status checked_forward(const Model& model, Cache& cache, Workspace& ws, const int32_t* tokens, int32_t n,
                       const int32_t* cache_position, bool all_logits, float* logits, size_t logits_len,
                       const CancelSet& cancel = CancelSet());

}  // namespace ekv
