#include "model/mamba_mixer.h"

namespace ekv {
namespace {

Status read_int(const ModelFile& f, const std::string& key, int64_t lo, int64_t hi, int32_t* out) {
    int64_t v = 0;
    if (!f.meta.get_int(key, &v)) return Error(EKV_ERR_INVALID_FILE, "missing or non-integer metadata %s", key.c_str());
    if (v < lo || v > hi)
        return Error(EKV_ERR_INVALID_FILE, "metadata %s = %lld is out of range [%lld, %lld]", key.c_str(),
                     static_cast<long long>(v), static_cast<long long>(lo), static_cast<long long>(hi));
    *out = static_cast<int32_t>(v);
    return Status::Ok();
}

// A strided view of columns [first, first + n) of every row.
Tensor columns(const Tensor& t, int64_t first, int64_t n) {
    Tensor v = t;
    v.cols = n;
    const size_t skip = static_cast<size_t>(first) * sizeof(float);
    v.offset += skip;
    if (v.data) v.data = static_cast<uint8_t*>(v.data) + skip;
    return v;
}

Status require_f32(const Tensor& t, const std::string& name) {
    if (t.type != DType::F32)
        return Error(EKV_ERR_UNSUPPORTED, "tensor %s is %s; the state-space kernels read it as f32", name.c_str(),
                     dtype_name(t.type));
    return Status::Ok();
}

}  // namespace

Status read_mamba_dims(const ModelFile& f, const std::string& arch, MambaDims* d) {
    const std::string a = arch + ".";
    EKV_TRY(read_int(f, a + "embedding_length", 1, 1 << 16, &d->n_embd));
    EKV_TRY(read_int(f, a + "ssm.inner_size", 1, 1 << 18, &d->d_inner));
    EKV_TRY(read_int(f, a + "ssm.state_size", 1, 1024, &d->d_state));
    EKV_TRY(read_int(f, a + "ssm.conv_kernel", 1, 64, &d->d_conv));
    EKV_TRY(read_int(f, a + "ssm.time_step_rank", 1, d->d_inner, &d->dt_rank));
    bool dt_b_c_rms = false;
    if (f.meta.get_bool(a + "ssm.dt_b_c_rms", &dt_b_c_rms) && dt_b_c_rms && arch == "mamba")
        return Error(EKV_ERR_UNSUPPORTED,
                     "%s.ssm.dt_b_c_rms (Falcon-Mamba's weightless dt/B/C norms) is not supported", arch.c_str());
    return Status::Ok();
}

Status check_mamba_ops(const Backend& backend, const std::string& arch) {
    for (BackendOp op : {BackendOp::SsmConv, BackendOp::SsmScan}) {
        if (!backend.supports_op(op))
            return Error(EKV_ERR_UNSUPPORTED, "the %s backend has no %s kernel, which %s models need (use the cpu backend)",
                         backend.device().name.c_str(), backend_op_name(op), arch.c_str());
    }
    return Status::Ok();
}

Status load_mamba_mixer(WeightLoader& wl, const std::string& p, const MambaDims& d, bool bcdt_norms,
                        MambaMixerWeights* w) {
    const int64_t dbc = static_cast<int64_t>(d.dt_rank) + 2 * static_cast<int64_t>(d.d_state);
    EKV_TRY(wl.load(p + "ssm_in.weight", d.n_embd, 2 * static_cast<int64_t>(d.d_inner), &w->in));
    EKV_TRY(wl.load(p + "ssm_conv1d.weight", d.d_conv, d.d_inner, &w->conv_w));
    EKV_TRY(wl.load(p + "ssm_conv1d.bias", d.d_inner, 1, &w->conv_b));
    EKV_TRY(wl.load(p + "ssm_x.weight", d.d_inner, dbc, &w->x_proj));
    EKV_TRY(wl.load(p + "ssm_dt.weight", d.dt_rank, d.d_inner, &w->dt_w));
    EKV_TRY(wl.load(p + "ssm_dt.bias", d.d_inner, 1, &w->dt_b));
    EKV_TRY(wl.load(p + "ssm_a", d.d_state, d.d_inner, &w->a));
    EKV_TRY(wl.load(p + "ssm_d", d.d_inner, 1, &w->d));
    EKV_TRY(wl.load(p + "ssm_out.weight", d.d_inner, d.n_embd, &w->out));
    EKV_TRY(require_f32(w->conv_w, p + "ssm_conv1d.weight"));
    EKV_TRY(require_f32(w->conv_b, p + "ssm_conv1d.bias"));
    EKV_TRY(require_f32(w->dt_b, p + "ssm_dt.bias"));
    EKV_TRY(require_f32(w->a, p + "ssm_a"));
    EKV_TRY(require_f32(w->d, p + "ssm_d"));
    w->bcdt_norms = bcdt_norms;
    if (bcdt_norms) {
        EKV_TRY(wl.load(p + "ssm_dt_norm.weight", d.dt_rank, 1, &w->dt_norm));
        EKV_TRY(wl.load(p + "ssm_b_norm.weight", d.d_state, 1, &w->b_norm));
        EKV_TRY(wl.load(p + "ssm_c_norm.weight", d.d_state, 1, &w->c_norm));
        EKV_TRY(require_f32(w->dt_norm, p + "ssm_dt_norm.weight"));
        EKV_TRY(require_f32(w->b_norm, p + "ssm_b_norm.weight"));
        EKV_TRY(require_f32(w->c_norm, p + "ssm_c_norm.weight"));
    }
    return Status::Ok();
}

void MambaScratch::add_to(ActivationArena& arena, int64_t rows, const MambaDims& d) {
    arena.add(&xz, rows, 2 * static_cast<int64_t>(d.d_inner));
    arena.add(&xc, rows, d.d_inner);
    arena.add(&dbc, rows, static_cast<int64_t>(d.dt_rank) + 2 * static_cast<int64_t>(d.d_state));
    arena.add(&dt_low, rows, d.dt_rank);
    arena.add(&dt, rows, d.d_inner);
    arena.add(&y, rows, d.d_inner);
}

void mamba_mixer_forward(Backend& be, const MambaMixerWeights& w, const MambaDims& d, const RecurrentState& st,
                         const Tensor& h, int32_t n, float norm_eps, MambaScratch& s, Tensor& out) {
    Tensor xz = s.xz.row_range(0, n), xc = s.xc.row_range(0, n), dbc = s.dbc.row_range(0, n);
    Tensor dt_low = s.dt_low.row_range(0, n), dt = s.dt.row_range(0, n), y = s.y.row_range(0, n);
    be.matmul(w.in, h, xz);
    const Tensor x_in = columns(xz, 0, d.d_inner);
    const Tensor z = columns(xz, d.d_inner, d.d_inner);
    Tensor conv_out = st.conv_out;
    be.ssm_conv(x_in, st.conv_in, w.conv_w, w.conv_b, conv_out, xc);
    be.matmul(w.x_proj, xc, dbc);
    Tensor dt_part = columns(dbc, 0, d.dt_rank);
    Tensor b_part = columns(dbc, d.dt_rank, d.d_state);
    Tensor c_part = columns(dbc, static_cast<int64_t>(d.dt_rank) + d.d_state, d.d_state);
    if (w.bcdt_norms) {  // row-wise, in place
        be.rms_norm(dt_part, w.dt_norm, norm_eps, dt_part);
        be.rms_norm(b_part, w.b_norm, norm_eps, b_part);
        be.rms_norm(c_part, w.c_norm, norm_eps, c_part);
    }
    be.copy_rows(dt_part, dt_low, 0);
    be.matmul(w.dt_w, dt_low, dt);
    Tensor ssm_out = st.ssm_out;
    be.ssm_scan(xc, dt, w.dt_b, w.a, b_part, c_part, w.d, st.ssm_in, ssm_out, y);
    be.silu_mul(z, y, y);
    be.matmul(w.out, y, out);
}

}  // namespace ekv
