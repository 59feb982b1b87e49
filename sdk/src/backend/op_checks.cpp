// Shape checks shared by the device backends.
#include "backend/op_checks.h"

#include "core/tensor_ref.h"

namespace ekv {

namespace {
bool is_f32(const Tensor& t) { return t.type == DType::F32; }
}  // namespace

Status check_weight_source(const TensorRef& src, bool type_supported, const char* backend, Tensor* out,
                           size_t* bytes) {
    if (!type_supported)
        return Error(EKV_ERR_UNSUPPORTED, "tensor %s: type %s is not supported by the %s backend", src.name.c_str(),
                     dtype_name(src.type), backend);
    if (src.ne[0] <= 0 || src.ne[0] % dtype_traits(src.type).block_size != 0)
        return Error(EKV_ERR_INVALID_FILE, "tensor %s: row of %lld elements is not a whole number of %s blocks",
                     src.name.c_str(), static_cast<long long>(src.ne[0]), dtype_name(src.type));
    Tensor t;
    t.type = src.type;
    t.cols = src.ne[0];
    t.rows = src.n_elements() / src.ne[0];
    t.row_bytes = dtype_row_bytes(src.type, src.ne[0]);
    *bytes = t.row_bytes * static_cast<size_t>(t.rows);
    if (!src.data || src.nbytes < *bytes)
        return Error(EKV_ERR_INVALID_FILE, "tensor %s: %zu bytes of data, %zu expected", src.name.c_str(), src.nbytes,
                     *bytes);
    *out = t;
    return Status::Ok();
}

bool rows_overlap(const Tensor& a, const Tensor& b) {
    if (!a.buffer || a.buffer != b.buffer || a.rows <= 0 || b.rows <= 0 || a.cols <= 0 || b.cols <= 0) return false;
    const size_t a_end = a.offset + static_cast<size_t>(a.rows - 1) * a.row_bytes + dtype_row_bytes(a.type, a.cols);
    const size_t b_end = b.offset + static_cast<size_t>(b.rows - 1) * b.row_bytes + dtype_row_bytes(b.type, b.cols);
    return a.offset < b_end && b.offset < a_end;
}

Status check_ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b,
                      const Tensor& state_out, const Tensor& out) {
    const int64_t n_ch = x.cols, n_t = x.rows, k = w.cols, hist = k - 1;
    if (!is_f32(x) || !is_f32(w) || !is_f32(b) || !is_f32(out) || !is_f32(state_out) || k < 1 || n_ch < 1 ||
        n_t < 0 || w.rows != n_ch || b.cols < n_ch || out.cols != n_ch || out.rows != n_t || state_out.rows != hist ||
        state_out.cols != n_ch || (hist > 0 && (!is_f32(state_in) || state_in.rows != hist || state_in.cols != n_ch)))
        return Error(EKV_ERR_INVALID_ARGUMENT, "ssm_conv: shapes do not fit (x %lldx%lld, w %lldx%lld, state %lldx%lld)",
                     static_cast<long long>(n_t), static_cast<long long>(n_ch), static_cast<long long>(w.rows),
                     static_cast<long long>(k), static_cast<long long>(state_out.rows),
                     static_cast<long long>(state_out.cols));
    // out is written before x's taps are read, state_out while state_in is
    // still being read: neither may share memory with an input.
    if (rows_overlap(out, x) || rows_overlap(out, state_in) || rows_overlap(state_out, x) ||
        rows_overlap(state_out, state_in) || rows_overlap(state_out, out))
        return Error(EKV_ERR_INVALID_ARGUMENT,
                     "ssm_conv: out and state_out must not share memory with the inputs or each other");
    return Status::Ok();
}

Status check_ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a, const Tensor& bm,
                      const Tensor& cm, const Tensor& d, const Tensor& state_in, const Tensor& state_out,
                      const Tensor& y) {
    const int64_t n_ch = x.cols, n_t = x.rows, n_st = a.cols;
    if (!is_f32(x) || !is_f32(dt) || !is_f32(dt_bias) || !is_f32(a) || !is_f32(bm) || !is_f32(cm) || !is_f32(d) ||
        !is_f32(state_in) || !is_f32(state_out) || !is_f32(y) || n_ch < 1 || n_st < 1 || n_t < 0 ||
        dt.cols != n_ch || dt.rows != n_t || dt_bias.cols < n_ch || a.rows != n_ch || bm.cols != n_st ||
        cm.cols != n_st || bm.rows != n_t || cm.rows != n_t || d.cols < n_ch || state_in.rows != n_ch ||
        state_in.cols != n_st || state_out.rows != n_ch || state_out.cols != n_st || y.cols != n_ch || y.rows != n_t)
        return Error(EKV_ERR_INVALID_ARGUMENT, "ssm_scan: shapes do not fit (x %lldx%lld, a %lldx%lld)",
                     static_cast<long long>(n_t), static_cast<long long>(n_ch), static_cast<long long>(a.rows),
                     static_cast<long long>(n_st));
    return Status::Ok();
}

Status check_layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& out) {
    if (!is_f32(x) || !is_f32(weight) || !is_f32(bias) || !is_f32(out) || x.cols < 1 || weight.cols < x.cols ||
        bias.cols < x.cols || out.cols < x.cols || out.rows < x.rows)
        return Error(EKV_ERR_INVALID_ARGUMENT, "layer_norm: x, weight, bias, out must be F32 of matching width");
    return Status::Ok();
}

Status check_im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, const Tensor& out,
                       int64_t* rows) {
    *rows = 0;
    if (!is_f32(x) || !is_f32(out) || kernel <= 0 || stride <= 0 || pad < 0 || x.rows < 1 || x.cols < 1 ||
        out.cols < x.cols * kernel)
        return Error(EKV_ERR_INVALID_ARGUMENT,
                     "im2col_1d: bad parameters (kernel %d, stride %d, pad %d) or out narrower than %lld", kernel,
                     stride, pad, static_cast<long long>(x.cols * kernel));
    const int64_t padded = x.rows + 2 * static_cast<int64_t>(pad);
    const int64_t n = padded >= kernel ? (padded - kernel) / stride + 1 : 0;
    if (out.rows != n)
        return Error(EKV_ERR_INVALID_ARGUMENT, "im2col_1d: out has %lld rows, the convolution gives %lld",
                     static_cast<long long>(out.rows), static_cast<long long>(n));
    if (n > 0 && rows_overlap(x, out)) return Error(EKV_ERR_INVALID_ARGUMENT, "im2col_1d: out must not share memory with x");
    *rows = n;
    return Status::Ok();
}

}  // namespace ekv
