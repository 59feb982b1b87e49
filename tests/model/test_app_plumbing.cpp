// What apps need around the model besides generation: loading from memory
// and from a descriptor range (Android assets), cache files in memory, saves
// that never leave a torn or temporary file, and the metadata keys.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "model/test_util.h"

namespace ekv_test {
namespace {

std::string tiny_path() { return fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf"; }

std::vector<char> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<float> logits_after(ekv_model* m, const std::vector<int32_t>& toks) {
    CachePtr c = make_cache(m, EKV_CACHE_DYNAMIC);
    std::vector<float> logits(static_cast<size_t>(n_vocab(m)));
    EXPECT_EQ(ekv_forward(m, c.get(), toks.data(), static_cast<int32_t>(toks.size()), nullptr, EKV_LOGITS_LAST,
                          logits.data(), logits.size()),
              EKV_OK)
        << ekv_last_error();
    return logits;
}

ekv_model_params cpu_params() {
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    p.n_threads = 1;
    return p;
}

TEST(AppPlumbing, LoadFromMemoryAndFromADescriptorRange) {
    const std::vector<int32_t> toks = {5, 17, 42, 99};
    ModelPtr from_path = load_model(tiny_path(), 1);
    ASSERT_TRUE(from_path);
    const std::vector<float> want = logits_after(from_path.get(), toks);

    const std::vector<char> bytes = read_all(tiny_path());
    ASSERT_FALSE(bytes.empty());
    const ekv_model_params p = cpu_params();
    ekv_model* m = nullptr;
    ASSERT_EQ(ekv_model_load_from_memory(bytes.data(), bytes.size(), &p, &m), EKV_OK) << ekv_last_error();
    EXPECT_EQ(logits_after(m, toks), want);
    ekv_model_free(m);

    // A buffer at an odd address: tensors that land misaligned are copied,
    // the answers stay the same (UBSan checks every load in the asan preset).
    std::vector<char> shifted(bytes.size() + 1);
    std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
    m = nullptr;
    ASSERT_EQ(ekv_model_load_from_memory(shifted.data() + 1, bytes.size(), &p, &m), EKV_OK) << ekv_last_error();
    EXPECT_EQ(logits_after(m, toks), want);
    ekv_model_free(m);

    // The GGUF inside a bigger file at an odd offset, as in an APK.
    const std::string packed = testing::TempDir() + "ekv_packed_asset.bin";
    {
        std::ofstream out(packed, std::ios::binary);
        const std::string head(4097, 'x');
        out.write(head.data(), static_cast<std::streamsize>(head.size()));
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.write("trailer", 7);
    }
    const int fd = ::open(packed.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    m = nullptr;
    ASSERT_EQ(ekv_model_load_from_fd(fd, 4097, bytes.size(), &p, &m), EKV_OK) << ekv_last_error();
    ::close(fd);  // the mapping outlives the descriptor
    EXPECT_EQ(logits_after(m, toks), want);
    ekv_model_free(m);

    // Ranges past the end, bad descriptors and garbage are refused.
    const int fd2 = ::open(packed.c_str(), O_RDONLY);
    m = nullptr;
    EXPECT_EQ(ekv_model_load_from_fd(fd2, 4097, bytes.size() + 100, &p, &m), EKV_ERR_IO);
    EXPECT_NE(std::string(ekv_last_error()).find("past its end"), std::string::npos) << ekv_last_error();
    EXPECT_EQ(ekv_model_load_from_fd(fd2, 0, bytes.size(), &p, &m), EKV_ERR_INVALID_FILE) << ekv_last_error();
    ::close(fd2);
    EXPECT_EQ(ekv_model_load_from_fd(-1, 0, 10, &p, &m), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_model_load_from_memory("GGUF", 4, &p, &m), EKV_ERR_INVALID_FILE);
    EXPECT_EQ(ekv_model_load_from_memory(nullptr, 4, &p, &m), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(m, nullptr);
    std::remove(packed.c_str());
}

TEST(AppPlumbing, CacheInMemoryRoundTripsAndSavesAreAtomic) {
    ModelPtr model = load_model(tiny_path(), 1);
    ASSERT_TRUE(model);
    ekv_cache_params cp = ekv_cache_default_params();
    cp.type = EKV_CACHE_QUANTIZED;  // KIVI 4-bit in groups of 8, a residual of 8: groups get quantized
    cp.q_group_size = 8;
    cp.residual_length = 8;
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_create(model.get(), &cp, &raw), EKV_OK) << ekv_last_error();
    CachePtr c(raw);
    std::vector<int32_t> toks;
    for (int32_t i = 0; i < 40; ++i) toks.push_back(3 + (i * 37) % 200);
    std::vector<float> logits(static_cast<size_t>(n_vocab(model.get())));
    ASSERT_EQ(ekv_forward(model.get(), c.get(), toks.data(), 40, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()),
              EKV_OK);
    size_t need = 0;
    EXPECT_EQ(ekv_cache_save_to_memory(c.get(), nullptr, 0, &need), EKV_ERR_BUFFER_TOO_SMALL);
    ASSERT_GT(need, 64u);
    std::vector<char> mem(need);
    size_t len = 0;
    ASSERT_EQ(ekv_cache_save_to_memory(c.get(), mem.data(), mem.size(), &len), EKV_OK) << ekv_last_error();
    EXPECT_EQ(len, need);

    // The bytes equal the file ekv_cache_save writes.
    const std::string path = testing::TempDir() + "ekv_mem_cache.ekv";
    ASSERT_EQ(ekv_cache_save(c.get(), path.c_str()), EKV_OK);
    EXPECT_EQ(read_all(path), mem);
    // Atomic save: no temporary file is left next to it.
    const std::string dir = testing::TempDir();
    std::FILE* ls = popen(("ls " + dir + " | grep -c 'ekv_mem_cache.ekv.tmp' || true").c_str(), "r");
    char count[16] = {0};
    ASSERT_NE(std::fgets(count, sizeof count, ls), nullptr);
    pclose(ls);
    EXPECT_EQ(std::string(count), "0\n");

    ekv_cache* loaded = nullptr;
    ASSERT_EQ(ekv_cache_load_from_memory(model.get(), mem.data(), mem.size(), &loaded), EKV_OK) << ekv_last_error();
    CachePtr owned(loaded);
    const int32_t next = 21;
    std::vector<float> a(logits.size()), b(logits.size());
    ASSERT_EQ(ekv_forward(model.get(), c.get(), &next, 1, nullptr, EKV_LOGITS_LAST, a.data(), a.size()), EKV_OK);
    ASSERT_EQ(ekv_forward(model.get(), loaded, &next, 1, nullptr, EKV_LOGITS_LAST, b.data(), b.size()), EKV_OK);
    EXPECT_EQ(a, b);

    // A corrupted copy is refused and creates nothing.
    mem[mem.size() / 2] ^= 0x5a;
    loaded = nullptr;
    EXPECT_EQ(ekv_cache_load_from_memory(model.get(), mem.data(), mem.size(), &loaded), EKV_ERR_INVALID_FILE);
    EXPECT_EQ(loaded, nullptr);
    EXPECT_EQ(ekv_cache_load_from_memory(model.get(), mem.data(), 0, &loaded), EKV_ERR_INVALID_FILE);
    std::remove(path.c_str());
}

TEST(AppPlumbing, CacheParamsReadBack) {
    ModelPtr model = load_model(tiny_path(), 1);
    ASSERT_TRUE(model);
    ekv_cache_params p = ekv_cache_default_params();
    p.type = EKV_CACHE_SINK;
    p.window_length = 32;
    p.num_sink_tokens = 2;
    p.dtype = EKV_KV_KIVI;
    p.nbits = 2;
    p.q_group_size = 8;
    p.residual_length = 16;
    p.offload = EKV_PLACEMENT_HOST;
    ekv_cache* c = nullptr;
    ASSERT_EQ(ekv_cache_create(model.get(), &p, &c), EKV_OK) << ekv_last_error();
    CachePtr owned(c);
    ekv_cache_params got = ekv_cache_default_params();
    ASSERT_EQ(ekv_cache_get_params(c, &got), EKV_OK);
    EXPECT_EQ(got.type, EKV_CACHE_SINK);
    EXPECT_EQ(got.window_length, 32);
    EXPECT_EQ(got.num_sink_tokens, 2);
    EXPECT_EQ(got.dtype, EKV_KV_KIVI);
    EXPECT_EQ(got.nbits, 2);
    EXPECT_EQ(got.q_group_size, 8);
    EXPECT_EQ(got.residual_length, 16);
    EXPECT_EQ(got.offload, EKV_PLACEMENT_HOST);
    // AUTO resolves: the tiny Llama's natural cache is dynamic, f16, on the device.
    ekv_cache* d = nullptr;
    ASSERT_EQ(ekv_cache_create(model.get(), nullptr, &d), EKV_OK);
    CachePtr owned_d(d);
    ASSERT_EQ(ekv_cache_get_params(d, &got), EKV_OK);
    EXPECT_EQ(got.type, EKV_CACHE_DYNAMIC);
    EXPECT_EQ(got.dtype, EKV_KV_F16);
    EXPECT_EQ(got.offload, EKV_PLACEMENT_DEVICE);
    EXPECT_EQ(ekv_cache_get_params(d, nullptr), EKV_ERR_INVALID_ARGUMENT);
}

// A params struct of any size: the known prefix is read, the rest defaults,
// and bytes past what the library knows are never read.
TEST(AppPlumbing, ParamsOfAnySizeUseTheirPrefix) {
    ModelPtr model = load_model(tiny_path(), 1);
    ASSERT_TRUE(model);
    ekv_cache_params small = ekv_cache_default_params();
    small.type = EKV_CACHE_STATIC;
    small.max_cache_len = 32;
    small.dtype = EKV_KV_KIVI;  // past the prefix: must not be read
    small.struct_size = offsetof(ekv_cache_params, dtype);
    ekv_cache* c = nullptr;
    ASSERT_EQ(ekv_cache_create(model.get(), &small, &c), EKV_OK) << ekv_last_error();
    CachePtr owned(c);
    ekv_cache_params got = ekv_cache_default_params();
    ASSERT_EQ(ekv_cache_get_params(c, &got), EKV_OK);
    EXPECT_EQ(got.type, EKV_CACHE_STATIC);
    EXPECT_EQ(got.max_cache_len, 32);
    EXPECT_EQ(got.dtype, EKV_KV_F16);  // the default

    // A newer, larger struct: unknown trailing bytes are ignored.
    struct Bigger {
        ekv_cache_params p;
        unsigned char future[64];
    } big;
    std::memset(&big, 0xab, sizeof big);
    big.p = ekv_cache_default_params();
    big.p.struct_size = sizeof big;
    big.p.type = EKV_CACHE_SLIDING_WINDOW;
    big.p.window_length = 16;
    c = nullptr;
    ASSERT_EQ(ekv_cache_create(model.get(), &big.p, &c), EKV_OK) << ekv_last_error();
    CachePtr owned_big(c);
    int32_t cap = 0;
    ASSERT_EQ(ekv_cache_capacity(c, &cap), EKV_OK);
    EXPECT_EQ(cap, 16);

    // A v1-sized generate params (no stop request field) still generates.
    ekv_generate_params gp = ekv_generate_default_params();
    gp.struct_size = offsetof(ekv_generate_params, cancel);
    gp.max_new_tokens = 3;
    gp.stop_at_eos = 0;
    const int32_t prompt[3] = {5, 17, 42};
    int32_t out[3];
    ekv_generate_result r = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model.get(), owned.get(), prompt, 3, &gp, out, 3, &r), EKV_OK) << ekv_last_error();
    EXPECT_EQ(r.n_generated, 3);
    gp.struct_size = 4;  // not even the size field
    EXPECT_EQ(ekv_generate(model.get(), owned.get(), prompt, 3, &gp, out, 3, &r), EKV_ERR_INVALID_ARGUMENT);
}

TEST(AppPlumbing, MetadataKeysCanBeListed) {
    ModelPtr model = load_model(tiny_path(), 1);
    ASSERT_TRUE(model);
    int32_t n = 0;
    ASSERT_EQ(ekv_model_meta_count(model.get(), &n), EKV_OK);
    ASSERT_GT(n, 5);
    bool saw_arch = false;
    std::string prev;
    for (int32_t i = 0; i < n; ++i) {
        char key[256];
        size_t len = 0;
        ASSERT_EQ(ekv_model_meta_key(model.get(), i, key, sizeof key, &len), EKV_OK) << ekv_last_error();
        EXPECT_EQ(std::strlen(key), len);
        EXPECT_LT(prev, std::string(key));  // sorted, no duplicates
        prev = key;
        saw_arch = saw_arch || prev == "general.architecture";
    }
    EXPECT_TRUE(saw_arch);
    char key[4];
    size_t len = 0;
    EXPECT_EQ(ekv_model_meta_key(model.get(), n, key, sizeof key, &len), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_model_meta_key(model.get(), 0, key, 1, &len), EKV_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(ekv_model_meta_count(nullptr, &n), EKV_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace ekv_test
