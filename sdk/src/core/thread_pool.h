// Persistent worker pool for the CPU kernels. run() hands the same function to
// every thread (the caller included) with its index, like an OpenMP parallel
// region; kernels split their own work. No allocation per call, so it can be
// used on the per-token path.
#pragma once
#include <atomic>
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
    // Not reentrant: one run() at a time per pool.
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
    void worker(int index);

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::atomic<unsigned> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
    Fn fn_ = nullptr;
    void* ctx_ = nullptr;
};

}  // namespace ekv
