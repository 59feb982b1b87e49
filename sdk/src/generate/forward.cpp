#include "generate/forward.h"

namespace ekv {

Status check_tokens(const Model& model, const int32_t* tokens, int32_t n) {
    const int32_t n_vocab = model.info().n_vocab;
    for (int32_t i = 0; i < n; ++i) {
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return Error(EKV_ERR_INVALID_TOKEN, "token %d at index %d is outside the vocabulary [0, %d)", tokens[i], i,
                         n_vocab);
    }
    return Status::Ok();
}

Status checked_forward(const Model& model, Cache& cache, Workspace& ws, const int32_t* tokens, int32_t n,
                       const int32_t* cache_position, bool all_logits, float* logits, size_t logits_len,
                       const CancelSet& cancel) {
    if (!tokens || n <= 0) return Error(EKV_ERR_INVALID_ARGUMENT, "no tokens to forward");
    if (!logits) return Error(EKV_ERR_INVALID_ARGUMENT, "logits buffer is NULL");
    const size_t need = static_cast<size_t>(all_logits ? n : 1) * static_cast<size_t>(model.info().n_vocab);
    if (logits_len < need)
        return Error(EKV_ERR_BUFFER_TOO_SMALL, "logits buffer holds %zu floats, %zu needed", logits_len, need);
    EKV_TRY(check_tokens(model, tokens, n));

    int32_t start = cache.seq_len();
    if (cache_position) {
        start = cache_position[0];
        if (start < 0 || start > cache.seq_len())
            return Error(EKV_ERR_INVALID_ARGUMENT,
                         "cache_position starts at %d but the cache holds %d tokens (must be in [0, %d])", start,
                         cache.seq_len(), cache.seq_len());
        for (int32_t i = 1; i < n; ++i) {
            if (cache_position[i] != start + i)
                return Error(EKV_ERR_INVALID_ARGUMENT, "cache_position must be consecutive: [%d] = %d, expected %d", i,
                             cache_position[i], start + i);
        }
    }
    const int32_t cap = cache.max_seq_len();
    if (cap >= 0 && static_cast<int64_t>(start) + n > cap)
        return Error(EKV_ERR_CACHE_FULL, "the cache holds at most %d tokens; positions %d..%d do not fit", cap, start,
                     start + n - 1);
    if (cancel.raised()) return Error(EKV_ERR_CANCELLED, "cancelled before the forward started");
    // Rewriting from an earlier position drops what followed it (HF semantics).
    const bool rewrite = start < cache.seq_len();
    if (rewrite) EKV_TRY(cache.crop(start));
    EKV_TRY(cache.prepare(n));
    ForwardRequest req;
    req.tokens = tokens;
    req.n_tokens = n;
    req.first_pos = start;
    req.all_logits = all_logits;
    req.logits = logits;
    // Polled inside only where a stop can be undone exactly.
    ws.cancel = !rewrite && cache.rewindable(n) ? cancel : CancelSet();
    Status st = model.arch->forward(cache, ws, req);
    ws.cancel = CancelSet();
    if (st.code() == EKV_ERR_CANCELLED && cache.seq_len() != start) {
        const Status rewound = cache.crop(start);
        if (!rewound.ok()) return Error(EKV_ERR_INTERNAL, "cannot rewind a cancelled forward: %s", rewound.message().c_str());
    }
    return st;
}

}  // namespace ekv
