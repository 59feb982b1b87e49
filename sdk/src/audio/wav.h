// RIFF/WAVE reader for speech input: 16-bit PCM or 32-bit IEEE float, mono
// or stereo (averaged to mono), as float samples in [-1, 1]. Everything else
// (8/24-bit, compressed formats, truncated or inconsistent chunks) is refused
// with a Status that says what the file holds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace ekv {

struct PcmAudio {
    std::vector<float> samples;  // mono
    int32_t sample_rate = 0;
    int32_t channels_in_file = 0;  // 1, or 2 when the file was stereo
};

// required_rate > 0 refuses files of another sample rate (EKV_ERR_UNSUPPORTED:
// resampling is the caller's job); 0 accepts any rate.
Status parse_wav(const uint8_t* data, size_t size, int32_t required_rate, PcmAudio* out);
Status read_wav_file(const std::string& path, int32_t required_rate, PcmAudio* out);

}  // namespace ekv
