// Vulkan backend: the compute ops. Each checks its tensors (types, widths,
// bounds inside their buffers) on the host, copies small host inputs into the
// params arena and records one or a few dispatches. Push-constant structs
// mirror the `P` blocks of shaders/*.comp field by field.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "backend/vulkan/vk_pipelines.h"
#include "backend/vulkan/vk_shaders.h"
#include "backend/vulkan/vk_stream.h"
#include "backend/vulkan/vulkan_backend.h"

namespace ekv {
namespace {

constexpr uint32_t kGroup = 64;           // local size of every shader
constexpr uint32_t kMatmulTokenTile = 4;  // TT in matmul.comp
constexpr int32_t kMaxHeadDim = 256;      // MAX_HEAD_DIM in attention_segment.comp
constexpr uint32_t kNoRotation = 0xFFFFFFFFu;

uint32_t groups(uint64_t n, uint32_t per) { return static_cast<uint32_t>((n + per - 1) / per); }

Status invalid(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status invalid(const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return Status(EKV_ERR_INVALID_ARGUMENT, std::string("Vulkan ") + msg);
}

size_t element_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

// Element offset and row stride of a plain (F32/F16) tensor, after checking
// alignment and that `rows` rows of `cols` elements lie inside its buffer.
bool plain_layout(const Tensor& t, int64_t rows, const char* op, const char* name, uint32_t* off,
                  uint32_t* stride, Status* err) {
    const size_t es = element_bytes(t.type);
    if ((t.type != DType::F32 && t.type != DType::F16) || t.offset % es || t.row_bytes % es ||
        t.row_bytes < static_cast<size_t>(t.cols) * es) {
        *err = invalid("%s: %s must be F32/F16 rows aligned to the element size", op, name);
        return false;
    }
    const size_t size = t.buffer ? t.buffer->size() : 0;
    const size_t end = rows > 0 ? t.offset + static_cast<size_t>(rows - 1) * t.row_bytes + t.cols * es : t.offset;
    if (end > size) {
        *err = invalid("%s: %s (%lld rows) extends past its buffer (%zu bytes)", op, name,
                       static_cast<long long>(rows), size);
        return false;
    }
    *off = static_cast<uint32_t>(t.offset / es);
    *stride = static_cast<uint32_t>(t.row_bytes / es);
    return true;
}

bool is_f32(const Tensor& t) { return t.type == DType::F32; }

}  // namespace

void VulkanBackend::get_rows(const Tensor& table, const int32_t* ids, int32_t n, Tensor& out) {
    if (!stream().ok() || n <= 0) return;
    const int variant = vk::weight_variant(table.type);
    if (variant < 0) return fail(invalid("get_rows: table type %s unsupported", dtype_name(table.type)));
    const VkBuffer tb = buffer_of(table, "get_rows", "table"), ob = buffer_of(out, "get_rows", "out");
    if (!tb || !ob) return;
    Status err;
    uint32_t o_off = 0, o_stride = 0;
    if (!is_f32(out) || out.cols != table.cols || !plain_layout(out, n, "get_rows", "out", &o_off, &o_stride, &err))
        return fail(err.ok() ? invalid("get_rows: out must be F32 with the table's width") : err);
    if (table.offset % (table.type == DType::F32 ? 4 : 2) || table.offset + static_cast<size_t>(table.rows) * table.row_bytes > table.buffer->size())
        return fail(invalid("get_rows: table outside its buffer"));
    uint32_t ids_off = 0;
    int32_t* dst = reinterpret_cast<int32_t*>(stream().params(static_cast<size_t>(n) * 4, &ids_off));
    if (!dst) return;
    for (int32_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= table.rows)
            return fail(invalid("get_rows: id %d outside [0, %lld)", ids[i], static_cast<long long>(table.rows)));
        dst[i] = ids[i];
    }
    struct {
        uint32_t w_off, w_row_bytes, o_off, o_stride, k, ids_off, n_rows;
    } pc = {static_cast<uint32_t>(table.offset), static_cast<uint32_t>(table.row_bytes), o_off, o_stride,
            static_cast<uint32_t>(table.cols), ids_off, static_cast<uint32_t>(table.rows)};
    stream().dispatch(vk::get_rows_shader(variant), {tb, VK_NULL_HANDLE, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc,
                      sizeof pc, groups(groups(static_cast<uint64_t>(table.cols), 32), kGroup),
                      static_cast<uint32_t>(n));
}

void VulkanBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
    if (!stream().ok() || x.rows <= 0) return;
    const VkBuffer xb = buffer_of(x, "rms_norm", "x"), wb = buffer_of(weight, "rms_norm", "weight"),
                   ob = buffer_of(out, "rms_norm", "out");
    if (!xb || !wb || !ob) return;
    Status err;
    uint32_t x_off, x_stride, w_off, w_stride, o_off, o_stride;
    if (!is_f32(x) || !is_f32(weight) || !is_f32(out) || weight.cols < x.cols || out.cols < x.cols)
        return fail(invalid("rms_norm: x, weight, out must be F32 of matching width"));
    if (!plain_layout(x, x.rows, "rms_norm", "x", &x_off, &x_stride, &err) ||
        !plain_layout(weight, 1, "rms_norm", "weight", &w_off, &w_stride, &err) ||
        !plain_layout(out, x.rows, "rms_norm", "out", &o_off, &o_stride, &err))
        return fail(err);
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
    const VkBuffer wb = buffer_of(w, "matmul", "w"), xb = buffer_of(x, "matmul", "x"),
                   ob = buffer_of(out, "matmul", "out");
    if (!wb || !xb || !ob) return;
    Status err;
    uint32_t x_off, x_stride, o_off, o_stride;
    if (!is_f32(x) || !is_f32(out) || x.cols != w.cols || out.cols != w.rows || out.rows < x.rows)
        return fail(invalid("matmul: x [%lld x %lld] and out [%lld x %lld] do not fit w [%lld x %lld]",
                            static_cast<long long>(x.rows), static_cast<long long>(x.cols),
                            static_cast<long long>(out.rows), static_cast<long long>(out.cols),
                            static_cast<long long>(w.rows), static_cast<long long>(w.cols)));
    if (!plain_layout(x, x.rows, "matmul", "x", &x_off, &x_stride, &err) ||
        !plain_layout(out, x.rows, "matmul", "out", &o_off, &o_stride, &err))
        return fail(err);
    if (w.cols % dtype_traits(w.type).block_size || w.offset % (w.type == DType::F32 ? 4 : 2) ||
        w.row_bytes < dtype_row_bytes(w.type, w.cols) ||
        w.offset + static_cast<size_t>(w.rows) * w.row_bytes > w.buffer->size())
        return fail(invalid("matmul: weight layout does not fit its buffer"));
    struct {
        uint32_t w_off, w_row_bytes, x_off, x_stride, o_off, o_stride, k, n, t;
    } pc = {static_cast<uint32_t>(w.offset), static_cast<uint32_t>(w.row_bytes), x_off, x_stride, o_off, o_stride,
            static_cast<uint32_t>(w.cols), static_cast<uint32_t>(w.rows), static_cast<uint32_t>(x.rows)};
    const uint64_t row_groups = groups(static_cast<uint64_t>(w.rows), 64 / ctx_->pipelines().matmul_lanes());
    const uint32_t gx = row_groups < 65535 ? static_cast<uint32_t>(row_groups) : 65535u;  // the shader loops
    stream().dispatch(vk::matmul_shader(variant), {wb, xb, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc, gx,
                      groups(static_cast<uint64_t>(x.rows), kMatmulTokenTile));
}

bool VulkanBackend::rope_table(const int32_t* positions, int64_t n, const RopeParams& p, uint32_t* word_offset) {
    const int32_t n_pairs = p.rope_dim / 2;
    RopeCache& c = rope_cache_;
    if (c.generation == stream().generation() && c.inv_freq == p.inv_freq && c.n_pairs == n_pairs &&
        c.attn_factor == p.attn_factor && static_cast<int64_t>(c.positions.size()) == n &&
        std::equal(c.positions.begin(), c.positions.end(), positions)) {
        *word_offset = c.offset;
        return true;
    }
    float* tab = reinterpret_cast<float*>(
        stream().params(static_cast<size_t>(n) * static_cast<size_t>(n_pairs) * 2 * sizeof(float), word_offset));
    if (!tab) return false;
    // As the CPU backend: the angle in double (a float product loses the
    // phase of fast-turning pairs at long positions), then the magnitude factor.
    for (int64_t t = 0; t < n; ++t) {
        const double pos = static_cast<double>(positions[t]);
        for (int32_t i = 0; i < n_pairs; ++i) {
            const double theta = pos * static_cast<double>(p.inv_freq[i]);
            *tab++ = static_cast<float>(std::cos(theta)) * p.attn_factor;
            *tab++ = static_cast<float>(std::sin(theta)) * p.attn_factor;
        }
    }
    c.generation = stream().generation();
    c.inv_freq = p.inv_freq;
    c.n_pairs = n_pairs;
    c.attn_factor = p.attn_factor;
    c.positions.assign(positions, positions + n);
    c.offset = *word_offset;
    return true;
}

void VulkanBackend::rope(Tensor& x, const int32_t* positions, const RopeParams& p) {
    if (!stream().ok() || x.rows <= 0) return;
    const VkBuffer xb = buffer_of(x, "rope", "x");
    if (!xb) return;
    Status err;
    uint32_t x_off, x_stride;
    if (!is_f32(x) || p.n_heads <= 0 || p.head_dim <= 0 || p.rope_dim < 0 || p.rope_dim > p.head_dim ||
        p.rope_dim % 2 || static_cast<int64_t>(p.n_heads) * p.head_dim > x.cols || (p.rope_dim > 0 && !p.inv_freq))
        return fail(invalid("rope: bad parameters for x of width %lld", static_cast<long long>(x.cols)));
    if (!plain_layout(x, x.rows, "rope", "x", &x_off, &x_stride, &err)) return fail(err);
    if (p.rope_dim == 0) return;
    uint32_t table = 0;
    if (!rope_table(positions, x.rows, p, &table)) return;
    const uint32_t n_pairs = static_cast<uint32_t>(p.rope_dim / 2);
    struct {
        uint32_t x_off, x_stride, n_heads, head_dim, n_pairs, table_off;
    } pc = {x_off, x_stride, static_cast<uint32_t>(p.n_heads), static_cast<uint32_t>(p.head_dim), n_pairs, table};
    stream().dispatch(vk::ShaderId::Rope, {xb, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc,
                      sizeof pc, groups(static_cast<uint64_t>(p.n_heads) * n_pairs, kGroup),
                      static_cast<uint32_t>(x.rows));
}

void VulkanBackend::copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) {
    if (!stream().ok() || src.rows <= 0) return;
    const VkBuffer sb = buffer_of(src, "copy_rows", "src"), db = buffer_of(dst, "copy_rows", "dst");
    if (!sb || !db) return;
    Status err;
    uint32_t s_off, s_stride, d_off, d_stride;
    if (!is_f32(src) || src.cols != dst.cols || dst_row < 0)
        return fail(invalid("copy_rows: src must be F32 of the destination's width"));
    Tensor d = dst.row_range(dst_row, src.rows);
    if (!plain_layout(src, src.rows, "copy_rows", "src", &s_off, &s_stride, &err) ||
        !plain_layout(d, src.rows, "copy_rows", "dst", &d_off, &d_stride, &err))
        return fail(err);
    struct {
        uint32_t s_off, s_stride, d_off, d_stride, cols;
    } pc = {s_off, s_stride, d_off, d_stride, static_cast<uint32_t>(src.cols)};
    const bool f16 = dst.type == DType::F16;
    // F16: one invocation per destination word; a row spans at most cols/2 + 1 words.
    const uint64_t per_row = f16 ? static_cast<uint64_t>(src.cols) / 2 + 1 : static_cast<uint64_t>(src.cols);
    stream().dispatch(f16 ? vk::ShaderId::CopyRowsF16 : vk::ShaderId::CopyRowsF32,
                      {sb, db, VK_NULL_HANDLE, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc, groups(per_row, kGroup),
                      static_cast<uint32_t>(src.rows));
}

void VulkanBackend::attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
                              Tensor& out) {
    if (!stream().ok() || q.rows <= 0) return;
    const VkBuffer qb = buffer_of(q, "attention", "q"), ob = buffer_of(out, "attention", "out");
    if (!qb || !ob) return;
    const int64_t width = static_cast<int64_t>(p.n_heads) * p.head_dim;
    if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads || p.head_dim <= 0 ||
        p.head_dim > kMaxHeadDim || !is_f32(q) || !is_f32(out) || q.cols < width || out.cols < width ||
        kv.n_segments < 0 || kv.n_segments > KvView::kMaxSegments)
        return fail(invalid("attention: unsupported shape (heads %d/%d, head_dim %d <= %d)", p.n_heads, p.n_kv_heads,
                            p.head_dim, kMaxHeadDim));
    Status err;
    uint32_t q_off, q_stride, o_off, o_stride;
    if (!plain_layout(q, q.rows, "attention", "q", &q_off, &q_stride, &err) ||
        !plain_layout(out, q.rows, "attention", "out", &o_off, &o_stride, &err))
        return fail(err);
    const int64_t kv_width = static_cast<int64_t>(p.n_kv_heads) * p.head_dim;
    bool any_pinned = false;
    for (int s = 0; s < kv.n_segments; ++s) {
        const KvSegment& seg = kv.seg[s];
        if (seg.format != KvFormat::Plain)
            return fail(Error(EKV_ERR_UNSUPPORTED, "Vulkan attention: KIVI-quantized segments are not implemented yet"));
        if (seg.k.type != seg.v.type || seg.k.cols < kv_width || seg.v.cols < kv_width || seg.n_tokens < 0 ||
            seg.skip < 0)
            return fail(invalid("attention: segment %d has mismatched or narrow K/V", s));
        if (seg.pinned && seg.n_tokens > 0) {
            if (!p.rope || !p.rope->inv_freq || p.rope->rope_dim < 0 || p.rope->rope_dim > p.head_dim ||
                p.rope->rope_dim % 2)
                return fail(invalid("attention: pinned segment %d needs the keys' RoPE parameters", s));
            any_pinned = true;
        }
    }
    const size_t state_bytes = static_cast<size_t>(q.rows) * p.n_heads * (p.head_dim + 2) * sizeof(float);
    if (!ensure_attention_state(state_bytes)) return;

    // Params: query positions, then (pinned segments) the per-token (cos, sin)
    // that moves the query to min(q_pos, pinned_query_pos).
    const bool rotate = any_pinned && p.rope->rope_dim > 0;
    const int32_t n_pairs = rotate ? p.rope->rope_dim / 2 : 0;
    uint32_t pos_off = 0;
    uint8_t* prm = stream().params(static_cast<size_t>(q.rows) * (1 + 2 * static_cast<size_t>(n_pairs)) * 4, &pos_off);
    if (!prm) return;
    int32_t* pos = reinterpret_cast<int32_t*>(prm);
    float* rot = reinterpret_cast<float*>(prm) + q.rows;
    for (int64_t t = 0; t < q.rows; ++t) {
        pos[t] = q_pos[t];
        const int32_t delta = (q_pos[t] < kv.pinned_query_pos ? q_pos[t] : kv.pinned_query_pos) - q_pos[t];
        for (int32_t i = 0; i < n_pairs; ++i) {  // double: the distance reaches 1e5+ in long streams
            const double angle = static_cast<double>(delta) * static_cast<double>(p.rope->inv_freq[i]);
            *rot++ = static_cast<float>(std::cos(angle));
            *rot++ = static_cast<float>(std::sin(angle));
        }
    }
    const uint32_t rot_off = rotate ? pos_off + static_cast<uint32_t>(q.rows) : kNoRotation;

    struct {
        uint32_t q_off, q_stride, k_off, k_stride, v_off, v_stride, n_heads, group, head_dim, n_keys;
        int32_t first_pos;
        uint32_t skip;
        int32_t window;
        uint32_t pos_off, rot_off, n_pairs, init;
        float scale;
    } pc{};
    pc.q_off = q_off;
    pc.q_stride = q_stride;
    pc.n_heads = static_cast<uint32_t>(p.n_heads);
    pc.group = static_cast<uint32_t>(p.n_heads / p.n_kv_heads);
    pc.head_dim = static_cast<uint32_t>(p.head_dim);
    pc.pos_off = pos_off;
    pc.n_pairs = static_cast<uint32_t>(n_pairs);
    pc.scale = p.scale;
    const VkBuffer state = attn_state_->handle();
    const uint32_t gx = static_cast<uint32_t>(p.n_heads), gy = static_cast<uint32_t>(q.rows);
    // An empty view still runs one pass so the state starts empty.
    const int passes = kv.n_segments > 0 ? kv.n_segments : 1;
    for (int s = 0; s < passes; ++s) {
        VkBuffer kb = VK_NULL_HANDLE, vb = VK_NULL_HANDLE;
        vk::ShaderId shader = vk::ShaderId::AttnSegmentF32;
        pc.n_keys = 0;
        pc.k_off = pc.k_stride = pc.v_off = pc.v_stride = 0;
        pc.first_pos = 0;
        pc.skip = 0;
        pc.window = 0;
        pc.rot_off = kNoRotation;
        if (kv.n_segments > 0) {
            const KvSegment& seg = kv.seg[s];
            kb = buffer_of(seg.k, "attention", "segment K");
            vb = buffer_of(seg.v, "attention", "segment V");
            if (!kb || !vb) return;
            const int64_t rows = static_cast<int64_t>(seg.skip) + seg.n_tokens;
            if (!plain_layout(seg.k, rows, "attention", "segment K", &pc.k_off, &pc.k_stride, &err) ||
                !plain_layout(seg.v, rows, "attention", "segment V", &pc.v_off, &pc.v_stride, &err))
                return fail(err);
            shader = seg.k.type == DType::F16 ? vk::ShaderId::AttnSegmentF16 : vk::ShaderId::AttnSegmentF32;
            pc.n_keys = static_cast<uint32_t>(seg.n_tokens);
            pc.first_pos = seg.first_pos;
            pc.skip = static_cast<uint32_t>(seg.skip);
            pc.window = seg.pinned ? 0 : kv.window;
            pc.rot_off = seg.pinned ? rot_off : kNoRotation;
        }
        pc.init = s == 0 ? 1u : 0u;
        stream().dispatch(shader, {qb, kb, vb, state, VK_NULL_HANDLE}, &pc, sizeof pc, gx, gy);
    }
    struct {
        uint32_t o_off, o_stride, n_heads, head_dim;
    } fin = {o_off, o_stride, static_cast<uint32_t>(p.n_heads), static_cast<uint32_t>(p.head_dim)};
    stream().dispatch(vk::ShaderId::AttnFinish, {ob, VK_NULL_HANDLE, VK_NULL_HANDLE, state, VK_NULL_HANDLE}, &fin,
                      sizeof fin, gx, gy);
}

namespace {
struct EltwisePush {
    uint32_t a_off, a_stride, b_off, b_stride, o_off, o_stride, cols;
};
}  // namespace

void VulkanBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
    if (!stream().ok() || gate.rows <= 0) return;
    const VkBuffer gb = buffer_of(gate, "silu_mul", "gate"), ub = buffer_of(up, "silu_mul", "up"),
                   ob = buffer_of(out, "silu_mul", "out");
    if (!gb || !ub || !ob) return;
    Status err;
    EltwisePush pc{};
    pc.cols = static_cast<uint32_t>(gate.cols);
    if (!is_f32(gate) || !is_f32(up) || !is_f32(out) || up.cols < gate.cols || out.cols < gate.cols)
        return fail(invalid("silu_mul: gate, up, out must be F32 of matching width"));
    if (!plain_layout(gate, gate.rows, "silu_mul", "gate", &pc.a_off, &pc.a_stride, &err) ||
        !plain_layout(up, gate.rows, "silu_mul", "up", &pc.b_off, &pc.b_stride, &err) ||
        !plain_layout(out, gate.rows, "silu_mul", "out", &pc.o_off, &pc.o_stride, &err))
        return fail(err);
    stream().dispatch(vk::ShaderId::SiluMul, {gb, ub, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc,
                      groups(static_cast<uint64_t>(gate.cols), kGroup), static_cast<uint32_t>(gate.rows));
}

void VulkanBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
    if (!stream().ok() || a.rows <= 0) return;
    const VkBuffer ab = buffer_of(a, "add", "a"), bb = buffer_of(b, "add", "b"), ob = buffer_of(out, "add", "out");
    if (!ab || !bb || !ob) return;
    Status err;
    EltwisePush pc{};
    pc.cols = static_cast<uint32_t>(a.cols);
    if (!is_f32(a) || !is_f32(b) || !is_f32(out) || b.cols < a.cols || out.cols < a.cols)
        return fail(invalid("add: a, b, out must be F32 of matching width"));
    if (!plain_layout(a, a.rows, "add", "a", &pc.a_off, &pc.a_stride, &err) ||
        !plain_layout(b, a.rows, "add", "b", &pc.b_off, &pc.b_stride, &err) ||
        !plain_layout(out, a.rows, "add", "out", &pc.o_off, &pc.o_stride, &err))
        return fail(err);
    stream().dispatch(vk::ShaderId::Add, {ab, bb, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc,
                      groups(static_cast<uint64_t>(a.cols), kGroup), static_cast<uint32_t>(a.rows));
}

}  // namespace ekv
