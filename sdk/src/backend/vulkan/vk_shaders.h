// Shader variants the ops dispatch, by id. Names match the variants in
// cmake/VulkanShaders.cmake; every pipeline shares one layout: five storage
// buffer bindings (unused ones hold a dummy buffer) and 128 bytes of push
// constants.
#pragma once
#include "core/dtype.h"

namespace ekv::vk {

constexpr int kNumBindings = 5;       // binding 4 is always the per-submit params arena
constexpr int kParamsBinding = 4;
constexpr unsigned kPushConstantBytes = 128;

enum class ShaderId : int {
    RmsNorm, Rope, CopyRowsF16, CopyRowsF32, AttnSegmentF16, AttnSegmentF32, AttnFinish, Add, SiluMul, GeluMul,
    Scale, AttnSegmentKivi, KiviKeysF16, KiviKeysF32, KiviValuesF16, KiviValuesF32,
    MatmulF32, MatmulF16, MatmulBF16, MatmulQ4_0, MatmulQ4_1, MatmulQ5_0, MatmulQ5_1, MatmulQ8_0, MatmulQ4_K,
    MatmulQ5_K, MatmulQ6_K,
    GetRowsF32, GetRowsF16, GetRowsBF16, GetRowsQ4_0, GetRowsQ4_1, GetRowsQ5_0, GetRowsQ5_1, GetRowsQ8_0,
    GetRowsQ4_K, GetRowsQ5_K, GetRowsQ6_K,
    GeluErf, SsmConvHistory, SsmConvInput, SsmScanDelta, SsmScanStage, SsmScan, SsmScanSkip, LayerNorm, Im2Col1d,
    MatmulF16AccF32, MatmulF16AccF16, MatmulF16AccBF16, MatmulF16AccQ4_0, MatmulF16AccQ4_1, MatmulF16AccQ5_0,
    MatmulF16AccQ5_1, MatmulF16AccQ8_0, MatmulF16AccQ4_K, MatmulF16AccQ5_K, MatmulF16AccQ6_K,
    MatmulRowsF32, MatmulRowsF16, MatmulRowsBF16, MatmulRowsQ4_0, MatmulRowsQ4_1, MatmulRowsQ5_0, MatmulRowsQ5_1,
    MatmulRowsQ8_0, MatmulRowsQ4_K, MatmulRowsQ5_K, MatmulRowsQ6_K,
    AttnSegmentRowsF16, AttnSegmentRowsF32,
    Count
};

inline const char* shader_name(ShaderId id) {
    static const char* const kNames[] = {
        "rms_norm", "rope", "copy_rows_f16", "copy_rows_f32", "attn_segment_f16", "attn_segment_f32",
        "attn_finish", "add", "silu_mul", "gelu_mul", "scale", "attn_segment_kivi", "kivi_keys_f16", "kivi_keys_f32",
        "kivi_values_f16", "kivi_values_f32",
        "matmul_f32", "matmul_f16", "matmul_bf16", "matmul_q4_0", "matmul_q4_1", "matmul_q5_0", "matmul_q5_1",
        "matmul_q8_0", "matmul_q4_k", "matmul_q5_k", "matmul_q6_k",
        "get_rows_f32", "get_rows_f16", "get_rows_bf16", "get_rows_q4_0", "get_rows_q4_1", "get_rows_q5_0",
        "get_rows_q5_1", "get_rows_q8_0", "get_rows_q4_k", "get_rows_q5_k", "get_rows_q6_k",
        "gelu_erf", "ssm_conv_history", "ssm_conv_input", "ssm_scan_delta", "ssm_scan_stage", "ssm_scan",
        "ssm_scan_skip", "layer_norm", "im2col_1d",
        "matmul_f16acc_f32", "matmul_f16acc_f16", "matmul_f16acc_bf16", "matmul_f16acc_q4_0", "matmul_f16acc_q4_1",
        "matmul_f16acc_q5_0", "matmul_f16acc_q5_1", "matmul_f16acc_q8_0", "matmul_f16acc_q4_k", "matmul_f16acc_q5_k",
        "matmul_f16acc_q6_k",
        "matmul_rows_f32", "matmul_rows_f16", "matmul_rows_bf16", "matmul_rows_q4_0", "matmul_rows_q4_1",
        "matmul_rows_q5_0", "matmul_rows_q5_1", "matmul_rows_q8_0", "matmul_rows_q4_k", "matmul_rows_q5_k",
        "matmul_rows_q6_k",
        "attn_segment_rows_f16", "attn_segment_rows_f32"};
    static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<int>(ShaderId::Count), "one name per id");
    return kNames[static_cast<int>(id)];
}

// Position of a weight type in the matmul/get_rows variant lists, or -1.
inline int weight_variant(DType t) {
    switch (t) {
        case DType::F32: return 0;
        case DType::F16: return 1;
        case DType::BF16: return 2;
        case DType::Q4_0: return 3;
        case DType::Q4_1: return 4;
        case DType::Q5_0: return 5;
        case DType::Q5_1: return 6;
        case DType::Q8_0: return 7;
        case DType::Q4_K: return 8;
        case DType::Q5_K: return 9;
        case DType::Q6_K: return 10;
        default: return -1;
    }
}
inline ShaderId matmul_shader(int variant) {
    return static_cast<ShaderId>(static_cast<int>(ShaderId::MatmulF32) + variant);
}
// The matmul variant whose per-unit dots run in float16 (needs shaderFloat16).
inline ShaderId matmul_f16acc_shader(int variant) {
    return static_cast<ShaderId>(static_cast<int>(ShaderId::MatmulF16AccF32) + variant);
}
// The CPU-shaped matmul variant (matmul_rows.comp: whole rows per invocation).
inline ShaderId matmul_rows_shader(int variant) {
    return static_cast<ShaderId>(static_cast<int>(ShaderId::MatmulRowsF32) + variant);
}
inline ShaderId get_rows_shader(int variant) {
    return static_cast<ShaderId>(static_cast<int>(ShaderId::GetRowsF32) + variant);
}

}  // namespace ekv::vk
