// Cache files: a header (format version, the model's fingerprint and shape,
// the cache's configuration and state), the token ids, each layer's live
// bytes slot by slot, and an FNV-1a checksum of everything before it.
// Loading builds a new cache and hands it out only when every check passed,
// so a bad file changes nothing.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include "cache/kv_cache.h"
#include "core/hash.h"

namespace ekv {
namespace {

constexpr char kMagic[8] = {'E', 'K', 'V', 'C', 'A', 'C', 'H', 'E'};
constexpr uint32_t kVersion = 1;

struct FileHeader {
    char magic[8];
    uint32_t version;
    uint32_t n_layers, n_kv_heads, head_dim, max_chunk;
    uint64_t fingerprint;
    // configuration
    uint32_t type, retention, storage, placement, kv_dtype;
    int32_t max_cache_len, window_length, num_sink_tokens, nbits, q_group_size, residual_length;
    // state
    int32_t len, q_end;
    int64_t plain_rows, groups;
    uint64_t n_tokens;
    uint64_t forwarded;
};

struct FileCloser {
    void operator()(FILE* f) const {
        if (f) std::fclose(f);
    }
};
using File = std::unique_ptr<FILE, FileCloser>;

class Writer {
public:
    explicit Writer(FILE* f) : f_(f) {}
    bool write(const void* p, size_t n) {
        hash_.add(p, n);
        return std::fwrite(p, 1, n, f_) == n;
    }
    bool finish() {
        const uint64_t sum = hash_.value();
        return std::fwrite(&sum, 1, sizeof sum, f_) == sizeof sum;
    }

private:
    FILE* f_;
    Fnv1a64 hash_;
};

class Reader {
public:
    Reader(FILE* f, const std::string& path) : f_(f), path_(path) {}
    Status read(void* p, size_t n, const char* what) {
        if (std::fread(p, 1, n, f_) != n)
            return Error(EKV_ERR_INVALID_FILE, "cache file %s is truncated (reading %s)", path_.c_str(), what);
        hash_.add(p, n);
        return Status::Ok();
    }
    Status check_sum() {
        uint64_t sum = 0;
        if (std::fread(&sum, 1, sizeof sum, f_) != sizeof sum)
            return Error(EKV_ERR_INVALID_FILE, "cache file %s is truncated (no checksum)", path_.c_str());
        if (sum != hash_.value())
            return Error(EKV_ERR_INVALID_FILE, "cache file %s is corrupted (checksum mismatch)", path_.c_str());
        if (std::fgetc(f_) != EOF)
            return Error(EKV_ERR_INVALID_FILE, "cache file %s has trailing bytes", path_.c_str());
        return Status::Ok();
    }

private:
    FILE* f_;
    const std::string& path_;
    Fnv1a64 hash_;
};

bool in_range(uint32_t v, uint32_t hi) { return v <= hi; }

Status check_header(const FileHeader& h, const CacheShape& shape, const std::string& path) {
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
        return Error(EKV_ERR_INVALID_FILE, "%s is not an edgekv cache file", path.c_str());
    if (h.version != kVersion)
        return Error(EKV_ERR_UNSUPPORTED, "cache file %s has format version %u; this edgekv reads version %u",
                     path.c_str(), h.version, kVersion);
    if (h.fingerprint != shape.model_fingerprint)
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s was written for another model", path.c_str());
    if (static_cast<int32_t>(h.n_layers) != shape.n_layers ||
        static_cast<int32_t>(h.n_kv_heads) != shape.n_kv_heads ||
        static_cast<int32_t>(h.head_dim) != shape.head_dim)
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s has %u layers x %u kv heads x %u dims; the model %d x %d x %d",
                     path.c_str(), h.n_layers, h.n_kv_heads, h.head_dim, shape.n_layers, shape.n_kv_heads,
                     shape.head_dim);
    if (static_cast<int32_t>(h.max_chunk) != shape.max_chunk)
        return Error(EKV_ERR_UNSUPPORTED, "cache file %s was written with a forward chunk of %u tokens, not %d",
                     path.c_str(), h.max_chunk, shape.max_chunk);
    if (!in_range(h.type, EKV_CACHE_ENCODER_DECODER) || !in_range(h.retention, 3) || !in_range(h.storage, 1) ||
        !in_range(h.placement, 2) || (h.kv_dtype != static_cast<uint32_t>(DType::F16) &&
                                      h.kv_dtype != static_cast<uint32_t>(DType::F32)))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an invalid configuration", path.c_str());
    if (h.len < 0 || h.q_end < 0 || h.q_end > h.len || h.plain_rows < 0 || h.groups < 0 ||
        h.n_tokens > static_cast<uint64_t>(h.len) || h.plain_rows > (int64_t{1} << 31) || h.groups > (int64_t{1} << 31))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an invalid state", path.c_str());
    return Status::Ok();
}

}  // namespace

Status KvCache::save(const std::string& path) const {
    File f(std::fopen(path.c_str(), "wb"));
    if (!f) return Error(EKV_ERR_IO, "cannot create %s", path.c_str());
    const CacheConfig& c = layout_.cfg;
    FileHeader h;
    std::memset(&h, 0, sizeof h);
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.version = kVersion;
    h.n_layers = static_cast<uint32_t>(layout_.shape.n_layers);
    h.n_kv_heads = static_cast<uint32_t>(layout_.shape.n_kv_heads);
    h.head_dim = static_cast<uint32_t>(layout_.shape.head_dim);
    h.max_chunk = static_cast<uint32_t>(layout_.shape.max_chunk);
    h.fingerprint = layout_.shape.model_fingerprint;
    h.type = static_cast<uint32_t>(c.type);
    h.retention = static_cast<uint32_t>(c.retention);
    h.storage = static_cast<uint32_t>(c.storage);
    h.placement = static_cast<uint32_t>(c.placement);
    h.kv_dtype = static_cast<uint32_t>(c.kv_dtype);
    h.max_cache_len = c.max_cache_len;
    h.window_length = c.window_length;
    h.num_sink_tokens = c.num_sink_tokens;
    h.nbits = c.nbits;
    h.q_group_size = c.q_group_size;
    h.residual_length = c.residual_length;
    h.len = len_;
    h.q_end = q_end_;
    h.plain_rows = plain_rows_;
    h.groups = groups_;
    h.n_tokens = tokens_.size();
    h.forwarded = forwarded_;

    Writer w(f.get());
    bool ok = w.write(&h, sizeof h) && w.write(tokens_.data(), tokens_.size() * sizeof(int32_t));
    // Device memory is read through a host buffer, one slot at a time.
    size_t largest = 0;
    for (int s = 0; s < kNumSlots; ++s) largest = std::max(largest, slot_used_bytes(s));
    std::unique_ptr<Buffer> host;
    if (largest) EKV_TRY(backend_->alloc(largest, Placement::Host, &host));
    for (const LayerBuffers& lb : layers_) {
        for (int s = 0; s < kNumSlots && ok; ++s) {
            const uint64_t bytes = lb.buf[s] ? slot_used_bytes(s) : 0;
            ok = w.write(&bytes, sizeof bytes);
            if (!bytes || !ok) continue;
            backend_->copy_bytes(*lb.buf[s], 0, *host, 0, bytes);
            backend_->synchronize();
            const Status copied = backend_->take_error();
            if (!copied.ok()) {
                std::fclose(f.release());
                std::remove(path.c_str());
                return copied;
            }
            ok = w.write(host->host(), bytes);
        }
    }
    ok = ok && w.finish();
    if (std::fclose(f.release()) != 0) ok = false;
    if (!ok) {
        std::remove(path.c_str());
        return Error(EKV_ERR_IO, "cannot write %s (disk full?)", path.c_str());
    }
    return Status::Ok();
}

Status KvCache::load(const std::string& path, const CacheShape& shape, Backend& backend, std::unique_ptr<Cache>* out) {
    File f(std::fopen(path.c_str(), "rb"));
    if (!f) return Error(EKV_ERR_IO, "cannot open %s", path.c_str());
    Reader r(f.get(), path);
    FileHeader h;
    EKV_TRY(r.read(&h, sizeof h, "header"));
    EKV_TRY(check_header(h, shape, path));

    CacheConfig c;
    c.type = static_cast<ekv_cache_type>(h.type);
    c.retention = static_cast<Retention>(h.retention);
    c.storage = static_cast<KvStorage>(h.storage);
    c.placement = static_cast<Placement>(h.placement);
    c.kv_dtype = static_cast<DType>(h.kv_dtype);
    c.max_cache_len = h.max_cache_len;
    c.window_length = h.window_length;
    c.num_sink_tokens = h.num_sink_tokens;
    c.nbits = h.nbits;
    c.q_group_size = h.q_group_size;
    c.residual_length = h.residual_length;
    // Re-validate through the public rules so a crafted header cannot build
    // an impossible layout.
    ekv_cache_params p = {};
    p.struct_size = sizeof p;
    p.max_cache_len = c.max_cache_len;
    p.dtype = c.storage == KvStorage::Kivi ? EKV_KV_KIVI : (c.kv_dtype == DType::F32 ? EKV_KV_F32 : EKV_KV_F16);
    p.window_length = c.window_length;
    p.num_sink_tokens = c.num_sink_tokens;
    p.nbits = c.nbits;
    p.q_group_size = c.q_group_size;
    p.residual_length = c.residual_length;
    p.offload = c.placement == Placement::Host      ? EKV_PLACEMENT_HOST
                : c.placement == Placement::Unified ? EKV_PLACEMENT_UNIFIED
                                                    : EKV_PLACEMENT_DEVICE;
    CacheConfig checked;
    Status st = resolve_cache_config(p, c.type, shape, backend, &checked);
    if (!st.ok()) return Error(st.code(), "cache file %s: %s", path.c_str(), st.message().c_str());
    if (checked.retention != c.retention || checked.storage != c.storage)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an inconsistent configuration", path.c_str());
    checked.kv_dtype = c.kv_dtype;

    std::unique_ptr<Cache> made;
    EKV_TRY(KvCache::create(checked, shape, backend, &made));
    KvCache& kc = static_cast<KvCache&>(*made);
    if (h.len > kc.max_seq_len() && kc.max_seq_len() >= 0)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s holds more tokens than its capacity", path.c_str());
    if ((kc.layout_.plain_ring && h.plain_rows != kc.plain_rows_) ||
        (kc.layout_.group_ring && h.groups != kc.groups_))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has ring sizes that do not match its configuration",
                     path.c_str());
    if (h.plain_rows != kc.plain_rows_ || h.groups != kc.groups_) EKV_TRY(kc.allocate(h.plain_rows, h.groups));
    kc.len_ = h.len;
    kc.q_end_ = kc.q_target_ = h.q_end;
    kc.forwarded_ = h.forwarded;
    kc.tokens_.resize(static_cast<size_t>(h.n_tokens));
    EKV_TRY(r.read(kc.tokens_.data(), kc.tokens_.size() * sizeof(int32_t), "token ids"));

    size_t largest = 0;
    for (int s = 0; s < kNumSlots; ++s) largest = std::max(largest, kc.slot_used_bytes(s));
    std::unique_ptr<Buffer> host;
    if (largest) EKV_TRY(backend.alloc(largest, Placement::Host, &host));
    for (LayerBuffers& lb : kc.layers_) {
        for (int s = 0; s < kNumSlots; ++s) {
            uint64_t bytes = 0;
            EKV_TRY(r.read(&bytes, sizeof bytes, "slot size"));
            const uint64_t expect = lb.buf[s] ? kc.slot_used_bytes(s) : 0;
            if (bytes != expect)
                return Error(EKV_ERR_INVALID_FILE, "cache file %s: a layer slot holds %llu bytes, %llu expected",
                             path.c_str(), static_cast<unsigned long long>(bytes),
                             static_cast<unsigned long long>(expect));
            if (!bytes) continue;
            EKV_TRY(r.read(host->host(), bytes, "layer data"));
            backend.copy_bytes(*host, 0, *lb.buf[s], 0, bytes);
            backend.synchronize();  // the host buffer is reused by the next slot
        }
    }
    backend.synchronize();
    EKV_TRY(backend.take_error());
    EKV_TRY(r.check_sum());
    *out = std::move(made);
    return Status::Ok();
}

}  // namespace ekv
