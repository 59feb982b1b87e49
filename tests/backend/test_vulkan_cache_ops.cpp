// Cache operations on Vulkan, through the C ABI, against the CPU backend:
// files saved on one backend load on the other (f16, KIVI, wrapped sink
// rings, a host-offloaded KIVI sink) and continue like the uninterrupted
// runs; a wrapped sink ring is cropped and cloned, and the clone is
// independent; and 24-step greedy generations on the real models choose the
// CPU's tokens. The tiny-model tests run twice: with the device memory
// lavapipe maps for the host, and with EKV_VULKAN_UNMAPPED_DEVICE_MEMORY=1
// (read when a model's Vulkan context opens), where every byte in and out of
// device memory goes through staging copies as on a discrete GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "backend/vulkan/vk_instance.h"
#include "backend/vulkan_test_util.h"
#include "model/cache_family_util.h"

namespace ekv_vk_test {
namespace {

using ekv_test::CachePtr;
using ekv_test::CacheSpec;
using ekv_test::ModelPtr;

std::vector<uint8_t> saved(const ekv_cache* c) {
    size_t n = 0;
    const ekv_status st = ekv_cache_save_to_memory(c, nullptr, 0, &n);  // the size
    EXPECT_TRUE(st == EKV_OK || st == EKV_ERR_BUFFER_TOO_SMALL) << ekv_last_error();
    std::vector<uint8_t> b(n);
    EXPECT_EQ(ekv_cache_save_to_memory(c, b.data(), b.size(), &n), EKV_OK) << ekv_last_error();
    return b;
}

CachePtr loaded(ekv_model* m, const std::vector<uint8_t>& bytes) {
    ekv_cache* raw = nullptr;
    EXPECT_EQ(ekv_cache_load_from_memory(m, bytes.data(), bytes.size(), &raw), EKV_OK) << ekv_last_error();
    return CachePtr(raw);
}

CachePtr cloned(const ekv_cache* c) {
    ekv_cache* raw = nullptr;
    EXPECT_EQ(ekv_cache_clone(c, &raw), EKV_OK) << ekv_last_error();
    return CachePtr(raw);
}

// Feeds tokens[first..] in forwards of the given sizes; every row's logits.
std::vector<float> feed_chunks(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& tokens, size_t first,
                               std::initializer_list<size_t> chunks) {
    std::vector<float> all;
    for (size_t n : chunks) {
        const std::vector<float> part = ekv_test::feed(m, c, tokens, first, n, n);
        all.insert(all.end(), part.begin(), part.end());
        first += n;
    }
    return all;
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
    return !a.empty() && a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

enum class Memory { Mapped, Unmapped };
const char* memory_name(Memory m) { return m == Memory::Mapped ? "mapped" : "unmapped"; }
void PrintTo(Memory m, std::ostream* os) { *os << memory_name(m); }  // in test names

// The Vulkan model with its context opened under the memory mode; checked
// through the ABI: a host-offloaded cache is staged into a device double
// buffer when the device memory is not host-visible (lavapipe's mapped
// memory is, so there it is read in place; a discrete GPU stages either way).
ModelPtr load_vulkan(const std::string& path, Memory memory) {
    if (memory == Memory::Unmapped) setenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY", "1", 1);
    ModelPtr m = load_on(path, EKV_BACKEND_VULKAN);
    unsetenv("EKV_VULKAN_UNMAPPED_DEVICE_MEMORY");
    if (!m) return m;
    int32_t n = 0;
    ekv_device_info device = ekv_device_info_default();
    const bool unified = ekv_device_count(EKV_BACKEND_VULKAN, &n) == EKV_OK && n == 1 &&
                         ekv_device_get_info(EKV_BACKEND_VULKAN, 0, &device) == EKV_OK && device.unified_memory;
    CacheSpec host;  // allocated whole at creation
    host.type = EKV_CACHE_OFFLOADED_STATIC;
    host.max_len = 16;
    host.name = "offloaded_static probe";
    CachePtr probe = ekv_test::make(m.get(), host);
    if (probe) {
        const ekv_cache_stats s = ekv_test::stats_of(probe.get());
        if (memory == Memory::Unmapped || unified)
            EXPECT_EQ(s.device_bytes > 0, memory == Memory::Unmapped)
                << "the Vulkan context did not open in the requested memory mode";
    }
    return m;
}

// Tiny Llama on both backends, the Vulkan one in the parameter's memory mode.
class VulkanCacheOps : public ::testing::TestWithParam<Memory> {
protected:
    void SetUp() override {
        validation_errors_ = vk::validation_error_count();
        const std::string path = ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf";
        cpu_ = load_on(path, EKV_BACKEND_CPU);
        vk_ = load_vulkan(path, GetParam());
        ASSERT_TRUE(cpu_ && vk_);
        nv_ = ekv_test::n_vocab(cpu_.get());
        for (int i = 0; i < 600; ++i) stream_.push_back(3 + (i * 89 + 5) % (nv_ - 3));
        for (int i = 0; i < 40; ++i) other_.push_back(3 + (i * 37 + 11) % (nv_ - 3));
    }
    void TearDown() override {
        EXPECT_EQ(vk::validation_error_count(), validation_errors_) << "Vulkan validation errors (see stderr)";
    }
    ekv_model* model(int backend) { return backend ? vk_.get() : cpu_.get(); }
    const char* memory_name() const { return ekv_vk_test::memory_name(GetParam()); }

    ModelPtr cpu_, vk_;
    int32_t nv_ = 0;
    std::vector<int32_t> stream_, other_;
    int64_t validation_errors_ = 0;
};

// Where a file's token ids end: they follow the fixed headers, so the bytes
// up to there depend on the cache's configuration and history alone.
size_t end_of_token_ids(const std::vector<uint8_t>& file, const std::vector<int32_t>& ids) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(ids.data());
    const auto at = std::search(file.begin(), file.end(), p, p + ids.size() * sizeof(int32_t));
    return at == file.end() ? 0 : static_cast<size_t>(at - file.begin()) + ids.size() * sizeof(int32_t);
}

// A cache filled to 200 tokens on each backend is saved; each file is loaded
// on both backends. The format does not depend on the backend: a loaded file
// saves the same bytes again, whichever backend (and memory) holds it. Then
// every cache continues with the same 26 tokens (decode steps, then a
// chunk): a file reloaded on its own backend continues bit for bit like the
// uninterrupted cache; across backends the K/V the file carries were
// computed by the other backend, and the continuation agrees with both
// uninterrupted runs within what the CPU and Vulkan differ by anyway.
TEST_P(VulkanCacheOps, SavedOnOneBackendLoadsAndContinuesOnTheOther) {
    struct Case {
        CacheSpec spec;
        double tolerance;
    };
    auto spec = [](ekv_cache_type type, ekv_kv_dtype dtype, int32_t window, ekv_placement offload, const char* name) {
        CacheSpec s;
        s.type = type;
        s.dtype = dtype;
        s.window = window;
        s.sinks = type == EKV_CACHE_SINK ? 4 : 0;
        s.offload = offload;
        s.name = name;
        return s;
    };
    // 200 tokens wrap the sink rings past their physical rows (f16: 20 ring
    // tokens in 147 rows, a chunk's slack included; KIVI: a 152-row
    // full-precision ring and a 6-group ring) and quantize 22 groups of the
    // quantized cache. Tolerances (observed on lavapipe: <= 3.5e-4 f16,
    // <= 5.7e-4 KIVI): f16 as VulkanModel.CacheFamilyMatchesCpu; KIVI looser,
    // as a key a rounding apart can land on the neighbouring code.
    const Case cases[] = {
        {spec(EKV_CACHE_DYNAMIC, EKV_KV_F16, 0, EKV_PLACEMENT_DEVICE, "dynamic f16"), 1e-3},
        {spec(EKV_CACHE_QUANTIZED, EKV_KV_F16, 0, EKV_PLACEMENT_DEVICE, "quantized q4"), 5e-3},
        {spec(EKV_CACHE_SINK, EKV_KV_F16, 24, EKV_PLACEMENT_DEVICE, "sink f16 wrapped"), 1e-3},
        {spec(EKV_CACHE_SINK, EKV_KV_KIVI, 40, EKV_PLACEMENT_HOST, "sink q4 host wrapped"), 5e-3},
    };
    const std::vector<int32_t> prefix(stream_.begin(), stream_.begin() + 200);
    for (const Case& k : cases) {
        SCOPED_TRACE(k.spec.name + std::string(", ") + memory_name() + " device memory");
        CachePtr run[2] = {ekv_test::make(cpu_.get(), k.spec), ekv_test::make(vk_.get(), k.spec)};
        ASSERT_TRUE(run[0] && run[1]);
        for (int b = 0; b < 2; ++b) feed_chunks(model(b), run[b].get(), stream_, 0, {100, 60, 37, 1, 1, 1});
        const std::vector<uint8_t> file[2] = {saved(run[0].get()), saved(run[1].get())};
        ASSERT_FALSE(file[0].empty() || file[1].empty());

        // from[b][f]: backend b's cache loaded from the file backend f saved.
        CachePtr from[2][2];
        for (int b = 0; b < 2; ++b)
            for (int f = 0; f < 2; ++f) {
                from[b][f] = loaded(model(b), file[f]);
                ASSERT_TRUE(from[b][f]) << "backend " << b << ", file " << f;
                EXPECT_EQ(saved(from[b][f].get()), file[f]) << "backend " << b << " re-saved file " << f;
            }

        // The two backends' files at the same state: one format, same size,
        // identical headers and token ids; the K/V bytes differ where f16 (or
        // a KIVI code) rounds the backends' slightly different values apart.
        ASSERT_EQ(file[1].size(), file[0].size());
        const size_t ids_end = end_of_token_ids(file[0], prefix);
        ASSERT_GT(ids_end, 0u) << "the token ids are not in the file";
        EXPECT_TRUE(std::equal(file[0].begin(), file[0].begin() + ids_end, file[1].begin()));
        size_t differ = 0;
        for (size_t i = ids_end; i < file[0].size(); ++i) differ += file[0][i] != file[1][i];
        std::printf("[ vulkan   ] %s, %s memory: the CPU's and Vulkan's files (%zu bytes) differ in %zu K/V bytes\n",
                    k.spec.name.c_str(), memory_name(), file[0].size(), differ);

        // Continue: six decode steps, then a chunk of 20.
        std::vector<float> want[2], got[2][2];
        for (int b = 0; b < 2; ++b) {
            want[b] = feed_chunks(model(b), run[b].get(), stream_, 200, {1, 1, 1, 1, 1, 1, 20});
            for (int f = 0; f < 2; ++f)
                got[b][f] = feed_chunks(model(b), from[b][f].get(), stream_, 200, {1, 1, 1, 1, 1, 1, 20});
        }
        for (int b = 0; b < 2; ++b)
            EXPECT_TRUE(same_floats(got[b][b], want[b])) << "backend " << b << ": its own file, reloaded";
        double worst = 0;
        for (int b = 0; b < 2; ++b)
            for (int w = 0; w < 2; ++w) {
                const double err = ekv_test::max_row_error(got[b][1 - b], want[w], nv_);
                worst = std::max(worst, err);
                EXPECT_LT(err, k.tolerance) << "backend " << b << " from the other's file, against backend " << w;
            }
        std::printf("[ vulkan   ] %s, %s memory: worst normalized error of a cross-loaded continuation %.2e\n",
                    k.spec.name.c_str(), memory_name(), worst);
    }
}

// A sink ring driven past its physical rows (200 tokens; window 24 with 4
// sinks: 20 ring tokens in 147 rows), on each backend:
//   clone it (A); advance the original 6 tokens (x), crop it back to 197 and
//   continue with other tokens (y); A then takes the same 6 tokens x and must
//   give what the original gave; clone the original again (B), drive A round
//   its ring again, and the original and B must then give the same logits.
// With f16 KV the cropped original continues bit for bit like a fresh cache
// fed the 197 tokens the same way; with KIVI (a group ring too) every logit
// row still agrees with the CPU's doing the same operations.
TEST_P(VulkanCacheOps, CropAndCloneOfAWrappedSinkRing) {
    for (ekv_kv_dtype dtype : {EKV_KV_F16, EKV_KV_KIVI}) {
        CacheSpec s;
        s.type = EKV_CACHE_SINK;
        s.dtype = dtype;
        s.window = 24;
        s.sinks = 4;
        s.name = dtype == EKV_KV_KIVI ? "sink q4" : "sink f16";
        SCOPED_TRACE(s.name + std::string(", ") + memory_name() + " device memory");
        // As in the test above (observed on lavapipe: 6.8e-4 for both).
        const double tolerance = dtype == EKV_KV_KIVI ? 5e-3 : 1e-3;
        const std::vector<int32_t> x(other_.begin(), other_.begin() + 6), y(other_.begin() + 10, other_.begin() + 15),
            z(other_.begin() + 20, other_.begin() + 24);
        const std::vector<int32_t> far(stream_.begin() + 300, stream_.begin() + 450);
        // Logit rows per backend: original after x, after the crop and y, A
        // after x, the original and B after z.
        std::vector<float> orig_x[2], orig_y[2], a_x[2], orig_z[2], b_z[2];
        for (int b = 0; b < 2; ++b) {
            ekv_model* m = model(b);
            SCOPED_TRACE(b ? "vulkan" : "cpu");
            CachePtr orig = ekv_test::make(m, s);
            ASSERT_TRUE(orig);
            feed_chunks(m, orig.get(), stream_, 0, {100, 60, 37, 1, 1, 1});
            CachePtr a = cloned(orig.get());
            ASSERT_TRUE(a);
            orig_x[b] = ekv_test::feed(m, orig.get(), x, 0, x.size(), 1);
            ASSERT_EQ(ekv_cache_crop(orig.get(), 197), EKV_OK) << ekv_last_error();
            orig_y[b] = ekv_test::feed(m, orig.get(), y, 0, y.size(), 1);
            a_x[b] = ekv_test::feed(m, a.get(), x, 0, x.size(), 1);
            CachePtr b_clone = cloned(orig.get());
            ASSERT_TRUE(b_clone);
            ekv_test::feed(m, a.get(), far, 0, far.size(), 50);
            orig_z[b] = ekv_test::feed(m, orig.get(), z, 0, z.size(), 1);
            b_z[b] = ekv_test::feed(m, b_clone.get(), z, 0, z.size(), 1);
            EXPECT_EQ(ekv_test::stats_of(orig.get()).seq_len, 197 + 5 + 4);
            EXPECT_EQ(ekv_test::stats_of(a.get()).seq_len, 200 + 6 + 150);
            EXPECT_EQ(ekv_test::stats_of(a.get()).tokens_held, 24);

            EXPECT_TRUE(same_floats(a_x[b], orig_x[b])) << "the clone changed with the original";
            EXPECT_TRUE(same_floats(b_z[b], orig_z[b])) << "the original changed with its clone";
            // KIVI: the longer run quantized groups that a fresh cache still
            // holds in full precision (the crop keeps them quantized), so only
            // f16 has a fresh twin to match exactly.
            if (dtype == EKV_KV_F16) {
                CachePtr fresh = ekv_test::make(m, s);
                ASSERT_TRUE(fresh);
                feed_chunks(m, fresh.get(), stream_, 0, {100, 60, 37});
                const std::vector<float> fresh_y = ekv_test::feed(m, fresh.get(), y, 0, y.size(), 1);
                EXPECT_TRUE(same_floats(orig_y[b], fresh_y)) << "the crop left another state than a fresh cache";
            }
        }
        double worst = 0;
        for (const auto* rows : {orig_x, orig_y, a_x, orig_z, b_z}) {
            const double err = ekv_test::max_row_error(rows[1], rows[0], nv_);
            worst = std::max(worst, err);
            EXPECT_LT(err, tolerance);
        }
        std::printf("[ vulkan   ] %s crop/clone, %s memory: worst normalized error vs CPU %.2e\n", s.name.c_str(),
                    memory_name(), worst);
    }
}

INSTANTIATE_TEST_SUITE_P(DeviceMemory, VulkanCacheOps, ::testing::Values(Memory::Mapped, Memory::Unmapped),
                         [](const ::testing::TestParamInfo<Memory>& i) {
                             return std::string(i.param == Memory::Mapped ? "Mapped" : "Unmapped");
                         });

// ---- 32-step greedy generations on the real models -------------------------

std::vector<int32_t> tokenize(ekv_model* m, const char* text) {
    std::vector<int32_t> ids(256);
    int32_t n = 0;
    EXPECT_EQ(ekv_tokenize(m, text, std::strlen(text), 1, 0, ids.data(), static_cast<int32_t>(ids.size()), &n), EKV_OK)
        << ekv_last_error();
    ids.resize(static_cast<size_t>(std::max(n, 0)));
    return ids;
}

double rms_of(const float* v, int32_t n) {
    double s = 0;
    for (int32_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
    return std::sqrt(s / n);
}

// Prefills the prompt on both backends, then decodes `steps` greedy tokens
// step by step. Both backends are fed the CPU's choice, and Vulkan's own
// choice must equal it at every step: so a free-running Vulkan generation
// gives the CPU's tokens. Only a near tie (the CPU scores the two tokens
// within the logit tolerance) may choose differently; it is reported and the
// logits are still compared. Every step's logits agree within `tolerance`.
void expect_greedy_steps_equal(ekv_model* cpu, ekv_model* vk, const ekv_cache_params& cp,
                               const std::vector<int32_t>& prompt, int steps, double tolerance, bool replays,
                               const char* name) {
    SCOPED_TRACE(name);
    ASSERT_FALSE(prompt.empty());
    ekv_backend_stats before = ekv_backend_stats_default(), after = ekv_backend_stats_default();
    ASSERT_EQ(ekv_model_get_backend_stats(vk, &before), EKV_OK);
    ekv_model* models[2] = {cpu, vk};
    CachePtr caches[2];
    for (int b = 0; b < 2; ++b) {
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_create(models[b], &cp, &raw), EKV_OK) << ekv_last_error();
        caches[b].reset(raw);
    }
    const int32_t nv = ekv_test::n_vocab(cpu);
    const size_t row = static_cast<size_t>(nv);
    std::vector<float> logits[2] = {std::vector<float>(row), std::vector<float>(row)};
    std::vector<int32_t> input = prompt, tokens[2];
    double worst = 0;
    int near_ties = 0;
    for (int step = 0; step <= steps; ++step) {
        for (int b = 0; b < 2; ++b)
            ASSERT_EQ(ekv_forward(models[b], caches[b].get(), input.data(), static_cast<int32_t>(input.size()), nullptr,
                                  EKV_LOGITS_LAST, logits[b].data(), logits[b].size()),
                      EKV_OK)
                << (b ? "vulkan" : "cpu") << ", step " << step << ": " << ekv_last_error();
        const double err = ekv_test::normalized_max_error(logits[1].data(), logits[0].data(), nv);
        worst = std::max(worst, err);
        EXPECT_LT(err, tolerance) << "step " << step;
        for (int b = 0; b < 2; ++b) tokens[b].push_back(ekv_test::argmax(logits[b].data(), nv));
        const int32_t want = tokens[0].back(), got = tokens[1].back();
        if (got != want) {
            const double gap = logits[0][static_cast<size_t>(want)] - logits[0][static_cast<size_t>(got)];
            const bool near_tie = gap < tolerance * rms_of(logits[0].data(), nv);
            near_ties += near_tie;
            EXPECT_TRUE(near_tie) << "step " << step << ": Vulkan chose " << got << ", the CPU " << want
                                  << " by a logit gap of " << gap;
            std::printf("[ vulkan   ] %s step %d: near tie, Vulkan %d, CPU %d (gap %.3g)\n", name, step, got, want,
                        gap);
        }
        input.assign(1, want);
    }
    ekv_cache_stats st = ekv_test::stats_of(caches[1].get());
    EXPECT_EQ(st.seq_len, static_cast<int32_t>(prompt.size()) + steps);
    // Static-shape caches (static, sink) decode through replayed command
    // buffers, the per-step values read from a buffer: those steps are what
    // ran and were compared. (Others replay whenever a step's commands equal
    // the previous step's.)
    ASSERT_EQ(ekv_model_get_backend_stats(vk, &after), EKV_OK);
    const uint64_t replayed = after.replayed_submissions - before.replayed_submissions;
    if (replays) EXPECT_GE(replayed, static_cast<uint64_t>(steps) / 2) << "decode steps were not replayed";
    std::printf("[ vulkan   ] %s: %zu prompt tokens + %d steps (%llu replayed), %d near ties, worst normalized logit "
                "error %.2e\n",
                name, prompt.size(), steps, static_cast<unsigned long long>(replayed), near_ties, worst);
}

// 24 steps: the 9 + 24 tokens quantize KIVI groups while decoding and drop
// nine tokens out of the sink ring.
constexpr int kSteps = 24;

// SmolLM2-135M: static, KIVI-4 (groups of 8 quantized from the 17th token
// on, while decoding) and sink (window 24 with 4 sinks: tokens drop out of
// the ring from the 25th on). One model per backend for the three caches:
// lavapipe compiles the pipelines once per model.
TEST(VulkanCacheOpsReal, SmolLM2GreedyStepsEqualCpu) {
    const int64_t validation_errors = vk::validation_error_count();
    const std::string path = ekv_test::smollm2_path();
    ASSERT_FALSE(path.empty()) << "EKV_SMOLLM2_GGUF is not set";
    ModelPtr cpu = load_on(path, EKV_BACKEND_CPU), vk = load_on(path, EKV_BACKEND_VULKAN);
    ASSERT_TRUE(cpu && vk);
    const std::vector<int32_t> prompt = tokenize(cpu.get(), "The old lighthouse keeper wrote in his journal that");
    struct Spec {
        ekv_cache_type type;
        double tolerance;
        bool replays;  // a static-shape cache: its decode steps must replay
        const char* name;
    };
    // 5e-3: VulkanModel.SmolLM2GreedyTokensEqualCpu's bound (observed here
    // 9.4e-4 static, 1.1e-3 sink). KIVI: codes a rounding apart land a step
    // apart and the difference grows over the steps (observed 7.2e-3); 1e-2
    // is what the CPU backend is held to against HF.
    for (const Spec& s : {Spec{EKV_CACHE_STATIC, 5e-3, true, "smollm2 static"},
                          Spec{EKV_CACHE_QUANTIZED, 1e-2, false, "smollm2 quantized q4"},
                          Spec{EKV_CACHE_SINK, 5e-3, true, "smollm2 sink"}}) {
        ekv_cache_params cp = ekv_cache_default_params();
        cp.type = s.type;
        cp.max_cache_len = 64;
        cp.nbits = 4;
        cp.q_group_size = 8;
        cp.residual_length = 8;
        cp.window_length = 24;
        cp.num_sink_tokens = 4;
        expect_greedy_steps_equal(cpu.get(), vk.get(), cp, prompt, kSteps, s.tolerance, s.replays, s.name);
    }
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

// Gemma 3 270M with its natural cache (hybrid: sliding-window local layers,
// growing global ones).
TEST(VulkanCacheOpsReal, Gemma3GreedyStepsEqualCpu) {
    const int64_t validation_errors = vk::validation_error_count();
    const std::string path = ekv_test::gemma3_path();
    ASSERT_FALSE(path.empty()) << "EKV_GEMMA3_GGUF is not set";
    ModelPtr cpu = load_on(path, EKV_BACKEND_CPU), vk = load_on(path, EKV_BACKEND_VULKAN);
    ASSERT_TRUE(cpu && vk);
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(cpu.get(), &info), EKV_OK);
    ASSERT_EQ(info.natural_cache, EKV_CACHE_HYBRID);
    ekv_cache_params cp = ekv_cache_default_params();  // AUTO: the natural cache
    expect_greedy_steps_equal(cpu.get(), vk.get(), cp, tokenize(cpu.get(), "The old lighthouse keeper wrote that"),
                              kSteps, 5e-3, false, "gemma-3-270m hybrid");
    EXPECT_EQ(vk::validation_error_count(), validation_errors) << "Vulkan validation errors (see stderr)";
}

}  // namespace
}  // namespace ekv_vk_test
