// A model file as the architectures see it: GGUF-style metadata plus named
// tensors that point into mapped (or owned) memory. The GGUF reader fills it
// directly; the Hugging Face directory reader translates config.json keys and
// tensor names into the same GGUF vocabulary, so one architecture file serves
// both formats.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/cancel.h"
#include "core/dtype.h"
#include "core/status.h"

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

struct TensorRef {
    std::string name;
    DType type = DType::F32;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension, as in GGUF
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// Keeps mapped files or owned buffers alive for the tensors pointing into them.
struct Storage {
    virtual ~Storage() = default;
};

// Reports a load's progress as weights come in and polls the caller's stop
// request between tensors.
struct LoadMonitor {
    const CancelFlag* cancel = nullptr;
    int (*callback)(float progress, void* user_data) = nullptr;  // 0 stops the load
    void* user_data = nullptr;
    uint64_t total_bytes = 0;
    uint64_t done_bytes = 0;
    // Accounts for `bytes` more; EKV_ERR_CANCELLED when asked to stop.
    Status step(uint64_t bytes) {
        done_bytes += bytes;
        if (callback && !callback(total_bytes ? static_cast<float>(done_bytes) / static_cast<float>(total_bytes) : 1.f,
                                  user_data))
            return Error(EKV_ERR_CANCELLED, "the progress callback stopped the load");
        if (cancel && cancel->raised()) return Error(EKV_ERR_CANCELLED, "the load was cancelled");
        return Status::Ok();
    }
};

class ModelFile {
public:
    Metadata meta;
    LoadMonitor* monitor = nullptr;  // set while the model is being built
    std::string path;
    std::string format;  // "gguf" or "safetensors"

    void add_tensor(TensorRef t) {
        index_[t.name] = tensors_.size();
        tensors_.push_back(std::move(t));
    }
    const TensorRef* find_tensor(const std::string& name) const {
        auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    const std::vector<TensorRef>& tensors() const { return tensors_; }
    void keep_alive(std::shared_ptr<Storage> s) { storage_.push_back(std::move(s)); }

private:
    std::vector<TensorRef> tensors_;
    std::unordered_map<std::string, size_t> index_;
    std::vector<std::shared_ptr<Storage>> storage_;
};

// GGUF v2/v3 from a file (memory-mapped) or from memory (the fuzz target).
// Every offset, size, type and count is validated; failures return
// EKV_ERR_INVALID_FILE (or EKV_ERR_IO) with the reason.
Status load_gguf_file(const std::string& path, ModelFile* out);
Status load_gguf_memory(const void* data, size_t size, ModelFile* out);

// Hugging Face directory: config.json + *.safetensors (+ tokenizer.json,
// tokenizer_config.json for the text side). Metadata is translated to GGUF
// keys, tensor names to GGUF names.
Status load_hf_directory(const std::string& dir, ModelFile* out);

}  // namespace ekv
