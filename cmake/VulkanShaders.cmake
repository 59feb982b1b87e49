# The Vulkan backend's shader variants (name:source:defines), compiled and
# embedded by EmbedSpirv.cmake. Names must match backend/vulkan/vk_shaders.h.
include(${CMAKE_CURRENT_LIST_DIR}/EmbedSpirv.cmake)

set(EKV_VK_WEIGHT_TYPES F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)
set(EKV_VK_SHADER_VARIANTS
  rms_norm:rms_norm.comp
  rope:rope.comp
  copy_rows_f16:copy_rows.comp:DST_F16
  copy_rows_f32:copy_rows.comp:DST_F32
  attn_segment_f16:attention_segment.comp:KV_F16
  attn_segment_f32:attention_segment.comp:KV_F32
  attn_segment_kivi:attention_segment.comp:KV_KIVI
  kivi_keys_f16:kivi_quantize.comp:MODE_KEYS,SRC_F16
  kivi_keys_f32:kivi_quantize.comp:MODE_KEYS,SRC_F32
  kivi_values_f16:kivi_quantize.comp:MODE_VALUES,SRC_F16
  kivi_values_f32:kivi_quantize.comp:MODE_VALUES,SRC_F32
  attn_finish:attention_finish.comp
  add:eltwise.comp:OP_ADD
  silu_mul:eltwise.comp:OP_SILU_MUL
  gelu_mul:eltwise.comp:OP_GELU_MUL
  scale:eltwise.comp:OP_SCALE)
foreach(t IN LISTS EKV_VK_WEIGHT_TYPES)
  string(TOLOWER ${t} lower)
  list(APPEND EKV_VK_SHADER_VARIANTS matmul_${lower}:matmul.comp:W_${t} get_rows_${lower}:get_rows.comp:W_${t})
endforeach()
# Mamba and Whisper ops (backend/vulkan/vulkan_model_ops.cpp).
list(APPEND EKV_VK_SHADER_VARIANTS
  gelu_erf:eltwise.comp:OP_GELU_ERF
  ssm_conv_history:ssm_conv.comp:CONV_HISTORY
  ssm_conv_input:ssm_conv.comp:CONV_INPUT
  ssm_scan_delta:ssm_scan.comp:SCAN_DELTA
  ssm_scan_stage:ssm_scan.comp:SCAN_STAGE
  ssm_scan:ssm_scan.comp:SCAN
  ssm_scan_skip:ssm_scan.comp:SCAN_SKIP
  layer_norm:layer_norm.comp
  im2col_1d:im2col_1d.comp)
# Matmul with each unit's 32-element dot in float16 (EKV_VULKAN_F16_ACCUMULATE=1
# on devices with shaderFloat16), same weight order as above.
foreach(t IN LISTS EKV_VK_WEIGHT_TYPES)
  string(TOLOWER ${t} lower)
  list(APPEND EKV_VK_SHADER_VARIANTS matmul_f16acc_${lower}:matmul.comp:W_${t},ACC_F16)
endforeach()
# Matmul shaped for CPU implementations (lavapipe): whole rows per invocation,
# chosen on VK_PHYSICAL_DEVICE_TYPE_CPU devices; same weight order as above.
foreach(t IN LISTS EKV_VK_WEIGHT_TYPES)
  string(TOLOWER ${t} lower)
  list(APPEND EKV_VK_SHADER_VARIANTS matmul_rows_${lower}:matmul_rows.comp:W_${t})
endforeach()
# Attention over plain F16/F32 segments shaped for CPU implementations
# (lavapipe): whole key walks per invocation, no barriers.
list(APPEND EKV_VK_SHADER_VARIANTS
  attn_segment_rows_f16:attention_segment_rows.comp:KV_F16
  attn_segment_rows_f32:attention_segment_rows.comp:KV_F32)
