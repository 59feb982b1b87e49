// GGUF v2/v3 reader. The file is untrusted: every count, length, type and
// offset is checked against the bytes actually present before it is used,
// with overflow-safe arithmetic, and no allocation is sized by a count that
// the remaining bytes could not possibly hold.
//
// Layout (little-endian): magic "GGUF", u32 version, u64 tensor_count,
// u64 kv_count, kv pairs, tensor infos, padding to general.alignment, data.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string_view>
#include <unordered_set>

#include "core/log.h"
#include "core/mapped_file.h"
#include "model/model_file.h"

namespace ekv {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
// Smallest possible encodings, used to refuse counts the file cannot hold.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;              // key len, key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, 1 dim, type, offset

struct TensorInfo {
    std::string_view name;  // points into the file
    uint32_t n_dims = 0;
    uint64_t dims[kMaxDims] = {1, 1, 1, 1};
    uint32_t type_id = 0;
    uint64_t offset = 0;  // relative to the data section
    DType type = DType::F32;
    uint64_t nbytes = 0;
};

// Names in messages are cut short so a hostile 1 GB name cannot flood logs.
std::string shown(std::string_view s) {
    constexpr size_t kMax = 120;
    if (s.size() <= kMax) return std::string(s);
    return std::string(s.substr(0, kMax)) + "...";
}

bool is_little_endian_host() {
    const uint16_t probe = 1;
    uint8_t first;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

// Kernels load a tensor's elements (and a block's f16 scales) in place, so
// its start must keep the alignment its blocks keep back to back: the
// largest power of two up to 4 dividing the block's byte size.
bool element_aligned(const TensorRef& t) {
    const size_t block = dtype_traits(t.type).block_bytes;
    const size_t need = block % 4 == 0 ? 4 : block % 2 == 0 ? 2 : 1;
    return reinterpret_cast<uintptr_t>(t.data) % need == 0;
}

// Owned copy of one tensor that did not land aligned (a GGUF inside an
// asset at an odd offset, a caller's unaligned buffer, alignment 1).
struct AlignedTensorCopy : Storage {
    explicit AlignedTensorCopy(size_t n) : bytes(new (std::nothrow) uint32_t[(n + 3) / 4]) {}
    std::unique_ptr<uint32_t[]> bytes;
};

Status copy_to_aligned(TensorRef* t, ModelFile* mf) {
    auto copy = std::make_shared<AlignedTensorCopy>(t->nbytes);
    if (!copy->bytes) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "out of memory copying tensor %s (%zu bytes) to aligned memory",
                     shown(t->name).c_str(), t->nbytes);
    }
    std::memcpy(copy->bytes.get(), t->data, t->nbytes);
    t->data = reinterpret_cast<const uint8_t*>(copy->bytes.get());
    mf->keep_alive(std::move(copy));
    return Status::Ok();
}

// Minimum encoded size of one metadata value of `type`; 0 if not a type.
uint64_t min_value_bytes(uint32_t type) {
    switch (static_cast<MetaType>(type)) {
        case MetaType::U8: case MetaType::I8: case MetaType::BOOL: return 1;
        case MetaType::U16: case MetaType::I16: return 2;
        case MetaType::U32: case MetaType::I32: case MetaType::F32: return 4;
        case MetaType::U64: case MetaType::I64: case MetaType::F64: return 8;
        case MetaType::STRING: return 8;        // length prefix
        case MetaType::ARRAY: return 4 + 8;     // element type + count
    }
    return 0;
}

class GgufParser {
public:
    GgufParser(const uint8_t* data, size_t size, std::string label)
        : data_(data), size_(size), label_(std::move(label)) {}

    Status parse(ModelFile* out);

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    std::string label_;  // file name (or "GGUF buffer") prefixed to messages

    Status fail(ekv_status code, const char* fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
    {
        char buf[768];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        return Status(code, label_ + ": " + buf);
    }

    size_t remaining() const { return size_ - pos_; }

    Status need(uint64_t n, const char* what) {
        if (n > remaining()) {
            return fail(EKV_ERR_INVALID_FILE,
                        "file truncated: %s at offset %zu needs %" PRIu64 " bytes but only %zu remain",
                        what, pos_, n, remaining());
        }
        return Status::Ok();
    }

    template <typename T>
    Status read(T* v, const char* what) {
        EKV_TRY(need(sizeof(T), what));
        std::memcpy(v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return Status::Ok();
    }

    Status read_string(std::string_view* s, const char* what) {
        uint64_t len = 0;
        EKV_TRY(read(&len, what));
        if (len > remaining()) {
            return fail(EKV_ERR_INVALID_FILE,
                        "%s: string length %" PRIu64 " at offset %zu extends past end of file (%zu bytes remain)",
                        what, len, pos_ - 8, remaining());
        }
        *s = std::string_view(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len);
        return Status::Ok();
    }

    Status read_header(uint64_t* n_tensors, uint64_t* n_kv);
    Status read_scalar(uint32_t type, const std::string& key, MetaValue* v);
    Status read_array(const std::string& key, MetaValue* v);
    Status read_metadata(uint64_t n_kv, Metadata* meta);
    Status read_alignment(const Metadata& meta, uint64_t* alignment);
    Status read_tensor_info(uint64_t index, TensorInfo* t);
    Status check_tensor(const TensorInfo& t, uint64_t alignment, uint64_t data_bytes, TensorInfo* sized);
};

Status GgufParser::read_header(uint64_t* n_tensors, uint64_t* n_kv) {
    uint32_t magic = 0, version = 0;
    if (size_ < 4) return fail(EKV_ERR_INVALID_FILE, "not a GGUF file: only %zu bytes", size_);
    EKV_TRY(read(&magic, "magic"));
    if (magic != kMagic) {
        return fail(EKV_ERR_INVALID_FILE, "not a GGUF file: bad magic 0x%08x (expected \"GGUF\")", magic);
    }
    EKV_TRY(read(&version, "version"));
    if (version == 0x02000000u || version == 0x03000000u) {
        return fail(EKV_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
    }
    if (version == 1) {
        return fail(EKV_ERR_INVALID_FILE, "GGUF version 1 is obsolete and not supported (need version 2 or 3)");
    }
    if (version != 2 && version != 3) {
        return fail(EKV_ERR_INVALID_FILE, "unknown GGUF version %u (supported: 2 and 3)", version);
    }
    EKV_TRY(read(n_tensors, "tensor count"));
    EKV_TRY(read(n_kv, "metadata count"));
    // Bound both counts by the bytes left, before anything is allocated.
    const uint64_t left = remaining();
    if (*n_tensors > left / kMinTensorInfoBytes) {
        return fail(EKV_ERR_INVALID_FILE, "tensor count %" PRIu64 " is impossible: only %" PRIu64 " bytes follow the header",
                    *n_tensors, left);
    }
    if (*n_kv > left / kMinKvBytes) {
        return fail(EKV_ERR_INVALID_FILE, "metadata count %" PRIu64 " is impossible: only %" PRIu64 " bytes follow the header",
                    *n_kv, left);
    }
    if (*n_tensors * kMinTensorInfoBytes + *n_kv * kMinKvBytes > left) {
        return fail(EKV_ERR_INVALID_FILE, "%" PRIu64 " tensors and %" PRIu64 " metadata entries cannot fit in %" PRIu64 " bytes",
                    *n_tensors, *n_kv, left);
    }
    return Status::Ok();
}

Status GgufParser::read_scalar(uint32_t type, const std::string& key, MetaValue* v) {
    v->type = static_cast<MetaType>(type);
    const char* what = key.c_str();
    switch (v->type) {
        case MetaType::U8: { uint8_t x; EKV_TRY(read(&x, what)); v->i = x; break; }
        case MetaType::I8: { int8_t x; EKV_TRY(read(&x, what)); v->i = x; break; }
        case MetaType::U16: { uint16_t x; EKV_TRY(read(&x, what)); v->i = x; break; }
        case MetaType::I16: { int16_t x; EKV_TRY(read(&x, what)); v->i = x; break; }
        case MetaType::U32: { uint32_t x; EKV_TRY(read(&x, what)); v->i = x; break; }
        case MetaType::I32: { int32_t x; EKV_TRY(read(&x, what)); v->i = x; break; }
        case MetaType::I64: { int64_t x; EKV_TRY(read(&x, what)); v->i = x; break; }
        case MetaType::U64: {
            uint64_t x;
            EKV_TRY(read(&x, what));
            v->i = static_cast<int64_t>(x);  // wraps above INT64_MAX; get_int refuses those
            v->f = static_cast<double>(x);
            return Status::Ok();
        }
        case MetaType::BOOL: {
            uint8_t x;
            EKV_TRY(read(&x, what));
            if (x > 1) return fail(EKV_ERR_INVALID_FILE, "metadata %s: bool value %u is not 0 or 1", shown(key).c_str(), x);
            v->i = x;
            return Status::Ok();
        }
        case MetaType::F32:
        case MetaType::F64: {
            double d;
            if (v->type == MetaType::F32) {
                float x;
                EKV_TRY(read(&x, what));
                d = x;
            } else {
                EKV_TRY(read(&d, what));
            }
            v->f = d;
            // Integer view only where it is exact enough to be meaningful.
            v->i = (std::isfinite(d) && std::fabs(d) < 9.2e18) ? static_cast<int64_t>(d) : 0;
            return Status::Ok();
        }
        case MetaType::STRING: {
            std::string_view s;
            EKV_TRY(read_string(&s, what));
            v->str.assign(s.data(), s.size());
            return Status::Ok();
        }
        default:
            return fail(EKV_ERR_INVALID_FILE, "metadata %s: unknown value type %u", shown(key).c_str(), type);
    }
    v->f = static_cast<double>(v->i);  // integer types: float view too
    return Status::Ok();
}

Status GgufParser::read_array(const std::string& key, MetaValue* v) {
    uint32_t elem = 0;
    uint64_t count = 0;
    EKV_TRY(read(&elem, key.c_str()));
    EKV_TRY(read(&count, key.c_str()));
    const uint64_t min_bytes = min_value_bytes(elem);
    if (min_bytes == 0) {
        return fail(EKV_ERR_INVALID_FILE, "metadata %s: unknown array element type %u", shown(key).c_str(), elem);
    }
    if (static_cast<MetaType>(elem) == MetaType::ARRAY) {
        return fail(EKV_ERR_UNSUPPORTED, "metadata %s: nested arrays are not supported", shown(key).c_str());
    }
    if (count > remaining() / min_bytes) {
        return fail(EKV_ERR_INVALID_FILE,
                    "metadata %s: array of %" PRIu64 " elements cannot fit in the %zu bytes left",
                    shown(key).c_str(), count, remaining());
    }
    v->type = MetaType::ARRAY;
    v->elem_type = static_cast<MetaType>(elem);
    const size_t n = static_cast<size_t>(count);
    MetaValue item;
    if (v->elem_type == MetaType::STRING) {
        v->strs.reserve(n);
        for (size_t k = 0; k < n; ++k) {
            std::string_view s;
            EKV_TRY(read_string(&s, key.c_str()));
            v->strs.emplace_back(s);
        }
    } else if (v->elem_type == MetaType::F32 || v->elem_type == MetaType::F64) {
        v->floats.reserve(n);
        for (size_t k = 0; k < n; ++k) {
            EKV_TRY(read_scalar(elem, key, &item));
            v->floats.push_back(item.f);
        }
    } else {
        v->ints.reserve(n);
        for (size_t k = 0; k < n; ++k) {
            EKV_TRY(read_scalar(elem, key, &item));
            v->ints.push_back(item.i);
        }
    }
    return Status::Ok();
}

Status GgufParser::read_metadata(uint64_t n_kv, Metadata* meta) {
    for (uint64_t k = 0; k < n_kv; ++k) {
        char what[64];
        std::snprintf(what, sizeof what, "key of metadata entry %" PRIu64, k);
        std::string_view key_view;
        EKV_TRY(read_string(&key_view, what));
        if (key_view.empty()) return fail(EKV_ERR_INVALID_FILE, "metadata entry %" PRIu64 " has an empty key", k);
        std::string key(key_view);
        if (meta->has(key)) return fail(EKV_ERR_INVALID_FILE, "duplicate metadata key %s", shown(key).c_str());
        uint32_t type = 0;
        EKV_TRY(read(&type, key.c_str()));
        MetaValue v;
        if (static_cast<MetaType>(type) == MetaType::ARRAY) {
            EKV_TRY(read_array(key, &v));
        } else {
            EKV_TRY(read_scalar(type, key, &v));
        }
        meta->set(key, std::move(v));
    }
    return Status::Ok();
}

Status GgufParser::read_alignment(const Metadata& meta, uint64_t* alignment) {
    *alignment = kDefaultAlignment;
    const MetaValue* v = meta.find("general.alignment");
    if (!v) return Status::Ok();
    int64_t a = 0;
    if (!meta.get_int("general.alignment", &a) || v->type == MetaType::BOOL) {
        return fail(EKV_ERR_INVALID_FILE, "general.alignment is not an integer");
    }
    if (a <= 0 || a > (int64_t(1) << 30) || (a & (a - 1)) != 0) {
        return fail(EKV_ERR_INVALID_FILE, "general.alignment %" PRId64 " is not a power of two in [1, 2^30]", a);
    }
    *alignment = static_cast<uint64_t>(a);
    return Status::Ok();
}

Status GgufParser::read_tensor_info(uint64_t index, TensorInfo* t) {
    char what[64];
    std::snprintf(what, sizeof what, "name of tensor %" PRIu64, index);
    EKV_TRY(read_string(&t->name, what));
    if (t->name.empty()) return fail(EKV_ERR_INVALID_FILE, "tensor %" PRIu64 " has an empty name", index);
    const std::string name = shown(t->name);
    EKV_TRY(read(&t->n_dims, name.c_str()));
    if (t->n_dims < 1 || t->n_dims > kMaxDims) {
        return fail(EKV_ERR_INVALID_FILE, "tensor %s has %u dimensions (supported: 1 to 4)", name.c_str(), t->n_dims);
    }
    for (uint32_t d = 0; d < t->n_dims; ++d) EKV_TRY(read(&t->dims[d], name.c_str()));
    EKV_TRY(read(&t->type_id, name.c_str()));
    EKV_TRY(read(&t->offset, name.c_str()));
    return Status::Ok();
}

// Validates one tensor's type, shape and placement; fills type and nbytes.
Status GgufParser::check_tensor(const TensorInfo& t, uint64_t alignment, uint64_t data_bytes, TensorInfo* sized) {
    const std::string name = shown(t.name);
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < t.n_dims; ++d) {
        if (t.dims[d] == 0 || t.dims[d] > uint64_t(std::numeric_limits<int64_t>::max())) {
            return fail(EKV_ERR_INVALID_FILE, "tensor %s has invalid dimension %u = %" PRIu64, name.c_str(), d, t.dims[d]);
        }
        if (__builtin_mul_overflow(n_elements, t.dims[d], &n_elements) ||
            n_elements > uint64_t(std::numeric_limits<int64_t>::max())) {
            return fail(EKV_ERR_INVALID_FILE, "tensor %s: element count overflows", name.c_str());
        }
    }
    DType type;
    if (!dtype_from_u32(t.type_id, &type)) {
        return fail(EKV_ERR_INVALID_FILE, "tensor %s has unknown type id %u", name.c_str(), t.type_id);
    }
    const DTypeTraits& tr = dtype_traits(type);
    const uint64_t block = static_cast<uint64_t>(tr.block_size);
    if (t.dims[0] % block != 0) {
        return fail(EKV_ERR_INVALID_FILE, "tensor %s: row length %" PRIu64 " is not a multiple of the %s block size %" PRIu64,
                    name.c_str(), t.dims[0], tr.name, block);
    }
    uint64_t nbytes = (t.dims[0] / block);
    bool overflow = __builtin_mul_overflow(nbytes, uint64_t(tr.block_bytes), &nbytes);
    for (uint32_t d = 1; d < t.n_dims && !overflow; ++d) overflow = __builtin_mul_overflow(nbytes, t.dims[d], &nbytes);
    if (overflow) return fail(EKV_ERR_INVALID_FILE, "tensor %s: byte size overflows", name.c_str());
    if (t.offset % alignment != 0) {
        return fail(EKV_ERR_INVALID_FILE, "tensor %s: offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                    name.c_str(), t.offset, alignment);
    }
    if (t.offset > data_bytes || nbytes > data_bytes - t.offset) {
        return fail(EKV_ERR_INVALID_FILE,
                    "tensor %s extends past end of file (offset %" PRIu64 " + %" PRIu64
                    " bytes > data section size %" PRIu64 ", file size %zu)",
                    name.c_str(), t.offset, nbytes, data_bytes, size_);
    }
    *sized = t;
    sized->type = type;
    sized->nbytes = nbytes;
    return Status::Ok();
}

Status GgufParser::parse(ModelFile* out) {
    if (!is_little_endian_host()) return fail(EKV_ERR_UNSUPPORTED, "GGUF reading needs a little-endian host");
    uint64_t n_tensors = 0, n_kv = 0;
    EKV_TRY(read_header(&n_tensors, &n_kv));

    ModelFile mf;
    EKV_TRY(read_metadata(n_kv, &mf.meta));
    uint64_t alignment = kDefaultAlignment;
    EKV_TRY(read_alignment(mf.meta, &alignment));

    std::vector<TensorInfo> infos(static_cast<size_t>(n_tensors));
    std::unordered_set<std::string_view> names;
    names.reserve(infos.size());
    for (uint64_t k = 0; k < n_tensors; ++k) {
        EKV_TRY(read_tensor_info(k, &infos[k]));
        if (!names.insert(infos[k].name).second) {
            return fail(EKV_ERR_INVALID_FILE, "duplicate tensor name %s", shown(infos[k].name).c_str());
        }
    }

    // The data section starts at the next multiple of the alignment.
    const uint64_t data_start = (uint64_t(pos_) + alignment - 1) / alignment * alignment;
    if (n_tensors > 0 && data_start > size_) {
        return fail(EKV_ERR_INVALID_FILE, "data section would start at offset %" PRIu64 ", past end of file (size %zu)",
                    data_start, size_);
    }
    const uint64_t data_bytes = data_start <= size_ ? size_ - data_start : 0;

    const TensorInfo* unsupported = nullptr;
    for (TensorInfo& t : infos) {
        EKV_TRY(check_tensor(t, alignment, data_bytes, &t));
        if (!dtype_traits(t.type).supported && !unsupported) unsupported = &t;
    }

    // Tensors may not share bytes: a writer never does that, a forger might.
    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(infos.size());
    for (const TensorInfo& t : infos) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < by_offset.size(); ++k) {
        const TensorInfo& prev = *by_offset[k - 1];
        if (prev.offset + prev.nbytes > by_offset[k]->offset) {
            return fail(EKV_ERR_INVALID_FILE, "tensors %s and %s overlap", shown(prev.name).c_str(),
                        shown(by_offset[k]->name).c_str());
        }
    }
    if (unsupported) {
        return fail(EKV_ERR_UNSUPPORTED, "tensor %s has type %s, which edgekv cannot compute with yet",
                    shown(unsupported->name).c_str(), dtype_name(unsupported->type));
    }

    size_t copied = 0;
    for (const TensorInfo& t : infos) {
        TensorRef ref;
        ref.name.assign(t.name.data(), t.name.size());
        ref.type = t.type;
        ref.n_dims = static_cast<int>(t.n_dims);
        for (uint32_t d = 0; d < kMaxDims; ++d) ref.ne[d] = static_cast<int64_t>(t.dims[d]);
        ref.data = data_ + data_start + t.offset;
        ref.nbytes = static_cast<size_t>(t.nbytes);
        if (!element_aligned(ref)) {
            EKV_TRY(copy_to_aligned(&ref, &mf));
            copied += ref.nbytes;
        }
        mf.add_tensor(std::move(ref));
    }
    if (copied > 0) {
        if (alignment >= 4) {
            log_message(EKV_LOG_WARN,
                        "%s: %zu bytes of tensors were not aligned for their type in memory and were copied; "
                        "start the GGUF on a multiple of %" PRIu64 " bytes to use it in place",
                        label_.c_str(), copied, alignment);
        } else {
            log_message(EKV_LOG_WARN,
                        "%s: %zu bytes of tensors were not aligned for their type (general.alignment is %" PRIu64
                        ") and were copied",
                        label_.c_str(), copied, alignment);
        }
    }
    mf.format = "gguf";
    *out = std::move(mf);
    return Status::Ok();
}

Status parse_guarded(const uint8_t* data, size_t size, const std::string& label, ModelFile* out) {
    try {
        GgufParser parser(data, size, label);
        return parser.parse(out);
    } catch (const std::bad_alloc&) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "%s: out of memory while reading GGUF metadata", label.c_str());
    }
}

}  // namespace

// The tensors point into the caller's buffer, which must outlive *out; a
// tensor not aligned for its type there is copied (see copy_to_aligned).
Status load_gguf_memory(const void* data, size_t size, ModelFile* out) {
    if (!out || (!data && size > 0)) return Error(EKV_ERR_INVALID_ARGUMENT, "load_gguf_memory: null argument");
    static const uint8_t kEmpty[1] = {0};
    return parse_guarded(data ? static_cast<const uint8_t*>(data) : kEmpty, size, "GGUF buffer", out);
}

Status load_gguf_fd(int fd, uint64_t offset, uint64_t length, ModelFile* out) {
    if (!out) return Error(EKV_ERR_INVALID_ARGUMENT, "load_gguf_fd: null output");
    const std::string label = "descriptor " + std::to_string(fd) + " at " + std::to_string(offset);
    std::shared_ptr<MappedFile> file;
    EKV_TRY(MappedFile::open_range(fd, offset, length, label, &file));
    ModelFile mf;
    EKV_TRY(parse_guarded(file->data(), file->size(), label, &mf));
    mf.path = label;
    mf.keep_alive(std::move(file));
    *out = std::move(mf);
    return Status::Ok();
}

// The mapping is owned by *out (keep_alive), so tensor pointers stay valid
// for as long as the ModelFile lives, wherever it is moved.
Status load_gguf_file(const std::string& path, ModelFile* out) {
    if (!out) return Error(EKV_ERR_INVALID_ARGUMENT, "load_gguf_file: null output");
    std::shared_ptr<MappedFile> file;
    EKV_TRY(MappedFile::open(path, &file));
    ModelFile mf;
    EKV_TRY(parse_guarded(file->data(), file->size(), path, &mf));
    mf.path = path;
    mf.keep_alive(std::move(file));
    *out = std::move(mf);
    return Status::Ok();
}

}  // namespace ekv
