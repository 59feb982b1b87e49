#include "cache/token_history.h"

#include <algorithm>
#include <new>

namespace ekv {
namespace {

// splitmix64's finalizer: every input bit affects every output bit.
uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// One id folded into the running digest. Chained, so order matters; the
// position is mixed in as well so a shifted sequence differs too.
uint64_t fold_one(uint64_t digest, int64_t pos, int32_t id) {
    return mix64(digest ^ mix64((static_cast<uint64_t>(pos) << 32) ^ static_cast<uint32_t>(id)));
}

constexpr int64_t kMinGrowth = 256;

}  // namespace

uint64_t TokenHistory::digest_of(const int32_t* ids, int64_t first_pos, int64_t n) {
    uint64_t d = 0;
    for (int64_t i = 0; i < n; ++i) d = fold_one(d, first_pos + i, ids[i]);
    return d;
}

void TokenHistory::fold(const int32_t* ids, int64_t n) {
    for (int64_t i = 0; i < n; ++i, ++folded_) digest_ = fold_one(digest_, pinned_ + folded_, ids[i]);
}

Status TokenHistory::reserve(int64_t n_new, int64_t fixed_len) {
    int64_t need = static_cast<int64_t>(kept_.size()) + std::max<int64_t>(n_new, 0);
    if (keep_ > 0) need = std::min(need, most_kept());  // append folds before it would hold more
    const int64_t have = static_cast<int64_t>(kept_.capacity());
    if (need <= have) return Status::Ok();
    int64_t target = fixed_len > 0 ? std::max(need, fixed_len) : std::max(need, have + std::max(have / 2, kMinGrowth));
    if (keep_ > 0) target = std::max(need, std::min(target, most_kept()));
    try {
        kept_.reserve(static_cast<size_t>(target));
    } catch (const std::bad_alloc&) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate room for %lld token ids", static_cast<long long>(target));
    }
    return Status::Ok();
}

int64_t TokenHistory::fold_for(const int32_t* ids, int64_t n) {
    const int64_t unpinned = static_cast<int64_t>(kept_.size()) - pinned_;  // >= 0: the pinned ids are all in
    if (keep_ == 0 || unpinned + n <= 2 * static_cast<int64_t>(keep_)) return 0;
    const int64_t drop = unpinned + n - keep_;
    const int64_t old = std::min(drop, unpinned);
    fold(kept_.data() + pinned_, old);
    kept_.erase(kept_.begin() + pinned_, kept_.begin() + pinned_ + old);
    fold(ids, drop - old);
    return drop - old;
}

void TokenHistory::append(const int32_t* ids, int32_t n) {
    if (n <= 0) return;
    if (static_cast<int64_t>(kept_.size()) < pinned_) {  // the pinned ids first
        const int32_t head = static_cast<int32_t>(std::min<int64_t>(n, pinned_ - static_cast<int64_t>(kept_.size())));
        kept_.insert(kept_.end(), ids, ids + head);
        ids += head;
        n -= head;
    }
    const int64_t folded_now = fold_for(ids, n);
    kept_.insert(kept_.end(), ids + folded_now, ids + n);
}

bool TokenHistory::truncate(int64_t len) {
    if (len < 0 || len > size() || !can_truncate(len)) return false;
    if (len <= pinned_ && folded_ > 0) {  // back into the pinned ids: nothing folded remains
        folded_ = 0;
        digest_ = 0;
    }
    kept_.resize(static_cast<size_t>(len - folded_));
    return true;
}

void TokenHistory::clear() {
    kept_.clear();
    folded_ = 0;
    digest_ = 0;
}

int64_t TokenHistory::matching_prefix(const int32_t* ids, int64_t n) const {
    const int64_t limit = std::min(n, size());
    int64_t m = 0;
    if (folded_ > 0) {
        while (m < std::min<int64_t>(limit, pinned_) && kept_[static_cast<size_t>(m)] == ids[m]) ++m;
        if (m < pinned_) return m;
        if (n < pinned_ + folded_ || digest_of(ids + pinned_, pinned_, folded_) != digest_) return m;
        m = pinned_ + folded_;
    }
    while (m < limit && kept_[static_cast<size_t>(m - folded_)] == ids[m]) ++m;
    return m;
}

bool TokenHistory::restore(int64_t folded, uint64_t digest, std::vector<int32_t> kept) {
    const int64_t n = static_cast<int64_t>(kept.size());
    if (folded < 0 || (folded == 0 && digest != 0)) return false;
    if (folded > 0 && (keep_ == 0 || n < pinned_ || n > most_kept())) return false;
    clear();
    folded_ = folded;
    digest_ = digest;
    if (keep_ > 0 && n > most_kept()) {
        // A whole list (version 2): fold down to the pinned ids and keep_ more.
        const int64_t drop = n - pinned_ - keep_;
        fold(kept.data() + pinned_, drop);
        kept.erase(kept.begin() + pinned_, kept.begin() + pinned_ + drop);
        kept_.assign(kept.begin(), kept.end());  // sized to what it keeps
    } else {
        kept_ = std::move(kept);
    }
    return true;
}

}  // namespace ekv
