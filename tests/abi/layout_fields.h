/* Every field of every public struct of the v1 header, as X(struct, field).
 * layout_v1.c and layout_now.c expand it against the frozen v1 header and
 * the current one; test_layout.c checks that no v1 field moved or changed
 * size and that no struct shrank (fields may only be appended).
 * EKV_LATER_FIELDS lists the fields appended since, in order: each must lie
 * past the v1 struct's end (a v1 caller's struct_size never covers it, not
 * even through tail padding) and after the one appended before it. */
#define EKV_V1_STRUCTS(S) \
    S(ekv_device_info) S(ekv_model_params) S(ekv_model_info) S(ekv_backend_stats) S(ekv_cache_params) \
    S(ekv_cache_stats) S(ekv_generate_params) S(ekv_generate_result) S(ekv_chat_message)
#define EKV_V1_FIELDS(X) \
    X(ekv_device_info, struct_size) X(ekv_device_info, backend) X(ekv_device_info, index) X(ekv_device_info, name) \
    X(ekv_device_info, device_memory_bytes) X(ekv_device_info, unified_memory) X(ekv_device_info, n_threads) \
    X(ekv_model_params, struct_size) X(ekv_model_params, backend) X(ekv_model_params, device_index) \
    X(ekv_model_params, n_threads) X(ekv_model_params, int8_activations) \
    X(ekv_model_info, struct_size) X(ekv_model_info, architecture) X(ekv_model_info, name) X(ekv_model_info, n_layers) \
    X(ekv_model_info, n_heads) X(ekv_model_info, n_kv_heads) X(ekv_model_info, head_dim) X(ekv_model_info, n_embd) \
    X(ekv_model_info, n_ff) X(ekv_model_info, context_length) X(ekv_model_info, n_vocab) X(ekv_model_info, n_params) \
    X(ekv_model_info, weight_bytes) X(ekv_model_info, backend) X(ekv_model_info, device) \
    X(ekv_model_info, natural_cache) X(ekv_model_info, n_sliding_layers) X(ekv_model_info, sliding_window) \
    X(ekv_model_info, n_recurrent_layers) \
    X(ekv_backend_stats, struct_size) X(ekv_backend_stats, submissions) X(ekv_backend_stats, replayed_submissions) \
    X(ekv_backend_stats, record_ns) \
    X(ekv_cache_params, struct_size) X(ekv_cache_params, type) X(ekv_cache_params, max_cache_len) \
    X(ekv_cache_params, dtype) X(ekv_cache_params, window_length) X(ekv_cache_params, num_sink_tokens) \
    X(ekv_cache_params, nbits) X(ekv_cache_params, q_group_size) X(ekv_cache_params, residual_length) \
    X(ekv_cache_params, offload) \
    X(ekv_cache_stats, struct_size) X(ekv_cache_stats, seq_len) X(ekv_cache_stats, capacity) \
    X(ekv_cache_stats, device_bytes) X(ekv_cache_stats, host_bytes) X(ekv_cache_stats, used_bytes) \
    X(ekv_cache_stats, bytes_per_token) X(ekv_cache_stats, tokens_forwarded) X(ekv_cache_stats, tokens_held) \
    X(ekv_generate_params, struct_size) X(ekv_generate_params, max_new_tokens) X(ekv_generate_params, temperature) \
    X(ekv_generate_params, top_k) X(ekv_generate_params, top_p) X(ekv_generate_params, min_p) \
    X(ekv_generate_params, repetition_penalty) X(ekv_generate_params, repetition_last_n) \
    X(ekv_generate_params, seed) X(ekv_generate_params, stop_at_eos) X(ekv_generate_params, stop_tokens) \
    X(ekv_generate_params, n_stop_tokens) X(ekv_generate_params, stop_strings) \
    X(ekv_generate_params, n_stop_strings) X(ekv_generate_params, use_cache) X(ekv_generate_params, on_token) \
    X(ekv_generate_params, user_data) \
    X(ekv_generate_result, struct_size) X(ekv_generate_result, n_generated) X(ekv_generate_result, n_prompt_tokens) \
    X(ekv_generate_result, n_prompt_reused) X(ekv_generate_result, n_prompt_forwarded) \
    X(ekv_generate_result, n_forwarded) X(ekv_generate_result, prefill_seconds) \
    X(ekv_generate_result, decode_seconds) X(ekv_generate_result, stop_reason) \
    X(ekv_chat_message, role) X(ekv_chat_message, content)
#define EKV_LATER_FIELDS(X) \
    X(ekv_device_info, device_memory_free_bytes) \
    X(ekv_model_params, cancel) X(ekv_model_params, progress) X(ekv_model_params, progress_user_data) \
    X(ekv_model_params, replay) X(ekv_model_params, f16_accumulate) X(ekv_model_params, memory_budget_bytes) \
    X(ekv_cache_params, memory_budget_bytes) \
    X(ekv_generate_params, cancel) X(ekv_model_info, decode_weight_bytes)
