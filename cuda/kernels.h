// Launchers of the CUDA kernels, callable from the backend's host C++ (which
// compiles without CUDA headers seeing a kernel). Every launcher enqueues its
// kernels on `stream` and returns at once; it never synchronizes, allocates or
// reports errors: the backend validates arguments before a launch and checks
// cudaGetLastError() / the stream afterwards (sticky status).
//
// Pointers are device-visible addresses. Arguments marked "per step" point
// into the backend's parameter arena (mapped pinned host memory the kernels
// read in place), so a decode step over a static-shape cache launches the
// same kernels with the same arguments and only the arena's values change:
// the rule that lets CUDA graphs replay a step. Shapes and buffer addresses
// are plain arguments.
//
// Numerics follow the CPU backend's f32 path (sdk/src/backend/cpu/*_scalar.cpp,
// core/quant.cpp, core/kivi.cpp): the same decoded weights, f32 products and
// sums (order may differ), the same RoPE angles (tables built on the host),
// KIVI codes byte-identical to core/kivi.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

struct CUstream_st;

namespace ekv::cuda {

using Stream = CUstream_st*;  // a cudaStream_t

// A weight matrix in its GGUF format: `rows` rows of `cols` elements, rows
// `row_bytes` apart: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
// Q5_K, Q6_K (the CPU backend's matmul formats).
struct WeightRef {
    const void* data = nullptr;
    DType type = DType::F32;
    int64_t rows = 0;
    int64_t cols = 0;
    size_t row_bytes = 0;
};

// F32 activations: `rows` rows of `cols` floats, row r at data + r * stride.
struct Rows {
    float* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t stride = 0;  // in floats
};
struct ConstRows {
    const float* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t stride = 0;
};

// Whether the kernels read this weight format (matmul and get_rows).
bool weight_type_supported(DType type);

// out[i] = table[ids[i]] decoded to f32, i < n. ids: per step.
void get_rows(Stream s, const WeightRef& table, const int32_t* ids, int32_t n, Rows out);

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w (w: x.cols floats).
void rms_norm(Stream s, ConstRows x, const float* w, float eps, Rows out);
// out[t] = (x[t] - mean) / sqrt(var + eps) * w + b (biased variance).
void layer_norm(Stream s, ConstRows x, const float* w, const float* b, float eps, Rows out);

// out[t][r] = sum_k x[t][k] * w[r][k] for t < x.rows, r < w.rows.
// int8_activations: x quantized per 32 values to int8 (Q8 blocks, the CPU
// int8 path's rounding) and integer dot products (dp4a) for quantized w;
// `scratch` then holds at least matmul_scratch_bytes(w.cols, x.rows) bytes.
size_t matmul_scratch_bytes(int64_t k, int64_t n_tokens);
void matmul(Stream s, const WeightRef& w, ConstRows x, Rows out, bool int8_activations, void* scratch);

// Rotates the first rope_dim dims of each of n_heads heads (head h at
// h * head_dim) of every row of x in place. cos_sin: per step, for row t and
// pair i, cos at [2 * (t * rope_dim/2 + i)] and sin right after (host-computed
// in double like the CPU backend, attn_factor applied). neox: pairs
// (i, i + rope_dim/2), else (2i, 2i + 1).
void rope(Stream s, Rows x, int32_t n_heads, int32_t head_dim, int32_t rope_dim, bool neox, const float* cos_sin);

// Stores src rows as dst rows (F32, or F16 rounded to nearest even).
void copy_rows(Stream s, ConstRows src, void* dst, DType dst_type, size_t dst_row_bytes);
// The same from row *dst_row (per step) of dst (row 0): a cache write whose
// row moves every step keeps its arguments (used while graphs are on).
void copy_rows_at(Stream s, ConstRows src, void* dst, const int64_t* dst_row, DType dst_type, size_t dst_row_bytes);

enum class Eltwise : int32_t {
    SiluMul,  // out = silu(a) * b
    GeluMul,  // out = gelu_tanh(a) * b
    Scale,    // out = a * scalar
    Add,      // out = a + b
    AddBias,  // out = a + b[0] (b: one row broadcast)
    GeluErf,  // out = a * Phi(a)
};
void eltwise(Stream s, Eltwise op, ConstRows a, ConstRows b, float scalar, Rows out);

// One cached run of keys/values (backend.h's KvSegment, as device addresses).
struct AttnSegment {
    int32_t kivi = 0;            // 0: plain rows, 1: KIVI (core/kivi.h layouts)
    DType plain_type = DType::F16;  // F16 or F32 (plain)
    const uint8_t* k = nullptr;  // plain: key rows; KIVI: key group rows
    const uint8_t* v = nullptr;  // plain: value rows; KIVI: value rows
    size_t k_row_bytes = 0;
    size_t v_row_bytes = 0;
    int32_t n_tokens = 0;
    int32_t first_pos = 0;
    int32_t skip = 0;
    int32_t pinned = 0;
    int32_t window = 0;  // > 0: this unpinned segment's own window
    int32_t kivi_nbits = 0;
    int32_t kivi_group = 0;
};
constexpr int kMaxAttnSegments = 6;

// Per-step description of one attention call.
struct AttnStep {
    AttnSegment seg[kMaxAttnSegments];
    int32_t n_segments = 0;
    int32_t window = 0;            // the view's window (> 0: sliding)
    int32_t pinned_query_pos = 0;  // queries score pinned keys from min(q_pos, this)
};

struct AttnShape {
    int32_t n_heads = 0;
    int32_t n_kv_heads = 0;
    int32_t head_dim = 0;  // <= 256
    int64_t kv_width = 0;  // n_kv_heads * head_dim
    float scale = 1.f;
    float softcap = 0.f;   // > 0: scores = softcap * tanh(score / softcap)
    int32_t rope_dim = 0;  // the pinned re-rotation's rotated dims (0: none)
    int32_t neox = 0;
    int32_t plain_f16 = 0;  // 1: every segment with tokens holds plain F16 rows (tensor cores may serve prefill)
};

// Causal attention of q (rows = tokens, n_heads * head_dim floats) at
// positions q_pos over the segments of `step`. step, q_pos: per step.
// pinned_cos_sin (per step, null when no segment is pinned): for query t and
// pair i, cos/sin of (min(q_pos[t], pinned_query_pos) - q_pos[t]) * inv_freq[i]
// like rope's table. `scratch` holds attention_scratch_bytes(...) bytes for
// split-K partial states: the most any call with 1 .. n_tokens queries needs
// (fewer queries may use more splits), 0 when no split is ever used.
// max_kv_tokens bounds the keys of a step and alone (with the shapes) fixes
// the split count: pass a per-cache constant (its capacity) so a decode step
// launches the same grid every time, as graph replay needs.
// pinned_cos_sin is read only while a pinned segment's keys are visible.
size_t attention_scratch_bytes(const AttnShape& shape, int64_t n_tokens, int64_t max_kv_tokens);
void attention(Stream s, ConstRows q, const int32_t* q_pos, const AttnStep* step, const AttnShape& shape,
               const float* pinned_cos_sin, int64_t max_kv_tokens, void* scratch, Rows out);
// Prefill over plain F16 segments runs on tensor cores (attention_tc.cu)
// unless turned off here or by EKV_CUDA_TENSOR_CORES=0 (for comparisons;
// process-wide).
void set_attention_tensor_cores(bool on);
bool attention_tensor_cores();
uint64_t attention_tensor_core_launches();  // since the process started (tests)

// KIVI quantization, byte-identical to core/kivi.cpp. Keys: `group` rows of
// src (F16 or F32 rows of kv_width elements, src_row_bytes apart) into one
// key group row at dst. Values: n rows into n value rows at dst.
void kivi_quantize_keys(Stream s, const void* src, DType src_type, size_t src_row_bytes, int64_t kv_width,
                        int32_t head_dim, int32_t group, int32_t nbits, uint8_t* dst);
void kivi_quantize_values(Stream s, const void* src, DType src_type, size_t src_row_bytes, int64_t n,
                          int64_t kv_width, int32_t head_dim, int32_t group, int32_t nbits, uint8_t* dst,
                          size_t dst_row_bytes);

// Mamba (backend.h's ssm_conv / ssm_scan semantics).
void ssm_conv(Stream s, ConstRows x, ConstRows state_in, ConstRows w, const float* b, Rows state_out, Rows out);
void ssm_scan(Stream s, ConstRows x, ConstRows dt, const float* dt_bias, ConstRows a, ConstRows bm, ConstRows cm,
              const float* d, ConstRows state_in, Rows state_out, Rows y);

// Whisper's convolution input (backend.h's im2col_1d).
void im2col_1d(Stream s, ConstRows x, int32_t kernel, int32_t stride, int32_t pad, Rows out);

}  // namespace ekv::cuda
