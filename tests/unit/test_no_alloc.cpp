// Enforces DESIGN.md's "no per-token allocation": after a prefill and a
// couple of warm-up steps, single-token decode through the public C API must
// not touch the heap, for every cache family on the CPU backend.
//
// This file holds the binary's only replacement of the global operator
// new/delete (every standard overload) behind unit/alloc_counter.h; see there.
// To find an allocation a test reports, run it with EKV_TRACE_ALLOCS=1 (the
// first allocations' return addresses are printed; resolve them with
// addr2line -e edgekv_tests) or break on count_allocation() in gdb.
#include <execinfo.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "model/cache_family_util.h"
#include "unit/alloc_counter.h"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

// Optional allocation traces (EKV_TRACE_ALLOCS=1): fixed storage, filled
// without allocating.
constexpr int kMaxTraces = 4;
constexpr int kTraceDepth = 24;
bool g_trace = false;
void* g_trace_frames[kMaxTraces][kTraceDepth];
int g_trace_depth[kMaxTraces];
std::atomic<int> g_traces{0};

__attribute__((noinline)) void count_allocation() {
    const long n = g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (g_trace && n < kMaxTraces) {
        g_counting.store(false);  // backtrace() must not count itself
        g_trace_depth[n] = backtrace(g_trace_frames[n], kTraceDepth);
        g_traces.store(static_cast<int>(n + 1));
        g_counting.store(true);
    }
}

void* allocate(std::size_t n) {
    if (g_counting.load(std::memory_order_relaxed)) count_allocation();
    return std::malloc(n ? n : 1);
}

void* allocate_aligned(std::size_t n, std::align_val_t al) {
    if (g_counting.load(std::memory_order_relaxed)) count_allocation();
    std::size_t a = static_cast<std::size_t>(al);
    if (a < sizeof(void*)) a = sizeof(void*);
    void* p = nullptr;
    return posix_memalign(&p, a, n ? n : 1) == 0 ? p : nullptr;
}

}  // namespace

namespace ekv_test {

AllocationCount::AllocationCount() {
    static const bool trace = [] {
        const char* env = std::getenv("EKV_TRACE_ALLOCS");
        if (!env || env[0] != '1') return false;
        void* frames[2];
        backtrace(frames, 2);  // the first call may load libgcc: not inside a count
        return true;
    }();
    g_trace = trace;
    g_allocations.store(0);
    g_traces.store(0);
    g_counting.store(true);
}

AllocationCount::~AllocationCount() { g_counting.store(false); }

long AllocationCount::stop() {
    g_counting.store(false);
    const long n = g_allocations.load();
    for (int i = 0; i < g_traces.load(); ++i) {
        std::fprintf(stderr, "allocation %d:\n", i);
        backtrace_symbols_fd(g_trace_frames[i], g_trace_depth[i], STDERR_FILENO);
    }
    g_traces.store(0);
    return n;
}

}  // namespace ekv_test

// noinline keeps GCC from pairing inlined malloc/free with new/delete in its
// mismatch warning.
#define EKV_NOINLINE __attribute__((noinline))

EKV_NOINLINE void* operator new(std::size_t n) {
    if (void* p = allocate(n)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new[](std::size_t n) {
    if (void* p = allocate(n)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
EKV_NOINLINE void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
EKV_NOINLINE void* operator new(std::size_t n, std::align_val_t al) {
    if (void* p = allocate_aligned(n, al)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new[](std::size_t n, std::align_val_t al) {
    if (void* p = allocate_aligned(n, al)) return p;
    throw std::bad_alloc();
}
EKV_NOINLINE void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return allocate_aligned(n, al);
}
EKV_NOINLINE void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return allocate_aligned(n, al);
}
EKV_NOINLINE void operator delete(void* p) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::size_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
EKV_NOINLINE void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
EKV_NOINLINE void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace ekv_test {
namespace {

// A model on the CPU backend plus a logits buffer, and the decode loop whose
// allocations are counted.
class NoAllocTest : public ::testing::Test {
protected:
    void load(const std::string& path) {
        ASSERT_FALSE(path.empty()) << "model path not set";
        model_ = load_model(path);
        ASSERT_TRUE(model_);
        nv_ = n_vocab(model_.get());
        logits_.assign(static_cast<size_t>(nv_), 0.f);
    }

    // Prompt tokens spread over the vocabulary, deterministic.
    std::vector<int32_t> prompt(int32_t n) const {
        std::vector<int32_t> t(static_cast<size_t>(n));
        for (int32_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 97 + 11) % nv_;
        return t;
    }

    bool step(ekv_cache* c, const char* what) {
        const int32_t tok = argmax(logits_.data(), nv_);
        const ekv_status st = ekv_forward(model_.get(), c, &tok, 1, nullptr, EKV_LOGITS_LAST, logits_.data(),
                                          logits_.size());
        if (st != EKV_OK) {
            ADD_FAILURE() << what << ": " << ekv_last_error();
            return false;
        }
        return true;
    }

    // Prefill, two warm-up steps, then `steps` single-token forwards counted.
    // Returns the number of allocations in the counted steps (-1 on failure);
    // *last_warmup (optional) gets those of the second warm-up step.
    long decode_allocations(ekv_cache* c, int32_t n_prompt, int32_t steps, const std::string& what,
                            long* last_warmup = nullptr) {
        const std::vector<int32_t> p = prompt(n_prompt);
        if (ekv_forward(model_.get(), c, p.data(), n_prompt, nullptr, EKV_LOGITS_LAST, logits_.data(),
                        logits_.size()) != EKV_OK) {
            ADD_FAILURE() << what << " prefill: " << ekv_last_error();
            return -1;
        }
        if (!step(c, what.c_str())) return -1;
        {
            AllocationCount warmup;
            const bool ok = step(c, what.c_str());
            const long n = warmup.stop();
            if (!ok) return -1;
            if (last_warmup) *last_warmup = n;
        }
        AllocationCount count;
        bool ok = true;
        for (int32_t i = 0; i < steps && ok; ++i) ok = step(c, what.c_str());
        const long n = count.stop();
        return ok ? n : -1;
    }

    void expect_no_decode_allocations(const CacheSpec& spec, int32_t n_prompt, int32_t steps) {
        CachePtr c = make(model_.get(), spec);
        ASSERT_TRUE(c) << spec.name;
        EXPECT_EQ(decode_allocations(c.get(), n_prompt, steps, spec.name), 0)
            << spec.name << ": heap allocations in " << steps << " decode steps after a " << n_prompt
            << "-token prefill";
    }

    // Every cache family. `group`/`residual` are the KIVI parameters; the
    // prefill is long enough for the rings to wrap during the counted steps.
    void check_cache_family(int32_t group, int32_t residual, int32_t steps) {
        CacheSpec s;
        s.dtype = EKV_KV_F16;
        s.name = "static";
        s.type = EKV_CACHE_STATIC;
        s.max_len = 512;
        // 240 + 2 + steps crosses 256 keys, where CPU attention splits a
        // query's keys into more chunks (a larger merge buffer).
        expect_no_decode_allocations(s, 240, steps);

        s = CacheSpec();
        s.dtype = EKV_KV_F16;
        s.name = "sliding_window";
        s.type = EKV_CACHE_SLIDING_WINDOW;
        s.window = 64;
        expect_no_decode_allocations(s, 40, steps);

        s.name = "sink";
        s.type = EKV_CACHE_SINK;
        s.sinks = 4;
        expect_no_decode_allocations(s, 40, steps);

        s = CacheSpec();
        s.name = "quantized";
        s.type = EKV_CACHE_QUANTIZED;
        s.dtype = EKV_KV_KIVI;
        s.nbits = 4;
        s.group = group;
        s.residual = residual;
        expect_no_decode_allocations(s, 40, steps);

        s = CacheSpec();
        s.dtype = EKV_KV_F16;
        s.name = "offloaded";
        s.type = EKV_CACHE_OFFLOADED;
        s.offload = EKV_PLACEMENT_HOST;
        expect_no_decode_allocations(s, 40, steps);
    }

    // A dynamic cache grows by 256-token chunks: allocations are allowed only
    // at those growth points. The second warm-up step (token 257) grows it,
    // so the counted steps start right after a growth.
    void check_dynamic(int32_t steps) {
        CacheSpec s;
        s.dtype = EKV_KV_F16;
        s.name = "dynamic";
        s.type = EKV_CACHE_DYNAMIC;
        CachePtr c = make(model_.get(), s);
        ASSERT_TRUE(c);
        long growth = 0;
        EXPECT_EQ(decode_allocations(c.get(), 255, steps, "dynamic", &growth), 0)
            << "dynamic: heap allocations in " << steps << " decode steps after a growth point";
        EXPECT_GT(growth, 0) << "token 257 should have grown the cache (test setup)";
    }

    ModelPtr model_;
    int32_t nv_ = 0;
    std::vector<float> logits_;
};

TEST_F(NoAllocTest, CounterSeesAllocations) {
    // The replacement operators are really in use (a test of the test).
    AllocationCount count;
    std::vector<int>* v = new std::vector<int>(16);
    void* a = ::operator new(64, std::align_val_t(64));
    const long n = count.stop();
    ::operator delete(a, std::align_val_t(64));
    delete v;
    EXPECT_EQ(n, 3);
}

TEST_F(NoAllocTest, TinyLlamaDecodeEveryCache) {
    load(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
    if (HasFatalFailure()) return;
    check_cache_family(8, 16, 100);
}

TEST_F(NoAllocTest, TinyLlamaDynamicAfterGrowth) {
    load(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
    if (HasFatalFailure()) return;
    check_dynamic(100);
}

TEST_F(NoAllocTest, SmolLM2DecodeEveryCache) {
    load(smollm2_path());
    if (HasFatalFailure()) return;
    check_cache_family(32, 32, 24);
}

TEST_F(NoAllocTest, SmolLM2DynamicAfterGrowth) {
    load(smollm2_path());
    if (HasFatalFailure()) return;
    check_dynamic(24);
}

// ekv_generate allocates per call, never per token: continuing a
// conversation costs the same few allocations whether it generates 8 or 48
// tokens. What remains per call (see generator.cpp): the n_vocab logits
// buffer and the token sequence (prompt + generated, for the sampler's
// history), each sized once.
TEST_F(NoAllocTest, TinyLlamaGenerateContinuation) {
    load(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
    if (HasFatalFailure()) return;
    CachePtr c = make_cache(model_.get(), EKV_CACHE_DYNAMIC);
    ASSERT_TRUE(c);
    ekv_generate_params gp = ekv_generate_default_params();
    gp.temperature = 0.f;
    gp.stop_at_eos = 0;  // fixed lengths
    std::vector<int32_t> conversation = prompt(16);
    std::vector<int32_t> out(64);

    // One turn: the conversation so far plus a few new user tokens.
    auto turn = [&](int32_t new_tokens, int32_t max_new, ekv_generate_result* r) {
        const std::vector<int32_t> user = prompt(new_tokens + 3);
        conversation.insert(conversation.end(), user.begin() + 3, user.end());
        gp.max_new_tokens = max_new;
        AllocationCount count;
        const ekv_status st = ekv_generate(model_.get(), c.get(), conversation.data(),
                                           static_cast<int32_t>(conversation.size()), &gp, out.data(),
                                           static_cast<int32_t>(out.size()), r);
        const long n = count.stop();
        EXPECT_EQ(st, EKV_OK) << ekv_last_error();
        EXPECT_EQ(r->n_generated, max_new);
        conversation.insert(conversation.end(), out.begin(), out.begin() + r->n_generated);
        return n;
    };
    ekv_generate_result r = ekv_generate_default_result();
    turn(0, 8, &r);  // first call: prefill
    const long short_turn = turn(8, 8, &r);
    EXPECT_GT(r.n_prompt_reused, 0);
    const long long_turn = turn(8, 48, &r);
    EXPECT_GT(r.n_prompt_reused, 0);
    std::printf("ekv_generate continuation: %ld allocations (8 tokens), %ld (48 tokens)\n", short_turn, long_turn);
    EXPECT_EQ(short_turn, long_turn) << "allocations grow with the number of generated tokens";
    // Sized once per call: the generator, its logits buffer, the token
    // sequence and two text buffers (the token's piece and the released text).
    EXPECT_LE(long_turn, 5) << "generator, logits, token sequence and text buffers only";
}

}  // namespace
}  // namespace ekv_test
