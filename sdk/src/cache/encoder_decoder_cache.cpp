#include "cache/encoder_decoder_cache.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "cache/cache_io.h"

namespace ekv {
namespace {

// Cache file body: this header, the self-attention KvCache body, then each
// layer's cross K and V rows (cross_len rows each).
struct CrossBodyHeader {
    uint32_t n_layers, kv_width, cross_len, cross_dtype;
    uint64_t forwarded;
};

}  // namespace

EncoderDecoderCache::EncoderDecoderCache(const CacheShape& shape, Backend& backend, DType cross_dtype)
    : shape_(shape), backend_(&backend), cross_dtype_(cross_dtype), cross_(static_cast<size_t>(shape.n_layers)) {}

CacheShape EncoderDecoderCache::self_shape(const CacheShape& shape) {
    CacheShape s = shape;
    s.cross_len = 0;
    return s;
}

DType EncoderDecoderCache::cross_dtype_for(const CacheConfig& config) {
    return config.storage == KvStorage::Plain && config.kv_dtype == DType::F32 ? DType::F32 : DType::F16;
}

Placement EncoderDecoderCache::cross_placement_for(const CacheConfig& config) {
    return config.placement == Placement::Unified ? Placement::Unified : Placement::Device;
}

Placement EncoderDecoderCache::cross_placement() const { return cross_placement_for(config()); }

CacheBytes EncoderDecoderCache::cross_bytes(const CacheConfig& config, const CacheShape& shape) {
    CacheBytes b;
    const uint64_t bytes = 2ull * static_cast<uint64_t>(shape.n_layers) *
                           dtype_row_bytes(cross_dtype_for(config), shape.kv_width()) *
                           static_cast<uint64_t>(shape.cross_len);
    (cross_placement_for(config) == Placement::Device ? b.device : b.host) = bytes;
    return b;
}

Status EncoderDecoderCache::size(const CacheConfig& config, const CacheShape& shape,
                                 const DeviceDescription& device, int32_t tokens, CacheSize* out) {
    EKV_TRY(check_shape(shape));
    const CacheBytes cross = cross_bytes(config, shape);
    CacheSize s = KvCache::size(config, self_shape(shape), device, limit_less(byte_limit(config), cross.total()),
                                tokens);
    s.at_tokens += cross;  // the created cache has no cross KV until an input is encoded
    judge_size(&s, tokens, byte_limit(config));
    *out = s;
    return Status::Ok();
}

Status EncoderDecoderCache::check_shape(const CacheShape& shape) {
    if (shape.cross_len <= 0)
        return Error(EKV_ERR_UNSUPPORTED, "cache type 'encoder_decoder' needs an encoder-decoder model");
    if (shape.count(LayerKind::Attention) != shape.n_layers)
        return Error(EKV_ERR_UNSUPPORTED, "an encoder-decoder cache needs a decoder of global attention layers");
    return Status::Ok();
}

size_t EncoderDecoderCache::cross_row_bytes() const { return dtype_row_bytes(cross_dtype_, shape_.kv_width()); }

Status EncoderDecoderCache::create(const CacheConfig& config, const CacheShape& shape, Backend& backend,
                                   std::unique_ptr<Cache>* out) {
    EKV_TRY(check_shape(shape));
    std::unique_ptr<EncoderDecoderCache> c(
        new (std::nothrow) EncoderDecoderCache(shape, backend, cross_dtype_for(config)));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    // The budget keeps room for a whole input's cross-attention KV (allocated
    // by the first encode); the self-attention KV grows within the rest.
    const uint64_t cross = cross_bytes(config, shape).total();
    if (cross > byte_limit(config))
        return Error(EKV_ERR_OUT_OF_MEMORY,
                     "the cross-attention KV of a %d-position input takes %s, more than the cache's memory budget of %s",
                     shape.cross_len, describe_bytes(cross).c_str(), describe_bytes(byte_limit(config)).c_str());
    std::unique_ptr<Cache> part;
    const Status st =
        KvCache::create_within(config, self_shape(shape), backend, limit_less(byte_limit(config), cross), &part);
    if (!st.ok())
        return Error(st.code(), "%s (the cross-attention KV takes %s of it)", st.message().c_str(),
                     describe_bytes(cross).c_str());
    c->self_.reset(static_cast<KvCache*>(part.release()));
    *out = std::move(c);
    return Status::Ok();
}

Status EncoderDecoderCache::prepare(int32_t n_new) {
    EKV_TRY(self_->prepare(n_new));
    // Like KvCache's own id list: grown here, never per token in commit().
    return tokens_.reserve(n_new, 0);
}

void EncoderDecoderCache::commit(const int32_t* ids, int32_t n) {
    self_->commit(ids, n);
    tokens_.append(ids, n);
    forwarded_ += static_cast<uint64_t>(n);
}

Status EncoderDecoderCache::crop(int32_t new_len) {
    EKV_TRY(self_->crop(new_len));
    tokens_.truncate(self_->seq_len());  // the self-attention part keeps every position: never refused
    return Status::Ok();
}

void EncoderDecoderCache::reset() {
    self_->reset();
    tokens_.clear();
    cross_len_ = 0;  // the buffers stay for the next input
}

Status EncoderDecoderCache::allocate_cross(int32_t positions) {
    std::vector<CrossLayer> fresh(cross_.size());
    const size_t row = cross_row_bytes();
    for (CrossLayer& l : fresh) {
        EKV_TRY(backend_->alloc(row * static_cast<size_t>(positions), cross_placement(), &l.k_buf));
        EKV_TRY(backend_->alloc(row * static_cast<size_t>(positions), cross_placement(), &l.v_buf));
        for (int kv = 0; kv < 2; ++kv) {
            Tensor& t = kv ? l.v : l.k;
            Buffer* b = kv ? l.v_buf.get() : l.k_buf.get();
            t.type = cross_dtype_;
            t.cols = shape_.kv_width();
            t.rows = positions;
            t.row_bytes = row;
            t.buffer = b;
            t.data = b->host();
        }
    }
    cross_ = std::move(fresh);
    cross_capacity_ = positions;
    return Status::Ok();
}

Status EncoderDecoderCache::prepare_cross(int32_t n_positions) {
    if (n_positions <= 0 || n_positions > shape_.cross_len)
        return Error(EKV_ERR_INVALID_ARGUMENT, "%d encoder positions (the model has %d)", n_positions,
                     shape_.cross_len);
    if (n_positions > cross_capacity_) EKV_TRY(allocate_cross(n_positions));
    reset();  // a new input: what the decoder saw of the previous one is stale
    return Status::Ok();
}

void EncoderDecoderCache::store_cross(Backend& backend, int32_t layer, const Tensor& k, const Tensor& v) {
    CrossLayer& l = cross_[static_cast<size_t>(layer)];
    backend.copy_rows(k, l.k, 0);
    backend.copy_rows(v, l.v, 0);
}

void EncoderDecoderCache::commit_cross(int32_t n_positions) { cross_len_ = std::min(n_positions, cross_capacity_); }

KvView EncoderDecoderCache::cross_view(int32_t layer) {
    KvView view;
    if (cross_len_ <= 0) return view;
    const CrossLayer& l = cross_[static_cast<size_t>(layer)];
    KvSegment& s = view.seg[view.n_segments++];
    s.k = l.k.row_range(0, cross_len_);
    s.v = l.v.row_range(0, cross_len_);
    s.n_tokens = cross_len_;
    return view;
}

Status EncoderDecoderCache::clone(Backend& backend, std::unique_ptr<Cache>* out) const {
    std::unique_ptr<EncoderDecoderCache> c(new (std::nothrow) EncoderDecoderCache(shape_, backend, cross_dtype_));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    std::unique_ptr<Cache> part;
    EKV_TRY(self_->clone(backend, &part));
    c->self_.reset(static_cast<KvCache*>(part.release()));
    if (cross_len_ > 0) {
        EKV_TRY(c->allocate_cross(cross_len_));
        for (size_t i = 0; i < cross_.size(); ++i) {
            backend.copy_raw(cross_[i].k, c->cross_[i].k, cross_len_);
            backend.copy_raw(cross_[i].v, c->cross_[i].v, cross_len_);
        }
        backend.synchronize();
        EKV_TRY(backend.take_error());
    }
    c->cross_len_ = cross_len_;
    c->tokens_ = tokens_;
    c->forwarded_ = forwarded_;
    *out = std::move(c);
    return Status::Ok();
}

CacheStats EncoderDecoderCache::stats() const {
    CacheStats s = self_->stats();
    const uint64_t allocated = 2ull * cross_.size() * cross_row_bytes() * static_cast<uint64_t>(cross_capacity_);
    if (cross_placement() == Placement::Device)
        s.device_bytes += allocated;
    else
        s.host_bytes += allocated;
    s.used_bytes += 2ull * cross_.size() * cross_row_bytes() * static_cast<uint64_t>(cross_len_);
    return s;
}

Status EncoderDecoderCache::save(const CacheFile& file) const {
    return write_cache_file(file, CacheFileKind::EncoderDecoder, shape_.model_fingerprint, [this](CacheFileWriter& w) {
        CrossBodyHeader h;
        std::memset(&h, 0, sizeof h);
        h.n_layers = static_cast<uint32_t>(shape_.n_layers);
        h.kv_width = static_cast<uint32_t>(shape_.kv_width());
        h.cross_len = static_cast<uint32_t>(cross_len_);
        h.cross_dtype = static_cast<uint32_t>(cross_dtype_);
        h.forwarded = forwarded_;
        if (!w.value(h)) return Error(EKV_ERR_IO, "cannot write the cache file (disk full?)");
        EKV_TRY(self_->write_body(w));
        const size_t bytes = cross_row_bytes() * static_cast<size_t>(cross_len_);
        if (bytes == 0) return Status::Ok();
        std::unique_ptr<Buffer> host;  // device memory is read through a host buffer
        EKV_TRY(backend_->alloc(bytes, Placement::Host, &host));
        for (const CrossLayer& l : cross_) {
            for (Buffer* b : {l.k_buf.get(), l.v_buf.get()}) {
                backend_->copy_bytes(*b, 0, *host, 0, bytes);
                backend_->synchronize();
                EKV_TRY(backend_->take_error());
                if (!w.write(host->host(), bytes)) return Error(EKV_ERR_IO, "cannot write the cache file (disk full?)");
            }
        }
        return Status::Ok();
    });
}

Status EncoderDecoderCache::read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                                      std::unique_ptr<Cache>* out) {
    CrossBodyHeader h;
    EKV_TRY(r.value(&h, "encoder-decoder header"));
    if (shape.cross_len <= 0)
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s holds an encoder-decoder cache; the model has no encoder",
                     r.path().c_str());
    if (static_cast<int32_t>(h.n_layers) != shape.n_layers || static_cast<int64_t>(h.kv_width) != shape.kv_width())
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s has %u layers of %u KV channels; the model %d of %lld",
                     r.path().c_str(), h.n_layers, h.kv_width, shape.n_layers,
                     static_cast<long long>(shape.kv_width()));
    if (h.cross_len > static_cast<uint32_t>(shape.cross_len) ||
        (h.cross_dtype != static_cast<uint32_t>(DType::F16) && h.cross_dtype != static_cast<uint32_t>(DType::F32)))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an invalid cross-attention header", r.path().c_str());
    std::unique_ptr<Cache> self;
    EKV_TRY(KvCache::read_body(r, self_shape(shape), backend, &self));
    const DType dtype = static_cast<DType>(h.cross_dtype);
    if (dtype != cross_dtype_for(self->config()))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s: cross-attention type does not match its configuration",
                     r.path().c_str());
    std::unique_ptr<EncoderDecoderCache> c(new (std::nothrow) EncoderDecoderCache(shape, backend, dtype));
    if (!c) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate cache");
    c->self_.reset(static_cast<KvCache*>(self.release()));
    c->tokens_ = c->self_->tokens();
    c->forwarded_ = h.forwarded;
    const int32_t positions = static_cast<int32_t>(h.cross_len);
    if (positions > 0) {
        EKV_TRY(c->allocate_cross(positions));
        const size_t bytes = c->cross_row_bytes() * static_cast<size_t>(positions);
        std::unique_ptr<Buffer> host;
        EKV_TRY(backend.alloc(bytes, Placement::Host, &host));
        for (CrossLayer& l : c->cross_) {
            for (Buffer* b : {l.k_buf.get(), l.v_buf.get()}) {
                EKV_TRY(r.read(host->host(), bytes, "cross-attention KV"));
                backend.copy_bytes(*host, 0, *b, 0, bytes);
                backend.synchronize();  // the host buffer is reused by the next copy
            }
        }
        EKV_TRY(backend.take_error());
    }
    c->cross_len_ = positions;
    *out = std::move(c);
    return Status::Ok();
}

}  // namespace ekv
