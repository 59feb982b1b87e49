// Cache files: a header (magic, format version, what kind of cache, the
// model's fingerprint), the cache's body, and an FNV-1a checksum of
// everything before it. Composite caches (hybrid, mamba, encoder-decoder)
// write their parts' bodies one after another into the same file.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "cache/cache.h"
#include "core/hash.h"

namespace ekv {

enum class CacheFileKind : uint32_t {
    Kv = 0,              // one KvCache (every generic type)
    Hybrid = 1,          // sliding-window KvCache + global KvCache
    Recurrent = 2,       // Mamba states
    HybridMamba = 3,     // KvCache over attention layers + Mamba states
    EncoderDecoder = 4,  // self-attention KvCache + cross-attention KV
};
constexpr uint32_t kCacheFileKindCount = 5;

class CacheFileWriter {
public:
    explicit CacheFileWriter(FILE* f) : f_(f) {}
    bool write(const void* p, size_t n) {
        if (n == 0) return true;  // p may be null (an empty token list)
        hash_.add(p, n);
        return std::fwrite(p, 1, n, f_) == n;
    }
    template <class T>
    bool value(const T& v) {
        return write(&v, sizeof v);
    }
    uint64_t sum() const { return hash_.value(); }
    FILE* file() const { return f_; }

private:
    FILE* f_;
    Fnv1a64 hash_;
};

class CacheFileReader {
public:
    CacheFileReader(FILE* f, const std::string& path) : f_(f), path_(path) {}
    Status read(void* p, size_t n, const char* what) {
        if (n == 0) return Status::Ok();  // p may be null (an empty token list)
        if (std::fread(p, 1, n, f_) != n)
            return Error(EKV_ERR_INVALID_FILE, "cache file %s is truncated (reading %s)", path_.c_str(), what);
        hash_.add(p, n);
        return Status::Ok();
    }
    template <class T>
    Status value(T* v, const char* what) {
        return read(v, sizeof *v, what);
    }
    uint64_t sum() const { return hash_.value(); }
    FILE* file() const { return f_; }
    const std::string& path() const { return path_; }
    // The file's format version (set once the header is read): body readers
    // read what that version wrote.
    uint32_t version() const { return version_; }
    void set_version(uint32_t v) { version_ = v; }

private:
    FILE* f_;
    const std::string& path_;
    Fnv1a64 hash_;
    uint32_t version_ = 0;
};

using CacheBodyWriter = std::function<Status(CacheFileWriter&)>;

// Writes header, body and checksum. To a path: into a temporary file in the
// same folder, synced, then renamed over the target, so a process killed at
// any point leaves the old file or the new one, never a torn one; nothing is
// left behind when anything fails.
Status write_cache_file(const CacheFile& file, CacheFileKind kind, uint64_t fingerprint,
                        const CacheBodyWriter& body);

// The body readers load_cache dispatches to (by the header's kind). Each
// builds a new cache; nothing is handed out before the checksum passed.
Status read_kv_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                          std::unique_ptr<Cache>* out);
Status read_hybrid_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                              std::unique_ptr<Cache>* out);
Status read_recurrent_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                                 std::unique_ptr<Cache>* out);
Status read_hybrid_mamba_cache_body(CacheFileReader& r, const CacheShape& shape, Backend& backend,
                                    std::unique_ptr<Cache>* out);

}  // namespace ekv
