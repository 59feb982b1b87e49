// The encoder_decoder cache on its own: a self-attention KvCache of any
// generic configuration plus the cross-attention KV, through create, the
// cross protocol, crop/reset/clone/stats and save/load (white-box, CPU).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "cache/cache.h"
#include "core/fp16.h"

namespace {

using namespace ekv;

CacheShape whisper_like_shape() {
    CacheShape s;
    s.n_layers = 2;
    s.n_kv_heads = 2;
    s.head_dim = 16;
    s.context_length = 64;
    s.max_chunk = 16;
    s.model_fingerprint = 0x1234;
    s.cross_len = 40;
    return s;
}

struct Rows {
    std::vector<float> data;
    Tensor t;
    Rows(int64_t rows, int64_t cols, float seed) : data(static_cast<size_t>(rows * cols)) {
        for (size_t i = 0; i < data.size(); ++i) data[i] = seed + 0.001f * static_cast<float>(i % 997);
        t.type = DType::F32;
        t.rows = rows;
        t.cols = cols;
        t.row_bytes = static_cast<size_t>(cols) * 4;
        t.data = data.data();
    }
};

class WhisperCache : public ::testing::Test {
protected:
    void SetUp() override {
        BackendOptions o;
        o.n_threads = 1;
        ASSERT_TRUE(create_backend(EKV_BACKEND_CPU, o, &be_).ok());
    }
    std::unique_ptr<Cache> make(ekv_cache_type type, ekv_kv_dtype dtype = EKV_KV_F32, const CacheShape& shape = whisper_like_shape()) {
        ekv_cache_params p = ekv_cache_default_params();
        p.dtype = dtype;
        p.window_length = 8;
        p.q_group_size = 16;
        p.residual_length = 16;
        CacheConfig cc;
        Status st = resolve_cache_config(p, type, shape, *be_, &cc);
        EXPECT_TRUE(st.ok()) << st.message();
        std::unique_ptr<Cache> c;
        st = create_cache(cc, shape, *be_, &c);
        EXPECT_TRUE(st.ok()) << st.message();
        return c;
    }
    // Writes `positions` cross rows (layer-dependent values) and commits them.
    void encode(Cache& c, int32_t positions) {
        ASSERT_TRUE(c.prepare_cross(positions).ok());
        for (int32_t l = 0; l < 2; ++l) {
            Rows k(positions, 32, 1.0f + l), v(positions, 32, -1.0f - l);
            c.store_cross(*be_, l, k.t, v.t);
        }
        c.commit_cross(positions);
    }
    void decode(Cache& c, const std::vector<int32_t>& ids) {
        const int32_t n = static_cast<int32_t>(ids.size());
        ASSERT_TRUE(c.prepare(n).ok());
        for (int32_t l = 0; l < 2; ++l) {
            Rows k(n, 32, 0.5f * (c.seq_len() + 1)), v(n, 32, 0.25f);
            c.store(*be_, l, k.t, v.t);
        }
        c.commit(ids.data(), n);
    }
    static float cross_value(const KvView& v, bool values, int64_t row, int64_t col) {
        const Tensor& t = values ? v.seg[0].v : v.seg[0].k;
        return t.type == DType::F32 ? t.ptr<float>(row)[col] : f16_to_f32(t.ptr<uint16_t>(row)[col]);
    }
    std::unique_ptr<Backend> be_;
};

TEST_F(WhisperCache, EveryGenericTypeWrapsTheCrossKv) {
    for (ekv_cache_type type : {EKV_CACHE_ENCODER_DECODER, EKV_CACHE_DYNAMIC, EKV_CACHE_STATIC, EKV_CACHE_QUANTIZED,
                                EKV_CACHE_SLIDING_WINDOW, EKV_CACHE_SINK, EKV_CACHE_OFFLOADED}) {
        std::unique_ptr<Cache> c = make(type);
        ASSERT_TRUE(c) << ekv_cache_type_name(type);
        EXPECT_EQ(c->type(), type);
        EXPECT_EQ(c->cross_len(), 0);
        EXPECT_EQ(c->cross_view(0).n_segments, 0);
        encode(*c, 40);
        EXPECT_EQ(c->cross_len(), 40) << ekv_cache_type_name(type);
        decode(*c, {1, 2, 3});
        EXPECT_EQ(c->seq_len(), 3);
        const KvView v = c->cross_view(1);
        ASSERT_EQ(v.n_segments, 1);
        EXPECT_EQ(v.seg[0].n_tokens, 40);
        EXPECT_EQ(v.seg[0].first_pos, 0);
        EXPECT_FALSE(v.seg[0].pinned);
        EXPECT_FLOAT_EQ(cross_value(v, false, 0, 0), 2.0f);
        EXPECT_FLOAT_EQ(cross_value(v, true, 0, 0), -2.0f);
    }
}

TEST_F(WhisperCache, F16CrossKvRoundsLikeTheSelfAttention) {
    std::unique_ptr<Cache> c = make(EKV_CACHE_ENCODER_DECODER, EKV_KV_F16);
    encode(*c, 10);
    const KvView v = c->cross_view(0);
    ASSERT_EQ(v.seg[0].k.type, DType::F16);
    EXPECT_NEAR(cross_value(v, false, 3, 5), 1.0f + 0.001f * (3 * 32 + 5), 1e-3);
}

TEST_F(WhisperCache, RefusesWithoutAnEncoderAndOutOfRangeInputs) {
    CacheShape decoder_only = whisper_like_shape();
    decoder_only.cross_len = 0;
    ekv_cache_params p = ekv_cache_default_params();
    CacheConfig cc;
    ASSERT_TRUE(resolve_cache_config(p, EKV_CACHE_ENCODER_DECODER, decoder_only, *be_, &cc).ok());
    std::unique_ptr<Cache> c;
    EXPECT_EQ(create_cache(cc, decoder_only, *be_, &c).code(), EKV_ERR_UNSUPPORTED);
    // A decoder-only cache has no cross-attention.
    ASSERT_TRUE(resolve_cache_config(p, EKV_CACHE_DYNAMIC, decoder_only, *be_, &cc).ok());
    ASSERT_TRUE(create_cache(cc, decoder_only, *be_, &c).ok());
    EXPECT_EQ(c->prepare_cross(10).code(), EKV_ERR_INVALID_STATE);

    std::unique_ptr<Cache> ed = make(EKV_CACHE_ENCODER_DECODER);
    EXPECT_EQ(ed->prepare_cross(41).code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ed->prepare_cross(0).code(), EKV_ERR_INVALID_ARGUMENT);
}

TEST_F(WhisperCache, NewInputResetsTheDecoderAndResetClearsBoth) {
    std::unique_ptr<Cache> c = make(EKV_CACHE_ENCODER_DECODER);
    encode(*c, 40);
    decode(*c, {5, 6, 7, 8});
    ASSERT_TRUE(c->crop(2).ok());
    EXPECT_EQ(c->seq_len(), 2);
    EXPECT_EQ(c->tokens().kept(), (std::vector<int32_t>{5, 6}));
    EXPECT_EQ(c->cross_len(), 40);  // crop keeps the input
    encode(*c, 20);                 // a new input: the decoder starts over
    EXPECT_EQ(c->seq_len(), 0);
    EXPECT_TRUE(c->tokens().kept().empty());
    EXPECT_EQ(c->cross_len(), 20);
    decode(*c, {1});
    c->reset();
    EXPECT_EQ(c->seq_len(), 0);
    EXPECT_EQ(c->cross_len(), 0);
    EXPECT_EQ(c->cross_view(0).n_segments, 0);
}

TEST_F(WhisperCache, StatsCountTheCrossKv) {
    std::unique_ptr<Cache> c = make(EKV_CACHE_ENCODER_DECODER);
    const CacheStats before = c->stats();
    encode(*c, 40);
    const CacheStats after = c->stats();
    const uint64_t cross = 2ull /*layers*/ * 2 /*K,V*/ * 40 * 32 * 4;
    EXPECT_EQ(after.device_bytes, before.device_bytes + cross);
    EXPECT_EQ(after.used_bytes, before.used_bytes + cross);
    EXPECT_EQ(after.bytes_per_token, before.bytes_per_token);  // the cross KV does not grow with tokens
}

TEST_F(WhisperCache, CloneAndSaveLoadKeepBothParts) {
    for (ekv_cache_type type : {EKV_CACHE_ENCODER_DECODER, EKV_CACHE_STATIC, EKV_CACHE_QUANTIZED}) {
        std::unique_ptr<Cache> c = make(type, EKV_KV_F16);
        encode(*c, 33);
        decode(*c, {4, 5, 6});
        std::unique_ptr<Cache> copy;
        ASSERT_TRUE(c->clone(*be_, &copy).ok());
        const std::string path = ::testing::TempDir() + "whisper_cache.ekv";
        ASSERT_TRUE(c->save(path).ok());
        std::unique_ptr<Cache> loaded;
        const Status st = load_cache(path, whisper_like_shape(), *be_, &loaded);
        ASSERT_TRUE(st.ok()) << st.message();
        for (Cache* other : {copy.get(), loaded.get()}) {
            EXPECT_EQ(other->type(), type);
            EXPECT_EQ(other->seq_len(), 3);
            EXPECT_EQ(other->tokens().kept(), c->tokens().kept());
            ASSERT_EQ(other->cross_len(), 33);
            for (int32_t l = 0; l < 2; ++l) {
                const KvView a = c->cross_view(l), b = other->cross_view(l);
                EXPECT_EQ(std::memcmp(a.seg[0].k.data, b.seg[0].k.data, 33 * a.seg[0].k.row_bytes), 0);
                EXPECT_EQ(std::memcmp(a.seg[0].v.data, b.seg[0].v.data, 33 * a.seg[0].v.row_bytes), 0);
            }
            EXPECT_EQ(other->stats().used_bytes, c->stats().used_bytes);
        }
        // The copies are independent: a new input in the original changes neither.
        encode(*c, 5);
        EXPECT_EQ(copy->cross_len(), 33);
        EXPECT_EQ(copy->seq_len(), 3);

        // A model without an encoder refuses the file; a flipped byte fails the checksum.
        CacheShape decoder_only = whisper_like_shape();
        decoder_only.cross_len = 0;
        EXPECT_EQ(load_cache(path, decoder_only, *be_, &loaded).code(), EKV_ERR_MODEL_MISMATCH);
        FILE* f = std::fopen(path.c_str(), "r+b");
        ASSERT_TRUE(f);
        std::fseek(f, -20, SEEK_END);
        const int byte = std::fgetc(f);
        std::fseek(f, -20, SEEK_END);
        std::fputc(byte ^ 0x5A, f);
        std::fclose(f);
        EXPECT_EQ(load_cache(path, whisper_like_shape(), *be_, &loaded).code(), EKV_ERR_INVALID_FILE);
        std::remove(path.c_str());
    }
}

TEST_F(WhisperCache, SavesBeforeAnyInput) {
    std::unique_ptr<Cache> c = make(EKV_CACHE_ENCODER_DECODER);
    const std::string path = ::testing::TempDir() + "whisper_empty.ekv";
    ASSERT_TRUE(c->save(path).ok());
    std::unique_ptr<Cache> loaded;
    ASSERT_TRUE(load_cache(path, whisper_like_shape(), *be_, &loaded).ok());
    EXPECT_EQ(loaded->cross_len(), 0);
    EXPECT_EQ(loaded->seq_len(), 0);
    std::remove(path.c_str());
}

}  // namespace
