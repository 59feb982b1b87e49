// The read-bandwidth probe behind `edgekv bench`'s bandwidth floor.
#include "read_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <thread>
#include <vector>

namespace edgekv_cli {
namespace {

// Eight independent sums so the loads are not serialised behind one add
// chain; the compiler vectorises the loop with whatever the build targets.
uint64_t sum_words(const uint64_t* p, size_t n) {
    uint64_t acc[8] = {};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += p[i + static_cast<size_t>(k)];
    for (; i < n; ++i) acc[0] += p[i];
    uint64_t s = 0;
    for (uint64_t a : acc) s += a;
    return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

double measure_read_bandwidth(int threads, size_t bytes, int passes) {
    threads = std::max(threads, 1);
    const size_t words = bytes / sizeof(uint64_t);
    std::unique_ptr<uint64_t[]> buf(new (std::nothrow) uint64_t[words]);
    if (!buf || words < static_cast<size_t>(threads)) return 0.0;
    // Written once so every page is backed before the timed reads.
    for (size_t i = 0; i < words; ++i) buf[i] = i;
    const size_t per = words / static_cast<size_t>(threads);
    std::vector<uint64_t> sums(static_cast<size_t>(threads));
    double best = 0.0;
    try {
        for (int pass = 0; pass < passes; ++pass) {
            std::vector<std::thread> pool;
            const auto t0 = std::chrono::steady_clock::now();
            for (int t = 0; t < threads; ++t) {
                const uint64_t* slice = buf.get() + static_cast<size_t>(t) * per;
                uint64_t* out = &sums[static_cast<size_t>(t)];
                pool.emplace_back([slice, per, out] { *out = sum_words(slice, per); });
            }
            for (std::thread& th : pool) th.join();
            const double s = seconds_since(t0);
            const double read = static_cast<double>(per * static_cast<size_t>(threads) * sizeof(uint64_t));
            if (s > 0) best = std::max(best, read / s);
        }
    } catch (const std::exception&) {  // a thread that cannot start: no figure
        return 0.0;
    }
    // The sums feed a check the optimiser cannot drop: i summed over the slices.
    uint64_t total = 0, want = 0;
    for (uint64_t s : sums) total += s;
    const uint64_t n = per * static_cast<size_t>(threads);
    want = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
    return total == want ? best : 0.0;
}

}  // namespace edgekv_cli
