// Cache-operation parity cases shared by the device backends' tests
// (Vulkan, CUDA), through the C ABI on the tiny Llama: files saved on one
// backend load on the other (f16, KIVI, wrapped sink rings, a
// host-offloaded KIVI sink) and continue like the uninterrupted runs; a
// wrapped sink ring is cropped and cloned, and the clone is independent.
#pragma once
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "backend/device_parity.h"
#include "model/cache_family_util.h"

namespace ekv_parity {

inline std::vector<uint8_t> saved(const ekv_cache* c) {
    size_t n = 0;
    const ekv_status st = ekv_cache_save_to_memory(c, nullptr, 0, &n);  // the size
    EXPECT_TRUE(st == EKV_OK || st == EKV_ERR_BUFFER_TOO_SMALL) << ekv_last_error();
    std::vector<uint8_t> b(n);
    EXPECT_EQ(ekv_cache_save_to_memory(c, b.data(), b.size(), &n), EKV_OK) << ekv_last_error();
    return b;
}

inline ekv_test::CachePtr loaded(ekv_model* m, const std::vector<uint8_t>& bytes) {
    ekv_cache* raw = nullptr;
    EXPECT_EQ(ekv_cache_load_from_memory(m, bytes.data(), bytes.size(), &raw), EKV_OK) << ekv_last_error();
    return ekv_test::CachePtr(raw);
}

inline ekv_test::CachePtr cloned(const ekv_cache* c) {
    ekv_cache* raw = nullptr;
    EXPECT_EQ(ekv_cache_clone(c, &raw), EKV_OK) << ekv_last_error();
    return ekv_test::CachePtr(raw);
}

// Feeds tokens[first..] in forwards of the given sizes; every row's logits.
inline std::vector<float> feed_chunks(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& tokens,
                                      size_t first, std::initializer_list<size_t> chunks) {
    std::vector<float> all;
    for (size_t n : chunks) {
        const std::vector<float> part = ekv_test::feed(m, c, tokens, first, n, n);
        all.insert(all.end(), part.begin(), part.end());
        first += n;
    }
    return all;
}

inline bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
    return !a.empty() && a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Where a file's token ids end: they follow the fixed headers, so the bytes
// up to there depend on the cache's configuration and history alone.
inline size_t end_of_token_ids(const std::vector<uint8_t>& file, const std::vector<int32_t>& ids) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(ids.data());
    const auto at = std::search(file.begin(), file.end(), p, p + ids.size() * sizeof(int32_t));
    return at == file.end() ? 0 : static_cast<size_t>(at - file.begin()) + ids.size() * sizeof(int32_t);
}

// The tiny Llama on the CPU and on a device backend, and the token streams
// the cases feed. A test fixture derives from it and calls init() with the
// two models (the device one opened however the backend's test wants).
class CacheOpsParityCases {
protected:
    // label: how the device model was opened, for messages ("mapped device memory").
    void init(ekv_test::ModelPtr cpu, ekv_test::ModelPtr dev, const std::string& label) {
        cpu_ = std::move(cpu);
        dev_ = std::move(dev);
        label_ = label;
        ASSERT_TRUE(cpu_ && dev_);
        nv_ = ekv_test::n_vocab(cpu_.get());
        for (int i = 0; i < 600; ++i) stream_.push_back(3 + (i * 89 + 5) % (nv_ - 3));
        for (int i = 0; i < 40; ++i) other_.push_back(3 + (i * 37 + 11) % (nv_ - 3));
    }
    static std::string tiny_llama_path() { return ekv_test::fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf"; }
    ekv_model* model(int backend) { return backend ? dev_.get() : cpu_.get(); }
    const char* dev_name() const {
        ekv_model_info info = ekv_model_info_default();
        return ekv_model_get_info(dev_.get(), &info) == EKV_OK ? ekv_backend_name(info.backend) : "device";
    }

    // A cache filled to 200 tokens on each backend is saved; each file is loaded
    // on both backends. The format does not depend on the backend: a loaded file
    // saves the same bytes again, whichever backend (and memory) holds it. Then
    // every cache continues with the same 26 tokens (decode steps, then a
    // chunk): a file reloaded on its own backend continues bit for bit like the
    // uninterrupted cache; across backends the K/V the file carries were
    // computed by the other backend, and the continuation agrees with both
    // uninterrupted runs within what the CPU and the device differ by anyway.
    void saved_on_one_backend_loads_and_continues_on_the_other() {
        struct Case {
            ekv_test::CacheSpec spec;
            double tolerance;
        };
        auto spec = [](ekv_cache_type type, ekv_kv_dtype dtype, int32_t window, ekv_placement offload,
                       const char* name) {
            ekv_test::CacheSpec s;
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
        // <= 5.7e-4 KIVI): f16 as cache_family_matches_cpu; KIVI looser,
        // as a key a rounding apart can land on the neighbouring code.
        const Case cases[] = {
            {spec(EKV_CACHE_DYNAMIC, EKV_KV_F16, 0, EKV_PLACEMENT_DEVICE, "dynamic f16"), 1e-3},
            {spec(EKV_CACHE_QUANTIZED, EKV_KV_F16, 0, EKV_PLACEMENT_DEVICE, "quantized q4"), 5e-3},
            {spec(EKV_CACHE_SINK, EKV_KV_F16, 24, EKV_PLACEMENT_DEVICE, "sink f16 wrapped"), 1e-3},
            {spec(EKV_CACHE_SINK, EKV_KV_KIVI, 40, EKV_PLACEMENT_HOST, "sink q4 host wrapped"), 5e-3},
        };
        const std::vector<int32_t> prefix(stream_.begin(), stream_.begin() + 200);
        for (const Case& k : cases) {
            SCOPED_TRACE(k.spec.name + std::string(", ") + label_);
            ekv_test::CachePtr run[2] = {ekv_test::make(cpu_.get(), k.spec), ekv_test::make(dev_.get(), k.spec)};
            ASSERT_TRUE(run[0] && run[1]);
            for (int b = 0; b < 2; ++b) feed_chunks(model(b), run[b].get(), stream_, 0, {100, 60, 37, 1, 1, 1});
            const std::vector<uint8_t> file[2] = {saved(run[0].get()), saved(run[1].get())};
            ASSERT_FALSE(file[0].empty() || file[1].empty());

            // from[b][f]: backend b's cache loaded from the file backend f saved.
            ekv_test::CachePtr from[2][2];
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
            std::printf("[ %-8s ] %s, %s: the CPU's and the device's files (%zu bytes) differ in %zu K/V bytes\n",
                        dev_name(), k.spec.name.c_str(), label_.c_str(), file[0].size(), differ);

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
            std::printf("[ %-8s ] %s, %s: worst normalized error of a cross-loaded continuation %.2e\n", dev_name(),
                        k.spec.name.c_str(), label_.c_str(), worst);
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
    void crop_and_clone_of_a_wrapped_sink_ring() {
        for (ekv_kv_dtype dtype : {EKV_KV_F16, EKV_KV_KIVI}) {
            ekv_test::CacheSpec s;
            s.type = EKV_CACHE_SINK;
            s.dtype = dtype;
            s.window = 24;
            s.sinks = 4;
            s.name = dtype == EKV_KV_KIVI ? "sink q4" : "sink f16";
            SCOPED_TRACE(s.name + std::string(", ") + label_);
            // As in the test above (observed on lavapipe: 6.8e-4 for both).
            const double tolerance = dtype == EKV_KV_KIVI ? 5e-3 : 1e-3;
            const std::vector<int32_t> x(other_.begin(), other_.begin() + 6);
            const std::vector<int32_t> y(other_.begin() + 10, other_.begin() + 15);
            const std::vector<int32_t> z(other_.begin() + 20, other_.begin() + 24);
            const std::vector<int32_t> far(stream_.begin() + 300, stream_.begin() + 450);
            // Logit rows per backend: original after x, after the crop and y, A
            // after x, the original and B after z.
            std::vector<float> orig_x[2], orig_y[2], a_x[2], orig_z[2], b_z[2];
            // KIVI: the device starts from the CPU's state. Keys the two
            // backends computed a rounding apart (f16 rows one ulp apart) can
            // quantize to codes one step apart, and the crop makes such a
            // group visible again (seen with the CUDA emulator: one code byte,
            // 2.9e-2 after the crop); the crop and clone are what is tested.
            std::vector<uint8_t> cpu_state;
            for (int b = 0; b < 2; ++b) {
                ekv_model* m = model(b);
                SCOPED_TRACE(b ? dev_name() : "cpu");
                ekv_test::CachePtr orig;
                if (b == 1 && dtype == EKV_KV_KIVI) {
                    ekv_cache* loaded = nullptr;
                    ASSERT_EQ(ekv_cache_load_from_memory(m, cpu_state.data(), cpu_state.size(), &loaded), EKV_OK)
                        << ekv_last_error();
                    orig.reset(loaded);
                } else {
                    orig = ekv_test::make(m, s);
                    ASSERT_TRUE(orig);
                    feed_chunks(m, orig.get(), stream_, 0, {100, 60, 37, 1, 1, 1});
                }
                if (b == 0 && dtype == EKV_KV_KIVI) {
                    size_t len = 0;
                    (void)ekv_cache_save_to_memory(orig.get(), nullptr, 0, &len);  // the size
                    ASSERT_GT(len, 0u);
                    cpu_state.resize(len);
                    ASSERT_EQ(ekv_cache_save_to_memory(orig.get(), cpu_state.data(), len, &len), EKV_OK)
                        << ekv_last_error();
                }
                ekv_test::CachePtr a = cloned(orig.get());
                ASSERT_TRUE(a);
                orig_x[b] = ekv_test::feed(m, orig.get(), x, 0, x.size(), 1);
                ASSERT_EQ(ekv_cache_crop(orig.get(), 197), EKV_OK) << ekv_last_error();
                orig_y[b] = ekv_test::feed(m, orig.get(), y, 0, y.size(), 1);
                a_x[b] = ekv_test::feed(m, a.get(), x, 0, x.size(), 1);
                ekv_test::CachePtr b_clone = cloned(orig.get());
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
                    ekv_test::CachePtr fresh = ekv_test::make(m, s);
                    ASSERT_TRUE(fresh);
                    feed_chunks(m, fresh.get(), stream_, 0, {100, 60, 37});
                    const std::vector<float> fresh_y = ekv_test::feed(m, fresh.get(), y, 0, y.size(), 1);
                    EXPECT_TRUE(same_floats(orig_y[b], fresh_y)) << "the crop left another state than a fresh cache";
                }
            }
            double worst = 0;
            const std::vector<float>* sets[] = {orig_x, orig_y, a_x, orig_z, b_z};
            const char* set_names[] = {"original after x", "original after the crop and y", "clone A after x",
                                       "original after z", "clone B after z"};
            for (int i = 0; i < 5; ++i) {
                const double err = ekv_test::max_row_error(sets[i][1], sets[i][0], nv_);
                worst = std::max(worst, err);
                EXPECT_LT(err, tolerance) << set_names[i];
            }
            std::printf("[ %-8s ] %s crop/clone, %s: worst normalized error vs CPU %.2e\n", dev_name(), s.name.c_str(),
                        label_.c_str(), worst);
        }
    }

    ekv_test::ModelPtr cpu_, dev_;
    std::string label_;
    int32_t nv_ = 0;
    std::vector<int32_t> stream_, other_;
};

}  // namespace ekv_parity
