// Tensor element types. Numbers are GGUF's (ggml_type) so a GGUF tensor type
// maps 1:1; quantized types are stored in blocks of `block_size` elements.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ekv {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
};

struct DTypeTraits {
    const char* name;
    int64_t block_size;  // elements per block (1 for plain types)
    size_t block_bytes;  // bytes per block
    bool supported;      // edgekv can compute with it
};

// Traits of a raw GGUF type id; false if the id is unknown.
bool dtype_from_u32(uint32_t id, DType* out);
const DTypeTraits& dtype_traits(DType t);
inline const char* dtype_name(DType t) { return dtype_traits(t).name; }

// Bytes of a row of n elements; n must be a multiple of the block size.
inline size_t dtype_row_bytes(DType t, int64_t n) {
    const DTypeTraits& tr = dtype_traits(t);
    return static_cast<size_t>(n / tr.block_size) * tr.block_bytes;
}

}  // namespace ekv
