#version 450
// One pass of causal attention over one KV segment for every (head, token):
// online softmax whose running (max, sum, weighted value sum) lives in a
// state buffer, so a view of any number of segments, each in its own buffer,
// is a sequence of passes followed by attention_finish. Keys are scored 64 at
// a time (one per invocation); each invocation then accumulates its own
// head dimensions. KV rows are read in place (F16, F32, or KIVI codes with
// their group ranges). Optional: Gemma 2's score soft-capping, and NeoX-style
// pairs in the pinned re-rotation. A pass may start anywhere in a segment
// (inside a KIVI group too): the host splits long segments on llvmpipe, which
// ends an invocation after 65535 loop iterations (vulkan_attention.cpp).
layout(local_size_x = 64) in;

#define MAX_HEAD_DIM 256
#define NEG_BIG -3.0e38

layout(std430, binding = 0) readonly buffer Q { float qf[]; };
#if defined(KV_KIVI)
layout(std430, binding = 1) readonly buffer K { uint kw[]; };
layout(std430, binding = 2) readonly buffer V { uint vw[]; };
#elif defined(KV_F16)
layout(std430, binding = 1) readonly buffer K { uint ku[]; };
layout(std430, binding = 2) readonly buffer V { uint vu[]; };
float k_at(uint e) { return unpackHalf2x16(ku[e >> 1])[e & 1u]; }
float v_at(uint e) { return unpackHalf2x16(vu[e >> 1])[e & 1u]; }
#else
layout(std430, binding = 1) readonly buffer K { float kf[]; };
layout(std430, binding = 2) readonly buffer V { float vf[]; };
float k_at(uint e) { return kf[e]; }
float v_at(uint e) { return vf[e]; }
#endif
layout(std430, binding = 3) buffer State { float st[]; };
layout(std430, binding = 4) readonly buffer Params { int params[]; };

// What changes from step to step (the segment's extent and where it starts
// in its buffers, the query positions) is read from the params arena, so a decode step's command
// buffer can be replayed with new values.
layout(push_constant) uniform P {
    uint q_off;       // floats
    uint q_stride;
    uint k_stride;    // elements (KIVI: words per key group row)
    uint v_stride;    // elements (KIVI: words per value row)
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
    uint nbits;       // KIVI: code bits
    uint kgroup;      // KIVI: tokens per key group = channels per value range
    uint code_words;  // KIVI: words of one token's code row
} p;

// Where the segment's row 0 starts: elements (KIVI: words of key group row 0,
// of value row 0). Set from the params at the start of main().
uint k_off;
uint v_off;

// Element d of the cached key / value of segment row `row`, KV head `kvh`.
#if defined(KV_KIVI)
// Channel d of head kvh sits in byte d % L of the head's run of L code
// bytes, at bit nbits * (d / L); x = code * scale + min.
float key_at(uint row, uint kvh, uint d) {
    const uint run = p.head_dim * p.nbits / 8u;
    const uint byte_index = kvh * run + d % run;
    const uint shift = 8u * (byte_index & 3u) + p.nbits * (d / run);
    const uint grp = k_off + (row / p.kgroup) * p.k_stride;
    const uint code = (kw[grp + (row % p.kgroup) * p.code_words + (byte_index >> 2)] >> shift) & ((1u << p.nbits) - 1u);
    const uint ch = kvh * p.head_dim + d;
    const uint scales = grp + p.kgroup * p.code_words;
    const uint pairs = p.code_words * 16u / p.nbits;  // kv_width / 2
    const float s = unpackHalf2x16(kw[scales + (ch >> 1)])[ch & 1u];
    const float m = unpackHalf2x16(kw[scales + pairs + (ch >> 1)])[ch & 1u];
    return float(code) * s + m;
}
float value_at(uint row, uint kvh, uint d) {
    const uint run = p.head_dim * p.nbits / 8u;
    const uint byte_index = kvh * run + d % run;
    const uint shift = 8u * (byte_index & 3u) + p.nbits * (d / run);
    const uint base = v_off + row * p.v_stride;
    const uint code = (vw[base + (byte_index >> 2)] >> shift) & ((1u << p.nbits) - 1u);
    const vec2 sm = unpackHalf2x16(vw[base + p.code_words + (kvh * p.head_dim + d) / p.kgroup]);
    return float(code) * sm.x + sm.y;
}
#else
float key_at(uint row, uint kvh, uint d) { return k_at(k_off + row * p.k_stride + kvh * p.head_dim + d); }
float value_at(uint row, uint kvh, uint d) { return v_at(v_off + row * p.v_stride + kvh * p.head_dim + d); }
#endif

shared float qs[MAX_HEAD_DIM];
shared float score_max[64];
shared float weight[64];
shared float weight_sum[64];

// tanh from exp(-2|y|) <= 1: finite for every y, whereas the SPIR-V spec
// leaves Tanh's overflow for large |y| to the driver.
float soft_cap(float score) {
    const float y = score / p.softcap;
    const float e = exp(-2.0 * abs(y));
    return p.softcap * sign(y) * ((1.0 - e) / (1.0 + e));
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint h = gl_WorkGroupID.x;
    const uint t = gl_WorkGroupID.y;
    const uint hd = p.head_dim;
    k_off = uint(params[p.seg_off + 4u]);
    v_off = uint(params[p.seg_off + 5u]);
    const uint qb = p.q_off + t * p.q_stride + h * hd;
    for (uint d = tid; d < hd; d += 64u) qs[d] = qf[qb + d];
    barrier();
    if (p.rot_off != 0xFFFFFFFFu) {
        for (uint i = tid; i < p.n_pairs; i += 64u) {
            const uint tb = p.rot_off + 2u * (t * p.n_pairs + i);
            const float c = intBitsToFloat(params[tb]);
            const float s = intBitsToFloat(params[tb + 1u]);
            const uint ia = p.neox != 0u ? i : 2u * i;
            const uint ib = p.neox != 0u ? i + p.n_pairs : 2u * i + 1u;
            const float a = qs[ia];
            const float b = qs[ib];
            qs[ia] = a * c - b * s;
            qs[ib] = a * s + b * c;
        }
        barrier();
    }

    const uint sb = (t * p.n_heads + h) * (hd + 2u);
    float m = NEG_BIG;
    float sum = 0.0;
    float acc[MAX_HEAD_DIM / 64];
    for (uint j = 0u; j < MAX_HEAD_DIM / 64; ++j) acc[j] = 0.0;
    if (p.init == 0u) {
        m = st[sb];
        sum = st[sb + 1u];
        for (uint j = 0u, d = tid; d < hd; ++j, d += 64u) acc[j] = st[sb + 2u + d];
    }

    const int n_keys = params[p.seg_off];
    const int first_pos = params[p.seg_off + 1u];
    const uint skip = uint(params[p.seg_off + 2u]);
    const int window = params[p.seg_off + 3u];
    const int pos = params[p.pos_off + t];
    const int hi = min(n_keys, pos - first_pos + 1);
    const int lo = window > 0 ? max(0, pos - window + 1 - first_pos) : 0;
    const uint kvh = h / p.group;
    for (int blk = lo; blk < hi; blk += 64) {
        const int i = blk + int(tid);
        float score = NEG_BIG;
        if (i < hi) {
            const uint row = skip + uint(i);
            float dot = 0.0;
            for (uint d = 0u; d < hd; ++d) dot += qs[d] * key_at(row, kvh, d);
            score = dot * p.scale;
            if (p.softcap > 0.0) score = soft_cap(score);
        }
        score_max[tid] = score;
        barrier();
        for (uint w = 32u; w > 0u; w >>= 1) {
            if (tid < w) score_max[tid] = max(score_max[tid], score_max[tid + w]);
            barrier();
        }
        const float new_m = max(m, score_max[0]);
        const float rescale = exp(m - new_m);
        const float wt = i < hi ? exp(score - new_m) : 0.0;
        weight[tid] = wt;
        weight_sum[tid] = wt;
        barrier();
        for (uint w = 32u; w > 0u; w >>= 1) {
            if (tid < w) weight_sum[tid] += weight_sum[tid + w];
            barrier();
        }
        sum = sum * rescale + weight_sum[0];
        const uint cnt = uint(min(64, hi - blk));
        const uint row0 = skip + uint(blk);
        for (uint j = 0u, d = tid; d < hd; ++j, d += 64u) {
            float a = acc[j] * rescale;
            for (uint k = 0u; k < cnt; ++k) a += weight[k] * value_at(row0 + k, kvh, d);
            acc[j] = a;
        }
        m = new_m;
        barrier();  // score_max/weight are rewritten by the next block
    }

    if (tid == 0u) {
        st[sb] = m;
        st[sb + 1u] = sum;
    }
    for (uint j = 0u, d = tid; d < hd; ++j, d += 64u) st[sb + 2u + d] = acc[j];
}
