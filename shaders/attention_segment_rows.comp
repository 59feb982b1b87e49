#version 450
// attention_segment.comp shaped for CPU Vulkan implementations (lavapipe):
// every invocation owns NQ queries that share one KV head (consecutive
// (token, head) pairs of the head's group) and walks the segment's keys
// itself with an online softmax, so there is no shared memory and no
// barrier. llvmpipe runs invocations as SIMD lanes but loads storage
// buffers lane by lane, so loads are what cost: each key and value element
// is loaded once (two f16 values a word) and used for all NQ queries.
// Plain F16/F32 segments only: KIVI segments keep attention_segment.comp
// (same state layout, so the passes of one view mix). With `finish` set (a
// single-pass view) it writes out = sums / softmax sum itself, in place of
// attention_finish.
//
// llvmpipe ends any invocation after 65535 loop iterations in total, all
// loops together (LP_MAX_TGSI_LOOP_ITERATIONS), and silently: the key walk
// is therefore one loop iteration per key plus two per CHUNK pairs of
// head dimensions (the chunks are unrolled), and the host splits segments
// longer than that budget allows into several passes (kRowsLoopBudget in
// vulkan_attention.cpp, which mirrors CHUNK and the loops below).
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 8) in;

#define MAX_HEAD_DIM 256
#define NQ 4
#define CHUNK 16  // element pairs per unrolled step of the head-dimension loops
#define NEG_BIG -3.0e38

layout(std430, binding = 0) readonly buffer Q { float qf[]; };
#if defined(KV_F16)
layout(std430, binding = 1) readonly buffer K { uint ku[]; };
layout(std430, binding = 2) readonly buffer V { uint vu[]; };
#else
layout(std430, binding = 1) readonly buffer K { float kf[]; };
layout(std430, binding = 2) readonly buffer V { float vf[]; };
#endif
// The state, or (finish) the output rows.
layout(std430, binding = 3) buffer State { float st[]; };
layout(std430, binding = 4) readonly buffer Params { int params[]; };

// attention_segment.comp's block, then what this shape adds.
layout(push_constant) uniform P {
    uint q_off;       // floats
    uint q_stride;
    uint k_stride;    // elements
    uint v_stride;
    uint n_heads;
    uint group;       // query heads per KV head
    uint head_dim;
    uint seg_off;     // words into params: n_keys, first_pos, skip, window, k_off, v_off
    uint pos_off;     // words into params: query positions
    uint rot_off;     // words into params: per-token (cos, sin) re-rotation, or ~0u
    uint n_pairs;
    uint init;        // 1: first pass, start from an empty state
    float scale;
    uint neox;        // re-rotation pairs: 1: (i, i + n_pairs), 0: (2i, 2i + 1)
    float softcap;    // > 0: score = softcap * tanh(score / softcap)
    uint nbits;       // KIVI (unused here)
    uint kgroup;
    uint code_words;
    uint n_tokens;    // query rows
    uint finish;      // 1: binding 3 is the output (o_off, o_stride), not the state
    uint o_off;
    uint o_stride;
} p;

// Padded to whole pairs: an odd head_dim's last pair has a zero second half
// (query, key and value alike), so the pair loops need no tail.
float q[NQ][MAX_HEAD_DIM];
float acc[NQ][MAX_HEAD_DIM];

// Elements 2t and 2t + 1 of the key / value row that starts at element e0
// (zero past head_dim); an F16 row may start at an odd element.
#if defined(KV_F16)
vec2 k_pair(uint e0, uint t) {
    const uint w = (e0 >> 1) + t;
    const bool tail = 2u * t + 1u >= p.head_dim;
    const vec2 a = unpackHalf2x16(ku[w]);
    if ((e0 & 1u) == 0u) return vec2(a.x, tail ? 0.0 : a.y);
    return vec2(a.y, tail ? 0.0 : unpackHalf2x16(ku[w + 1u]).x);
}
vec2 v_pair(uint e0, uint t) {
    const uint w = (e0 >> 1) + t;
    const bool tail = 2u * t + 1u >= p.head_dim;
    const vec2 a = unpackHalf2x16(vu[w]);
    if ((e0 & 1u) == 0u) return vec2(a.x, tail ? 0.0 : a.y);
    return vec2(a.y, tail ? 0.0 : unpackHalf2x16(vu[w + 1u]).x);
}
#else
vec2 k_pair(uint e0, uint t) {
    const uint e = e0 + 2u * t;
    return vec2(kf[e], 2u * t + 1u < p.head_dim ? kf[e + 1u] : 0.0);
}
vec2 v_pair(uint e0, uint t) {
    const uint e = e0 + 2u * t;
    return vec2(vf[e], 2u * t + 1u < p.head_dim ? vf[e + 1u] : 0.0);
}
#endif

// tanh from exp(-2|y|) <= 1: finite for every y (as attention_segment.comp).
float soft_cap(float score) {
    const float y = score / p.softcap;
    const float e = exp(-2.0 * abs(y));
    return p.softcap * sign(y) * ((1.0 - e) / (1.0 + e));
}

void main() {
    const uint hd = p.head_dim;
    const uint pairs = (hd + 1u) >> 1;
    const uint padded = 2u * pairs;
    const uint kvh = gl_WorkGroupID.y;
    const uint per_head = p.n_tokens * p.group;  // queries of this KV head
    const uint j0 = gl_GlobalInvocationID.x * NQ;
    if (j0 >= per_head) return;
    const uint nq = min(uint(NQ), per_head - j0);
    const uint k_off = uint(params[p.seg_off + 4u]);
    const uint v_off = uint(params[p.seg_off + 5u]);
    const int n_keys = params[p.seg_off];
    const int first_pos = params[p.seg_off + 1u];
    const uint skip = uint(params[p.seg_off + 2u]);
    const int window = params[p.seg_off + 3u];

    uint tok[NQ], head[NQ];
    int lo[NQ], hi[NQ];
    float m[NQ], sum[NQ];
    int lo_all = n_keys, hi_all = 0;
    [[unroll]] for (uint j = 0u; j < NQ; ++j) {
        const uint jj = j0 + min(j, nq - 1u);  // missing queries repeat the last one and are not stored
        tok[j] = jj / p.group;
        head[j] = kvh * p.group + jj % p.group;
        const int pos = params[p.pos_off + tok[j]];
        hi[j] = min(n_keys, pos - first_pos + 1);
        lo[j] = window > 0 ? max(0, pos - window + 1 - first_pos) : 0;
        lo_all = min(lo_all, lo[j]);
        hi_all = max(hi_all, hi[j]);
        const uint qb = p.q_off + tok[j] * p.q_stride + head[j] * hd;
        for (uint d = 0u; d < hd; ++d) q[j][d] = qf[qb + d];
        q[j][padded - 1u] = hd < padded ? 0.0 : q[j][padded - 1u];
        if (p.rot_off != 0xFFFFFFFFu) {
            for (uint i = 0u; i < p.n_pairs; ++i) {
                const uint tb = p.rot_off + 2u * (tok[j] * p.n_pairs + i);
                const float c = intBitsToFloat(params[tb]);
                const float s = intBitsToFloat(params[tb + 1u]);
                const uint ia = p.neox != 0u ? i : 2u * i;
                const uint ib = p.neox != 0u ? i + p.n_pairs : 2u * i + 1u;
                const float a = q[j][ia];
                const float b = q[j][ib];
                q[j][ia] = a * c - b * s;
                q[j][ib] = a * s + b * c;
            }
        }
        const uint sb = (tok[j] * p.n_heads + head[j]) * (hd + 2u);
        if (p.init != 0u) {
            m[j] = NEG_BIG;
            sum[j] = 0.0;
            for (uint d = 0u; d < padded; ++d) acc[j][d] = 0.0;
        } else {
            m[j] = st[sb];
            sum[j] = st[sb + 1u];
            for (uint d = 0u; d < hd; ++d) acc[j][d] = st[sb + 2u + d];
            acc[j][padded - 1u] = hd < padded ? 0.0 : acc[j][padded - 1u];
        }
    }

    for (int i = lo_all; i < hi_all; ++i) {
        const uint row = skip + uint(i);
        const uint kb = k_off + row * p.k_stride + kvh * hd;
        const uint vb = v_off + row * p.v_stride + kvh * hd;
        float dot[NQ];
        [[unroll]] for (uint j = 0u; j < NQ; ++j) dot[j] = 0.0;
        for (uint t0 = 0u; t0 < pairs; t0 += CHUNK) {
            [[unroll]] for (uint u = 0u; u < CHUNK; ++u) {
                const uint t = t0 + u;
                if (t < pairs) {
                    const vec2 k = k_pair(kb, t);
                    [[unroll]] for (uint j = 0u; j < NQ; ++j) {
                        dot[j] += q[j][2u * t] * k.x;
                        dot[j] += q[j][2u * t + 1u] * k.y;
                    }
                }
            }
        }
        // Online softmax, one key at a time: the sums are rescaled only when
        // the running maximum moves.
        float w[NQ];
        bool rescale = false;
        float r[NQ];
        [[unroll]] for (uint j = 0u; j < NQ; ++j) {
            w[j] = 0.0;
            r[j] = 1.0;
            if (i >= lo[j] && i < hi[j]) {
                float score = dot[j] * p.scale;
                if (p.softcap > 0.0) score = soft_cap(score);
                if (score > m[j]) {
                    r[j] = m[j] > NEG_BIG ? exp(m[j] - score) : 0.0;  // exp of -3e38 is the driver's
                    m[j] = score;
                    rescale = true;
                }
                w[j] = exp(score - m[j]);
                sum[j] = sum[j] * r[j] + w[j];
            }
        }
        for (uint t0 = 0u; t0 < pairs; t0 += CHUNK) {
            [[unroll]] for (uint u = 0u; u < CHUNK; ++u) {
                const uint t = t0 + u;
                if (t < pairs) {
                    const vec2 v = v_pair(vb, t);
                    [[unroll]] for (uint j = 0u; j < NQ; ++j) {
                        if (rescale) {
                            acc[j][2u * t] *= r[j];
                            acc[j][2u * t + 1u] *= r[j];
                        }
                        acc[j][2u * t] += w[j] * v.x;
                        acc[j][2u * t + 1u] += w[j] * v.y;
                    }
                }
            }
        }
    }

    [[unroll]] for (uint j = 0u; j < NQ; ++j) {
        if (j >= nq) break;
        if (p.finish != 0u) {
            const float inv = sum[j] > 0.0 ? 1.0 / sum[j] : 0.0;
            const uint ob = p.o_off + tok[j] * p.o_stride + head[j] * hd;
            for (uint d = 0u; d < hd; ++d) st[ob + d] = acc[j][d] * inv;
        } else {
            const uint sb = (tok[j] * p.n_heads + head[j]) * (hd + 2u);
            st[sb] = m[j];
            st[sb + 1u] = sum[j];
            for (uint d = 0u; d < hd; ++d) st[sb + 2u + d] = acc[j][d];
        }
    }
}
