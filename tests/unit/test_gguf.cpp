// GGUF reader: valid v2/v3 files round-trip; hostile files fail cleanly.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

#include "gguf_test_writer.h"
#include "model/model_file.h"

namespace {

using ekv_test::GgufWriter;
using ekv_test::to_bytes;

constexpr uint32_t kTypeF32 = 0, kTypeF16 = 1, kTypeQ4_1 = 3, kTypeQ8_0 = 8, kTypeQ2_K = 10;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
    return v;
}

// A small but varied valid file: every scalar type, arrays, four tensor types.
GgufWriter valid_writer(uint32_t version) {
    GgufWriter w;
    w.version = version;
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.block_count", 2);
    w.add_scalar<uint8_t>("t.u8", ekv_test::kU8, 200);
    w.add_scalar<int8_t>("t.i8", ekv_test::kI8, -5);
    w.add_scalar<uint16_t>("t.u16", ekv_test::kU16, 60000);
    w.add_scalar<int16_t>("t.i16", ekv_test::kI16, -30000);
    w.add_scalar<int32_t>("t.i32", ekv_test::kI32, -123456);
    w.add_scalar<uint64_t>("t.u64", ekv_test::kU64, 1ull << 40);
    w.add_scalar<uint64_t>("t.u64_huge", ekv_test::kU64, ~0ull);
    w.add_scalar<int64_t>("t.i64", ekv_test::kI64, -(1ll << 50));
    w.add_scalar<double>("t.f64", ekv_test::kF64, 2.5);
    w.add_f32("llama.rope.freq_base", 10000.0f);
    w.add_scalar<uint8_t>("t.bool", ekv_test::kBool, 1);
    w.add_string_array("tokenizer.ggml.tokens", {"<s>", "a", "", "\xC4\xA0the"});
    w.add_array<int32_t>("tokenizer.ggml.token_type", ekv_test::kI32, {1, 2, 3, -4});
    w.add_array<float>("tokenizer.ggml.scores", ekv_test::kF32, {0.5f, -1.25f});
    w.add_array<uint8_t>("t.bools", ekv_test::kBool, {1, 0, 1});
    w.add_tensor("token_embd.weight", {4, 3}, kTypeF32, to_bytes(std::vector<float>{
                     1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
    w.add_tensor("output_norm.weight", {8}, kTypeF16, pattern(16, 1));
    w.add_tensor("blk.0.attn_q.weight", {64, 2}, kTypeQ8_0, pattern(2 * 2 * 34, 2));
    w.add_tensor("blk.0.ffn_up.weight", {32, 1, 1, 3}, kTypeQ4_1, pattern(3 * 20, 3));
    return w;
}

ekv::Status load(const std::vector<uint8_t>& bytes, ekv::ModelFile* mf) {
    return ekv::load_gguf_memory(bytes.data(), bytes.size(), mf);
}

void expect_error(const std::vector<uint8_t>& bytes, ekv_status code, const std::string& fragment) {
    ekv::ModelFile mf;
    ekv::Status st = load(bytes, &mf);
    EXPECT_EQ(st.code(), code) << st.message();
    EXPECT_NE(st.message().find(fragment), std::string::npos)
        << "message \"" << st.message() << "\" lacks \"" << fragment << "\"";
    EXPECT_TRUE(mf.tensors().empty());
}

void expect_invalid(const std::vector<uint8_t>& bytes, const std::string& fragment) {
    expect_error(bytes, EKV_ERR_INVALID_FILE, fragment);
}

// `base` is where the file's first byte lies in memory.
void check_valid_file(const ekv::ModelFile& mf, const uint8_t* base, GgufWriter& w) {
    EXPECT_EQ(mf.format, "gguf");
    std::string s;
    ASSERT_TRUE(mf.meta.get_string("general.architecture", &s));
    EXPECT_EQ(s, "llama");
    int64_t i = 0;
    ASSERT_TRUE(mf.meta.get_int("llama.block_count", &i));
    EXPECT_EQ(i, 2);
    ASSERT_TRUE(mf.meta.get_int("t.u8", &i));
    EXPECT_EQ(i, 200);
    ASSERT_TRUE(mf.meta.get_int("t.i8", &i));
    EXPECT_EQ(i, -5);
    ASSERT_TRUE(mf.meta.get_int("t.u16", &i));
    EXPECT_EQ(i, 60000);
    ASSERT_TRUE(mf.meta.get_int("t.i16", &i));
    EXPECT_EQ(i, -30000);
    ASSERT_TRUE(mf.meta.get_int("t.i32", &i));
    EXPECT_EQ(i, -123456);
    ASSERT_TRUE(mf.meta.get_int("t.u64", &i));
    EXPECT_EQ(i, int64_t(1) << 40);
    EXPECT_FALSE(mf.meta.get_int("t.u64_huge", &i)) << "u64 above INT64_MAX must not read as int64";
    ASSERT_TRUE(mf.meta.get_int("t.i64", &i));
    EXPECT_EQ(i, -(int64_t(1) << 50));
    double f = 0;
    ASSERT_TRUE(mf.meta.get_float("t.f64", &f));
    EXPECT_EQ(f, 2.5);
    ASSERT_TRUE(mf.meta.get_float("llama.rope.freq_base", &f));
    EXPECT_EQ(f, 10000.0);
    ASSERT_TRUE(mf.meta.get_float("t.u64_huge", &f));
    EXPECT_EQ(f, 18446744073709551615.0);
    bool b = false;
    ASSERT_TRUE(mf.meta.get_bool("t.bool", &b));
    EXPECT_TRUE(b);

    const ekv::MetaValue* tokens = mf.meta.find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    EXPECT_EQ(tokens->type, ekv::MetaType::ARRAY);
    EXPECT_EQ(tokens->elem_type, ekv::MetaType::STRING);
    EXPECT_EQ(tokens->strs, (std::vector<std::string>{"<s>", "a", "", "\xC4\xA0the"}));
    const ekv::MetaValue* types = mf.meta.find("tokenizer.ggml.token_type");
    ASSERT_NE(types, nullptr);
    EXPECT_EQ(types->ints, (std::vector<int64_t>{1, 2, 3, -4}));
    const ekv::MetaValue* scores = mf.meta.find("tokenizer.ggml.scores");
    ASSERT_NE(scores, nullptr);
    EXPECT_EQ(scores->floats, (std::vector<double>{0.5, -1.25}));
    EXPECT_EQ(mf.meta.find("t.bools")->ints, (std::vector<int64_t>{1, 0, 1}));
    EXPECT_EQ(mf.meta.find("t.bools")->array_size(), 3u);

    ASSERT_EQ(mf.tensors().size(), 4u);
    const ekv::TensorRef* emb = mf.find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->type, ekv::DType::F32);
    EXPECT_EQ(emb->n_dims, 2);
    EXPECT_EQ(emb->ne[0], 4);
    EXPECT_EQ(emb->ne[1], 3);
    EXPECT_EQ(emb->ne[2], 1);
    EXPECT_EQ(emb->nbytes, 48u);
    float v[12];
    std::memcpy(v, emb->data, sizeof v);
    EXPECT_EQ(v[0], 1.0f);
    EXPECT_EQ(v[11], 12.0f);
    // Data pointers are the writer's data positions inside the buffer.
    for (size_t k = 0; k < w.tensors.size(); ++k) {
        const ekv::TensorRef* t = mf.find_tensor(w.tensors[k].name);
        ASSERT_NE(t, nullptr) << w.tensors[k].name;
        ASSERT_EQ(t->nbytes, w.tensors[k].data.size()) << t->name;
        EXPECT_EQ(std::memcmp(t->data, w.tensors[k].data.data(), t->nbytes), 0) << t->name;
        EXPECT_GE(t->data, base + w.data_start);
        EXPECT_EQ((t->data - base - w.data_start) % 32, 0) << t->name;
    }
    const ekv::TensorRef* q = mf.find_tensor("blk.0.attn_q.weight");
    EXPECT_EQ(q->type, ekv::DType::Q8_0);
    EXPECT_EQ(q->n_elements(), 128);
    const ekv::TensorRef* up = mf.find_tensor("blk.0.ffn_up.weight");
    EXPECT_EQ(up->type, ekv::DType::Q4_1);
    EXPECT_EQ(up->n_dims, 4);
    EXPECT_EQ(up->ne[3], 3);
}

TEST(Gguf, ValidV3) {
    GgufWriter w = valid_writer(3);
    std::vector<uint8_t> bytes = w.build();
    ekv::ModelFile mf;
    ekv::Status st = load(bytes, &mf);
    ASSERT_TRUE(st.ok()) << st.message();
    check_valid_file(mf, bytes.data(), w);
}

TEST(Gguf, ValidV2) {
    GgufWriter w = valid_writer(2);
    std::vector<uint8_t> bytes = w.build();
    ekv::ModelFile mf;
    ekv::Status st = load(bytes, &mf);
    ASSERT_TRUE(st.ok()) << st.message();
    check_valid_file(mf, bytes.data(), w);
}

TEST(Gguf, GetterTypeRules) {
    GgufWriter w = valid_writer(3);
    std::vector<uint8_t> bytes = w.build();
    ekv::ModelFile mf;
    ASSERT_TRUE(load(bytes, &mf).ok());
    int64_t i;
    double f;
    bool b;
    std::string s;
    EXPECT_FALSE(mf.meta.get_int("t.f64", &i));       // float is not an int
    EXPECT_TRUE(mf.meta.get_float("t.i32", &f));      // any number reads as float
    EXPECT_EQ(f, -123456.0);
    EXPECT_TRUE(mf.meta.get_int("t.bool", &i));       // bools read as ints
    EXPECT_EQ(i, 1);
    EXPECT_FALSE(mf.meta.get_float("t.bool", &f));
    EXPECT_FALSE(mf.meta.get_string("t.i32", &s));
    EXPECT_FALSE(mf.meta.get_int("general.architecture", &i));
    EXPECT_FALSE(mf.meta.get_bool("t.f64", &b));
    EXPECT_FALSE(mf.meta.get_int("tokenizer.ggml.token_type", &i));  // arrays are not scalars
    EXPECT_FALSE(mf.meta.get_int("missing.key", &i));
}

TEST(Gguf, CustomAlignment) {
    GgufWriter w;
    w.alignment = 64;
    w.add_u32("general.alignment", 64);
    w.add_tensor("a", {3}, kTypeF32, pattern(12, 5));
    w.add_tensor("b", {5}, kTypeF32, pattern(20, 9));
    std::vector<uint8_t> bytes = w.build();
    ekv::ModelFile mf;
    ekv::Status st = load(bytes, &mf);
    ASSERT_TRUE(st.ok()) << st.message();
    const ekv::TensorRef* b = mf.find_tensor("b");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->data - bytes.data(), static_cast<ptrdiff_t>(w.data_start + 64));
    EXPECT_EQ(std::memcmp(b->data, w.tensors[1].data.data(), 20), 0);
}

TEST(Gguf, NoTensors) {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    std::vector<uint8_t> bytes = w.build();
    ekv::ModelFile mf;
    ASSERT_TRUE(load(bytes, &mf).ok());
    EXPECT_TRUE(mf.tensors().empty());
    EXPECT_TRUE(mf.meta.has("general.architecture"));
}

TEST(Gguf, TruncationAtEveryOffset) {
    GgufWriter w = valid_writer(3);
    const std::vector<uint8_t> full = w.build();
    for (size_t len = 0; len < full.size(); ++len) {
        // Exact-size heap copy so a sanitizer sees any read past the end.
        std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(len));
        ekv::ModelFile mf;
        ekv::Status st = load(cut, &mf);
        ASSERT_EQ(st.code(), EKV_ERR_INVALID_FILE) << "truncated at " << len << ": " << st.message();
        ASSERT_FALSE(st.message().empty());
    }
}

TEST(Gguf, BadMagicAndVersions) {
    GgufWriter w = valid_writer(3);
    w.magic = 0x46554746;
    expect_invalid(w.build(), "bad magic");
    w = valid_writer(1);
    expect_invalid(w.build(), "version 1");
    w = valid_writer(99);
    expect_invalid(w.build(), "version 99");
    w = valid_writer(0x03000000);
    expect_error(w.build(), EKV_ERR_UNSUPPORTED, "big-endian");
    expect_invalid({}, "not a GGUF file");
    expect_invalid({'G', 'G'}, "not a GGUF file");
}

TEST(Gguf, AbsurdCounts) {
    GgufWriter w = valid_writer(3);
    w.tensor_count = uint64_t(1) << 62;
    expect_invalid(w.build(), "tensor count 4611686018427387904");
    w = valid_writer(3);
    w.kv_count = ~uint64_t(0);
    expect_invalid(w.build(), "metadata count");
    w = valid_writer(3);
    w.tensor_count = 5;  // one more than present: runs into the data section
    ekv::ModelFile mf;
    EXPECT_EQ(load(w.build(), &mf).code(), EKV_ERR_INVALID_FILE);
    // Array count far beyond the file.
    w = GgufWriter();
    ekv_test::ByteSink s;
    s.put<uint32_t>(ekv_test::kU32);
    s.put<uint64_t>(uint64_t(1) << 61);
    w.add_raw("big.array", ekv_test::kArray, s.bytes);
    expect_invalid(w.build(), "big.array: array of 2305843009213693952 elements cannot fit");
}

TEST(Gguf, StringLengthPastEnd) {
    GgufWriter w;
    ekv_test::ByteSink s;
    s.put<uint64_t>(1000);  // claims 1000 bytes, has 3
    s.bytes.insert(s.bytes.end(), {'a', 'b', 'c'});
    w.add_raw("general.name", ekv_test::kString, s.bytes);
    expect_invalid(w.build(), "general.name: string length 1000");
    // Key length past the end.
    std::vector<uint8_t> bytes = valid_writer(3).build();
    const uint64_t huge = ~uint64_t(0) - 3;
    std::memcpy(bytes.data() + 24, &huge, 8);  // first key's length
    expect_invalid(bytes, "key of metadata entry 0: string length");
    // String array element past the end.
    w = GgufWriter();
    ekv_test::ByteSink a;
    a.put<uint32_t>(ekv_test::kString);
    a.put<uint64_t>(2);
    a.put_string("ok");
    a.put<uint64_t>(1ull << 40);
    w.add_raw("tokenizer.ggml.tokens", ekv_test::kArray, a.bytes);
    expect_invalid(w.build(), "tokenizer.ggml.tokens: string length 1099511627776");
}

TEST(Gguf, BadMetadataValues) {
    GgufWriter w;
    w.add_scalar<uint32_t>("x.weird", 13, 0);
    expect_invalid(w.build(), "x.weird: unknown value type 13");
    w = GgufWriter();
    w.add_scalar<uint8_t>("x.bool", ekv_test::kBool, 7);
    expect_invalid(w.build(), "x.bool: bool value 7");
    w = GgufWriter();
    w.add_u32("dup.key", 1);
    w.add_u32("dup.key", 2);
    expect_invalid(w.build(), "duplicate metadata key dup.key");
    w = GgufWriter();
    w.add_string("", "empty key");
    expect_invalid(w.build(), "empty key");
    w = GgufWriter();
    ekv_test::ByteSink s;
    s.put<uint32_t>(99);
    s.put<uint64_t>(1);
    w.add_raw("x.arr", ekv_test::kArray, s.bytes);
    expect_invalid(w.build(), "x.arr: unknown array element type 99");
    w = GgufWriter();
    ekv_test::ByteSink nested;
    nested.put<uint32_t>(ekv_test::kArray);
    nested.put<uint64_t>(1);
    nested.put<uint32_t>(ekv_test::kU8);
    nested.put<uint64_t>(1);
    nested.put<uint8_t>(1);
    w.add_raw("x.nested", ekv_test::kArray, nested.bytes);
    expect_error(w.build(), EKV_ERR_UNSUPPORTED, "x.nested: nested arrays");
}

TEST(Gguf, BadAlignment) {
    for (uint32_t a : {0u, 33u, 3u, 0x80000000u}) {
        GgufWriter w = valid_writer(3);
        w.add_u32("general.alignment", a);
        expect_invalid(w.build(), "general.alignment");
    }
    GgufWriter w = valid_writer(3);
    w.add_string("general.alignment", "32");
    expect_invalid(w.build(), "general.alignment is not an integer");
}

TEST(Gguf, TensorPastEndOfFile) {
    GgufWriter w = valid_writer(3);
    w.tensors[1].offset = 4096;
    expect_invalid(w.build(), "tensor output_norm.weight extends past end of file (offset 4096 + 16 bytes");
    w = valid_writer(3);
    w.tensors[3].dims = {32, 1, 1, 4};  // one more row than the data holds
    expect_invalid(w.build(), "tensor blk.0.ffn_up.weight extends past end of file");
    w = valid_writer(3);
    w.tensors[0].offset = ~uint64_t(0) - 31;  // aligned, and offset + size overflows
    expect_invalid(w.build(), "tensor token_embd.weight extends past end of file");
}

TEST(Gguf, SizeOverflow) {
    GgufWriter w = valid_writer(3);
    w.tensors[0].dims = {uint64_t(1) << 40, uint64_t(1) << 40};
    expect_invalid(w.build(), "token_embd.weight: element count overflows");
    w = valid_writer(3);
    w.tensors[0].dims = {uint64_t(1) << 62};  // elements fit int64, bytes do not
    expect_invalid(w.build(), "token_embd.weight: byte size overflows");
    w = valid_writer(3);
    w.tensors[0].dims = {~uint64_t(0)};
    expect_invalid(w.build(), "token_embd.weight has invalid dimension 0");
}

TEST(Gguf, BadTensorShapesAndTypes) {
    GgufWriter w = valid_writer(3);
    w.tensors[2].type = 99;
    expect_invalid(w.build(), "tensor blk.0.attn_q.weight has unknown type id 99");
    w = valid_writer(3);
    w.tensors[2].type = 4;  // Q4_2, removed from ggml long ago
    expect_invalid(w.build(), "unknown type id 4");
    w = valid_writer(3);
    w.tensors[0].dims = {};
    expect_invalid(w.build(), "tensor token_embd.weight has 0 dimensions");
    w = valid_writer(3);
    w.tensors[0].dims = {1, 1, 1, 1, 12};
    expect_invalid(w.build(), "tensor token_embd.weight has 5 dimensions");
    w = valid_writer(3);
    w.tensors[0].dims = {4, 0};
    expect_invalid(w.build(), "token_embd.weight has invalid dimension 1 = 0");
    w = valid_writer(3);
    w.tensors[2].dims = {48, 1};  // not a multiple of Q8_0's 32
    expect_invalid(w.build(), "row length 48 is not a multiple of the q8_0 block size 32");
    w = valid_writer(3);
    w.tensors[1].offset = 68;  // inside the file, but not 32-aligned
    expect_invalid(w.build(), "output_norm.weight: offset 68 is not a multiple of the alignment 32");
    w = valid_writer(3);
    w.tensors[0].name = "";
    expect_invalid(w.build(), "tensor 0 has an empty name");
}

TEST(Gguf, DuplicateAndOverlappingTensors) {
    GgufWriter w = valid_writer(3);
    w.tensors[3].name = "token_embd.weight";
    expect_invalid(w.build(), "duplicate tensor name token_embd.weight");
    w = valid_writer(3);
    w.tensors[1].offset = 32;  // same bytes as token_embd.weight (0..47)
    expect_invalid(w.build(), "overlap");
}

TEST(Gguf, KnownButUnsupportedType) {
    GgufWriter w = valid_writer(3);
    w.add_tensor("blk.1.ffn_down.weight", {256, 2}, kTypeQ2_K, pattern(2 * 84, 4));
    expect_error(w.build(), EKV_ERR_UNSUPPORTED, "tensor blk.1.ffn_down.weight has type q2_k");
}

TEST(Gguf, NullArguments) {
    ekv::ModelFile mf;
    EXPECT_EQ(ekv::load_gguf_memory(nullptr, 10, &mf).code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv::load_gguf_memory(nullptr, 0, &mf).code(), EKV_ERR_INVALID_FILE);
}

std::string temp_path(const char* name) {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/ekv_test_gguf_" + std::to_string(getpid()) + "_" + name;
}

TEST(Gguf, LoadFromFileKeepsMappingAlive) {
    GgufWriter w = valid_writer(3);
    std::vector<uint8_t> bytes = w.build();
    const std::string path = temp_path("valid.gguf");
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
    ekv::ModelFile moved;
    {
        ekv::ModelFile mf;
        ekv::Status st = ekv::load_gguf_file(path, &mf);
        ASSERT_TRUE(st.ok()) << st.message();
        EXPECT_EQ(mf.path, path);
        moved = std::move(mf);
    }
    std::remove(path.c_str());  // the mapping outlives the directory entry
    // The first tensor sits at the start of the data section.
    const uint8_t* base = moved.find_tensor("token_embd.weight")->data - w.data_start;
    check_valid_file(moved, base, w);
}

TEST(Gguf, FileErrorsNameTheFile) {
    ekv::ModelFile mf;
    const std::string missing = temp_path("does_not_exist.gguf");
    ekv::Status st = ekv::load_gguf_file(missing, &mf);
    EXPECT_EQ(st.code(), EKV_ERR_IO);
    EXPECT_NE(st.message().find(missing), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("No such file"), std::string::npos) << st.message();
    st = ekv::load_gguf_file("/tmp", &mf);
    EXPECT_EQ(st.code(), EKV_ERR_IO);
    EXPECT_NE(st.message().find("directory"), std::string::npos) << st.message();

    const std::string bad = temp_path("bad.gguf");
    FILE* f = std::fopen(bad.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not a gguf file at all", f);
    std::fclose(f);
    st = ekv::load_gguf_file(bad, &mf);
    std::remove(bad.c_str());
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_FILE);
    EXPECT_NE(st.message().find(bad + ": not a GGUF file"), std::string::npos) << st.message();
}

TEST(Gguf, RealSmolLM2File) {
    const char* path = std::getenv("EKV_SMOLLM2_GGUF");
    if (!path || !*path) GTEST_SKIP() << "set EKV_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf";
    ekv::ModelFile mf;
    ekv::Status st = ekv::load_gguf_file(path, &mf);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(mf.tensors().size(), 272u);
    int64_t v = 0;
    ASSERT_TRUE(mf.meta.get_int("llama.block_count", &v));
    EXPECT_EQ(v, 30);
    ASSERT_TRUE(mf.meta.get_int("llama.embedding_length", &v));
    EXPECT_EQ(v, 576);
    ASSERT_TRUE(mf.meta.get_int("llama.attention.head_count_kv", &v));
    EXPECT_EQ(v, 3);
    std::string s;
    ASSERT_TRUE(mf.meta.get_string("general.architecture", &s));
    EXPECT_EQ(s, "llama");
    ASSERT_TRUE(mf.meta.get_string("tokenizer.ggml.model", &s));
    EXPECT_EQ(s, "gpt2");
    const ekv::MetaValue* tokens = mf.meta.find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    EXPECT_EQ(tokens->strs.size(), 49152u);
    const ekv::TensorRef* emb = mf.find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->type, ekv::DType::Q8_0);
    EXPECT_EQ(emb->ne[0], 576);
    EXPECT_EQ(emb->ne[1], 49152);
    const ekv::TensorRef* q = mf.find_tensor("blk.3.attn_q.weight");
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->type, ekv::DType::Q4_1);
    EXPECT_EQ(q->nbytes, size_t(576 / 32 * 20 * 576));
    const ekv::TensorRef* norm = mf.find_tensor("output_norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm->type, ekv::DType::F32);
}

}  // namespace
