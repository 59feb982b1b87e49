// A stop request that any thread may raise at any moment (the C ABI's
// ekv_cancel). Long calls poll it between layers, chunks and tokens; raising
// it never blocks and never touches the state the call is changing.
#pragma once
#include <atomic>

namespace ekv {

class CancelFlag {
public:
    void raise() { raised_.store(true, std::memory_order_release); }
    void clear() { raised_.store(false, std::memory_order_release); }
    bool raised() const { return raised_.load(std::memory_order_acquire); }

private:
    std::atomic<bool> raised_{false};
};

// The flags one call listens to (the call's own and its cache's); null
// entries are ignored.
struct CancelSet {
    const CancelFlag* call = nullptr;
    const CancelFlag* cache = nullptr;
    bool raised() const { return (call && call->raised()) || (cache && cache->raised()); }
};

}  // namespace ekv
