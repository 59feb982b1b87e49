// KIVI code arithmetic shared by the quantize kernels, the attention kernels
// and the host test (layouts: core/kivi.h; reference: core/kivi.cpp). The
// quantizers are written as per-item work functions (one channel's range,
// one code byte) so the host test can run every item in order and compare
// the bytes with core/kivi.cpp's.
#pragma once
#include <cstddef>
#include <cstdint>

#include "gguf_blocks.cuh"

namespace ekv::cuda::kivi {

EKV_HD float load_elem(const uint8_t* row, bool f16, int64_t i) {
    if (f16) return blocks::f16_to_f32(blocks::load_u16(row + 2 * i));
    return reinterpret_cast<const float*>(row)[i];
}

EKV_HD void store_u16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v & 0xff);
    p[1] = static_cast<uint8_t>(v >> 8);
}
EKV_HD float load_f16(const uint8_t* p) { return blocks::f16_to_f32(blocks::load_u16(p)); }

// core/kivi.cpp's Quantizer: the stored halves of a [lo, hi] range.
EKV_HD void range_halves(float lo, float hi, int nbits, uint16_t* scale_h, uint16_t* min_h) {
    const float qmax = static_cast<float>((1 << nbits) - 1);
    *scale_h = blocks::f32_to_f16(blocks::div_rn(blocks::sub_rn(hi, lo), qmax));
    *min_h = blocks::f32_to_f16(lo);
}

// Quantizer::code against the decoded stored halves.
EKV_HD unsigned code_of(float x, float scale, float min, int nbits) {
    if (!(scale > 0.f)) return 0;
    const float qmax = static_cast<float>((1 << nbits) - 1);
    float v = blocks::div_rn(blocks::sub_rn(x, min), scale);
    if (!(v >= 0.f)) v = 0.f;
    if (v > qmax) v = qmax;
    return static_cast<unsigned>(blocks::add_rn(v, 0.5f));
}

// Byte offset and bit shift of channel c (0 <= c < head_dim) inside its
// head's run of L = head_dim * nbits / 8 code bytes.
EKV_HD int code_byte(int c, int run) { return c % run; }
EKV_HD int code_shift(int c, int run, int nbits) { return nbits * (c / run); }

// The code of channel c of a head whose code run starts at `codes`.
EKV_HD unsigned read_code(const uint8_t* codes, int c, int run, int nbits) {
    return (codes[code_byte(c, run)] >> code_shift(c, run, nbits)) & ((1u << nbits) - 1u);
}

// Dequantized value (code * scale + min, rounded like the CPU's scalar code).
EKV_HD float dequant(unsigned code, float scale, float min) {
    return blocks::add_rn(blocks::mul_rn(static_cast<float>(code), scale), min);
}

// ---- key groups --------------------------------------------------------

struct KeyGroupJob {
    const uint8_t* src;  // `group` rows of F16/F32, src_row_bytes apart
    bool f16;
    size_t src_row_bytes;
    int64_t kv_width;
    int head_dim;
    int group;
    int nbits;
    uint8_t* dst;  // the key group row

    EKV_HD size_t code_bytes() const { return static_cast<size_t>(kv_width) * nbits / 8; }
    EKV_HD uint8_t* scales() const { return dst + static_cast<size_t>(group) * code_bytes(); }
    EKV_HD uint8_t* mins() const { return scales() + 2 * static_cast<size_t>(kv_width); }
    EKV_HD int64_t n_code_bytes() const { return static_cast<int64_t>(group) * static_cast<int64_t>(code_bytes()); }

    // Phase 1, channel ch < kv_width: the channel's range over the group.
    EKV_HD void channel_range(int64_t ch) const {
        float lo = load_elem(src, f16, ch), hi = lo;
        for (int t = 1; t < group; ++t) {
            const float x = load_elem(src + t * src_row_bytes, f16, ch);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        uint16_t sh, mh;
        range_halves(lo, hi, nbits, &sh, &mh);
        store_u16(scales() + 2 * ch, sh);
        store_u16(mins() + 2 * ch, mh);
    }

    // Phase 2 (after every phase 1 item), idx < n_code_bytes(): one whole
    // code byte, from the stored ranges.
    EKV_HD void code_byte_item(int64_t idx) const {
        const int64_t cb = static_cast<int64_t>(code_bytes());
        const int t = static_cast<int>(idx / cb);
        const int64_t byte = idx % cb;
        const int run = head_dim * nbits / 8;
        const int64_t first = (byte / run) * head_dim + byte % run;
        const uint8_t* row = src + t * src_row_bytes;
        unsigned packed = 0;
        for (int k = 0; k < 8 / nbits; ++k) {
            const int64_t ch = first + static_cast<int64_t>(k) * run;
            const float scale = load_f16(scales() + 2 * ch), min = load_f16(mins() + 2 * ch);
            packed |= code_of(load_elem(row, f16, ch), scale, min, nbits) << (nbits * k);
        }
        dst[static_cast<size_t>(idx)] = static_cast<uint8_t>(packed);
    }
};

// ---- value rows ----------------------------------------------------------

struct ValueRowJob {
    const uint8_t* src;  // one F16/F32 row
    bool f16;
    int64_t kv_width;
    int head_dim;
    int group;
    int nbits;
    uint8_t* dst;  // the value row

    EKV_HD size_t code_bytes() const { return static_cast<size_t>(kv_width) * nbits / 8; }
    EKV_HD uint8_t* pairs() const { return dst + code_bytes(); }
    EKV_HD int64_t n_groups() const { return kv_width / group; }

    // Phase 1, g < n_groups(): the range of channels g * group ...
    EKV_HD void group_range(int64_t g) const {
        const int64_t c0 = g * group;
        float lo = load_elem(src, f16, c0), hi = lo;
        for (int64_t ch = c0 + 1; ch < c0 + group; ++ch) {
            const float x = load_elem(src, f16, ch);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        uint16_t sh, mh;
        range_halves(lo, hi, nbits, &sh, &mh);
        store_u16(pairs() + 4 * g, sh);
        store_u16(pairs() + 4 * g + 2, mh);
    }

    // Phase 2, byte < code_bytes().
    EKV_HD void code_byte_item(int64_t byte) const {
        const int run = head_dim * nbits / 8;
        const int64_t first = (byte / run) * head_dim + byte % run;
        unsigned packed = 0;
        for (int k = 0; k < 8 / nbits; ++k) {
            const int64_t ch = first + static_cast<int64_t>(k) * run;
            const int64_t g = ch / group;
            const float scale = load_f16(pairs() + 4 * g), min = load_f16(pairs() + 4 * g + 2);
            packed |= code_of(load_elem(src, f16, ch), scale, min, nbits) << (nbits * k);
        }
        dst[static_cast<size_t>(byte)] = static_cast<uint8_t>(packed);
    }
};

EKV_HD bool shape_ok(int64_t kv_width, int head_dim, int group, int nbits) {
    return (nbits == 2 || nbits == 4 || nbits == 8) && head_dim > 0 && kv_width > 0 && kv_width % head_dim == 0 &&
           group > 0 && (static_cast<int64_t>(head_dim) * nbits) % 8 == 0;
}

}  // namespace ekv::cuda::kivi
