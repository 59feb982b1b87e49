// Reader for one safetensors file held in memory: an 8-byte little-endian
// header length, a JSON header, then the tensor bytes. Every entry's
// data_offsets are checked against the buffer and against its dtype and
// shape (for dtypes whose element size is known).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace ekv {

struct SafetensorsEntry {
    std::string name;
    std::string dtype;            // as written: "F32", "BF16", "I64", ...
    std::vector<int64_t> shape;   // outermost dimension first
    const uint8_t* data = nullptr;  // into the caller's buffer
    size_t nbytes = 0;
};

// Header sizes above this are refused (the reference implementation's limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u * 1000u * 1000u;

// Bytes per element of a safetensors dtype; 0 if unknown or sub-byte.
size_t safetensors_dtype_size(const std::string& dtype);

// Parses `data[0, size)`. `label` (the file name) prefixes error messages.
// Entries come back in header order; "__metadata__" is skipped. Errors:
// EKV_ERR_INVALID_FILE (malformed, out of bounds), EKV_ERR_OUT_OF_MEMORY.
// The entries point into `data`, which must outlive them.
Status parse_safetensors(const uint8_t* data, size_t size, const std::string& label,
                         std::vector<SafetensorsEntry>* out);

}  // namespace ekv
