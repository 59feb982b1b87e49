// The fault binary's global operator new/delete (every standard overload):
// each allocation asks ekv::fault::host_allocation_fails() first, so a test
// can make the N-th host allocation fail. The library is linked statically,
// so its C++ allocations on every thread (thread-pool workers included) go
// through here. Throwing forms throw std::bad_alloc, nothrow forms return
// null, as a real allocator does when memory runs out.
#include <cstdlib>
#include <new>

#include "core/fault_injection.h"

namespace {

void* allocate(std::size_t n) noexcept {
    if (ekv::fault::host_allocation_fails()) return nullptr;
    return std::malloc(n ? n : 1);
}

void* allocate_aligned(std::size_t n, std::align_val_t al) noexcept {
    if (ekv::fault::host_allocation_fails()) return nullptr;
    std::size_t a = static_cast<std::size_t>(al);
    if (a < sizeof(void*)) a = sizeof(void*);
    void* p = nullptr;
    return posix_memalign(&p, a, n ? n : 1) == 0 ? p : nullptr;
}

}  // namespace

// noinline keeps GCC from pairing inlined malloc/free with new/delete in its
// mismatch warning.
#define EKV_NOINLINE __attribute__((noinline))

EKV_NOINLINE void* operator new(std::size_t n) {
    if (void* p = allocate(n)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new[](std::size_t n) {
    if (void* p = allocate(n)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
EKV_NOINLINE void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
EKV_NOINLINE void* operator new(std::size_t n, std::align_val_t al) {
    if (void* p = allocate_aligned(n, al)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new[](std::size_t n, std::align_val_t al) {
    if (void* p = allocate_aligned(n, al)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return allocate_aligned(n, al);
}
EKV_NOINLINE void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return allocate_aligned(n, al);
}
EKV_NOINLINE void operator delete(void* p) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::size_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
