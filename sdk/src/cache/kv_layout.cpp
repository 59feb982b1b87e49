#include "cache/kv_layout.h"

#include "core/kivi.h"

namespace ekv {
namespace {
int32_t round_up(int32_t v, int32_t m) { return (v + m - 1) / m * m; }
}  // namespace

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

}  // namespace ekv
