// Heap-allocation counting for no-allocation tests. The test binary's global
// operator new/delete (every standard overload) are replaced once, in
// test_no_alloc.cpp; edgekv_tests links the library statically, so the
// library's C++ allocations are counted too, on every thread. Counting is on
// only while an AllocationCount is alive, so other tests pay nothing.
#pragma once

namespace ekv_test {

// Counts allocations from construction to stop() (or destruction). Not
// nestable: one count at a time.
class AllocationCount {
public:
    AllocationCount();
    ~AllocationCount();
    AllocationCount(const AllocationCount&) = delete;
    AllocationCount& operator=(const AllocationCount&) = delete;
    // Stops counting and returns the allocations seen. With EKV_TRACE_ALLOCS=1
    // the first ones' return addresses are printed to stderr (resolve them
    // with addr2line -e edgekv_tests, or break on count_allocation in gdb).
    long stop();
};

}  // namespace ekv_test
