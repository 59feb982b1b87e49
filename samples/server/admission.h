// Bounded concurrency: at most `parallel` generations run at once and at
// most `queue` more wait for a turn; a request beyond that is turned away at
// once (HTTP 503) rather than piling up threads and memory.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace edgekv_server {

class Admission {
public:
    Admission(int32_t parallel, int32_t queue) : parallel_(parallel), queue_(queue) {}

    // A running generation's place; released when it goes out of scope.
    class Slot {
    public:
        Slot() = default;
        explicit Slot(Admission* owner) : owner_(owner) {}
        Slot(Slot&& o) noexcept : owner_(o.owner_) { o.owner_ = nullptr; }
        Slot& operator=(Slot&& o) noexcept {
            if (this != &o) {
                release();
                owner_ = o.owner_;
                o.owner_ = nullptr;
            }
            return *this;
        }
        ~Slot() { release(); }
        bool held() const { return owner_ != nullptr; }
        void release();

    private:
        Admission* owner_ = nullptr;
    };

    // Waits for a free slot; returns an empty Slot at once when the queue is
    // full.
    Slot enter();
    int32_t active() const;
    int32_t waiting() const;

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    int32_t parallel_;
    int32_t queue_;
    int32_t active_ = 0;
    int32_t waiting_ = 0;
};

}  // namespace edgekv_server
