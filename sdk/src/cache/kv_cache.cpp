#include "cache/kv_cache.h"

#include <algorithm>
#include <new>

namespace ekv {

KvCache::KvCache(const KvLayout& layout, Backend& backend) : layout_(layout), backend_(&backend) {
    // A ring crops back at most the rows its rings hold (or into its sinks):
    // older ids are only needed to verify a prompt, so they fold.
    if (layout.windowed()) {
        const int32_t reach = layout.plain_ring_rows + (layout.group_ring ? layout.group_ring_rows * layout.group : 0);
        tokens_.set_keep(reach, layout.sinks);
    }
}

Status KvCache::create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                       std::unique_ptr<Cache>* out) {
    return create_within(config, shape, backend, byte_limit(config), out);
}

Status KvCache::create_within(const CacheConfig& config, const CacheShape& shape, Backend& backend, uint64_t limit,
                              std::unique_ptr<Cache>* out) {
    const KvLayout l = KvLayout::make(config, shape);
    const StoreSizes initial = l.initial_sizes();
    const uint64_t need = l.bytes(initial, l.staged_on(backend.device())).total();
    if (need > limit)
        return Error(EKV_ERR_OUT_OF_MEMORY, "the %s cache takes %s%s, more than its memory budget of %s",
                     ekv_cache_type_name(config.type), describe_bytes(need).c_str(),
                     l.fixed_body >= 0 ? " at its capacity" : (l.windowed() ? " for its window" : ""),
                     describe_bytes(limit).c_str());
    std::unique_ptr<KvCache> c(new (std::nothrow) KvCache(l, backend));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    c->limit_ = limit;
    EKV_TRY(c->allocate(initial.plain_rows, initial.groups));
    *out = std::move(c);
    return Status::Ok();
}

CacheSize KvCache::size(const CacheConfig& config, const CacheShape& shape, const DeviceDescription& device,
                        uint64_t limit, int32_t tokens) {
    const KvLayout l = KvLayout::make(config, shape);
    const bool staged = l.staged_on(device);
    CacheSize s;
    const StoreSizes initial = l.initial_sizes();
    StoreSizes at = l.grown_sizes(initial, tokens);  // unbounded: no sinks, body = tokens
    s.created = l.bytes(initial, staged);
    s.tokens_held = l.windowed() ? std::min(tokens, config.window_length) : tokens;
    if (l.fixed_body >= 0) s.capacity = s.max_tokens = l.fixed_body;
    if (l.growable() && limit != kNoByteLimit) {
        const int64_t most = l.max_growing_within(limit, staged);
        s.max_tokens = most < 0 ? 0 : l.growing_tokens(most);
        if (l.growing_need(tokens) <= most && l.growing(at) > most) l.set_growing(&at, most);  // as prepare() caps it
    }
    s.at_tokens = l.bytes(at, staged);
    judge_size(&s, tokens, limit);
    return s;
}

int32_t KvCache::capacity() const {
    if (layout_.fixed_body >= 0) return layout_.fixed_body;
    if (layout_.windowed()) return layout_.cfg.window_length;
    return -1;
}

Status KvCache::allocate_set(int64_t plain_rows, int64_t groups, Placement placement, LayerBuffers* out) const {
    for (int s = 0; s < kNumSlots; ++s) {
        const int64_t rows = layout_.slot_rows(s, plain_rows, groups);
        Tensor& t = out->t[s];
        t = Tensor();
        out->buf[s].reset();
        if (rows <= 0) continue;
        const size_t rb = layout_.slot_row_bytes(s);
        EKV_TRY(backend_->alloc(rb * static_cast<size_t>(rows), placement, &out->buf[s]));
        t.type = layout_.slot_type(s);
        t.cols = layout_.slot_cols(s);
        t.rows = rows;
        t.row_bytes = rb;
        t.buffer = out->buf[s].get();
        t.data = out->buf[s]->host();
    }
    return Status::Ok();
}

// Allocates every layer (and the staging pair) at the new sizes, keeping the
// contents. All or nothing: on failure the cache is unchanged.
Status KvCache::allocate(int64_t plain_rows, int64_t groups) {
    const Placement master = layout_.cfg.placement;
    std::vector<LayerBuffers> fresh(static_cast<size_t>(layout_.shape.n_layers));
    for (LayerBuffers& lb : fresh) EKV_TRY(allocate_set(plain_rows, groups, master, &lb));
    std::array<LayerBuffers, 2> fresh_staging;
    if (staged())
        for (LayerBuffers& lb : fresh_staging) EKV_TRY(allocate_set(plain_rows, groups, Placement::Device, &lb));
    for (size_t i = 0; i < layers_.size(); ++i) copy_used(layers_[i], fresh[i], *backend_);
    backend_->synchronize();
    EKV_TRY(backend_->take_error());
    layers_ = std::move(fresh);
    staging_ = std::move(fresh_staging);
    staged_layer_ = {{-1, -1}};
    plain_rows_ = plain_rows;
    groups_ = groups;
    return Status::Ok();
}

size_t KvCache::slot_used_bytes(int slot) const {
    const KvLayout& l = layout_;
    const int32_t body = l.body_of(len_);
    int64_t rows = 0;
    switch (slot) {
        case kSinkK: case kSinkV: rows = std::min(len_, l.sinks); break;
        case kPlainK: case kPlainV: rows = l.plain_ring ? plain_rows_ : body; break;
        case kGroupK: rows = l.group_ring ? groups_ : q_end_ / l.group; break;
        default: rows = l.group_ring ? groups_ * l.group : q_end_; break;
    }
    return static_cast<size_t>(rows) * l.slot_row_bytes(slot);
}

void KvCache::copy_used(const LayerBuffers& from, LayerBuffers& to, Backend& backend) const {
    for (int s = 0; s < kNumSlots; ++s) {
        if (!from.buf[s] || !to.buf[s]) continue;
        const size_t bytes = std::min({slot_used_bytes(s), from.buf[s]->size(), to.buf[s]->size()});
        if (bytes) backend.copy_bytes(*from.buf[s], 0, *to.buf[s], 0, bytes);
    }
}

// Host placement: brings a layer's committed contents into its device buffer
// (layers alternate between two, so layer l + 1 is fetched while layer l
// computes; GPU backends order the copy on their stream).
LayerBuffers& KvCache::stage(int32_t layer) {
    const size_t idx = static_cast<size_t>(layer) % 2;
    if (staged_layer_[idx] != layer) {
        copy_used(layers_[static_cast<size_t>(layer)], staging_[idx], *backend_);
        staged_layer_[idx] = layer;
    }
    return staging_[idx];
}

Status KvCache::prepare(int32_t n_new) {
    if (n_new < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "negative token count %d", n_new);
    const int64_t need = static_cast<int64_t>(len_) + n_new;
    if (layout_.fixed_body >= 0 && need > layout_.fixed_body)
        return Error(EKV_ERR_CACHE_FULL,
                     "%s cache is full: it holds %d of %d tokens and cannot take %d more (raise max_cache_len)",
                     ekv_cache_type_name(type()), len_, layout_.fixed_body, n_new);
    if (need > INT32_MAX / 2)
        return Error(EKV_ERR_CONTEXT_OVERFLOW, "sequence of %lld tokens is too long", static_cast<long long>(need));
    // The id list grows here, never in commit(), so decode steps between
    // growth points do not allocate; a fixed cache takes its whole capacity.
    EKV_TRY(tokens_.reserve(n_new, layout_.fixed_body));
    if (!layout_.growable()) return Status::Ok();
    const StoreSizes current{plain_rows_, groups_};
    StoreSizes grown = layout_.grown_sizes(current, need);  // no sinks when unbounded: body = need
    if (grown == current) return Status::Ok();
    if (limit_ != kNoByteLimit) {
        // Within a budget growth stops at it: up to what fits, and a chunk
        // needing more fails here, before anything changed.
        const int64_t most = layout_.max_growing_within(limit_, staged());
        if (layout_.growing_need(need) > most) {
            StoreSizes wanted = current;
            layout_.set_growing(&wanted, layout_.growing_need(need));
            return Error(EKV_ERR_OUT_OF_MEMORY,
                         "the %s cache cannot grow to %lld tokens within its memory budget of %s: they take %s; it "
                         "holds at most %lld",
                         ekv_cache_type_name(type()), static_cast<long long>(need), describe_bytes(limit_).c_str(),
                         describe_bytes(layout_.bytes(wanted, staged()).total()).c_str(),
                         static_cast<long long>(most < 0 ? 0 : layout_.growing_tokens(most)));
        }
        if (layout_.growing(grown) > most) layout_.set_growing(&grown, most);
    }
    return allocate(grown.plain_rows, grown.groups);
}

void KvCache::write_rows(Backend& backend, LayerBuffers& lb, const Tensor& k, const Tensor& v) const {
    const int32_t n = static_cast<int32_t>(k.rows);
    const int32_t sinks = layout_.sinks;
    const int32_t to_sink = std::max(0, std::min(len_ + n, sinks) - len_);
    if (to_sink > 0) {
        backend.copy_rows(k.row_range(0, to_sink), lb.t[kSinkK], len_);
        backend.copy_rows(v.row_range(0, to_sink), lb.t[kSinkV], len_);
    }
    int32_t i = to_sink;
    int64_t b = layout_.body_of(len_ + to_sink);
    while (i < n) {
        const int64_t row = layout_.plain_row(b);
        int64_t run = n - i;
        if (layout_.plain_ring) run = std::min<int64_t>(run, layout_.plain_ring_rows - row);
        backend.copy_rows(k.row_range(i, run), lb.t[kPlainK], row);
        backend.copy_rows(v.row_range(i, run), lb.t[kPlainV], row);
        i += static_cast<int32_t>(run);
        b += run;
    }
}

// KIVI: groups that aged out of the residual are quantized from their
// full-precision rows (a group never wraps: ring rows are whole groups).
void KvCache::quantize_aged(Backend& backend, LayerBuffers& lb, int32_t q_target) const {
    const int32_t g = layout_.group;
    KiviParams p;
    p.nbits = layout_.cfg.nbits;
    p.group = g;
    p.head_dim = layout_.shape.head_dim;
    for (int64_t grp = q_end_ / g; grp < q_target / g; ++grp) {
        const int64_t src = layout_.plain_row(grp * g);
        const int64_t dst = layout_.group_row(grp);
        backend.kivi_quantize_keys(lb.t[kPlainK], src, lb.t[kGroupK], dst, p);
        backend.kivi_quantize_values(lb.t[kPlainV], src, g, lb.t[kGroupV], dst * g, p);
    }
}

void KvCache::store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) {
    if (layout_.kivi) q_target_ = std::max(q_end_, layout_.quantized_end(layout_.body_of(len_)));
    stored_body_ = std::max(stored_body_, layout_.body_of(len_ + static_cast<int32_t>(k.rows)));
    stored_q_ = std::max(stored_q_, q_target_);
    LayerBuffers* targets[2] = {&layers_[static_cast<size_t>(layer)], nullptr};
    if (staged()) targets[1] = &stage(layer);  // fetched before either copy changes
    for (LayerBuffers* lb : targets) {
        if (!lb) continue;
        if (layout_.kivi) quantize_aged(backend, *lb, q_target_);
        write_rows(backend, *lb, k, v);
    }
}

void KvCache::add_plain_runs(KvView& view, const LayerBuffers& lb, int slot_k, int32_t b0, int32_t b1) const {
    int64_t b = b0;
    while (b < b1) {
        const int64_t row = layout_.plain_row(b);
        int64_t run = b1 - b;
        if (layout_.plain_ring) run = std::min<int64_t>(run, layout_.plain_ring_rows - row);
        KvSegment& s = view.seg[view.n_segments++];
        s.format = KvFormat::Plain;
        s.k = lb.t[slot_k].row_range(row, run);
        s.v = lb.t[slot_k + 1].row_range(row, run);
        s.n_tokens = static_cast<int32_t>(run);
        s.first_pos = layout_.sinks + static_cast<int32_t>(b);
        b += run;
    }
}

void KvCache::add_kivi_runs(KvView& view, const LayerBuffers& lb, int32_t b0, int32_t b1) const {
    const int32_t g = layout_.group;
    int64_t b = b0;
    while (b < b1) {
        const int64_t grp = b / g;
        const int64_t row = layout_.group_row(grp);
        const int64_t skip = b - grp * g;
        const int64_t groups_here = layout_.group_ring ? layout_.group_ring_rows - row : groups_ - row;
        const int64_t run = std::min<int64_t>(b1 - b, groups_here * g - skip);
        const int64_t n_groups = (skip + run + g - 1) / g;
        KvSegment& s = view.seg[view.n_segments++];
        s.format = KvFormat::Kivi;
        s.k = lb.t[kGroupK].row_range(row, n_groups);
        s.v = lb.t[kGroupV].row_range(row * g, n_groups * g);
        s.skip = static_cast<int32_t>(skip);
        s.n_tokens = static_cast<int32_t>(run);
        s.first_pos = layout_.sinks + static_cast<int32_t>(b);
        s.kivi.nbits = layout_.cfg.nbits;
        s.kivi.group = g;
        s.kivi.head_dim = layout_.shape.head_dim;
        b += run;
    }
}

KvView KvCache::view(int32_t layer, int32_t n_pending) {
    const LayerBuffers& lb = staged() ? stage(layer) : layers_[static_cast<size_t>(layer)];
    KvView view;
    view.window = layout_.ring_len;
    const int32_t total = len_ + n_pending;
    const int32_t in_sink = std::min(total, layout_.sinks);
    if (in_sink > 0) {
        KvSegment& s = view.seg[view.n_segments++];
        s.k = lb.t[kSinkK].row_range(0, in_sink);
        s.v = lb.t[kSinkV].row_range(0, in_sink);
        s.n_tokens = in_sink;
        s.pinned = true;
        view.pinned_query_pos = layout_.cfg.window_length - 1;
    }
    const int32_t body_end = layout_.body_of(total);
    int32_t b = layout_.first_visible_body(len_);
    if (layout_.kivi && b < q_target_) {
        add_kivi_runs(view, lb, b, q_target_);
        b = q_target_;
    }
    if (b < body_end) add_plain_runs(view, lb, kPlainK, b, body_end);
    if (staged() && layer + 1 < layout_.shape.n_layers) stage(layer + 1);  // prefetch
    return view;
}

void KvCache::commit(const int32_t* ids, int32_t n) {
    tokens_.append(ids, n);
    len_ += n;
    forwarded_ += static_cast<uint64_t>(n);
    q_end_ = q_target_;
}

int32_t KvCache::oldest_plain_held() const {
    if (!layout_.plain_ring) return layout_.kivi ? q_end_ : 0;
    return std::max(0, ring_end() - layout_.plain_ring_rows);
}

Status KvCache::check_crop(int32_t new_len) const {
    if (new_len < 0 || new_len > len_)
        return Error(EKV_ERR_INVALID_ARGUMENT, "cannot crop a cache of %d tokens to %d", len_, new_len);
    if (new_len == len_) return Status::Ok();
    const KvLayout& l = layout_;
    const int32_t new_body = l.body_of(new_len);
    const int32_t need_from = l.first_visible_body(new_len);
    const int32_t new_q = cropped_q_end(new_len);
    const int32_t plain_from = std::max(need_from, new_q);
    if (plain_from < new_body && plain_from < oldest_plain_held())
        return Error(EKV_ERR_INVALID_STATE,
                     "cannot crop the %s cache to %d tokens: it no longer holds the full-precision keys of token %d "
                     "(held from %d); reset and recompute instead",
                     ekv_cache_type_name(type()), new_len, l.sinks + plain_from, l.sinks + oldest_plain_held());
    if (l.group_ring && need_from < new_q) {
        const int32_t oldest_group = std::max<int32_t>(0, quantized_written() / l.group - l.group_ring_rows + 1);
        if (need_from < oldest_group * l.group)
            return Error(EKV_ERR_INVALID_STATE, "cannot crop the %s cache to %d tokens: its ring dropped token %d",
                         ekv_cache_type_name(type()), new_len, l.sinks + need_from);
    }
    // A ring folded the ids beyond its rings' reach (token_history.h); the
    // rows above can allow more (a window of one token needs no old rows).
    if (!tokens_.can_truncate(new_len))
        return Error(EKV_ERR_INVALID_STATE,
                     "cannot crop the %s cache to %d tokens: it no longer holds their token ids; reset and recompute "
                     "instead",
                     ekv_cache_type_name(type()), new_len);
    return Status::Ok();
}

int32_t KvCache::cropped_q_end(int32_t new_len) const {
    const KvLayout& l = layout_;
    return l.kivi ? std::min(q_end_, l.body_of(new_len) / l.group * l.group) : 0;
}

Status KvCache::crop(int32_t new_len) {
    EKV_TRY(check_crop(new_len));
    if (new_len == len_) return Status::Ok();
    q_end_ = q_target_ = cropped_q_end(new_len);
    len_ = new_len;
    tokens_.truncate(new_len);  // check_crop made sure it can
    staged_layer_ = {{-1, -1}};
    return Status::Ok();
}

void KvCache::reset() {
    len_ = 0;
    q_end_ = q_target_ = 0;
    stored_body_ = stored_q_ = 0;
    tokens_.clear();
    staged_layer_ = {{-1, -1}};
}

Status KvCache::clone(Backend& backend, std::unique_ptr<Cache>* out) const {
    std::unique_ptr<KvCache> c(new (std::nothrow) KvCache(layout_, backend));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    c->limit_ = limit_;
    c->len_ = len_;  // before allocate: copy_used sizes by the state
    c->q_end_ = c->q_target_ = q_end_;
    c->stored_body_ = stored_body_;
    c->stored_q_ = stored_q_;
    EKV_TRY(c->allocate(plain_rows_, groups_));
    for (size_t i = 0; i < layers_.size(); ++i)
        copy_used(layers_[i], c->layers_[i], backend);
    backend.synchronize();
    EKV_TRY(backend.take_error());
    c->tokens_ = tokens_;
    *out = std::move(c);
    return Status::Ok();
}

bool KvCache::rewindable(int32_t n_new) const {
    const KvLayout& l = layout_;
    if (l.group_ring) return false;
    if (!l.plain_ring) return true;
    // crop(len_) needs the full-precision rows from `needed` on (a lower
    // bound: more groups may be quantized by then); the ring keeps the
    // newest plain_ring_rows.
    int32_t needed = l.first_visible_body(len_);
    if (l.kivi) needed = std::max(needed, cropped_q_end(len_));
    const int32_t oldest_after = std::max(0, std::max(l.body_of(len_ + n_new), stored_body_) - l.plain_ring_rows);
    return oldest_after <= needed;
}

int32_t KvCache::tokens_held() const {
    return layout_.windowed() ? std::min(len_, layout_.cfg.window_length) : len_;
}

CacheStats KvCache::stats() const {
    const KvLayout& l = layout_;
    CacheStats s;
    s.seq_len = len_;
    s.capacity = capacity();
    s.tokens_held = tokens_held();
    const uint64_t n_layers = static_cast<uint64_t>(l.shape.n_layers);
    if (l.kivi) {
        const uint64_t per_group = l.key_group_bytes + static_cast<uint64_t>(l.group) * l.value_row_bytes;
        s.bytes_per_token = n_layers * ((per_group + l.group - 1) / l.group);
    } else {
        s.bytes_per_token = n_layers * 2 * l.plain_row_bytes;
    }
    auto add_set = [&](const LayerBuffers& lb, bool staging) {
        for (const auto& b : lb.buf) {
            if (!b) continue;
            if (staging || b->placement() == Placement::Device)
                s.device_bytes += b->size();
            else
                s.host_bytes += b->size();
        }
    };
    for (const LayerBuffers& lb : layers_) add_set(lb, false);
    if (staged())
        for (const LayerBuffers& lb : staging_) add_set(lb, true);
    // Live tokens: sinks, the quantized groups and the full-precision rows.
    const int32_t body = l.body_of(len_);
    const int32_t live_body = l.windowed() ? std::min(body, l.ring_len) : body;
    const int32_t live_fp = l.kivi ? std::min(live_body, body - q_end_) : live_body;
    const int32_t live_q = live_body - live_fp;
    const uint64_t per_layer = 2ull * l.plain_row_bytes * static_cast<uint64_t>(std::min(len_, l.sinks) + live_fp) +
                               (l.kivi ? static_cast<uint64_t>((live_q + l.group - 1) / l.group) * l.key_group_bytes +
                                             static_cast<uint64_t>(live_q) * l.value_row_bytes
                                       : 0);
    s.used_bytes = n_layers * per_layer;
    return s;
}

}  // namespace ekv
