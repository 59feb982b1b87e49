// Typed access to GGUF-style metadata. Getters convert between compatible
// types only: any integer or bool reads as an integer, any number as a float.
#include "core/metadata.h"

namespace ekv {
namespace {

bool is_integer_type(MetaType t) {
    switch (t) {
        case MetaType::U8: case MetaType::I8: case MetaType::U16: case MetaType::I16:
        case MetaType::U32: case MetaType::I32: case MetaType::U64: case MetaType::I64:
        case MetaType::BOOL:
            return true;
        default:
            return false;
    }
}

bool is_float_type(MetaType t) { return t == MetaType::F32 || t == MetaType::F64; }

}  // namespace

bool Metadata::get_int(const std::string& key, int64_t* out) const {
    const MetaValue* v = find(key);
    if (!v || !is_integer_type(v->type)) return false;
    // A U64 above INT64_MAX is stored wrapped; it does not fit an int64.
    if (v->type == MetaType::U64 && v->i < 0) return false;
    *out = v->i;
    return true;
}

bool Metadata::get_float(const std::string& key, double* out) const {
    const MetaValue* v = find(key);
    if (!v) return false;
    if (is_float_type(v->type)) {
        *out = v->f;
        return true;
    }
    if (v->type == MetaType::BOOL || !is_integer_type(v->type)) return false;
    *out = (v->type == MetaType::U64) ? static_cast<double>(static_cast<uint64_t>(v->i))
                                      : static_cast<double>(v->i);
    return true;
}

bool Metadata::get_bool(const std::string& key, bool* out) const {
    const MetaValue* v = find(key);
    if (!v || !is_integer_type(v->type)) return false;
    *out = v->i != 0;
    return true;
}

bool Metadata::get_string(const std::string& key, std::string* out) const {
    const MetaValue* v = find(key);
    if (!v || v->type != MetaType::STRING) return false;
    *out = v->str;
    return true;
}

}  // namespace ekv
