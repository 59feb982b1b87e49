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
// parallel regions per token, and a futex wake costs more than a region.
constexpr int kSpinRounds = 1 << 14;
}  // namespace

int ThreadPool::default_threads() {
    const unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : default_threads()) {
    workers_.reserve(static_cast<size_t>(n_threads_ - 1));
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run(Fn fn, void* ctx) {
    if (n_threads_ == 1) {
        fn(ctx, 0, 1);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        fn_ = fn;
        ctx_ = ctx;
        pending_.store(n_threads_ - 1);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    fn(ctx, 0, n_threads_);
    while (pending_.load(std::memory_order_acquire) != 0) EKV_CPU_RELAX();
}

void ThreadPool::worker(int index) {
    unsigned seen = 0;
    for (;;) {
        unsigned gen = generation_.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < kSpinRounds; ++spin) {
            EKV_CPU_RELAX();
            gen = generation_.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return generation_.load() != seen; });
            gen = generation_.load();
        }
        seen = gen;
        if (stop_.load()) return;
        Fn fn;
        void* ctx;
        {
            std::lock_guard<std::mutex> lock(mu_);
            fn = fn_;
            ctx = ctx_;
        }
        fn(ctx, index, n_threads_);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

}  // namespace ekv
