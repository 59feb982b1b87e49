// Streaming UTF-8 assembly for detokenization: tokens end in the middle of
// characters (byte-level BPE, <0xAB> byte tokens), so text is released only
// up to the last complete character and the unfinished tail is held.
// Invalid bytes become U+FFFD (one per maximal invalid subpart, as Python's
// and WHATWG's "replace" decoders do) instead of being held forever.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ekv {

class Utf8StreamDecoder {
public:
    // Appends to *out the text completed by `bytes`. Never allocates beyond
    // growing *out (reuse one string to keep the hot path allocation-free).
    void push(std::string_view bytes, std::string* out);
    // End of stream: an unfinished character is emitted as U+FFFD.
    void flush(std::string* out);
    // Drops any held bytes.
    void reset() { held_len_ = 0; }
    // Bytes held back waiting for the rest of a character (0..3).
    size_t pending_bytes() const { return held_len_; }

private:
    void push_byte(uint8_t b, std::string* out);

    uint8_t held_[4] = {0, 0, 0, 0};
    uint8_t held_len_ = 0;
    uint8_t need_ = 0;        // continuation bytes still expected
    uint8_t next_lo_ = 0x80;  // valid range of the next continuation byte
    uint8_t next_hi_ = 0xBF;
};

// Valid UTF-8 copy of arbitrary bytes (appended to *out), U+FFFD for
// invalid or truncated sequences.
void utf8_sanitize(std::string_view bytes, std::string* out);

}  // namespace ekv
