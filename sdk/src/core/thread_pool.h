// Persistent worker pool for the CPU kernels. run() calls fn(ctx, i, n) for
// every task i in [0, n) with n = size(), like an OpenMP parallel region, but
// tasks are claimed dynamically: the caller runs whatever no worker has picked
// up yet, so a descheduled worker (an oversubscribed phone or laptop) never
// stalls a decode step. No allocation per call: safe on the per-token path.
#pragma once
#include <atomic>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ekv {

class ThreadPool {
public:
    using Fn = void (*)(void* ctx, int thread_index, int n_threads);

    // n_threads includes the calling thread; <= 0 means hardware concurrency.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs fn(ctx, i, size()) for every i in [0, size()) and waits for all.
    // Task i may run on any thread. Thread-safe: while one caller's region
    // holds the workers, another caller runs all of its tasks itself (two
    // forwards on two streams then share the cores instead of queueing).
    void run(Fn fn, void* ctx);

    // Convenience: f(thread_index, n_threads) on every thread.
    template <class F>
    void parallel(F&& f) {
        using T = typename std::remove_reference<F>::type;
        run([](void* c, int i, int n) { (*static_cast<T*>(c))(i, n); }, &f);
    }

    // Splits [0, n) into contiguous chunks, f(begin, end) per thread.
    template <class F>
    void parallel_for(long n, F&& f) {
        parallel([&](int i, int nt) {
            const long chunk = (n + nt - 1) / nt;
            const long b = chunk * i;
            const long e = b + chunk < n ? b + chunk : n;
            if (b < e) f(b, e);
        });
    }

    static int default_threads();

private:
    void worker();
    void stop_workers() noexcept;
    // Claims and runs tasks of generation `gen` until none is left.
    void drain(uint32_t gen);

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::mutex run_mu_;  // held by the region that owns the workers
    std::condition_variable cv_;
    // (generation << 32) | next unclaimed task: claiming is one CAS, and a
    // late worker can never claim a task of a newer generation by mistake.
    std::atomic<uint64_t> ticket_{0};
    std::atomic<int> done_{0};
    std::atomic<bool> stop_{false};
    std::atomic<Fn> fn_{nullptr};
    std::atomic<void*> ctx_{nullptr};
};

}  // namespace ekv
