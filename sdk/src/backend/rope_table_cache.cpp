#include "backend/rope_table_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ekv {

namespace {
uint32_t bits_of(float f) {
    uint32_t b = 0;
    std::memcpy(&b, &f, sizeof b);
    return b;
}
}  // namespace

bool RopeTableCache::matches(const Slot& s, const Key& key) const {
    return s.used && s.inv_freq == key.inv_freq && s.half == key.half &&
           s.attn_factor_bits == bits_of(key.attn_factor) && static_cast<int64_t>(s.positions.size()) == key.n &&
           std::equal(s.positions.begin(), s.positions.end(), key.positions) &&
           std::equal(s.inv_freq_values.begin(), s.inv_freq_values.end(), key.inv_freq, [](float a, float b) {
               return bits_of(a) == bits_of(b);
           });
}

bool RopeTableCache::find(const Key& key, uint64_t* location) const {
    if (!key.positions || !key.inv_freq || key.n <= 0 || key.half <= 0) return false;
    for (const Slot& s : slots_) {
        if (matches(s, key)) {
            *location = s.location;
            return true;
        }
    }
    return false;
}

void RopeTableCache::insert(const Key& key, uint64_t location) {
    if (!key.positions || !key.inv_freq || key.n <= 0 || key.half <= 0) return;
    Slot* victim = &slots_[0];
    for (Slot& s : slots_) {
        if (!s.used) {
            victim = &s;
            break;
        }
        if (s.stamp < victim->stamp) victim = &s;
    }
    victim->used = true;
    victim->positions.assign(key.positions, key.positions + key.n);
    victim->inv_freq = key.inv_freq;
    victim->inv_freq_values.assign(key.inv_freq, key.inv_freq + key.half);
    victim->half = key.half;
    victim->attn_factor_bits = bits_of(key.attn_factor);
    victim->location = location;
    victim->stamp = ++clock_;
}

void RopeTableCache::reset() {
    for (Slot& s : slots_) s.used = false;
}

void fill_rope_table(const RopeTableCache::Key& key, float* out) {
    for (int64_t r = 0; r < key.n; ++r) {
        const double pos = static_cast<double>(key.positions[r]);
        for (int32_t i = 0; i < key.half; ++i) {
            const double theta = pos * static_cast<double>(key.inv_freq[i]);
            out[2 * (r * key.half + i)] = static_cast<float>(std::cos(theta)) * key.attn_factor;
            out[2 * (r * key.half + i) + 1] = static_cast<float>(std::sin(theta)) * key.attn_factor;
        }
    }
}

}  // namespace ekv
