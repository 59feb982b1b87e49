// Fuzz target: the safetensors header reader on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<ekv::SafetensorsEntry> entries;
    const ekv::Status st = ekv::parse_safetensors(data, size, "fuzz", &entries);
    if (!st.ok()) {
        if (st.code() != EKV_ERR_INVALID_FILE && st.code() != EKV_ERR_OUT_OF_MEMORY) __builtin_trap();
        return 0;
    }
    unsigned sink = 0;
    for (const ekv::SafetensorsEntry& e : entries) {
        if (e.data < data || e.nbytes > size || e.data + e.nbytes > data + size) __builtin_trap();
        if (e.nbytes > 0) sink += e.data[0] + e.data[e.nbytes - 1];
    }
    volatile unsigned keep = sink;
    (void)keep;
    return 0;
}
