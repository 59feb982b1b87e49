#include "text/vocab.h"

namespace ekv {

uint64_t hash_bytes(std::string_view s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void Vocab::assign(std::vector<std::string> texts, std::vector<int32_t> types,
                   std::vector<float> scores) {
    texts_ = std::move(texts);
    types_ = std::move(types);
    scores_ = std::move(scores);
    types_.resize(texts_.size(), kTokenNormal);
    scores_.resize(texts_.size(), 0.0f);

    size_t cap = 16;
    while (cap < texts_.size() * 2) cap <<= 1;
    slots_.assign(cap, -1);
    mask_ = cap - 1;
    for (int32_t id = 0; id < size(); ++id) {
        uint64_t h = hash_bytes(texts_[id]) & mask_;
        while (slots_[h] >= 0) {
            if (texts_[slots_[h]] == texts_[id]) break;  // duplicate text: keep the lower id
            h = (h + 1) & mask_;
        }
        if (slots_[h] < 0) slots_[h] = id;
    }
}

int32_t Vocab::find(std::string_view text) const {
    if (slots_.empty()) return -1;
    uint64_t h = hash_bytes(text) & mask_;
    while (slots_[h] >= 0) {
        if (texts_[slots_[h]] == text) return slots_[h];
        h = (h + 1) & mask_;
    }
    return -1;
}

}  // namespace ekv
