#include "core/thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EKV_CPU_RELAX() _mm_pause()
#else
#define EKV_CPU_RELAX() std::this_thread::yield()
#endif

namespace ekv {

namespace {
// Spin this many rounds before sleeping: decode issues hundreds of short
// parallel regions per token and a futex wake costs more than a region.
constexpr int kSpinRounds = 4096;
inline uint32_t gen_of(uint64_t t) { return static_cast<uint32_t>(t >> 32); }
inline uint32_t task_of(uint64_t t) { return static_cast<uint32_t>(t); }
}  // namespace

int ThreadPool::default_threads() {
    const unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : default_threads()) {
    // Workers start with "nothing to claim": task index == n for generation 0.
    ticket_.store(static_cast<uint64_t>(n_threads_));
    workers_.reserve(static_cast<size_t>(n_threads_ - 1));
    try {
        for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker(); });
    } catch (...) {
        // A thread that cannot start (bad_alloc, system_error) must not
        // leave the ones already started joinable: destroying a joinable
        // std::thread calls std::terminate. Stop them, then report.
        stop_workers();
        throw;
    }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() noexcept {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::drain(uint32_t gen) {
    const uint32_t n = static_cast<uint32_t>(n_threads_);
    uint64_t t = ticket_.load(std::memory_order_acquire);
    for (;;) {
        if (gen_of(t) != gen || task_of(t) >= n) return;
        Fn fn = fn_.load(std::memory_order_relaxed);
        void* ctx = ctx_.load(std::memory_order_relaxed);
        if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
            fn(ctx, static_cast<int>(task_of(t)), n_threads_);
            done_.fetch_add(1, std::memory_order_acq_rel);
            t = ticket_.load(std::memory_order_acquire);
        }
    }
}

void ThreadPool::run(Fn fn, void* ctx) {
    if (n_threads_ == 1) {
        fn(ctx, 0, 1);
        return;
    }
    std::unique_lock<std::mutex> owner(run_mu_, std::try_to_lock);
    if (!owner.owns_lock()) {
        // Tasks are independent (the caller may run any of them), so this
        // thread does them all rather than wait for the other region.
        for (int i = 0; i < n_threads_; ++i) fn(ctx, i, n_threads_);
        return;
    }
    const uint32_t gen = gen_of(ticket_.load(std::memory_order_relaxed)) + 1;
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mu_);
        ticket_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
    }
    cv_.notify_all();
    drain(gen);
    while (done_.load(std::memory_order_acquire) != n_threads_) EKV_CPU_RELAX();
}

void ThreadPool::worker() {
    uint32_t seen = 0;
    for (;;) {
        uint64_t t = ticket_.load(std::memory_order_acquire);
        for (int spin = 0; gen_of(t) == seen && spin < kSpinRounds; ++spin) {
            EKV_CPU_RELAX();
            t = ticket_.load(std::memory_order_acquire);
        }
        if (gen_of(t) == seen) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return stop_.load() || gen_of(ticket_.load()) != seen; });
            if (stop_.load()) return;
            t = ticket_.load(std::memory_order_acquire);
        }
        seen = gen_of(t);
        drain(seen);
    }
}

}  // namespace ekv
