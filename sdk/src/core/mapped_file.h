// Read-only view of a whole file: memory-mapped where the OS allows it,
// otherwise read into an owned buffer. Derives from ekv::Storage so a
// ModelFile can keep it alive for the tensors that point into it.
//
// A mapped file must not be truncated by another process while mapped
// (reading a vanished page raises SIGBUS); model files are treated as
// immutable while loaded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "core/tensor_ref.h"

namespace ekv {

class MappedFile : public Storage {
public:
    // Opens `path` read-only. Errors: EKV_ERR_IO naming the file and the
    // system's reason (missing, a directory, unreadable, too large).
    static Status open(const std::string& path, std::shared_ptr<MappedFile>* out);
    // Bytes [offset, offset + length) of an open descriptor (Android assets
    // hand out a descriptor with an offset and a length). The descriptor
    // may be closed afterwards. `label` names it in errors.
    static Status open_range(int fd, uint64_t offset, uint64_t length, const std::string& label,
                             std::shared_ptr<MappedFile>* out);

    ~MappedFile() override;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    bool is_mapped() const { return mapped_; }  // false: read into memory

private:
    MappedFile() = default;

    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    void* map_base_ = nullptr;  // the mapping starts on a page at or before data_
    size_t map_len_ = 0;
    // The read fallback: 64-byte aligned like a mapping's start, so tensor
    // data keeps the alignment the file format promises.
    struct AlignedFree {
        void operator()(uint8_t* p) const;
    };
    std::unique_ptr<uint8_t, AlignedFree> owned_;
};

}  // namespace ekv
