// The RoPE cos/sin tables a device stream built during the current step, so
// a step builds each distinct table once instead of once per rope call (a
// decoder rotates q and k of every layer at the same positions with the same
// frequencies: two calls per layer, one table). Backend-neutral: a backend
// stores where it put a table (an address or offset in its per-step
// parameter memory) and calls reset() whenever that memory is reused.
#pragma once
#include <cstdint>
#include <vector>

namespace ekv {

class RopeTableCache {
public:
    // Kept tables: enough for models that interleave two RoPE bases
    // (Gemma's local and global layers) plus a pinned re-rotation or two.
    static constexpr int kSlots = 4;

    // What a table depends on: the positions' values, the frequencies'
    // address and values, the pair count and the magnitude factor (bitwise).
    struct Key {
        const int32_t* positions = nullptr;
        int64_t n = 0;
        const float* inv_freq = nullptr;
        int32_t half = 0;
        float attn_factor = 1.f;
    };

    // The location stored with an identical table since the last reset().
    bool find(const Key& key, uint64_t* location) const;
    // Remembers a table just built at `location`, replacing the oldest one.
    void insert(const Key& key, uint64_t location);
    // The per-step memory is reused (a synchronize, an arena wrap or growth):
    // every stored location is stale.
    void reset();

private:
    struct Slot {
        bool used = false;
        std::vector<int32_t> positions;
        const float* inv_freq = nullptr;
        std::vector<float> inv_freq_values;
        int32_t half = 0;
        uint32_t attn_factor_bits = 0;
        uint64_t location = 0;
        uint64_t stamp = 0;  // insertion order: the smallest is replaced
    };
    bool matches(const Slot& s, const Key& key) const;
    Slot slots_[kSlots];
    uint64_t clock_ = 0;
};

// Fills the table for `key`: for row t and pair i, cos at
// [2 * (t * half + i)] and sin right after, the angle positions[t] *
// inv_freq[i] in double like the CPU backend (a float product loses the
// phase of the fast-turning pairs at long positions), attn_factor applied.
void fill_rope_table(const RopeTableCache::Key& key, float* out);

}  // namespace ekv
