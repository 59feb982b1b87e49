/* An application built against the frozen v1 header (tests/abi/v1), run
 * against the current library: the by-value default functions it calls
 * return v1-sized structs, and every call that reads or writes a struct
 * stays inside the v1 size (the asan preset runs it under AddressSanitizer,
 * which catches a write past the caller's struct on its stack).
 * Usage: consumer_v1 MODEL.gguf. Exit 0 = pass. */
#include <stdio.h>
#include <string.h>

#include "edgekv.h"

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            printf("FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, ekv_last_error()); \
            return 1;                                                            \
        }                                                                        \
    } while (0)

int main(int argc, char **argv) {
    CHECK(argc == 2);
    ekv_model_params mp = ekv_model_default_params();
    CHECK(mp.struct_size == sizeof mp);
    mp.backend = EKV_BACKEND_CPU;
    mp.n_threads = 2;
    ekv_model *model = NULL;
    CHECK(ekv_model_load(argv[1], &mp, &model) == EKV_OK);

    ekv_model_info info = ekv_model_info_default();
    CHECK(info.struct_size == sizeof info);
    CHECK(ekv_model_get_info(model, &info) == EKV_OK);
    CHECK(info.n_vocab > 0 && info.struct_size == sizeof info);
    ekv_device_info dev = ekv_device_info_default();
    CHECK(ekv_device_get_info(EKV_BACKEND_CPU, 0, &dev) == EKV_OK && dev.struct_size == sizeof dev);
    ekv_backend_stats bs = ekv_backend_stats_default();
    CHECK(ekv_model_get_backend_stats(model, &bs) == EKV_OK && bs.struct_size == sizeof bs);

    ekv_cache_params cp = ekv_cache_default_params();
    CHECK(cp.struct_size == sizeof cp && cp.nbits == 4 && cp.q_group_size == 64 && cp.num_sink_tokens == 4);
    cp.type = EKV_CACHE_STATIC;
    cp.max_cache_len = 64;
    ekv_cache *cache = NULL;
    CHECK(ekv_cache_create(model, &cp, &cache) == EKV_OK);

    ekv_generate_params gp = ekv_generate_default_params();
    CHECK(gp.struct_size == sizeof gp && gp.max_new_tokens == 128 && gp.top_p == 1.f && gp.use_cache == 1);
    gp.max_new_tokens = 8;
    gp.stop_at_eos = 0;
    int32_t prompt[6] = {5, 17, 42, 99, 7, 3}, out[8];
    ekv_generate_result res = ekv_generate_default_result();
    CHECK(res.struct_size == sizeof res);
    CHECK(ekv_generate(model, cache, prompt, 6, &gp, out, 8, &res) == EKV_OK);
    CHECK(res.n_generated == 8 && res.stop_reason == EKV_STOP_MAX_TOKENS && res.struct_size == sizeof res);

    ekv_cache_stats st = ekv_cache_stats_default();
    CHECK(ekv_cache_get_stats(cache, &st) == EKV_OK);
    CHECK(st.seq_len == 13 && st.capacity == 64 && st.struct_size == sizeof st);

    ekv_cache_free(cache);
    ekv_model_free(model);
    printf("v1 consumer: ok (ekv_version %s)\n", ekv_version());
    return 0;
}
