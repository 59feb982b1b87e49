// Minimal strict JSON (RFC 8259) reader for config.json, tokenizer.json and
// safetensors headers. Depth- and size-limited so hostile files cannot blow
// the stack.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace ekv::json {

struct Value {
    enum class Type { Null, Bool, Number, String, Array, Object };
    Type type = Type::Null;
    bool b = false;
    double num = 0.0;
    std::string str;
    std::vector<Value> arr;
    std::vector<std::pair<std::string, Value>> obj;  // insertion order kept

    bool is_null() const { return type == Type::Null; }
    bool is_bool() const { return type == Type::Bool; }
    bool is_number() const { return type == Type::Number; }
    bool is_string() const { return type == Type::String; }
    bool is_array() const { return type == Type::Array; }
    bool is_object() const { return type == Type::Object; }
    // Member lookup (objects only); nullptr if absent or not an object.
    const Value* get(std::string_view key) const;
};

// Parses a complete document; trailing non-space is an error. Errors are
// EKV_ERR_INVALID_FILE with line/column in the message.
Status parse(std::string_view text, Value* out);

}  // namespace ekv::json
