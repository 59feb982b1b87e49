// CUDA backend: the Mamba ops (ssm_conv, ssm_scan) and Whisper's layer_norm
// and im2col_1d (gelu_erf and add_bias are element-wise: cuda_ops.cpp).
// Shapes are checked by backend/op_checks.h like the Vulkan backend's.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/op_checks.h"
#include "kernels.h"

namespace ekv {

namespace {
cuda::ConstRows view(const float* p, const Tensor& t) {
    return {p, t.rows, t.cols, static_cast<int64_t>(t.row_bytes / sizeof(float))};
}
cuda::Rows view(float* p, const Tensor& t) {
    return {p, t.rows, t.cols, static_cast<int64_t>(t.row_bytes / sizeof(float))};
}
}  // namespace

void CudaBackend::ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b,
                           Tensor& state_out, Tensor& out) {
    if (!ok()) return;
    Status st = check_ssm_conv(x, state_in, w, b, state_out, out);
    if (!st.ok()) return fail(Status(st.code(), "CUDA " + st.message()));
    const int64_t hist = w.cols - 1;
    const float* xp = x.rows > 0 ? f32_rows(x, x.rows, "ssm_conv", "x") : nullptr;
    const float* sip = hist > 0 ? f32_rows(state_in, hist, "ssm_conv", "state_in") : nullptr;
    const float* wp = f32_rows(w, w.rows, "ssm_conv", "w");
    const float* bp = f32_rows(b, 1, "ssm_conv", "b");
    float* sop = hist > 0 ? f32_rows(state_out, hist, "ssm_conv", "state_out") : nullptr;
    float* op = x.rows > 0 ? f32_rows(out, x.rows, "ssm_conv", "out") : nullptr;
    if ((x.rows > 0 && (!xp || !op)) || (hist > 0 && (!sip || !sop)) || !wp || !bp || !current()) return;
    launch("ssm_conv", cuda::ssm_conv, view(xp, x), view(sip, state_in), view(wp, w), bp, view(sop, state_out),
           view(op, out));
}

void CudaBackend::ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a,
                           const Tensor& bm, const Tensor& cm, const Tensor& d, const Tensor& state_in,
                           Tensor& state_out, Tensor& y) {
    if (!ok()) return;
    Status st = check_ssm_scan(x, dt, dt_bias, a, bm, cm, d, state_in, state_out, y);
    if (!st.ok()) return fail(Status(st.code(), "CUDA " + st.message()));
    const int64_t n_t = x.rows;
    const float* sip = f32_rows(state_in, state_in.rows, "ssm_scan", "state_in");
    float* sop = f32_rows(state_out, state_out.rows, "ssm_scan", "state_out");
    if (!sip || !sop) return;
    if (n_t == 0) return copy_raw(state_in, state_out, state_in.rows);  // the state carries over
    const float* xp = f32_rows(x, n_t, "ssm_scan", "x");
    const float* dtp = f32_rows(dt, n_t, "ssm_scan", "dt");
    const float* dbp = f32_rows(dt_bias, 1, "ssm_scan", "dt_bias");
    const float* ap = f32_rows(a, a.rows, "ssm_scan", "a");
    const float* bmp = f32_rows(bm, n_t, "ssm_scan", "bm");
    const float* cmp = f32_rows(cm, n_t, "ssm_scan", "cm");
    const float* dp = f32_rows(d, 1, "ssm_scan", "d");
    float* yp = f32_rows(y, n_t, "ssm_scan", "y");
    if (!xp || !dtp || !dbp || !ap || !bmp || !cmp || !dp || !yp || !current()) return;
    launch("ssm_scan", cuda::ssm_scan, view(xp, x), view(dtp, dt), dbp, view(ap, a), view(bmp, bm), view(cmp, cm), dp,
           view(sip, state_in), view(sop, state_out), view(yp, y));
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
    if (!ok() || x.rows <= 0) return;
    Status st = check_layer_norm(x, weight, bias, out);
    if (!st.ok()) return fail(Status(st.code(), "CUDA " + st.message()));
    const float* xp = f32_rows(x, x.rows, "layer_norm", "x");
    const float* wp = f32_rows(weight, 1, "layer_norm", "weight");
    const float* bp = f32_rows(bias, 1, "layer_norm", "bias");
    float* op = f32_rows(out, x.rows, "layer_norm", "out");
    if (!xp || !wp || !bp || !op || !current()) return;
    cuda::Rows o = view(op, out);
    o.rows = x.rows;
    o.cols = x.cols;
    launch("layer_norm", cuda::layer_norm, view(xp, x), wp, bp, eps, o);
}

void CudaBackend::im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, Tensor& out) {
    if (!ok()) return;
    int64_t rows = 0;
    Status st = check_im2col_1d(x, kernel, stride, pad, out, &rows);
    if (!st.ok()) return fail(Status(st.code(), "CUDA " + st.message()));
    if (rows == 0) return;
    const float* xp = f32_rows(x, x.rows, "im2col_1d", "x");
    float* op = f32_rows(out, rows, "im2col_1d", "out");
    if (!xp || !op || !current()) return;
    launch("im2col_1d", cuda::im2col_1d, view(xp, x), kernel, stride, pad, view(op, out));
}

}  // namespace ekv
