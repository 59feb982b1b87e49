// Vulkan backend: the Mamba ops (ssm_conv, ssm_scan) and Whisper's
// (layer_norm, gelu_erf, add_bias, im2col_1d), semantics in
// backend/backend.h, checked like vulkan_ops.cpp's. Push-constant structs
// mirror the `P` blocks of shaders/*.comp field by field. A pipeline binds at
// most four tensors (binding 4 is the params arena), so the Mamba ops, which
// read up to ten, run as a few dispatches: see ssm_conv.comp and
// ssm_scan.comp.
#include <algorithm>

#include "backend/op_checks.h"
#include "backend/vulkan/vk_op_util.h"
#include "backend/vulkan/vk_pipelines.h"
#include "backend/vulkan/vk_shaders.h"
#include "backend/vulkan/vk_stream.h"
#include "backend/vulkan/vulkan_backend.h"

namespace ekv {
using vk::groups;
using vk::invalid;
using vk::is_f32;
using vk::kGroup;
using vk::EltwisePush;

namespace {

constexpr uint32_t kMaxStatesPerLane = 16;   // MAX_PER_LANE in ssm_scan.comp
constexpr uint64_t kMaxGroups = 65535;       // grids that loop (ssm_scan) stay under every device's limit

struct ConvPush {
    uint32_t in_off, in_stride, w_off, w_stride, b_off, o_off, o_stride, so_off, so_stride, n_ch, n_t, k;
};

struct ScanPush {
    uint32_t in0_off, in0_stride, in1_off, in1_stride, in2_off, in2_stride, out_off, out_stride;
    uint32_t n_ch, n_st, n_t, s_delta, s_x, s_b, s_c, s_h, lanes, per_lane;
};

}  // namespace

void VulkanBackend::ssm_conv(const Tensor& x, const Tensor& state_in, const Tensor& w, const Tensor& b,
                             Tensor& state_out, Tensor& out) {
    if (!stream().ok()) return;
    const int64_t n_ch = x.cols, n_t = x.rows, k = w.cols, hist = k - 1;
    Status checked = check_ssm_conv(x, state_in, w, b, state_out, out);
    if (!checked.ok()) return fail(Status(checked.code(), "Vulkan " + checked.message()));
    if (n_t == 0) {  // the state carries over unchanged
        if (hist > 0) copy_rows(state_in, state_out, 0);
        return;
    }
    vk::Binding xb, wb, bb, ob, sib, sob;
    uint32_t x_off, x_stride, w_off, w_stride, b_off, b_stride, o_off, o_stride;
    uint32_t si_off = 0, si_stride = 0, so_off = 0, so_stride = 0;
    if (!bind_plain(x, n_t, "ssm_conv", "x", &xb, &x_off, &x_stride) ||
        !bind_plain(w, n_ch, "ssm_conv", "w", &wb, &w_off, &w_stride) ||
        !bind_plain(b, 1, "ssm_conv", "b", &bb, &b_off, &b_stride) ||
        !bind_plain(out, n_t, "ssm_conv", "out", &ob, &o_off, &o_stride) ||
        (hist > 0 && (!bind_plain(state_in, hist, "ssm_conv", "state_in", &sib, &si_off, &si_stride) ||
                      !bind_plain(state_out, hist, "ssm_conv", "state_out", &sob, &so_off, &so_stride))))
        return;
    const uint32_t c = static_cast<uint32_t>(n_ch), t = static_cast<uint32_t>(n_t), kk = static_cast<uint32_t>(k);
    const ConvPush history = {si_off, si_stride, w_off, w_stride, b_off, o_off, o_stride, 0, 0, c, t, kk};
    stream().dispatch(vk::ShaderId::SsmConvHistory, {sib, wb, bb, ob, VK_NULL_HANDLE}, &history, sizeof history,
                      groups(c, kGroup), t);
    // The new state's rows that still come from state_in (fewer inputs than
    // history rows: decoding), then the taps from x and the rows they give.
    if (hist > n_t) copy_rows(state_in.row_range(n_t, hist - n_t), state_out, 0);
    const ConvPush input = {x_off, x_stride, w_off, w_stride, 0, o_off, o_stride, so_off, so_stride, c, t, kk};
    stream().dispatch(vk::ShaderId::SsmConvInput, {xb, wb, sob, ob, VK_NULL_HANDLE}, &input, sizeof input,
                      groups(c, kGroup), t + static_cast<uint32_t>(hist));
}

void VulkanBackend::ssm_scan(const Tensor& x, const Tensor& dt, const Tensor& dt_bias, const Tensor& a,
                             const Tensor& bm, const Tensor& cm, const Tensor& d, const Tensor& state_in,
                             Tensor& state_out, Tensor& y) {
    if (!stream().ok()) return;
    const int64_t n_ch = x.cols, n_t = x.rows, n_st = a.cols;
    Status checked = check_ssm_scan(x, dt, dt_bias, a, bm, cm, d, state_in, state_out, y);
    if (!checked.ok()) return fail(Status(checked.code(), "Vulkan " + checked.message()));
    if (n_t == 0) return copy_rows(state_in, state_out, 0);  // the state carries over
    if (n_st > static_cast<int64_t>(kGroup * kMaxStatesPerLane))
        return fail(Error(EKV_ERR_UNSUPPORTED, "Vulkan ssm_scan: %lld states per channel (at most %u)",
                          static_cast<long long>(n_st), kGroup * kMaxStatesPerLane));
    // Scratch S (ssm_scan.comp): delta and x [T x C], B and C [T x N], h [C x N].
    const uint64_t tc = static_cast<uint64_t>(n_t * n_ch), tn = static_cast<uint64_t>(n_t * n_st);
    const uint64_t words = 2 * tc + 2 * tn + static_cast<uint64_t>(n_ch * n_st);
    if (words * 4 > max_binding_span())
        return fail(Error(EKV_ERR_UNSUPPORTED, "Vulkan ssm_scan: %lld tokens x %lld channels need more scratch than "
                          "one binding holds; pass fewer tokens", static_cast<long long>(n_t),
                          static_cast<long long>(n_ch)));
    vk::Binding xb, dtb, dbb, ab, bmb, cmb, db, sib, sob, yb;
    uint32_t x_off, x_stride, dt_off, dt_stride, db_off, db_stride, a_off, a_stride, bm_off, bm_stride, cm_off,
        cm_stride, d_off, d_stride, si_off, si_stride, so_off, so_stride, y_off, y_stride;
    if (!bind_plain(x, n_t, "ssm_scan", "x", &xb, &x_off, &x_stride) ||
        !bind_plain(dt, n_t, "ssm_scan", "dt", &dtb, &dt_off, &dt_stride) ||
        !bind_plain(dt_bias, 1, "ssm_scan", "dt_bias", &dbb, &db_off, &db_stride) ||
        !bind_plain(a, n_ch, "ssm_scan", "a", &ab, &a_off, &a_stride) ||
        !bind_plain(bm, n_t, "ssm_scan", "bm", &bmb, &bm_off, &bm_stride) ||
        !bind_plain(cm, n_t, "ssm_scan", "cm", &cmb, &cm_off, &cm_stride) ||
        !bind_plain(d, 1, "ssm_scan", "d", &db, &d_off, &d_stride) ||
        !bind_plain(state_in, n_ch, "ssm_scan", "state_in", &sib, &si_off, &si_stride) ||
        !bind_plain(state_out, n_ch, "ssm_scan", "state_out", &sob, &so_off, &so_stride) ||
        !bind_plain(y, n_t, "ssm_scan", "y", &yb, &y_off, &y_stride))
        return;
    // The attention state buffer doubles as S: ops run in order, and no
    // attention keeps anything in it between calls.
    if (!ensure_attention_state(static_cast<size_t>(words) * 4)) return;
    const VkBuffer s = attn_state_->handle();

    ScanPush pc{};
    pc.n_ch = static_cast<uint32_t>(n_ch);
    pc.n_st = static_cast<uint32_t>(n_st);
    pc.n_t = static_cast<uint32_t>(n_t);
    pc.s_delta = 0;
    pc.s_x = static_cast<uint32_t>(tc);
    pc.s_b = static_cast<uint32_t>(2 * tc);
    pc.s_c = static_cast<uint32_t>(2 * tc + tn);
    pc.s_h = static_cast<uint32_t>(2 * tc + 2 * tn);
    // Invocations per channel: the states rounded up to a power of two, at most a workgroup.
    pc.lanes = 1;
    while (pc.lanes < pc.n_st && pc.lanes < kGroup) pc.lanes *= 2;
    pc.per_lane = (pc.n_st + pc.lanes - 1) / pc.lanes;
    const uint32_t gc = groups(pc.n_ch, kGroup), gt = pc.n_t;

    ScanPush delta = pc;
    delta.in0_off = dt_off, delta.in0_stride = dt_stride, delta.in1_off = db_off;
    delta.in2_off = x_off, delta.in2_stride = x_stride;
    stream().dispatch(vk::ShaderId::SsmScanDelta, {dtb, dbb, xb, s, VK_NULL_HANDLE}, &delta, sizeof delta, gc, gt);

    ScanPush stage = pc;
    stage.in0_off = bm_off, stage.in0_stride = bm_stride, stage.in1_off = cm_off, stage.in1_stride = cm_stride;
    stage.in2_off = si_off, stage.in2_stride = si_stride;
    const uint64_t staged = 2 * tn + static_cast<uint64_t>(n_ch * n_st);
    stream().dispatch(vk::ShaderId::SsmScanStage, {bmb, cmb, sib, s, VK_NULL_HANDLE}, &stage, sizeof stage,
                      static_cast<uint32_t>(std::min<uint64_t>(groups(staged, kGroup), kMaxGroups)), 1);

    ScanPush scan = pc;
    scan.in1_off = a_off, scan.in1_stride = a_stride, scan.in2_off = so_off, scan.in2_stride = so_stride;
    scan.out_off = y_off, scan.out_stride = y_stride;
    const uint64_t channel_groups = groups(pc.n_ch, kGroup / pc.lanes);
    stream().dispatch(vk::ShaderId::SsmScan, {s, ab, sob, yb, VK_NULL_HANDLE}, &scan, sizeof scan,
                      static_cast<uint32_t>(std::min(channel_groups, kMaxGroups)), 1);

    ScanPush skip = pc;
    skip.in1_off = d_off, skip.out_off = y_off, skip.out_stride = y_stride;
    stream().dispatch(vk::ShaderId::SsmScanSkip, {s, db, VK_NULL_HANDLE, yb, VK_NULL_HANDLE}, &skip, sizeof skip, gc,
                      gt);
}

void VulkanBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
    if (!stream().ok() || x.rows <= 0) return;
    Status checked = check_layer_norm(x, weight, bias, out);
    if (!checked.ok()) return fail(Status(checked.code(), "Vulkan " + checked.message()));
    vk::Binding xb, wb, bb, ob;
    uint32_t x_off, x_stride, w_off, w_stride, b_off, b_stride, o_off, o_stride;
    if (!bind_plain(x, x.rows, "layer_norm", "x", &xb, &x_off, &x_stride) ||
        !bind_plain(weight, 1, "layer_norm", "weight", &wb, &w_off, &w_stride) ||
        !bind_plain(bias, 1, "layer_norm", "bias", &bb, &b_off, &b_stride) ||
        !bind_plain(out, x.rows, "layer_norm", "out", &ob, &o_off, &o_stride))
        return;
    struct {
        uint32_t x_off, x_stride, w_off, b_off, o_off, o_stride, n;
        float eps;
    } pc = {x_off, x_stride, w_off, b_off, o_off, o_stride, static_cast<uint32_t>(x.cols), eps};
    stream().dispatch(vk::ShaderId::LayerNorm, {xb, wb, ob, bb, VK_NULL_HANDLE}, &pc, sizeof pc,
                      static_cast<uint32_t>(x.rows), 1);
}

void VulkanBackend::gelu_erf(const Tensor& x, Tensor& out) {
    eltwise(vk::ShaderId::GeluErf, "gelu_erf", x, nullptr, 0.f, out);
}

// eltwise.comp's add with a zero row stride for the bias: every row adds row 0.
void VulkanBackend::add_bias(const Tensor& x, const Tensor& bias, Tensor& out) {
    if (!stream().ok() || x.rows <= 0) return;
    if (!is_f32(x) || !is_f32(bias) || !is_f32(out) || bias.cols < x.cols || out.cols < x.cols)
        return fail(invalid("add_bias: x, bias, out must be F32 of matching width"));
    vk::Binding xb, bb, ob;
    EltwisePush pc{};
    pc.cols = static_cast<uint32_t>(x.cols);
    uint32_t unused_stride = 0;
    if (!bind_plain(x, x.rows, "add_bias", "x", &xb, &pc.a_off, &pc.a_stride) ||
        !bind_plain(bias, 1, "add_bias", "bias", &bb, &pc.b_off, &unused_stride) ||
        !bind_plain(out, x.rows, "add_bias", "out", &ob, &pc.o_off, &pc.o_stride))
        return;
    pc.b_stride = 0;
    stream().dispatch(vk::ShaderId::Add, {xb, bb, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc, sizeof pc,
                      groups(static_cast<uint64_t>(x.cols), kGroup), static_cast<uint32_t>(x.rows));
}

void VulkanBackend::im2col_1d(const Tensor& x, int32_t kernel, int32_t stride, int32_t pad, Tensor& out) {
    if (!stream().ok()) return;
    int64_t rows = 0;
    Status checked = check_im2col_1d(x, kernel, stride, pad, out, &rows);
    if (!checked.ok()) return fail(Status(checked.code(), "Vulkan " + checked.message()));
    if (rows == 0) return;
    vk::Binding xb, ob;
    uint32_t x_off, x_stride, o_off, o_stride;
    if (!bind_plain(x, x.rows, "im2col_1d", "x", &xb, &x_off, &x_stride) ||
        !bind_plain(out, rows, "im2col_1d", "out", &ob, &o_off, &o_stride))
        return;
    struct {
        uint32_t x_off, x_stride, x_rows, o_off, o_stride, channels, kernel, stride, pad;
    } pc = {x_off,    x_stride, static_cast<uint32_t>(x.rows),  o_off, o_stride, static_cast<uint32_t>(x.cols),
            static_cast<uint32_t>(kernel), static_cast<uint32_t>(stride), static_cast<uint32_t>(pad)};
    stream().dispatch(vk::ShaderId::Im2Col1d, {xb, VK_NULL_HANDLE, ob, VK_NULL_HANDLE, VK_NULL_HANDLE}, &pc,
                      sizeof pc, groups(static_cast<uint64_t>(x.cols) * static_cast<uint64_t>(kernel), kGroup),
                      static_cast<uint32_t>(rows));
}

}  // namespace ekv
