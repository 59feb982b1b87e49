#include "backend/command_log.h"

#include <algorithm>
#include <cstring>

namespace ekv {

void CommandLog::clear() {
    ops_.clear();
    bytes_.clear();
}

void CommandLog::begin(uint64_t op) {
    ops_.push_back(op);
    append(&op, sizeof op);  // keeps commands apart in bytes_ too
}

void CommandLog::append(const void* data, size_t bytes) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + bytes);
}

uint64_t CommandLog::ops_hash() const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the op ids' bytes
    for (uint64_t op : ops_)
        for (int b = 0; b < 8; ++b) {
            h ^= (op >> (8 * b)) & 0xffu;
            h *= 1099511628211ull;
        }
    return h ^ ops_.size();
}

uint64_t CommandLog::hash() const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the bytes (which hold the op ids too)
    for (uint8_t b : bytes_) {
        h ^= b;
        h *= 1099511628211ull;
    }
    return h ^ ops_.size();
}

ReplayCache::ReplayCache(int slots, int history, bool update_in_place)
    : slots_(static_cast<size_t>(std::max(1, slots))),
      history_(static_cast<size_t>(std::max(1, history))),
      update_in_place_(update_in_place) {}

ReplayDecision ReplayCache::decide(const CommandLog& log) {
    if (log.empty()) return {};
    for (int i = 0; i < slots(); ++i)
        if (slots_[i].used && slots_[i].log.same_as(log)) {
            slots_[i].last_use = ++clock_;
            return {ReplayAction::Replay, i};
        }
    if (update_in_place_)
        for (int i = 0; i < slots(); ++i)
            if (slots_[i].used && slots_[i].log.same_ops_as(log)) {
                slots_[i].last_use = ++clock_;
                return {ReplayAction::Update, i};
            }
    const uint64_t h = update_in_place_ ? log.ops_hash() : log.hash();
    const auto it = std::find(seen_.begin(), seen_.end(), h);
    if (it == seen_.end()) {
        if (seen_.size() == history_) seen_.erase(seen_.begin());
        seen_.push_back(h);
        return {ReplayAction::Direct, -1};
    }
    seen_.erase(it);  // it gets a slot now
    int victim = 0;
    for (int i = 0; i < slots(); ++i) {
        if (!slots_[i].used) {
            victim = i;
            break;
        }
        if (slots_[i].last_use < slots_[victim].last_use) victim = i;
    }
    return {ReplayAction::Record, victim};
}

void ReplayCache::store(int slot, const CommandLog& log) {
    if (slot < 0 || slot >= slots()) return;
    slots_[slot].used = true;
    slots_[slot].log = log;
    slots_[slot].last_use = ++clock_;
}

void ReplayCache::drop(int slot) {
    if (slot < 0 || slot >= slots()) return;
    slots_[slot].used = false;
    slots_[slot].log.clear();
}

void ReplayCache::clear() {
    for (int i = 0; i < slots(); ++i) drop(i);
    seen_.clear();
}

}  // namespace ekv
