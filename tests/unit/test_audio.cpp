// The audio front end: the WAV reader (good files and every kind of bad
// one), the FFT, and Whisper's log-mel spectrogram against HF's
// WhisperFeatureExtractor (fixtures from tools/gen_tiny_whisper.py).
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstring>
#include <fstream>
#include <sstream>

#include "audio/fft.h"
#include "audio/log_mel.h"
#include "audio/wav.h"
#include "core/json.h"
#include "model/test_util.h"

namespace {

using ekv::PcmAudio;

std::string whisper_dir() { return ekv_test::fixtures_dir() + "/tiny_whisper"; }

void put16(std::vector<uint8_t>& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v));
    b.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A WAV file: RIFF header, a fmt chunk, optional extra chunk, data chunk.
struct WavSpec {
    uint16_t tag = 1;  // PCM
    uint16_t channels = 1;
    uint32_t rate = 16000;
    uint16_t bits = 16;
    int32_t block_align = -1;  // -1: consistent
    std::vector<uint8_t> data;
    bool data_first = false;
    bool junk_chunk = false;  // an odd-sized unknown chunk before fmt
};

std::vector<uint8_t> make_wav(const WavSpec& s) {
    std::vector<uint8_t> fmt, body;
    put16(fmt, s.tag);
    put16(fmt, s.channels);
    put32(fmt, s.rate);
    const uint16_t align = s.block_align >= 0 ? static_cast<uint16_t>(s.block_align)
                                              : static_cast<uint16_t>(s.channels * s.bits / 8);
    put32(fmt, s.rate * align);
    put16(fmt, align);
    put16(fmt, s.bits);
    auto chunk = [&](const char* id, const std::vector<uint8_t>& payload) {
        body.insert(body.end(), id, id + 4);
        put32(body, static_cast<uint32_t>(payload.size()));
        body.insert(body.end(), payload.begin(), payload.end());
        if (payload.size() % 2) body.push_back(0);
    };
    if (s.junk_chunk) chunk("LIST", {1, 2, 3});
    if (s.data_first) chunk("data", s.data);
    chunk("fmt ", fmt);
    if (!s.data_first) chunk("data", s.data);
    std::vector<uint8_t> out = {'R', 'I', 'F', 'F'};
    put32(out, static_cast<uint32_t>(body.size() + 4));
    out.insert(out.end(), {'W', 'A', 'V', 'E'});
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

std::vector<uint8_t> pcm16_bytes(const std::vector<int16_t>& v) {
    std::vector<uint8_t> b;
    for (int16_t x : v) put16(b, static_cast<uint16_t>(x));
    return b;
}

ekv::Status parse(const std::vector<uint8_t>& bytes, PcmAudio* out, int32_t rate = 16000) {
    return ekv::parse_wav(bytes.data(), bytes.size(), rate, out);
}

TEST(AudioWav, ReadsPcm16Mono) {
    WavSpec s;
    s.data = pcm16_bytes({0, 16384, -32768, 32767});
    s.junk_chunk = true;
    PcmAudio a;
    ASSERT_TRUE(parse(make_wav(s), &a).ok());
    ASSERT_EQ(a.samples.size(), 4u);
    EXPECT_EQ(a.sample_rate, 16000);
    EXPECT_EQ(a.channels_in_file, 1);
    EXPECT_FLOAT_EQ(a.samples[1], 0.5f);
    EXPECT_FLOAT_EQ(a.samples[2], -1.0f);
    EXPECT_FLOAT_EQ(a.samples[3], 32767.0f / 32768.0f);
}

TEST(AudioWav, AveragesStereoToMono) {
    WavSpec s;
    s.channels = 2;
    s.data = pcm16_bytes({1000, 3000, -4000, 0});
    PcmAudio a;
    ASSERT_TRUE(parse(make_wav(s), &a).ok());
    ASSERT_EQ(a.samples.size(), 2u);
    EXPECT_EQ(a.channels_in_file, 2);
    EXPECT_FLOAT_EQ(a.samples[0], 2000.0f / 32768.0f);
    EXPECT_FLOAT_EQ(a.samples[1], -2000.0f / 32768.0f);
}

TEST(AudioWav, ReadsFloat32AndExtensible) {
    const float values[3] = {0.25f, -0.75f, 1.0f};
    WavSpec s;
    s.tag = 3;
    s.bits = 32;
    s.data.resize(sizeof values);
    std::memcpy(s.data.data(), values, sizeof values);
    PcmAudio a;
    ASSERT_TRUE(parse(make_wav(s), &a).ok());
    ASSERT_EQ(a.samples.size(), 3u);
    EXPECT_EQ(a.samples[1], -0.75f);

    // WAVE_FORMAT_EXTENSIBLE with the PCM sub-format GUID.
    std::vector<uint8_t> wav = make_wav(WavSpec{});
    std::vector<uint8_t> fmt;
    put16(fmt, 0xFFFE);
    put16(fmt, 1);
    put32(fmt, 16000);
    put32(fmt, 32000);
    put16(fmt, 2);
    put16(fmt, 16);
    put16(fmt, 22);  // cbSize
    put16(fmt, 16);  // valid bits
    put32(fmt, 4);   // channel mask
    put16(fmt, 1);   // sub-format: PCM
    fmt.resize(40, 0);
    std::vector<uint8_t> ext = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' '};
    put32(ext, 40);
    ext.insert(ext.end(), fmt.begin(), fmt.end());
    ext.insert(ext.end(), {'d', 'a', 't', 'a'});
    put32(ext, 2);
    put16(ext, 8192);
    const uint32_t riff = static_cast<uint32_t>(ext.size() - 8);
    std::memcpy(ext.data() + 4, &riff, 4);
    ASSERT_TRUE(parse(ext, &a).ok()) << parse(ext, &a).message();
    ASSERT_EQ(a.samples.size(), 1u);
    EXPECT_FLOAT_EQ(a.samples[0], 0.25f);
}

struct BadWav {
    const char* what;
    WavSpec spec;
    ekv_status expect;
};

TEST(AudioWav, RefusesUnsupportedAndMalformedFiles) {
    std::vector<BadWav> cases;
    WavSpec s;
    s.data = pcm16_bytes({1, 2, 3, 4});
    auto with = [&](const char* what, ekv_status st, auto change) {
        WavSpec c = s;
        change(c);
        cases.push_back({what, c, st});
    };
    with("8-bit PCM", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.bits = 8; });
    with("24-bit PCM", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.bits = 24; });
    with("64-bit float", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.tag = 3, c.bits = 64; });
    with("MS ADPCM", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.tag = 2; });
    with("mu-law", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.tag = 7, c.bits = 8; });
    with("44.1 kHz", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.rate = 44100; });
    with("3 channels", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.channels = 3; });
    with("0 channels", EKV_ERR_UNSUPPORTED, [](WavSpec& c) { c.channels = 0; });
    with("inconsistent block_align", EKV_ERR_INVALID_FILE, [](WavSpec& c) { c.block_align = 3; });
    with("data before fmt", EKV_ERR_INVALID_FILE, [](WavSpec& c) { c.data_first = true; });
    with("partial frame", EKV_ERR_INVALID_FILE, [](WavSpec& c) { c.channels = 2, c.data.resize(6); });
    with("zero sample rate", EKV_ERR_INVALID_FILE, [](WavSpec& c) { c.rate = 0; });
    for (const BadWav& b : cases) {
        PcmAudio a;
        const ekv::Status st = parse(make_wav(b.spec), &a, b.spec.rate == 0 ? 0 : 16000);
        EXPECT_EQ(st.code(), b.expect) << b.what << ": " << st.message();
        EXPECT_FALSE(st.message().empty()) << b.what;
    }
    // The rate is only enforced when asked for.
    WavSpec r = s;
    r.rate = 44100;
    PcmAudio a;
    EXPECT_TRUE(parse(make_wav(r), &a, 0).ok());
    EXPECT_EQ(a.sample_rate, 44100);
}

TEST(AudioWav, RefusesHostileStructure) {
    PcmAudio a;
    EXPECT_EQ(parse({}, &a).code(), EKV_ERR_INVALID_FILE);
    EXPECT_EQ(parse({'R', 'I', 'F', 'F', 4, 0, 0, 0, 'A', 'V', 'I', ' '}, &a).code(), EKV_ERR_INVALID_FILE);
    WavSpec s;
    s.data = pcm16_bytes({1, 2, 3, 4});
    const std::vector<uint8_t> good = make_wav(s);
    ASSERT_TRUE(parse(good, &a).ok());
    // Every truncation is refused (the RIFF size no longer fits), never read past.
    for (size_t n = 0; n < good.size(); ++n) {
        std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
        EXPECT_FALSE(parse(cut, &a).ok()) << n;
    }
    // A data chunk announcing more than the file holds.
    std::vector<uint8_t> big = good;
    const size_t data_size_at = big.size() - 8 - 4;
    const uint32_t huge = 0xFFFFFFF0u;
    std::memcpy(big.data() + data_size_at, &huge, 4);
    ekv::Status st = parse(big, &a);
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_FILE);
    EXPECT_NE(st.message().find("past the end"), std::string::npos) << st.message();
    // A fmt chunk too short to hold a format.
    std::vector<uint8_t> short_fmt = {'R', 'I', 'F', 'F', 16, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ', 4, 0, 0,
                                      0, 1, 0, 1, 0};
    EXPECT_EQ(parse(short_fmt, &a).code(), EKV_ERR_INVALID_FILE);
    // No data chunk at all.
    std::vector<uint8_t> no_data(good.begin(), good.end() - 16);
    const uint32_t riff = static_cast<uint32_t>(no_data.size() - 8);
    std::memcpy(no_data.data() + 4, &riff, 4);
    st = parse(no_data, &a);
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_FILE);
    EXPECT_NE(st.message().find("no data"), std::string::npos) << st.message();
    // Non-finite float samples.
    WavSpec f;
    f.tag = 3;
    f.bits = 32;
    const float bad[2] = {0.f, NAN};
    f.data.resize(sizeof bad);
    std::memcpy(f.data.data(), bad, sizeof bad);
    EXPECT_EQ(parse(make_wav(f), &a).code(), EKV_ERR_INVALID_FILE);
    // Byte flips anywhere: a status, never a crash.
    for (size_t i = 0; i < good.size(); ++i) {
        std::vector<uint8_t> flipped = good;
        flipped[i] ^= 0xA5;
        (void)parse(flipped, &a);
    }
}

TEST(AudioWav, ReadsTheFixtureFile) {
    PcmAudio a;
    ASSERT_TRUE(ekv::read_wav_file(whisper_dir() + "/speech.wav", 16000, &a).ok());
    EXPECT_EQ(a.samples.size(), 40000u);
    const ekv::Status missing = ekv::read_wav_file(whisper_dir() + "/no_such.wav", 16000, &a);
    EXPECT_EQ(missing.code(), EKV_ERR_IO);
}

TEST(AudioFft, MatchesTheDirectDft) {
    for (int32_t n : {1, 2, 7, 16, 97, 400}) {
        std::vector<std::complex<double>> in(static_cast<size_t>(n)), out(static_cast<size_t>(n));
        for (int32_t i = 0; i < n; ++i) in[static_cast<size_t>(i)] = {std::sin(0.37 * i * i + 1.0), std::cos(1.3 * i)};
        ekv::Fft fft(n);
        fft.forward(in.data(), out.data());
        double worst = 0;
        for (int32_t k = 0; k < n; ++k) {
            std::complex<double> want = 0;
            for (int32_t j = 0; j < n; ++j)
                want += in[static_cast<size_t>(j)] * std::polar(1.0, -2.0 * M_PI * static_cast<double>(j * k % n) / n);
            worst = std::max(worst, std::abs(want - out[static_cast<size_t>(k)]));
        }
        EXPECT_LT(worst, 1e-9 * n) << "n = " << n;
    }
}

TEST(AudioLogMel, FiltersAreSlaneyTriangles) {
    for (int32_t n_mel : {80, 128}) {
        const std::vector<double> f = ekv::whisper_mel_filters(n_mel);
        ASSERT_EQ(f.size(), static_cast<size_t>(n_mel) * 201);
        for (int32_t m = 0; m < n_mel; ++m) {
            double area = 0;
            int peaks = 0;
            for (int32_t k = 0; k < 201; ++k) {
                const double w = f[static_cast<size_t>(m) * 201 + k];
                EXPECT_GE(w, 0.0);
                area += w;
                if (k > 0 && k < 200 && w > f[static_cast<size_t>(m) * 201 + k - 1] &&
                    w >= f[static_cast<size_t>(m) * 201 + k + 1])
                    ++peaks;
            }
            EXPECT_GT(area, 0.0) << "filter " << m << " of " << n_mel << " is empty";
            EXPECT_LE(peaks, 1) << "filter " << m;
        }
    }
}

struct MelReference {
    int64_t n_samples = 0;
    std::vector<int32_t> frames;
    std::vector<std::vector<double>> values;
    std::vector<double> frame_means;
};

bool load_mel_reference(int32_t n_mel, MelReference* ref) {
    std::ifstream in(whisper_dir() + "/mel_ref.json");
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    ekv::json::Value doc;
    if (!ekv::json::parse(ss.str(), &doc).ok()) return false;
    const ekv::json::Value* set = doc.get(std::to_string(n_mel));
    if (!set || !doc.get("n_samples")) return false;
    ref->n_samples = static_cast<int64_t>(doc.get("n_samples")->num);
    ref->frames = ekv_test::int_array(set->get("frames"));
    for (const auto& row : set->get("values")->arr) {
        ref->values.emplace_back();
        for (const auto& v : row.arr) ref->values.back().push_back(v.num);
    }
    for (const auto& v : set->get("frame_means")->arr) ref->frame_means.push_back(v.num);
    return ref->values.size() == ref->frames.size() && ref->frame_means.size() == 3000;
}

class AudioLogMelHF : public ::testing::TestWithParam<int32_t> {};

// HF computes in float32 (torch.stft); edgekv in double. 1e-4 on values of
// order 1 is float32 rounding of the power spectrum and the log (measured:
// 1e-6 with 80 bins, 1.6e-5 with 128).
TEST_P(AudioLogMelHF, MatchesWhisperFeatureExtractor) {
    const int32_t n_mel = GetParam();
    MelReference ref;
    ASSERT_TRUE(load_mel_reference(n_mel, &ref)) << "missing or bad mel_ref.json";
    PcmAudio a;
    ASSERT_TRUE(ekv::read_wav_file(whisper_dir() + "/speech.wav", 16000, &a).ok());
    ASSERT_EQ(static_cast<int64_t>(a.samples.size()), ref.n_samples);
    std::vector<float> mel;
    ASSERT_TRUE(ekv::whisper_log_mel(a.samples.data(), static_cast<int64_t>(a.samples.size()), n_mel, &mel).ok());
    ASSERT_EQ(mel.size(), static_cast<size_t>(n_mel) * 3000);
    double worst = 0;
    for (size_t i = 0; i < ref.frames.size(); ++i)
        for (int32_t m = 0; m < n_mel; ++m)
            worst = std::max(worst, std::fabs(mel[static_cast<size_t>(m) * 3000 + ref.frames[i]] -
                                              ref.values[i][static_cast<size_t>(m)]));
    EXPECT_LT(worst, 1e-4);
    double worst_mean = 0;
    for (int32_t t = 0; t < 3000; ++t) {
        double mean = 0;
        for (int32_t m = 0; m < n_mel; ++m) mean += mel[static_cast<size_t>(m) * 3000 + t];
        worst_mean = std::max(worst_mean, std::fabs(mean / n_mel - ref.frame_means[static_cast<size_t>(t)]));
    }
    EXPECT_LT(worst_mean, 2e-5);
}

INSTANTIATE_TEST_SUITE_P(Bins, AudioLogMelHF, ::testing::Values(80, 128));

TEST(AudioLogMel, SilenceIsTheFloor) {
    std::vector<float> mel;
    ASSERT_TRUE(ekv::whisper_log_mel(nullptr, 0, 80, &mel).ok());
    for (float v : mel) ASSERT_FLOAT_EQ(v, -1.5f);  // (log10(1e-10) + 4) / 4
}

TEST(AudioLogMel, KeepsTheFirst30Seconds) {
    std::vector<float> pcm(31 * 16000);
    for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = 0.3f * std::sin(0.05f * static_cast<float>(i % 5000));
    std::vector<float> whole, cut;
    ASSERT_TRUE(ekv::whisper_log_mel(pcm.data(), static_cast<int64_t>(pcm.size()), 80, &whole).ok());
    ASSERT_TRUE(ekv::whisper_log_mel(pcm.data(), 30 * 16000, 80, &cut).ok());
    EXPECT_EQ(whole, cut);
}

TEST(AudioLogMel, RefusesBadInput) {
    std::vector<float> mel;
    const float pcm[3] = {0.f, INFINITY, 0.f};
    EXPECT_EQ(ekv::whisper_log_mel(pcm, 3, 80, &mel).code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv::whisper_log_mel(pcm, 1, 0, &mel).code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv::whisper_log_mel(pcm, 1, 1000, &mel).code(), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv::whisper_log_mel(nullptr, 5, 80, &mel).code(), EKV_ERR_INVALID_ARGUMENT);
}

}  // namespace
