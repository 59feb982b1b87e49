// Allocation failure is a status, never a crash or a leak. Each test walks
// every host allocation of one operation through the C ABI: it counts them
// with failures off, then repeats the operation once per allocation with
// that one failing (failing_new.cpp for operator new, core/fault_injection.h
// for the library's mappings and libc streams). Every attempt must return
// EKV_OK (the failure was absorbed, e.g. a file read instead of mapped) or
// EKV_ERR_OUT_OF_MEMORY with a message, leave its outputs untouched, and
// leave the objects that existed before it working exactly as before
// (bit-identical logits). LeakSanitizer (the asan preset) fails the test
// process on any leak at exit; every attempt frees what it made.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/fault_injection.h"
#include "model/cache_family_util.h"

using namespace ekv_test;

namespace {

// ---- the walk ----------------------------------------------------------

// One attempt's armed call.
struct Armed {
    ekv_status status = EKV_OK;
    long allocations = 0;  // host allocations the call made
    bool injected = false; // the armed allocation happened (and failed)
};

// Runs call() with its fail_at-th host allocation failing (0: none).
Armed run_armed(long fail_at, const std::function<ekv_status()>& call) {
    ekv::fault::arm_host(fail_at);
    Armed a;
    a.status = call();
    a.allocations = ekv::fault::host_allocations();
    a.injected = ekv::fault::host_failure_injected();
    ekv::fault::arm_host(0);
    return a;
}

// The status contract: EKV_OK when nothing failed or the failure was
// absorbed, else EKV_ERR_OUT_OF_MEMORY with a message for ekv_last_error().
::testing::AssertionResult clean_status(const Armed& a) {
    if (a.status == EKV_OK) return ::testing::AssertionSuccess();
    if (!a.injected)
        return ::testing::AssertionFailure() << "nothing failed, yet status " << ekv_status_string(a.status) << ": "
                                             << ekv_last_error();
    if (a.status != EKV_ERR_OUT_OF_MEMORY)
        return ::testing::AssertionFailure() << "status " << ekv_status_string(a.status) << " (" << ekv_last_error()
                                             << "), expected out of memory";
    if (ekv_last_error()[0] == '\0') return ::testing::AssertionFailure() << "out of memory without a message";
    return ::testing::AssertionSuccess();
}

// An attempt: given fail_at, sets up, runs the armed call, checks, frees.
using Attempt = std::function<Armed(long fail_at)>;

// Counts the operation's allocations (an attempt with none failing), then
// walks fail_at over each of them. Stops at the first attempt that fails a
// check (the message names it) so one bug does not flood the log.
void walk(const std::string& name, const Attempt& attempt) {
    long sites = 0;
    {
        SCOPED_TRACE(name + ": counting run");
        const Armed counted = attempt(0);
        ASSERT_EQ(counted.status, EKV_OK) << ekv_last_error();
        sites = counted.allocations;
    }
    ASSERT_GT(sites, 0) << name << " allocates nothing: the hooks are not wired";
    long oom = 0, absorbed = 0, missed = 0;
    for (long n = 1; n <= sites; ++n) {
        SCOPED_TRACE(name + ": allocation " + std::to_string(n) + " of " + std::to_string(sites) + " fails");
        const Armed a = attempt(n);
        if (::testing::Test::HasFailure()) return;
        if (!a.injected)
            ++missed;  // this run allocated less (a lazy one-time setup done before)
        else if (a.status == EKV_OK)
            ++absorbed;
        else
            ++oom;
    }
    std::printf("[ walk     ] %s: %ld allocations walked: %ld out of memory, %ld absorbed, %ld not reached\n",
                name.c_str(), sites, oom, absorbed, missed);
    ::testing::Test::RecordProperty(name, std::to_string(sites) + " allocations walked");
    EXPECT_GT(oom, 0) << name << ": no injected failure surfaced as out of memory";
}

// ---- models, caches, probes ----------------------------------------------

std::string fixture(const char* rel) { return fixtures_dir() + "/" + rel; }

ekv_model_params cpu_params() {
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    p.n_threads = 3;  // two pool workers: a failed second start must stop the first
    return p;
}

// Token ids spread over the vocabulary, deterministic.
std::vector<int32_t> tokens(const ekv_model* m, int32_t n, int32_t salt = 0) {
    const int32_t nv = n_vocab(m);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = 3 + ((i + salt) * 131 + 17) % (nv - 3);
    return t;
}

// Last-token logits of `toks` forwarded after what the cache holds.
std::vector<float> forward(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& toks) {
    std::vector<float> out(static_cast<size_t>(n_vocab(m)));
    const ekv_status st = ekv_forward(m, c, toks.data(), static_cast<int32_t>(toks.size()), nullptr, EKV_LOGITS_LAST,
                                      out.data(), out.size());
    EXPECT_EQ(st, EKV_OK) << ekv_last_error();
    return st == EKV_OK ? out : std::vector<float>();
}

// A model's fingerprint for "still works": logits of a short prompt on a
// fresh cache of its natural type.
std::vector<float> model_probe(ekv_model* m) {
    CachePtr c = make_cache(m, EKV_CACHE_AUTO);
    if (!c) return {};
    return forward(m, c.get(), tokens(m, 5, 7));
}

int32_t seq_len(const ekv_cache* c) {
    int32_t n = -1;
    EXPECT_EQ(ekv_cache_seq_len(c, &n), EKV_OK);
    return n;
}

ekv_cache_params params_of(const CacheSpec& s) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = s.type;
    p.dtype = s.dtype;
    p.max_cache_len = s.max_len;
    p.window_length = s.window;
    p.num_sink_tokens = s.sinks;
    p.nbits = s.nbits;
    p.q_group_size = s.group;
    p.residual_length = s.residual;
    p.offload = s.offload;
    return p;
}

// A cache case: which model and which cache on it.
struct Case {
    const char* model;  // fixture path
    CacheSpec spec;
};

CacheSpec spec(ekv_cache_type type, const char* name, ekv_kv_dtype dtype = EKV_KV_F32) {
    CacheSpec s;
    s.type = type;
    s.dtype = dtype;
    s.name = name;
    return s;
}

const char* const kLlama = "tiny_llama/tiny_llama_f32.gguf";
const char* const kGemma3 = "tiny_gemma3/tiny_gemma3_f32.gguf";
const char* const kJamba = "tiny_jamba/tiny_jamba_f32.gguf";
const char* const kMamba = "tiny_mamba/tiny_mamba_f32.gguf";

// Every retention and storage of the generic family on the tiny Llama, and
// the model-specific caches (hybrid, hybrid Mamba, Mamba) on their models.
std::vector<Case> create_cases() {
    CacheSpec st = spec(EKV_CACHE_STATIC, "static f16", EKV_KV_F16);
    st.max_len = 128;
    CacheSpec ost = spec(EKV_CACHE_OFFLOADED_STATIC, "offloaded_static");
    ost.max_len = 96;
    CacheSpec sw = spec(EKV_CACHE_SLIDING_WINDOW, "sliding_window 24");
    sw.window = 24;
    CacheSpec sink = spec(EKV_CACHE_SINK, "sink 4+20");
    sink.window = 24;
    sink.sinks = 4;
    CacheSpec ksink = spec(EKV_CACHE_SINK, "sink KIVI-2 host", EKV_KV_KIVI);
    ksink.window = 40;
    ksink.sinks = 4;
    ksink.nbits = 2;
    ksink.offload = EKV_PLACEMENT_HOST;
    return {{kLlama, spec(EKV_CACHE_DYNAMIC, "dynamic f32")},
            {kLlama, spec(EKV_CACHE_DYNAMIC, "dynamic f16", EKV_KV_F16)},
            {kLlama, st},
            {kLlama, spec(EKV_CACHE_OFFLOADED, "offloaded f16", EKV_KV_F16)},
            {kLlama, ost},
            {kLlama, spec(EKV_CACHE_QUANTIZED, "quantized KIVI-4")},
            {kLlama, sw},
            {kLlama, sink},
            {kLlama, ksink},
            {kGemma3, spec(EKV_CACHE_HYBRID, "gemma3 hybrid")},
            {kJamba, spec(EKV_CACHE_HYBRID_MAMBA, "jamba hybrid_mamba")},
            {kMamba, spec(EKV_CACHE_MAMBA, "mamba")}};
}

// The caches the state operations (generate, clone, save, load) run on:
// plain growth, a wrapped KIVI sink ring, window + global layers, and
// recurrent state that cannot be rewound.
std::vector<Case> state_cases() {
    std::vector<Case> all = create_cases(), out;
    for (const Case& c : all) {
        const std::string& n = c.spec.name;
        if (n == "dynamic f32" || n == "sink KIVI-2 host" || n == "gemma3 hybrid" || n == "jamba hybrid_mamba")
            out.push_back(c);
    }
    return out;
}

// Loads each model once per test process.
ekv_model* model_for(const char* rel) {
    static std::vector<std::pair<std::string, ModelPtr>> loaded;
    for (auto& e : loaded)
        if (e.first == rel) return e.second.get();
    const ekv_model_params p = cpu_params();
    ekv_model* m = nullptr;
    EXPECT_EQ(ekv_model_load(fixture(rel).c_str(), &p, &m), EKV_OK) << rel << ": " << ekv_last_error();
    loaded.emplace_back(rel, ModelPtr(m));
    return m;
}

// A cache of the case holding `n` tokens (prefilled in chunks of 16).
CachePtr filled(const Case& k, int32_t n) {
    ekv_model* m = model_for(k.model);
    CachePtr c = make(m, k.spec);
    const std::vector<int32_t> t = tokens(m, n);
    for (int32_t i = 0; i < n && c; i += 16) {
        const std::vector<int32_t> chunk(t.begin() + i, t.begin() + std::min(n, i + 16));
        if (forward(m, c.get(), chunk).empty()) return nullptr;
    }
    return c;
}

// Logits of `toks` forwarded on a copy of the cache, so the cache itself is
// not changed (rings and recurrent state cannot be cropped back).
std::vector<float> probe_on_copy(ekv_model* m, const ekv_cache* c, const std::vector<int32_t>& toks) {
    ekv_cache* copy = nullptr;
    EXPECT_EQ(ekv_cache_clone(c, &copy), EKV_OK) << ekv_last_error();
    CachePtr owned(copy);
    if (!copy) return {};
    return forward(m, copy, toks);
}

std::vector<int32_t> probe_tokens(const ekv_model* m) { return tokens(m, 2, 1000); }

// A non-null address for outputs that a failed call must reset to NULL.
template <class T>
T* sentinel() {
    static char byte;
    return reinterpret_cast<T*>(&byte);
}

::testing::AssertionResult same(const std::vector<float>& got, const std::vector<float>& want) {
    if (got.empty() || got.size() != want.size()) return ::testing::AssertionFailure() << "no logits";
    if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0)
        return ::testing::AssertionFailure() << "logits differ (normalized error "
                                             << normalized_max_error(got.data(), want.data(),
                                                                     static_cast<int32_t>(got.size()))
                                             << ")";
    return ::testing::AssertionSuccess();
}

std::vector<std::string> files_in(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
        closedir(d);
    }
    return out;
}

// ---- the walks -----------------------------------------------------------

// Model load from a path (mapping and pool threads included); the models
// already loaded keep giving the same logits.
TEST(AllocationFailure, ModelLoad) {
    ekv_model* other = model_for(kLlama);
    const std::vector<float> other_before = model_probe(other);
    for (const char* rel : {kLlama, kGemma3, kJamba}) {
        ModelPtr ref;
        {
            const ekv_model_params p = cpu_params();
            ekv_model* m = nullptr;
            ASSERT_EQ(ekv_model_load(fixture(rel).c_str(), &p, &m), EKV_OK) << ekv_last_error();
            ref.reset(m);
        }
        const std::vector<float> want = model_probe(ref.get());
        walk(std::string("model load ") + rel, [&](long fail_at) {
            const ekv_model_params p = cpu_params();
            ekv_model* m = sentinel<ekv_model>();
            const std::string path = fixture(rel);
            const Armed a = run_armed(fail_at, [&] { return ekv_model_load(path.c_str(), &p, &m); });
            ModelPtr owned(a.status == EKV_OK ? m : nullptr);
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK)
                EXPECT_TRUE(same(model_probe(m), want)) << "a model loaded after an absorbed failure";
            else
                EXPECT_EQ(m, nullptr) << "a failed load must set *out to NULL";
            return a;
        });
    }
    // From memory: no mapping, the GGUF bytes are the caller's.
    const std::vector<uint8_t> gguf = read_bytes(fixture(kLlama));
    const std::vector<float> want = model_probe(other);
    walk("model load from memory", [&](long fail_at) {
        const ekv_model_params p = cpu_params();
        ekv_model* m = sentinel<ekv_model>();
        const Armed a =
            run_armed(fail_at, [&] { return ekv_model_load_from_memory(gguf.data(), gguf.size(), &p, &m); });
        ModelPtr owned(a.status == EKV_OK ? m : nullptr);
        EXPECT_TRUE(clean_status(a));
        if (a.status == EKV_OK)
            EXPECT_TRUE(same(model_probe(m), want)) << "a model loaded after an absorbed failure";
        else
            EXPECT_EQ(m, nullptr) << "a failed load must set *out to NULL";
        return a;
    });
    EXPECT_TRUE(same(model_probe(other), other_before)) << "a model loaded before the walk";
}

// The first forward on a fresh model: scratch, workspace and cache growth
// and the pool workers' first-use buffers. A failed forward changes
// nothing: the cache stays empty and the same forward then succeeds.
TEST(AllocationFailure, FirstForward) {
    for (const char* rel : {kLlama, kGemma3, kJamba}) {
        ModelPtr ref;
        {
            const ekv_model_params p = cpu_params();
            ekv_model* m = nullptr;
            ASSERT_EQ(ekv_model_load(fixture(rel).c_str(), &p, &m), EKV_OK) << ekv_last_error();
            ref.reset(m);
        }
        const std::vector<int32_t> prompt = tokens(ref.get(), 24, 9);
        const std::vector<float> want = model_probe(ref.get()), want_prompt = [&] {
            CachePtr c = make_cache(ref.get(), EKV_CACHE_AUTO);
            return forward(ref.get(), c.get(), prompt);
        }();
        walk(std::string("first forward ") + rel, [&](long fail_at) {
            const ekv_model_params p = cpu_params();
            ekv_model* raw = nullptr;
            EXPECT_EQ(ekv_model_load(fixture(rel).c_str(), &p, &raw), EKV_OK) << ekv_last_error();
            ModelPtr m(raw);
            CachePtr c = make_cache(raw, EKV_CACHE_AUTO);
            std::vector<float> logits(want_prompt.size(), -1.f);
            const Armed a = run_armed(fail_at, [&] {
                return ekv_forward(raw, c.get(), prompt.data(), static_cast<int32_t>(prompt.size()), nullptr,
                                   EKV_LOGITS_LAST, logits.data(), logits.size());
            });
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK) {
                EXPECT_TRUE(same(logits, want_prompt));
            } else {
                EXPECT_EQ(seq_len(c.get()), 0) << "a failed forward changed the cache";
                EXPECT_TRUE(same(forward(raw, c.get(), prompt), want_prompt)) << "the same forward, retried";
            }
            EXPECT_TRUE(same(model_probe(raw), want)) << "the model after the walk";
            return a;
        });
    }
}

TEST(AllocationFailure, CacheCreate) {
    for (const Case& k : create_cases()) {
        ekv_model* m = model_for(k.model);
        ASSERT_NE(m, nullptr);
        const std::vector<float> model_before = model_probe(m);
        CachePtr ref = make(m, k.spec);
        ASSERT_TRUE(ref) << k.spec.name;
        const std::vector<float> want = forward(m, ref.get(), tokens(m, 6, 3));
        walk("cache create " + k.spec.name, [&](long fail_at) {
            const ekv_cache_params p = params_of(k.spec);
            ekv_cache* c = sentinel<ekv_cache>();
            const Armed a = run_armed(fail_at, [&] { return ekv_cache_create(m, &p, &c); });
            CachePtr owned(a.status == EKV_OK ? c : nullptr);
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK)
                EXPECT_TRUE(same(forward(m, c, tokens(m, 6, 3)), want)) << "a cache made after an absorbed failure";
            else
                EXPECT_EQ(c, nullptr) << "a failed create must set *out to NULL";
            return a;
        });
        EXPECT_TRUE(same(model_probe(m), model_before)) << k.spec.name << ": the model after the walk";
    }
}


// 64 greedy tokens after an 8-token prompt (the KIVI sink ring wraps). A
// failed generation may stop part-way, but the tokens it wrote must be the
// baseline's and the cache must hold exactly a prefix of the sequence: its
// next logits equal those of a cache fed that prefix by the same forwards.
TEST(AllocationFailure, Generate64) {
    constexpr int32_t kPrompt = 8, kNew = 64;
    for (const Case& k : state_cases()) {
        ekv_model* m = model_for(k.model);
        ASSERT_NE(m, nullptr);
        const std::vector<int32_t> prompt = tokens(m, kPrompt, 5);
        ekv_generate_params gp = ekv_generate_default_params();
        gp.max_new_tokens = kNew;
        gp.temperature = 0;
        gp.stop_at_eos = 0;
        std::vector<int32_t> base(kNew, -1);
        {
            CachePtr c = make(m, k.spec);
            ASSERT_TRUE(c);
            ASSERT_EQ(ekv_generate(m, c.get(), prompt.data(), kPrompt, &gp, base.data(), kNew, nullptr), EKV_OK)
                << ekv_last_error();
        }
        std::vector<int32_t> seq = prompt;
        seq.insert(seq.end(), base.begin(), base.end());
        // next_at[len]: logits of seq[len] after a cache holding seq[0, len),
        // fed as generation feeds it (the prompt at once, then one by one).
        std::vector<std::vector<float>> next_at(seq.size());
        {
            CachePtr r = make(m, k.spec);
            ASSERT_TRUE(r);
            next_at[0] = probe_on_copy(m, r.get(), {seq[0]});
            ASSERT_FALSE(forward(m, r.get(), prompt).empty());
            for (size_t len = kPrompt; len < seq.size(); ++len) {
                next_at[len] = probe_on_copy(m, r.get(), {seq[len]});
                ASSERT_FALSE(forward(m, r.get(), {seq[len]}).empty());
            }
        }
        walk("generate 64 on " + k.spec.name, [&](long fail_at) {
            CachePtr c = make(m, k.spec);
            std::vector<int32_t> out(kNew, -7);
            ekv_generate_result res;
            ekv_generate_result_init(&res, sizeof res);
            const Armed a = run_armed(fail_at, [&] {
                return ekv_generate(m, c.get(), prompt.data(), kPrompt, &gp, out.data(), kNew, &res);
            });
            EXPECT_TRUE(clean_status(a));
            const int32_t g = res.n_generated;
            EXPECT_TRUE(g >= 0 && g <= kNew) << g;
            if (a.status == EKV_OK) EXPECT_EQ(g, kNew);
            for (int32_t i = 0; i < kNew; ++i)
                EXPECT_EQ(out[static_cast<size_t>(i)], i < g ? base[static_cast<size_t>(i)] : -7)
                    << "out_tokens[" << i << "] after " << g << " generated";
            const int32_t len = seq_len(c.get());
            const bool prefix =
                len == 0 || (len >= kPrompt && len <= kPrompt + g && len < static_cast<int32_t>(seq.size()));
            EXPECT_TRUE(prefix) << "the cache holds " << len << " tokens after " << g << " were generated";
            if (prefix)
                EXPECT_TRUE(same(probe_on_copy(m, c.get(), {seq[static_cast<size_t>(len)]}),
                                 next_at[static_cast<size_t>(len)]))
                    << "the cache after the generation (" << len << " tokens held)";
            return a;
        });
    }
}

// The step-wise generator the bindings stream from: a failed create or step
// ends the generation with the status, and once the generator is freed the
// cache is free again (not left busy) and holds a prefix of the sequence.
TEST(AllocationFailure, GeneratorSteps) {
    const Case k{kLlama, spec(EKV_CACHE_DYNAMIC, "dynamic f32")};
    ekv_model* m = model_for(k.model);
    ASSERT_NE(m, nullptr);
    const std::vector<int32_t> prompt = tokens(m, 8, 5);
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 16;
    gp.stop_at_eos = 0;
    // Runs the generator to its end; the tokens it emitted.
    auto run = [&](ekv_cache* c, std::vector<int32_t>* emitted) -> ekv_status {
        ekv_generator* g = nullptr;
        ekv_status st = ekv_generator_create(m, c, prompt.data(), 8, &gp, &g);
        if (st != EKV_OK) return st;
        ekv_generator_event ev;
        ekv_generator_event_init(&ev, sizeof ev);
        char text[256];
        while ((st = ekv_generator_next(g, &ev, text, sizeof text)) == EKV_OK && ev.type == EKV_EVENT_TOKEN)
            emitted->push_back(ev.token);
        ekv_generator_free(g);
        return st;
    };
    std::vector<int32_t> base;
    {
        CachePtr c = make(m, k.spec);
        ASSERT_EQ(run(c.get(), &base), EKV_OK) << ekv_last_error();
        ASSERT_EQ(base.size(), 16u);
    }
    walk("generator steps on " + k.spec.name, [&](long fail_at) {
        CachePtr c = make(m, k.spec);
        std::vector<int32_t> emitted;
        emitted.reserve(base.size());  // the test's own pushes must not allocate while armed
        const Armed a = run_armed(fail_at, [&] { return run(c.get(), &emitted); });
        EXPECT_TRUE(clean_status(a));
        EXPECT_TRUE(std::equal(emitted.begin(), emitted.end(), base.begin()) && emitted.size() <= base.size());
        // Free again: a forward is accepted, and continues the prefix held.
        const int32_t len = seq_len(c.get());
        EXPECT_TRUE(len == 0 || (len >= 8 && len <= 8 + static_cast<int32_t>(emitted.size()))) << len;
        const std::vector<float> next = forward(m, c.get(), {1});
        EXPECT_FALSE(next.empty()) << "the cache after the failed generation";
        return a;
    });
}

// A clone of a 50-token cache: a failed clone sets *out to NULL and leaves
// the source as it was.
TEST(AllocationFailure, Clone) {
    for (const Case& k : state_cases()) {
        ekv_model* m = model_for(k.model);
        CachePtr src = filled(k, 50);
        ASSERT_TRUE(src) << k.spec.name;
        const int32_t len = seq_len(src.get());
        const std::vector<float> want = probe_on_copy(m, src.get(), probe_tokens(m));
        walk("clone " + k.spec.name, [&](long fail_at) {
            ekv_cache* c = sentinel<ekv_cache>();
            const Armed a = run_armed(fail_at, [&] { return ekv_cache_clone(src.get(), &c); });
            CachePtr owned(a.status == EKV_OK ? c : nullptr);
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK)
                EXPECT_TRUE(same(forward(m, c, probe_tokens(m)), want)) << "a clone made after an absorbed failure";
            else
                EXPECT_EQ(c, nullptr) << "a failed clone must set *out to NULL";
            EXPECT_EQ(seq_len(src.get()), len);
            return a;
        });
        EXPECT_TRUE(same(forward(m, src.get(), probe_tokens(m)), want)) << k.spec.name << ": the source after the walk";
    }
}

// Save to a path that holds an older file, and to memory: a failed save
// leaves the old file byte for byte (no temporary left beside it) and the
// caller's buffer untouched; the source still works.
TEST(AllocationFailure, Save) {
    for (const Case& k : state_cases()) {
        ekv_model* m = model_for(k.model);
        CachePtr src = filled(k, 50), empty = make(m, k.spec);
        ASSERT_TRUE(src && empty) << k.spec.name;
        const std::vector<float> want = probe_on_copy(m, src.get(), probe_tokens(m));
        TempDir dir;
        const std::string path = dir.file("cache.ekv");
        ASSERT_EQ(ekv_cache_save(empty.get(), path.c_str()), EKV_OK) << ekv_last_error();
        const std::vector<uint8_t> old_file = read_bytes(path);
        ASSERT_EQ(ekv_cache_save(src.get(), path.c_str()), EKV_OK) << ekv_last_error();
        const std::vector<uint8_t> saved = read_bytes(path);
        ASSERT_NE(saved, old_file);
        walk("save " + k.spec.name, [&](long fail_at) {
            write_bytes(path, old_file);
            const Armed a = run_armed(fail_at, [&] { return ekv_cache_save(src.get(), path.c_str()); });
            EXPECT_TRUE(clean_status(a));
            EXPECT_TRUE(read_bytes(path) == (a.status == EKV_OK ? saved : old_file)) << "the file at the path";
            EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"cache.ekv"}) << "files beside it";
            return a;
        });
        walk("save to memory " + k.spec.name, [&](long fail_at) {
            std::vector<uint8_t> buf(saved.size(), 0xA5);
            size_t n = 0;
            const Armed a =
                run_armed(fail_at, [&] { return ekv_cache_save_to_memory(src.get(), buf.data(), buf.size(), &n); });
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK)
                EXPECT_TRUE(n == saved.size() && buf == saved) << "the bytes saved after an absorbed failure";
            else
                EXPECT_EQ(buf, std::vector<uint8_t>(saved.size(), 0xA5)) << "a failed save wrote the buffer";
            return a;
        });
        EXPECT_TRUE(same(forward(m, src.get(), probe_tokens(m)), want)) << k.spec.name << ": the source after the walk";
    }
}

// Load from a file and from memory: a failed load sets *out to NULL; a
// loaded cache continues exactly as the saved one would.
TEST(AllocationFailure, Load) {
    for (const Case& k : state_cases()) {
        ekv_model* m = model_for(k.model);
        CachePtr src = filled(k, 50);
        ASSERT_TRUE(src) << k.spec.name;
        const std::vector<float> want = probe_on_copy(m, src.get(), probe_tokens(m));
        TempDir dir;
        const std::string path = dir.file("cache.ekv");
        ASSERT_EQ(ekv_cache_save(src.get(), path.c_str()), EKV_OK) << ekv_last_error();
        const std::vector<uint8_t> bytes = read_bytes(path);
        const std::vector<float> model_before = model_probe(m);
        auto check = [&](const Armed& a, ekv_cache* c) {
            CachePtr owned(a.status == EKV_OK ? c : nullptr);
            EXPECT_TRUE(clean_status(a));
            if (a.status == EKV_OK)
                EXPECT_TRUE(same(forward(m, c, probe_tokens(m)), want)) << "a cache loaded after an absorbed failure";
            else
                EXPECT_EQ(c, nullptr) << "a failed load must set *out to NULL";
        };
        walk("load " + k.spec.name, [&](long fail_at) {
            ekv_cache* c = sentinel<ekv_cache>();
            const Armed a = run_armed(fail_at, [&] { return ekv_cache_load(m, path.c_str(), &c); });
            check(a, c);
            return a;
        });
        walk("load from memory " + k.spec.name, [&](long fail_at) {
            ekv_cache* c = sentinel<ekv_cache>();
            const Armed a =
                run_armed(fail_at, [&] { return ekv_cache_load_from_memory(m, bytes.data(), bytes.size(), &c); });
            check(a, c);
            return a;
        });
        EXPECT_TRUE(same(model_probe(m), model_before)) << k.spec.name << ": the model after the walk";
    }
}

}  // namespace
