// What stands behind the opaque handles, and the barrier every ABI entry point
// goes through: C++ exceptions and Status values become an ekv_status plus
// the thread-local last-error message.
#pragma once
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "cache/cache.h"
#include "core/status.h"
#include "edgekv.h"
#include "model/model.h"
#include "text/utf8_stream.h"

struct ekv_model {
    std::unique_ptr<ekv::Model> model;
};

struct ekv_cache {
    ekv_model* owner = nullptr;
    std::unique_ptr<ekv::Cache> cache;
    std::unique_ptr<ekv::Workspace> ws;
};

struct ekv_detokenizer {
    const ekv_model* owner = nullptr;
    ekv::Utf8StreamDecoder utf8;
    std::string piece;
};

namespace ekv::api {

// Records the status for ekv_last_error() and returns its code.
ekv_status finish(const Status& s);
void clear_error();
const char* last_error();

// Runs f (returning Status) behind the exception barrier.
template <class F>
ekv_status guarded(F&& f) noexcept {
    try {
        clear_error();
        return finish(f());
    } catch (const std::bad_alloc&) {
        return finish(Status(EKV_ERR_OUT_OF_MEMORY, "out of memory"));
    } catch (const std::exception& e) {
        return finish(Status(EKV_ERR_INTERNAL, std::string("internal error: ") + e.what()));
    } catch (...) {
        return finish(Status(EKV_ERR_INTERNAL, "internal error: unknown exception"));
    }
}

// Standard check for a params struct: non-null and at least as large as the
// first version of the struct.
template <class T>
Status check_params(const T* p, size_t min_size, const char* what) {
    if (!p) return Error(EKV_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    const size_t size = p->struct_size;
    if (size < min_size || size > (1u << 20))
        return Error(EKV_ERR_INVALID_ARGUMENT, "%s.struct_size is %zu; initialise it with its default function", what,
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

}  // namespace ekv::api

#define EKV_CHECK_HANDLE(h, name) \
    if (!(h)) return ::ekv::Error(EKV_ERR_INVALID_ARGUMENT, "%s is NULL", name)
