#include "json_writer.h"

#include <cmath>
#include <cstdio>

namespace edgekv_cli {

namespace {

// Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 if the
// bytes there are not one (overlong, surrogate, truncated, > U+10FFFF).
size_t utf8_sequence_length(const unsigned char* s, size_t avail) {
    const unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; }
    else return 0;
    if (avail < n) return 0;
    for (size_t i = 1; i < n; ++i) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_for_length[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

}  // namespace

std::string json_escape(const char* data, size_t len) {
    std::string out;
    out.reserve(len + 8);
    const unsigned char* s = reinterpret_cast<const unsigned char*>(data);
    size_t i = 0;
    while (i < len) {
        const unsigned char c = s[i];
        switch (c) {
            case '"': out += "\\\""; ++i; continue;
            case '\\': out += "\\\\"; ++i; continue;
            case '\n': out += "\\n"; ++i; continue;
            case '\r': out += "\\r"; ++i; continue;
            case '\t': out += "\\t"; ++i; continue;
            case '\b': out += "\\b"; ++i; continue;
            case '\f': out += "\\f"; ++i; continue;
            default: break;
        }
        if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
            ++i;
            continue;
        }
        const size_t n = utf8_sequence_length(s + i, len - i);
        if (n == 0) {
            out += "\xEF\xBF\xBD";  // U+FFFD for one bad byte
            ++i;
        } else {
            out.append(data + i, n);
            i += n;
        }
    }
    return out;
}

void JsonWriter::before_value() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (!has_element_.empty()) {
        if (has_element_.back()) out_ += ',';
        has_element_.back() = true;
    }
}

JsonWriter& JsonWriter::begin_object() {
    before_value();
    out_ += '{';
    has_element_.push_back(false);
    return *this;
}

JsonWriter& JsonWriter::end_object() {
    out_ += '}';
    if (!has_element_.empty()) has_element_.pop_back();
    return *this;
}

JsonWriter& JsonWriter::begin_array() {
    before_value();
    out_ += '[';
    has_element_.push_back(false);
    return *this;
}

JsonWriter& JsonWriter::end_array() {
    out_ += ']';
    if (!has_element_.empty()) has_element_.pop_back();
    return *this;
}

JsonWriter& JsonWriter::key(const char* name) {
    before_value();
    out_ += '"';
    out_ += json_escape(name, std::char_traits<char>::length(name));
    out_ += "\":";
    after_key_ = true;
    return *this;
}

JsonWriter& JsonWriter::string(const char* data, size_t len) {
    before_value();
    out_ += '"';
    out_ += json_escape(data, len);
    out_ += '"';
    return *this;
}

JsonWriter& JsonWriter::value(const char* s) {
    if (s == nullptr) return null();
    return string(s, std::char_traits<char>::length(s));
}

JsonWriter& JsonWriter::value(bool b) {
    before_value();
    out_ += b ? "true" : "false";
    return *this;
}

JsonWriter& JsonWriter::signed_number(long long v) {
    before_value();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld", v);
    out_ += buf;
    return *this;
}

JsonWriter& JsonWriter::unsigned_number(unsigned long long v) {
    before_value();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llu", v);
    out_ += buf;
    return *this;
}

JsonWriter& JsonWriter::value(double v) {
    if (!std::isfinite(v)) return null();
    before_value();
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.10g", v);
    out_ += buf;
    return *this;
}

JsonWriter& JsonWriter::null() {
    before_value();
    out_ += "null";
    return *this;
}

}  // namespace edgekv_cli
