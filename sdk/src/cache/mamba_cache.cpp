#include "cache/mamba_cache.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>

#include "cache/cache_io.h"

namespace ekv {
namespace {

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

// A Recurrent cache file body: shape, configuration, state, token ids, then
// each recurrent layer's conv and SSM state (packed F32).
struct MambaBodyHeader {
    uint32_t n_layers, n_recurrent, conv_rows, conv_cols, ssm_rows, ssm_cols;
    uint32_t type, retention, placement;
    int32_t max_cache_len, len;
    uint32_t reserved;
    uint64_t n_tokens, forwarded;
};

Status check_shape(const CacheShape& shape) {
    const RecurrentShape& r = shape.recurrent;
    if (shape.count(LayerKind::Recurrent) == 0)
        return Error(EKV_ERR_UNSUPPORTED, "this model has no recurrent (Mamba) layers to keep a state for");
    if (r.conv_rows < 0 || r.conv_cols <= 0 || r.ssm_rows <= 0 || r.ssm_cols <= 0 || r.conv_cols > (1 << 20) ||
        r.conv_rows > 64 || r.ssm_rows > (1 << 20) || r.ssm_cols > 4096)
        return Error(EKV_ERR_INTERNAL, "invalid recurrent state shape %dx%d / %dx%d", r.conv_rows, r.conv_cols,
                     r.ssm_rows, r.ssm_cols);
    return Status::Ok();
}

// Bytes from the read position to the end of the file.
uint64_t bytes_left(FILE* f) {
    const long pos = std::ftell(f);
    if (pos < 0 || std::fseek(f, 0, SEEK_END) != 0) return 0;
    const long end = std::ftell(f);
    if (std::fseek(f, pos, SEEK_SET) != 0 || end < pos) return 0;
    return static_cast<uint64_t>(end - pos);
}

}  // namespace

uint64_t MambaCache::state_bytes(const CacheShape& shape) {
    const RecurrentShape& r = shape.recurrent;
    const uint64_t layer = align64(static_cast<size_t>(r.conv_rows) * static_cast<size_t>(r.conv_cols) * sizeof(float)) +
                           align64(static_cast<size_t>(r.ssm_rows) * static_cast<size_t>(r.ssm_cols) * sizeof(float));
    return 2 * layer * static_cast<uint64_t>(shape.count(LayerKind::Recurrent));
}

Status MambaCache::size(const CacheConfig& config, const CacheShape& shape, int32_t tokens, CacheSize* out) {
    EKV_TRY(check_standalone(config, shape));
    CacheSize s;
    (config.placement == Placement::Device ? s.created.device : s.created.host) = state_bytes(shape);
    s.at_tokens = s.created;
    s.tokens_held = tokens;
    if (config.retention == Retention::Fixed && config.max_cache_len > 0) s.capacity = s.max_tokens = config.max_cache_len;
    judge_size(&s, tokens, byte_limit(config));
    *out = s;
    return Status::Ok();
}

CacheSize MambaCache::part_size(const CacheShape& shape, int32_t tokens) {
    CacheSize s;
    s.created.device = state_bytes(shape);  // create_part keeps the state in device memory
    s.at_tokens = s.created;
    s.tokens_held = tokens;
    return s;
}

Status MambaCache::check_standalone(const CacheConfig& config, const CacheShape& shape) {
    EKV_TRY(check_shape(shape));
    const int32_t n_attention = shape.n_layers - shape.count(LayerKind::Recurrent);
    if (n_attention > 0)
        return Error(EKV_ERR_UNSUPPORTED,
                     "cache type 'mamba' keeps recurrent state only; this model also has %d attention layers (use "
                     "'hybrid_mamba')",
                     n_attention);
    if (config.placement == Placement::Host)
        return Error(EKV_ERR_UNSUPPORTED,
                     "cache type 'mamba' keeps a small fixed recurrent state that does not grow with the sequence; "
                     "offloading it to host memory saves nothing (use device or unified placement)");
    return Status::Ok();
}

MambaCache::MambaCache(const CacheConfig& config, const CacheShape& shape, Backend& backend)
    : config_(config), shape_(shape), backend_(&backend) {
    for (int32_t i = 0; i < shape.n_layers; ++i)
        slot_of_layer_.push_back(shape.kind(i) == LayerKind::Recurrent ? n_recurrent_++ : -1);
    const RecurrentShape& r = shape.recurrent;
    conv_bytes_ = align64(static_cast<size_t>(r.conv_rows) * static_cast<size_t>(r.conv_cols) * sizeof(float));
    ssm_bytes_ = align64(static_cast<size_t>(r.ssm_rows) * static_cast<size_t>(r.ssm_cols) * sizeof(float));
    layer_bytes_ = conv_bytes_ + ssm_bytes_;
}

Status MambaCache::create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                          std::unique_ptr<Cache>* out) {
    EKV_TRY(check_standalone(config, shape));
    if (state_bytes(shape) > byte_limit(config))
        return Error(EKV_ERR_OUT_OF_MEMORY, "the mamba cache's recurrent state takes %s, more than its memory budget of %s",
                     describe_bytes(state_bytes(shape)).c_str(), describe_bytes(byte_limit(config)).c_str());
    std::unique_ptr<MambaCache> c(new (std::nothrow) MambaCache(config, shape, backend));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    EKV_TRY(c->allocate());
    *out = std::move(c);
    return Status::Ok();
}

Status MambaCache::create_part(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                               std::unique_ptr<MambaCache>* out) {
    EKV_TRY(check_shape(shape));
    CacheConfig c = config;
    c.placement = Placement::Device;
    std::unique_ptr<MambaCache> m(new (std::nothrow) MambaCache(c, shape, backend));
    if (!m) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    EKV_TRY(m->allocate());
    *out = std::move(m);
    return Status::Ok();
}

Status MambaCache::allocate() {
    EKV_TRY(backend_->alloc(2 * set_bytes(), config_.placement, &states_));
    current_ = 0;
    return zero_current();
}

Status MambaCache::zero_current() {
    const size_t bytes = set_bytes();
    const size_t offset = static_cast<size_t>(current_) * bytes;
    if (void* p = states_->host()) {
        std::memset(static_cast<uint8_t*>(p) + offset, 0, bytes);
        return Status::Ok();
    }
    std::unique_ptr<Buffer> zeros;
    EKV_TRY(backend_->alloc(bytes, Placement::Host, &zeros));
    if (!zeros->host()) return Error(EKV_ERR_INTERNAL, "host buffer is not addressable");
    std::memset(zeros->host(), 0, bytes);
    backend_->copy_bytes(*zeros, 0, *states_, offset, bytes);
    backend_->synchronize();
    return backend_->take_error();
}

Tensor MambaCache::state_tensor(int set, int32_t slot, bool ssm) const {
    const RecurrentShape& r = shape_.recurrent;
    Tensor t;
    t.type = DType::F32;
    t.cols = ssm ? r.ssm_cols : r.conv_cols;
    t.rows = ssm ? r.ssm_rows : r.conv_rows;
    t.row_bytes = static_cast<size_t>(t.cols) * sizeof(float);
    t.buffer = states_.get();
    t.offset = static_cast<size_t>(set) * set_bytes() + static_cast<size_t>(slot) * layer_bytes_ +
               (ssm ? conv_bytes_ : 0);
    if (void* p = states_->host()) t.data = static_cast<uint8_t*>(p) + t.offset;
    return t;
}

int32_t MambaCache::max_seq_len() const {
    return config_.retention == Retention::Fixed && config_.max_cache_len > 0 ? config_.max_cache_len : -1;
}

// The states never grow; only the id list does.
Status MambaCache::prepare(int32_t n_new) {
    if (!reset_error_.ok())
        return Error(reset_error_.code(), "the cache could not be reset: %s", reset_error_.message().c_str());
    return tokens_.reserve(n_new, max_seq_len());
}

void MambaCache::store(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) {
    (void)backend, (void)layer, (void)k, (void)v;
}

KvView MambaCache::view(int32_t layer, int32_t n_pending) {
    (void)layer, (void)n_pending;
    return KvView();
}

bool MambaCache::recurrent_state(int32_t layer, RecurrentState* out) {
    if (layer < 0 || layer >= shape_.n_layers || !out) return false;
    const int32_t slot = slot_of_layer_[static_cast<size_t>(layer)];
    if (slot < 0) return false;
    out->conv_in = state_tensor(current_, slot, false);
    out->ssm_in = state_tensor(current_, slot, true);
    out->conv_out = state_tensor(1 - current_, slot, false);
    out->ssm_out = state_tensor(1 - current_, slot, true);
    return true;
}

void MambaCache::commit(const int32_t* ids, int32_t n) {
    if (n <= 0) return;
    current_ = 1 - current_;  // every layer wrote its *_out set
    tokens_.append(ids, n);
    forwarded_ += static_cast<uint64_t>(n);
    len_ += n;
}

Status MambaCache::check_crop(int32_t new_len) const {
    if (new_len == len_) return Status::Ok();
    if (new_len < 0 || new_len > len_)
        return Error(EKV_ERR_INVALID_ARGUMENT, "crop to %d tokens: the cache holds %d", new_len, len_);
    return Error(EKV_ERR_INVALID_STATE,
                 "cannot crop to %d tokens: a recurrent (Mamba) state summarizes all %d tokens and cannot be rewound "
                 "(reset and recompute the prefix, or clone the cache before the tokens to drop)",
                 new_len, len_);
}

Status MambaCache::crop(int32_t new_len) { return check_crop(new_len); }

void MambaCache::reset() {
    reset_error_ = zero_current();
    tokens_.clear();
    len_ = 0;
}

Status MambaCache::clone_part(Backend& backend, std::unique_ptr<MambaCache>* out) const {
    std::unique_ptr<MambaCache> c(new (std::nothrow) MambaCache(config_, shape_, backend));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    EKV_TRY(backend.alloc(states_->size(), config_.placement, &c->states_));
    backend.copy_bytes(*states_, 0, *c->states_, 0, states_->size());
    backend.synchronize();
    EKV_TRY(backend.take_error());
    c->current_ = current_;
    c->len_ = len_;
    c->tokens_ = tokens_;
    c->forwarded_ = forwarded_;
    c->reset_error_ = reset_error_;
    *out = std::move(c);
    return Status::Ok();
}

Status MambaCache::clone(Backend& backend, std::unique_ptr<Cache>* out) const {
    std::unique_ptr<MambaCache> c;
    EKV_TRY(clone_part(backend, &c));
    *out = std::move(c);
    return Status::Ok();
}

CacheStats MambaCache::stats() const {
    CacheStats s;
    s.seq_len = len_;
    s.capacity = -1;
    s.tokens_held = len_;
    if (states_->placement() == Placement::Device)
        s.device_bytes = states_->size();
    else
        s.host_bytes = states_->size();
    s.used_bytes = set_bytes();  // the committed state; the other set is the next chunk's output
    s.bytes_per_token = 0;
    return s;
}

Status MambaCache::save(const CacheFile& file) const {
    return write_cache_file(file, CacheFileKind::Recurrent, shape_.model_fingerprint,
                            [this](CacheFileWriter& w) { return write_body(w); });
}

Status MambaCache::write_body(CacheFileWriter& w) const {
    const RecurrentShape& r = shape_.recurrent;
    MambaBodyHeader h;
    std::memset(&h, 0, sizeof h);
    h.n_layers = static_cast<uint32_t>(shape_.n_layers);
    h.n_recurrent = static_cast<uint32_t>(n_recurrent_);
    h.conv_rows = static_cast<uint32_t>(r.conv_rows);
    h.conv_cols = static_cast<uint32_t>(r.conv_cols);
    h.ssm_rows = static_cast<uint32_t>(r.ssm_rows);
    h.ssm_cols = static_cast<uint32_t>(r.ssm_cols);
    h.type = static_cast<uint32_t>(config_.type);
    h.retention = static_cast<uint32_t>(config_.retention);
    h.placement = static_cast<uint32_t>(config_.placement);
    h.max_cache_len = config_.max_cache_len;
    h.len = len_;
    const std::vector<int32_t>& ids = tokens_.kept();  // every id: a recurrent cache never folds
    h.n_tokens = ids.size();
    h.forwarded = forwarded_;
    // (No pointer is passed for an empty id list: fwrite's must not be null.)
    if (!w.write(&h, sizeof h) || (!ids.empty() && !w.write(ids.data(), ids.size() * sizeof(int32_t))))
        return Error(EKV_ERR_IO, "cannot write the cache file (disk full?)");

    // The committed set, read through host memory.
    std::unique_ptr<Buffer> host;
    EKV_TRY(backend_->alloc(set_bytes(), Placement::Host, &host));
    backend_->copy_bytes(*states_, static_cast<size_t>(current_) * set_bytes(), *host, 0, set_bytes());
    backend_->synchronize();
    EKV_TRY(backend_->take_error());
    const uint8_t* p = static_cast<const uint8_t*>(host->host());
    const size_t conv_used = static_cast<size_t>(r.conv_rows) * r.conv_cols * sizeof(float);
    const size_t ssm_used = static_cast<size_t>(r.ssm_rows) * r.ssm_cols * sizeof(float);
    for (int32_t slot = 0; slot < n_recurrent_; ++slot) {
        const uint8_t* layer = p + static_cast<size_t>(slot) * layer_bytes_;
        if (!w.write(layer, conv_used) || !w.write(layer + conv_bytes_, ssm_used))
            return Error(EKV_ERR_IO, "cannot write the cache file (disk full?)");
    }
    return Status::Ok();
}

Status MambaCache::read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend, bool require_standalone,
                             std::unique_ptr<MambaCache>* out) {
    const std::string& path = r.path();
    MambaBodyHeader h;
    EKV_TRY(r.value(&h, "recurrent state header"));
    const RecurrentShape& rs = shape.recurrent;
    if (static_cast<int32_t>(h.n_layers) != shape.n_layers ||
        static_cast<int32_t>(h.n_recurrent) != shape.count(LayerKind::Recurrent) ||
        static_cast<int32_t>(h.conv_rows) != rs.conv_rows || static_cast<int32_t>(h.conv_cols) != rs.conv_cols ||
        static_cast<int32_t>(h.ssm_rows) != rs.ssm_rows || static_cast<int32_t>(h.ssm_cols) != rs.ssm_cols)
        return Error(EKV_ERR_MODEL_MISMATCH,
                     "cache file %s holds %u recurrent layers of %u layers with states %ux%u / %ux%u; the model has "
                     "%d of %d with %dx%d / %dx%d",
                     path.c_str(), h.n_recurrent, h.n_layers, h.conv_rows, h.conv_cols, h.ssm_rows, h.ssm_cols,
                     shape.count(LayerKind::Recurrent), shape.n_layers, rs.conv_rows, rs.conv_cols, rs.ssm_rows,
                     rs.ssm_cols);
    const bool type_ok = require_standalone ? h.type == EKV_CACHE_MAMBA
                                            : (h.type == EKV_CACHE_MAMBA || h.type == EKV_CACHE_HYBRID_MAMBA);
    const bool retention_ok = h.retention == static_cast<uint32_t>(Retention::Unbounded) ||
                              (h.retention == static_cast<uint32_t>(Retention::Fixed) && h.max_cache_len > 0);
    const bool placement_ok = h.placement == static_cast<uint32_t>(Placement::Device) ||
                              h.placement == static_cast<uint32_t>(Placement::Unified);
    if (!type_ok || !retention_ok || !placement_ok || h.len < 0 || h.n_tokens != static_cast<uint64_t>(h.len) ||
        h.forwarded < h.n_tokens || (h.retention == static_cast<uint32_t>(Retention::Fixed) && h.len > h.max_cache_len))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an invalid recurrent cache header", path.c_str());

    // Refuse a truncated file before allocating what its header claims.
    const uint64_t state_bytes = static_cast<uint64_t>(h.n_recurrent) *
                                 (static_cast<uint64_t>(h.conv_rows) * h.conv_cols +
                                  static_cast<uint64_t>(h.ssm_rows) * h.ssm_cols) * sizeof(float);
    if (bytes_left(r.file()) < h.n_tokens * sizeof(int32_t) + state_bytes)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s is truncated (recurrent state)", path.c_str());

    CacheConfig c;
    c.type = static_cast<ekv_cache_type>(h.type);
    c.retention = static_cast<Retention>(h.retention);
    c.placement = static_cast<Placement>(h.placement);
    c.max_cache_len = c.retention == Retention::Fixed ? h.max_cache_len : 0;
    std::unique_ptr<MambaCache> made;
    if (require_standalone) {
        std::unique_ptr<Cache> any;
        EKV_TRY(create(c, shape, backend, &any));
        made.reset(static_cast<MambaCache*>(any.release()));
    } else {
        EKV_TRY(create_part(c, shape, backend, &made));
    }
    std::vector<int32_t> ids(static_cast<size_t>(h.n_tokens));
    if (!ids.empty()) EKV_TRY(r.read(ids.data(), ids.size() * sizeof(int32_t), "token ids"));
    made->tokens_.restore(0, 0, std::move(ids));  // nothing folded: cannot fail
    made->len_ = h.len;
    made->forwarded_ = h.forwarded;

    std::unique_ptr<Buffer> host;
    EKV_TRY(backend.alloc(made->set_bytes(), Placement::Host, &host));
    uint8_t* p = static_cast<uint8_t*>(host->host());
    std::memset(p, 0, made->set_bytes());
    const size_t conv_used = static_cast<size_t>(rs.conv_rows) * rs.conv_cols * sizeof(float);
    const size_t ssm_used = static_cast<size_t>(rs.ssm_rows) * rs.ssm_cols * sizeof(float);
    for (int32_t slot = 0; slot < made->n_recurrent_; ++slot) {
        uint8_t* layer = p + static_cast<size_t>(slot) * made->layer_bytes_;
        EKV_TRY(r.read(layer, conv_used, "convolution state"));
        EKV_TRY(r.read(layer + made->conv_bytes_, ssm_used, "SSM state"));
    }
    backend.copy_bytes(*host, 0, *made->states_, 0, made->set_bytes());  // set 0 is current
    backend.synchronize();
    EKV_TRY(backend.take_error());
    *out = std::move(made);
    return Status::Ok();
}

Status read_recurrent_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                                 std::unique_ptr<Cache>* out) {
    std::unique_ptr<MambaCache> made;
    EKV_TRY(MambaCache::read_body(r, shape, backend, true, &made));
    *out = std::move(made);
    return Status::Ok();
}

}  // namespace ekv
