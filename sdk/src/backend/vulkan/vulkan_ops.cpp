// Vulkan backend: the compute ops. Each checks its tensors (types, widths,
// bounds inside their buffers) on the host, copies small host inputs into the
// params arena and records one or a few dispatches. Push-constant structs
// mirror the `P` blocks of shaders/*.comp field by field. Buffers larger than
// the device binds at once (maxStorageBufferRange: 128 MiB on lavapipe and
// many mobile GPUs) are bound a window at a time, and matmul/get_rows split
// work that spans more than one window.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "backend/vulkan/vk_op_util.h"
#include "backend/vulkan/vk_pipelines.h"
#include "backend/vulkan/vk_shaders.h"
#include "backend/vulkan/vk_stream.h"
#include "backend/vulkan/vulkan_backend.h"
#include "core/kivi.h"

namespace ekv {
using vk::groups;
using vk::invalid;
using vk::is_f32;
using vk::kGroup;
using vk::EltwisePush;

namespace {

constexpr uint32_t kMatmulTokenTile = 4;  // TT in matmul.comp and matmul_rows.comp
constexpr uint32_t kMatmulWholeRowsPerGroup = 16 * 4;  // local_size_x * ROWS in matmul_rows.comp

size_t element_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

// Checks a plain (F32/F16) tensor: element-aligned rows, `rows` rows of
// `cols` elements inside its buffer. *end: the byte after its last element.
bool plain_extent(const Tensor& t, int64_t rows, const char* op, const char* name, size_t* end, Status* err) {
    const size_t es = element_bytes(t.type);
    if ((t.type != DType::F32 && t.type != DType::F16) || t.offset % es || t.row_bytes % es ||
        t.row_bytes < static_cast<size_t>(t.cols) * es) {
        *err = invalid("%s: %s must be F32/F16 rows aligned to the element size", op, name);
        return false;
    }
    const size_t size = t.buffer ? t.buffer->size() : 0;
    *end = rows > 0 ? t.offset + static_cast<size_t>(rows - 1) * t.row_bytes + t.cols * es : t.offset;
    if (*end > size) {
        *err = invalid("%s: %s (%lld rows) extends past its buffer (%zu bytes)", op, name,
                       static_cast<long long>(rows), size);
        return false;
    }
    return true;
}

}  // namespace

size_t VulkanBackend::binding_alignment() const {
    return std::max<size_t>(16, ctx_->properties().limits.minStorageBufferOffsetAlignment);
}

size_t VulkanBackend::max_binding_span() const {
    const size_t limit = ctx_->properties().limits.maxStorageBufferRange / 4 * 4;
    return limit - binding_alignment() - 16;
}

bool VulkanBackend::bind_span(const Tensor& t, size_t first, size_t end, const char* op, const char* what,
                              vk::Binding* b, size_t* base) {
    const VkBuffer h = buffer_of(t, op, what);
    if (!h) return false;
    const size_t size = t.buffer->size();
    const size_t limit = ctx_->properties().limits.maxStorageBufferRange / 4 * 4;
    if (size + 32 <= limit) {  // the buffer's rounding and slack included (vk_memory.cpp)
        *b = vk::Binding(h);
        *base = 0;
        return true;
    }
    if (end - first > max_binding_span()) {
        fail(Error(EKV_ERR_UNSUPPORTED, "Vulkan %s: %s spans %zu bytes, more than %s binds at once (%zu)", op, what,
                   end - first, device().name.c_str(), max_binding_span()));
        return false;
    }
    // Windows start on a coarse grid when the span fits one, so the tensors
    // of a buffer share a few descriptor sets; else just below the span.
    // Either way the window keeps the 16 bytes of slack shaders may read.
    const size_t align = binding_alignment();
    const size_t grid = limit / 2 / align * align;
    size_t start = first / grid * grid;
    if (end + 16 > start + limit) start = first / align * align;
    const size_t stop = std::min(start + limit, size + 16);
    *b = vk::Binding(h, start, stop - start);
    *base = start;
    return true;
}

bool VulkanBackend::bind_plain(const Tensor& t, int64_t rows, const char* op, const char* what, vk::Binding* b,
                               uint32_t* off, uint32_t* stride) {
    if (!buffer_of(t, op, what)) return false;
    Status err;
    size_t end = 0, base = 0;
    if (!plain_extent(t, rows, op, what, &end, &err)) {
        fail(err);
        return false;
    }
    if (!bind_span(t, t.offset, end, op, what, b, &base)) return false;
    const size_t es = element_bytes(t.type);
    *off = static_cast<uint32_t>((t.offset - base) / es);
    *stride = static_cast<uint32_t>(t.row_bytes / es);
    return true;
}

bool VulkanBackend::bind_words(const Tensor& t, int64_t rows, const char* op, const char* what, vk::Binding* b,
                               uint32_t* off, uint32_t* stride) {
    if (!buffer_of(t, op, what)) return false;
    const size_t end = t.offset + static_cast<size_t>(rows > 0 ? rows : 0) * t.row_bytes;
    if (t.offset % 4 || t.row_bytes % 4 || rows < 0 || end > t.buffer->size()) {
        fail(invalid("%s: %s must be word-aligned rows inside its buffer", op, what));
        return false;
    }
    size_t base = 0;
    if (!bind_span(t, t.offset, end, op, what, b, &base)) return false;
    *off = static_cast<uint32_t>((t.offset - base) / 4);
    *stride = static_cast<uint32_t>(t.row_bytes / 4);
    return true;
}

bool VulkanBackend::kivi_layout_ok(int64_t kv_width, const KiviParams& k, int32_t head_dim) {
    // The shaders address codes and f16 ranges as 32-bit words.
    return kivi_nbits_supported(k.nbits) && k.group > 0 && k.head_dim == head_dim && head_dim > 0 &&
           kv_width % head_dim == 0 && kv_width % k.group == 0 && (static_cast<int64_t>(head_dim) * k.nbits) % 8 == 0 &&
           kivi_code_row_bytes(kv_width, k.nbits) % 4 == 0;
}

void VulkanBackend::get_rows(const Tensor& table, const int32_t* ids, int32_t n, Tensor& out) {
    if (!stream().ok() || n <= 0) return;
    const int variant = vk::weight_variant(table.type);
    if (variant < 0) return fail(invalid("get_rows: table type %s unsupported", dtype_name(table.type)));
    if (!buffer_of(table, "get_rows", "table")) return;
    if (!is_f32(out) || out.cols != table.cols)
        return fail(invalid("get_rows: out must be F32 with the table's width"));
    vk::Binding ob;
    uint32_t o_off = 0, o_stride = 0;
    if (!bind_plain(out, n, "get_rows", "out", &ob, &o_off, &o_stride)) return;
    const size_t rb = table.row_bytes;
    if (table.offset % (table.type == DType::F32 ? 4 : 2) ||
        table.offset + static_cast<size_t>(table.rows) * rb > table.buffer->size())
        return fail(invalid("get_rows: table outside its buffer"));
    for (int32_t i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= table.rows)
            return fail(invalid("get_rows: id %d outside [0, %lld)", ids[i], static_cast<long long>(table.rows)));
    if (rb > max_binding_span()) return fail(invalid("get_rows: a table row of %zu bytes exceeds one binding", rb));
    // A table past one binding (a large vocabulary) is read in row chunks;
    // each chunk's dispatch writes the outputs whose ids fall in it (the
    // shader skips the others' ids, marked -1). Every chunk is dispatched,
    // even one no id falls in, so the commands do not depend on the tokens.
    const int64_t chunk = static_cast<int64_t>(max_binding_span() / rb);
    for (int64_t c0 = 0; c0 < table.rows; c0 += chunk) {
        const int64_t rows = std::min(chunk, table.rows - c0);
        vk::Binding tb;
        size_t base = 0;
        const size_t first = table.offset + static_cast<size_t>(c0) * rb;
        if (!bind_span(table, first, first + static_cast<size_t>(rows) * rb, "get_rows", "table", &tb, &base)) return;
        uint32_t ids_off = 0;
        int32_t* dst = reinterpret_cast<int32_t*>(stream().params(static_cast<size_t>(n) * 4, &ids_off));
        if (!dst) return;
        for (int32_t i = 0; i < n; ++i) dst[i] = ids[i] >= c0 && ids[i] < c0 + rows ? ids[i] - static_cast<int32_t>(c0) : -1;
        struct {
            uint32_t w_off, w_row_bytes, o_off, o_stride, k, ids_off, n_rows;
        } pc = {static_cast<uint32_t>(first - base), static_cast<uint32_t>(rb), o_off, o_stride,
                static_cast<uint32_t>(table.cols), ids_off, static_cast<uint32_t>(rows)};
        stream().dispatch(vk::get_rows_shader(variant), {tb, VK_NULL_HANDLE, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc,
                          sizeof pc, groups(groups(static_cast<uint64_t>(table.cols), 32), kGroup),
                          static_cast<uint32_t>(n));
    }
}

void VulkanBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
    if (!stream().ok() || x.rows <= 0) return;
    if (!is_f32(x) || !is_f32(weight) || !is_f32(out) || weight.cols < x.cols || out.cols < x.cols)
        return fail(invalid("rms_norm: x, weight, out must be F32 of matching width"));
    vk::Binding xb, wb, ob;
    uint32_t x_off, x_stride, w_off, w_stride, o_off, o_stride;
    if (!bind_plain(x, x.rows, "rms_norm", "x", &xb, &x_off, &x_stride) ||
        !bind_plain(weight, 1, "rms_norm", "weight", &wb, &w_off, &w_stride) ||
        !bind_plain(out, x.rows, "rms_norm", "out", &ob, &o_off, &o_stride))
        return;
    struct {
        uint32_t x_off, x_stride, w_off, o_off, o_stride, n;
        float eps;
    } pc = {x_off, x_stride, w_off, o_off, o_stride, static_cast<uint32_t>(x.cols), eps};
    stream().dispatch(vk::ShaderId::RmsNorm, {xb, wb, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc,
                      static_cast<uint32_t>(x.rows), 1);
}

void VulkanBackend::matmul(const Tensor& w, const Tensor& x, Tensor& out) {
    if (!stream().ok() || x.rows <= 0) return;
    const int variant = vk::weight_variant(w.type);
    if (variant < 0) return fail(invalid("matmul: weight type %s unsupported", dtype_name(w.type)));
    if (!buffer_of(w, "matmul", "w")) return;
    if (!is_f32(x) || !is_f32(out) || x.cols != w.cols || out.cols != w.rows || out.rows < x.rows)
        return fail(invalid("matmul: x [%lld x %lld] and out [%lld x %lld] do not fit w [%lld x %lld]",
                            static_cast<long long>(x.rows), static_cast<long long>(x.cols),
                            static_cast<long long>(out.rows), static_cast<long long>(out.cols),
                            static_cast<long long>(w.rows), static_cast<long long>(w.cols)));
    const size_t rb = w.row_bytes;
    if (w.cols % dtype_traits(w.type).block_size || w.offset % (w.type == DType::F32 ? 4 : 2) ||
        rb < dtype_row_bytes(w.type, w.cols) || w.offset + static_cast<size_t>(w.rows) * rb > w.buffer->size())
        return fail(invalid("matmul: weight layout does not fit its buffer"));
    const size_t span = max_binding_span();
    if (rb > span || x.row_bytes > span || out.row_bytes > span)
        return fail(invalid("matmul: a row exceeds one binding (%zu bytes)", span));
    // Work past one binding is split: weight rows into chunks that each
    // write their columns of out (a large vocabulary's output matrix), and
    // tokens into chunks (all-logits batches over that vocabulary).
    const int64_t w_chunk = static_cast<int64_t>(span / rb);
    const int64_t t_chunk = static_cast<int64_t>(span / std::max(x.row_bytes, out.row_bytes));
    for (int64_t t0 = 0; t0 < x.rows; t0 += t_chunk) {
        const int64_t tokens = std::min(t_chunk, x.rows - t0);
        vk::Binding xb, ob;
        uint32_t x_off, x_stride, o_off, o_stride;
        if (!bind_plain(x.row_range(t0, tokens), tokens, "matmul", "x", &xb, &x_off, &x_stride) ||
            !bind_plain(out.row_range(t0, tokens), tokens, "matmul", "out", &ob, &o_off, &o_stride))
            return;
        for (int64_t r0 = 0; r0 < w.rows; r0 += w_chunk) {
            const int64_t rows = std::min(w_chunk, w.rows - r0);
            vk::Binding wb;
            size_t base = 0;
            const size_t first = w.offset + static_cast<size_t>(r0) * rb;
            if (!bind_span(w, first, first + static_cast<size_t>(rows) * rb, "matmul", "w", &wb, &base)) return;
            struct {
                uint32_t w_off, w_row_bytes, x_off, x_stride, o_off, o_stride, k, n, t;
            } pc = {static_cast<uint32_t>(first - base), static_cast<uint32_t>(rb), x_off, x_stride,
                    o_off + static_cast<uint32_t>(r0), o_stride, static_cast<uint32_t>(w.cols),
                    static_cast<uint32_t>(rows), static_cast<uint32_t>(tokens)};
            const vk::MatmulShape& shape = ctx_->pipelines().matmul_shape();
            const bool whole_rows = shape.whole_rows && !ctx_->f16_accumulate();
            const uint64_t row_groups =
                groups(static_cast<uint64_t>(rows), whole_rows ? kMatmulWholeRowsPerGroup : 64 / shape.lanes);
            const uint32_t gx = row_groups < 65535 ? static_cast<uint32_t>(row_groups) : 65535u;  // the shader loops
            const vk::ShaderId shader = ctx_->f16_accumulate() ? vk::matmul_f16acc_shader(variant)
                                        : whole_rows           ? vk::matmul_rows_shader(variant)
                                                               : vk::matmul_shader(variant);
            stream().dispatch(shader, {wb, xb, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc, gx,
                              groups(static_cast<uint64_t>(tokens), kMatmulTokenTile));
        }
    }
}

bool VulkanBackend::rope_table(const int32_t* positions, int64_t n, const RopeParams& p, uint32_t* word_offset) {
    // The params arena is reused after each submission: older tables are gone.
    if (rope_generation_ != stream().generation()) {
        rope_tables_.reset();
        rope_generation_ = stream().generation();
    }
    RopeTableCache::Key key;
    key.positions = positions;
    key.n = n;
    key.inv_freq = p.inv_freq;
    key.half = p.rope_dim / 2;
    key.attn_factor = p.attn_factor;
    uint64_t location = 0;
    if (rope_tables_.find(key, &location)) {
        *word_offset = static_cast<uint32_t>(location);
        return true;
    }
    float* tab = reinterpret_cast<float*>(
        stream().params(static_cast<size_t>(n) * static_cast<size_t>(key.half) * 2 * sizeof(float), word_offset));
    if (!tab) return false;
    fill_rope_table(key, tab);
    rope_tables_.insert(key, *word_offset);
    return true;
}

void VulkanBackend::rope(Tensor& x, const int32_t* positions, const RopeParams& p) {
    if (!stream().ok() || x.rows <= 0) return;
    vk::Binding xb;
    uint32_t x_off, x_stride;
    if (!is_f32(x) || p.n_heads <= 0 || p.head_dim <= 0 || p.rope_dim < 0 || p.rope_dim > p.head_dim ||
        p.rope_dim % 2 || static_cast<int64_t>(p.n_heads) * p.head_dim > x.cols || (p.rope_dim > 0 && !p.inv_freq))
        return fail(invalid("rope: bad parameters for x of width %lld", static_cast<long long>(x.cols)));
    if (!bind_plain(x, x.rows, "rope", "x", &xb, &x_off, &x_stride)) return;
    if (p.rope_dim == 0) return;
    uint32_t table = 0;
    if (!rope_table(positions, x.rows, p, &table)) return;
    const uint32_t n_pairs = static_cast<uint32_t>(p.rope_dim / 2);
    struct {
        uint32_t x_off, x_stride, n_heads, head_dim, n_pairs, table_off, neox;
    } pc = {x_off, x_stride, static_cast<uint32_t>(p.n_heads), static_cast<uint32_t>(p.head_dim), n_pairs, table,
            p.neox ? 1u : 0u};
    stream().dispatch(vk::ShaderId::Rope, {xb, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc,
                      sizeof pc, groups(static_cast<uint64_t>(p.n_heads) * n_pairs, kGroup),
                      static_cast<uint32_t>(x.rows));
}

void VulkanBackend::copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) {
    if (!stream().ok() || src.rows <= 0) return;
    vk::Binding sb, db;
    uint32_t s_off, s_stride, d_off, d_stride;
    if (!is_f32(src) || src.cols != dst.cols || dst_row < 0)
        return fail(invalid("copy_rows: src must be F32 of the destination's width"));
    Tensor d = dst.row_range(dst_row, src.rows);
    if (!bind_plain(src, src.rows, "copy_rows", "src", &sb, &s_off, &s_stride) ||
        !bind_plain(d, src.rows, "copy_rows", "dst", &db, &d_off, &d_stride))
        return;
    uint32_t d_param = 0;
    uint32_t* d_word = reinterpret_cast<uint32_t*>(stream().params(4, &d_param));
    if (!d_word) return;
    *d_word = d_off;  // the cache row changes every step: a params value, not a push constant
    struct {
        uint32_t s_off, s_stride, d_param, d_stride, cols;
    } pc = {s_off, s_stride, d_param, d_stride, static_cast<uint32_t>(src.cols)};
    const bool f16 = dst.type == DType::F16;
    // F16: one invocation per destination word; a row spans at most cols/2 + 1 words.
    const uint64_t per_row = f16 ? static_cast<uint64_t>(src.cols) / 2 + 1 : static_cast<uint64_t>(src.cols);
    stream().dispatch(f16 ? vk::ShaderId::CopyRowsF16 : vk::ShaderId::CopyRowsF32,
                      {sb, db, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc, groups(per_row, kGroup),
                      static_cast<uint32_t>(src.rows));
}

namespace {
struct KiviPush {
    uint32_t src_off, src_stride, dst_off, dst_stride, kv_width, head_dim, group, nbits, code_words;
};

// The shape fields; the offsets are filled by binding the tensors.
KiviPush kivi_push(int64_t kv_width, const KiviParams& p) {
    KiviPush pc{};
    pc.kv_width = static_cast<uint32_t>(kv_width);
    pc.head_dim = static_cast<uint32_t>(p.head_dim);
    pc.group = static_cast<uint32_t>(p.group);
    pc.nbits = static_cast<uint32_t>(p.nbits);
    pc.code_words = static_cast<uint32_t>(kivi_code_row_bytes(kv_width, p.nbits) / 4);
    return pc;
}
}  // namespace

// Both record one dispatch; every output word has one writer (kivi_quantize.comp).
void VulkanBackend::kivi_quantize_keys(const Tensor& src, int64_t src_row, Tensor& dst, int64_t dst_group,
                                       const KiviParams& p) {
    if (!stream().ok()) return;
    const int64_t kv_width = src.cols;
    if (!kivi_layout_ok(kv_width, p, p.head_dim) || src_row < 0 || src_row + p.group > src.rows || dst_group < 0 ||
        dst_group >= dst.rows || dst.row_bytes < kivi_key_group_bytes(kv_width, p.group, p.nbits))
        return fail(invalid("kivi_quantize_keys: rows %lld+%d of %lld or group %lld of %lld do not fit (%d bits)",
                            static_cast<long long>(src_row), p.group, static_cast<long long>(src.rows),
                            static_cast<long long>(dst_group), static_cast<long long>(dst.rows), p.nbits));
    KiviPush pc = kivi_push(kv_width, p);
    vk::Binding sb, db;
    uint32_t unused = 0;
    if (!bind_plain(src.row_range(src_row, p.group), p.group, "kivi_quantize_keys", "src", &sb, &pc.src_off,
                    &pc.src_stride) ||
        !bind_words(dst.row_range(dst_group, 1), 1, "kivi_quantize_keys", "dst", &db, &pc.dst_off, &unused))
        return;
    const uint32_t invocations = std::max(pc.code_words, pc.kv_width / 2);
    stream().dispatch(src.type == DType::F16 ? vk::ShaderId::KiviKeysF16 : vk::ShaderId::KiviKeysF32,
                      {sb, db, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc,
                      groups(invocations, kGroup), 1);
}

void VulkanBackend::kivi_quantize_values(const Tensor& src, int64_t src_row, int64_t n, Tensor& dst, int64_t dst_row,
                                         const KiviParams& p) {
    if (!stream().ok() || n <= 0) return;
    const int64_t kv_width = src.cols;
    if (!kivi_layout_ok(kv_width, p, p.head_dim) || src_row < 0 || src_row + n > src.rows || dst_row < 0 ||
        dst_row + n > dst.rows || dst.row_bytes < kivi_value_row_bytes(kv_width, p.group, p.nbits))
        return fail(invalid("kivi_quantize_values: %lld rows from %lld into row %lld of %lld do not fit (%d bits)",
                            static_cast<long long>(n), static_cast<long long>(src_row),
                            static_cast<long long>(dst_row), static_cast<long long>(dst.rows), p.nbits));
    KiviPush pc = kivi_push(kv_width, p);
    vk::Binding sb, db;
    if (!bind_plain(src.row_range(src_row, n), n, "kivi_quantize_values", "src", &sb, &pc.src_off, &pc.src_stride) ||
        !bind_words(dst.row_range(dst_row, n), n, "kivi_quantize_values", "dst", &db, &pc.dst_off, &pc.dst_stride))
        return;
    const uint32_t invocations = std::max(pc.code_words, pc.kv_width / pc.group);
    stream().dispatch(src.type == DType::F16 ? vk::ShaderId::KiviValuesF16 : vk::ShaderId::KiviValuesF32,
                      {sb, db, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc,
                      groups(invocations, kGroup), static_cast<uint32_t>(n));
}

void VulkanBackend::eltwise(vk::ShaderId id, const char* op, const Tensor& a, const Tensor* b, float s,
                            Tensor& out) {
    if (!stream().ok() || a.rows <= 0) return;
    vk::Binding ab, bb, ob;
    EltwisePush pc{};
    pc.cols = static_cast<uint32_t>(a.cols);
    pc.s = s;
    if (!is_f32(a) || (b && (!is_f32(*b) || b->cols < a.cols)) || !is_f32(out) || out.cols < a.cols)
        return fail(invalid("%s: inputs and out must be F32 of matching width", op));
    if (!bind_plain(a, a.rows, op, "a", &ab, &pc.a_off, &pc.a_stride) ||
        (b && !bind_plain(*b, a.rows, op, "b", &bb, &pc.b_off, &pc.b_stride)) ||
        !bind_plain(out, a.rows, op, "out", &ob, &pc.o_off, &pc.o_stride))
        return;
    stream().dispatch(id, {ab, bb, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc,
                      groups(static_cast<uint64_t>(a.cols), kGroup), static_cast<uint32_t>(a.rows));
}

void VulkanBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
    eltwise(vk::ShaderId::SiluMul, "silu_mul", gate, &up, 0.f, out);
}

void VulkanBackend::gelu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
    eltwise(vk::ShaderId::GeluMul, "gelu_mul", gate, &up, 0.f, out);
}

void VulkanBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
    eltwise(vk::ShaderId::Add, "add", a, &b, 0.f, out);
}

void VulkanBackend::scale(const Tensor& x, float s, Tensor& out) {
    eltwise(vk::ShaderId::Scale, "scale", x, nullptr, s, out);
}

}  // namespace ekv
