// Model fidelity on the tiny random Jamba (tools/gen_tiny_jamba.py: Mamba and
// attention layers, dense and MoE FFNs): edgekv's logits against HF
// transformers' JambaForCausalLM over a single prefill, token-by-token decode
// and chunked prefills, greedy tokens identical; the `hybrid_mamba` cache's
// operations, files and KV choices; the refusal of every other cache type and
// of Jamba GGUF files with wrong tensors.
#include <cmath>
#include <functional>

#include "model/cache_family_util.h"
#include "model/test_util.h"
#include "unit/alloc_counter.h"
#include "unit/gguf_test_writer.h"

using namespace ekv_test;

namespace {

// Normalized max error per logits row with an f32 KV: HF and a NumPy forward
// over the GGUF file agree within ~4e-5 absolute on logits of std ~4.5.
constexpr double kTolerance = 1e-4;
// An f16 KV rounds the attention layers' keys and values.
constexpr double kF16KvTolerance = 1e-2;
constexpr double kChunkTolerance = 1e-5;

class TinyJamba : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string dir = fixtures_dir() + "/tiny_jamba";
        ASSERT_TRUE(load_reference(dir, "ref_f32.json", &ref_)) << "missing reference in " << dir;
        model_ = load_model(dir + "/tiny_jamba_f32.gguf");
        ASSERT_TRUE(model_);
        ASSERT_EQ(n_vocab(model_.get()), ref_.n_vocab);
        seq_ = ref_.input_ids;
        seq_.insert(seq_.end(), ref_.greedy.begin(), ref_.greedy.end() - 1);
        ASSERT_EQ(seq_.size(), ref_.positions.size());
        nv_ = static_cast<size_t>(ref_.n_vocab);
    }
    CachePtr cache(ekv_kv_dtype dtype = EKV_KV_F32, ekv_placement offload = EKV_PLACEMENT_DEVICE,
                   int32_t max_len = 0) {
        ekv_cache_params p = ekv_cache_default_params();
        p.type = EKV_CACHE_HYBRID_MAMBA;
        p.dtype = dtype;
        p.offload = offload;
        p.max_cache_len = max_len;
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_OK) << ekv_last_error();
        return CachePtr(c);
    }
    std::vector<float> forward(ekv_cache* c, size_t first, size_t n, bool all = false) {
        std::vector<float> logits((all ? n : 1) * nv_);
        EXPECT_EQ(ekv_forward(model_.get(), c, seq_.data() + first, static_cast<int32_t>(n), nullptr,
                              all ? EKV_LOGITS_ALL : EKV_LOGITS_LAST, logits.data(), logits.size()),
                  EKV_OK)
            << ekv_last_error();
        return logits;
    }
    void expect_row(const float* got, size_t ref_row, const char* what, double tolerance = kTolerance) {
        const double err = normalized_max_error(got, ref_.row(ref_row), ref_.n_vocab);
        max_err_ = std::max(max_err_, err);
        EXPECT_LT(err, tolerance) << what << " position " << ref_row;
        EXPECT_EQ(argmax(got, ref_.n_vocab), argmax(ref_.row(ref_row), ref_.n_vocab)) << what << " position " << ref_row;
    }
    size_t n_prompt() const { return ref_.input_ids.size(); }

    Reference ref_;
    ModelPtr model_;
    std::vector<int32_t> seq_;
    size_t nv_ = 0;
    double max_err_ = 0;
};

TEST_F(TinyJamba, ModelInfoAndAutoCache) {
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(model_.get(), &info), EKV_OK);
    EXPECT_STREQ(info.architecture, "jamba");
    EXPECT_EQ(info.n_layers, 5);
    EXPECT_EQ(info.natural_cache, EKV_CACHE_HYBRID_MAMBA);
    CachePtr c = make_cache(model_.get(), EKV_CACHE_AUTO);
    ASSERT_TRUE(c);
    ekv_cache_type type = EKV_CACHE_DYNAMIC;
    ASSERT_EQ(ekv_cache_get_type(c.get(), &type), EKV_OK);
    EXPECT_EQ(type, EKV_CACHE_HYBRID_MAMBA);
}

TEST_F(TinyJamba, SinglePassLogitsMatchHF) {
    CachePtr c = cache();
    const std::vector<float> logits = forward(c.get(), 0, seq_.size(), true);
    for (size_t i = 0; i < seq_.size(); ++i) expect_row(logits.data() + i * nv_, i, "single pass");
    std::printf("[ tiny jamba ] single pass: max normalized logit error %.2e over %zu rows\n", max_err_, seq_.size());
}

TEST_F(TinyJamba, TokenByTokenDecodeMatchesHF) {
    CachePtr c = cache();
    expect_row(forward(c.get(), 0, n_prompt()).data(), n_prompt() - 1, "prefill");
    for (size_t i = n_prompt(); i < seq_.size(); ++i) expect_row(forward(c.get(), i, 1).data(), i, "decode");
    std::printf("[ tiny jamba ] decode: max normalized logit error %.2e\n", max_err_);
}

TEST_F(TinyJamba, F16KvAndHostOffloadStayClose) {
    for (ekv_placement offload : {EKV_PLACEMENT_DEVICE, EKV_PLACEMENT_HOST}) {
        CachePtr c = cache(EKV_KV_F16, offload);
        const std::vector<float> logits = forward(c.get(), 0, seq_.size(), true);
        for (size_t i = 0; i < seq_.size(); ++i) expect_row(logits.data() + i * nv_, i, "f16 kv", kF16KvTolerance);
    }
}

TEST_F(TinyJamba, ChunkedPrefillEqualsSinglePass) {
    CachePtr one = cache();
    const std::vector<float> single = forward(one.get(), 0, n_prompt(), true);
    const std::vector<std::vector<size_t>> splits = {{5, 7}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {3, 4, 5}};
    for (const std::vector<size_t>& split : splits) {
        CachePtr c = cache();
        size_t done = 0;
        for (size_t n : split) {
            const std::vector<float> got = forward(c.get(), done, n, true);
            for (size_t i = 0; i < n; ++i) {
                expect_row(got.data() + i * nv_, done + i, "chunked");
                EXPECT_LT(normalized_max_error(got.data() + i * nv_, single.data() + (done + i) * nv_, ref_.n_vocab),
                          kChunkTolerance)
                    << "chunk of " << n << " at " << done;
            }
            done += n;
        }
    }
}

TEST_F(TinyJamba, LongForwardCrossesInternalChunks) {
    std::vector<int32_t> long_seq;
    for (int i = 0; i < 300; ++i) long_seq.push_back((i * 37 + 11) % ref_.n_vocab);
    CachePtr a = cache(), b = cache();
    std::vector<float> all(long_seq.size() * nv_), one(nv_);
    ASSERT_EQ(ekv_forward(model_.get(), a.get(), long_seq.data(), static_cast<int32_t>(long_seq.size()), nullptr,
                          EKV_LOGITS_ALL, all.data(), all.size()),
              EKV_OK)
        << ekv_last_error();
    for (size_t i = 0; i < long_seq.size(); ++i) {
        ASSERT_EQ(ekv_forward(model_.get(), b.get(), &long_seq[i], 1, nullptr, EKV_LOGITS_LAST, one.data(), one.size()),
                  EKV_OK);
        ASSERT_LT(normalized_max_error(one.data(), all.data() + i * nv_, ref_.n_vocab), kChunkTolerance) << i;
    }
}

TEST_F(TinyJamba, GreedyGenerationEqualsHF) {
    CachePtr c = cache();
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = static_cast<int32_t>(ref_.greedy.size());
    gp.stop_at_eos = 0;
    std::vector<int32_t> out(ref_.greedy.size());
    ekv_generate_result r = ekv_generate_default_result();
    ASSERT_EQ(ekv_generate(model_.get(), c.get(), ref_.input_ids.data(), static_cast<int32_t>(n_prompt()), &gp,
                           out.data(), static_cast<int32_t>(out.size()), &r),
              EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(out, ref_.greedy);
}

TEST_F(TinyJamba, CropIsRefusedCloneAndResetWork) {
    CachePtr c = cache();
    forward(c.get(), 0, n_prompt());
    EXPECT_EQ(ekv_cache_crop(c.get(), 4), EKV_ERR_INVALID_STATE);
    EXPECT_NE(std::string(ekv_last_error()).find("cannot be rewound"), std::string::npos) << ekv_last_error();
    EXPECT_EQ(ekv_cache_crop(c.get(), static_cast<int32_t>(n_prompt())), EKV_OK);
    ekv_cache* raw = nullptr;
    ASSERT_EQ(ekv_cache_clone(c.get(), &raw), EKV_OK) << ekv_last_error();
    CachePtr copy(raw);
    for (size_t i = n_prompt(); i < seq_.size(); ++i) {
        const std::vector<float> a = forward(c.get(), i, 1), b = forward(copy.get(), i, 1);
        EXPECT_EQ(a, b) << "position " << i;
        expect_row(b.data(), i, "clone");
    }
    ASSERT_EQ(ekv_cache_reset(c.get()), EKV_OK);
    const std::vector<float> again = forward(c.get(), 0, n_prompt(), true);
    for (size_t i = 0; i < n_prompt(); ++i) expect_row(again.data() + i * nv_, i, "after reset");
}

TEST_F(TinyJamba, StatsCountKvAndState) {
    CachePtr c = cache();
    forward(c.get(), 0, n_prompt());
    const ekv_cache_stats s = stats_of(c.get());
    // Two attention layers x (K + V) x 1 KV head x 16 dims x f32.
    EXPECT_EQ(s.bytes_per_token, 2u * 2 * 16 * 4);
    EXPECT_EQ(s.seq_len, static_cast<int32_t>(n_prompt()));
    EXPECT_EQ(s.tokens_held, s.seq_len);
    // Three Mamba layers' double-buffered states: (3 x 64 + 64 x 8) floats each.
    EXPECT_GE(s.device_bytes, 2u * 3 * (3 * 64 + 64 * 8) * 4 + s.bytes_per_token * n_prompt());
}

TEST_F(TinyJamba, MaxCacheLenBoundsTheSequence) {
    CachePtr c = cache(EKV_KV_F32, EKV_PLACEMENT_DEVICE, 14);
    forward(c.get(), 0, 12);
    std::vector<float> logits(nv_);
    EXPECT_EQ(ekv_forward(model_.get(), c.get(), seq_.data() + 12, 3, nullptr, EKV_LOGITS_LAST, logits.data(),
                          logits.size()),
              EKV_ERR_CACHE_FULL);
    expect_row(forward(c.get(), 12, 2).data(), 13, "within max_cache_len after a refusal");
}

TEST_F(TinyJamba, SaveLoadContinuesAndBadFilesAreRefused) {
    TempDir dir;
    const std::string path = dir.file("jamba.ekv"), bad = dir.file("bad.ekv");
    for (ekv_kv_dtype dtype : {EKV_KV_F32, EKV_KV_F16}) {
        CachePtr c = cache(dtype);
        forward(c.get(), 0, 20);
        ASSERT_EQ(ekv_cache_save(c.get(), path.c_str()), EKV_OK) << ekv_last_error();
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_load(model_.get(), path.c_str(), &raw), EKV_OK) << ekv_last_error();
        CachePtr loaded(raw);
        EXPECT_EQ(stats_of(loaded.get()).seq_len, 20);
        for (size_t i = 20; i < seq_.size(); ++i) ASSERT_EQ(forward(loaded.get(), i, 1), forward(c.get(), i, 1)) << i;
    }
    const std::vector<uint8_t> bytes = read_bytes(path);
    for (size_t cut : {size_t{20}, size_t{40}, bytes.size() / 3, bytes.size() - 30, bytes.size() - 1}) {
        write_bytes(bad, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
        ekv_cache* raw = nullptr;
        EXPECT_EQ(ekv_cache_load(model_.get(), bad.c_str(), &raw), EKV_ERR_INVALID_FILE) << cut;
        EXPECT_EQ(raw, nullptr);
    }
    std::vector<uint8_t> flipped = bytes;
    flipped[bytes.size() / 2] ^= 1;
    write_bytes(bad, flipped);
    ekv_cache* raw = nullptr;
    EXPECT_EQ(ekv_cache_load(model_.get(), bad.c_str(), &raw), EKV_ERR_INVALID_FILE);
    // A mamba model's cache file is another model's.
    ModelPtr mamba = load_model(fixtures_dir() + "/tiny_mamba/tiny_mamba_f32.gguf");
    CachePtr mc = make_cache(mamba.get(), EKV_CACHE_MAMBA);
    ASSERT_EQ(ekv_cache_save(mc.get(), bad.c_str()), EKV_OK);
    EXPECT_EQ(ekv_cache_load(model_.get(), bad.c_str(), &raw), EKV_ERR_MODEL_MISMATCH);
}

TEST_F(TinyJamba, OtherCacheTypesAreRefusedWithTheReason) {
    const ekv_cache_type others[] = {EKV_CACHE_DYNAMIC,      EKV_CACHE_STATIC, EKV_CACHE_OFFLOADED,
                                     EKV_CACHE_OFFLOADED_STATIC, EKV_CACHE_QUANTIZED, EKV_CACHE_SLIDING_WINDOW,
                                     EKV_CACHE_SINK,         EKV_CACHE_HYBRID, EKV_CACHE_ENCODER_DECODER,
                                     EKV_CACHE_MAMBA};
    for (ekv_cache_type t : others) {
        ekv_cache_params p = ekv_cache_default_params();
        p.type = t;
        p.window_length = 8;
        ekv_cache* c = nullptr;
        EXPECT_EQ(ekv_cache_create(model_.get(), &p, &c), EKV_ERR_UNSUPPORTED) << ekv_cache_type_name(t);
        EXPECT_EQ(c, nullptr);
        const std::string msg = ekv_last_error();
        EXPECT_NE(msg.find(std::string("'") + ekv_cache_type_name(t) + "'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("'hybrid_mamba'"), std::string::npos) << msg;
    }
}

TEST_F(TinyJamba, DecodeDoesNotAllocate) {
    CachePtr c = cache();
    forward(c.get(), 0, n_prompt() + 2);  // prefill and warm-up
    std::vector<float> logits(nv_);
    AllocationCount count;
    for (size_t i = n_prompt() + 2; i < seq_.size(); ++i)
        ASSERT_EQ(ekv_forward(model_.get(), c.get(), &seq_[i], 1, nullptr, EKV_LOGITS_LAST, logits.data(),
                              logits.size()),
                  EKV_OK);
    EXPECT_EQ(count.stop(), 0);
    expect_row(logits.data(), seq_.size() - 1, "decode");
}

// ---------------------------------------------------------------------------
// GGUF files: a two-layer Jamba (Mamba + dense FFN, attention + MoE).
// ---------------------------------------------------------------------------

constexpr uint32_t kTensorF32 = 0;  // GGML type id
constexpr uint64_t kEmbd = 16, kFf = 24, kInner = 32, kState = 4, kConv = 4, kDtRank = 1, kVocab = 10, kExperts = 3;

std::vector<uint8_t> values(size_t n, float scale, uint32_t seed) {
    std::vector<uint8_t> b(n * 4);
    uint32_t s = seed * 2654435761u + 7;
    for (size_t i = 0; i < n; ++i) {
        s = s * 1664525u + 1013904223u;
        const float v = scale * (static_cast<float>(s >> 8) / 16777216.0f - 0.5f);
        std::memcpy(&b[i * 4], &v, 4);
    }
    return b;
}

std::string write_jamba(const std::string& name, const std::function<void(GgufWriter&)>& tweak,
                        std::vector<uint32_t> kv_heads = {0, 2}) {
    GgufWriter w;
    w.add_string("general.architecture", "jamba");
    w.add_u32("jamba.block_count", 2);
    w.add_u32("jamba.context_length", 128);
    w.add_u32("jamba.embedding_length", kEmbd);
    w.add_u32("jamba.feed_forward_length", kFf);
    w.add_u32("jamba.attention.head_count", 2);
    w.add_array("jamba.attention.head_count_kv", kU32, kv_heads);
    w.add_u32("jamba.ssm.conv_kernel", kConv);
    w.add_u32("jamba.ssm.inner_size", kInner);
    w.add_u32("jamba.ssm.state_size", kState);
    w.add_u32("jamba.ssm.time_step_rank", kDtRank);
    w.add_u32("jamba.expert_count", kExperts);
    w.add_u32("jamba.expert_used_count", 2);
    w.add_f32("jamba.attention.layer_norm_rms_epsilon", 1e-6f);
    uint32_t seed = 0;
    auto add = [&](const std::string& n, std::vector<uint64_t> dims, float scale) {
        uint64_t count = 1;
        for (uint64_t d : dims) count *= d;
        w.add_tensor(n, dims, kTensorF32, values(count, scale, ++seed));
    };
    add("token_embd.weight", {kEmbd, kVocab}, 2.0f);
    add("output_norm.weight", {kEmbd}, 0.2f);
    for (const char* p : {"blk.0.", "blk.1."}) {
        add(std::string(p) + "attn_norm.weight", {kEmbd}, 0.2f);
        add(std::string(p) + "ffn_norm.weight", {kEmbd}, 0.2f);
    }
    const std::string m = "blk.0.";
    add(m + "ssm_in.weight", {kEmbd, 2 * kInner}, 0.5f);
    add(m + "ssm_conv1d.weight", {kConv, kInner}, 0.5f);
    add(m + "ssm_conv1d.bias", {kInner}, 0.2f);
    add(m + "ssm_x.weight", {kInner, kDtRank + 2 * kState}, 0.5f);
    add(m + "ssm_dt.weight", {kDtRank, kInner}, 0.5f);
    add(m + "ssm_dt.bias", {kInner}, 0.5f);
    add(m + "ssm_dt_norm.weight", {kDtRank}, 0.2f);
    add(m + "ssm_a", {kState, kInner}, -1.0f);  // negative-ish: only finiteness matters here
    add(m + "ssm_b_norm.weight", {kState}, 0.2f);
    add(m + "ssm_c_norm.weight", {kState}, 0.2f);
    add(m + "ssm_d", {kInner}, 1.0f);
    add(m + "ssm_out.weight", {kInner, kEmbd}, 0.5f);
    add(m + "ffn_gate.weight", {kEmbd, kFf}, 0.5f);
    add(m + "ffn_up.weight", {kEmbd, kFf}, 0.5f);
    add(m + "ffn_down.weight", {kFf, kEmbd}, 0.5f);
    const std::string a = "blk.1.";
    add(a + "attn_q.weight", {kEmbd, kEmbd}, 0.5f);
    add(a + "attn_k.weight", {kEmbd, kEmbd}, 0.5f);
    add(a + "attn_v.weight", {kEmbd, kEmbd}, 0.5f);
    add(a + "attn_output.weight", {kEmbd, kEmbd}, 0.5f);
    add(a + "ffn_gate_inp.weight", {kEmbd, kExperts}, 1.0f);
    add(a + "ffn_gate_exps.weight", {kEmbd, kFf, kExperts}, 0.5f);
    add(a + "ffn_up_exps.weight", {kEmbd, kFf, kExperts}, 0.5f);
    add(a + "ffn_down_exps.weight", {kFf, kEmbd, kExperts}, 0.5f);
    tweak(w);
    const std::string path = ::testing::TempDir() + "ekv_jamba_" + name + ".gguf";
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
    ekv_model_free(m);
    std::remove(path.c_str());
    return st;
}

void set_dims(GgufWriter& w, const std::string& name, std::vector<uint64_t> dims) {
    for (GgufWriter::Tensor& t : w.tensors) {
        if (t.name != name) continue;
        uint64_t count = 1;
        for (uint64_t d : dims) count *= d;
        t.dims = std::move(dims);
        t.data = values(count, 0.1f, 5);
        return;
    }
    ADD_FAILURE() << "no tensor " << name;
}

TEST(JambaGguf, TheValidBaselineLoadsAndRuns) {
    const std::string path = write_jamba("valid", [](GgufWriter&) {});
    ModelPtr m = load_model(path, 1);
    ASSERT_TRUE(m);
    CachePtr c = make_cache(m.get(), EKV_CACHE_AUTO);
    ASSERT_TRUE(c);
    std::vector<int32_t> ids = {1, 5, 7, 9, 0, 3};
    std::vector<float> logits(kVocab);
    ASSERT_EQ(ekv_forward(m.get(), c.get(), ids.data(), 6, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()),
              EKV_OK)
        << ekv_last_error();
    for (float v : logits) EXPECT_TRUE(std::isfinite(v));
    std::remove(path.c_str());
}

TEST(JambaGguf, WrongTensorsAndLayoutsAreRefused) {
    struct Case {
        const char* tensor;
        std::vector<uint64_t> dims;
    };
    const Case cases[] = {
        {"blk.0.ssm_b_norm.weight", {kState + 1}},
        {"blk.0.ssm_dt_norm.weight", {kDtRank + 1}},
        {"blk.0.ssm_a", {kInner, kState}},
        {"blk.1.ffn_gate_exps.weight", {kEmbd, kFf, kExperts + 1}},
        {"blk.1.ffn_down_exps.weight", {kEmbd, kFf, kExperts}},
        {"blk.1.ffn_gate_inp.weight", {kEmbd, kExperts - 1}},
        {"blk.1.attn_k.weight", {kEmbd, kEmbd / 2}},
    };
    std::string msg;
    for (const Case& c : cases) {
        const std::string path = write_jamba("shape", [&](GgufWriter& w) { set_dims(w, c.tensor, c.dims); });
        EXPECT_EQ(try_load_model(path, &msg), EKV_ERR_INVALID_FILE) << c.tensor;
        EXPECT_NE(msg.find(std::string(c.tensor) + " has shape"), std::string::npos) << msg;
    }
    // One head count per layer, all attention layers sharing one.
    EXPECT_EQ(try_load_model(write_jamba("kv3", [](GgufWriter&) {}, {0, 2, 2}), &msg), EKV_ERR_INVALID_FILE);
    EXPECT_NE(msg.find("head_count_kv"), std::string::npos) << msg;
    EXPECT_EQ(try_load_model(write_jamba("kv_odd", [](GgufWriter&) {}, {0, 3}), &msg), EKV_ERR_UNSUPPORTED);
    EXPECT_NE(msg.find("head_count_kv[1]"), std::string::npos) << msg;
}

}  // namespace
