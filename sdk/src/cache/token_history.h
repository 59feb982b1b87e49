// The token ids a cache consumed, oldest first: what prefix reuse
// (Generator::prefill) compares a new prompt against, and what cache files
// carry.
//
// A cache that can crop to any length keeps every id (4 bytes a token next to
// kilobytes of KV). A ring (sliding_window, sink) can only ever crop back a
// bounded distance (or into its sinks, which it never evicts), so it keeps
// the first pinned() ids and the newest ones: at least keep(), at most twice
// that, folding the ones between, in order, into a 64-bit digest. A new
// prompt continues the history when it matches the pinned ids, its next
// folded() ids have the same digest and the rest match id by id. Memory stays
// flat however long the stream; folding moves about keep() ids once every
// keep() tokens (amortised O(1)) and never allocates.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/status.h"

namespace ekv {

class TokenHistory {
public:
    // keep = 0 (the default): keeps every id. keep > 0: keeps the first
    // `pinned` ids and at least the newest `keep`. Set on an empty list.
    void set_keep(int32_t keep, int32_t pinned) {
        keep_ = keep > 0 ? keep : 0;
        pinned_ = keep > 0 && pinned > 0 ? pinned : 0;
    }
    int32_t keep() const { return keep_; }
    int32_t pinned() const { return pinned_; }

    // Every id consumed, folded ones included (the cache's seq_len).
    int64_t size() const { return folded_ + static_cast<int64_t>(kept_.size()); }
    // Ids folded into digest(), from position pinned() on (0 until a ring
    // folds).
    int64_t folded() const { return folded_; }
    uint64_t digest() const { return digest_; }
    // The ids held: positions [0, pinned()) and [pinned() + folded(), size())
    // once folded, all of them before.
    const std::vector<int32_t>& kept() const { return kept_; }
    // Whether truncate(len) keeps every id it needs.
    bool can_truncate(int64_t len) const { return len <= pinned_ || len >= pinned_ + folded_; }
    // Bytes the id list has allocated.
    size_t capacity_bytes() const { return kept_.capacity() * sizeof(int32_t); }

    // Makes room for n_new more ids so append() does not allocate: all of a
    // fixed capacity (fixed_len > 0) at once, else growing by half again (at
    // least 256); a folding list never past twice keep().
    Status reserve(int64_t n_new, int64_t fixed_len);
    void append(const int32_t* ids, int32_t n);
    // Keeps the first `len` ids; false (nothing changed) when that would
    // need folded ones back (see can_truncate) or len > size().
    bool truncate(int64_t len);
    void clear();

    // How many leading ids of ids[0, n) equal the history: exact over the
    // ids it holds; past the pinned ones only when ids continue over the
    // folded ones with the same digest.
    int64_t matching_prefix(const int32_t* ids, int64_t n) const;

    // From a cache file: `kept` as kept() with `folded` ids of digest
    // `digest` between the pinned ones and the rest. False when that is not
    // a state this list reaches (folded ids in a list that keeps every id or
    // before its pinned ones are all there, a digest without folded ids,
    // more ids than a folded list holds). A longer list without folded ids
    // (a version-2 file's whole list) is folded down to keep().
    bool restore(int64_t folded, uint64_t digest, std::vector<int32_t> kept);

    // The digest of n ids at positions first_pos.., as folded ones are stored.
    static uint64_t digest_of(const int32_t* ids, int64_t first_pos, int64_t n);

    bool operator==(const TokenHistory& o) const {
        return folded_ == o.folded_ && digest_ == o.digest_ && kept_ == o.kept_;
    }
    bool operator!=(const TokenHistory& o) const { return !(*this == o); }

private:
    // The most ids a folding list holds; folding brings it back to
    // pinned_ + keep_.
    int64_t most_kept() const { return pinned_ + 2 * static_cast<int64_t>(keep_); }
    void fold(const int32_t* ids, int64_t n);
    // Folds the oldest unpinned ids of kept_ and then of ids[0, n) so that
    // pinned_ + keep_ remain once the rest of ids is appended; returns how
    // many of ids it folded.
    int64_t fold_for(const int32_t* ids, int64_t n);

    std::vector<int32_t> kept_;
    int64_t folded_ = 0;
    uint64_t digest_ = 0;  // of no ids
    int32_t keep_ = 0;
    int32_t pinned_ = 0;
};

}  // namespace ekv
