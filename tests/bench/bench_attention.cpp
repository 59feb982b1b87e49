// Microbenchmark of the CPU decode attention (one query over a cached
// context) on the SmolLM2-135M and Gemma 3 270M head shapes (not a test:
// prints numbers, asserts nothing).
//
//   bench_attention [--threads N] [--scalar] [--seconds S] [--depths 512,4096]
//                   [--kv f16,kivi4,kivi2] [--layers L]
//
// For each shape, KV format and depth it prints microseconds per call and
// the KV bytes read per second, twice:
//   hot  - the same layer's cache every call (in cache for short contexts)
//   cold - rotating through L layers' caches (default: the model's layer
//          count, more until they total 96 MiB), like decode, where each
//          layer's KV comes from memory once per token.
// Times are the fastest of several batches' mean time per call (the least
// disturbed estimate on a shared machine).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_attention.h"
#include "core/fp16.h"
#include "core/kivi.h"
#include "core/thread_pool.h"

namespace {

using Clock = std::chrono::steady_clock;

struct HeadShape {
    const char* model;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int layers;
};

const HeadShape kShapes[] = {
    {"smollm2", 9, 3, 64, 30},
    {"gemma3", 4, 1, 256, 18},
};

constexpr int kRepeats = 9;
constexpr int kKiviGroup = 64;
constexpr double kColdBytes = 96.0 * (1 << 20);

struct Options {
    int threads = 1;
    bool scalar = false;
    double seconds = 1.0;
    int layers = 0;  // 0: the model's
    std::vector<int> depths = {512, 4096};
    std::vector<std::string> kv = {"f16", "kivi4"};
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t comma = s.find(',', start);
        const size_t end = comma == std::string::npos ? s.size() : comma;
        if (end > start) out.push_back(s.substr(start, end - start));
        start = end + 1;
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
        else if (a == "--layers" && i + 1 < argc) o.layers = std::atoi(argv[++i]);
        else if (a == "--depths" && i + 1 < argc) {
            o.depths.clear();
            for (const std::string& d : split(argv[++i])) o.depths.push_back(std::atoi(d.c_str()));
        } else if (a == "--kv" && i + 1 < argc) o.kv = split(argv[++i]);
        else std::fprintf(stderr, "ignoring argument %s\n", a.c_str());
    }
    return o;
}

// One layer's cache: a single segment of `depth` tokens, plain f16 rows or
// KIVI groups, filled with random values.
class LayerCache {
public:
    LayerCache(const HeadShape& s, const std::string& kv, int depth, std::mt19937& rng) {
        const int64_t width = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
        std::normal_distribution<float> nd(0.f, 1.f);
        KvSegment& seg = view.seg[0];
        view.n_segments = 1;
        seg.n_tokens = depth;
        if (kv == "f16") {
            seg.format = KvFormat::Plain;
            seg.k = plain(depth, width, nd, rng);
            seg.v = plain(depth, width, nd, rng);
            bytes = 2.0 * depth * width * 2;
            return;
        }
        const int nbits = kv == "kivi2" ? 2 : (kv == "kivi8" ? 8 : 4);
        seg.format = KvFormat::Kivi;
        seg.kivi.nbits = nbits;
        seg.kivi.group = kKiviGroup;
        seg.kivi.head_dim = s.head_dim;
        const int64_t groups = (depth + kKiviGroup - 1) / kKiviGroup;
        const int64_t tokens = groups * kKiviGroup;
        std::vector<float> x(static_cast<size_t>(tokens * width));
        for (float& f : x) f = nd(rng);
        const size_t kb = ekv::kivi_key_group_bytes(width, kKiviGroup, nbits);
        const size_t vb = ekv::kivi_value_row_bytes(width, kKiviGroup, nbits);
        seg.k = raw(groups, kb);
        seg.v = raw(tokens, vb);
        for (int64_t g = 0; g < groups; ++g)
            ekv::kivi_quantize_key_group(x.data() + g * kKiviGroup * width, false, width * sizeof(float), width,
                                         s.head_dim, kKiviGroup, nbits, seg.k.ptr<uint8_t>(g));
        for (int64_t t = 0; t < tokens; ++t)
            ekv::kivi_quantize_value_row(x.data() + t * width, false, width, s.head_dim, kKiviGroup, nbits,
                                         seg.v.ptr<uint8_t>(t));
        bytes = static_cast<double>(groups * kb) * depth / tokens + static_cast<double>(vb) * depth;
    }

    ekv::KvView view;
    double bytes = 0;  // KV bytes one call reads

private:
    using KvSegment = ekv::KvSegment;
    using KvFormat = ekv::KvFormat;
    ekv::Tensor raw(int64_t rows, size_t row_bytes) {
        mem_.push_back(std::make_unique<std::vector<uint8_t>>(static_cast<size_t>(rows) * row_bytes));
        ekv::Tensor t;
        t.type = ekv::DType::I8;
        t.cols = static_cast<int64_t>(row_bytes);
        t.rows = rows;
        t.row_bytes = row_bytes;
        t.data = mem_.back()->data();
        return t;
    }
    ekv::Tensor plain(int64_t rows, int64_t width, std::normal_distribution<float>& nd, std::mt19937& rng) {
        ekv::Tensor t = raw(rows, static_cast<size_t>(width) * 2);
        t.type = ekv::DType::F16;
        t.cols = width;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < width; ++c) t.ptr<uint16_t>(r)[c] = ekv::f32_to_f16(nd(rng));
        return t;
    }
    std::vector<std::unique_ptr<std::vector<uint8_t>>> mem_;
};

// Fastest batch's mean seconds per call, cycling through the layers.
double time_calls(const std::vector<std::unique_ptr<LayerCache>>& layers, const ekv::Tensor& q, int32_t pos,
                  const ekv::AttentionParams& p, ekv::Tensor& out, ekv::ThreadPool& pool, double seconds) {
    size_t calls = 0;
    auto one = [&]() {
        const ekv::KvView& v = layers[calls++ % layers.size()]->view;
        ekv::cpu::attention(q, &pos, v, p, out, pool);
    };
    one();
    const auto t0 = Clock::now();
    one();
    const double first = std::chrono::duration<double>(Clock::now() - t0).count();
    const size_t per_batch = static_cast<size_t>(seconds / kRepeats / (first > 1e-7 ? first : 1e-7)) + 1;
    double best = 1e30;
    for (int rep = 0; rep < kRepeats; ++rep) {
        const auto start = Clock::now();
        for (size_t i = 0; i < per_batch; ++i) one();
        const double t = std::chrono::duration<double>(Clock::now() - start).count() / static_cast<double>(per_batch);
        if (t < best) best = t;
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse(argc, argv);
    ekv::ThreadPool pool(opt.threads);
    ekv::cpu::attention_force_scalar(opt.scalar);
    std::printf("attention kernels: %s, threads: %d\n", ekv::cpu::attention_isa(), pool.size());
    std::printf("%-8s %-6s %6s %7s | %9s %8s | %9s %8s\n", "model", "kv", "depth", "layers", "hot us", "GB/s",
                "cold us", "GB/s");
    std::mt19937 rng(7);
    for (const HeadShape& s : kShapes) {
        ekv::AttentionParams p;
        p.n_heads = s.n_heads;
        p.n_kv_heads = s.n_kv_heads;
        p.head_dim = s.head_dim;
        p.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
        const int64_t q_width = static_cast<int64_t>(s.n_heads) * s.head_dim;
        std::vector<float> qbuf(static_cast<size_t>(q_width)), obuf(static_cast<size_t>(q_width));
        std::normal_distribution<float> nd(0.f, 1.f);
        for (float& f : qbuf) f = nd(rng);
        ekv::Tensor q, out;
        q.type = out.type = ekv::DType::F32;
        q.cols = out.cols = q_width;
        q.rows = out.rows = 1;
        q.row_bytes = out.row_bytes = static_cast<size_t>(q_width) * sizeof(float);
        q.data = qbuf.data();
        out.data = obuf.data();
        const int n_layers = opt.layers > 0 ? opt.layers : s.layers;
        for (const std::string& kv : opt.kv) {
            for (int depth : opt.depths) {
                // The model's layers, and more while they would fit a last-level cache:
                // in decode the weights streamed between two steps evict the KV.
                std::vector<std::unique_ptr<LayerCache>> layers;
                double total = 0;
                while (static_cast<int>(layers.size()) < n_layers || total < kColdBytes) {
                    layers.push_back(std::make_unique<LayerCache>(s, kv, depth, rng));
                    total += layers.back()->bytes;
                }
                const int32_t pos = depth - 1;
                std::vector<std::unique_ptr<LayerCache>> one_layer;
                one_layer.push_back(std::move(layers.back()));
                layers.pop_back();
                const double hot = time_calls(one_layer, q, pos, p, out, pool, opt.seconds);
                layers.push_back(std::move(one_layer.back()));
                const double cold = time_calls(layers, q, pos, p, out, pool, opt.seconds);
                const double bytes = layers[0]->bytes;
                std::printf("%-8s %-6s %6d %7zu | %9.1f %8.2f | %9.1f %8.2f\n", s.model, kv.c_str(), depth, layers.size(),
                            hot * 1e6, bytes / hot * 1e-9, cold * 1e6, bytes / cold * 1e-9);
                std::fflush(stdout);
            }
        }
    }
    return 0;
}
