// A named tensor of a model file as stored: its GGUF type, shape and bytes
// in mapped (or owned) memory, which a Storage keeps alive. What backends
// turn into weights.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace ekv {

struct TensorRef {
    std::string name;
    DType type = DType::F32;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension, as in GGUF
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// Keeps mapped files or owned buffers alive for the tensors pointing into them.
struct Storage {
    virtual ~Storage() = default;
};

}  // namespace ekv
