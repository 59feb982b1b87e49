// Where a cache keeps each token of a layer, for every point of the
// retention x storage axes. Pure arithmetic, shared by the cache, its files
// and the tests.
//
// A layer has up to three stores:
//  - sink:  the first S tokens (Sink retention), plain rows, never evicted;
//  - plain: plain rows of the body (all of it for Plain storage, the
//           full-precision residual of the newest tokens for Kivi storage);
//  - kivi:  key groups of G tokens plus one value row per token (Kivi).
// Body token b is the token at absolute position S + b. A store is either
// linear (row = index; grows for Unbounded, preallocated for Fixed) or a
// ring (row = index % rows). Rings are sized so a chunk of up to max_chunk
// new tokens never overwrites a token an earlier query of the chunk still
// sees, and KIVI rings are whole groups so a group never wraps.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cache/cache.h"

namespace ekv {

enum KvSlot { kSinkK, kSinkV, kPlainK, kPlainV, kGroupK, kGroupV, kNumSlots };

struct KvLayout {
    CacheConfig cfg;
    CacheShape shape;
    int32_t sinks = 0;          // S
    int32_t ring_len = 0;       // unpinned tokens a query sees (window - S); 0 = all
    bool kivi = false;
    int32_t group = 1;          // G (Kivi)
    bool plain_ring = false;    // plain store is a ring (windows; the Kivi residual)
    int32_t plain_ring_rows = 0;
    bool group_ring = false;    // kivi store is a ring of groups
    int32_t group_ring_rows = 0;
    int32_t fixed_body = -1;    // Fixed retention: body capacity in tokens
    size_t plain_row_bytes = 0;
    size_t key_group_bytes = 0;
    size_t value_row_bytes = 0;

    static KvLayout make(const CacheConfig& cfg, const CacheShape& shape);

    bool growable() const { return cfg.retention == Retention::Unbounded; }
    bool windowed() const { return ring_len > 0; }
    int32_t body_of(int32_t len) const { return len > sinks ? len - sinks : 0; }
    // Body tokens quantized once `committed_body` tokens are committed: all but
    // the newest residual_length (+ less than a group), in whole groups.
    int32_t quantized_end(int32_t committed_body) const;
    // Oldest body token a query at position `pos` sees.
    int32_t first_visible_body(int32_t pos) const;
    // Rows a linear store needs for `body` tokens (plain rows, or groups).
    int64_t plain_rows_for(int32_t body) const { return plain_ring ? plain_ring_rows : body; }
    int64_t groups_for(int32_t body) const {
        return group_ring ? group_ring_rows : (static_cast<int64_t>(body) + group - 1) / group;
    }
    int64_t plain_row(int64_t b) const { return plain_ring ? b % plain_ring_rows : b; }
    int64_t group_row(int64_t g) const { return group_ring ? g % group_ring_rows : g; }
    // Bytes of one slot row and rows of a slot for the given store sizes.
    size_t slot_row_bytes(int slot) const;
    int64_t slot_rows(int slot, int64_t plain_rows, int64_t groups) const;
    DType slot_type(int slot) const;
    int64_t slot_cols(int slot) const;
};

}  // namespace ekv
