// Hugging Face directory reader: config translation, tensor naming, ne order,
// the q/k RoPE row permutation, and hostile safetensors files.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "model/model_file.h"

namespace {

namespace fs = std::filesystem;

struct StTensor {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
};

// Row r, column c of a 2-D tensor holds the value r * 1000 + c, in the
// tensor's dtype's raw bits, so rows can be identified after permutation.
std::vector<uint8_t> rows_pattern(const std::string& dtype, int64_t rows, int64_t cols) {
    std::vector<uint8_t> out;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            const uint32_t v = static_cast<uint32_t>(r * 1000 + c);
            if (dtype == "F32") {
                const float f = static_cast<float>(v);
                uint8_t b[4];
                std::memcpy(b, &f, 4);
                out.insert(out.end(), b, b + 4);
            } else {  // 2-byte dtypes: the raw 16-bit pattern is enough
                out.push_back(static_cast<uint8_t>(v & 0xff));
                out.push_back(static_cast<uint8_t>(v >> 8));
            }
        }
    }
    return out;
}

StTensor matrix(const std::string& name, const std::string& dtype, int64_t rows, int64_t cols) {
    return StTensor{name, dtype, {rows, cols}, rows_pattern(dtype, rows, cols)};
}

std::vector<uint8_t> le64(uint64_t n) {
    std::vector<uint8_t> out;
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
    return out;
}

std::vector<uint8_t> safetensors_bytes(const std::vector<StTensor>& tensors) {
    std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
    size_t offset = 0;
    for (const StTensor& t : tensors) {
        header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
        for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
        header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.data.size()) + "]}";
        offset += t.data.size();
    }
    header += "}";
    while (header.size() % 8 != 0) header += ' ';
    std::vector<uint8_t> out = le64(header.size());
    out.insert(out.end(), header.begin(), header.end());
    for (const StTensor& t : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
    return out;
}

// Header text given verbatim, followed by `data_bytes` zero bytes.
std::vector<uint8_t> raw_safetensors(const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
    std::vector<uint8_t> out = le64(claimed_len ? claimed_len : header.size());
    out.insert(out.end(), header.begin(), header.end());
    out.resize(out.size() + data_bytes, 0);
    return out;
}

class HfDirectory : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "ekv_hf_XXXXXX").string();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    void write(const std::string& name, const std::string& text) {
        write(name, std::vector<uint8_t>(text.begin(), text.end()));
    }
    void write(const std::string& name, const std::vector<uint8_t>& bytes) {
        FILE* f = std::fopen((dir_ + "/" + name).c_str(), "wb");
        ASSERT_NE(f, nullptr);
        ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
        std::fclose(f);
    }
    ekv::Status load(ekv::ModelFile* mf) { return ekv::load_hf_directory(dir_, mf); }
    void expect_error(ekv_status code, const std::string& fragment) {
        ekv::ModelFile mf;
        ekv::Status st = load(&mf);
        EXPECT_EQ(st.code(), code) << st.message();
        EXPECT_NE(st.message().find(fragment), std::string::npos)
            << "message \"" << st.message() << "\" lacks \"" << fragment << "\"";
    }
    std::string dir_;
};

// Llama-style config in the transformers 4.x dialect: 2 heads of dim 4,
// 1 kv head, llama3 rope scaling, eos as a list, tied embeddings.
const char* kConfig4x = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
  "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 6,
  "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
  "bos_token_id": 1, "eos_token_id": [5, 3], "tie_word_embeddings": true
})";

std::vector<StTensor> tiny_tensors() {
    return {
        matrix("model.embed_tokens.weight", "F32", 6, 8),
        matrix("model.layers.0.self_attn.q_proj.weight", "F32", 8, 8),
        matrix("model.layers.0.self_attn.k_proj.weight", "F16", 4, 8),
        matrix("model.layers.0.self_attn.v_proj.weight", "BF16", 4, 8),
        matrix("model.layers.0.mlp.gate_proj.weight", "F32", 16, 8),
        StTensor{"model.norm.weight", "F32", {8}, rows_pattern("F32", 1, 8)},
        StTensor{"model.rotary_emb.inv_freq", "I64", {2}, std::vector<uint8_t>(16, 0)},
        StTensor{"model.layers.0.self_attn.q_proj.extra", "U8", {3}, {1, 2, 3}},
    };
}

// The value stored at (row, col) by rows_pattern, read back in `type`.
uint32_t cell(const ekv::TensorRef& t, int64_t row, int64_t col) {
    if (t.type == ekv::DType::F32) {
        float f;
        std::memcpy(&f, t.data + (row * t.ne[0] + col) * 4, 4);
        return static_cast<uint32_t>(f);
    }
    uint16_t v;
    std::memcpy(&v, t.data + (row * t.ne[0] + col) * 2, 2);
    return v;
}

// llama.cpp's permute(): reshape(n_head, 2, hd/2, cols).swapaxes(1, 2), i.e.
// GGUF row (h, i, s) = HF row (h, s, i) for i < hd/2, s in {0, 1}.
int64_t hf_row_for_gguf_row(int64_t gguf_row, int64_t head_dim) {
    const int64_t h = gguf_row / head_dim, within = gguf_row % head_dim;
    const int64_t i = within / 2, s = within % 2;
    return h * head_dim + s * (head_dim / 2) + i;
}

TEST_F(HfDirectory, TinyLlama4xConfig) {
    write("config.json", std::string(kConfig4x));
    write("model.safetensors", safetensors_bytes(tiny_tensors()));
    ekv::ModelFile mf;
    ekv::Status st = load(&mf);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(mf.format, "safetensors");
    EXPECT_EQ(mf.path, dir_);

    std::string s;
    int64_t i = 0;
    double f = 0;
    ASSERT_TRUE(mf.meta.get_string("general.architecture", &s));
    EXPECT_EQ(s, "llama");
    const std::pair<const char*, int64_t> ints[] = {
        {"llama.block_count", 1}, {"llama.context_length", 64}, {"llama.embedding_length", 8},
        {"llama.feed_forward_length", 16}, {"llama.attention.head_count", 2},
        {"llama.attention.head_count_kv", 1}, {"llama.vocab_size", 6}, {"llama.rope.dimension_count", 4},
        {"llama.rope.scaling.original_context_length", 32}, {"tokenizer.ggml.bos_token_id", 1},
        {"tokenizer.ggml.eos_token_id", 5},
    };
    for (const auto& kv : ints) {
        ASSERT_TRUE(mf.meta.get_int(kv.first, &i)) << kv.first;
        EXPECT_EQ(i, kv.second) << kv.first;
    }
    EXPECT_FALSE(mf.meta.has("llama.attention.key_length"));  // no head_dim in this config
    const std::pair<const char*, double> floats[] = {
        {"llama.rope.freq_base", 500000.0}, {"llama.attention.layer_norm_rms_epsilon", 1e-5},
        {"llama.rope.scaling.factor", 8.0}, {"llama.rope.scaling.low_freq_factor", 1.0},
        {"llama.rope.scaling.high_freq_factor", 4.0},
    };
    for (const auto& kv : floats) {
        ASSERT_TRUE(mf.meta.get_float(kv.first, &f)) << kv.first;
        EXPECT_DOUBLE_EQ(f, kv.second) << kv.first;
    }
    ASSERT_TRUE(mf.meta.get_string("llama.rope.scaling.type", &s));
    EXPECT_EQ(s, "llama3");

    // Six mapped tensors; inv_freq and the unknown extra are ignored; tied
    // embeddings mean no output.weight.
    EXPECT_EQ(mf.tensors().size(), 6u);
    EXPECT_EQ(mf.find_tensor("output.weight"), nullptr);
    const ekv::TensorRef* emb = mf.find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->type, ekv::DType::F32);
    EXPECT_EQ(emb->n_dims, 2);
    EXPECT_EQ(emb->ne[0], 8);  // ne[0] = last safetensors dim
    EXPECT_EQ(emb->ne[1], 6);
    EXPECT_EQ(cell(*emb, 5, 7), 5007u);
    const ekv::TensorRef* gate = mf.find_tensor("blk.0.ffn_gate.weight");
    ASSERT_NE(gate, nullptr);
    EXPECT_EQ(gate->ne[0], 8);
    EXPECT_EQ(gate->ne[1], 16);
    const ekv::TensorRef* norm = mf.find_tensor("output_norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm->n_dims, 1);
    EXPECT_EQ(norm->ne[0], 8);

    // v is not permuted; q (2 heads) and k (1 head) are, per head.
    const ekv::TensorRef* v = mf.find_tensor("blk.0.attn_v.weight");
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->type, ekv::DType::BF16);
    for (int64_t r = 0; r < 4; ++r) EXPECT_EQ(cell(*v, r, 1), uint32_t(r * 1000 + 1));
    const ekv::TensorRef* q = mf.find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(q->nbytes, 8u * 8u * 4u);
    const int64_t expected_q[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int64_t r = 0; r < 8; ++r) {
        EXPECT_EQ(hf_row_for_gguf_row(r, 4), expected_q[r]);
        for (int64_t c = 0; c < 8; ++c) EXPECT_EQ(cell(*q, r, c), uint32_t(expected_q[r] * 1000 + c)) << r << "," << c;
    }
    const ekv::TensorRef* k = mf.find_tensor("blk.0.attn_k.weight");
    ASSERT_NE(k, nullptr);
    EXPECT_EQ(k->type, ekv::DType::F16);
    for (int64_t r = 0; r < 4; ++r) {
        for (int64_t c = 0; c < 8; ++c) EXPECT_EQ(cell(*k, r, c), uint32_t(hf_row_for_gguf_row(r, 4) * 1000 + c));
    }
}

TEST_F(HfDirectory, Transformers5ConfigAndMistral) {
    write("config.json", std::string(R"({
      "architectures": ["MistralForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
      "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 6, "head_dim": 8,
      "sliding_window": 4096, "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
      "bos_token_id": null, "eos_token_id": 2})"));
    write("model.safetensors", safetensors_bytes({matrix("model.layers.1.self_attn.q_proj.weight", "BF16", 16, 8),
                                                   matrix("lm_head.weight", "F16", 6, 8)}));
    ekv::ModelFile mf;
    ekv::Status st = load(&mf);
    ASSERT_TRUE(st.ok()) << st.message();
    int64_t i = 0;
    double f = 0;
    ASSERT_TRUE(mf.meta.get_float("llama.rope.freq_base", &f));
    EXPECT_EQ(f, 1000000.0);
    EXPECT_FALSE(mf.meta.has("llama.rope.scaling.type"));
    ASSERT_TRUE(mf.meta.get_int("llama.attention.head_count_kv", &i));
    EXPECT_EQ(i, 2);  // defaults to the head count
    ASSERT_TRUE(mf.meta.get_int("llama.attention.key_length", &i));
    EXPECT_EQ(i, 8);
    ASSERT_TRUE(mf.meta.get_int("llama.context_length", &i));
    EXPECT_EQ(i, 2048);  // HF's default when absent
    ASSERT_TRUE(mf.meta.get_int("llama.attention.sliding_window", &i));
    EXPECT_EQ(i, 4096);
    EXPECT_FALSE(mf.meta.has("tokenizer.ggml.bos_token_id"));
    ASSERT_TRUE(mf.meta.get_float("llama.attention.layer_norm_rms_epsilon", &f));
    EXPECT_EQ(f, 1e-6);
    ASSERT_NE(mf.find_tensor("output.weight"), nullptr);
    const ekv::TensorRef* q = mf.find_tensor("blk.1.attn_q.weight");
    ASSERT_NE(q, nullptr);
    for (int64_t r = 0; r < 16; ++r) EXPECT_EQ(cell(*q, r, 3), uint32_t(hf_row_for_gguf_row(r, 8) * 1000 + 3));
}

TEST_F(HfDirectory, ShardedWithIndex) {
    write("config.json", std::string(kConfig4x));
    std::vector<StTensor> all = tiny_tensors();
    write("model-00001-of-00002.safetensors", safetensors_bytes({all[0], all[1]}));
    write("model-00002-of-00002.safetensors", safetensors_bytes({all[2], all[3]}));
    write("stray.safetensors", std::string("not listed by the index, never read"));
    write("model.safetensors.index.json", std::string(R"({"metadata": {}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.self_attn.k_proj.weight": "model-00002-of-00002.safetensors",
        "model.layers.0.self_attn.v_proj.weight": "model-00002-of-00002.safetensors"}})"));
    ekv::ModelFile mf;
    ekv::Status st = load(&mf);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(mf.tensors().size(), 4u);
    EXPECT_NE(mf.find_tensor("blk.0.attn_k.weight"), nullptr);
}

TEST_F(HfDirectory, IndexCannotEscapeDirectory) {
    write("config.json", std::string(kConfig4x));
    write("model.safetensors.index.json",
          std::string(R"({"weight_map": {"model.norm.weight": "../outside.safetensors"}})"));
    expect_error(EKV_ERR_INVALID_FILE, "invalid file name");
}

TEST_F(HfDirectory, DuplicateTensorAcrossShards) {
    write("config.json", std::string(kConfig4x));
    write("a.safetensors", safetensors_bytes({matrix("model.embed_tokens.weight", "F32", 6, 8)}));
    write("b.safetensors", safetensors_bytes({matrix("model.embed_tokens.weight", "F32", 6, 8)}));
    expect_error(EKV_ERR_INVALID_FILE, "model.embed_tokens.weight appears more than once");
}

TEST_F(HfDirectory, UnsupportedArchitecture) {
    write("config.json", std::string(R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"})"));
    expect_error(EKV_ERR_UNSUPPORTED_ARCH, "Qwen2ForCausalLM");
    write("config.json", std::string(R"({"hidden_size": 8})"));
    expect_error(EKV_ERR_UNSUPPORTED_ARCH, "(none given)");
}

TEST_F(HfDirectory, BadConfigs) {
    write("model.safetensors", safetensors_bytes(tiny_tensors()));
    expect_error(EKV_ERR_IO, "config.json");  // missing
    write("config.json", std::string("{\"model_type\": \"llama\", "));
    expect_error(EKV_ERR_INVALID_FILE, "config.json: JSON: expected a string key");
    write("config.json", std::string(R"({"model_type": "llama", "hidden_size": 8})"));
    expect_error(EKV_ERR_INVALID_FILE, "missing \"num_hidden_layers\"");
    write("config.json", std::string(R"({"model_type": "llama", "hidden_size": 8.5, "num_hidden_layers": 1,
        "intermediate_size": 16, "num_attention_heads": 2, "vocab_size": 6})"));
    expect_error(EKV_ERR_INVALID_FILE, "\"hidden_size\" must be an integer");
    write("config.json", std::string(R"({"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1,
        "intermediate_size": 16, "num_attention_heads": 3, "num_key_value_heads": 2, "vocab_size": 6})"));
    expect_error(EKV_ERR_INVALID_FILE, "not a multiple of num_key_value_heads");
    write("config.json", std::string(R"({"model_type": "llama", "attention_bias": true})"));
    expect_error(EKV_ERR_UNSUPPORTED, "attention_bias");
}

TEST_F(HfDirectory, MissingSafetensorsAndNotADirectory) {
    write("config.json", std::string(kConfig4x));
    expect_error(EKV_ERR_IO, "no .safetensors files");
    ekv::ModelFile mf;
    EXPECT_EQ(ekv::load_hf_directory(dir_ + "/config.json", &mf).code(), EKV_ERR_IO);
    EXPECT_EQ(ekv::load_hf_directory(dir_ + "/nope", &mf).code(), EKV_ERR_IO);
}

TEST_F(HfDirectory, UnsupportedDtype) {
    write("config.json", std::string(kConfig4x));
    StTensor t{"model.norm.weight", "I64", {8}, std::vector<uint8_t>(64, 0)};
    write("model.safetensors", safetensors_bytes({t}));
    expect_error(EKV_ERR_UNSUPPORTED, "tensor model.norm.weight has dtype I64");
    t = StTensor{"model.norm.weight", "Q9_Z", {8}, std::vector<uint8_t>(5, 0)};
    write("model.safetensors", safetensors_bytes({t}));
    expect_error(EKV_ERR_UNSUPPORTED, "tensor model.norm.weight has dtype Q9_Z");
}

TEST_F(HfDirectory, HostileSafetensorsHeaders) {
    write("config.json", std::string(kConfig4x));
    struct Case { std::vector<uint8_t> bytes; const char* fragment; };
    const std::string ok_entry = R"("model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,32]})";
    const Case cases[] = {
        {{1, 2, 3}, "shorter than its 8-byte header length"},
        {raw_safetensors("{}", 0, 1000), "header length 1000 extends past end of file"},
        {raw_safetensors("{}", 0, ~uint64_t(0)), "exceeds the limit"},
        {raw_safetensors("{" + ok_entry + "}", 16), "data_offsets [0, 32] lie outside the 16 data bytes"},
        {raw_safetensors(R"({"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[40,32]}})", 64),
         "lie outside"},
        {raw_safetensors(R"({"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,28]}})", 32),
         "span 28 bytes"},
        {raw_safetensors(R"({"x":{"dtype":"F32","shape":[4503599627370496,4503599627370496],"data_offsets":[0,0]}})", 0),
         "element count overflows"},
        {raw_safetensors(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0), "negative"},
        {raw_safetensors(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,1e300]}})", 8), "non-negative integers"},
        {raw_safetensors(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", 8), "\"dtype\""},
        {raw_safetensors(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 8), "array of two integers"},
        {raw_safetensors(R"({"x":[]})", 8), "not an object"},
        {raw_safetensors(R"({"__metadata__": 3})", 0), "__metadata__"},
        {raw_safetensors("this is not json", 8), "safetensors header: JSON"},
        {raw_safetensors("[1, 2]", 8), "not a JSON object"},
        {raw_safetensors("{\"a\": {}, \"a\": {}}", 8), "duplicate object key"},
    };
    for (const Case& c : cases) {
        write("model.safetensors", c.bytes);
        SCOPED_TRACE(c.fragment);
        expect_error(EKV_ERR_INVALID_FILE, c.fragment);
    }
}

TEST_F(HfDirectory, BadShapesForMappedTensors) {
    write("config.json", std::string(kConfig4x));
    write("model.safetensors", safetensors_bytes({matrix("model.layers.0.self_attn.q_proj.weight", "F32", 6, 8)}));
    expect_error(EKV_ERR_INVALID_FILE, "does not split into 2 heads of even size");
    write("model.safetensors", safetensors_bytes({matrix("model.layers.7.mlp.up_proj.weight", "F32", 2, 2)}));
    expect_error(EKV_ERR_INVALID_FILE, "layer index beyond num_hidden_layers 1");
    write("model.safetensors", safetensors_bytes({StTensor{"model.norm.weight", "F32", {}, {0, 0, 0, 0}}}));
    expect_error(EKV_ERR_INVALID_FILE, "has 0 dimensions");
    write("model.safetensors", safetensors_bytes({StTensor{"model.norm.weight", "F32", {8, 0}, {}}}));
    expect_error(EKV_ERR_INVALID_FILE, "zero dimension");
}

// The fixture pair written by tools/gen_tiny_llama.py (HF directory and the
// same weights as an f32 GGUF, permuted by its own code): every tensor the
// HF reader produces must equal the GGUF's byte for byte.
TEST(HfDirectoryFixture, MatchesGgufOfSameWeights) {
    const char* fixtures = std::getenv("EKV_FIXTURES_DIR");
    if (!fixtures || !*fixtures) GTEST_SKIP() << "EKV_FIXTURES_DIR not set";
    const std::string base = std::string(fixtures) + "/tiny_llama";
    if (!fs::exists(base + "/hf/config.json")) GTEST_SKIP() << "no tiny_llama fixture";
    ekv::ModelFile hf, gguf;
    ekv::Status st = ekv::load_hf_directory(base + "/hf", &hf);
    ASSERT_TRUE(st.ok()) << st.message();
    st = ekv::load_gguf_file(base + "/tiny_llama_f32.gguf", &gguf);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(hf.tensors().size(), gguf.tensors().size());
    for (const ekv::TensorRef& t : hf.tensors()) {
        const ekv::TensorRef* g = gguf.find_tensor(t.name);
        ASSERT_NE(g, nullptr) << t.name;
        ASSERT_EQ(t.type, ekv::DType::F32) << t.name;
        ASSERT_EQ(g->type, ekv::DType::F32) << t.name;
        ASSERT_EQ(t.n_elements(), g->n_elements()) << t.name;
        for (int d = 0; d < 4; ++d) EXPECT_EQ(t.ne[d], g->ne[d]) << t.name;
        EXPECT_EQ(std::memcmp(t.data, g->data, t.nbytes), 0) << t.name;
    }
    for (const char* key : {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.context_length"}) {
        int64_t a = -1, b = -2;
        EXPECT_TRUE(hf.meta.get_int(key, &a)) << key;
        EXPECT_TRUE(gguf.meta.get_int(key, &b)) << key;
        EXPECT_EQ(a, b) << key;
    }
}

}  // namespace
