#include "backend/cpu/cpu_attention.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EKV_X86 1
#endif

namespace ekv::cpu {
namespace {

constexpr int kBlock = 32;      // keys scored per softmax rescale
constexpr int kMaxHeadDim = 512;

// --- portable row primitives -------------------------------------------------

inline float dot_row(const float* q, const float* k, int n) {
    float s = 0.f;
    for (int i = 0; i < n; ++i) s += q[i] * k[i];
    return s;
}
inline float dot_row(const float* q, const uint16_t* k, int n) {
    float s = 0.f;
    for (int i = 0; i < n; ++i) s += q[i] * f16_to_f32(k[i]);
    return s;
}
inline void axpy_row(float w, const float* v, float* acc, int n) {
    for (int i = 0; i < n; ++i) acc[i] += w * v[i];
}
inline void axpy_row(float w, const uint16_t* v, float* acc, int n) {
    for (int i = 0; i < n; ++i) acc[i] += w * f16_to_f32(v[i]);
}

#ifdef EKV_X86
__attribute__((target("avx2,fma,f16c"))) inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
__attribute__((target("avx2,fma,f16c"))) float dot_row_avx2(const float* q, const uint16_t* k, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + i)));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv, acc);
    }
    float s = hsum(acc);
    for (; i < n; ++i) s += q[i] * f16_to_f32(k[i]);
    return s;
}
__attribute__((target("avx2,fma,f16c"))) float dot_row_avx2(const float* q, const float* k, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc);
    float s = hsum(acc);
    for (; i < n; ++i) s += q[i] * k[i];
    return s;
}
__attribute__((target("avx2,fma,f16c"))) void axpy_row_avx2(float w, const uint16_t* v, float* acc, int n) {
    const __m256 wv = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i)));
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(wv, x, _mm256_loadu_ps(acc + i)));
    }
    for (; i < n; ++i) acc[i] += w * f16_to_f32(v[i]);
}
__attribute__((target("avx2,fma,f16c"))) void axpy_row_avx2(float w, const float* v, float* acc, int n) {
    const __m256 wv = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + i), _mm256_loadu_ps(acc + i)));
    for (; i < n; ++i) acc[i] += w * v[i];
}
// Every CPU with AVX2 also has F16C (and clang cannot query "f16c").
bool has_avx2() {
    static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ok;
}
#endif

struct Scalar {
    template <class T> static float dot(const float* q, const T* k, int n) { return dot_row(q, k, n); }
    template <class T> static void axpy(float w, const T* v, float* acc, int n) { axpy_row(w, v, acc, n); }
};
#ifdef EKV_X86
struct Avx2 {
    template <class T> static float dot(const float* q, const T* k, int n) { return dot_row_avx2(q, k, n); }
    template <class T> static void axpy(float w, const T* v, float* acc, int n) { axpy_row_avx2(w, v, acc, n); }
};
#endif

// Online-softmax state of one (query, head) pair.
struct SoftmaxAcc {
    float max = -std::numeric_limits<float>::infinity();
    float sum = 0.f;
    float acc[kMaxHeadDim];
};

template <class Isa, class T>
void attend_segment(const float* q, const KvSegment& seg, int32_t q_pos, int kv_head, int head_dim, float scale,
                    SoftmaxAcc& st) {
    // Causal: keys with position <= q_pos. Positions are first_pos + i.
    int32_t n = seg.n_tokens;
    const int32_t last_visible = q_pos - seg.first_pos;  // index of the last visible key
    if (last_visible < 0) return;
    if (last_visible + 1 < n) n = last_visible + 1;
    const size_t head_off = static_cast<size_t>(kv_head) * head_dim;
    float scores[kBlock];
    for (int32_t b = 0; b < n; b += kBlock) {
        const int cnt = n - b < kBlock ? n - b : kBlock;
        float block_max = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < cnt; ++j) {
            const T* krow = seg.k.template ptr<T>(b + j) + head_off;
            scores[j] = Isa::dot(q, krow, head_dim) * scale;
            if (scores[j] > block_max) block_max = scores[j];
        }
        if (block_max > st.max) {
            const float r = std::exp(st.max - block_max);  // exp(-inf) = 0 on the first block
            st.sum *= r;
            for (int i = 0; i < head_dim; ++i) st.acc[i] *= r;
            st.max = block_max;
        }
        for (int j = 0; j < cnt; ++j) {
            const float w = std::exp(scores[j] - st.max);
            st.sum += w;
            const T* vrow = seg.v.template ptr<T>(b + j) + head_off;
            Isa::axpy(w, vrow, st.acc, head_dim);
        }
    }
}

template <class Isa>
void attention_rows(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
                    Tensor& out, long begin, long end) {
    const int group = p.n_heads / p.n_kv_heads;
    SoftmaxAcc st;
    for (long item = begin; item < end; ++item) {
        const long t = item / p.n_heads;
        const int h = static_cast<int>(item % p.n_heads);
        const float* qh = q.ptr<float>(t) + static_cast<size_t>(h) * p.head_dim;
        st.max = -std::numeric_limits<float>::infinity();
        st.sum = 0.f;
        std::memset(st.acc, 0, sizeof(float) * p.head_dim);
        for (int s = 0; s < kv.n_segments; ++s) {
            const KvSegment& seg = kv.seg[s];
            if (seg.k.type == DType::F16)
                attend_segment<Isa, uint16_t>(qh, seg, q_pos[t], h / group, p.head_dim, p.scale, st);
            else
                attend_segment<Isa, float>(qh, seg, q_pos[t], h / group, p.head_dim, p.scale, st);
        }
        float* o = out.ptr<float>(t) + static_cast<size_t>(h) * p.head_dim;
        const float inv = st.sum > 0.f ? 1.f / st.sum : 0.f;
        for (int i = 0; i < p.head_dim; ++i) o[i] = st.acc[i] * inv;
    }
}

}  // namespace

void attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p, Tensor& out,
               ThreadPool& pool) {
    const long items = static_cast<long>(q.rows) * p.n_heads;
    pool.parallel_for(items, [&](long b, long e) {
#ifdef EKV_X86
        if (has_avx2()) {
            attention_rows<Avx2>(q, q_pos, kv, p, out, b, e);
            return;
        }
#endif
        attention_rows<Scalar>(q, q_pos, kv, p, out, b, e);
    });
}

}  // namespace ekv::cpu
