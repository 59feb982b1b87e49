#include "core/dtype.h"

namespace ekv {
namespace {

const DTypeTraits kUnknown = {"unknown", 1, 0, false};

const DTypeTraits* lookup(uint32_t id) {
    // Block layouts per the GGUF/ggml specification.
    static const DTypeTraits f32 = {"f32", 1, 4, true};
    static const DTypeTraits f16 = {"f16", 1, 2, true};
    static const DTypeTraits q4_0 = {"q4_0", 32, 18, true};
    static const DTypeTraits q4_1 = {"q4_1", 32, 20, true};
    static const DTypeTraits q5_0 = {"q5_0", 32, 22, true};
    static const DTypeTraits q5_1 = {"q5_1", 32, 24, true};
    static const DTypeTraits q8_0 = {"q8_0", 32, 34, true};
    static const DTypeTraits q8_1 = {"q8_1", 32, 36, false};
    static const DTypeTraits q2_k = {"q2_k", 256, 84, false};
    static const DTypeTraits q3_k = {"q3_k", 256, 110, false};
    static const DTypeTraits q4_k = {"q4_k", 256, 144, true};
    static const DTypeTraits q5_k = {"q5_k", 256, 176, true};
    static const DTypeTraits q6_k = {"q6_k", 256, 210, true};
    static const DTypeTraits q8_k = {"q8_k", 256, 292, false};
    static const DTypeTraits i8 = {"i8", 1, 1, false};
    static const DTypeTraits i16 = {"i16", 1, 2, false};
    static const DTypeTraits i32 = {"i32", 1, 4, false};
    static const DTypeTraits i64 = {"i64", 1, 8, false};
    static const DTypeTraits f64 = {"f64", 1, 8, false};
    static const DTypeTraits bf16 = {"bf16", 1, 2, true};
    switch (id) {
        case 0: return &f32;
        case 1: return &f16;
        case 2: return &q4_0;
        case 3: return &q4_1;
        case 6: return &q5_0;
        case 7: return &q5_1;
        case 8: return &q8_0;
        case 9: return &q8_1;
        case 10: return &q2_k;
        case 11: return &q3_k;
        case 12: return &q4_k;
        case 13: return &q5_k;
        case 14: return &q6_k;
        case 15: return &q8_k;
        case 24: return &i8;
        case 25: return &i16;
        case 26: return &i32;
        case 27: return &i64;
        case 28: return &f64;
        case 30: return &bf16;
        default: return nullptr;
    }
}

}  // namespace

bool dtype_from_u32(uint32_t id, DType* out) {
    if (!lookup(id)) return false;
    *out = static_cast<DType>(id);
    return true;
}

const DTypeTraits& dtype_traits(DType t) {
    const DTypeTraits* tr = lookup(static_cast<uint32_t>(t));
    return tr ? *tr : kUnknown;
}

}  // namespace ekv
