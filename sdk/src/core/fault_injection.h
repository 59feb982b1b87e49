// Allocation fault injection for the out-of-memory tests. Every host
// allocation the library makes outside operator new (anonymous mappings,
// aligned_alloc, file mappings, libc memory streams) and every device
// allocation asks the hook first; a test can then make the N-th one fail and
// check that the call returns EKV_ERR_OUT_OF_MEMORY without leaking or
// breaking the objects that already existed. The test binary's operator new
// asks host_allocation_fails() too, so one count covers every host allocation.
//
// Only builds configured with EDGEKV_FAULT_INJECTION=ON (the asan preset)
// compile the hooks in; elsewhere they are constant false and cost nothing.
#pragma once

namespace ekv::fault {

#if defined(EKV_FAULT_INJECTION)

// Counts one host (device) allocation; true when it is the one a test asked
// to fail. Thread-safe, never allocates.
bool host_allocation_fails() noexcept;
bool device_allocation_fails() noexcept;

// Test control. Restarts the count of one kind: from now on the fail_at-th
// allocation of that kind fails (only that one); fail_at = 0 counts only.
void arm_host(long fail_at) noexcept;
void arm_device(long fail_at) noexcept;
// Allocations counted since the last arm, and whether the armed one failed.
long host_allocations() noexcept;
long device_allocations() noexcept;
bool host_failure_injected() noexcept;
bool device_failure_injected() noexcept;

#else

constexpr bool host_allocation_fails() noexcept { return false; }
constexpr bool device_allocation_fails() noexcept { return false; }

#endif

}  // namespace ekv::fault
