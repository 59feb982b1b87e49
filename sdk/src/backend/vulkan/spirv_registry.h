// The SPIR-V of every shader variant, embedded at build time by
// cmake/EmbedSpirv.cmake (the generated spirv_registry.cpp defines find_spirv).
#pragma once
#include <cstddef>
#include <cstdint>

namespace ekv::vk {

struct SpirvBlob {
    const char* name;
    const uint32_t* words;
    size_t n_words;
};

// The variant called `name` (e.g. "matmul_q4_1"), or null if not built.
const SpirvBlob* find_spirv(const char* name);

}  // namespace ekv::vk
