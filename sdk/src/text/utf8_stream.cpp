#include "text/utf8_stream.h"

namespace ekv {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

void append_replacement(std::string* out) { out->append(kReplacement, 3); }

}  // namespace

void Utf8StreamDecoder::push_byte(uint8_t b, std::string* out) {
    if (held_len_ > 0) {
        if (b >= next_lo_ && b <= next_hi_) {
            held_[held_len_++] = b;
            next_lo_ = 0x80;
            next_hi_ = 0xBF;
            if (--need_ == 0) {
                out->append(reinterpret_cast<const char*>(held_), held_len_);
                held_len_ = 0;
            }
            return;
        }
        // The held prefix can never complete: it is one invalid subpart, and
        // this byte starts afresh.
        append_replacement(out);
        held_len_ = 0;
    }
    if (b < 0x80) {
        out->push_back(static_cast<char>(b));
        return;
    }
    next_lo_ = 0x80;
    next_hi_ = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        need_ = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need_ = 2;
        if (b == 0xE0) next_lo_ = 0xA0;  // no overlong forms
        if (b == 0xED) next_hi_ = 0x9F;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
        need_ = 3;
        if (b == 0xF0) next_lo_ = 0x90;  // no overlong forms
        if (b == 0xF4) next_hi_ = 0x8F;  // nothing above U+10FFFF
    } else {
        append_replacement(out);  // continuation byte or impossible lead
        return;
    }
    held_[0] = b;
    held_len_ = 1;
}

void Utf8StreamDecoder::push(std::string_view bytes, std::string* out) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    size_t n = bytes.size();
    size_t i = 0;
    while (i < n) {
        if (held_len_ == 0 && p[i] < 0x80) {
            // Copy ASCII runs in one go.
            size_t j = i + 1;
            while (j < n && p[j] < 0x80) ++j;
            out->append(bytes.data() + i, j - i);
            i = j;
            continue;
        }
        push_byte(p[i], out);
        ++i;
    }
}

void Utf8StreamDecoder::flush(std::string* out) {
    if (held_len_ > 0) append_replacement(out);
    held_len_ = 0;
}

void utf8_sanitize(std::string_view bytes, std::string* out) {
    Utf8StreamDecoder d;
    d.push(bytes, out);
    d.flush(out);
}

}  // namespace ekv
