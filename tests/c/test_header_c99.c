/*
 * test_header_c99.c - edgekv.h is valid C99: compiled with
 *   -std=c99 -Wall -Wextra -pedantic -Werror
 * it names every type, enum constant and function of the header. Linked
 * against the library it also runs the model-free calls (defaults, names,
 * versions) and checks their basic contracts. Exit 0 = pass.
 */
#define EKV_EXPERIMENTAL /* name the experimental section too */
#include "edgekv.h"

#include <stdio.h>
#include <string.h>

static int g_failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                  \
        }                                                                  \
    } while (0)

/* A callback with exactly the ekv_token_callback signature. */
static int count_tokens(int32_t token, const char *piece, size_t piece_len, void *user_data) {
    (void)token;
    (void)piece;
    (void)piece_len;
    ++*(int *)user_data;
    return 1;
}

/* Every function of the header, by address: a missing declaration, a C++-only
 * construct or (when linked) a missing export fails the build. */
typedef void (*any_fn)(void);
static const any_fn k_all_functions[] = {
    (any_fn)ekv_version, (any_fn)ekv_version_number, (any_fn)ekv_status_string, (any_fn)ekv_last_error,
    (any_fn)ekv_backend_name, (any_fn)ekv_backend_from_name, (any_fn)ekv_backend_available,
    (any_fn)ekv_device_info_default, (any_fn)ekv_device_count, (any_fn)ekv_device_get_info,
    (any_fn)ekv_model_default_params, (any_fn)ekv_model_load, (any_fn)ekv_model_free,
    (any_fn)ekv_model_info_default, (any_fn)ekv_model_get_info, (any_fn)ekv_model_meta_string,
    (any_fn)ekv_backend_stats_default, (any_fn)ekv_model_get_backend_stats,
    (any_fn)ekv_cache_type_name, (any_fn)ekv_cache_type_from_name, (any_fn)ekv_cache_default_params,
    (any_fn)ekv_cache_create, (any_fn)ekv_cache_free, (any_fn)ekv_cache_get_type, (any_fn)ekv_cache_seq_len,
    (any_fn)ekv_cache_capacity, (any_fn)ekv_cache_stats_default, (any_fn)ekv_cache_get_stats,
    (any_fn)ekv_cache_reset, (any_fn)ekv_cache_crop, (any_fn)ekv_cache_clone, (any_fn)ekv_forward,
    (any_fn)ekv_generate_default_params, (any_fn)ekv_generate_default_result, (any_fn)ekv_generate,
    (any_fn)ekv_tokenize, (any_fn)ekv_token_to_piece, (any_fn)ekv_detokenize, (any_fn)ekv_token_special,
    (any_fn)ekv_token_is_eog, (any_fn)ekv_detokenizer_create, (any_fn)ekv_detokenizer_free,
    (any_fn)ekv_detokenizer_push, (any_fn)ekv_chat_apply_template, (any_fn)ekv_peak_rss_bytes,
    (any_fn)ekv_cache_save, (any_fn)ekv_cache_load, (any_fn)ekv_audio_read_wav, (any_fn)ekv_audio_free,
    (any_fn)ekv_audio_log_mel, (any_fn)ekv_encode_audio, (any_fn)ekv_encode_mel,
    (any_fn)ekv_device_info_init, (any_fn)ekv_model_params_init, (any_fn)ekv_model_info_init,
    (any_fn)ekv_backend_stats_init, (any_fn)ekv_cache_params_init, (any_fn)ekv_cache_stats_init,
    (any_fn)ekv_generate_params_init, (any_fn)ekv_generate_result_init, (any_fn)ekv_generator_event_init,
    (any_fn)ekv_generator_event_default, (any_fn)ekv_cancel_create, (any_fn)ekv_cancel_trigger,
    (any_fn)ekv_cancel_reset, (any_fn)ekv_cancel_is_triggered, (any_fn)ekv_cancel_free,
    (any_fn)ekv_cache_set_cancel, (any_fn)ekv_generator_create, (any_fn)ekv_generator_next,
    (any_fn)ekv_generator_get_result, (any_fn)ekv_generator_free, (any_fn)ekv_detokenizer_flush,
    (any_fn)ekv_detokenizer_reset, (any_fn)ekv_log_set_callback, (any_fn)ekv_model_load_from_memory,
    (any_fn)ekv_model_load_from_fd, (any_fn)ekv_model_meta_count, (any_fn)ekv_model_meta_key,
    (any_fn)ekv_cache_save_to_memory, (any_fn)ekv_cache_load_from_memory, (any_fn)ekv_cache_get_params, (any_fn)ekv_cache_get_model,
    (any_fn)ekv_model_retain, (any_fn)ekv_cache_plan_result_init, (any_fn)ekv_cache_plan_result_default,
    (any_fn)ekv_cache_plan, (any_fn)ekv_cache_plan_candidate, (any_fn)ekv_forward_ex,
    (any_fn)ekv_forward_params_init, (any_fn)ekv_forward_default_params,
};

static void uses_every_type(void) {
    /* Opaque handles are complete enough to point at. */
    ekv_model *model = NULL;
    ekv_cache *cache = NULL;
    ekv_detokenizer *detok = NULL;
    ekv_generator *generator = NULL;
    ekv_cancel *cancel = NULL;
    ekv_progress_callback progress = NULL;
    ekv_event_type events[] = {EKV_EVENT_TOKEN, EKV_EVENT_DONE};
    ekv_generator_event event = ekv_generator_event_default();

    ekv_status statuses[] = {EKV_OK, EKV_ERR_INVALID_ARGUMENT, EKV_ERR_OUT_OF_MEMORY, EKV_ERR_IO,
                             EKV_ERR_INVALID_FILE, EKV_ERR_UNSUPPORTED, EKV_ERR_UNSUPPORTED_ARCH,
                             EKV_ERR_CACHE_FULL, EKV_ERR_INVALID_TOKEN, EKV_ERR_CONTEXT_OVERFLOW, EKV_ERR_BACKEND,
                             EKV_ERR_CANCELLED, EKV_ERR_MODEL_MISMATCH, EKV_ERR_INTERNAL, EKV_ERR_BUFFER_TOO_SMALL,
                             EKV_ERR_DEVICE_LOST, EKV_ERR_INVALID_STATE};
    ekv_backend_kind backends[] = {EKV_BACKEND_AUTO, EKV_BACKEND_CPU, EKV_BACKEND_VULKAN, EKV_BACKEND_CUDA};
    ekv_cache_type caches[] = {EKV_CACHE_AUTO, EKV_CACHE_DYNAMIC, EKV_CACHE_STATIC, EKV_CACHE_OFFLOADED,
                               EKV_CACHE_OFFLOADED_STATIC, EKV_CACHE_QUANTIZED, EKV_CACHE_SLIDING_WINDOW,
                               EKV_CACHE_SINK, EKV_CACHE_HYBRID, EKV_CACHE_MAMBA, EKV_CACHE_HYBRID_MAMBA,
                               EKV_CACHE_ENCODER_DECODER};
    ekv_kv_dtype dtypes[] = {EKV_KV_F16, EKV_KV_F32};
    ekv_placement placements[] = {EKV_PLACEMENT_DEVICE, EKV_PLACEMENT_HOST, EKV_PLACEMENT_UNIFIED};
    ekv_logits_mode modes[] = {EKV_LOGITS_LAST, EKV_LOGITS_ALL};
    ekv_stop_reason stops[] = {EKV_STOP_NONE, EKV_STOP_MAX_TOKENS, EKV_STOP_EOS, EKV_STOP_TOKEN,
                               EKV_STOP_STRING, EKV_STOP_CANCELLED, EKV_STOP_CACHE_FULL, EKV_STOP_ERROR};
    ekv_special_token specials[] = {EKV_TOKEN_BOS, EKV_TOKEN_EOS, EKV_TOKEN_EOT, EKV_TOKEN_PAD};
    ekv_token_callback callback = count_tokens;
    ekv_chat_message message;
    ekv_device_info device = ekv_device_info_default();
    ekv_model_params model_params = ekv_model_default_params();
    ekv_model_info model_info = ekv_model_info_default();
    ekv_cache_params cache_params = ekv_cache_default_params();
    ekv_cache_stats cache_stats = ekv_cache_stats_default();
    ekv_backend_stats backend_stats = ekv_backend_stats_default();
    ekv_forward_params forward_params = ekv_forward_default_params();
    ekv_generate_params gen_params = ekv_generate_default_params();
    ekv_generate_result gen_result = ekv_generate_default_result();
    ekv_cache_plan_result plan = ekv_cache_plan_result_default();
    size_t i;
    int calls = 0;

    /* The published numbers are stable: check a few against the header. */
    CHECK(sizeof statuses / sizeof statuses[0] == 17 && statuses[16] == 16);
    CHECK(backends[3] == 3 && caches[11] == 11 && dtypes[1] == 1 && placements[2] == 2);
    CHECK(modes[1] == 1 && stops[7] == 7 && specials[3] == 3 && events[1] == 1);
    CHECK(generator == NULL && cancel == NULL && progress == NULL);
    CHECK(event.struct_size == sizeof event && event.token == -1);
    CHECK(strcmp(ekv_version(), EKV_VERSION_STRING) == 0);
    CHECK(EKV_VERSION_NUMBER == EKV_VERSION_MAJOR * 10000 + EKV_VERSION_MINOR * 100 + EKV_VERSION_PATCH);

    /* Params and results carry their own size. */
    CHECK(device.struct_size == sizeof device);
    CHECK(model_params.struct_size == sizeof model_params);
    CHECK(model_info.struct_size == sizeof model_info);
    CHECK(cache_params.struct_size == sizeof cache_params);
    CHECK(cache_stats.struct_size == sizeof cache_stats);
    CHECK(backend_stats.struct_size == sizeof backend_stats && backend_stats.submissions == 0);
    CHECK(gen_params.struct_size == sizeof gen_params);
    CHECK(forward_params.struct_size == sizeof forward_params && forward_params.cancel == NULL);
    CHECK(gen_result.struct_size == sizeof gen_result);
    CHECK(plan.struct_size == sizeof plan && plan.chosen_index == -1 && plan.reason[0] == '\0');

    /* Documented defaults. */
    CHECK(model_params.backend == EKV_BACKEND_AUTO && model_params.device_index == 0 && model_params.n_threads == 0);
    CHECK(cache_params.type == EKV_CACHE_AUTO && cache_params.dtype == EKV_KV_F16);
    CHECK(cache_params.memory_budget_bytes == 0 && model_params.memory_budget_bytes == 0);
    CHECK(gen_params.max_new_tokens == 128 && gen_params.temperature == 0.0f && gen_params.top_k == 0);
    CHECK(gen_params.top_p == 1.0f && gen_params.min_p == 0.0f && gen_params.repetition_penalty == 1.0f);
    CHECK(gen_params.repetition_last_n == 64 && gen_params.seed == 0 && gen_params.stop_at_eos == 1);
    CHECK(gen_params.use_cache == 1 && gen_params.on_token == NULL && gen_params.stop_strings == NULL);

    message.role = "user";
    message.content = "hi";
    CHECK(callback(1, message.content, strlen(message.content), &calls) == 1 && calls == 1);

    for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        const char *s = ekv_status_string(statuses[i]);
        CHECK(s != NULL && s[0] != '\0');
    }
    for (i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        ekv_backend_kind back = EKV_BACKEND_AUTO;
        CHECK(ekv_backend_from_name(ekv_backend_name(backends[i]), &back) == EKV_OK && back == backends[i]);
    }
    for (i = 0; i < sizeof caches / sizeof caches[0]; i++) {
        ekv_cache_type back = EKV_CACHE_AUTO;
        const char *name = ekv_cache_type_name(caches[i]);
        CHECK(name != NULL && ekv_cache_type_from_name(name, &back) == EKV_OK && back == caches[i]);
    }
    CHECK(ekv_version_number() == EKV_VERSION_NUMBER);
    {
        char expected[32];
        int v = ekv_version_number();
        sprintf(expected, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
        CHECK(strcmp(ekv_version(), expected) == 0);
    }

    ekv_model_free(model);
    ekv_cache_free(cache);
    ekv_detokenizer_free(detok);
    for (i = 0; i < sizeof k_all_functions / sizeof k_all_functions[0]; i++) CHECK(k_all_functions[i] != NULL);
}

int main(void) {
    uses_every_type();
    if (g_failures) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("header C99 test OK\n");
    return 0;
}
