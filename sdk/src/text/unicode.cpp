#include "text/unicode.h"

#include <array>

#include "text/unicode_tables.h"

namespace ekv::unicode {
namespace {

bool in_ranges(const CodepointRange* ranges, size_t count, uint32_t cp) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < ranges[mid].first) {
            hi = mid;
        } else if (cp > ranges[mid].last) {
            lo = mid + 1;
        } else {
            return true;
        }
    }
    return false;
}

uint8_t classify_slow(uint32_t cp) {
    uint8_t c = 0;
    if (in_ranges(kLetterRanges, kLetterRangesCount, cp)) c |= kClassLetter;
    if (in_ranges(kNumberRanges, kNumberRangesCount, cp)) c |= kClassNumber;
    if (in_ranges(kWhitespaceRanges, kWhitespaceRangesCount, cp)) c |= kClassWhitespace;
    return c;
}

// Most text is ASCII: answer it from a table built once from the same ranges.
struct AsciiClasses {
    std::array<uint8_t, 128> cls{};
    AsciiClasses() {
        for (uint32_t cp = 0; cp < 128; ++cp) cls[cp] = classify_slow(cp);
    }
};

struct ByteAlphabet {
    std::array<uint32_t, 256> to_cp{};
    std::array<int16_t, 512> from_cp{};  // the alphabet lies below U+0200
    ByteAlphabet() {
        from_cp.fill(-1);
        uint32_t next_extra = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                             (b >= 0xAE && b <= 0xFF);
            uint32_t cp = printable ? b : next_extra++;
            to_cp[b] = cp;
            from_cp[cp] = static_cast<int16_t>(b);
        }
    }
};

const AsciiClasses& ascii_classes() {
    static const AsciiClasses table;
    return table;
}

const ByteAlphabet& byte_alphabet() {
    static const ByteAlphabet table;
    return table;
}

}  // namespace

uint8_t classify(uint32_t cp) {
    if (cp < 128) return ascii_classes().cls[cp];
    return classify_slow(cp);
}

size_t decode_utf8(std::string_view s, size_t pos, uint32_t* cp) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
    size_t avail = s.size() - pos;
    uint8_t b0 = p[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t len;
    uint32_t value;
    uint8_t lo = 0x80, hi = 0xBF;  // valid range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        value = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        value = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;  // overlong
        if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        value = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;  // overlong
        if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
        *cp = kInvalidCodepoint;
        return 1;
    }
    if (avail < len || p[1] < lo || p[1] > hi) {
        *cp = kInvalidCodepoint;
        return 1;
    }
    for (size_t i = 1; i < len; ++i) {
        if (i > 1 && (p[i] & 0xC0) != 0x80) {
            *cp = kInvalidCodepoint;
            return 1;
        }
        value = (value << 6) | (p[i] & 0x3F);
    }
    *cp = value;
    return len;
}

void append_utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
        out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

uint32_t byte_to_codepoint(uint8_t b) { return byte_alphabet().to_cp[b]; }

bool codepoint_to_byte(uint32_t cp, uint8_t* b) {
    if (cp >= 512) return false;
    int16_t v = byte_alphabet().from_cp[cp];
    if (v < 0) return false;
    *b = static_cast<uint8_t>(v);
    return true;
}

}  // namespace ekv::unicode
