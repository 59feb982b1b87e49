#include "audio/log_mel.h"

#include <algorithm>
#include <cmath>
#include <complex>

#include "audio/fft.h"

namespace ekv {
namespace {

// Slaney's mel scale: linear below 1 kHz, logarithmic above.
constexpr double kMinLogHz = 1000.0, kMinLogMel = 15.0;
const double kLogStep = std::log(6.4) / 27.0;

double hz_to_mel(double hz) { return hz < kMinLogHz ? 3.0 * hz / 200.0 : kMinLogMel + std::log(hz / kMinLogHz) / kLogStep; }
double mel_to_hz(double mel) {
    return mel < kMinLogMel ? 200.0 * mel / 3.0 : kMinLogHz * std::exp(kLogStep * (mel - kMinLogMel));
}

// Index into the signal after centring: reflect padding by `pad` on both
// sides, the edge sample itself not repeated (numpy/torch "reflect").
int64_t reflect_index(int64_t i, int64_t n) {
    if (n == 1) return 0;
    const int64_t period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

}  // namespace

std::vector<double> whisper_mel_filters(int32_t n_mel, int32_t n_fft, int32_t sample_rate) {
    const int32_t n_bins = n_fft / 2 + 1;
    std::vector<double> filters(static_cast<size_t>(n_mel) * n_bins, 0.0);
    // n_mel + 2 edge frequencies evenly spaced in mel between 0 and 8 kHz.
    const double mel_lo = hz_to_mel(0.0), mel_hi = hz_to_mel(8000.0);
    std::vector<double> edge(static_cast<size_t>(n_mel) + 2);
    for (int32_t i = 0; i < n_mel + 2; ++i)
        edge[static_cast<size_t>(i)] = mel_to_hz(mel_lo + (mel_hi - mel_lo) * i / (n_mel + 1));
    for (int32_t m = 0; m < n_mel; ++m) {
        const double lo = edge[static_cast<size_t>(m)], mid = edge[static_cast<size_t>(m) + 1],
                     hi = edge[static_cast<size_t>(m) + 2];
        const double enorm = 2.0 / (hi - lo);  // equal area per filter
        for (int32_t k = 0; k < n_bins; ++k) {
            const double f = static_cast<double>(sample_rate / 2) * k / (n_bins - 1);
            const double rising = (f - lo) / (mid - lo), falling = (hi - f) / (hi - mid);
            const double w = std::max(0.0, std::min(rising, falling));
            filters[static_cast<size_t>(m) * n_bins + k] = w * enorm;
        }
    }
    return filters;
}

Status whisper_log_mel(const float* pcm, int64_t n_samples, int32_t n_mel, std::vector<float>* out) {
    if (n_mel < 1 || n_mel > 256) return Error(EKV_ERR_INVALID_ARGUMENT, "%d mel bins (1..256 supported)", n_mel);
    if (n_samples < 0 || (n_samples > 0 && !pcm))
        return Error(EKV_ERR_INVALID_ARGUMENT, "no samples (pcm is NULL or n_samples negative)");
    const int64_t n_fft = kWhisperFftSize, hop = kWhisperHop, pad = n_fft / 2, n_bins = n_fft / 2 + 1;
    // The 30-s window: the audio, then zeros.
    std::vector<double> signal(static_cast<size_t>(kWhisperChunkSamples), 0.0);
    const int64_t kept = std::min<int64_t>(n_samples, kWhisperChunkSamples);
    for (int64_t i = 0; i < kept; ++i) {
        if (!std::isfinite(pcm[i])) return Error(EKV_ERR_INVALID_ARGUMENT, "sample %lld is not finite", static_cast<long long>(i));
        signal[static_cast<size_t>(i)] = pcm[i];
    }
    std::vector<double> window(static_cast<size_t>(n_fft));
    for (int64_t i = 0; i < n_fft; ++i) window[static_cast<size_t>(i)] = 0.5 - 0.5 * std::cos(2.0 * M_PI * i / n_fft);  // periodic
    const std::vector<double> filters = whisper_mel_filters(n_mel);

    Fft fft(static_cast<int32_t>(n_fft));
    std::vector<std::complex<double>> frame(static_cast<size_t>(n_fft)), spectrum(static_cast<size_t>(n_fft));
    std::vector<double> power(static_cast<size_t>(n_bins));
    // Each triangle covers a few bins: sum only over its nonzero range.
    std::vector<int64_t> first(static_cast<size_t>(n_mel)), last(static_cast<size_t>(n_mel));
    for (int32_t m = 0; m < n_mel; ++m) {
        const double* f = filters.data() + static_cast<size_t>(m) * n_bins;
        int64_t a = 0, b = n_bins;
        while (a < n_bins && f[a] == 0.0) ++a;
        while (b > a && f[b - 1] == 0.0) --b;
        first[static_cast<size_t>(m)] = a;
        last[static_cast<size_t>(m)] = b;
    }
    out->assign(static_cast<size_t>(n_mel) * kWhisperFrames, 0.f);
    float peak = -INFINITY;
    for (int64_t t = 0; t < kWhisperFrames; ++t) {
        for (int64_t i = 0; i < n_fft; ++i) {
            const int64_t src = reflect_index(t * hop + i - pad, kWhisperChunkSamples);
            frame[static_cast<size_t>(i)] = signal[static_cast<size_t>(src)] * window[static_cast<size_t>(i)];
        }
        fft.forward(frame.data(), spectrum.data());
        for (int64_t k = 0; k < n_bins; ++k) power[static_cast<size_t>(k)] = std::norm(spectrum[static_cast<size_t>(k)]);
        for (int32_t m = 0; m < n_mel; ++m) {
            const double* f = filters.data() + static_cast<size_t>(m) * n_bins;
            double mel = 0.0;
            for (int64_t k = first[static_cast<size_t>(m)]; k < last[static_cast<size_t>(m)]; ++k)
                mel += f[k] * power[static_cast<size_t>(k)];
            const float v = static_cast<float>(std::log10(std::max(mel, 1e-10)));
            (*out)[static_cast<size_t>(m) * kWhisperFrames + static_cast<size_t>(t)] = v;
            peak = std::max(peak, v);
        }
    }
    // Dynamic range of 80 dB below the loudest bin, then scaled to about [-1, 1].
    for (float& v : *out) v = (std::max(v, peak - 8.0f) + 4.0f) / 4.0f;
    return Status::Ok();
}

}  // namespace ekv
