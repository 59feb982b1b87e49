/*
 * test_c_flow.c - drives the whole edgekv flow through the C ABI, from C.
 *
 *   test_c_flow MODEL_PATH [BACKEND]
 *
 * Stops at the first failed check with file:line, the expression and
 * ekv_last_error(); prints "ALL OK" when every check passed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_check.h"
#include "edgekv.h"

/* ---- shared state ------------------------------------------------------------ */

static ekv_model *g_model = NULL;
static ekv_model_info g_info;
static int32_t g_vocab = 0;

static int32_t tokenize(const char *text, int add_special, int parse_special, int32_t *out, int32_t cap) {
    int32_t n = 0;
    OK(ekv_tokenize(g_model, text, strlen(text), add_special, parse_special, out, cap, &n));
    return n;
}

static int32_t seq_len(const ekv_cache *c) {
    int32_t n = -2;
    OK(ekv_cache_seq_len(c, &n));
    return n;
}

static ekv_cache *new_cache(ekv_cache_type type, int32_t max_len) {
    ekv_cache_params cp = ekv_cache_default_params();
    ekv_cache *c = NULL;
    cp.type = type;
    cp.max_cache_len = max_len;
    OK(ekv_cache_create(g_model, &cp, &c));
    CHECK(c != NULL);
    return c;
}

static float *new_logits(int32_t rows) {
    float *p = (float *)calloc((size_t)rows * (size_t)g_vocab, sizeof(float));
    CHECK(p != NULL);
    return p;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

/* Max |a-b| relative to the largest |a| (>= 1). */
static double rel_diff(const float *a, const float *b, size_t n) {
    double m = 0, scale = max_abs(a, n);
    size_t i;
    for (i = 0; i < n; i++) if (fabs(a[i] - b[i]) > m) m = fabs(a[i] - b[i]);
    return m / (scale > 1 ? scale : 1);
}

static int32_t argmax(const float *a) {
    int32_t i, best = 0;
    for (i = 1; i < g_vocab; i++) if (a[i] > a[best]) best = i;
    return best;
}

/* Fails unless rel_diff(a, b) <= tol; reports the difference and, for one
 * row of logits, both argmaxes (same_argmax: they must agree too). */
static void close_or_die(int line, const char *what, const float *a, const float *b, size_t n, double tol,
                         int same_argmax) {
    double d = rel_diff(a, b, n);
    int ok = d <= tol;
    if (same_argmax && n == (size_t)g_vocab && argmax(a) != argmax(b)) ok = 0;
    if (!ok) {
        char msg[200];
        sprintf(msg, "relative max diff %.3g (tolerance %.3g)", d, tol);
        if (n == (size_t)g_vocab)
            sprintf(msg + strlen(msg), ", argmax %d vs %d", (int)argmax(a), (int)argmax(b));
        die(line, what, msg);
    }
}
#define CHECK_CLOSE(a, b, n, tol) close_or_die(__LINE__, "CHECK_CLOSE(" #a ", " #b ")", a, b, n, tol, 0)
#define CHECK_CLOSE_ARGMAX(a, b, tol) \
    close_or_die(__LINE__, "CHECK_CLOSE_ARGMAX(" #a ", " #b ")", a, b, (size_t)g_vocab, tol, 1)

static int all_finite(const float *a, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) if (!(a[i] == a[i]) || a[i] > 3e38f || a[i] < -3e38f) return 0;
    return 1;
}

/* Greedy generation of n tokens (EOS ignored) after prompt; returns count. */
static int32_t greedy(ekv_cache *cache, int use_cache, const int32_t *prompt, int32_t n_prompt, int32_t n,
                      int32_t *out, ekv_generate_result *res) {
    ekv_generate_params gp = ekv_generate_default_params();
    gp.max_new_tokens = n;
    gp.stop_at_eos = 0;
    gp.use_cache = use_cache;
    *res = ekv_generate_default_result();
    OK(ekv_generate(g_model, cache, prompt, n_prompt, &gp, out, n, res));
    CHECK(res->n_generated == n && res->stop_reason == EKV_STOP_MAX_TOKENS);
    return res->n_generated;
}

/* ---- sections ------------------------------------------------------------------- */

static void test_version_status_devices(void) {
    int32_t count = -1, i;
    ekv_device_info d = ekv_device_info_default();
    ekv_backend_kind kind = EKV_BACKEND_AUTO;
    section("version, status strings, devices");
    CHECK(ekv_version() != NULL && ekv_version()[0] != '\0');
    CHECK(ekv_version_number() == EKV_VERSION_NUMBER);
    for (i = 0; i <= 16; i++) CHECK(ekv_status_string((ekv_status)i)[0] != '\0');
    CHECK(ekv_status_string((ekv_status)999) != NULL);
    CHECK(strcmp(ekv_status_string(EKV_OK), ekv_status_string(EKV_ERR_IO)) != 0);

    OK(ekv_backend_from_name("cpu", &kind));
    CHECK(kind == EKV_BACKEND_CPU && strcmp(ekv_backend_name(EKV_BACKEND_CPU), "cpu") == 0);
    EXPECT_STATUS(ekv_backend_from_name("abacus", &kind), EKV_ERR_INVALID_ARGUMENT);
    CHECK(ekv_backend_available(EKV_BACKEND_CPU) == 1);
    OK(ekv_device_count(EKV_BACKEND_CPU, &count));
    CHECK(count >= 1);
    OK(ekv_device_get_info(EKV_BACKEND_CPU, 0, &d));
    CHECK(d.backend == EKV_BACKEND_CPU && d.index == 0 && d.name[0] != '\0' && d.n_threads >= 1);
    CHECK(d.device_memory_bytes > 0);
    CHECK(d.device_memory_free_bytes > 0 && d.device_memory_free_bytes <= d.device_memory_bytes);
    EXPECT_STATUS(ekv_device_get_info(EKV_BACKEND_CPU, count, &d), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(ekv_device_get_info(EKV_BACKEND_CPU, -1, &d), EKV_ERR_INVALID_ARGUMENT);
    for (kind = EKV_BACKEND_VULKAN; kind <= EKV_BACKEND_CUDA; kind = (ekv_backend_kind)(kind + 1)) {
        OK(ekv_device_count(kind, &count));
        CHECK(count >= 0 && (count > 0) == (ekv_backend_available(kind) == 1));
    }
    printf("   %s, cpu device: %s\n", ekv_version(), d.name);
}

static void test_model_load(const char *path, const char *backend) {
    ekv_model_params mp = ekv_model_default_params();
    ekv_model *bad = NULL;
    char buf[256];
    size_t len = 0;
    section("model load and info");
    EXPECT_STATUS(ekv_model_load("/nonexistent/dir/model.gguf", &mp, &bad), EKV_ERR_IO);
    CHECK(bad == NULL && ekv_last_error()[0] != '\0');
    if (backend) OK(ekv_backend_from_name(backend, &mp.backend));
    OK(ekv_model_load(path, &mp, &g_model));
    CHECK(g_model != NULL);

    g_info = ekv_model_info_default();
    OK(ekv_model_get_info(g_model, &g_info));
    g_vocab = g_info.n_vocab;
    CHECK(g_info.architecture[0] != '\0' && g_info.device[0] != '\0');
    CHECK(g_info.n_layers > 0 && g_info.n_heads > 0 && g_info.n_kv_heads > 0 && g_info.head_dim > 0);
    CHECK(g_info.n_embd > 0 && g_info.n_ff > 0 && g_info.context_length > 0 && g_vocab > 0);
    CHECK(g_info.n_params > 0 && g_info.weight_bytes > 0 && g_info.natural_cache != EKV_CACHE_AUTO);
    printf("   %s '%s': %d layers, vocab %d, %llu params on %s\n", g_info.architecture, g_info.name,
           g_info.n_layers, g_vocab, (unsigned long long)g_info.n_params, g_info.device);

    OK(ekv_model_meta_string(g_model, "general.architecture", buf, sizeof buf, &len));
    CHECK(strcmp(buf, g_info.architecture) == 0 && len == strlen(buf));
    EXPECT_STATUS(ekv_model_meta_string(g_model, "general.architecture", buf, 2, &len), EKV_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(g_info.architecture));
    CHECK(ekv_model_meta_string(g_model, "no.such.key", buf, sizeof buf, &len) != EKV_OK);
}

static void test_cache_create(void) {
    ekv_cache *dyn, *stat, *autoc, *bad = NULL;
    ekv_cache_params cp = ekv_cache_default_params();
    ekv_cache_type type = EKV_CACHE_AUTO;
    int32_t cap = 0;
    section("cache create");
    dyn = new_cache(EKV_CACHE_DYNAMIC, 0);
    OK(ekv_cache_get_type(dyn, &type));
    CHECK(type == EKV_CACHE_DYNAMIC && seq_len(dyn) == 0);
    OK(ekv_cache_capacity(dyn, &cap));
    CHECK(cap == -1);
    stat = new_cache(EKV_CACHE_STATIC, 64);
    OK(ekv_cache_get_type(stat, &type));
    OK(ekv_cache_capacity(stat, &cap));
    CHECK(type == EKV_CACHE_STATIC && cap == 64 && seq_len(stat) == 0);
    autoc = new_cache(EKV_CACHE_AUTO, 0);
    OK(ekv_cache_get_type(autoc, &type));
    CHECK(type == g_info.natural_cache);

    OK(ekv_cache_type_from_name("static", &type));
    CHECK(type == EKV_CACHE_STATIC && strcmp(ekv_cache_type_name(EKV_CACHE_STATIC), "static") == 0);
    CHECK(ekv_cache_type_from_name("no_such_cache", &type) != EKV_OK);
    cp.type = (ekv_cache_type)99;
    EXPECT_STATUS(ekv_cache_create(g_model, &cp, &bad), EKV_ERR_INVALID_ARGUMENT);
    cp.type = EKV_CACHE_MAMBA; /* a llama-style model has no recurrent state */
    EXPECT_STATUS(ekv_cache_create(g_model, &cp, &bad), EKV_ERR_UNSUPPORTED);
    CHECK(bad == NULL && ekv_last_error()[0] != '\0');
    ekv_cache_free(dyn);
    ekv_cache_free(stat);
    ekv_cache_free(autoc);
}

static void test_text(void) {
    const char *text = "Hello world! The quick brown fox, h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82.";
    int32_t toks[256], n, n_small = 0, i, eos = -2;
    char out[1024], piece[64], joined[1024];
    size_t len = 0, joined_len = 0;
    ekv_detokenizer *dt = NULL;
    section("tokenize / detokenize");
    n = tokenize(text, 0, 0, toks, 256);
    CHECK(n > 5);
    for (i = 0; i < n; i++) CHECK(toks[i] >= 0 && toks[i] < g_vocab);
    OK(ekv_detokenize(g_model, toks, n, 0, out, sizeof out, &len));
    CHECK(len == strlen(text) && strcmp(out, text) == 0);
    EXPECT_STATUS(ekv_tokenize(g_model, text, strlen(text), 0, 0, toks, 1, &n_small), EKV_ERR_BUFFER_TOO_SMALL);
    CHECK(n_small == n);
    EXPECT_STATUS(ekv_detokenize(g_model, toks, n, 0, out, 4, &len), EKV_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(text));

    /* Pieces concatenate to the text; the streaming detokenizer agrees. */
    OK(ekv_detokenizer_create(g_model, &dt));
    for (i = 0; i < n; i++) {
        OK(ekv_token_to_piece(g_model, toks[i], 0, piece, sizeof piece, &len));
        CHECK(joined_len + len < sizeof joined);
        memcpy(joined + joined_len, piece, len);
        joined_len += len;
    }
    CHECK(joined_len == strlen(text) && memcmp(joined, text, joined_len) == 0);
    joined_len = 0;
    for (i = 0; i < n; i++) {
        OK(ekv_detokenizer_push(dt, toks[i], piece, sizeof piece, &len));
        CHECK(len == strlen(piece));
        memcpy(joined + joined_len, piece, len);
        joined_len += len;
    }
    CHECK(joined_len == strlen(text) && memcmp(joined, text, joined_len) == 0);
    EXPECT_STATUS(ekv_detokenizer_push(dt, g_vocab, piece, sizeof piece, &len), EKV_ERR_INVALID_TOKEN);
    ekv_detokenizer_free(dt);

    /* add_special: the text survives with special tokens skipped. */
    n = tokenize(text, 1, 0, toks, 256);
    OK(ekv_detokenize(g_model, toks, n, 1, out, sizeof out, &len));
    CHECK(strcmp(out, text) == 0);

    toks[0] = g_vocab;
    EXPECT_STATUS(ekv_detokenize(g_model, toks, 1, 0, out, sizeof out, &len), EKV_ERR_INVALID_TOKEN);
    EXPECT_STATUS(ekv_token_to_piece(g_model, -1, 0, piece, sizeof piece, &len), EKV_ERR_INVALID_TOKEN);
    OK(ekv_token_special(g_model, EKV_TOKEN_EOS, &eos));
    CHECK(eos >= -1 && eos < g_vocab);
    if (eos >= 0) CHECK(ekv_token_is_eog(g_model, eos) == 1);
}

static void test_chat_template(void) {
    ekv_chat_message msgs[2];
    char with_gen[2048], without_gen[2048], tiny[4];
    size_t len_with = 0, len_without = 0, len = 0;
    int32_t toks[512];
    section("chat template");
    msgs[0].role = "system";
    msgs[0].content = "You are terse.";
    msgs[1].role = "user";
    msgs[1].content = "What is 2+2?";
    OK(ekv_chat_apply_template(g_model, NULL, msgs, 2, 1, with_gen, sizeof with_gen, &len_with));
    OK(ekv_chat_apply_template(g_model, NULL, msgs, 2, 0, without_gen, sizeof without_gen, &len_without));
    CHECK(len_with == strlen(with_gen) && len_with > len_without);
    CHECK(strncmp(with_gen, without_gen, len_without) == 0);
    CHECK(strstr(with_gen, "What is 2+2?") != NULL && strstr(with_gen, "You are terse.") != NULL);
    /* The template's markers are special tokens: parsing them gives fewer ids. */
    CHECK(tokenize(with_gen, 0, 1, toks, 512) < tokenize(with_gen, 0, 0, toks, 512));
    EXPECT_STATUS(ekv_chat_apply_template(g_model, NULL, msgs, 2, 1, tiny, sizeof tiny, &len),
                  EKV_ERR_BUFFER_TOO_SMALL);
    CHECK(len == len_with);
    OK(ekv_chat_apply_template(g_model, "chatml", msgs + 1, 1, 1, with_gen, sizeof with_gen, &len));
    CHECK(strstr(with_gen, "<|im_start|>user\nWhat is 2+2?<|im_end|>") != NULL);
    CHECK(ekv_chat_apply_template(g_model, "no-such-template", msgs, 2, 1, with_gen, sizeof with_gen, &len) != EKV_OK);
}

static void test_forward(void) {
    int32_t toks[64], n, pos;
    float *last = new_logits(1), *step = new_logits(1), *all, *nocache;
    ekv_cache *a = new_cache(EKV_CACHE_DYNAMIC, 0), *b = new_cache(EKV_CACHE_DYNAMIC, 0);
    section("forward");
    n = tokenize("The capital of France is Paris, and the capital of Italy is", 1, 0, toks, 64);
    CHECK(n >= 8);
    all = new_logits(n);
    nocache = new_logits(n);
    OK(ekv_forward(g_model, a, toks, n, NULL, EKV_LOGITS_LAST, last, (size_t)g_vocab));
    CHECK(seq_len(a) == n && all_finite(last, (size_t)g_vocab) && max_abs(last, (size_t)g_vocab) > 0);
    OK(ekv_forward(g_model, b, toks, n, NULL, EKV_LOGITS_ALL, all, (size_t)n * g_vocab));
    CHECK_CLOSE(last, all + (size_t)(n - 1) * g_vocab, (size_t)g_vocab, 1e-3);
    OK(ekv_forward(g_model, NULL, toks, n, NULL, EKV_LOGITS_ALL, nocache, (size_t)n * g_vocab));
    CHECK_CLOSE(all, nocache, (size_t)n * g_vocab, 1e-3);

    /* Incremental decode matches the one-shot forward. */
    OK(ekv_cache_reset(b));
    OK(ekv_forward(g_model, b, toks, n - 1, NULL, EKV_LOGITS_LAST, step, (size_t)g_vocab));
    OK(ekv_forward(g_model, b, toks + n - 1, 1, NULL, EKV_LOGITS_LAST, step, (size_t)g_vocab));
    CHECK_CLOSE_ARGMAX(last, step, 2e-2);

    /* cache_position rewrites the last token in place. */
    pos = n - 1;
    OK(ekv_forward(g_model, b, toks + n - 1, 1, &pos, EKV_LOGITS_LAST, step, (size_t)g_vocab));
    CHECK(seq_len(b) == n);
    CHECK_CLOSE_ARGMAX(last, step, 2e-2);
    pos = n + 5; /* a gap is invalid and leaves the cache alone */
    EXPECT_STATUS(ekv_forward(g_model, b, toks, 1, &pos, EKV_LOGITS_LAST, step, (size_t)g_vocab),
                  EKV_ERR_INVALID_ARGUMENT);
    CHECK(seq_len(b) == n);

    /* Bad input fails without touching the cache. */
    toks[2] = g_vocab;
    EXPECT_STATUS(ekv_forward(g_model, a, toks, 3, NULL, EKV_LOGITS_LAST, step, (size_t)g_vocab),
                  EKV_ERR_INVALID_TOKEN);
    toks[2] = -7;
    EXPECT_STATUS(ekv_forward(g_model, a, toks, 3, NULL, EKV_LOGITS_LAST, step, (size_t)g_vocab),
                  EKV_ERR_INVALID_TOKEN);
    toks[2] = 1;
    CHECK(ekv_forward(g_model, a, toks, 3, NULL, EKV_LOGITS_ALL, step, (size_t)g_vocab) != EKV_OK);
    CHECK(ekv_forward(g_model, a, toks, 0, NULL, EKV_LOGITS_LAST, step, (size_t)g_vocab) != EKV_OK);
    CHECK(seq_len(a) == n);
    free(last);
    free(step);
    free(all);
    free(nocache);
    ekv_cache_free(a);
    ekv_cache_free(b);
}

typedef struct stream_log {
    int32_t ids[64];
    size_t ends[64]; /* length of text after each token */
    int n, cancel_after;
    char text[4096];
    size_t len;
} stream_log;

static int on_token(int32_t token, const char *piece, size_t piece_len, void *user_data) {
    stream_log *s = (stream_log *)user_data;
    if (s->n < 64) s->ids[s->n] = token;
    s->n++;
    if (s->len + piece_len < sizeof s->text) {
        memcpy(s->text + s->len, piece, piece_len);
        s->len += piece_len;
        s->text[s->len] = '\0';
    }
    if (s->n <= 64) s->ends[s->n - 1] = s->len;
    return s->cancel_after > 0 && s->n >= s->cancel_after ? 0 : 1;
}

static void test_generate(void) {
    int32_t prompt[64], n, out[64], ref[64], i, k, stop_at;
    ekv_generate_params gp = ekv_generate_default_params();
    ekv_generate_result res = ekv_generate_default_result(), res2;
    ekv_cache *c = new_cache(EKV_CACHE_DYNAMIC, 0);
    stream_log log;
    char text[4096], text_special[4096], stop_text[4096];
    const char *stops[1];
    size_t len;
    section("generate: streaming, cancellation, use_cache=0, stops");
    n = tokenize("Once upon a time, in a small village,", 1, 0, prompt, 64);

    memset(&log, 0, sizeof log);
    gp.max_new_tokens = 12;
    gp.stop_at_eos = 0;
    gp.on_token = on_token;
    gp.user_data = &log;
    OK(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res));
    CHECK(res.n_generated == 12 && res.stop_reason == EKV_STOP_MAX_TOKENS && log.n == 12);
    CHECK(res.n_prompt_tokens == n && res.n_prompt_reused == 0 && res.n_prompt_forwarded == n);
    CHECK(seq_len(c) == n + 12 - 1); /* every generated token but the last is cached */
    for (i = 0; i < 12; i++) CHECK(log.ids[i] == out[i]);
    OK(ekv_detokenize(g_model, out, 12, 1, text, sizeof text, &len));
    OK(ekv_detokenize(g_model, out, 12, 0, text_special, sizeof text_special, &len));
    CHECK(strcmp(log.text, text) == 0 || strcmp(log.text, text_special) == 0);
    /* The stop string for later: the streamed text up to its first non-empty piece. */
    for (stop_at = 0; stop_at < 12 && log.ends[stop_at] == 0; stop_at++) {}
    CHECK(stop_at < 12); /* the 12 tokens streamed some text */
    memcpy(stop_text, log.text, log.ends[stop_at]);
    stop_text[log.ends[stop_at]] = '\0';

    /* Cancel from the callback after 3 tokens. */
    memset(&log, 0, sizeof log);
    log.cancel_after = 3;
    OK(ekv_cache_reset(c));
    OK(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res));
    CHECK(res.stop_reason == EKV_STOP_CANCELLED && res.n_generated == 3 && log.n == 3);

    /* Greedy without a cache equals greedy with one. */
    OK(ekv_cache_reset(c));
    greedy(c, 1, prompt, n, 10, ref, &res);
    greedy(NULL, 0, prompt, n, 10, out, &res2);
    for (i = 0; i < 10; i++) CHECK(out[i] == ref[i]);
    CHECK(res2.n_forwarded > res.n_forwarded);
    gp.on_token = NULL;
    EXPECT_STATUS(ekv_generate(g_model, NULL, prompt, n, &gp, out, 64, &res), EKV_ERR_INVALID_ARGUMENT);

    /* Stop token: the last of the 10 greedy tokens that is new by then (the
     * first always is), so generation stops exactly there. */
    for (k = 9; k > 0; k--) {
        for (i = 0; i < k && ref[i] != ref[k]; i++) {}
        if (i == k) break;
    }
    gp.stop_tokens = &ref[k];
    gp.n_stop_tokens = 1;
    OK(ekv_cache_reset(c));
    OK(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res));
    CHECK(res.stop_reason == EKV_STOP_TOKEN && res.n_generated == k + 1 && out[k] == ref[k]);
    gp.stop_tokens = NULL;
    gp.n_stop_tokens = 0;
    /* Stop string: the generated text up to the first token that has text;
     * the text was empty before it, so generation stops at that token. */
    stops[0] = stop_text;
    gp.stop_strings = stops;
    gp.n_stop_strings = 1;
    OK(ekv_cache_reset(c));
    OK(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res));
    CHECK(res.stop_reason == EKV_STOP_STRING && res.n_generated == stop_at + 1);
    gp.stop_strings = NULL;
    gp.n_stop_strings = 0;
    /* Seeded sampling is reproducible. */
    gp.temperature = 0.8f;
    gp.top_k = 40;
    gp.top_p = 0.95f;
    gp.seed = 1234;
    OK(ekv_cache_reset(c));
    OK(ekv_generate(g_model, c, prompt, n, &gp, ref, 64, &res));
    OK(ekv_cache_reset(c));
    OK(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res2));
    CHECK(res.n_generated == res2.n_generated);
    for (i = 0; i < res.n_generated; i++) CHECK(out[i] == ref[i]);

    /* Invalid generation parameters. */
    gp.temperature = -1.f;
    EXPECT_STATUS(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res), EKV_ERR_INVALID_ARGUMENT);
    gp.temperature = 0.f;
    gp.top_p = 1.5f;
    EXPECT_STATUS(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res), EKV_ERR_INVALID_ARGUMENT);
    gp.top_p = 1.f;
    gp.max_new_tokens = -1;
    EXPECT_STATUS(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res), EKV_ERR_INVALID_ARGUMENT);
    gp.max_new_tokens = 4;
    prompt[1] = -1;
    EXPECT_STATUS(ekv_generate(g_model, c, prompt, n, &gp, out, 64, &res), EKV_ERR_INVALID_TOKEN);
    ekv_cache_free(c);
}

static void test_multi_turn_reuse(void) {
    int32_t p1[256], n1, gen1[8], p2[256], n2, more[32], n_more, gen2[8], fresh_out[8], held, i;
    int32_t p3[256], n3, other[32], n_other = 0;
    /* Continuations with different first characters: at most one starts with
     * the answer's first token. */
    static const char *const others[] = {" Purple, orange and teal.", "\nRed, green and blue.", "1. Teal"};
    ekv_generate_result res;
    ekv_cache *c = new_cache(EKV_CACHE_DYNAMIC, 0), *fresh = new_cache(EKV_CACHE_DYNAMIC, 0);
    section("multi-turn prefix reuse");
    n1 = tokenize("User: Name three colors.\nAssistant:", 1, 0, p1, 256);
    greedy(c, 1, p1, n1, 8, gen1, &res);
    held = seq_len(c);
    CHECK(held == n1 + 7);

    n_more = tokenize("\nUser: And three animals?\nAssistant:", 0, 0, more, 32);
    memcpy(p2, p1, (size_t)n1 * sizeof *p1);
    memcpy(p2 + n1, gen1, 8 * sizeof *gen1);
    memcpy(p2 + n1 + 8, more, (size_t)n_more * sizeof *more);
    n2 = n1 + 8 + n_more;
    greedy(c, 1, p2, n2, 8, gen2, &res);
    CHECK(res.n_prompt_tokens == n2 && res.n_prompt_reused == held);
    CHECK(res.n_prompt_forwarded == n_more + 1); /* the last answer token + the new turn */
    CHECK(seq_len(c) == n2 + 7);
    /* Reusing the cache gives what a fresh prefill gives. */
    greedy(fresh, 1, p2, n2, 8, fresh_out, &res);
    CHECK(res.n_prompt_reused == 0);
    for (i = 0; i < 4; i++) CHECK(fresh_out[i] == gen2[i]);

    /* A diverging prompt crops the cache at the first difference. */
    for (i = 0; i < 3; i++) {
        n_other = tokenize(others[i], 0, 0, other, 32);
        if (other[0] != gen1[0]) break;
    }
    CHECK(i < 3);
    memcpy(p3, p1, (size_t)n1 * sizeof *p1);
    memcpy(p3 + n1, other, (size_t)n_other * sizeof *other);
    n3 = n1 + n_other;
    greedy(c, 1, p3, n3, 2, gen2, &res);
    CHECK(res.n_prompt_reused == n1 && res.n_prompt_forwarded == n_other);
    CHECK(seq_len(c) == n3 + 1);
    ekv_cache_free(c);
    ekv_cache_free(fresh);
}

static void test_cache_ops(void) {
    int32_t toks[64], n, k;
    float *full = new_logits(1), *l1 = new_logits(1), *l2 = new_logits(1);
    ekv_cache *c = new_cache(EKV_CACHE_DYNAMIC, 0), *copy = NULL;
    ekv_cache_stats st = ekv_cache_stats_default();
    section("crop, clone, reset, stats");
    n = tokenize("Edge devices run small language models with a careful cache.", 1, 0, toks, 64);
    OK(ekv_forward(g_model, c, toks, n, NULL, EKV_LOGITS_LAST, full, (size_t)g_vocab));

    OK(ekv_cache_get_stats(c, &st));
    CHECK(st.seq_len == n && st.capacity == -1 && st.tokens_forwarded >= (uint64_t)n);
    /* f16 keys + values for every layer and kv head (the default dtype). */
    CHECK(st.bytes_per_token == 2ull * 2 * g_info.n_layers * g_info.n_kv_heads * g_info.head_dim);
    CHECK(st.used_bytes == st.bytes_per_token * (uint64_t)n);
    CHECK(st.device_bytes + st.host_bytes >= st.used_bytes);

    k = n / 2;
    OK(ekv_cache_crop(c, k));
    CHECK(seq_len(c) == k);
    EXPECT_STATUS(ekv_cache_crop(c, k + 1), EKV_ERR_INVALID_ARGUMENT);
    CHECK(ekv_cache_crop(c, -1) != EKV_OK && seq_len(c) == k);
    OK(ekv_forward(g_model, c, toks + k, n - k, NULL, EKV_LOGITS_LAST, l1, (size_t)g_vocab));
    CHECK(seq_len(c) == n);
    CHECK_CLOSE_ARGMAX(full, l1, 2e-2);

    OK(ekv_cache_clone(c, &copy));
    CHECK(copy != NULL && seq_len(copy) == n);
    OK(ekv_forward(g_model, copy, toks + 1, 1, NULL, EKV_LOGITS_LAST, l2, (size_t)g_vocab));
    CHECK(seq_len(copy) == n + 1 && seq_len(c) == n);
    OK(ekv_forward(g_model, c, toks + 1, 1, NULL, EKV_LOGITS_LAST, l1, (size_t)g_vocab));
    CHECK_CLOSE(l1, l2, (size_t)g_vocab, 1e-5);

    OK(ekv_cache_reset(c));
    OK(ekv_cache_get_stats(c, &st));
    CHECK(st.seq_len == 0 && st.used_bytes == 0);
    OK(ekv_forward(g_model, c, toks, n, NULL, EKV_LOGITS_LAST, l1, (size_t)g_vocab));
    CHECK_CLOSE(full, l1, (size_t)g_vocab, 1e-3);
    free(full);
    free(l1);
    free(l2);
    ekv_cache_free(c);
    ekv_cache_free(copy);
}

static void test_static_cache_limits(void) {
    int32_t toks[256], n, out[32], cap = 0;
    float *l = new_logits(1);
    ekv_generate_params gp = ekv_generate_default_params();
    ekv_generate_result res = ekv_generate_default_result();
    ekv_cache *c = new_cache(EKV_CACHE_STATIC, 16);
    ekv_status st;
    section("static cache: full, overflow");
    n = tokenize("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty twenty-one", 0, 0, toks, 256);
    CHECK(n >= 20);
    OK(ekv_cache_capacity(c, &cap));
    CHECK(cap == 16);
    OK(ekv_forward(g_model, c, toks, 10, NULL, EKV_LOGITS_LAST, l, (size_t)g_vocab));
    EXPECT_STATUS(ekv_forward(g_model, c, toks + 10, 10, NULL, EKV_LOGITS_LAST, l, (size_t)g_vocab),
                  EKV_ERR_CACHE_FULL);
    CHECK(seq_len(c) == 10);
    OK(ekv_forward(g_model, c, toks + 10, 6, NULL, EKV_LOGITS_LAST, l, (size_t)g_vocab));
    CHECK(seq_len(c) == 16);
    EXPECT_STATUS(ekv_forward(g_model, c, toks, 1, NULL, EKV_LOGITS_LAST, l, (size_t)g_vocab), EKV_ERR_CACHE_FULL);
    CHECK(seq_len(c) == 16);

    /* Generation that fills the cache stops with CACHE_FULL. */
    OK(ekv_cache_reset(c));
    gp.max_new_tokens = 30;
    gp.stop_at_eos = 0;
    OK(ekv_generate(g_model, c, toks, 10, &gp, out, 32, &res));
    CHECK(res.stop_reason == EKV_STOP_CACHE_FULL && res.n_generated >= 1 && res.n_generated <= 16 - 10 + 1);
    CHECK(seq_len(c) == 16);

    /* A prompt longer than the cache is refused and the cache kept. */
    OK(ekv_cache_crop(c, 5));
    st = ekv_generate(g_model, c, toks, 20, &gp, out, 32, &res);
    CHECK(st == EKV_ERR_CONTEXT_OVERFLOW || st == EKV_ERR_CACHE_FULL);
    CHECK(seq_len(c) == 5);
    free(l);
    ekv_cache_free(c);
}

static void test_null_and_mismatch(const char *path) {
    ekv_model_params mp = ekv_model_default_params();
    ekv_cache_params cp = ekv_cache_default_params();
    ekv_generate_params gp = ekv_generate_default_params();
    ekv_generate_result res = ekv_generate_default_result();
    ekv_model_info info = ekv_model_info_default();
    ekv_cache_stats stats = ekv_cache_stats_default();
    ekv_cache *c = new_cache(EKV_CACHE_DYNAMIC, 0), *out_c = NULL;
    ekv_model *other = NULL;
    ekv_detokenizer *dt = NULL;
    ekv_chat_message m;
    int32_t t = 1, n = 0, i32 = 0;
    float *l = new_logits(1);
    char buf[64];
    size_t len = 0;
    ekv_cache_type type;
    ekv_backend_kind kind;
    const ekv_status inv = EKV_ERR_INVALID_ARGUMENT;
    section("NULL handles and model mismatch");
    m.role = "user";
    m.content = "hi";
    EXPECT_STATUS(ekv_model_load(NULL, &mp, &other), inv);
    EXPECT_STATUS(ekv_model_load(path, &mp, NULL), inv);
    EXPECT_STATUS(ekv_model_get_info(NULL, &info), inv);
    EXPECT_STATUS(ekv_model_get_info(g_model, NULL), inv);
    EXPECT_STATUS(ekv_model_meta_string(NULL, "general.name", buf, sizeof buf, &len), inv);
    EXPECT_STATUS(ekv_device_count(EKV_BACKEND_CPU, NULL), inv);
    EXPECT_STATUS(ekv_backend_from_name(NULL, &kind), inv);
    EXPECT_STATUS(ekv_cache_type_from_name(NULL, &type), inv);
    EXPECT_STATUS(ekv_cache_create(NULL, &cp, &out_c), inv);
    EXPECT_STATUS(ekv_cache_create(g_model, &cp, NULL), inv);
    EXPECT_STATUS(ekv_cache_get_type(NULL, &type), inv);
    EXPECT_STATUS(ekv_cache_seq_len(NULL, &i32), inv);
    EXPECT_STATUS(ekv_cache_seq_len(c, NULL), inv);
    EXPECT_STATUS(ekv_cache_capacity(NULL, &i32), inv);
    EXPECT_STATUS(ekv_cache_get_stats(NULL, &stats), inv);
    EXPECT_STATUS(ekv_cache_reset(NULL), inv);
    EXPECT_STATUS(ekv_cache_crop(NULL, 0), inv);
    EXPECT_STATUS(ekv_cache_clone(NULL, &out_c), inv);
    EXPECT_STATUS(ekv_cache_clone(c, NULL), inv);
    EXPECT_STATUS(ekv_forward(NULL, c, &t, 1, NULL, EKV_LOGITS_LAST, l, (size_t)g_vocab), inv);
    EXPECT_STATUS(ekv_forward(g_model, c, NULL, 1, NULL, EKV_LOGITS_LAST, l, (size_t)g_vocab), inv);
    EXPECT_STATUS(ekv_forward(g_model, c, &t, 1, NULL, EKV_LOGITS_LAST, NULL, (size_t)g_vocab), inv);
    EXPECT_STATUS(ekv_generate(NULL, c, &t, 1, &gp, &n, 1, &res), inv);
    EXPECT_STATUS(ekv_generate(g_model, c, NULL, 1, &gp, &n, 1, &res), inv);
    EXPECT_STATUS(ekv_generate(g_model, c, &t, 1, &gp, NULL, 1, &res), inv);
    EXPECT_STATUS(ekv_tokenize(NULL, "a", 1, 0, 0, &t, 1, &n), inv);
    EXPECT_STATUS(ekv_tokenize(g_model, NULL, 1, 0, 0, &t, 1, &n), inv);
    EXPECT_STATUS(ekv_token_to_piece(NULL, 1, 0, buf, sizeof buf, &len), inv);
    EXPECT_STATUS(ekv_detokenize(NULL, &t, 1, 0, buf, sizeof buf, &len), inv);
    EXPECT_STATUS(ekv_token_special(NULL, EKV_TOKEN_EOS, &t), inv);
    EXPECT_STATUS(ekv_detokenizer_create(NULL, &dt), inv);
    EXPECT_STATUS(ekv_detokenizer_push(NULL, 1, buf, sizeof buf, &len), inv);
    EXPECT_STATUS(ekv_chat_apply_template(NULL, NULL, &m, 1, 1, buf, sizeof buf, &len), inv);
    EXPECT_STATUS(ekv_chat_apply_template(g_model, NULL, NULL, 1, 1, buf, sizeof buf, &len), inv);
    CHECK(ekv_token_is_eog(NULL, 0) == 0);
    CHECK(seq_len(c) == 0);
    ekv_model_free(NULL);
    ekv_cache_free(NULL);
    ekv_detokenizer_free(NULL);

    /* A cache belongs to the model it was created for. */
    OK(ekv_model_load(path, &mp, &other));
    EXPECT_STATUS(ekv_forward(other, c, &t, 1, NULL, EKV_LOGITS_LAST, l, (size_t)g_vocab), EKV_ERR_MODEL_MISMATCH);
    EXPECT_STATUS(ekv_generate(other, c, &t, 1, &gp, &n, 1, &res), EKV_ERR_MODEL_MISMATCH);
    CHECK(seq_len(c) == 0);
    free(l);
    ekv_model_free(other);
    ekv_cache_free(c);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_PATH [BACKEND]\n", argv[0]);
        return 2;
    }
    test_version_status_devices();
    test_model_load(argv[1], argc > 2 ? argv[2] : NULL);
    test_cache_create();
    test_text();
    test_chat_template();
    test_forward();
    test_generate();
    test_multi_turn_reuse();
    test_cache_ops();
    test_static_cache_limits();
    test_null_and_mismatch(argv[1]);
    ekv_model_free(g_model);
    printf("ALL OK\n");
    return 0;
}
