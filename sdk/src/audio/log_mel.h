// Whisper's log-mel spectrogram, computed as Hugging Face's
// WhisperFeatureExtractor does: the waveform padded with zeros (or cut) to
// 30 s, a centred STFT (reflect padding, periodic Hann window of 400
// samples, hop 160), power spectrum, Slaney mel filters with Slaney
// normalization, log10(max(mel, 1e-10)), floored at the maximum - 8, then
// (x + 4) / 4. Output: [n_mel][3000], mel bin major, as HF's input_features.
#pragma once
#include <cstdint>
#include <vector>

#include "core/status.h"

namespace ekv {

constexpr int32_t kWhisperSampleRate = 16000;
constexpr int32_t kWhisperFftSize = 400;
constexpr int32_t kWhisperHop = 160;
constexpr int32_t kWhisperChunkSamples = 30 * kWhisperSampleRate;
constexpr int32_t kWhisperFrames = kWhisperChunkSamples / kWhisperHop;  // 3000

// Slaney-scale mel filters over the n_fft / 2 + 1 frequency bins of
// [0, sample_rate / 2], Slaney (area) normalized, 0 to 8 kHz: [n_mel][n_bins]
// (librosa's / HF's mel_filter_bank(norm="slaney", mel_scale="slaney")).
std::vector<double> whisper_mel_filters(int32_t n_mel, int32_t n_fft = kWhisperFftSize,
                                        int32_t sample_rate = kWhisperSampleRate);

// 16 kHz mono samples -> [n_mel][kWhisperFrames]. Audio past 30 s is dropped
// (HF truncates likewise). n_mel: 80 or 128 (any value in [1, 256] works).
Status whisper_log_mel(const float* pcm, int64_t n_samples, int32_t n_mel, std::vector<float>* out);

}  // namespace ekv
