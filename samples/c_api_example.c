/*
 * c_api_example.c - the smallest complete edgekv program (C99): load a
 * model, tokenize a prompt, stream a greedy continuation token by token with
 * a generator; Ctrl-C stops it through a stop request (ekv_cancel).
 *
 *   c_api_example MODEL.gguf ["prompt"]
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "edgekv.h"

static ekv_cancel *g_stop = NULL;

/* Triggering is one atomic store: safe from a signal handler or any thread. */
static void on_sigint(int sig) {
    (void)sig;
    ekv_cancel_trigger(g_stop);
}

static int fail(const char *what, ekv_status st) {
    fprintf(stderr, "%s: %s (%s)\n", what, ekv_status_string(st), ekv_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    ekv_model *model = NULL;
    ekv_cache *cache = NULL;
    ekv_generator *gen = NULL;
    ekv_model_params mp = ekv_model_default_params();
    ekv_generate_params gp = ekv_generate_default_params();
    ekv_generator_event ev = ekv_generator_event_default();
    ekv_generate_result res = ekv_generate_default_result();
    int32_t tokens[512];
    int32_t n_tokens = 0;
    char text[256];
    ekv_status st;
    int rc = 1;

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [prompt]\n", argv[0]);
        return 2;
    }
    st = ekv_cancel_create(&g_stop);
    if (st != EKV_OK) return fail("cancel", st);
    mp.cancel = g_stop; /* Ctrl-C during the load stops it too */
    signal(SIGINT, on_sigint);

    st = ekv_model_load(argv[1], &mp, &model);
    if (st != EKV_OK) { rc = fail("load", st); goto done; }

    st = ekv_cache_create(model, NULL, &cache); /* NULL: the model's natural cache */
    if (st != EKV_OK) { rc = fail("cache", st); goto done; }

    st = ekv_tokenize(model, prompt, strlen(prompt), 1, 0, tokens, 512, &n_tokens);
    if (st != EKV_OK) { rc = fail("tokenize", st); goto done; }

    gp.max_new_tokens = 64; /* greedy: temperature 0 is the default */
    gp.cancel = g_stop;
    st = ekv_generator_create(model, cache, tokens, n_tokens, &gp, &gen);
    if (st != EKV_OK) { rc = fail("generator", st); goto done; }

    fputs(prompt, stdout);
    for (;;) {
        st = ekv_generator_next(gen, &ev, text, sizeof text);
        if (st == EKV_ERR_BUFFER_TOO_SMALL) { /* a piece longer than 255 bytes: print it in parts */
            char big[4096];
            if (ev.text_len >= sizeof big) { rc = fail("text", st); goto done; }
            st = ekv_generator_next(gen, &ev, big, sizeof big);
            if (st == EKV_OK) fputs(big, stdout);
        } else if (st == EKV_OK) {
            fputs(text, stdout);
        }
        if (st != EKV_OK) { rc = fail("generate", st); goto done; }
        fflush(stdout);
        if (ev.type == EKV_EVENT_DONE) break;
    }
    putchar('\n');
    st = ekv_generator_get_result(gen, &res);
    if (st != EKV_OK) { rc = fail("result", st); goto done; }
    fprintf(stderr, "%d prompt tokens, %d generated (%.1f tok/s)%s\n", res.n_prompt_tokens, res.n_generated,
            res.decode_seconds > 0 ? (res.n_generated - 1) / res.decode_seconds : 0.0,
            res.stop_reason == EKV_STOP_CANCELLED ? ", stopped by Ctrl-C" : "");
    rc = 0;

done:
    ekv_generator_free(gen); /* any order: the handles keep what they need alive */
    ekv_cache_free(cache);
    ekv_model_free(model);
    signal(SIGINT, SIG_DFL); /* before the request goes */
    ekv_cancel_free(g_stop);
    return rc;
}
