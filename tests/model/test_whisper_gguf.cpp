// Whisper GGUF variants built from the tiny fixture: the encoder's
// positional embedding stored in the file (instead of computed sinusoids)
// gives the same logits; missing or misshapen tensors and bad metadata are
// refused at load with the tensor's or key's name.
#define EKV_EXPERIMENTAL  // the audio API
#include <cmath>
#include <cstdio>
#include <functional>

#include "model/model_file.h"
#include "model/test_util.h"
#include "unit/gguf_test_writer.h"

using namespace ekv_test;

namespace {

std::string whisper_dir() { return fixtures_dir() + "/tiny_whisper"; }

// Rewrites the fixture through the test GGUF writer; `edit` may change the
// metadata and tensor lists before they are written.
struct Variant {
    std::vector<std::pair<std::string, ekv::MetaValue>> meta;
    std::vector<GgufWriter::Tensor> tensors;
};

bool read_fixture(Variant* v) {
    ekv::ModelFile f;
    if (!ekv::load_gguf_file(whisper_dir() + "/tiny_whisper.gguf", &f).ok()) return false;
    for (const auto& kv : f.meta.all()) v->meta.push_back(kv);
    for (const ekv::TensorRef& t : f.tensors()) {
        GgufWriter::Tensor out;
        out.name = t.name;
        for (int d = 0; d < t.n_dims; ++d) out.dims.push_back(static_cast<uint64_t>(t.ne[d]));
        out.type = static_cast<uint32_t>(t.type);
        out.data.assign(t.data, t.data + t.nbytes);
        v->tensors.push_back(std::move(out));
    }
    return true;
}

std::string write_variant(const Variant& v, const std::string& name) {
    GgufWriter w;
    for (const auto& kv : v.meta) {
        const ekv::MetaValue& m = kv.second;
        switch (m.type) {
            case ekv::MetaType::U32: w.add_u32(kv.first, static_cast<uint32_t>(m.i)); break;
            case ekv::MetaType::I32: w.add_scalar(kv.first, kI32, static_cast<int32_t>(m.i)); break;
            case ekv::MetaType::F32: w.add_f32(kv.first, static_cast<float>(m.f)); break;
            case ekv::MetaType::STRING: w.add_string(kv.first, m.str); break;
            default: break;  // the fixture has no other kinds
        }
    }
    w.tensors = v.tensors;
    const std::vector<uint8_t> bytes = w.build();
    const std::string path = ::testing::TempDir() + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    EXPECT_TRUE(f);
    if (f) {
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
    }
    return path;
}

ekv_status load_status(const std::string& path, std::string* message) {
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    p.n_threads = 1;
    ekv_model* m = nullptr;
    const ekv_status st = ekv_model_load(path.c_str(), &p, &m);
    *message = ekv_last_error();
    ekv_model_free(m);
    return st;
}

TEST(WhisperGguf, StoredEncoderPositionsEqualTheSinusoids) {
    Variant v;
    ASSERT_TRUE(read_fixture(&v));
    // Whisper's sinusoids, computed here in double: [sin | cos] of p * 10000^(-i / 31).
    const int positions = 1500, channels = 64, half = channels / 2;
    std::vector<uint8_t> data(static_cast<size_t>(positions) * channels * 4);
    for (int p = 0; p < positions; ++p) {
        for (int i = 0; i < half; ++i) {
            const double angle = p * std::exp(-std::log(10000.0) * i / (half - 1));
            const float s = static_cast<float>(std::sin(angle)), c = static_cast<float>(std::cos(angle));
            std::memcpy(&data[(static_cast<size_t>(p) * channels + i) * 4], &s, 4);
            std::memcpy(&data[(static_cast<size_t>(p) * channels + half + i) * 4], &c, 4);
        }
    }
    v.tensors.push_back({"enc.position_embd.weight", {64, 1500}, 0 /* F32 */, data, std::nullopt});
    const std::string path = write_variant(v, "whisper_positions.gguf");

    Reference ref;
    ASSERT_TRUE(load_reference(whisper_dir(), "ref_decode.json", &ref));
    float* pcm = nullptr;
    int32_t n = 0, rate = 0;
    ASSERT_EQ(ekv_audio_read_wav((whisper_dir() + "/speech.wav").c_str(), &pcm, &n, &rate), EKV_OK);
    std::vector<float> got[2];
    int index = 0;
    for (const std::string& file : {whisper_dir() + "/tiny_whisper.gguf", path}) {
        ModelPtr m = load_model(file);
        ASSERT_TRUE(m);
        ekv_cache_params cp = ekv_cache_default_params();
        cp.dtype = EKV_KV_F32;
        ekv_cache* raw = nullptr;
        ASSERT_EQ(ekv_cache_create(m.get(), &cp, &raw), EKV_OK) << ekv_last_error();
        CachePtr c(raw);
        ASSERT_EQ(ekv_encode_audio(m.get(), c.get(), pcm, n, rate), EKV_OK) << ekv_last_error();
        got[index].resize(4 * static_cast<size_t>(ref.n_vocab));
        ASSERT_EQ(ekv_forward(m.get(), c.get(), ref.input_ids.data(), 4, nullptr, EKV_LOGITS_ALL, got[index].data(),
                              got[index].size()),
                  EKV_OK);
        for (size_t r = 0; r < 4; ++r)
            EXPECT_LT(normalized_max_error(got[index].data() + r * ref.n_vocab, ref.row(r), ref.n_vocab), 5e-4)
                << file << " row " << r;
        ++index;
    }
    ekv_audio_free(pcm);
    for (size_t i = 0; i < got[0].size(); ++i) ASSERT_NEAR(got[0][i], got[1][i], 1e-4) << i;
    std::remove(path.c_str());
}

TEST(WhisperGguf, BadFilesAreRefusedWithTheName) {
    Variant base;
    ASSERT_TRUE(read_fixture(&base));
    struct Case {
        const char* what;
        std::function<void(Variant&)> edit;
        ekv_status expect;
        const char* mentions;
    };
    auto drop = [](const char* name) {
        return [name](Variant& v) {
            for (size_t i = 0; i < v.tensors.size(); ++i)
                if (v.tensors[i].name == name) v.tensors.erase(v.tensors.begin() + static_cast<std::ptrdiff_t>(i));
        };
    };
    auto set_u32 = [](const char* key, int64_t value) {
        return [key, value](Variant& v) {
            for (auto& kv : v.meta)
                if (kv.first == key) kv.second.i = value;
        };
    };
    const Case cases[] = {
        {"missing cross-attention key", drop("dec.blk.1.cross_attn_k.weight"), EKV_ERR_INVALID_FILE,
         "dec.blk.1.cross_attn_k.weight"},
        {"missing conv bias", drop("enc.conv2.bias"), EKV_ERR_INVALID_FILE, "enc.conv2.bias"},
        {"missing encoder norm", drop("enc.output_norm.weight"), EKV_ERR_INVALID_FILE, "enc.output_norm.weight"},
        {"mel bins contradict conv1", set_u32("whisper.encoder.mel_bins", 128), EKV_ERR_INVALID_FILE,
         "enc.conv1.weight"},
        {"heads do not divide d_model", set_u32("whisper.decoder.attention.head_count", 5), EKV_ERR_UNSUPPORTED,
         "5 heads"},
        {"missing block count", [](Variant& v) {
             for (size_t i = 0; i < v.meta.size(); ++i)
                 if (v.meta[i].first == "whisper.encoder.block_count")
                     v.meta.erase(v.meta.begin() + static_cast<std::ptrdiff_t>(i));
         },
         EKV_ERR_INVALID_FILE, "whisper.encoder.block_count"},
        {"F16 bias", [](Variant& v) {
             for (auto& t : v.tensors)
                 if (t.name == "enc.blk.0.attn_q.bias") {
                     t.type = 1;  // F16: half the bytes
                     t.data.resize(t.data.size() / 2);
                 }
         },
         EKV_ERR_UNSUPPORTED, "enc.blk.0.attn_q.bias"},
    };
    for (const Case& k : cases) {
        Variant v = base;
        k.edit(v);
        const std::string path = write_variant(v, "whisper_bad.gguf");
        std::string message;
        EXPECT_EQ(load_status(path, &message), k.expect) << k.what << ": " << message;
        EXPECT_NE(message.find(k.mentions), std::string::npos) << k.what << ": " << message;
        std::remove(path.c_str());
    }
}

}  // namespace
