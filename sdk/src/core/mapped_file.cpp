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
    if (mapped_ && size_ > 0) munmap(const_cast<uint8_t*>(data_), size_);
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
    if (st.st_size < 0 ||
        static_cast<unsigned long long>(st.st_size) > std::numeric_limits<size_t>::max()) {
        return Error(EKV_ERR_IO, "cannot read %s: file of %lld bytes is too large for this platform",
                     path.c_str(), static_cast<long long>(st.st_size));
    }
    const size_t size = static_cast<size_t>(st.st_size);

    std::shared_ptr<MappedFile> file(new (std::nothrow) MappedFile());
    if (!file) return Error(EKV_ERR_OUT_OF_MEMORY, "out of memory opening %s", path.c_str());
    file->path_ = path;
    file->size_ = size;
    if (size == 0) {  // mmap refuses empty lengths; an empty view is fine
        *out = std::move(file);
        return Status::Ok();
    }

    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED) {
        file->data_ = static_cast<const uint8_t*>(p);
        file->mapped_ = true;
        *out = std::move(file);
        return Status::Ok();
    }

    // Fallback for file systems without mmap support: read it all.
    const int map_errno = errno;
    uint8_t* buf = allocate_aligned(size);
    if (!buf) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "cannot map %s (%s) nor allocate %zu bytes to read it",
                     path.c_str(), std::strerror(map_errno), size);
    }
    file->owned_.reset(buf);
    size_t done = 0;
    while (done < size) {
        const ssize_t n = ::pread(fd, buf + done, size - done, static_cast<off_t>(done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return Error(EKV_ERR_IO, "cannot read %s: %s", path.c_str(), std::strerror(errno));
        }
        if (n == 0) {
            return Error(EKV_ERR_IO, "cannot read %s: file shrank to %zu bytes while reading",
                         path.c_str(), done);
        }
        done += static_cast<size_t>(n);
    }
    file->data_ = buf;
    *out = std::move(file);
    return Status::Ok();
}

#else  // _WIN32: no mapping yet, read the whole file with stdio.

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
