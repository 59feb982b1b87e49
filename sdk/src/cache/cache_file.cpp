// Cache files (format in cache_io.h) and the KvCache body: its shape,
// configuration and state, its token history (token_history.h: the ids held
// and the digest of those a ring folded), and each layer's live bytes slot by
// slot. Loading builds a new cache and hands it out only when every check
// passed, so a bad file changes nothing.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include "cache/cache_io.h"
#include "cache/encoder_decoder_cache.h"
#include "cache/kv_cache.h"

namespace ekv {
namespace {

constexpr char kMagic[8] = {'E', 'K', 'V', 'C', 'A', 'C', 'H', 'E'};
// 2: a cache kind after the version; composite caches.
// 3: KvBodyHistory after each KvCache body header (rings keep a bounded id
//    list). Version 2 files still load: all ids, nothing folded, and ring
//    rows taken as written up to the state's length.
constexpr uint32_t kVersion = 3;
constexpr uint32_t kOldestVersion = 2;

struct FileHeader {
    char magic[8];
    uint32_t version;
    uint32_t kind;
    uint64_t fingerprint;
};

// One KvCache: its shape, configuration and state.
struct KvBodyHeader {
    uint32_t n_layers, n_kv_heads, head_dim, max_chunk;
    // configuration
    uint32_t type, retention, storage, placement, kv_dtype;
    int32_t max_cache_len, window_length, num_sink_tokens, nbits, q_group_size, residual_length;
    // state
    int32_t len, q_end;
    int64_t plain_rows, groups;
    uint64_t n_tokens;  // ids that follow (version 2: len; 3: the ids held)
    uint64_t forwarded;
};

// Version 3, after KvBodyHeader: the ids a ring folded (TokenHistory) and
// the ends of the body tokens its rows ever held (KvCache::ring_end).
struct KvBodyHistory {
    uint64_t folded;  // n_tokens + folded == len
    uint64_t folded_digest;
    int32_t stored_body, stored_q;
};

struct FileCloser {
    void operator()(FILE* f) const {
        if (f) std::fclose(f);
    }
};
using File = std::unique_ptr<FILE, FileCloser>;

bool in_range(uint32_t v, uint32_t hi) { return v <= hi; }

Status check_body_header(const KvBodyHeader& h, const CacheShape& shape, const std::string& path) {
    if (static_cast<int32_t>(h.n_layers) != shape.n_layers ||
        static_cast<int32_t>(h.n_kv_heads) != shape.n_kv_heads ||
        static_cast<int32_t>(h.head_dim) != shape.head_dim)
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s has %u layers x %u kv heads x %u dims; the model %d x %d x %d",
                     path.c_str(), h.n_layers, h.n_kv_heads, h.head_dim, shape.n_layers, shape.n_kv_heads,
                     shape.head_dim);
    if (static_cast<int32_t>(h.max_chunk) != shape.max_chunk)
        return Error(EKV_ERR_UNSUPPORTED, "cache file %s was written with a forward chunk of %u tokens, not %d",
                     path.c_str(), h.max_chunk, shape.max_chunk);
    // AUTO is resolved before a cache exists: a saved cache never has it.
    if (h.type == EKV_CACHE_AUTO || !in_range(h.type, EKV_CACHE_ENCODER_DECODER) || !in_range(h.retention, 3) ||
        !in_range(h.storage, 1) || !in_range(h.placement, 2) ||
        (h.kv_dtype != static_cast<uint32_t>(DType::F16) && h.kv_dtype != static_cast<uint32_t>(DType::F32)))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an invalid configuration", path.c_str());
    if (h.len < 0 || h.q_end < 0 || h.q_end > h.len || h.plain_rows < 0 || h.groups < 0 ||
        h.n_tokens > static_cast<uint64_t>(h.len) || h.plain_rows > (int64_t{1} << 31) ||
        h.groups > (int64_t{1} << 31))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an invalid state", path.c_str());
    return Status::Ok();
}

// The history fields against the state: the counts add up and the written
// ends are not behind the state (nor past what positions can reach).
Status check_body_history(const KvBodyHeader& h, const KvBodyHistory& hist, const std::string& path) {
    if (hist.folded > static_cast<uint64_t>(h.len) || h.n_tokens + hist.folded != static_cast<uint64_t>(h.len) ||
        hist.stored_body < 0 || hist.stored_body > INT32_MAX / 2 || hist.stored_q < h.q_end ||
        hist.stored_q > hist.stored_body)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has a token history that does not add up", path.c_str());
    return Status::Ok();
}

// Bytes left in the stream, or -1 when it cannot tell (a pipe).
int64_t remaining_bytes(FILE* f) {
    const long at = std::ftell(f);
    if (at < 0 || std::fseek(f, 0, SEEK_END) != 0) return -1;
    const long end = std::ftell(f);
    if (std::fseek(f, at, SEEK_SET) != 0 || end < at) return -1;
    return end - at;
}

}  // namespace

namespace {

// Header, body and checksum into an open stream.
Status write_stream(FILE* f, const std::string& label, CacheFileKind kind, uint64_t fingerprint,
                    const CacheBodyWriter& body) {
    FileHeader h;
    std::memset(&h, 0, sizeof h);
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.version = kVersion;
    h.kind = static_cast<uint32_t>(kind);
    h.fingerprint = fingerprint;
    CacheFileWriter w(f);
    EKV_TRY(w.value(h) ? body(w) : Error(EKV_ERR_IO, "cannot write %s (disk full?)", label.c_str()));
    const uint64_t sum = w.sum();
    if (std::fwrite(&sum, 1, sizeof sum, f) != sizeof sum || std::fflush(f) != 0)
        return Error(EKV_ERR_IO, "cannot write %s (disk full?)", label.c_str());
    return Status::Ok();
}

Status read_stream(FILE* f, const std::string& path, const CacheShape& shape, Backend& backend,
                   std::unique_ptr<Cache>* out) {
    CacheFileReader r(f, path);
    FileHeader h;
    EKV_TRY(r.value(&h, "header"));
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
        return Error(EKV_ERR_INVALID_FILE, "%s is not an edgekv cache file", path.c_str());
    if (h.version < kOldestVersion || h.version > kVersion)
        return Error(EKV_ERR_UNSUPPORTED, "cache file %s has format version %u; this edgekv reads versions %u to %u",
                     path.c_str(), h.version, kOldestVersion, kVersion);
    r.set_version(h.version);
    if (h.fingerprint != shape.model_fingerprint)
        return Error(EKV_ERR_MODEL_MISMATCH, "cache file %s was written for another model", path.c_str());
    std::unique_ptr<Cache> made;
    switch (static_cast<CacheFileKind>(h.kind)) {
        case CacheFileKind::Kv: EKV_TRY(read_kv_cache_body(r, shape, backend, &made)); break;
        case CacheFileKind::Hybrid: EKV_TRY(read_hybrid_cache_body(r, shape, backend, &made)); break;
        case CacheFileKind::Recurrent: EKV_TRY(read_recurrent_cache_body(r, shape, backend, &made)); break;
        case CacheFileKind::HybridMamba: EKV_TRY(read_hybrid_mamba_cache_body(r, shape, backend, &made)); break;
        case CacheFileKind::EncoderDecoder:
            EKV_TRY(EncoderDecoderCache::read_body(r, shape, backend, &made));
            break;
        default:
            return Error(EKV_ERR_INVALID_FILE, "cache file %s holds an unknown cache kind %u", path.c_str(), h.kind);
    }
    uint64_t sum = 0;
    if (std::fread(&sum, 1, sizeof sum, f) != sizeof sum)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s is truncated (no checksum)", path.c_str());
    if (sum != r.sum())
        return Error(EKV_ERR_INVALID_FILE, "cache file %s is corrupted (checksum mismatch)", path.c_str());
    if (std::fgetc(f) != EOF) return Error(EKV_ERR_INVALID_FILE, "cache file %s has trailing bytes", path.c_str());
    *out = std::move(made);
    return Status::Ok();
}

}  // namespace

Status write_cache_file(const CacheFile& file, CacheFileKind kind, uint64_t fingerprint,
                        const CacheBodyWriter& body) {
    if (file.stream) return write_stream(file.stream, file.label, kind, fingerprint, body);
    const std::string& path = file.label;
    const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(getpid()));
    // Removes the temporary file on every way out but a successful rename,
    // exceptions (bad_alloc in body) included; declared before the stream so
    // the stream is closed first.
    struct TmpRemover {
        const std::string& tmp;
        bool keep = false;
        ~TmpRemover() {
            if (!keep) std::remove(tmp.c_str());
        }
    } remover{tmp};
    File f(std::fopen(tmp.c_str(), "wb"));
    if (!f) return Error(EKV_ERR_IO, "cannot create %s: %s", tmp.c_str(), std::strerror(errno));
    Status st = write_stream(f.get(), path, kind, fingerprint, body);
    if (st.ok() && fsync(fileno(f.get())) != 0) st = Error(EKV_ERR_IO, "cannot sync %s: %s", tmp.c_str(), std::strerror(errno));
    if (std::fclose(f.release()) != 0 && st.ok()) st = Error(EKV_ERR_IO, "cannot write %s (disk full?)", path.c_str());
    if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
        st = Error(EKV_ERR_IO, "cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), std::strerror(errno));
    remover.keep = st.ok();  // renamed: the temporary name is gone
    return st;
}

Status load_cache(const CacheFile& file, const CacheShape& shape, Backend& backend, std::unique_ptr<Cache>* out) {
    if (file.stream) return read_stream(file.stream, file.label, shape, backend, out);
    File f(std::fopen(file.label.c_str(), "rb"));
    if (!f) return Error(EKV_ERR_IO, "cannot open %s", file.label.c_str());
    return read_stream(f.get(), file.label, shape, backend, out);
}

Status KvCache::save(const CacheFile& file) const {
    return write_cache_file(file, CacheFileKind::Kv, layout_.shape.model_fingerprint,
                            [this](CacheFileWriter& w) { return write_body(w); });
}

Status KvCache::write_body(CacheFileWriter& w) const {
    const CacheConfig& c = layout_.cfg;
    KvBodyHeader h;
    std::memset(&h, 0, sizeof h);
    h.n_layers = static_cast<uint32_t>(layout_.shape.n_layers);
    h.n_kv_heads = static_cast<uint32_t>(layout_.shape.n_kv_heads);
    h.head_dim = static_cast<uint32_t>(layout_.shape.head_dim);
    h.max_chunk = static_cast<uint32_t>(layout_.shape.max_chunk);
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
    const std::vector<int32_t>& ids = tokens_.kept();
    h.n_tokens = ids.size();
    h.forwarded = forwarded_;
    KvBodyHistory hist;
    std::memset(&hist, 0, sizeof hist);
    hist.folded = static_cast<uint64_t>(tokens_.folded());
    hist.folded_digest = tokens_.digest();
    hist.stored_body = ring_end();
    hist.stored_q = quantized_written();

    bool ok = w.write(&h, sizeof h) && w.write(&hist, sizeof hist) && w.write(ids.data(), ids.size() * sizeof(int32_t));
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
            if (!copied.ok()) return copied;
            ok = w.write(host->host(), bytes);
        }
    }
    if (!ok) return Error(EKV_ERR_IO, "cannot write the cache file (disk full?)");
    return Status::Ok();
}

Status read_kv_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                          std::unique_ptr<Cache>* out) {
    return KvCache::read_body(r, shape, backend, out);
}

Status KvCache::read_body(CacheFileReader& r, const CacheShape& shape, Backend& backend, std::unique_ptr<Cache>* out) {
    const std::string& path = r.path();
    KvBodyHeader h;
    EKV_TRY(r.value(&h, "cache header"));
    EKV_TRY(check_body_header(h, shape, path));
    KvBodyHistory hist;
    if (r.version() >= 3) {
        EKV_TRY(r.value(&hist, "token history"));
    } else {  // every id, and rows taken as written up to the state (set below)
        hist.folded = 0;
        hist.folded_digest = 0;
        hist.stored_body = h.len;
        hist.stored_q = h.q_end;
    }
    EKV_TRY(check_body_history(h, hist, path));

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
    // A hybrid cache's local part: a ring of the model's sliding window.
    if (c.type == EKV_CACHE_HYBRID && c.retention == Retention::Window && c.window_length == shape.sliding_window)
        checked.retention = Retention::Window;
    if (checked.retention != c.retention || checked.storage != c.storage)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has an inconsistent configuration", path.c_str());
    checked.kv_dtype = c.kv_dtype;

    std::unique_ptr<Cache> made;
    EKV_TRY(KvCache::create(checked, shape, backend, &made));
    KvCache& kc = static_cast<KvCache&>(*made);
    if (h.len > kc.max_seq_len() && kc.max_seq_len() >= 0)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s holds more tokens than its capacity", path.c_str());
    // The stores and the state must be ones a live cache reaches, or the next
    // forward writes outside the stores: fixed and ring stores keep the size
    // they were made with (growing stores are sized below by the state), and
    // KIVI's full-precision residual [q_end, body) fits its ring.
    const KvLayout& l = kc.layout_;
    const bool plain_grows = l.growable() && !l.kivi && !l.plain_ring;
    const bool groups_grow = l.growable() && l.kivi && !l.group_ring;
    if ((!plain_grows && h.plain_rows != kc.plain_rows_) || (!groups_grow && h.groups != kc.groups_))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has store sizes that do not match its configuration",
                     path.c_str());
    const int32_t body = l.body_of(h.len);
    const bool q_ok = l.kivi ? h.q_end % l.group == 0 && h.q_end <= body && body - h.q_end <= l.plain_ring_rows
                             : h.q_end == 0;
    if (!q_ok)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has %d quantized tokens of %d, impossible for its layout",
                     path.c_str(), h.q_end, h.len);
    if (l.kivi ? hist.stored_q % l.group != 0 : hist.stored_q != 0)
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has a quantized end impossible for its layout", path.c_str());
    kc.len_ = h.len;
    kc.q_end_ = kc.q_target_ = h.q_end;
    kc.stored_body_ = r.version() >= 3 ? hist.stored_body : l.body_of(h.len);
    kc.stored_q_ = hist.stored_q;
    if (kc.stored_body_ < l.body_of(h.len))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has rows written behind its length", path.c_str());
    // Nothing is allocated for the state before the file shows it holds it:
    // a small file cannot claim gigabytes.
    uint64_t announced = h.n_tokens * sizeof(int32_t) + sizeof(uint64_t);  // ids, checksum
    for (int s = 0; s < kNumSlots; ++s) announced += static_cast<uint64_t>(kc.slot_used_bytes(s)) * kc.layers_.size();
    const int64_t left = remaining_bytes(r.file());
    if (left >= 0 && announced > static_cast<uint64_t>(left))
        return Error(EKV_ERR_INVALID_FILE,
                     "cache file %s is truncated: its header announces %llu more bytes, %lld remain", path.c_str(),
                     static_cast<unsigned long long>(announced), static_cast<long long>(left));
    if (l.growable()) {  // as a live cache grows to hold the tokens
        kc.len_ = 0;
        EKV_TRY(kc.prepare(h.len));
        kc.len_ = h.len;
    }
    kc.forwarded_ = h.forwarded;
    std::vector<int32_t> ids(static_cast<size_t>(h.n_tokens));
    EKV_TRY(r.read(ids.data(), ids.size() * sizeof(int32_t), "token ids"));
    if (!kc.tokens_.restore(static_cast<int64_t>(hist.folded), hist.folded_digest, std::move(ids)))
        return Error(EKV_ERR_INVALID_FILE, "cache file %s has a token history impossible for its cache type",
                     path.c_str());

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
    *out = std::move(made);
    return Status::Ok();
}

}  // namespace ekv
