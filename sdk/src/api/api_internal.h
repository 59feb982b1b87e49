// What stands behind the opaque handles, and the barrier every ABI entry point
// goes through: C++ exceptions and Status values become an ekv_status plus
// the thread-local last-error message.
#pragma once
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "cache/cache.h"
#include "core/cancel.h"
#include "core/status.h"
#include "edgekv.h"
#include "generate/generator.h"
#include "generate/session.h"
#include "model/model.h"
#include "text/utf8_stream.h"

// Handles are reference counted: the caller holds one reference, and every
// object made from a handle holds one on it (a cache on its model, a
// generator on its cache), so C callers and garbage-collected bindings may
// free them in any order.
struct ekv_model {
    std::unique_ptr<ekv::Model> model;
    std::atomic<int32_t> refs{1};
};

struct ekv_cancel {
    ekv::CancelFlag flag;
    std::atomic<int32_t> refs{1};
};

// What the read-only queries report, so they answer while the cache is busy:
// the state after the last call or generator step that finished.
struct CacheSnapshot {
    ekv::CacheStats stats;
    uint64_t tokens_forwarded = 0;
    ekv_cache_type type = EKV_CACHE_DYNAMIC;
};

struct ekv_cache {
    ekv_model* owner = nullptr;  // a reference
    std::unique_ptr<ekv::Session> session;
    ekv_cache_params params;  // the resolved configuration (never changes)
    mutable std::mutex snapshot_mu;
    CacheSnapshot snapshot;
    std::atomic<int32_t> refs{1};
    // Set while a call (or a live generator) uses the cache: a second
    // thread gets "cache is busy" instead of corrupting it.
    std::atomic<bool> busy{false};
    std::atomic<ekv_cancel*> cancel{nullptr};  // attached stop request (a reference)
    ~ekv_cache();
};

struct ekv_detokenizer {
    ekv_model* owner = nullptr;  // a reference
    ekv::Utf8StreamDecoder utf8;
    std::string piece;
    ~ekv_detokenizer();
};

struct ekv_generator {
    ekv_model* model = nullptr;  // a reference
    ekv_cache* cache = nullptr;  // a reference (null: use_cache = 0)
    bool holds_busy = false;     // the cache is busy until the generation ends
    ekv_cancel* cancel = nullptr;  // a reference to the params' stop request
    std::unique_ptr<ekv::Generator> gen;
    ekv::GenerateEvent pending;  // an event the caller's buffer could not take yet
    bool has_pending = false;
    void release_cache() {
        if (holds_busy) cache->busy.store(false, std::memory_order_release);
        holds_busy = false;
    }
    ~ekv_generator();
};

namespace ekv::api {

// Records the status for ekv_last_error() and returns its code. Never
// throws: when memory for the message runs out, ekv_last_error() falls back
// to the status string.
ekv_status finish(const Status& s) noexcept;
// An internal error from an exception's what() (null: unknown exception).
ekv_status finish_internal(const char* what) noexcept;
void clear_error() noexcept;
const char* last_error() noexcept;

// Runs f (returning Status) behind the exception barrier.
template <class F>
ekv_status guarded(F&& f) noexcept {
    try {
        clear_error();
        return finish(f());
    } catch (const std::bad_alloc&) {
        // Allocates nothing: the message fits std::string's inline buffer.
        return finish(Status(EKV_ERR_OUT_OF_MEMORY, "out of memory"));
    } catch (const std::exception& e) {
        return finish_internal(e.what());
    } catch (...) {
        return finish_internal(nullptr);
    }
}

// Standard check for an output struct: non-null with a plausible size (any
// prefix is written; see write_struct).
template <class T>
Status check_params(const T* p, size_t min_size, const char* what) {
    (void)min_size;
    if (!p) return Error(EKV_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    const size_t size = p->struct_size;
    if (size < sizeof(size_t) || size > (1u << 20))
        return Error(EKV_ERR_INVALID_ARGUMENT, "%s.struct_size is %zu; initialise it with its init function", what,
                     p->struct_size);
    return Status::Ok();
}

// Writes a result struct honouring the caller's struct_size (an older caller
// gets only the fields it knows about).
template <class T>
void write_struct(T* out, const T& value) {
    const size_t keep = out->struct_size;
    std::memcpy(out, &value, keep < sizeof(T) ? keep : sizeof(T));
    out->struct_size = keep;
}

// Enum values from C callers may be any int; reading them as the C++ enum
// type would be undefined, so range checks look at the raw int.
template <class E>
int enum_int(const E& e) {
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

// Copies a string into a caller buffer with NUL; BUFFER_TOO_SMALL reports the size.
Status copy_out(const std::string& s, char* buf, size_t cap, size_t* len);

void retain(ekv_model* m);
void release(ekv_model* m);
void retain(ekv_cache* c);
void release(ekv_cache* c);
void retain(ekv_cancel* c);
void release(ekv_cancel* c);

// Exclusive use of a cache for one call: marks it busy (a cache already in
// use gives EKV_ERR_INVALID_STATE) and holds its session's lock.
class CacheUse {
public:
    explicit CacheUse(const ekv_cache* cache);
    ~CacheUse();
    CacheUse(const CacheUse&) = delete;
    CacheUse& operator=(const CacheUse&) = delete;
    const Status& status() const { return status_; }
    // Leaves the cache busy past this scope (a generator's whole life).
    void keep_busy() { owned_ = false; }

private:
    ekv_cache* cache_;
    bool owned_ = false;
    std::unique_lock<std::recursive_mutex> lock_;
    Status status_;
};

// A new handle over a session, holding a reference to its model.
ekv_cache* wrap_cache(ekv_model* model, std::unique_ptr<Session> session);
// Records the cache's state for the read-only queries (call while using it).
void refresh_snapshot(ekv_cache* cache);
CacheSnapshot read_snapshot(const ekv_cache* cache);

// The stop requests a call on `cache` honours: its own and the cache's.
CancelSet cancel_set(const ekv_cancel* call, const ekv_cache* cache);

// Reads a caller's params struct: the known prefix of *p (struct_size bytes,
// at most sizeof(T)) over `defaults`, so a smaller (older) struct gets
// defaults for the rest and a larger (newer) one is never overread.
template <class T>
Status read_params(const T* p, const T& defaults, const char* what, T* out) {
    *out = defaults;
    if (!p) return Status::Ok();
    const size_t size = p->struct_size;
    if (size < sizeof(size_t) || size > (1u << 20))
        return Error(EKV_ERR_INVALID_ARGUMENT, "%s.struct_size is %zu; initialise it with its init function", what, size);
    std::memcpy(out, p, size < sizeof(T) ? size : sizeof(T));
    out->struct_size = sizeof(T);
    return Status::Ok();
}

// Initialises a struct for a caller whose struct has `size` bytes.
template <class T>
Status init_struct(T* p, size_t size, const T& defaults, const char* what) {
    if (!p) return Error(EKV_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    if (size < sizeof(size_t) || size > (1u << 20))
        return Error(EKV_ERR_INVALID_ARGUMENT, "%s: size %zu is not a struct size", what, size);
    std::memset(static_cast<void*>(p), 0, size);
    std::memcpy(static_cast<void*>(p), &defaults, size < sizeof(T) ? size : sizeof(T));
    p->struct_size = size;
    return Status::Ok();
}

// Library defaults of each public struct (api_init.cpp).
ekv_model_params model_params_defaults();
ekv_cache_params cache_params_defaults();
ekv_generate_params generate_params_defaults();
template <class T>
T zeroed_struct() {
    T v;
    std::memset(static_cast<void*>(&v), 0, sizeof v);
    v.struct_size = sizeof v;
    return v;
}

}  // namespace ekv::api

#define EKV_CHECK_HANDLE(h, name) \
    if (!(h)) return ::ekv::Error(EKV_ERR_INVALID_ARGUMENT, "%s is NULL", name)
