// The caches of recent conversations, kept so that a follow-up request
// computes only its new tokens. A request checks a cache out (nobody else
// can use it meanwhile) and checks it back in when its generation ends.
// Bounded by a count and a byte budget, least recently used evicted first.
#pragma once
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <vector>

#include "edgekv.h"

namespace edgekv_server {

// A cache and the tokens it holds (prompt and generated, as far as the
// cache's seq_len goes), checked out by one request.
struct Conversation {
    ekv_cache* cache = nullptr;  // owned
    std::string key;             // cache_key() of its configuration
    std::vector<int32_t> tokens;
    size_t prompt_len = 0;       // tokens of the prompt that made it (the rest were generated)
    uint64_t bytes = 0;          // allocated KV bytes (host + device)
    uint64_t last_used = 0;
};

struct StoreStats {
    int32_t count = 0;
    uint64_t bytes = 0;
    int32_t max_count = 0;
    uint64_t max_bytes = 0;
};

// How a checked-out conversation relates to the request's prompt.
enum class Reuse {
    kExtends,  // the prompt continues the conversation: it starts with the
               // conversation's last prompt (its answer may come back
               // tokenized differently; the library crops where it departs)
    kCloned,   // a clone of a conversation sharing a shorter prefix (a system
               // prompt, an edited turn): the original stays for its own chat
    kFresh     // nothing matched: a new cache
};

class ConversationStore {
public:
    ConversationStore(int32_t max_count, uint64_t max_bytes) : max_count_(max_count), max_bytes_(max_bytes) {}
    ~ConversationStore();
    ConversationStore(const ConversationStore&) = delete;
    ConversationStore& operator=(const ConversationStore&) = delete;

    // Finds the best cache for `prompt` among those made with `key`: one the
    // prompt continues is taken out of the store; one sharing a shorter
    // prefix is cloned (it may serve its own conversation again). Returns kFresh with
    // conv->cache NULL when nothing matches (the caller creates one).
    // A failed clone also gives kFresh.
    Reuse checkout(const std::string& key, const std::vector<int32_t>& prompt, Conversation* conv);
    // Puts a conversation back (it becomes the most recent) and evicts old
    // ones over the limits; one bigger than the whole budget is freed.
    void checkin(Conversation conv);
    // Frees every stored cache.
    void clear();
    StoreStats stats() const;

private:
    void evict_locked();

    mutable std::mutex mu_;
    std::list<Conversation> entries_;  // front: most recently used
    uint64_t clock_ = 0;
    int32_t max_count_;
    uint64_t max_bytes_;
};

// Allocated KV bytes of a cache (0 if unknown).
uint64_t cache_bytes(const ekv_cache* cache);

}  // namespace edgekv_server
