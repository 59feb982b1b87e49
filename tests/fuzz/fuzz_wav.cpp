// Fuzz target: bytes -> the WAV reader (sdk/src/audio/wav.cpp), in memory
// (parse_wav, any rate and 16 kHz only) and through the C ABI from a file
// (ekv_audio_read_wav), then short audio on to the log-mel front end.
// Invariants:
//   - a refusal is EKV_ERR_INVALID_FILE or EKV_ERR_UNSUPPORTED with a message;
//   - an accepted file's samples are exactly its data chunk decoded: one per
//     frame (data bytes / block_align), PCM16 as int16 / 32768, float as
//     stored, stereo averaged; all finite;
//   - the 16 kHz-only read agrees with the any-rate read (the same samples at
//     16 kHz, EKV_ERR_UNSUPPORTED at another rate), and so does the C ABI;
//   - the log-mel spectrogram of accepted short audio (sampled: see
//     kMelEvery) is n_mel x 3000 finite
//     values within Whisper's 8-unit (80 dB) range, scaled by 1/4.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#define EKV_EXPERIMENTAL
#include "audio/wav.h"
#include "edgekv.h"

namespace {

// A spectrogram always covers 30 s whatever the input (seconds of CPU under
// ASan and coverage): only short audio goes on to it, and only the first
// accepted input of a process, then one in kMelEvery, so the fuzzer spends
// its time on the parser. A single input replayed alone always gets it.
constexpr size_t kMaxMelSamples = 4000;
constexpr uint64_t kMelFirst = 1, kMelEvery = 65536;

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
    return static_cast<uint32_t>(le16(p)) | (static_cast<uint32_t>(le16(p + 2)) << 16);
}

bool is_refusal(ekv_status st) { return st == EKV_ERR_INVALID_FILE || st == EKV_ERR_UNSUPPORTED; }

// The samples an accepted file must give, found independently: the first
// "fmt " and "data" chunks of the RIFF chain.
std::vector<float> expected_samples(const uint8_t* data, size_t size) {
    const uint8_t* fmt = nullptr;
    size_t pos = 12;
    while (pos + 8 <= size) {
        const uint8_t* chunk = data + pos;
        const size_t body = le32(chunk + 4);
        if (!std::memcmp(chunk, "fmt ", 4) && !fmt) fmt = chunk + 8;
        if (!std::memcmp(chunk, "data", 4)) {
            if (!fmt || pos + 8 + body > size) __builtin_trap();  // accepted, so both exist
            const bool pcm = le16(fmt + 14) == 16;
            const size_t channels = le16(fmt + 2), width = pcm ? 2 : 4;
            const size_t frames = body / (channels * width);
            std::vector<float> out(frames);
            for (size_t i = 0; i < frames; ++i) {
                float ch[2] = {0.f, 0.f};
                for (size_t c = 0; c < channels; ++c) {
                    const uint8_t* s = chunk + 8 + (i * channels + c) * width;
                    if (pcm) {
                        ch[c] = static_cast<float>(static_cast<int16_t>(le16(s))) / 32768.0f;
                    } else {
                        const uint32_t bits = le32(s);
                        std::memcpy(&ch[c], &bits, sizeof bits);
                    }
                }
                out[i] = channels == 2 ? 0.5f * (ch[0] + ch[1]) : ch[0];
            }
            return out;
        }
        pos += 8 + body + (body & 1);
    }
    __builtin_trap();  // accepted without a data chunk
}

bool same_samples(const std::vector<float>& a, const float* b, size_t n) {
    return a.size() == n && (n == 0 || std::memcmp(a.data(), b, n * sizeof(float)) == 0);
}

// ekv_audio_read_wav on the bytes, through a memory file.
void check_c_abi(const uint8_t* data, size_t size, ekv_status want, const ekv::PcmAudio& audio) {
    const int fd = memfd_create("fuzz_wav", 0);
    if (fd < 0) return;  // no memfd here: the in-memory checks still ran
    bool written = true;
    for (size_t done = 0; done < size && written;) {
        const ssize_t n = ::write(fd, data + done, size - done);
        written = n > 0;
        done += written ? static_cast<size_t>(n) : 0;
    }
    if (written) {
        const std::string path = "/proc/self/fd/" + std::to_string(fd);
        float* pcm = nullptr;
        int32_t n = -1, rate = -1;
        const ekv_status st = ekv_audio_read_wav(path.c_str(), &pcm, &n, &rate);
        if (st != want) __builtin_trap();
        if (st == EKV_OK) {
            if (n < 0 || rate != EKV_AUDIO_SAMPLE_RATE || !same_samples(audio.samples, pcm, static_cast<size_t>(n)))
                __builtin_trap();
        } else if (pcm || ekv_last_error()[0] == '\0') {
            __builtin_trap();
        }
        ekv_audio_free(pcm);
    }
    ::close(fd);
}

void check_log_mel(const std::vector<float>& samples) {
    constexpr int32_t kMel = 80;
    std::vector<float> mel(static_cast<size_t>(kMel) * EKV_AUDIO_MEL_FRAMES);
    if (ekv_audio_log_mel(samples.data(), static_cast<int32_t>(samples.size()), EKV_AUDIO_SAMPLE_RATE, kMel,
                          mel.data(), mel.size()) != EKV_OK)
        __builtin_trap();
    float lo = mel[0], hi = mel[0];
    for (float v : mel) {
        if (!std::isfinite(v)) __builtin_trap();
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    if (hi - lo > 2.0f + 1e-4f) __builtin_trap();  // floored 8 below the peak, then / 4
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    ekv::PcmAudio any, at16k;
    const ekv::Status st_any = ekv::parse_wav(data, size, 0, &any);
    const ekv::Status st_16k = ekv::parse_wav(data, size, EKV_AUDIO_SAMPLE_RATE, &at16k);
    for (const ekv::Status* st : {&st_any, &st_16k})
        if (!st->ok() && (!is_refusal(st->code()) || st->message().empty())) __builtin_trap();

    if (st_any.ok()) {
        if (any.channels_in_file != 1 && any.channels_in_file != 2) __builtin_trap();
        if (any.sample_rate <= 0 || any.sample_rate > 1000000) __builtin_trap();
        const std::vector<float> want = expected_samples(data, size);
        if (!same_samples(want, any.samples.data(), any.samples.size())) __builtin_trap();
        for (float v : any.samples)
            if (!std::isfinite(v)) __builtin_trap();
        if (any.sample_rate == EKV_AUDIO_SAMPLE_RATE) {
            if (!st_16k.ok() || !same_samples(any.samples, at16k.samples.data(), at16k.samples.size()))
                __builtin_trap();
        } else if (st_16k.code() != EKV_ERR_UNSUPPORTED) {
            __builtin_trap();
        }
        static uint64_t accepted = 0;
        if (any.samples.size() <= kMaxMelSamples && (accepted < kMelFirst || accepted % kMelEvery == 0))
            check_log_mel(any.samples);
        ++accepted;
    } else if (st_16k.ok()) {
        __builtin_trap();  // the stricter read accepted what the other refused
    }
    check_c_abi(data, size, st_16k.code(), at16k);
    return 0;
}
