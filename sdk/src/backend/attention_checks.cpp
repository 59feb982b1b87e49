// Attention argument checks shared by the backends.
#include "backend/attention_checks.h"

#include "core/kivi.h"

namespace ekv {
namespace {

bool plain_type_ok(DType t) { return t == DType::F16 || t == DType::F32; }

Status check_segment(const KvSegment& seg, int s, const AttentionParams& p, int64_t kv_width, bool host_data) {
    if (seg.n_tokens < 0 || seg.skip < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "attention: segment %d has negative size", s);
    if (seg.n_tokens == 0) return Status::Ok();
    if (host_data && (!seg.k.data || !seg.v.data))
        return Error(EKV_ERR_INVALID_ARGUMENT, "attention: segment %d has no host data", s);
    const int64_t last = static_cast<int64_t>(seg.skip) + seg.n_tokens;  // rows/tokens addressed
    if (seg.format == KvFormat::Plain) {
        if (!plain_type_ok(seg.k.type) || !plain_type_ok(seg.v.type))
            return Error(EKV_ERR_UNSUPPORTED, "attention: segment %d: plain K/V must be F16 or F32", s);
        if (seg.k.cols < kv_width || seg.v.cols < kv_width || seg.k.rows < last || seg.v.rows < last)
            return Error(EKV_ERR_INVALID_ARGUMENT, "attention: segment %d: %d tokens from row %d exceed its tensors", s,
                         seg.n_tokens, seg.skip);
        return Status::Ok();
    }
    const int nbits = seg.kivi.nbits, group = seg.kivi.group;
    if (seg.kivi.head_dim != 0 && seg.kivi.head_dim != p.head_dim)  // codes laid out for other heads
        return Error(EKV_ERR_INVALID_ARGUMENT, "attention: segment %d: KIVI codes for head_dim %d, attention has %d",
                     s, seg.kivi.head_dim, p.head_dim);
    if (!kivi_nbits_supported(nbits) || group <= 0 || kv_width % group != 0 || (p.head_dim * nbits) % 8 != 0)
        return Error(EKV_ERR_UNSUPPORTED, "attention: segment %d: KIVI %d-bit, group %d does not fit %lld channels", s,
                     nbits, group, static_cast<long long>(kv_width));
    if (seg.k.row_bytes < kivi_key_group_bytes(kv_width, group, nbits) ||
        seg.v.row_bytes < kivi_value_row_bytes(kv_width, group, nbits) || seg.k.rows < (last + group - 1) / group ||
        seg.v.rows < last)
        return Error(EKV_ERR_INVALID_ARGUMENT, "attention: segment %d: KIVI tensors too small for %d tokens", s,
                     seg.n_tokens);
    return Status::Ok();
}

}  // namespace

Status check_attention_args(const Tensor& q, const KvView& kv, const AttentionParams& p, int max_head_dim,
                            bool host_data) {
    if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads != 0)
        return Error(EKV_ERR_INVALID_ARGUMENT, "attention: %d heads cannot share %d KV heads", p.n_heads,
                     p.n_kv_heads);
    if (p.head_dim <= 0 || p.head_dim > max_head_dim)
        return Error(EKV_ERR_UNSUPPORTED, "attention: head_dim %d (1..%d supported)", p.head_dim, max_head_dim);
    if (q.rows > 0 && ((host_data && !q.data) || q.type != DType::F32 ||
                       q.cols < static_cast<int64_t>(p.n_heads) * p.head_dim))
        return Error(EKV_ERR_INVALID_ARGUMENT, "attention: q must be F32 rows of n_heads * head_dim");
    if (!(p.softcap >= 0.f && p.softcap <= 3.4e38f))  // also refuses NaN
        return Error(EKV_ERR_INVALID_ARGUMENT, "attention: softcap %g must be finite and >= 0",
                     static_cast<double>(p.softcap));
    if (kv.n_segments < 0 || kv.n_segments > KvView::kMaxSegments)
        return Error(EKV_ERR_INVALID_ARGUMENT, "attention: %d segments (at most %d)", kv.n_segments,
                     KvView::kMaxSegments);
    const int64_t kv_width = static_cast<int64_t>(p.n_kv_heads) * p.head_dim;
    for (int s = 0; s < kv.n_segments; ++s) {
        EKV_TRY(check_segment(kv.seg[s], s, p, kv_width, host_data));
        if (kv.seg[s].pinned && kv.seg[s].n_tokens > 0 &&
            (!p.rope || !p.rope->inv_freq || p.rope->rope_dim < 0 || p.rope->rope_dim > p.head_dim ||
             p.rope->rope_dim % 2))
            return Error(EKV_ERR_INVALID_ARGUMENT, "attention: pinned segment %d needs the keys' RoPE parameters", s);
    }
    return Status::Ok();
}

}  // namespace ekv
