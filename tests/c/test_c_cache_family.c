/*
 * test_c_cache_family.c - the cache family from C: a 2-bit KIVI sink cache in
 * host memory streamed past the model's context, its memory split and its
 * plan, save and load, clone, and the refusals a C caller sees.
 *
 *   test_c_cache_family MODEL_PATH SCRATCH_FILE
 */
#include <stdio.h>
#include <string.h>

#include "c_check.h"
#include "edgekv.h"

static ekv_model *g_model;
static int32_t g_vocab;

static ekv_cache_stats stats_of(const ekv_cache *c) {
    ekv_cache_stats s = ekv_cache_stats_default();
    OK(ekv_cache_get_stats(c, &s));
    return s;
}

static void feed(ekv_cache *c, int32_t first, int32_t n, float *logits) {
    int32_t i;
    for (i = 0; i < n; i++) {
        int32_t tok = 3 + ((first + i) * 97 + 11) % (g_vocab - 3);
        OK(ekv_forward(g_model, c, &tok, 1, NULL, EKV_LOGITS_LAST, logits, (size_t)g_vocab));
    }
}

int main(int argc, char **argv) {
    ekv_model_params mp = ekv_model_default_params();
    ekv_model_info info = ekv_model_info_default();
    ekv_cache_params cp = ekv_cache_default_params();
    ekv_cache *sink = NULL, *loaded = NULL, *fork = NULL, *bad = NULL;
    ekv_cache_stats s, l;
    static float a[1 << 17], b[1 << 17];
    int32_t cap = 0, n_steps;
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_PATH SCRATCH_FILE\n", argv[0]);
        return 2;
    }
    mp.backend = EKV_BACKEND_CPU;
    mp.n_threads = 2;
    OK(ekv_model_load(argv[1], &mp, &g_model));
    OK(ekv_model_get_info(g_model, &info));
    g_vocab = info.n_vocab;
    CHECK(g_vocab <= (int32_t)(sizeof a / sizeof a[0]));

    section("a 2-bit sink cache in host memory");
    cp.type = EKV_CACHE_SINK;
    cp.window_length = 48;
    cp.num_sink_tokens = 4;
    cp.dtype = EKV_KV_KIVI;
    cp.nbits = 2;
    cp.q_group_size = 16;
    cp.residual_length = 16;
    cp.offload = EKV_PLACEMENT_HOST;
    OK(ekv_cache_create(g_model, &cp, &sink));
    OK(ekv_cache_capacity(sink, &cap));
    CHECK(cap == 48);
    /* A token at a time: past the trained context of the tiny model, and past
     * everything the ring keeps (window + a forward chunk) of any model. */
    n_steps = info.context_length <= 512 ? info.context_length + 64 : 300;
    feed(sink, 0, n_steps, a);
    s = stats_of(sink);
    CHECK(s.seq_len == n_steps && s.tokens_held == 48 && s.capacity == 48);
    CHECK(s.host_bytes > 0 && s.device_bytes == 0); /* the CPU reads host KV in place: nothing staged */
    CHECK(s.bytes_per_token > 0 && s.used_bytes > 0);

    section("its plan: the bytes it reports, and a budget nothing fits");
    {
        ekv_cache_plan_result r = ekv_cache_plan_result_default();
        ekv_cache_params auto_p = ekv_cache_default_params();
        OK(ekv_cache_plan(g_model, &cp, n_steps, NULL, &r));
        CHECK(r.type == EKV_CACHE_SINK && r.fits == 1 && r.n_candidates == 1 && r.window_length == 48);
        CHECK(r.device_bytes == s.device_bytes && r.host_bytes == s.host_bytes && r.tokens_held == 48);
        auto_p.memory_budget_bytes = 1;
        EXPECT_STATUS(ekv_cache_plan(g_model, &auto_p, n_steps, NULL, &r), EKV_ERR_OUT_OF_MEMORY);
        CHECK(r.fits == 0 && r.chosen_index == -1 && r.n_candidates > 0 && strstr(r.reason, "nothing fits"));
        EXPECT_STATUS(ekv_cache_plan_candidate(g_model, &auto_p, n_steps, r.n_candidates, NULL, &r),
                      EKV_ERR_INVALID_ARGUMENT);
        auto_p.max_cache_len = n_steps;
        EXPECT_STATUS(ekv_cache_create(g_model, &auto_p, &bad), EKV_ERR_OUT_OF_MEMORY);
        CHECK(bad == NULL);
    }

    section("save, load, clone continue identically");
    OK(ekv_cache_save(sink, argv[2]));
    OK(ekv_cache_load(g_model, argv[2], &loaded));
    OK(ekv_cache_clone(sink, &fork));
    l = stats_of(loaded);
    CHECK(l.seq_len == s.seq_len && l.used_bytes == s.used_bytes && l.tokens_forwarded == s.tokens_forwarded);
    feed(sink, n_steps, 3, a);
    feed(loaded, n_steps, 3, b);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)g_vocab) == 0);
    feed(fork, n_steps, 3, b);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)g_vocab) == 0);
    CHECK(stats_of(fork).tokens_forwarded == 3);

    section("refusals");
    EXPECT_STATUS(ekv_cache_crop(sink, 5), EKV_ERR_INVALID_STATE); /* the ring dropped those tokens */
    CHECK(stats_of(sink).seq_len == n_steps + 3);
    cp.num_sink_tokens = 48;
    EXPECT_STATUS(ekv_cache_create(g_model, &cp, &bad), EKV_ERR_INVALID_ARGUMENT);
    CHECK(bad == NULL && strstr(ekv_last_error(), "num_sink_tokens") != NULL);
    cp.num_sink_tokens = 4;
    cp.nbits = 3;
    EXPECT_STATUS(ekv_cache_create(g_model, &cp, &bad), EKV_ERR_INVALID_ARGUMENT);
    CHECK(bad == NULL && strstr(ekv_last_error(), "nbits") != NULL);
    EXPECT_STATUS(ekv_cache_load(g_model, "/nonexistent/cache.ekv", &bad), EKV_ERR_IO);
    EXPECT_STATUS(ekv_cache_save(NULL, argv[2]), EKV_ERR_INVALID_ARGUMENT);
    CHECK(bad == NULL);

    ekv_cache_free(fork);
    ekv_cache_free(loaded);
    ekv_cache_free(sink);
    ekv_model_free(g_model);
    remove(argv[2]);
    printf("ALL OK\n");
    return 0;
}
