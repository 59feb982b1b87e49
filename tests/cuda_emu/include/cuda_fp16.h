// edgekv's CUDA emulator (tests only): the part of CUDA's cuda_fp16.h the
// kernels use, an IEEE binary16 value (__half) and its conversions. The
// kernels produce half bits with their own integer code (gguf_blocks.cuh),
// so this only has to read them.
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
    uint16_t bits;
};
static_assert(sizeof(__half) == 2, "__half is two bytes, as on the device");

inline float __half2float(__half h) {
    const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
    const uint32_t exp = (h.bits >> 10) & 0x1fu, man = h.bits & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        int e = -1;
        uint32_t m = man;
        do {
            ++e;
            m <<= 1;
        } while ((m & 0x400u) == 0);
        bits = sign | ((112u - static_cast<uint32_t>(e)) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
