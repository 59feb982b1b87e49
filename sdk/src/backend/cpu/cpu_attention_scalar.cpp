// Portable attention kernel: every segment format and shape the driver
// accepts. Each key/value row of the piece is decoded once into a small
// float buffer (KIVI: code * scale + min) and applied to every query head of
// the pack; the scores go through the online softmax in blocks of
// kAttnBlock keys.
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_attention_kernels.h"
#include "core/fp16.h"
#include "core/kivi.h"

namespace ekv {
namespace cpu {
namespace detail {
namespace {

// Gemma 2's attention logit soft-capping, applied to a block of scores.
void softcap_scores(float* s, int n, float cap) {
    const float inv = 1.0f / cap;
    for (int i = 0; i < n; ++i) s[i] = cap * std::tanh(s[i] * inv);
}

inline float read_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

// One head's slice of a plain F16/F32 row as floats.
void decode_plain(const Tensor& t, int64_t row, int kv_head, int head_dim, float* out) {
    const uint8_t* base = static_cast<const uint8_t*>(t.data) + static_cast<size_t>(row) * t.row_bytes;
    const size_t first = static_cast<size_t>(kv_head) * static_cast<size_t>(head_dim);
    if (t.type == DType::F16) {
        const uint16_t* h = reinterpret_cast<const uint16_t*>(base) + first;
        for (int c = 0; c < head_dim; ++c) out[c] = f16_to_f32(h[c]);
    } else {
        std::memcpy(out, reinterpret_cast<const float*>(base) + first, sizeof(float) * static_cast<size_t>(head_dim));
    }
}

// Decodes the KIVI rows of one head; the key group's per-channel scales and
// minimums are converted once per group, not once per token.
class KiviHeadReader {
public:
    KiviHeadReader(const AttnPiece& pc)
        : seg_(*pc.seg),
          head_dim_(pc.head_dim),
          kv_width_(pc.kv_width),
          nbits_(pc.seg->kivi.nbits),
          group_(pc.seg->kivi.group),
          run_(pc.head_dim * pc.seg->kivi.nbits / 8),
          code_bytes_(kivi_code_row_bytes(pc.kv_width, pc.seg->kivi.nbits)),
          head_ch0_(static_cast<int64_t>(pc.kv_head) * pc.head_dim),
          mask_((1u << pc.seg->kivi.nbits) - 1u) {}

    void key(int32_t i, float* out) {
        const int64_t idx = static_cast<int64_t>(seg_.skip) + i;
        const int64_t g = idx / group_;
        const uint8_t* grow = static_cast<const uint8_t*>(seg_.k.data) + static_cast<size_t>(g) * seg_.k.row_bytes;
        if (g != cached_group_) {
            const uint8_t* scales = grow + static_cast<size_t>(group_) * code_bytes_;
            const uint8_t* mins = scales + 2 * static_cast<size_t>(kv_width_);
            for (int c = 0; c < head_dim_; ++c) {
                scale_[c] = read_f16(scales + 2 * (head_ch0_ + c));
                min_[c] = read_f16(mins + 2 * (head_ch0_ + c));
            }
            cached_group_ = g;
        }
        const uint8_t* codes = grow + static_cast<size_t>(idx % group_) * code_bytes_ + head_codes_offset();
        for (int c = 0; c < head_dim_; ++c) out[c] = code(codes, c) * scale_[c] + min_[c];
    }

    void value(int32_t i, float* out) const {
        const uint8_t* row = static_cast<const uint8_t*>(seg_.v.data) +
                             static_cast<size_t>(static_cast<int64_t>(seg_.skip) + i) * seg_.v.row_bytes;
        const uint8_t* codes = row + head_codes_offset();
        const uint8_t* pairs = row + code_bytes_;
        for (int c = 0; c < head_dim_; ++c) {
            const size_t g = static_cast<size_t>((head_ch0_ + c) / group_);
            out[c] = code(codes, c) * read_f16(pairs + 4 * g) + read_f16(pairs + 4 * g + 2);
        }
    }

private:
    size_t head_codes_offset() const { return static_cast<size_t>(head_ch0_ / head_dim_) * static_cast<size_t>(run_); }
    float code(const uint8_t* codes, int c) const {
        return static_cast<float>((codes[c % run_] >> (nbits_ * (c / run_))) & mask_);
    }

    const KvSegment& seg_;
    int head_dim_;
    int64_t kv_width_;
    int nbits_;
    int group_;
    int run_;  // L: code bytes of one head
    size_t code_bytes_;
    int64_t head_ch0_;
    unsigned mask_;
    int64_t cached_group_ = -1;
    float scale_[kAttnMaxHeadDim];
    float min_[kAttnMaxHeadDim];
};

void scalar_piece(const AttnPiece& pc, AttnState& st) {
    const KvSegment& seg = *pc.seg;
    const int hd = pc.head_dim;
    const int nq = pc.nq;
    const bool kivi = seg.format == KvFormat::Kivi;
    KiviHeadReader reader(pc);
    float row[kAttnMaxHeadDim];
    float w[kAttnMaxPack][kAttnBlock];
    for (int32_t b = pc.i0; b < pc.i1; b += kAttnBlock) {
        const int n = pc.i1 - b < kAttnBlock ? pc.i1 - b : kAttnBlock;
        for (int j = 0; j < n; ++j) {
            if (kivi)
                reader.key(b + j, row);
            else
                decode_plain(seg.k, static_cast<int64_t>(seg.skip) + b + j, pc.kv_head, hd, row);
            for (int q = 0; q < nq; ++q) {
                const float* qv = pc.q + static_cast<size_t>(q) * hd;
                float s = 0.f;
                for (int c = 0; c < hd; ++c) s += qv[c] * row[c];
                w[q][j] = s;
            }
        }
        if (pc.softcap > 0)
            for (int q = 0; q < nq; ++q) softcap_scores(w[q], n, pc.softcap);
        for (int q = 0; q < nq; ++q) {
            float bm = w[q][0];
            for (int j = 1; j < n; ++j) bm = w[q][j] > bm ? w[q][j] : bm;
            if (bm > st.max[q]) {  // exp(-inf) = 0 clears the empty state
                const float r = std::exp(st.max[q] - bm);
                st.sum[q] *= r;
                float* acc = st.acc + static_cast<size_t>(q) * hd;
                for (int c = 0; c < hd; ++c) acc[c] *= r;
                st.max[q] = bm;
            }
            for (int j = 0; j < n; ++j) {
                w[q][j] = std::exp(w[q][j] - st.max[q]);
                st.sum[q] += w[q][j];
            }
        }
        for (int j = 0; j < n; ++j) {
            if (kivi)
                reader.value(b + j, row);
            else
                decode_plain(seg.v, static_cast<int64_t>(seg.skip) + b + j, pc.kv_head, hd, row);
            for (int q = 0; q < nq; ++q) {
                float* acc = st.acc + static_cast<size_t>(q) * hd;
                const float wj = w[q][j];
                for (int c = 0; c < hd; ++c) acc[c] += wj * row[c];
            }
        }
    }
}

PieceKernel select_scalar(const KvSegment&, int, int64_t, int) { return scalar_piece; }

}  // namespace

const AttnKernels& scalar_attention_kernels() {
    static const AttnKernels set = {"scalar", select_scalar};
    return set;
}

}  // namespace detail
}  // namespace cpu
}  // namespace ekv
