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

// Unbounded stores grow by at least this many tokens (and by half their size)
// so reallocation is rare and amortised, never per token.
constexpr int64_t kGrowChunk = 256;
// The size such a store grows to from `current` so `need` fits: at least
// half again, in whole units.
int64_t grown_size(int64_t current, int64_t need, int64_t unit);

// Allocated sizes of a layer's stores: plain rows and KIVI groups.
struct StoreSizes {
    int64_t plain_rows = 0;
    int64_t groups = 0;
    bool operator==(const StoreSizes& o) const { return plain_rows == o.plain_rows && groups == o.groups; }
    bool operator!=(const StoreSizes& o) const { return !(*this == o); }
};

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

    // Sizing, shared by the cache and the planner (cache_planner.h) so a
    // plan equals what the cache then allocates.
    // Store sizes at creation: rings and fixed capacities preallocated,
    // unbounded stores empty.
    StoreSizes initial_sizes() const;
    // What prepare() grows unbounded stores to so `body` tokens fit: at
    // least half again their size, in whole chunks (amortised, never per
    // token); `current` when they already fit or nothing grows.
    StoreSizes grown_sizes(const StoreSizes& current, int64_t body) const;
    // Bytes of every layer's stores at `sizes` (plus the device double
    // buffer of a staged host cache), split as ekv_cache_stats reports them.
    CacheBytes bytes(const StoreSizes& sizes, bool staged) const;
    // Whether a cache of this layout stages host memory into device buffers.
    bool staged_on(const DeviceDescription& device) const {
        return cfg.placement == Placement::Host && !device.unified_memory;
    }
    // The store an unbounded cache grows: KIVI groups, else plain rows.
    int64_t growing(const StoreSizes& s) const { return kivi ? s.groups : s.plain_rows; }
    void set_growing(StoreSizes* s, int64_t n) const { (kivi ? s->groups : s->plain_rows) = n; }
    // Units of the growing store `body` tokens need.
    int64_t growing_need(int64_t body) const { return kivi ? (body + group - 1) / group : body; }
    // Tokens `n` units of the growing store hold.
    int64_t growing_tokens(int64_t n) const { return kivi ? n * group : n; }
    // Largest growing store whose bytes stay within `limit` (the other
    // stores as at creation); -1 when not even an empty one does.
    int64_t max_growing_within(uint64_t limit, bool staged) const;
};

}  // namespace ekv
