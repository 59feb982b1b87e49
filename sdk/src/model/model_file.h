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
#include "core/metadata.h"
#include "core/status.h"
#include "core/tensor_ref.h"

namespace ekv {

// Reports a load's progress as weights come in and polls the caller's stop
// request between tensors; carries the caller's memory budget too.
struct LoadMonitor {
    const CancelFlag* cancel = nullptr;
    int (*callback)(float progress, void* user_data) = nullptr;  // 0 stops the load
    void* user_data = nullptr;
    // Weights larger than this are refused before a backend exists (0: none).
    uint64_t memory_budget_bytes = 0;
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
// GGUF in bytes [offset, offset + length) of an open descriptor (mapped).
Status load_gguf_fd(int fd, uint64_t offset, uint64_t length, ModelFile* out);

// Hugging Face directory: config.json + *.safetensors (+ tokenizer.json,
// tokenizer_config.json for the text side). Metadata is translated to GGUF
// keys, tensor names to GGUF names.
Status load_hf_directory(const std::string& dir, ModelFile* out);

}  // namespace ekv
