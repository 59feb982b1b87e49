// Files around Mamba: `mamba` cache files (round trip, and every bad file
// refused with nothing created) and Mamba GGUF files whose state-space
// tensors or metadata are wrong (refused at load, naming the tensor or key).
#include <cmath>
#include <cstring>
#include <functional>
#include <utility>

#include "core/hash.h"
#include "model/cache_family_util.h"
#include "model/test_util.h"
#include "unit/gguf_test_writer.h"

using namespace ekv_test;

namespace {

// ---------------------------------------------------------------------------
// Cache files
// ---------------------------------------------------------------------------

class MambaCacheFiles : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = load_model(fixtures_dir() + "/tiny_mamba/tiny_mamba_f32.gguf");
        ASSERT_TRUE(model_);
        nv_ = n_vocab(model_.get());
        for (int i = 0; i < 64; ++i) stream_.push_back((i * 89 + 5) % nv_);
    }
    std::vector<float> feed_into(ekv_cache* c, size_t first, size_t n) {
        return feed(model_.get(), c, stream_, first, n, n);
    }
    CachePtr prefilled(size_t n) {
        CachePtr c = make_cache(model_.get(), EKV_CACHE_MAMBA);
        feed_into(c.get(), 0, n);
        return c;
    }
    ekv_status try_load(const std::string& path, std::string* message) {
        ekv_cache* raw = nullptr;
        const ekv_status st = ekv_cache_load(model_.get(), path.c_str(), &raw);
        *message = ekv_last_error();
        if (st != EKV_OK) {
            EXPECT_EQ(raw, nullptr);
        }
        ekv_cache_free(raw);
        return st;
    }
    ModelPtr model_;
    int32_t nv_ = 0;
    std::vector<int32_t> stream_;
};

// Rewrites the trailing FNV-1a checksum so that an edited file passes it and
// reaches the body checks (cache_io.h: the checksum covers everything before).
void reseal(std::vector<uint8_t>* bytes) {
    ekv::Fnv1a64 h;
    h.add(bytes->data(), bytes->size() - 8);
    const uint64_t sum = h.value();
    std::memcpy(bytes->data() + bytes->size() - 8, &sum, 8);
}

// Offsets inside a Recurrent cache file: a 24-byte file header (magic,
// version, kind, fingerprint), then the body header of mamba_cache.cpp.
constexpr size_t kBody = 24;
constexpr size_t kNRecurrent = kBody + 4, kConvCols = kBody + 12, kSsmCols = kBody + 20, kType = kBody + 24;
constexpr size_t kLen = kBody + 40, kNTokens = kBody + 48;

void put_u32(std::vector<uint8_t>* b, size_t at, uint32_t v) { std::memcpy(b->data() + at, &v, 4); }
void put_u64(std::vector<uint8_t>* b, size_t at, uint64_t v) { std::memcpy(b->data() + at, &v, 8); }

TEST_F(MambaCacheFiles, SaveLoadContinuesIdentically) {
    TempDir dir;
    const std::string path = dir.file("mamba.ekv");
    CachePtr c = prefilled(20);
    ASSERT_EQ(ekv_cache_save(c.get(), path.c_str()), EKV_OK) << ekv_last_error();
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_load(model_.get(), path.c_str(), &raw), EKV_OK) << ekv_last_error();
    CachePtr loaded(raw);
    ekv_cache_type type = EKV_CACHE_DYNAMIC;
    ASSERT_EQ(ekv_cache_get_type(loaded.get(), &type), EKV_OK);
    EXPECT_EQ(type, EKV_CACHE_MAMBA);
    const ekv_cache_stats s = stats_of(loaded.get());
    EXPECT_EQ(s.seq_len, 20);
    EXPECT_EQ(s.tokens_forwarded, 20u);
    for (size_t i = 20; i < 30; ++i) {
        const std::vector<float> want = feed_into(c.get(), i, 1), got = feed_into(loaded.get(), i, 1);
        ASSERT_EQ(got, want) << "position " << i;
    }
}

TEST_F(MambaCacheFiles, ResetCacheRoundTrips) {
    TempDir dir;
    const std::string path = dir.file("empty.ekv");
    CachePtr c = prefilled(8);
    ASSERT_EQ(ekv_cache_reset(c.get()), EKV_OK);
    ASSERT_EQ(ekv_cache_save(c.get(), path.c_str()), EKV_OK) << ekv_last_error();
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_load(model_.get(), path.c_str(), &raw), EKV_OK) << ekv_last_error();
    CachePtr loaded(raw);
    CachePtr fresh = make_cache(model_.get(), EKV_CACHE_MAMBA);
    EXPECT_EQ(feed_into(loaded.get(), 0, 10), feed_into(fresh.get(), 0, 10));
}

TEST_F(MambaCacheFiles, TruncatedOrCorruptedFilesAreRefused) {
    TempDir dir;
    const std::string good = dir.file("good.ekv"), bad = dir.file("bad.ekv");
    CachePtr c = prefilled(16);
    ASSERT_EQ(ekv_cache_save(c.get(), good.c_str()), EKV_OK);
    const std::vector<uint8_t> bytes = read_bytes(good);
    ASSERT_GT(bytes.size(), 100u);
    std::string msg;
    for (size_t cut : {size_t{0}, size_t{10}, size_t{30}, size_t{80}, bytes.size() / 2, bytes.size() - 9,
                       bytes.size() - 1}) {
        write_bytes(bad, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
        EXPECT_EQ(try_load(bad, &msg), EKV_ERR_INVALID_FILE) << "cut at " << cut << ": " << msg;
    }
    std::vector<uint8_t> flipped = bytes;
    flipped[bytes.size() - 100] ^= 0x40;  // inside the SSM state
    write_bytes(bad, flipped);
    EXPECT_EQ(try_load(bad, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
}

TEST_F(MambaCacheFiles, HeadersThatDoNotMatchTheModelAreRefused) {
    TempDir dir;
    const std::string good = dir.file("good.ekv"), bad = dir.file("bad.ekv");
    CachePtr c = prefilled(16);
    ASSERT_EQ(ekv_cache_save(c.get(), good.c_str()), EKV_OK);
    const std::vector<uint8_t> bytes = read_bytes(good);
    std::string msg;
    struct Edit {
        const char* what;
        std::function<void(std::vector<uint8_t>*)> apply;
        ekv_status want;
    };
    const Edit edits[] = {
        {"layer count", [](std::vector<uint8_t>* b) { put_u32(b, kNRecurrent, 3); }, EKV_ERR_MODEL_MISMATCH},
        {"conv width", [](std::vector<uint8_t>* b) { put_u32(b, kConvCols, 64); }, EKV_ERR_MODEL_MISMATCH},
        {"state size", [](std::vector<uint8_t>* b) { put_u32(b, kSsmCols, 8); }, EKV_ERR_MODEL_MISMATCH},
        {"cache type", [](std::vector<uint8_t>* b) { put_u32(b, kType, EKV_CACHE_DYNAMIC); }, EKV_ERR_INVALID_FILE},
        {"huge length",
         [](std::vector<uint8_t>* b) {
             put_u32(b, kLen, 1u << 30);
             put_u64(b, kNTokens, 1u << 30);
         },
         EKV_ERR_INVALID_FILE},
        {"ids != length", [](std::vector<uint8_t>* b) { put_u64(b, kNTokens, 15); }, EKV_ERR_INVALID_FILE},
    };
    for (const Edit& e : edits) {
        std::vector<uint8_t> edited = bytes;
        e.apply(&edited);
        reseal(&edited);
        write_bytes(bad, edited);
        EXPECT_EQ(try_load(bad, &msg), e.want) << e.what << ": " << msg;
    }
    // The unedited bytes resealed still load: the edits above are what failed.
    std::vector<uint8_t> same = bytes;
    reseal(&same);
    write_bytes(bad, same);
    EXPECT_EQ(try_load(bad, &msg), EKV_OK) << msg;
}

TEST_F(MambaCacheFiles, AnotherModelsCacheFileIsRefused) {
    TempDir dir;
    const std::string path = dir.file("llama.ekv");
    ModelPtr llama = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
    CachePtr lc = make_cache(llama.get(), EKV_CACHE_DYNAMIC);
    std::vector<int32_t> ids = {1, 2, 3};
    std::vector<float> logits(static_cast<size_t>(n_vocab(llama.get())));
    ASSERT_EQ(ekv_forward(llama.get(), lc.get(), ids.data(), 3, nullptr, EKV_LOGITS_LAST, logits.data(),
                          logits.size()),
              EKV_OK);
    ASSERT_EQ(ekv_cache_save(lc.get(), path.c_str()), EKV_OK);
    std::string msg;
    EXPECT_EQ(try_load(path, &msg), EKV_ERR_MODEL_MISMATCH) << msg;
}

// ---------------------------------------------------------------------------
// GGUF files
// ---------------------------------------------------------------------------

constexpr uint32_t kTypeF32 = 0, kTypeF16 = 1;
constexpr uint64_t kEmbd = 8, kInner = 16, kState = 4, kConv = 4, kDtRank = 2, kVocab = 12, kLayers = 2;

std::vector<uint8_t> f32_values(size_t n, float scale, uint32_t seed) {
    std::vector<uint8_t> b(n * 4);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) {
        s = s * 1664525u + 1013904223u;
        const float v = scale * (static_cast<float>(s >> 8) / 16777216.0f - 0.5f);
        std::memcpy(&b[i * 4], &v, 4);
    }
    return b;
}

GgufWriter::Tensor* find_tensor(GgufWriter& w, const std::string& name) {
    for (GgufWriter::Tensor& t : w.tensors)
        if (t.name == name) return &t;
    return nullptr;
}

// Metadata changes: a key left out, or one integer key set to another value.
struct MetaEdit {
    std::string omit;
    std::string key;
    uint32_t value = 0;
};

// A complete two-layer Mamba in F32; `tweak` breaks one tensor, `meta` one key.
std::string write_mamba(const std::string& name, const std::function<void(GgufWriter&)>& tweak,
                        const MetaEdit& meta = MetaEdit()) {
    GgufWriter w;
    w.add_string("general.architecture", "mamba");
    const std::pair<const char*, uint64_t> ints[] = {
        {"mamba.block_count", kLayers},      {"mamba.context_length", 256},   {"mamba.embedding_length", kEmbd},
        {"mamba.ssm.conv_kernel", kConv},    {"mamba.ssm.inner_size", kInner}, {"mamba.ssm.state_size", kState},
        {"mamba.ssm.time_step_rank", kDtRank}};
    for (const auto& kv : ints) {
        if (meta.omit == kv.first) continue;
        w.add_u32(kv.first, meta.key == kv.first ? meta.value : static_cast<uint32_t>(kv.second));
    }
    if (meta.omit != "mamba.attention.layer_norm_rms_epsilon")
        w.add_f32("mamba.attention.layer_norm_rms_epsilon", 1e-5f);
    uint32_t seed = 0;
    auto add = [&](const std::string& n, std::vector<uint64_t> dims, float scale) {
        uint64_t count = 1;
        for (uint64_t d : dims) count *= d;
        w.add_tensor(n, dims, kTypeF32, f32_values(count, scale, ++seed));
    };
    add("token_embd.weight", {kEmbd, kVocab}, 2.0f);
    add("output_norm.weight", {kEmbd}, 0.2f);
    for (uint64_t il = 0; il < kLayers; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        add(p + "attn_norm.weight", {kEmbd}, 0.2f);
        add(p + "ssm_in.weight", {kEmbd, 2 * kInner}, 0.5f);
        add(p + "ssm_conv1d.weight", {kConv, kInner}, 0.5f);
        add(p + "ssm_conv1d.bias", {kInner}, 0.2f);
        add(p + "ssm_x.weight", {kInner, kDtRank + 2 * kState}, 0.5f);
        add(p + "ssm_dt.weight", {kDtRank, kInner}, 0.5f);
        add(p + "ssm_dt.bias", {kInner}, 0.5f);
        add(p + "ssm_a", {kState, kInner}, 1.0f);
        add(p + "ssm_d", {kInner}, 1.0f);
        add(p + "ssm_out.weight", {kInner, kEmbd}, 0.5f);
    }
    // A's entries must be negative (-exp(A_log)): shift the random values.
    for (uint64_t il = 0; il < kLayers; ++il) {
        GgufWriter::Tensor* a = find_tensor(w, "blk." + std::to_string(il) + ".ssm_a");
        for (size_t i = 0; i < a->data.size(); i += 4) {
            float v;
            std::memcpy(&v, &a->data[i], 4);
            v = -1.0f - std::fabs(v);
            std::memcpy(&a->data[i], &v, 4);
        }
    }
    tweak(w);
    const std::string path = ::testing::TempDir() + "ekv_mamba_" + name + ".gguf";
    write_bytes(path, w.build());
    return path;
}

ekv_status try_load_model(const std::string& path, std::string* message) {
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    p.n_threads = 1;
    ekv_model* m = nullptr;
    const ekv_status st = ekv_model_load(path.c_str(), &p, &m);
    *message = ekv_last_error();
    if (st != EKV_OK) {
        EXPECT_EQ(m, nullptr);
    }
    ekv_model_free(m);
    std::remove(path.c_str());
    return st;
}

// Replaces a tensor's shape (and data, sized to it).
void reshape(GgufWriter& w, const std::string& name, std::vector<uint64_t> dims, uint32_t type = kTypeF32) {
    GgufWriter::Tensor* t = find_tensor(w, name);
    ASSERT_NE(t, nullptr) << name;
    uint64_t count = 1;
    for (uint64_t d : dims) count *= d;
    t->dims = std::move(dims);
    t->type = type;
    t->data = f32_values(count, 0.1f, 99);
    if (type == kTypeF16) t->data.resize(count * 2);
}

TEST(MambaGguf, TheValidBaselineLoadsAndRuns) {
    const std::string path = write_mamba("valid", [](GgufWriter&) {});
    ModelPtr m = load_model(path, 1);
    ASSERT_TRUE(m);
    CachePtr c = make_cache(m.get(), EKV_CACHE_AUTO);
    ASSERT_TRUE(c);
    std::vector<int32_t> ids = {1, 5, 7, 11, 0};
    std::vector<float> logits(kVocab);
    ASSERT_EQ(ekv_forward(m.get(), c.get(), ids.data(), 5, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()),
              EKV_OK)
        << ekv_last_error();
    for (float v : logits) EXPECT_TRUE(std::isfinite(v));
    std::remove(path.c_str());
}

TEST(MambaGguf, WrongStateSpaceTensorShapesNameTheTensor) {
    struct Case {
        const char* tensor;
        std::vector<uint64_t> dims;
    };
    const Case cases[] = {
        {"blk.1.ssm_a", {kState, kInner - 1}},          // one channel short
        {"blk.0.ssm_a", {kInner, kState}},              // transposed (HF layout)
        {"blk.0.ssm_conv1d.weight", {kConv, 1, kInner}},  // unsqueezed HF conv weight
        {"blk.1.ssm_conv1d.weight", {kConv + 1, kInner}},
        {"blk.0.ssm_x.weight", {kInner, kDtRank + kState}},  // C missing
        {"blk.0.ssm_dt.weight", {kDtRank + 1, kInner}},
        {"blk.1.ssm_d", {kInner + 1}},
        {"blk.0.ssm_in.weight", {kEmbd, kInner}},  // gate half missing
        {"blk.1.ssm_out.weight", {kInner, kEmbd + 1}},
    };
    for (const Case& c : cases) {
        const std::string path = write_mamba("shape", [&](GgufWriter& w) { reshape(w, c.tensor, c.dims); });
        std::string msg;
        EXPECT_EQ(try_load_model(path, &msg), EKV_ERR_INVALID_FILE) << c.tensor;
        EXPECT_NE(msg.find(std::string(c.tensor) + " has shape"), std::string::npos) << msg;
    }
}

TEST(MambaGguf, MissingTensorsMetadataAndTypesAreRefused) {
    std::string msg;
    std::string path = write_mamba("missing", [](GgufWriter& w) {
        w.tensors.erase(w.tensors.begin() + static_cast<long>(find_tensor(w, "blk.1.ssm_d") - w.tensors.data()));
    });
    EXPECT_EQ(try_load_model(path, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("missing tensor blk.1.ssm_d"), std::string::npos) << msg;

    path = write_mamba("f16_a", [](GgufWriter& w) { reshape(w, "blk.0.ssm_a", {kState, kInner}, kTypeF16); });
    EXPECT_EQ(try_load_model(path, &msg), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(msg.find("blk.0.ssm_a"), std::string::npos) << msg;

    for (const char* key : {"mamba.ssm.state_size", "mamba.ssm.conv_kernel", "mamba.ssm.time_step_rank",
                            "mamba.attention.layer_norm_rms_epsilon", "mamba.block_count"}) {
        path = write_mamba("no_key", [](GgufWriter&) {}, MetaEdit{key, "", 0});
        EXPECT_EQ(try_load_model(path, &msg), EKV_ERR_INVALID_FILE) << key;
        EXPECT_NE(msg.find(key), std::string::npos) << msg;
    }
    // dt rank larger than the inner size; a zero state size.
    path = write_mamba("rank", [](GgufWriter&) {}, MetaEdit{"", "mamba.ssm.time_step_rank", kInner + 1});
    EXPECT_EQ(try_load_model(path, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("time_step_rank"), std::string::npos) << msg;
    path = write_mamba("state0", [](GgufWriter&) {}, MetaEdit{"", "mamba.ssm.state_size", 0});
    EXPECT_EQ(try_load_model(path, &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("state_size"), std::string::npos) << msg;
}

}  // namespace
