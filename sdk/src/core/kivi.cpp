// KIVI reference quantizers and dequantizers (layouts in core/kivi.h).
//
// Codes are computed against the f16-ROUNDED scale and minimum that are
// stored, so code * scale + min (what attention computes) is the closest
// representable value to x: |x - deq| <= scale / 2 plus the f16 rounding of
// the minimum and of the scale.
#include "core/kivi.h"

#include <cstring>

#include "core/fp16.h"

namespace ekv {
namespace {

// Shape checks shared by every entry point; invalid shapes leave the output
// untouched (quantizers) or zeroed (dequantizers) instead of aborting.
bool valid_shape(int64_t kv_width, int head_dim, int group, int nbits) {
    return kivi_nbits_supported(nbits) && head_dim > 0 && kv_width > 0 && kv_width % head_dim == 0 && group > 0 &&
           (static_cast<int64_t>(head_dim) * nbits) % 8 == 0;
}

// Element i of an F32 or F16 source row.
inline float load_elem(const void* row, bool is_f16, int64_t i) {
    if (is_f16) return f16_to_f32(static_cast<const uint16_t*>(row)[i]);
    return static_cast<const float*>(row)[i];
}

// Byte offset inside a code row and bit shift of channel ch (absolute index).
struct CodeSlot {
    size_t byte;
    int shift;
};
inline CodeSlot code_slot(int64_t ch, int head_dim, int nbits) {
    const int64_t head = ch / head_dim;
    const int c = static_cast<int>(ch % head_dim);
    const int run = head_dim * nbits / 8;  // L: bytes of one head's codes
    return {static_cast<size_t>(head * run + c % run), nbits * (c / run)};
}

// The stored (f16) scale and minimum of a range, and the codes against them.
struct Quantizer {
    uint16_t scale_h;
    uint16_t min_h;
    float scale;
    float min;
    int qmax;

    Quantizer(float lo, float hi, int nbits) : qmax((1 << nbits) - 1) {
        scale_h = f32_to_f16((hi - lo) / static_cast<float>(qmax));
        min_h = f32_to_f16(lo);
        scale = f16_to_f32(scale_h);
        min = f16_to_f32(min_h);
    }
    unsigned code(float x) const {
        if (!(scale > 0.f)) return 0;  // constant range (or a scale lost to f16): every code 0
        float v = (x - min) / scale;
        if (!(v >= 0.f)) v = 0.f;       // also maps NaN to 0
        if (v > static_cast<float>(qmax)) v = static_cast<float>(qmax);
        return static_cast<unsigned>(v + 0.5f);
    }
};

inline void put_code(uint8_t* codes, int64_t ch, int head_dim, int nbits, unsigned code) {
    const CodeSlot s = code_slot(ch, head_dim, nbits);
    codes[s.byte] = static_cast<uint8_t>(codes[s.byte] | (code << s.shift));
}

inline unsigned get_code(const uint8_t* codes, int64_t ch, int head_dim, int nbits) {
    const CodeSlot s = code_slot(ch, head_dim, nbits);
    return (codes[s.byte] >> s.shift) & ((1u << nbits) - 1u);
}

inline void store_f16(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }
inline float read_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

}  // namespace

void kivi_quantize_key_group(const void* src, bool src_is_f16, size_t src_stride, int64_t kv_width, int head_dim,
                             int group, int nbits, uint8_t* dst) {
    if (!src || !dst || !valid_shape(kv_width, head_dim, group, nbits)) return;
    const size_t code_bytes = kivi_code_row_bytes(kv_width, nbits);
    uint8_t* scales = dst + static_cast<size_t>(group) * code_bytes;
    uint8_t* mins = scales + 2 * static_cast<size_t>(kv_width);
    std::memset(dst, 0, static_cast<size_t>(group) * code_bytes);
    const uint8_t* base = static_cast<const uint8_t*>(src);
    // One channel at a time over the group's tokens: the range is per channel.
    for (int64_t ch = 0; ch < kv_width; ++ch) {
        float lo = load_elem(base, src_is_f16, ch), hi = lo;
        for (int t = 1; t < group; ++t) {
            const float x = load_elem(base + t * src_stride, src_is_f16, ch);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        const Quantizer q(lo, hi, nbits);
        store_f16(scales + 2 * ch, q.scale_h);
        store_f16(mins + 2 * ch, q.min_h);
        for (int t = 0; t < group; ++t) {
            const float x = load_elem(base + t * src_stride, src_is_f16, ch);
            put_code(dst + t * code_bytes, ch, head_dim, nbits, q.code(x));
        }
    }
}

void kivi_quantize_value_row(const void* src, bool src_is_f16, int64_t kv_width, int head_dim, int group, int nbits,
                             uint8_t* dst) {
    if (!src || !dst || !valid_shape(kv_width, head_dim, group, nbits) || kv_width % group != 0) return;
    const size_t code_bytes = kivi_code_row_bytes(kv_width, nbits);
    std::memset(dst, 0, code_bytes);
    uint8_t* pairs = dst + code_bytes;
    for (int64_t g = 0; g < kv_width / group; ++g) {
        const int64_t c0 = g * group;
        float lo = load_elem(src, src_is_f16, c0), hi = lo;
        for (int64_t ch = c0 + 1; ch < c0 + group; ++ch) {
            const float x = load_elem(src, src_is_f16, ch);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        const Quantizer q(lo, hi, nbits);
        store_f16(pairs + 4 * g, q.scale_h);
        store_f16(pairs + 4 * g + 2, q.min_h);
        for (int64_t ch = c0; ch < c0 + group; ++ch)
            put_code(dst, ch, head_dim, nbits, q.code(load_elem(src, src_is_f16, ch)));
    }
}

void kivi_dequantize_key(const uint8_t* group_row, int t, int64_t kv_width, int head_dim, int group, int nbits,
                         float* out) {
    if (!out || kv_width <= 0) return;
    if (!group_row || !valid_shape(kv_width, head_dim, group, nbits) || t < 0 || t >= group) {
        std::memset(out, 0, static_cast<size_t>(kv_width) * sizeof(float));
        return;
    }
    const size_t code_bytes = kivi_code_row_bytes(kv_width, nbits);
    const uint8_t* codes = group_row + static_cast<size_t>(t) * code_bytes;
    const uint8_t* scales = group_row + static_cast<size_t>(group) * code_bytes;
    const uint8_t* mins = scales + 2 * static_cast<size_t>(kv_width);
    for (int64_t ch = 0; ch < kv_width; ++ch) {
        const float code = static_cast<float>(get_code(codes, ch, head_dim, nbits));
        out[ch] = code * read_f16(scales + 2 * ch) + read_f16(mins + 2 * ch);
    }
}

void kivi_dequantize_value(const uint8_t* row, int64_t kv_width, int head_dim, int group, int nbits, float* out) {
    if (!out || kv_width <= 0) return;
    if (!row || !valid_shape(kv_width, head_dim, group, nbits) || kv_width % group != 0) {
        std::memset(out, 0, static_cast<size_t>(kv_width) * sizeof(float));
        return;
    }
    const uint8_t* pairs = row + kivi_code_row_bytes(kv_width, nbits);
    for (int64_t ch = 0; ch < kv_width; ++ch) {
        const int64_t g = ch / group;
        const float code = static_cast<float>(get_code(row, ch, head_dim, nbits));
        out[ch] = code * read_f16(pairs + 4 * g) + read_f16(pairs + 4 * g + 2);
    }
}

}  // namespace ekv
