// Audio input and the encoder of encoder-decoder models (Whisper).
#include <cstdlib>
#include <cstring>

#include "api/api_internal.h"
#include "audio/log_mel.h"
#include "audio/wav.h"

using namespace ekv;

namespace {

Status check_sample_rate(int32_t sample_rate) {
    if (sample_rate != kWhisperSampleRate)
        return Error(EKV_ERR_INVALID_ARGUMENT, "audio at %d Hz: Whisper takes %d Hz (resample first)", sample_rate,
                     kWhisperSampleRate);
    return Status::Ok();
}

Status check_pcm(const float* pcm, int32_t n_samples) {
    if (n_samples < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "n_samples %d is negative", n_samples);
    if (n_samples > 0 && !pcm) return Error(EKV_ERR_INVALID_ARGUMENT, "pcm is NULL");
    return Status::Ok();
}

Status check_pair(const ekv_model* model, const ekv_cache* cache) {
    EKV_CHECK_HANDLE(model, "model");
    EKV_CHECK_HANDLE(cache, "cache");
    if (cache->owner != model) return Error(EKV_ERR_MODEL_MISMATCH, "the cache was created for another model");
    return Status::Ok();
}

Status encode_mel(ekv_model* model, ekv_cache* cache, const float* mel, int32_t n_mel, int32_t n_frames) {
    const Model& m = *model->model;
    api::CacheUse use(cache);
    EKV_TRY(use.status());
    const CancelSet cancel = api::cancel_set(nullptr, cache);
    if (cancel.raised()) return Error(EKV_ERR_CANCELLED, "cancelled before encoding");
    Session& s = *cache->session;
    s.ws().cancel = cancel;
    const Status st = m.arch->encode(s.cache(), s.ws(), mel, n_mel, n_frames);
    s.ws().cancel = CancelSet();
    return st;
}

}  // namespace

extern "C" {

ekv_status ekv_audio_read_wav(const char* path, float** out_pcm, int32_t* n_samples, int32_t* sample_rate) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(path, "path");
        EKV_CHECK_HANDLE(out_pcm, "out_pcm");
        EKV_CHECK_HANDLE(n_samples, "n_samples");
        PcmAudio audio;
        EKV_TRY(read_wav_file(path, kWhisperSampleRate, &audio));
        if (audio.samples.size() > static_cast<size_t>(INT32_MAX))
            return Error(EKV_ERR_UNSUPPORTED, "%s holds more than 2^31 samples", path);
        const size_t bytes = audio.samples.size() * sizeof(float);
        float* pcm = static_cast<float*>(std::malloc(bytes ? bytes : 1));
        if (!pcm) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of samples", bytes);
        if (bytes) std::memcpy(pcm, audio.samples.data(), bytes);
        *out_pcm = pcm;
        *n_samples = static_cast<int32_t>(audio.samples.size());
        if (sample_rate) *sample_rate = audio.sample_rate;
        return Status::Ok();
    });
}

void ekv_audio_free(float* pcm) { std::free(pcm); }

ekv_status ekv_audio_log_mel(const float* pcm, int32_t n_samples, int32_t sample_rate, int32_t n_mel, float* out,
                             size_t out_len) {
    return api::guarded([&]() -> Status {
        EKV_TRY(check_pcm(pcm, n_samples));
        EKV_CHECK_HANDLE(out, "out");
        EKV_TRY(check_sample_rate(sample_rate));
        if (n_mel < 1 || n_mel > 256) return Error(EKV_ERR_INVALID_ARGUMENT, "n_mel %d is out of range [1, 256]", n_mel);
        const size_t need = static_cast<size_t>(n_mel) * kWhisperFrames;
        if (out_len < need)
            return Error(EKV_ERR_BUFFER_TOO_SMALL, "out holds %zu floats, %zu needed", out_len, need);
        std::vector<float> mel;
        EKV_TRY(whisper_log_mel(pcm, n_samples, n_mel, &mel));
        std::memcpy(out, mel.data(), need * sizeof(float));
        return Status::Ok();
    });
}

ekv_status ekv_encode_audio(ekv_model* model, ekv_cache* cache, const float* pcm, int32_t n_samples,
                            int32_t sample_rate) {
    return api::guarded([&]() -> Status {
        EKV_TRY(check_pair(model, cache));
        EKV_TRY(check_pcm(pcm, n_samples));
        EKV_TRY(check_sample_rate(sample_rate));
        // The model's mel bins (80, or 128 for large-v3); a model without the
        // key has no encoder, and its encode() says so.
        const Model& m = *model->model;
        int64_t n_mel = 80;
        m.file.meta.get_int(m.info().architecture + ".encoder.mel_bins", &n_mel);
        if (n_mel < 1 || n_mel > 256) return Error(EKV_ERR_INVALID_FILE, "the model's mel_bins %lld is invalid",
                                                   static_cast<long long>(n_mel));
        std::vector<float> mel;
        EKV_TRY(whisper_log_mel(pcm, n_samples, static_cast<int32_t>(n_mel), &mel));
        return encode_mel(model, cache, mel.data(), static_cast<int32_t>(n_mel), kWhisperFrames);
    });
}

ekv_status ekv_encode_mel(ekv_model* model, ekv_cache* cache, const float* mel, int32_t n_mel, int32_t n_frames) {
    return api::guarded([&]() -> Status {
        EKV_TRY(check_pair(model, cache));
        EKV_CHECK_HANDLE(mel, "mel");
        if (n_mel <= 0 || n_frames <= 0)
            return Error(EKV_ERR_INVALID_ARGUMENT, "a %d x %d spectrogram is empty", n_mel, n_frames);
        return encode_mel(model, cache, mel, n_mel, n_frames);
    });
}

}  // extern "C"
