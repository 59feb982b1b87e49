/*
 * c_api_example.c - the smallest complete edgekv program (C99):
 * load a model, tokenize a prompt, generate greedily, print the text.
 *
 *   c_api_example MODEL.gguf ["prompt"]
 */
#include <stdio.h>
#include <string.h>

#include "edgekv.h"

static int fail(const char *what, ekv_status st) {
    fprintf(stderr, "%s: %s (%s)\n", what, ekv_status_string(st), ekv_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    ekv_model *model = NULL;
    ekv_cache *cache = NULL;
    ekv_model_params mp = ekv_model_default_params();
    ekv_cache_params cp = ekv_cache_default_params();
    ekv_generate_params gp = ekv_generate_default_params();
    ekv_generate_result res = ekv_generate_default_result();
    int32_t tokens[512], out[64];
    int32_t n_tokens = 0;
    char text[4096];
    size_t text_len = 0;
    ekv_status st;
    int rc = 1;

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [prompt]\n", argv[0]);
        return 2;
    }
    st = ekv_model_load(argv[1], &mp, &model);
    if (st != EKV_OK) return fail("load", st);

    st = ekv_cache_create(model, &cp, &cache); /* the model's natural cache */
    if (st != EKV_OK) { rc = fail("cache", st); goto done; }

    st = ekv_tokenize(model, prompt, strlen(prompt), 1, 0, tokens, 512, &n_tokens);
    if (st != EKV_OK) { rc = fail("tokenize", st); goto done; }

    gp.max_new_tokens = 64; /* greedy: temperature 0 is the default */
    st = ekv_generate(model, cache, tokens, n_tokens, &gp, out, 64, &res);
    if (st != EKV_OK) { rc = fail("generate", st); goto done; }

    st = ekv_detokenize(model, out, res.n_generated, 1, text, sizeof text, &text_len);
    if (st != EKV_OK) { rc = fail("detokenize", st); goto done; }

    printf("%s%s\n", prompt, text);
    fprintf(stderr, "%d prompt tokens, %d generated (%.1f tok/s)\n", res.n_prompt_tokens, res.n_generated,
            res.decode_seconds > 0 ? (res.n_generated - 1) / res.decode_seconds : 0.0);
    rc = 0;

done:
    ekv_cache_free(cache);
    ekv_model_free(model);
    return rc;
}
