#include "cache/kv_layout.h"

#include <algorithm>

#include "core/kivi.h"

namespace ekv {
namespace {
int32_t round_up(int32_t v, int32_t m) { return (v + m - 1) / m * m; }
}  // namespace

int64_t grown_size(int64_t current, int64_t need, int64_t unit) {
    int64_t target = std::max(need, current + current / 2);
    return (target + unit - 1) / unit * unit;
}

KvLayout KvLayout::make(const CacheConfig& cfg, const CacheShape& shape) {
    KvLayout l;
    l.cfg = cfg;
    l.shape = shape;
    const int32_t chunk = shape.max_chunk > 0 ? shape.max_chunk : 1;
    if (cfg.retention == Retention::Sink) l.sinks = cfg.num_sink_tokens;
    if (cfg.retention == Retention::Window || cfg.retention == Retention::Sink)
        l.ring_len = cfg.window_length - l.sinks;
    if (cfg.retention == Retention::Fixed) l.fixed_body = cfg.max_cache_len;
    l.plain_row_bytes = dtype_row_bytes(cfg.kv_dtype, shape.kv_width());
    l.kivi = cfg.storage == KvStorage::Kivi;
    if (l.kivi) {
        l.group = cfg.q_group_size;
        l.key_group_bytes = kivi_key_group_bytes(shape.kv_width(), l.group, cfg.nbits);
        l.value_row_bytes = kivi_value_row_bytes(shape.kv_width(), l.group, cfg.nbits);
        // The residual keeps [R, R + G) newest tokens between forwards plus a
        // chunk being stored; the groups about to be quantized are still in it.
        l.plain_ring = true;
        l.plain_ring_rows = round_up(cfg.residual_length + l.group + chunk - 1, l.group);
        if (l.windowed()) {
            // Visible quantized tokens span at most ring_len tokens, so at most
            // ring_len / G + 1 groups; one more is the group being written.
            l.group_ring = true;
            l.group_ring_rows = (l.ring_len + l.group - 1) / l.group + 2;
        }
    } else if (l.windowed()) {
        l.plain_ring = true;
        l.plain_ring_rows = l.ring_len + chunk - 1;
    }
    return l;
}

int32_t KvLayout::quantized_end(int32_t committed_body) const {
    if (!kivi) return 0;
    const int32_t aged = committed_body - cfg.residual_length;
    return aged > 0 ? aged / group * group : 0;
}

int32_t KvLayout::first_visible_body(int32_t pos) const {
    if (!windowed()) return 0;
    const int32_t b = pos - ring_len + 1 - sinks;
    return b > 0 ? b : 0;
}

size_t KvLayout::slot_row_bytes(int slot) const {
    switch (slot) {
        case kGroupK: return key_group_bytes;
        case kGroupV: return value_row_bytes;
        default: return plain_row_bytes;
    }
}

int64_t KvLayout::slot_rows(int slot, int64_t plain_rows, int64_t groups) const {
    switch (slot) {
        case kSinkK: case kSinkV: return sinks;
        case kPlainK: case kPlainV: return plain_rows;
        case kGroupK: return kivi ? groups : 0;
        default: return kivi ? groups * group : 0;
    }
}

DType KvLayout::slot_type(int slot) const { return slot == kGroupK || slot == kGroupV ? DType::I8 : cfg.kv_dtype; }

int64_t KvLayout::slot_cols(int slot) const {
    return slot == kGroupK || slot == kGroupV ? static_cast<int64_t>(slot_row_bytes(slot)) : shape.kv_width();
}

StoreSizes KvLayout::initial_sizes() const {
    StoreSizes s;
    s.plain_rows = plain_ring ? plain_ring_rows : 0;
    s.groups = group_ring ? group_ring_rows : 0;
    if (fixed_body >= 0) {
        if (!plain_ring) s.plain_rows = fixed_body;
        if (kivi) s.groups = (static_cast<int64_t>(fixed_body) + group - 1) / group;
    }
    return s;
}

StoreSizes KvLayout::grown_sizes(const StoreSizes& current, int64_t body) const {
    if (!growable()) return current;
    StoreSizes s = current;
    const int64_t need = growing_need(body);
    if (need > growing(current))
        set_growing(&s, grown_size(growing(current), need, kivi ? std::max<int64_t>(1, kGrowChunk / group) : kGrowChunk));
    return s;
}

CacheBytes KvLayout::bytes(const StoreSizes& sizes, bool staged) const {
    uint64_t per_layer = 0;
    for (int slot = 0; slot < kNumSlots; ++slot) {
        const int64_t rows = slot_rows(slot, sizes.plain_rows, sizes.groups);
        if (rows > 0) per_layer += static_cast<uint64_t>(rows) * slot_row_bytes(slot);
    }
    CacheBytes b;
    const uint64_t layers = per_layer * static_cast<uint64_t>(shape.n_layers);
    (cfg.placement == Placement::Device ? b.device : b.host) = layers;
    if (staged) b.device += 2 * per_layer;  // the double buffer layers are fetched into
    return b;
}

int64_t KvLayout::max_growing_within(uint64_t limit, bool staged) const {
    StoreSizes s = initial_sizes();
    set_growing(&s, 0);
    const uint64_t base = bytes(s, staged).total();
    if (base > limit) return -1;
    set_growing(&s, 1);
    const uint64_t unit = bytes(s, staged).total() - base;
    if (unit == 0) return INT64_MAX;
    return static_cast<int64_t>(std::min<uint64_t>((limit - base) / unit, INT32_MAX));
}

}  // namespace ekv
