// Fuzz target: the strict JSON parser on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/json.h"

namespace {

// Walks the tree so every string and container is read once.
size_t count_nodes(const ekv::json::Value& v) {
    size_t n = 1 + v.str.size();
    for (const auto& x : v.arr) n += count_nodes(x);
    for (const auto& kv : v.obj) n += kv.first.size() + count_nodes(kv.second);
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    ekv::json::Value v;
    const ekv::Status st = ekv::json::parse(text, &v);
    if (!st.ok()) {
        if (st.code() != EKV_ERR_INVALID_FILE && st.code() != EKV_ERR_OUT_OF_MEMORY) __builtin_trap();
        if (st.message().find("line ") == std::string::npos && st.code() == EKV_ERR_INVALID_FILE) __builtin_trap();
        return 0;
    }
    volatile size_t keep = count_nodes(v);
    (void)keep;
    return 0;
}
