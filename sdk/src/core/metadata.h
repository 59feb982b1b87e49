// GGUF-style metadata: typed key/value pairs as a model file carries them
// (the GGUF reader fills it; the Hugging Face reader translates config.json
// into the same keys). Used by the model loader and the tokenizers.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ekv {

// GGUF metadata value types (numbers as in the GGUF spec).
enum class MetaType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

struct MetaValue {
    MetaType type = MetaType::U32;
    // Scalars: integers and bools in `i`, floats in `f` (both set for numbers).
    int64_t i = 0;
    double f = 0.0;
    std::string str;                 // STRING
    MetaType elem_type = MetaType::U32;  // ARRAY: element type
    std::vector<int64_t> ints;       // ARRAY of integers / bools
    std::vector<double> floats;      // ARRAY of floats
    std::vector<std::string> strs;   // ARRAY of strings
    size_t array_size() const { return ints.size() + floats.size() + strs.size(); }
};

class Metadata {
public:
    void set(const std::string& key, MetaValue v) { values_[key] = std::move(v); }
    const MetaValue* find(const std::string& key) const {
        auto it = values_.find(key);
        return it == values_.end() ? nullptr : &it->second;
    }
    bool has(const std::string& key) const { return find(key) != nullptr; }
    // Typed getters: false if missing or of an incompatible type.
    bool get_int(const std::string& key, int64_t* out) const;
    bool get_float(const std::string& key, double* out) const;
    bool get_bool(const std::string& key, bool* out) const;
    bool get_string(const std::string& key, std::string* out) const;
    const std::map<std::string, MetaValue>& all() const { return values_; }

private:
    std::map<std::string, MetaValue> values_;
};

}  // namespace ekv
