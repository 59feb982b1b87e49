// A byte range [begin, end) of a text.
#pragma once
#include <cstdint>

namespace ekv {

struct TextRange {
    uint32_t begin;
    uint32_t end;
};

}  // namespace ekv
