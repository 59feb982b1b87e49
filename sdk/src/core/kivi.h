// KIVI KV-cache quantization (arXiv 2402.02750): asymmetric (scale + minimum)
// integer codes of 2, 4 or 8 bits. Keys are quantized per channel over a
// group of G consecutive tokens (outlier channels keep their own range);
// values per token over groups of G channels.
//
// Byte layouts (kv_width = n_kv_heads * head_dim channels, G = group):
//  - key group row (G tokens): G token code rows of kv_width * nbits / 8
//    bytes each, token-major, then kv_width f16 scales, then kv_width f16
//    minimums (one per channel for the whole group);
//  - value row (one token): kv_width * nbits / 8 code bytes, then
//    kv_width / G (scale f16, minimum f16) pairs, one per channel group.
// Inside a code row each head's channels are a contiguous run of
// L = head_dim * nbits / 8 bytes, and channel c (0 <= c < head_dim) of the
// head sits in byte c % L at bit nbits * (c / L): 4-bit codes hold channel j
// in the low nibble of byte j and channel j + head_dim / 2 in the high one,
// so one SIMD load and a mask/shift give two runs of consecutive channels.
// Dequantized x = code * scale + min.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ekv {

inline bool kivi_nbits_supported(int nbits) { return nbits == 2 || nbits == 4 || nbits == 8; }

inline size_t kivi_code_row_bytes(int64_t kv_width, int nbits) {
    return static_cast<size_t>(kv_width) * static_cast<size_t>(nbits) / 8;
}
inline size_t kivi_key_group_bytes(int64_t kv_width, int group, int nbits) {
    return static_cast<size_t>(group) * kivi_code_row_bytes(kv_width, nbits) + 4 * static_cast<size_t>(kv_width);
}
inline size_t kivi_value_row_bytes(int64_t kv_width, int group, int nbits) {
    return kivi_code_row_bytes(kv_width, nbits) + 4 * static_cast<size_t>(kv_width / group);
}

// Reference quantizers (the CPU backend's ops). src rows are F32 or F16
// (src_is_f16), src_stride bytes apart. head_dim tells the code order.
void kivi_quantize_key_group(const void* src, bool src_is_f16, size_t src_stride, int64_t kv_width, int head_dim,
                             int group, int nbits, uint8_t* dst);
void kivi_quantize_value_row(const void* src, bool src_is_f16, int64_t kv_width, int head_dim, int group, int nbits,
                             uint8_t* dst);

// Dequantizers for tests and slow paths (never on the attention hot path).
// Writes token t (0 <= t < group) of a key group / one value row as F32.
void kivi_dequantize_key(const uint8_t* group_row, int t, int64_t kv_width, int head_dim, int group, int nbits,
                         float* out);
void kivi_dequantize_value(const uint8_t* row, int64_t kv_width, int head_dim, int group, int nbits, float* out);

}  // namespace ekv
