// Cache operations across the family on the tiny Llama: crop (refused once a
// ring dropped what the shorter sequence needs), clone for prefix reuse,
// save/load round trips and the files that must be refused, and generation
// through rings far past the trained context.
#include "model/cache_family_util.h"

using namespace ekv_test;

namespace {

std::vector<CacheSpec> family() {
    std::vector<CacheSpec> v;
    auto add = [&](ekv_cache_type t, const char* name, auto&& tweak) {
        CacheSpec s;
        s.type = t;
        s.name = name;
        tweak(s);
        v.push_back(s);
    };
    add(EKV_CACHE_DYNAMIC, "dynamic", [](CacheSpec&) {});
    add(EKV_CACHE_STATIC, "static", [](CacheSpec& s) { s.max_len = 200; });
    add(EKV_CACHE_OFFLOADED, "offloaded", [](CacheSpec&) {});
    add(EKV_CACHE_OFFLOADED_STATIC, "offloaded_static", [](CacheSpec& s) { s.max_len = 200; });
    add(EKV_CACHE_QUANTIZED, "quantized q4", [](CacheSpec& s) { s.dtype = EKV_KV_F16; });
    add(EKV_CACHE_SLIDING_WINDOW, "sliding_window", [](CacheSpec& s) { s.window = 24; });
    add(EKV_CACHE_SINK, "sink", [](CacheSpec& s) {
        s.window = 24;
        s.sinks = 4;
    });
    add(EKV_CACHE_SINK, "sink q2 host", [](CacheSpec& s) {
        s.window = 40;
        s.sinks = 4;
        s.dtype = EKV_KV_KIVI;
        s.nbits = 2;
        s.offload = EKV_PLACEMENT_HOST;
    });
    return v;
}

class CacheFiles : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
        ASSERT_TRUE(model_);
        nv_ = n_vocab(model_.get());
        for (int i = 0; i < 600; ++i) stream_.push_back(3 + (i * 89 + 5) % (nv_ - 3));
    }
    std::vector<float> feed_into(ekv_cache* c, size_t first, size_t n, size_t chunk) {
        return feed(model_.get(), c, stream_, first, n, chunk);
    }
    ModelPtr model_;
    int32_t nv_ = 0;
    std::vector<int32_t> stream_;
};

TEST_F(CacheFiles, CloneSharesAPrefillForEveryType) {
    for (const CacheSpec& s : family()) {
        CachePtr shared = make(model_.get(), s);
        feed_into(shared.get(), 0, 90, 30);
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_clone(shared.get(), &raw), EKV_OK) << s.name << ": " << ekv_last_error();
        CachePtr fork(raw);
        const std::vector<float> got = feed_into(fork.get(), 90, 12, 12);
        EXPECT_EQ(stats_of(fork.get()).tokens_forwarded, 12u) << s.name;  // only the suffix
        EXPECT_EQ(stats_of(shared.get()).seq_len, 90) << s.name;         // the original is untouched
        CachePtr fresh = make(model_.get(), s);
        feed_into(fresh.get(), 0, 90, 30);
        const std::vector<float> want = feed_into(fresh.get(), 90, 12, 12);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << s.name;
    }
}

TEST_F(CacheFiles, SaveLoadRoundTripsEveryType) {
    TempDir dir;
    for (const CacheSpec& s : family()) {
        CachePtr c = make(model_.get(), s);
        feed_into(c.get(), 0, 150, 50);
        const std::string path = dir.file("cache.ekv");
        ASSERT_EQ(ekv_cache_save(c.get(), path.c_str()), EKV_OK) << s.name << ": " << ekv_last_error();
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_load(model_.get(), path.c_str(), &raw), EKV_OK) << s.name << ": " << ekv_last_error();
        CachePtr loaded(raw);
        ekv_cache_type t;
        ASSERT_EQ(ekv_cache_get_type(loaded.get(), &t), EKV_OK);
        EXPECT_EQ(t, s.type) << s.name;
        const ekv_cache_stats a = stats_of(c.get()), b = stats_of(loaded.get());
        EXPECT_EQ(a.seq_len, b.seq_len) << s.name;
        EXPECT_EQ(a.tokens_held, b.tokens_held) << s.name;
        EXPECT_EQ(a.used_bytes, b.used_bytes) << s.name;
        EXPECT_EQ(a.host_bytes > 0, b.host_bytes > 0) << s.name;
        const std::vector<float> want = feed_into(c.get(), 150, 20, 4), got = feed_into(loaded.get(), 150, 20, 4);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << s.name;
    }
}

TEST_F(CacheFiles, BadCacheFilesAreRefusedAndNothingIsCreated) {
    TempDir dir;
    CacheSpec s = family()[6];  // sink
    CachePtr c = make(model_.get(), s);
    feed_into(c.get(), 0, 60, 60);
    const std::string good = dir.file("good.ekv"), bad = dir.file("bad.ekv");
    ASSERT_EQ(ekv_cache_save(c.get(), good.c_str()), EKV_OK) << ekv_last_error();
    const std::vector<uint8_t> bytes = read_bytes(good);
    ASSERT_GT(bytes.size(), 200u);

    auto expect_refused = [&](const std::vector<uint8_t>& b, ekv_status want, const char* says, const char* what) {
        write_bytes(bad, b);
        ekv_cache* out = reinterpret_cast<ekv_cache*>(&dir);  // must be reset to NULL
        EXPECT_EQ(ekv_cache_load(model_.get(), bad.c_str(), &out), want) << what << ": " << ekv_last_error();
        EXPECT_EQ(out, nullptr) << what;
        EXPECT_NE(std::string(ekv_last_error()).find(says), std::string::npos) << what << ": " << ekv_last_error();
    };
    for (size_t cut : {size_t(0), size_t(10), bytes.size() / 2, bytes.size() - 1})
        expect_refused(std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut), EKV_ERR_INVALID_FILE, "truncated",
                       "truncated");
    std::vector<uint8_t> flipped = bytes;
    flipped[bytes.size() - 40] ^= 0x10;  // inside the last layer's data
    expect_refused(flipped, EKV_ERR_INVALID_FILE, "checksum", "corrupted data");
    std::vector<uint8_t> grown = bytes;
    grown.push_back(0);
    expect_refused(grown, EKV_ERR_INVALID_FILE, "trailing", "trailing byte");
    std::vector<uint8_t> magic = bytes;
    magic[0] = 'X';
    expect_refused(magic, EKV_ERR_INVALID_FILE, "not an edgekv cache", "magic");
    std::vector<uint8_t> version = bytes;
    version[8] = 99;  // the version field follows the 8-byte magic
    expect_refused(version, EKV_ERR_UNSUPPORTED, "version", "version");

    // Another model: the f16 conversion of the same network.
    ModelPtr other = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f16.gguf");
    ekv_cache* out = nullptr;
    EXPECT_EQ(ekv_cache_load(other.get(), good.c_str(), &out), EKV_ERR_MODEL_MISMATCH) << ekv_last_error();
    EXPECT_EQ(out, nullptr);
    EXPECT_EQ(ekv_cache_load(model_.get(), (dir.path() + "/missing.ekv").c_str(), &out), EKV_ERR_IO);
    EXPECT_EQ(ekv_cache_load(model_.get(), nullptr, &out), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_save(nullptr, good.c_str()), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_cache_save(c.get(), (dir.path() + "/no/such/dir.ekv").c_str()), EKV_ERR_IO);
    // The good file still loads.
    ASSERT_EQ(ekv_cache_load(model_.get(), good.c_str(), &out), EKV_OK) << ekv_last_error();
    ekv_cache_free(out);
}

TEST_F(CacheFiles, CropOnARingIsRefusedOnceItDroppedWhatTheShorterSequenceNeeds) {
    for (const CacheSpec& s : {family()[5], family()[6], family()[4]}) {
        CachePtr c = make(model_.get(), s);
        feed_into(c.get(), 0, 500, 100);
        // Far back: the ring (or the KIVI residual) no longer has those tokens.
        const ekv_status st = ekv_cache_crop(c.get(), 150);
        if (s.type == EKV_CACHE_QUANTIZED) {
            // Quantized groups stay; only the partial group needs its residual rows.
            EXPECT_EQ(st, EKV_ERR_INVALID_STATE) << s.name << ": " << ekv_last_error();
        } else {
            EXPECT_EQ(st, EKV_ERR_INVALID_STATE) << s.name << ": " << ekv_last_error();
            EXPECT_NE(std::string(ekv_last_error()).find("reset"), std::string::npos) << ekv_last_error();
        }
        EXPECT_EQ(stats_of(c.get()).seq_len, 500) << s.name;  // unchanged
        EXPECT_EQ(ekv_cache_crop(c.get(), 501), EKV_ERR_INVALID_ARGUMENT) << s.name;
        // A short rollback is fine and continues exactly like a fresh run.
        ASSERT_EQ(ekv_cache_crop(c.get(), 496), EKV_OK) << s.name << ": " << ekv_last_error();
        const std::vector<float> got = feed_into(c.get(), 496, 8, 8);
        CachePtr fresh = make(model_.get(), s);
        feed_into(fresh.get(), 0, 496, 100);
        const std::vector<float> want = feed_into(fresh.get(), 496, 8, 8);
        EXPECT_LT(max_row_error(got, want, nv_), 1e-5) << s.name;
    }
}

TEST_F(CacheFiles, GenerationRunsThroughARingFarPastTheContextAndReusesItsPrefix) {
    CacheSpec s = family()[7];  // 2-bit sink cache in host memory
    CachePtr c = make(model_.get(), s);
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = 700;  // the model was trained on 256 positions
    gp.stop_at_eos = 0;
    std::vector<int32_t> out(700);
    ekv_generate_result r = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), stream_.data(), 10, &gp, out.data(), 700, &r), EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(r.n_generated, 700);
    const ekv_cache_stats st = stats_of(c.get());
    EXPECT_EQ(st.tokens_held, 40);
    EXPECT_EQ(st.seq_len, 10 + 699);
    // References for the stream: the same tokens forwarded one at a time
    // into the device-placed twin (placement moves bytes, not results) give
    // every greedy choice (row i predicts token i + 1); the f16 sink cache
    // gives logits within the 2-bit quantization error.
    {
        std::vector<int32_t> history(stream_.begin(), stream_.begin() + 10);
        history.insert(history.end(), out.begin(), out.end() - 1);
        CacheSpec device = s, f16 = s;
        device.offload = EKV_PLACEMENT_DEVICE;
        f16.dtype = EKV_KV_F16;
        CachePtr a = make(model_.get(), device), b = make(model_.get(), f16);
        // As the generator: the prompt in one forward, then one token a step.
        auto logits = [&](ekv_cache* twin) {
            std::vector<float> all = feed(model_.get(), twin, history, 0, 10, 10);
            const std::vector<float> rest = feed(model_.get(), twin, history, 10, history.size() - 10, 1);
            all.insert(all.end(), rest.begin(), rest.end());
            return all;
        };
        const std::vector<float> got = logits(a.get());
        for (size_t i = 9; i < history.size(); ++i)
            ASSERT_EQ(argmax(got.data() + i * nv_, nv_), out[i - 9]) << "step " << i - 9;
        const double err = max_row_error(got, logits(b.get()), nv_);
        EXPECT_LT(err, 5.2);  // measured 3.95 of the logit spread over the 709 rows
        EXPECT_GT(err, 2.8);
    }
    // A follow-up turn that continues the whole history computes only its
    // new tokens; one that diverges early cannot crop the ring back there
    // and recomputes all but the sinks.
    std::vector<int32_t> turn(stream_.begin(), stream_.begin() + 10);
    turn.insert(turn.end(), out.begin(), out.end());
    turn.insert(turn.end(), {5, 6, 7});
    gp.max_new_tokens = 4;
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), turn.data(), static_cast<int32_t>(turn.size()), &gp, out.data(), 4,
                           &r),
              EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(r.n_prompt_reused, 10 + 699);
    std::vector<int32_t> early(stream_.begin(), stream_.begin() + 20);
    early.insert(early.end(), {9, 9, 9});
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), early.data(), 23, &gp, out.data(), 4, &r), EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(r.n_prompt_reused, s.sinks);
    EXPECT_EQ(stats_of(c.get()).seq_len, 23 + 3);
    // Within the sinks nothing was dropped: a prompt diverging at token 2 reuses 2.
    const int32_t in_sinks[] = {stream_[0], stream_[1], 9, 9, 9};
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), in_sinks, 5, &gp, out.data(), 4, &r), EKV_OK) << ekv_last_error();
    EXPECT_EQ(r.n_prompt_reused, 2);
}

}  // namespace
