#include "core/fault_injection.h"

#if defined(EKV_FAULT_INJECTION)
#include <atomic>

namespace ekv::fault {
namespace {

// One allocation kind: a running count and the count that fails (0: none).
// Plain atomics, constant-initialised: operator new may ask before main().
struct Counter {
    std::atomic<long> count{0};
    std::atomic<long> fail_at{0};
    std::atomic<bool> injected{false};

    bool next() noexcept {
        const long n = count.fetch_add(1, std::memory_order_relaxed) + 1;
        const long at = fail_at.load(std::memory_order_relaxed);
        if (at == 0 || n != at) return false;
        injected.store(true, std::memory_order_relaxed);
        return true;
    }
    void arm(long at) noexcept {
        fail_at.store(0, std::memory_order_relaxed);
        count.store(0, std::memory_order_relaxed);
        injected.store(false, std::memory_order_relaxed);
        fail_at.store(at < 0 ? 0 : at, std::memory_order_relaxed);
    }
};

Counter g_host;
Counter g_device;

}  // namespace

bool host_allocation_fails() noexcept { return g_host.next(); }
bool device_allocation_fails() noexcept { return g_device.next(); }
void arm_host(long fail_at) noexcept { g_host.arm(fail_at); }
void arm_device(long fail_at) noexcept { g_device.arm(fail_at); }
long host_allocations() noexcept { return g_host.count.load(std::memory_order_relaxed); }
long device_allocations() noexcept { return g_device.count.load(std::memory_order_relaxed); }
bool host_failure_injected() noexcept { return g_host.injected.load(std::memory_order_relaxed); }
bool device_failure_injected() noexcept { return g_device.injected.load(std::memory_order_relaxed); }

}  // namespace ekv::fault

#endif  // EKV_FAULT_INJECTION
