// Microbenchmark of the CPU matmul kernels on the SmolLM2-135M shapes (not a
// test: prints numbers, asserts nothing).
//
//   bench_matmul [--threads N] [--scalar] [--seconds S] [--types q4_1,q8_0|all]
//                [--precision f32|int8|both] [--ntok 1,64] [--shape 262144x640,...]
//
// --shape replaces the SmolLM2 shapes with the given rows x k (e.g. Gemma 3
// 270M's output head, 262144x640).
//
// For each weight type, shape, token count and activation precision it
// prints microseconds per call, weight bytes streamed per second and
// multiply-adds per second, twice:
//   hot  - the same weight buffer every call (fits in cache for small shapes)
//   cold - rotating through copies totalling > 256 MiB, like decode, where
//          every layer's weights come from DRAM once per token.
// Times are the minimum over kRepeats batches of calls of the mean time per
// call in the batch: on a shared, loaded machine the minimum is the least
// disturbed estimate. "cpu us" is the mean process CPU time per call (all
// threads) over all batches, another load-robust figure.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "core/dtype.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace {

using ekv::DType;
using Clock = std::chrono::steady_clock;

struct BenchShape {
    const char* what;
    int64_t rows;
    int64_t k;
};

// SmolLM2-135M: n_embd 576, 3 kv heads x 64, ffn 1536, vocab 49152.
const BenchShape kShapes[] = {
    {"attn_q/o", 576, 576}, {"attn_k/v", 192, 576}, {"ffn_gate/up", 1536, 576},
    {"ffn_down", 576, 1536}, {"output", 49152, 576},
};

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                           DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

using ekv::cpu::ActivationPrecision;

// Batches per measurement; the reported time is the fastest batch's.
constexpr int kRepeats = 15;

struct Options {
    int threads = 0;
    bool scalar = false;
    double seconds = 0.3;
    std::vector<DType> types = {DType::Q4_1, DType::Q8_0};
    std::vector<ActivationPrecision> precisions = {ActivationPrecision::F32, ActivationPrecision::Int8};
    std::vector<int> ntoks = {1, 64};
    std::vector<BenchShape> shapes;  // empty: kShapes
};

std::vector<int> parse_ints(const std::string& list) {
    std::vector<int> out;
    size_t pos = 0;
    while (pos < list.size()) {
        const size_t comma = list.find(',', pos);
        const std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        if (std::atoi(item.c_str()) > 0) out.push_back(std::atoi(item.c_str()));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

// "ROWSxK,ROWSxK" -> shapes named "custom".
std::vector<BenchShape> parse_shapes(const std::string& list) {
    std::vector<BenchShape> out;
    size_t pos = 0;
    while (pos < list.size()) {
        const size_t comma = list.find(',', pos);
        const std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        const size_t x = item.find('x');
        if (x != std::string::npos) {
            const long long rows = std::atoll(item.substr(0, x).c_str());
            const long long k = std::atoll(item.substr(x + 1).c_str());
            if (rows > 0 && k > 0) out.push_back({"custom", rows, k});
        }
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

std::vector<ActivationPrecision> parse_precisions(const std::string& p) {
    if (p == "f32") return {ActivationPrecision::F32};
    if (p == "int8") return {ActivationPrecision::Int8};
    return {ActivationPrecision::F32, ActivationPrecision::Int8};
}

std::vector<DType> parse_types(const std::string& list) {
    std::vector<DType> out;
    for (DType t : kAllTypes) {
        const std::string name = ekv::dtype_name(t);
        if (list == "all" || ("," + list + ",").find("," + name + ",") != std::string::npos) out.push_back(t);
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) o.threads = std::atoi(argv[++i]);
        else if (a == "--scalar") o.scalar = true;
        else if (a == "--seconds" && i + 1 < argc) o.seconds = std::atof(argv[++i]);
        else if (a == "--types" && i + 1 < argc) o.types = parse_types(argv[++i]);
        else if (a == "--precision" && i + 1 < argc) o.precisions = parse_precisions(argv[++i]);
        else if (a == "--ntok" && i + 1 < argc) o.ntoks = parse_ints(argv[++i]);
        else if (a == "--shape" && i + 1 < argc) o.shapes = parse_shapes(argv[++i]);
        else std::fprintf(stderr, "ignoring argument %s\n", a.c_str());
    }
    return o;
}

std::vector<uint8_t> random_matrix(DType t, int64_t rows, int64_t k, std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 0.05f);
    const size_t row_bytes = ekv::dtype_row_bytes(t, k);
    std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
    if (!ekv::quantize_row_supported(t)) {  // K-quants: random bytes time the same as real ones
        std::uniform_int_distribution<int> byte(0, 255);
        for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
        return w;
    }
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = 0; r < rows; ++r) {
        for (auto& v : row) v = dist(rng);
        ekv::quantize_row(t, row.data(), w.data() + r * row_bytes, k);
    }
    return w;
}

double process_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
    double wall;  // seconds per call, fastest batch
    double cpu;   // process CPU seconds per call over all batches (all threads, spinning included)
};

struct Call {
    DType type;
    const BenchShape* shape;
    const float* x;
    int ntok;
    float* y;
    void* scratch;
    ActivationPrecision precision;
};

// Time per call: kRepeats batches of calls (together about `seconds` of wall
// time), cycling through `copies`; the fastest batch's mean.
Timing time_calls(const Call& c, const std::vector<const uint8_t*>& copies, ekv::ThreadPool& pool, double seconds) {
    auto one = [&](size_t i) {
        ekv::cpu::matmul(c.type, copies[i % copies.size()], c.shape->rows, c.shape->k, c.x, c.ntok, c.y, c.scratch,
                         pool, c.precision);
    };
    one(0);  // warm up, and size the batches
    const auto t0 = Clock::now();
    one(1);
    const double first = std::chrono::duration<double>(Clock::now() - t0).count();
    const size_t per_batch = static_cast<size_t>(seconds / kRepeats / (first > 1e-7 ? first : 1e-7)) + 1;
    size_t calls = 2;
    double best = 1e30;
    const double cpu_start = process_cpu_seconds();
    for (int rep = 0; rep < kRepeats; ++rep) {
        const auto start = Clock::now();
        for (size_t i = 0; i < per_batch; ++i) one(calls++);
        const double t = std::chrono::duration<double>(Clock::now() - start).count() / static_cast<double>(per_batch);
        if (t < best) best = t;
    }
    const double cpu = (process_cpu_seconds() - cpu_start) / static_cast<double>(per_batch * kRepeats);
    return {best, cpu};
}

const char* precision_name(ActivationPrecision p) { return p == ActivationPrecision::F32 ? "f32" : "int8"; }

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse(argc, argv);
    ekv::ThreadPool pool(opt.threads);
    ekv::cpu::matmul_force_scalar(opt.scalar);
    std::printf("matmul kernels: %s, threads: %d\n", ekv::cpu::matmul_isa(), pool.size());
    std::printf("%-5s %-12s %6s %6s %5s %4s | %9s %8s %8s %9s | %9s %8s %9s\n", "type", "tensor", "rows", "k",
                "ntok", "act", "hot us", "GB/s", "GMAC/s", "cpu us", "cold us", "GB/s", "cpu us");

    std::mt19937 rng(42);
    for (DType t : opt.types) {
        const std::vector<BenchShape> shapes =
            opt.shapes.empty() ? std::vector<BenchShape>(std::begin(kShapes), std::end(kShapes)) : opt.shapes;
        for (const BenchShape& s : shapes) {
            if (s.k % ekv::dtype_traits(t).block_size != 0) continue;  // e.g. K-quants need k % 256 == 0
            const std::vector<uint8_t> w = random_matrix(t, s.rows, s.k, rng);
            // Cold copies: enough distinct buffers to exceed any last-level cache.
            const size_t cold_total = size_t(256) << 20;
            const size_t n_copies = w.size() >= cold_total ? 1 : cold_total / w.size() + 1;
            std::vector<uint8_t> cold(w.size() * n_copies);
            std::vector<const uint8_t*> cold_ptrs;
            for (size_t c = 0; c < n_copies; ++c) {
                std::memcpy(cold.data() + c * w.size(), w.data(), w.size());
                cold_ptrs.push_back(cold.data() + c * w.size());
            }
            const std::vector<const uint8_t*> hot_ptrs = {w.data()};
            for (int ntok : opt.ntoks) {
                std::normal_distribution<float> dist(0.0f, 1.0f);
                std::vector<float> x(static_cast<size_t>(s.k) * ntok);
                for (auto& v : x) v = dist(rng);
                std::vector<float> y(static_cast<size_t>(s.rows) * ntok);
                for (ActivationPrecision p : opt.precisions) {
                    std::vector<uint8_t> scratch(ekv::cpu::matmul_scratch_bytes(t, s.k, ntok, p));
                    const Call call{t, &s, x.data(), ntok, y.data(), scratch.data(), p};
                    const Timing hot = time_calls(call, hot_ptrs, pool, opt.seconds);
                    const Timing cold_t = time_calls(call, cold_ptrs, pool, opt.seconds);
                    const double bytes = static_cast<double>(w.size());
                    const double macs = static_cast<double>(s.rows) * s.k * ntok;
                    std::printf("%-5s %-12s %6lld %6lld %5d %4s | %9.1f %8.2f %8.2f %9.1f | %9.1f %8.2f %9.1f\n",
                                ekv::dtype_name(t), s.what, static_cast<long long>(s.rows),
                                static_cast<long long>(s.k), ntok, precision_name(p), hot.wall * 1e6,
                                bytes / hot.wall * 1e-9, macs / hot.wall * 1e-9, hot.cpu * 1e6, cold_t.wall * 1e6,
                                bytes / cold_t.wall * 1e-9, cold_t.cpu * 1e6);
                    std::fflush(stdout);
                }
            }
        }
    }
    return 0;
}
