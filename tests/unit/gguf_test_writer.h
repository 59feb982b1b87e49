// Minimal in-memory GGUF writer for tests. It writes exactly what it is told,
// including hostile values (wrong counts, offsets, types, dimensions), so
// tests can build both valid files and every kind of broken one.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace ekv_test {

// GGUF metadata value type ids.
enum GgufType : uint32_t {
    kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
    kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

class ByteSink {
public:
    template <typename T>
    void put(T v) {
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        bytes.insert(bytes.end(), b, b + sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
    }
    void pad_to(size_t alignment) {
        while (bytes.size() % alignment != 0) bytes.push_back(0);
    }
    std::vector<uint8_t> bytes;
};

class GgufWriter {
public:
    struct Tensor {
        std::string name;
        std::vector<uint64_t> dims;  // ne order: dims[0] is the row length
        uint32_t type = 0;
        std::vector<uint8_t> data;
        std::optional<uint64_t> offset;  // default: next aligned position
    };

    uint32_t magic = 0x46554747;  // "GGUF"
    uint32_t version = 3;
    size_t alignment = 32;  // layout only; add general.alignment to change the reader's
    std::optional<uint64_t> tensor_count;  // default: tensors.size()
    std::optional<uint64_t> kv_count;      // default: number of kv entries
    std::vector<Tensor> tensors;

    // Raw entry: key, value type, and the already-encoded value bytes.
    void add_raw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
        kv_.put_string(key);
        kv_.put<uint32_t>(type);
        kv_.bytes.insert(kv_.bytes.end(), value.begin(), value.end());
        ++n_kv_;
    }
    template <typename T>
    void add_scalar(const std::string& key, uint32_t type, T v) {
        ByteSink s;
        s.put(v);
        add_raw(key, type, s.bytes);
    }
    void add_u32(const std::string& key, uint32_t v) { add_scalar(key, kU32, v); }
    void add_f32(const std::string& key, float v) { add_scalar(key, kF32, v); }
    void add_string(const std::string& key, const std::string& v) {
        ByteSink s;
        s.put_string(v);
        add_raw(key, kString, s.bytes);
    }
    void add_string_array(const std::string& key, const std::vector<std::string>& v) {
        ByteSink s;
        s.put<uint32_t>(kString);
        s.put<uint64_t>(v.size());
        for (const auto& x : v) s.put_string(x);
        add_raw(key, kArray, s.bytes);
    }
    template <typename T>
    void add_array(const std::string& key, uint32_t elem_type, const std::vector<T>& v) {
        ByteSink s;
        s.put<uint32_t>(elem_type);
        s.put<uint64_t>(v.size());
        for (const T& x : v) s.put(x);
        add_raw(key, kArray, s.bytes);
    }

    void add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                    std::vector<uint8_t> data) {
        tensors.push_back(Tensor{name, std::move(dims), type, std::move(data), std::nullopt});
    }

    // Offset of tensor i's info record within the last build() (for patching).
    std::vector<size_t> tensor_info_pos;
    size_t data_start = 0;

    std::vector<uint8_t> build() {
        ByteSink out;
        out.put(magic);
        out.put(version);
        out.put<uint64_t>(tensor_count.value_or(tensors.size()));
        out.put<uint64_t>(kv_count.value_or(n_kv_));
        out.bytes.insert(out.bytes.end(), kv_.bytes.begin(), kv_.bytes.end());

        // Lay the data out first so the infos can carry the offsets.
        std::vector<uint64_t> offsets;
        uint64_t cursor = 0;
        for (const Tensor& t : tensors) {
            cursor = (cursor + alignment - 1) / alignment * alignment;
            offsets.push_back(t.offset.value_or(cursor));
            cursor += t.data.size();
        }
        tensor_info_pos.clear();
        for (size_t i = 0; i < tensors.size(); ++i) {
            const Tensor& t = tensors[i];
            tensor_info_pos.push_back(out.bytes.size());
            out.put_string(t.name);
            out.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
            for (uint64_t d : t.dims) out.put(d);
            out.put(t.type);
            out.put(offsets[i]);
        }
        out.pad_to(alignment);
        data_start = out.bytes.size();
        // Data is written at the default positions; no padding after the last
        // tensor, so any truncation of the file cuts into a tensor.
        for (const Tensor& t : tensors) {
            while ((out.bytes.size() - data_start) % alignment != 0) out.bytes.push_back(0);
            out.bytes.insert(out.bytes.end(), t.data.begin(), t.data.end());
        }
        return out.bytes;
    }

private:
    ByteSink kv_;
    uint64_t n_kv_ = 0;
};

template <typename T>
std::vector<uint8_t> to_bytes(const std::vector<T>& v) {
    std::vector<uint8_t> b(v.size() * sizeof(T));
    if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
    return b;
}

}  // namespace ekv_test
