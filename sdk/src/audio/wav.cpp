#include "audio/wav.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

namespace ekv {
namespace {

constexpr uint16_t kFormatPcm = 1;
constexpr uint16_t kFormatFloat = 3;
constexpr uint16_t kFormatExtensible = 0xFFFE;
constexpr size_t kMaxFileBytes = size_t{1} << 31;  // ~18 hours of 16-bit mono at 16 kHz

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}

const char* format_name(uint16_t tag) {
    switch (tag) {
        case 2: return "MS ADPCM";
        case 6: return "A-law";
        case 7: return "mu-law";
        case 0x11: return "IMA ADPCM";
        case 0x55: return "MP3";
        default: return "compressed";
    }
}

struct Format {
    uint16_t tag = 0;
    uint16_t channels = 0;
    uint32_t sample_rate = 0;
    uint16_t block_align = 0;
    uint16_t bits = 0;
};

Status parse_format(const uint8_t* p, uint32_t size, Format* f) {
    if (size < 16) return Error(EKV_ERR_INVALID_FILE, "WAV fmt chunk is %u bytes (at least 16 expected)", size);
    f->tag = le16(p);
    f->channels = le16(p + 2);
    f->sample_rate = le32(p + 4);
    f->block_align = le16(p + 12);
    f->bits = le16(p + 14);
    if (f->tag == kFormatExtensible) {
        // The real format is the first two bytes of the sub-format GUID.
        if (size < 40) return Error(EKV_ERR_INVALID_FILE, "WAV extensible fmt chunk is %u bytes (40 expected)", size);
        f->tag = le16(p + 24);
    }
    if (f->tag != kFormatPcm && f->tag != kFormatFloat)
        return Error(EKV_ERR_UNSUPPORTED, "WAV sample format %u (%s) is not supported: use 16-bit PCM or 32-bit float",
                     f->tag, format_name(f->tag));
    if ((f->tag == kFormatPcm && f->bits != 16) || (f->tag == kFormatFloat && f->bits != 32))
        return Error(EKV_ERR_UNSUPPORTED, "WAV %s with %u bits per sample is not supported: use 16-bit PCM or 32-bit float",
                     f->tag == kFormatPcm ? "PCM" : "float", f->bits);
    if (f->channels != 1 && f->channels != 2)
        return Error(EKV_ERR_UNSUPPORTED, "WAV with %u channels is not supported (mono or stereo)", f->channels);
    if (f->block_align != f->channels * (f->bits / 8))
        return Error(EKV_ERR_INVALID_FILE, "WAV block_align %u does not match %u channels of %u bits", f->block_align,
                     f->channels, f->bits);
    if (f->sample_rate == 0 || f->sample_rate > 1000000)
        return Error(EKV_ERR_INVALID_FILE, "WAV sample rate %u Hz is invalid", f->sample_rate);
    return Status::Ok();
}

float sample_at(const uint8_t* p, const Format& f) {
    if (f.tag == kFormatPcm) return static_cast<float>(static_cast<int16_t>(le16(p))) / 32768.0f;
    const uint32_t bits = le32(p);
    float v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

Status decode_samples(const uint8_t* p, uint32_t bytes, const Format& f, PcmAudio* out) {
    if (bytes % f.block_align != 0)
        return Error(EKV_ERR_INVALID_FILE, "WAV data chunk of %u bytes is not a whole number of %u-byte frames", bytes,
                     f.block_align);
    const size_t frames = bytes / f.block_align;
    const size_t sample_bytes = f.bits / 8;
    std::vector<float> mono(frames);
    for (size_t i = 0; i < frames; ++i) {
        const uint8_t* frame = p + i * f.block_align;
        float v = sample_at(frame, f);
        if (f.channels == 2) v = 0.5f * (v + sample_at(frame + sample_bytes, f));
        if (!std::isfinite(v))
            return Error(EKV_ERR_INVALID_FILE, "WAV sample %zu is not a finite number", i);
        mono[i] = v;
    }
    out->samples = std::move(mono);
    out->sample_rate = static_cast<int32_t>(f.sample_rate);
    out->channels_in_file = f.channels;
    return Status::Ok();
}

}  // namespace

Status parse_wav(const uint8_t* data, size_t size, int32_t required_rate, PcmAudio* out) {
    if (!data || size < 12 || std::memcmp(data, "RIFF", 4) != 0 || std::memcmp(data + 8, "WAVE", 4) != 0)
        return Error(EKV_ERR_INVALID_FILE, "not a RIFF/WAVE file");
    const uint64_t riff_end = uint64_t{le32(data + 4)} + 8;
    if (riff_end > size)
        return Error(EKV_ERR_INVALID_FILE, "WAV file is truncated: its header announces %llu bytes, the file has %zu",
                     static_cast<unsigned long long>(riff_end), size);
    Format fmt;
    bool have_fmt = false;
    size_t pos = 12;
    while (pos + 8 <= riff_end) {
        const uint8_t* chunk = data + pos;
        const uint32_t chunk_size = le32(chunk + 4);
        const uint64_t body = pos + 8;
        if (body + chunk_size > riff_end)
            return Error(EKV_ERR_INVALID_FILE, "WAV chunk '%.4s' of %u bytes extends past the end of the file",
                         reinterpret_cast<const char*>(chunk), chunk_size);
        if (std::memcmp(chunk, "fmt ", 4) == 0) {
            if (have_fmt) return Error(EKV_ERR_INVALID_FILE, "WAV file has two fmt chunks");
            EKV_TRY(parse_format(data + body, chunk_size, &fmt));
            have_fmt = true;
        } else if (std::memcmp(chunk, "data", 4) == 0) {
            if (!have_fmt) return Error(EKV_ERR_INVALID_FILE, "WAV data chunk comes before the fmt chunk");
            if (required_rate > 0 && fmt.sample_rate != static_cast<uint32_t>(required_rate))
                return Error(EKV_ERR_UNSUPPORTED, "WAV sample rate is %u Hz; %d Hz is required (resample the audio)",
                             fmt.sample_rate, required_rate);
            return decode_samples(data + body, chunk_size, fmt, out);
        }
        pos = static_cast<size_t>(body + chunk_size + (chunk_size & 1));  // chunks are padded to even sizes
    }
    return Error(EKV_ERR_INVALID_FILE, have_fmt ? "WAV file has no data chunk" : "WAV file has no fmt chunk");
}

Status read_wav_file(const std::string& path, int32_t required_rate, PcmAudio* out) {
    struct Closer {
        void operator()(FILE* f) const { std::fclose(f); }
    };
    std::unique_ptr<FILE, Closer> f(std::fopen(path.c_str(), "rb"));
    if (!f) return Error(EKV_ERR_IO, "cannot open %s", path.c_str());
    if (std::fseek(f.get(), 0, SEEK_END) != 0) return Error(EKV_ERR_IO, "cannot read %s", path.c_str());
    const long end = std::ftell(f.get());
    if (end < 0 || std::fseek(f.get(), 0, SEEK_SET) != 0) return Error(EKV_ERR_IO, "cannot read %s", path.c_str());
    if (static_cast<unsigned long>(end) > kMaxFileBytes)
        return Error(EKV_ERR_UNSUPPORTED, "%s is larger than 2 GiB", path.c_str());
    std::vector<uint8_t> bytes(static_cast<size_t>(end));
    if (!bytes.empty() && std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size())
        return Error(EKV_ERR_IO, "cannot read %s", path.c_str());
    const Status st = parse_wav(bytes.data(), bytes.size(), required_rate, out);
    if (!st.ok()) return Error(st.code(), "%s: %s", path.c_str(), st.message().c_str());
    return Status::Ok();
}

}  // namespace ekv
