// CUDA backend: the dense ops. Each checks its tensors on the host (types,
// widths, rows inside their buffers), puts per-step values into the
// parameter arena and launches its kernel through cuda/kernels.h.
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_launch.h"
#include "core/kivi.h"
#include "kernels.h"

namespace ekv {

namespace {

cuda::Rows rows_of(float* p, const Tensor& t, int64_t rows) {
    return {p, rows, t.cols, static_cast<int64_t>(t.row_bytes / sizeof(float))};
}
cuda::ConstRows const_rows_of(const float* p, const Tensor& t, int64_t rows) {
    return {p, rows, t.cols, static_cast<int64_t>(t.row_bytes / sizeof(float))};
}

}  // namespace

void CudaBackend::get_rows(const Tensor& table, const int32_t* ids, int32_t n, Tensor& out) {
    if (!ok() || n <= 0) return;
    if (!supports_weight(table.type))
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA get_rows: table type %s unsupported", dtype_name(table.type)));
    if (!ids) return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA get_rows: no ids"));
    if (out.cols != table.cols) return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA get_rows: out width differs from the table's"));
    const uint8_t* t = byte_rows(table, table.rows, "get_rows", "table");
    float* o = f32_rows(out, n, "get_rows", "out");
    if (!t || !o) return;
    for (int32_t i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= table.rows)
            return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA get_rows: id %d outside [0, %lld)", ids[i],
                              static_cast<long long>(table.rows)));
    const void* d_ids = nullptr;
    int32_t* h_ids = reinterpret_cast<int32_t*>(params(static_cast<size_t>(n) * sizeof(int32_t), &d_ids));
    if (!h_ids) return;
    for (int32_t i = 0; i < n; ++i) h_ids[i] = ids[i];
    if (!current()) return;
    launch("get_rows", cuda::get_rows, {t, table.type, table.rows, table.cols, table.row_bytes},
           static_cast<const int32_t*>(d_ids), n, rows_of(o, out, n));
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
    if (!ok() || x.rows <= 0) return;
    if (weight.cols < x.cols || out.cols < x.cols)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA rms_norm: x, weight, out must have matching widths"));
    const float* xp = f32_rows(x, x.rows, "rms_norm", "x");
    const float* wp = f32_rows(weight, 1, "rms_norm", "weight");
    float* op = f32_rows(out, x.rows, "rms_norm", "out");
    if (!xp || !wp || !op) return;
    if (!current()) return;
    launch("rms_norm", cuda::rms_norm, const_rows_of(xp, x, x.rows), wp, eps, rows_of(op, out, x.rows));
}

void CudaBackend::matmul(const Tensor& w, const Tensor& x, Tensor& out) {
    if (!ok() || x.rows <= 0) return;
    if (!supports_weight(w.type))
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA matmul: weight type %s unsupported", dtype_name(w.type)));
    if (x.cols != w.cols || out.cols != w.rows || out.rows < x.rows || w.cols % dtype_traits(w.type).block_size != 0)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT,
                          "CUDA matmul: x [%lld x %lld] and out [%lld x %lld] do not fit w %s [%lld x %lld]",
                          static_cast<long long>(x.rows), static_cast<long long>(x.cols),
                          static_cast<long long>(out.rows), static_cast<long long>(out.cols), dtype_name(w.type),
                          static_cast<long long>(w.rows), static_cast<long long>(w.cols)));
    const uint8_t* wp = byte_rows(w, w.rows, "matmul", "w");
    const float* xp = f32_rows(x, x.rows, "matmul", "x");
    float* op = f32_rows(out, x.rows, "matmul", "out");
    if (!wp || !xp || !op) return;
    if (!current()) return;
    // 8-bit activations apply to quantized weights only (like the CPU's).
    const bool int8 = int8_activations_ && dtype_traits(w.type).block_size > 1;
    void* s = int8 ? scratch(0, cuda::matmul_scratch_bytes(w.cols, x.rows)) : nullptr;
    if (int8 && !s) return;
    launch("matmul", cuda::matmul, {wp, w.type, w.rows, w.cols, w.row_bytes}, const_rows_of(xp, x, x.rows),
           rows_of(op, out, x.rows), int8, s);
}

void CudaBackend::rope(Tensor& x, const int32_t* positions, const RopeParams& p) {
    if (!ok() || x.rows <= 0) return;
    const int half = p.rope_dim / 2;
    if (half <= 0 || half > 256 || p.rope_dim > p.head_dim || p.n_heads <= 0 ||
        static_cast<int64_t>(p.n_heads) * p.head_dim > x.cols)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA rope: %d rotated dims of %d heads x %d do not fit", p.rope_dim,
                          p.n_heads, p.head_dim));
    float* xp = f32_rows(x, x.rows, "rope", "x");
    if (!xp) return;
    const float* table = rope_table(positions, x.rows, p.inv_freq, half, p.attn_factor, "rope");
    if (!table || !current()) return;
    launch("rope", cuda::rope, rows_of(xp, x, x.rows), p.n_heads, p.head_dim, p.rope_dim, p.neox, table);
}

void CudaBackend::copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) {
    if (!ok() || src.rows <= 0) return;
    if (dst_row < 0 || dst_row + src.rows > dst.rows || dst.cols != src.cols)
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA copy_rows: %lld rows at row %lld do not fit dst [%lld x %lld]",
                          static_cast<long long>(src.rows), static_cast<long long>(dst_row),
                          static_cast<long long>(dst.rows), static_cast<long long>(dst.cols)));
    const float* s = f32_rows(src, src.rows, "copy_rows", "src");
    uint8_t* d = plain_rows(dst.row_range(dst_row, src.rows), src.rows, "copy_rows", "dst");
    if (!s || !d || !current()) return;
    if (graphs_) {
        // The row goes into the arena, so a cache write's arguments repeat
        // from step to step (a graph replays instead of being updated).
        const void* d_row = nullptr;
        int64_t* h_row = reinterpret_cast<int64_t*>(params(sizeof(int64_t), &d_row));
        if (!h_row) return;
        *h_row = dst_row;
        uint8_t* row0 = d - static_cast<size_t>(dst_row) * dst.row_bytes;
        return launch("copy_rows", cuda::copy_rows_at, const_rows_of(s, src, src.rows), row0,
                      static_cast<const int64_t*>(d_row), dst.type, dst.row_bytes);
    }
    launch("copy_rows", cuda::copy_rows, const_rows_of(s, src, src.rows), d, dst.type, dst.row_bytes);
}

// out = op(a, b): F32 rows of one width (b: one row for AddBias, none for
// Scale and GeluErf).
void CudaBackend::eltwise(int op_code, const char* op, const Tensor& a, const Tensor* b, float s, Tensor& out) {
    if (!ok() || a.rows <= 0) return;
    const cuda::Eltwise kind = static_cast<cuda::Eltwise>(op_code);
    const int64_t b_rows = kind == cuda::Eltwise::AddBias ? 1 : a.rows;
    if (out.cols < a.cols || out.rows < a.rows || (b && (b->cols < a.cols || b->rows < b_rows)))
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: operands narrower or shorter than a", op));
    const float* ap = f32_rows(a, a.rows, op, "a");
    const float* bp = b ? f32_rows(*b, b_rows, op, "b") : nullptr;
    float* o = f32_rows(out, a.rows, op, "out");
    if (!ap || (b && !bp) || !o || !current()) return;
    // Every operand is addressed a.cols wide (b and out may be wider views).
    cuda::ConstRows br{};
    if (b) br = {bp, b_rows, a.cols, static_cast<int64_t>(b->row_bytes / sizeof(float))};
    const cuda::Rows orr{o, a.rows, a.cols, static_cast<int64_t>(out.row_bytes / sizeof(float))};
    launch(op, cuda::eltwise, kind, const_rows_of(ap, a, a.rows), br, s, orr);
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
    eltwise(static_cast<int>(cuda::Eltwise::SiluMul), "silu_mul", gate, &up, 0.f, out);
}
void CudaBackend::gelu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
    eltwise(static_cast<int>(cuda::Eltwise::GeluMul), "gelu_mul", gate, &up, 0.f, out);
}
void CudaBackend::scale(const Tensor& x, float s, Tensor& out) {
    eltwise(static_cast<int>(cuda::Eltwise::Scale), "scale", x, nullptr, s, out);
}
void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
    eltwise(static_cast<int>(cuda::Eltwise::Add), "add", a, &b, 0.f, out);
}
void CudaBackend::add_bias(const Tensor& x, const Tensor& bias, Tensor& out) {
    eltwise(static_cast<int>(cuda::Eltwise::AddBias), "add_bias", x, &bias, 0.f, out);
}
void CudaBackend::gelu_erf(const Tensor& x, Tensor& out) {
    eltwise(static_cast<int>(cuda::Eltwise::GeluErf), "gelu_erf", x, nullptr, 0.f, out);
}

// The KIVI source: `rows` F16/F32 rows from src_row, whole heads and groups.
bool CudaBackend::kivi_source(const Tensor& src, int64_t src_row, int64_t rows, const KiviParams& p, const char* op,
                              const uint8_t** out) {
    const int64_t kv_width = src.cols;
    if (!kivi_nbits_supported(p.nbits) || p.group <= 0 || p.head_dim <= 0 || kv_width % p.head_dim != 0 ||
        kv_width % p.group != 0 || (static_cast<int64_t>(p.head_dim) * p.nbits) % 8 != 0 || src_row < 0 ||
        rows <= 0 || src_row + rows > src.rows) {
        fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA %s: KIVI %d-bit, group %d, head_dim %d cannot quantize %lld rows "
                   "from row %lld of [%lld x %lld]", op, p.nbits, p.group, p.head_dim, static_cast<long long>(rows),
                   static_cast<long long>(src_row), static_cast<long long>(src.rows), static_cast<long long>(kv_width)));
        return false;
    }
    *out = plain_rows(src.row_range(src_row, rows), rows, op, "src");
    return *out != nullptr;
}

void CudaBackend::kivi_quantize_keys(const Tensor& src, int64_t src_row, Tensor& dst, int64_t dst_group,
                                     const KiviParams& p) {
    if (!ok()) return;
    const uint8_t* s = nullptr;
    if (!kivi_source(src, src_row, p.group, p, "kivi_quantize_keys", &s)) return;
    if (dst_group < 0 || dst_group >= dst.rows || dst.row_bytes < kivi_key_group_bytes(src.cols, p.group, p.nbits))
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA kivi_quantize_keys: key group %lld outside dst",
                          static_cast<long long>(dst_group)));
    uint8_t* d = address(dst.row_range(dst_group, 1), "kivi_quantize_keys", "dst");
    if (!d || !current()) return;
    if (dst.offset + (dst_group + 1) * dst.row_bytes > dst.buffer->size())
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA kivi_quantize_keys: dst extends past its buffer"));
    launch("kivi_quantize_keys", cuda::kivi_quantize_keys, s, src.type, src.row_bytes, src.cols, p.head_dim, p.group,
           p.nbits, d);
}

void CudaBackend::kivi_quantize_values(const Tensor& src, int64_t src_row, int64_t n, Tensor& dst, int64_t dst_row,
                                       const KiviParams& p) {
    if (!ok() || n <= 0) return;
    const uint8_t* s = nullptr;
    if (!kivi_source(src, src_row, n, p, "kivi_quantize_values", &s)) return;
    if (dst_row < 0 || dst_row + n > dst.rows || dst.row_bytes < kivi_value_row_bytes(src.cols, p.group, p.nbits))
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA kivi_quantize_values: %lld rows at row %lld outside dst",
                          static_cast<long long>(n), static_cast<long long>(dst_row)));
    uint8_t* d = address(dst.row_range(dst_row, n), "kivi_quantize_values", "dst");
    if (!d || !current()) return;
    if (dst.offset + (dst_row + n) * dst.row_bytes > dst.buffer->size())
        return fail(Error(EKV_ERR_INVALID_ARGUMENT, "CUDA kivi_quantize_values: dst extends past its buffer"));
    launch("kivi_quantize_values", cuda::kivi_quantize_values, s, src.type, src.row_bytes, n, src.cols, p.head_dim,
           p.group, p.nbits, d, dst.row_bytes);
}

}  // namespace ekv
