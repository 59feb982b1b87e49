// FNV-1a, 64-bit: a small incremental hash for identities and file checksums
// (corruption detection, not security).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ekv {

class Fnv1a64 {
public:
    void add(const void* data, size_t n) {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        for (size_t i = 0; i < n; ++i) {
            h_ ^= p[i];
            h_ *= 0x100000001b3ull;
        }
    }
    template <class T>
    void add_value(const T& v) {
        add(&v, sizeof v);
    }
    void add_string(const std::string& s) {
        add_value(static_cast<uint64_t>(s.size()));
        add(s.data(), s.size());
    }
    uint64_t value() const { return h_; }

private:
    uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace ekv
