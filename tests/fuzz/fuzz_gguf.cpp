// Fuzz target: the GGUF reader on arbitrary bytes. Built either with
// libFuzzer (-fsanitize=fuzzer) or with fuzz_main.cpp's replay/mutation driver.
#include <cstddef>
#include <cstdint>

#include "model/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    ekv::ModelFile mf;
    const ekv::Status st = ekv::load_gguf_memory(data, size, &mf);
    if (!st.ok()) {
        // Bad input must be reported as such, with a reason.
        const ekv_status c = st.code();
        if (c != EKV_ERR_INVALID_FILE && c != EKV_ERR_UNSUPPORTED && c != EKV_ERR_OUT_OF_MEMORY) __builtin_trap();
        if (st.message().empty()) __builtin_trap();
        return 0;
    }
    // Accepted: every tensor lies inside the input, or is the reader's
    // aligned copy of one that did not land aligned for its type (then it is
    // 4-byte aligned and no bigger than the input). Touch its first and last
    // byte so a sanitizer sees any pointer that escapes its memory.
    unsigned sink = 0;
    for (const ekv::TensorRef& t : mf.tensors()) {
        if (t.nbytes == 0 || t.nbytes > size) __builtin_trap();
        const bool inside = t.data >= data && t.data + t.nbytes <= data + size;
        if (!inside && reinterpret_cast<uintptr_t>(t.data) % 4 != 0) __builtin_trap();
        if (t.n_dims < 1 || t.n_dims > 4 || t.n_elements() <= 0) __builtin_trap();
        sink += t.data[0] + t.data[t.nbytes - 1];
    }
    for (const auto& kv : mf.meta.all()) sink += static_cast<unsigned>(kv.second.array_size());
    volatile unsigned keep = sink;
    (void)keep;
    return 0;
}
