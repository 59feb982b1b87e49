// Utf8StreamDecoder: complete characters are released, unfinished tails held,
// invalid bytes replaced by U+FFFD per maximal invalid subpart (the Unicode /
// WHATWG practice that Python's bytes.decode("utf-8", "replace") follows).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "text/utf8_stream.h"

namespace {

using ekv::Utf8StreamDecoder;

const std::string R = "\xEF\xBF\xBD";  // U+FFFD

std::string sanitize(const std::string& bytes) {
    std::string out;
    ekv::utf8_sanitize(bytes, &out);
    return out;
}

TEST(Utf8Stream, AsciiPassesThrough) {
    Utf8StreamDecoder d;
    std::string out;
    d.push("hello ", &out);
    d.push("world", &out);
    EXPECT_EQ(out, "hello world");
    EXPECT_EQ(d.pending_bytes(), 0u);
}

TEST(Utf8Stream, HoldsSplitCharacters) {
    Utf8StreamDecoder d;
    std::string out;
    d.push("caf\xC3", &out);  // é = C3 A9
    EXPECT_EQ(out, "caf");
    EXPECT_EQ(d.pending_bytes(), 1u);
    d.push("\xA9!", &out);
    EXPECT_EQ(out, "caf\xC3\xA9!");

    // 😀 = F0 9F 98 80, one byte per push.
    out.clear();
    const char emoji[] = "\xF0\x9F\x98\x80";
    for (int i = 0; i < 3; ++i) {
        d.push(std::string(1, emoji[i]), &out);
        EXPECT_EQ(out, "");
        EXPECT_EQ(d.pending_bytes(), static_cast<size_t>(i + 1));
    }
    d.push(std::string(1, emoji[3]), &out);
    EXPECT_EQ(out, emoji);
    EXPECT_EQ(d.pending_bytes(), 0u);
}

TEST(Utf8Stream, InvalidBytesBecomeReplacement) {
    EXPECT_EQ(sanitize("\x80"), R);                 // lone continuation
    EXPECT_EQ(sanitize("a\xC3" "A"), "a" + R + "A"); // lead without continuation
    EXPECT_EQ(sanitize("\xC0\xAF"), R + R);         // overlong lead C0 is never valid
    EXPECT_EQ(sanitize("\xE0\x80\x80"), R + R + R);  // E0 needs A0..BF next
    EXPECT_EQ(sanitize("\xED\xA0\x80"), R + R + R);  // surrogate U+D800
    EXPECT_EQ(sanitize("\xF4\x90\x80\x80"), R + R + R + R);  // above U+10FFFF
    EXPECT_EQ(sanitize("\xF5"), R);
    EXPECT_EQ(sanitize("\xE2\x82"), R);             // truncated: one subpart, one U+FFFD
    EXPECT_EQ(sanitize("\xF0\x9F\x98" "x"), R + "x");
    EXPECT_EQ(sanitize("\xE2\x82\xAC"), "\xE2\x82\xAC");  // € is fine
}

TEST(Utf8Stream, FlushAndReset) {
    Utf8StreamDecoder d;
    std::string out;
    d.push("ok\xF0\x9F", &out);
    EXPECT_EQ(out, "ok");
    d.flush(&out);
    EXPECT_EQ(out, "ok" + R);
    EXPECT_EQ(d.pending_bytes(), 0u);
    d.flush(&out);  // nothing held: nothing added
    EXPECT_EQ(out, "ok" + R);

    out.clear();
    d.push("\xE4\xBD", &out);
    d.reset();
    d.push("A", &out);
    EXPECT_EQ(out, "A");
}

TEST(Utf8Stream, NeverHoldsAnInvalidPrefix) {
    // An impossible continuation is released at once rather than waiting.
    Utf8StreamDecoder d;
    std::string out;
    d.push("\xE0", &out);
    EXPECT_EQ(d.pending_bytes(), 1u);
    d.push("\x80", &out);
    EXPECT_EQ(out, R + R);
    EXPECT_EQ(d.pending_bytes(), 0u);
}

TEST(Utf8Stream, ChunkingDoesNotChangeTheResult) {
    std::mt19937 rng(1234);
    // Bytes biased towards UTF-8 structure so that valid and broken
    // sequences both occur often.
    const unsigned char alphabet[] = {'a', ' ', 0x80, 0x9F, 0xA0, 0xBF, 0xC2, 0xC3, 0xDF,
                                      0xE0, 0xE2, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
    for (int iter = 0; iter < 500; ++iter) {
        std::string bytes;
        const int n = static_cast<int>(rng() % 24);
        for (int i = 0; i < n; ++i) bytes += static_cast<char>(alphabet[rng() % sizeof alphabet]);
        const std::string whole = sanitize(bytes);
        Utf8StreamDecoder d;
        std::string out;
        for (size_t pos = 0; pos < bytes.size();) {
            size_t len = 1 + rng() % 4;
            d.push(std::string_view(bytes).substr(pos, len), &out);
            pos += len;
        }
        d.flush(&out);
        EXPECT_EQ(out, whole);
        EXPECT_EQ(sanitize(whole), whole);  // the output is valid UTF-8
    }
}

TEST(Utf8Stream, ValidTextIsUnchanged) {
    const std::string text = "Grüße, 你好, 😀, ǅ, €, \xF4\x8F\xBF\xBF, \xEE\x80\x80";
    EXPECT_EQ(sanitize(text), text);
    for (size_t split = 0; split <= text.size(); ++split) {
        Utf8StreamDecoder d;
        std::string out;
        d.push(std::string_view(text).substr(0, split), &out);
        d.push(std::string_view(text).substr(split), &out);
        EXPECT_EQ(out, text);
    }
}

}  // namespace
