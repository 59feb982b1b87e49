#include "core/mapped_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "core/fault_injection.h"

namespace ekv {
namespace {

constexpr size_t kFallbackAlignment = 64;

uint8_t* allocate_aligned(size_t n) {
    return static_cast<uint8_t*>(::operator new(n, std::align_val_t(kFallbackAlignment), std::nothrow));
}

}  // namespace

void MappedFile::AlignedFree::operator()(uint8_t* p) const {
    ::operator delete(p, std::align_val_t(kFallbackAlignment));
}

MappedFile::~MappedFile() {
#if !defined(_WIN32)
    if (mapped_ && map_len_ > 0) munmap(map_base_, map_len_);
#endif
}

#if !defined(_WIN32)

Status MappedFile::open(const std::string& path, std::shared_ptr<MappedFile>* out) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return Error(EKV_ERR_IO, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    }
    // Close the descriptor on every path; a mapping stays valid without it.
    struct FdCloser {
        int fd;
        ~FdCloser() { ::close(fd); }
    } closer{fd};

    struct stat st {};
    if (fstat(fd, &st) != 0) {
        return Error(EKV_ERR_IO, "cannot stat %s: %s", path.c_str(), std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return Error(EKV_ERR_IO, "cannot read %s: it is a directory", path.c_str());
    if (!S_ISREG(st.st_mode)) return Error(EKV_ERR_IO, "cannot read %s: not a regular file", path.c_str());
    if (st.st_size < 0) return Error(EKV_ERR_IO, "cannot read %s: negative size", path.c_str());
    return open_range(fd, 0, static_cast<uint64_t>(st.st_size), path, out);
}

Status MappedFile::open_range(int fd, uint64_t offset, uint64_t length, const std::string& label,
                              std::shared_ptr<MappedFile>* out) {
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0)
        return Error(EKV_ERR_IO, "cannot stat %s: %s", label.c_str(), std::strerror(fd < 0 ? EBADF : errno));
    if (!S_ISREG(st.st_mode)) return Error(EKV_ERR_IO, "cannot read %s: not a regular file", label.c_str());
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);
    if (offset > file_size || length > file_size - offset)
        return Error(EKV_ERR_IO, "cannot read %s: bytes %llu..%llu are past its end (%llu bytes)", label.c_str(),
                     static_cast<unsigned long long>(offset), static_cast<unsigned long long>(offset + length),
                     static_cast<unsigned long long>(file_size));
    if (length > std::numeric_limits<size_t>::max() / 2 || offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
        return Error(EKV_ERR_IO, "cannot read %s: %llu bytes is too large for this platform", label.c_str(),
                     static_cast<unsigned long long>(length));
    const size_t size = static_cast<size_t>(length);

    std::shared_ptr<MappedFile> file(new (std::nothrow) MappedFile());
    if (!file) return Error(EKV_ERR_OUT_OF_MEMORY, "out of memory opening %s", label.c_str());
    file->path_ = label;
    file->size_ = size;
    if (size == 0) {  // mmap refuses empty lengths; an empty view is fine
        *out = std::move(file);
        return Status::Ok();
    }

    // Mappings start on a page: map from the page holding `offset`.
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096);
    const uint64_t base = offset / page * page;
    const size_t lead = static_cast<size_t>(offset - base);
    // An injected failure takes the read fallback, as a real ENOMEM would.
    void* p = fault::host_allocation_fails()
                  ? (errno = ENOMEM, MAP_FAILED)
                  : mmap(nullptr, size + lead, PROT_READ, MAP_PRIVATE, fd, static_cast<off_t>(base));
    if (p != MAP_FAILED) {
        file->map_base_ = p;
        file->map_len_ = size + lead;
        file->data_ = static_cast<const uint8_t*>(p) + lead;
        file->mapped_ = true;
        *out = std::move(file);
        return Status::Ok();
    }

    // Fallback for file systems without mmap support: read it all.
    const int map_errno = errno;
    uint8_t* buf = allocate_aligned(size);
    if (!buf) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "cannot map %s (%s) nor allocate %zu bytes to read it",
                     label.c_str(), std::strerror(map_errno), size);
    }
    file->owned_.reset(buf);
    size_t done = 0;
    while (done < size) {
        const ssize_t n = ::pread(fd, buf + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return Error(EKV_ERR_IO, "cannot read %s: %s", label.c_str(), std::strerror(errno));
        }
        if (n == 0) {
            return Error(EKV_ERR_IO, "cannot read %s: file shrank to %zu bytes while reading",
                         label.c_str(), done);
        }
        done += static_cast<size_t>(n);
    }
    file->data_ = buf;
    *out = std::move(file);
    return Status::Ok();
}

#else  // _WIN32: no mapping yet, read the whole file with stdio.

Status MappedFile::open_range(int, uint64_t, uint64_t, const std::string& label, std::shared_ptr<MappedFile>*) {
    return Error(EKV_ERR_UNSUPPORTED, "cannot read %s: descriptors are not supported on Windows yet", label.c_str());
}

Status MappedFile::open(const std::string& path, std::shared_ptr<MappedFile>* out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return Error(EKV_ERR_IO, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    struct FileCloser {
        FILE* f;
        ~FileCloser() { std::fclose(f); }
    } closer{f};
    if (_fseeki64(f, 0, SEEK_END) != 0) {
        return Error(EKV_ERR_IO, "cannot seek %s: %s", path.c_str(), std::strerror(errno));
    }
    const long long end = _ftelli64(f);
    if (end < 0 || static_cast<unsigned long long>(end) > std::numeric_limits<size_t>::max()) {
        return Error(EKV_ERR_IO, "cannot size %s", path.c_str());
    }
    std::rewind(f);
    const size_t size = static_cast<size_t>(end);
    std::shared_ptr<MappedFile> file(new (std::nothrow) MappedFile());
    if (!file) return Error(EKV_ERR_OUT_OF_MEMORY, "out of memory opening %s", path.c_str());
    file->path_ = path;
    file->size_ = size;
    if (size > 0) {
        uint8_t* buf = allocate_aligned(size);
        if (!buf) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to read %s", size, path.c_str());
        file->owned_.reset(buf);
        if (std::fread(buf, 1, size, f) != size) {
            return Error(EKV_ERR_IO, "cannot read %s: %s", path.c_str(), std::strerror(errno));
        }
        file->data_ = buf;
    }
    *out = std::move(file);
    return Status::Ok();
}

#endif

}  // namespace ekv
