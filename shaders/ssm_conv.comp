#version 450
// Mamba's depthwise causal convolution with SiLU, in two dispatches because
// one pipeline binds at most four tensors. Output t reads rows t .. t + K-1
// of the concatenation [state_in (K-1 rows); x]: the taps from state_in come
// first, so accumulating them, then the taps from x, adds in the CPU
// kernel's order (bias, tap 0, tap 1, ...).
//   CONV_HISTORY: out[t][c] = bias[c] + the taps that fall in state_in.
//   CONV_INPUT:   out[t][c] = silu(out[t][c] + the taps that fall in x); rows
//                 n_t.. of the grid store the newest inputs that come from x
//                 into state_out (the backend copies those from state_in).
// One invocation per (channel, row).
layout(local_size_x = 64) in;

#if defined(CONV_HISTORY)
layout(std430, binding = 0) readonly buffer In { float inf[]; };     // state_in
layout(std430, binding = 2) readonly buffer Bias { float bf[]; };
#elif defined(CONV_INPUT)
layout(std430, binding = 0) readonly buffer In { float inf[]; };     // x
layout(std430, binding = 2) writeonly buffer StateOut { float sof[]; };
#else
#error "define CONV_HISTORY or CONV_INPUT"
#endif
layout(std430, binding = 1) readonly buffer Wt { float wf[]; };      // [channels x k]
layout(std430, binding = 3) buffer O { float of[]; };
layout(push_constant) uniform P {
    uint in_off;      // floats: state_in (history) or x (input)
    uint in_stride;
    uint w_off;
    uint w_stride;
    uint b_off;       // history only
    uint o_off;
    uint o_stride;
    uint so_off;      // input only
    uint so_stride;
    uint n_ch;
    uint n_t;
    uint k;           // taps; k - 1 rows of history
} p;

void main() {
    const uint c = gl_GlobalInvocationID.x;
    const uint t = gl_WorkGroupID.y;
    if (c >= p.n_ch) return;
    const uint hist = p.k - 1u;
    const uint wb = p.w_off + c * p.w_stride;
#if defined(CONV_HISTORY)
    float acc = bf[p.b_off + c];
    // Tap j reads concatenation row t + j, in state_in while t + j < hist.
    for (uint j = 0u; t + j < hist; ++j) acc += wf[wb + j] * inf[p.in_off + (t + j) * p.in_stride + c];
    of[p.o_off + t * p.o_stride + c] = acc;
#else
    if (t >= p.n_t) {
        // State row r = t - n_t is concatenation row n_t + r.
        const uint s = t;  // n_t + r
        if (s >= hist) sof[p.so_off + (t - p.n_t) * p.so_stride + c] = inf[p.in_off + (s - hist) * p.in_stride + c];
        return;
    }
    const uint ob = p.o_off + t * p.o_stride + c;
    float acc = of[ob];
    for (uint j = hist > t ? hist - t : 0u; j < p.k; ++j)
        acc += wf[wb + j] * inf[p.in_off + (t + j - hist) * p.in_stride + c];
    of[ob] = acc / (1.0 + exp(-acc));
#endif
}
