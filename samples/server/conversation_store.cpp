#include "conversation_store.h"

#include <algorithm>

namespace edgekv_server {
namespace {

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

// True when the cache still holds every token it consumed, so cropping it
// to a shorter prefix works (a ring past its window cannot go back).
bool holds_everything(const ekv_cache* cache) {
    ekv_cache_stats st = ekv_cache_stats_default();
    return ekv_cache_get_stats(cache, &st) == EKV_OK && st.tokens_held == st.seq_len;
}

}  // namespace

uint64_t cache_bytes(const ekv_cache* cache) {
    ekv_cache_stats st = ekv_cache_stats_default();
    if (ekv_cache_get_stats(cache, &st) != EKV_OK) return 0;
    return st.host_bytes + st.device_bytes;
}

ConversationStore::~ConversationStore() { clear(); }

Reuse ConversationStore::checkout(const std::string& key, const std::vector<int32_t>& prompt, Conversation* conv) {
    std::lock_guard<std::mutex> lock(mu_);
    auto best = entries_.end();
    size_t best_len = 0;
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->key != key) continue;
        const size_t len = common_prefix(it->tokens, prompt);
        if (len > best_len) {
            best_len = len;
            best = it;
        }
    }
    *conv = Conversation{};
    conv->key = key;
    if (best == entries_.end()) return Reuse::kFresh;
    if (best_len >= best->prompt_len) {
        *conv = std::move(*best);
        entries_.erase(best);
        return Reuse::kExtends;
    }
    if (!holds_everything(best->cache)) return Reuse::kFresh;
    ekv_cache* copy = nullptr;
    if (ekv_cache_clone(best->cache, &copy) != EKV_OK) return Reuse::kFresh;
    conv->cache = copy;
    conv->tokens = best->tokens;  // the library crops the clone where the prompt departs
    best->last_used = ++clock_;
    return Reuse::kCloned;
}

void ConversationStore::checkin(Conversation conv) {
    if (!conv.cache) return;
    conv.bytes = cache_bytes(conv.cache);
    std::lock_guard<std::mutex> lock(mu_);
    conv.last_used = ++clock_;
    entries_.push_front(std::move(conv));
    evict_locked();
}

void ConversationStore::evict_locked() {
    uint64_t total = 0;
    for (const Conversation& c : entries_) total += c.bytes;
    while (!entries_.empty() &&
           (static_cast<int32_t>(entries_.size()) > max_count_ || total > max_bytes_)) {
        // The least recently used is the one with the smallest stamp (clones
        // refresh an entry's stamp without moving it).
        auto oldest = std::min_element(entries_.begin(), entries_.end(), [](const Conversation& a, const Conversation& b) {
            return a.last_used < b.last_used;
        });
        total -= oldest->bytes;
        ekv_cache_free(oldest->cache);
        entries_.erase(oldest);
    }
}

void ConversationStore::clear() {
    std::lock_guard<std::mutex> lock(mu_);
    for (Conversation& c : entries_) ekv_cache_free(c.cache);
    entries_.clear();
}

StoreStats ConversationStore::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    StoreStats s;
    s.count = static_cast<int32_t>(entries_.size());
    for (const Conversation& c : entries_) s.bytes += c.bytes;
    s.max_count = max_count_;
    s.max_bytes = max_bytes_;
    return s;
}

}  // namespace edgekv_server
