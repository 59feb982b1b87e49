#include "model/safetensors.h"

#include <cinttypes>
#include <cmath>
#include <cstring>
#include <new>
#include <string_view>

#include "core/json.h"

namespace ekv {
namespace {

// Doubles hold integers exactly up to 2^53; no real file offset is larger.
constexpr double kMaxExactInteger = 9007199254740992.0;

bool as_count(const json::Value& v, uint64_t* out) {
    if (!v.is_number() || v.num < 0 || v.num > kMaxExactInteger || std::floor(v.num) != v.num) return false;
    *out = static_cast<uint64_t>(v.num);
    return true;
}

std::string shown(const std::string& s) { return s.size() <= 120 ? s : s.substr(0, 120) + "..."; }

Status invalid(const std::string& label, const std::string& what) {
    return Status(EKV_ERR_INVALID_FILE, label + ": " + what);
}

Status parse_entry(const std::string& label, const std::string& name, const json::Value& v,
                   const uint8_t* base, uint64_t data_size, SafetensorsEntry* e) {
    const std::string where = "tensor " + shown(name);
    if (!v.is_object()) return invalid(label, where + ": header entry is not an object");
    const json::Value* dtype = v.get("dtype");
    const json::Value* shape = v.get("shape");
    const json::Value* offsets = v.get("data_offsets");
    if (!dtype || !dtype->is_string()) return invalid(label, where + ": missing or non-string \"dtype\"");
    if (!shape || !shape->is_array()) return invalid(label, where + ": missing or non-array \"shape\"");
    if (!offsets || !offsets->is_array() || offsets->arr.size() != 2) {
        return invalid(label, where + ": \"data_offsets\" must be an array of two integers");
    }
    uint64_t begin = 0, end = 0;
    if (!as_count(offsets->arr[0], &begin) || !as_count(offsets->arr[1], &end)) {
        return invalid(label, where + ": \"data_offsets\" must hold non-negative integers");
    }
    if (begin > end || end > data_size) {
        return invalid(label, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                                  "] lie outside the " + std::to_string(data_size) + " data bytes of the file");
    }
    if (shape->arr.size() > 8) return invalid(label, where + ": shape has more than 8 dimensions");
    uint64_t n_elements = 1;
    for (const json::Value& d : shape->arr) {
        uint64_t dim = 0;
        if (!as_count(d, &dim)) return invalid(label, where + ": shape holds a non-integer or negative value");
        if (__builtin_mul_overflow(n_elements, dim, &n_elements) || n_elements > uint64_t(INT64_MAX)) {
            return invalid(label, where + ": element count overflows");
        }
        e->shape.push_back(static_cast<int64_t>(dim));
    }
    e->name = name;
    e->dtype = dtype->str;
    // Sizes can only be cross-checked for dtypes we know; the caller refuses
    // unknown dtypes for the tensors it actually uses.
    const size_t elem = safetensors_dtype_size(e->dtype);
    uint64_t expected = 0;
    if (elem != 0 && (__builtin_mul_overflow(n_elements, uint64_t(elem), &expected) || expected != end - begin)) {
        return invalid(label, where + ": data_offsets span " + std::to_string(end - begin) +
                                  " bytes but dtype " + shown(e->dtype) + " and its shape need " +
                                  std::to_string(n_elements) + " x " + std::to_string(elem));
    }
    e->data = base + begin;
    e->nbytes = static_cast<size_t>(end - begin);
    return Status::Ok();
}

Status parse_unguarded(const uint8_t* data, size_t size, const std::string& label,
                       std::vector<SafetensorsEntry>* out) {
    if (size < 8) return invalid(label, "not a safetensors file: shorter than its 8-byte header length");
    uint64_t header_len = 0;
    std::memcpy(&header_len, data, 8);  // little-endian, as is every supported host
    if (header_len > kMaxSafetensorsHeaderBytes) {
        return invalid(label, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                                  std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
    }
    if (header_len > size - 8) {
        return invalid(label, "header length " + std::to_string(header_len) + " extends past end of file (size " +
                                  std::to_string(size) + ")");
    }
    const std::string_view text(reinterpret_cast<const char*>(data + 8), static_cast<size_t>(header_len));
    json::Value header;
    Status st = json::parse(text, &header);
    if (!st.ok()) return Status(st.code(), label + ": safetensors header: " + st.message());
    if (!header.is_object()) return invalid(label, "safetensors header is not a JSON object");

    const uint8_t* base = data + 8 + header_len;
    const uint64_t data_size = size - 8 - header_len;
    std::vector<SafetensorsEntry> entries;
    entries.reserve(header.obj.size());
    for (const auto& kv : header.obj) {
        if (kv.first == "__metadata__") {
            if (!kv.second.is_object()) return invalid(label, "\"__metadata__\" is not an object");
            continue;
        }
        SafetensorsEntry e;
        EKV_TRY(parse_entry(label, kv.first, kv.second, base, data_size, &e));
        entries.push_back(std::move(e));
    }
    *out = std::move(entries);
    return Status::Ok();
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
    static const struct { const char* name; size_t size; } kSizes[] = {
        {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
        {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},     {"U32", 4},
        {"F32", 4},  {"I64", 8}, {"U64", 8},  {"F64", 8},
    };
    for (const auto& s : kSizes) {
        if (dtype == s.name) return s.size;
    }
    return 0;
}

Status parse_safetensors(const uint8_t* data, size_t size, const std::string& label,
                         std::vector<SafetensorsEntry>* out) {
    try {
        return parse_unguarded(data, size, label, out);
    } catch (const std::bad_alloc&) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "%s: out of memory reading the safetensors header", label.c_str());
    }
}

}  // namespace ekv
