// Tiny streaming JSON writer for the CLI's --json output: commas and nesting
// are tracked for the caller, strings are escaped and forced to valid UTF-8.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace edgekv_cli {

// Escapes for a JSON string body (no quotes). Invalid UTF-8 bytes become
// U+FFFD so that the output is always valid JSON even for partial pieces.
std::string json_escape(const char* data, size_t len);
inline std::string json_escape(const std::string& s) { return json_escape(s.data(), s.size()); }

class JsonWriter {
public:
    JsonWriter& begin_object();
    JsonWriter& end_object();
    JsonWriter& begin_array();
    JsonWriter& end_array();
    // Object member name; the next call writes its value.
    JsonWriter& key(const char* name);

    JsonWriter& value(const std::string& s) { return string(s.data(), s.size()); }
    JsonWriter& value(const char* s);  // NULL writes null
    JsonWriter& value(bool b);
    JsonWriter& value(int v) { return signed_number(v); }
    JsonWriter& value(long v) { return signed_number(v); }
    JsonWriter& value(long long v) { return signed_number(v); }
    JsonWriter& value(unsigned v) { return unsigned_number(v); }
    JsonWriter& value(unsigned long v) { return unsigned_number(v); }
    JsonWriter& value(unsigned long long v) { return unsigned_number(v); }
    JsonWriter& value(double v);  // non-finite writes null
    JsonWriter& null();
    JsonWriter& string(const char* data, size_t len);

    // key(name) + value(v) in one call.
    template <class T>
    JsonWriter& field(const char* name, const T& v) {
        key(name);
        return value(v);
    }

    const std::string& str() const { return out_; }

private:
    JsonWriter& signed_number(long long v);
    JsonWriter& unsigned_number(unsigned long long v);
    void before_value();

    std::string out_;
    // Per open container: whether it already holds an element.
    std::vector<bool> has_element_;
    bool after_key_ = false;
};

}  // namespace edgekv_cli
