// Shape checks of the Mamba and Whisper ops that every device backend shares
// (backend.h has their semantics). Each returns EKV_ERR_INVALID_ARGUMENT
// naming the op and the shapes when the tensors do not fit.
#pragma once
#include "backend/backend.h"
#include "core/status.h"

namespace ekv {

struct TensorRef;

// A weight a device backend is about to upload: its type supported (the
// backend's answer), whole blocks per row, all its bytes present. On success
// *out describes it (type, cols, rows, row_bytes; no memory yet) and *bytes
// is what to allocate and copy.
Status check_weight_source(const TensorRef& src, bool type_supported, const char* backend, Tensor* out,
                           size_t* bytes);

// Whether two tensors' rows may share memory (conservative: the byte spans of
// interleaved strided views count as overlapping).
bool rows_overlap(const Tensor& a, const Tensor& b);

Status check_ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b,
                      const Tensor& state_out, const Tensor& out);
Status check_ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a, const Tensor& bm,
                      const Tensor& cm, const Tensor& d, const Tensor& state_in, const Tensor& state_out,
                      const Tensor& y);
Status check_layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& out);
// *rows: the convolution's output rows (0: nothing to do).
Status check_im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, const Tensor& out,
                       int64_t* rows);

}  // namespace ekv
