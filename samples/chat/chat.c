/*
 * chat - multi-turn chat over the edgekv C API, in plain C.
 *
 *   chat --model FILE [--backend NAME] [--cache TYPE] [--max-cache-len N]
 *        [--threads N] [--system TEXT] [--max-new-tokens N] [--temperature T]
 *        [--seed S] [--prompt TEXT]...
 *
 * Without --prompt it reads one user line per turn from stdin and streams the
 * answer; an empty line or EOF quits. With --prompt (repeatable) it runs those
 * turns and exits.
 *
 * The point of the sample: ONE ekv_cache lives across turns. Each turn the
 * whole conversation is rendered again with the chat template and tokenized;
 * ekv_generate matches that prompt against the tokens the cache already holds
 * and only computes the new suffix (see the per-turn stats on stderr).
 */
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgekv.h"

/* ---- small helpers ------------------------------------------------------ */

static volatile sig_atomic_t g_interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

static char *copy_string(const char *s, size_t len) {
    char *p = (char *)malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* Reads one line of any length (without the newline); NULL on EOF. */
static char *read_line(FILE *f) {
    size_t cap = 256, len = 0;
    char *buf = (char *)malloc(cap);
    int c;
    if (!buf) return NULL;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        if (len + 1 >= cap) {
            char *grown = (char *)realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        buf[len++] = (char)c;
    }
    if (c == EOF && len == 0) {
        free(buf);
        return NULL;
    }
    if (len > 0 && buf[len - 1] == '\r') len--;
    buf[len] = '\0';
    return buf;
}

static int report(ekv_status st, const char *what) {
    /* Copy the details before any other edgekv call overwrites them. */
    const char *details = ekv_last_error();
    char saved[1024];
    strncpy(saved, details, sizeof saved - 1);
    saved[sizeof saved - 1] = '\0';
    fprintf(stderr, "chat: %s: %s%s%s\n", what, ekv_status_string(st), saved[0] ? ": " : "", saved);
    return 1;
}

/* ---- conversation -------------------------------------------------------- */

typedef struct conversation {
    ekv_chat_message *messages; /* role: static strings; content: owned */
    size_t n, cap;
} conversation;

static int conversation_add(conversation *c, const char *role, const char *content, size_t len) {
    char *copy;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        ekv_chat_message *grown = (ekv_chat_message *)realloc(c->messages, cap * sizeof *grown);
        if (!grown) return 0;
        c->messages = grown;
        c->cap = cap;
    }
    copy = copy_string(content, len);
    if (!copy) return 0;
    c->messages[c->n].role = role;
    c->messages[c->n].content = copy;
    c->n++;
    return 1;
}

/* Drops messages from index `keep` on. */
static void conversation_truncate(conversation *c, size_t keep) {
    while (c->n > keep) free((void *)c->messages[--c->n].content);
}

static void conversation_free(conversation *c) {
    conversation_truncate(c, 0);
    free(c->messages);
}

/* The conversation's token ids with a generation prompt, into a malloc'd
 * array: the template's markers as control tokens (BOS included), what the
 * user typed as text even if it spells "<|im_end|>". */
static ekv_status tokenize_chat(const ekv_model *model, const conversation *c, int32_t **out, int32_t *n) {
    size_t i, guess = 256;
    int32_t cap, *tokens;
    ekv_status st;
    for (i = 0; i < c->n; i++) guess += strlen(c->messages[i].content) + 16;
    cap = guess > INT32_MAX ? INT32_MAX : (int32_t)guess;
    tokens = (int32_t *)malloc((size_t)cap * sizeof *tokens);
    if (!tokens) return EKV_ERR_OUT_OF_MEMORY;
    st = ekv_chat_tokenize(model, NULL, c->messages, c->n, 1, tokens, cap, n);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && *n > cap) {
        int32_t *grown = (int32_t *)realloc(tokens, (size_t)*n * sizeof *tokens);
        if (!grown) {
            free(tokens);
            return EKV_ERR_OUT_OF_MEMORY;
        }
        tokens = grown;
        st = ekv_chat_tokenize(model, NULL, c->messages, c->n, 1, tokens, *n, n);
    }
    if (st != EKV_OK) {
        free(tokens);
        return st;
    }
    *out = tokens;
    return EKV_OK;
}

/* ---- one turn -------------------------------------------------------------- */

typedef struct chat_state {
    ekv_model *model;
    ekv_cache *cache;
    ekv_generate_params gp;
    int32_t *answer;        /* generated ids, gp.max_new_tokens of room */
    char *answer_text;      /* detokenized answer */
    size_t answer_text_cap;
    conversation conv;
    size_t n_fixed;         /* leading messages kept on a context reset (system) */
    int turn;
} chat_state;

static int stream_piece(int32_t token, const char *piece, size_t len, void *user_data) {
    (void)token;
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return g_interrupted ? 0 : 1;
}

static ekv_status generate_answer(chat_state *s, ekv_generate_result *res) {
    int32_t *prompt = NULL, n_prompt = 0;
    ekv_status st = tokenize_chat(s->model, &s->conv, &prompt, &n_prompt);
    if (st != EKV_OK) return st;
    *res = ekv_generate_default_result();
    /* Ctrl-C stops the answer (not the program) while generating only, so it
     * still quits at the input prompt. */
    g_interrupted = 0;
    signal(SIGINT, on_sigint);
    st = ekv_generate(s->model, s->cache, prompt, n_prompt, &s->gp, s->answer, s->gp.max_new_tokens, res);
    signal(SIGINT, SIG_DFL);
    free(prompt);
    return st;
}

static ekv_status answer_text(chat_state *s, int32_t n, size_t *len) {
    ekv_status st = ekv_detokenize(s->model, s->answer, n, 1, s->answer_text, s->answer_text_cap, len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        char *grown = (char *)realloc(s->answer_text, *len + 1);
        if (!grown) return EKV_ERR_OUT_OF_MEMORY;
        s->answer_text = grown;
        s->answer_text_cap = *len + 1;
        st = ekv_detokenize(s->model, s->answer, n, 1, s->answer_text, s->answer_text_cap, len);
    }
    return st;
}

/* Why an answer ended, when it is not the model's own end of turn. */
static const char *stop_note(ekv_stop_reason r) {
    switch (r) {
    case EKV_STOP_MAX_TOKENS: return " | stopped: --max-new-tokens";
    case EKV_STOP_CANCELLED: return " | stopped: cancelled";
    case EKV_STOP_CACHE_FULL: return " | stopped: cache full";
    default: return "";
    }
}

/* Runs one user turn. Returns 0 on success, 1 on a library error. */
static int run_turn(chat_state *s, const char *user) {
    ekv_generate_result res;
    ekv_status st;
    size_t len = 0;
    int32_t seq_len = 0;
    double prefill_tps, decode_tps;

    if (!conversation_add(&s->conv, "user", user, strlen(user))) return report(EKV_ERR_OUT_OF_MEMORY, "adding message");
    s->turn++;
    st = generate_answer(s, &res);
    if (st == EKV_ERR_CONTEXT_OVERFLOW || st == EKV_ERR_CACHE_FULL) {
        /* Conversation outgrew the cache: keep the system message and this
         * user turn, start over with an empty cache. */
        fprintf(stderr, "[context full: starting a new conversation]\n");
        conversation_truncate(&s->conv, s->n_fixed);
        if (!conversation_add(&s->conv, "user", user, strlen(user)))
            return report(EKV_ERR_OUT_OF_MEMORY, "adding message");
        st = ekv_cache_reset(s->cache);
        if (st != EKV_OK) return report(st, "resetting the cache");
        st = generate_answer(s, &res);
    }
    fputc('\n', stdout);
    if (st != EKV_OK) return report(st, "generating");

    st = answer_text(s, res.n_generated, &len);
    if (st != EKV_OK) return report(st, "detokenizing");
    if (!conversation_add(&s->conv, "assistant", s->answer_text, len))
        return report(EKV_ERR_OUT_OF_MEMORY, "adding message");

    ekv_cache_seq_len(s->cache, &seq_len);
    prefill_tps = res.prefill_seconds > 0 ? res.n_prompt_forwarded / res.prefill_seconds : 0.0;
    decode_tps = res.decode_seconds > 0 && res.n_generated > 1 ? (res.n_generated - 1) / res.decode_seconds : 0.0;
    fprintf(stderr,
            "[turn %d: prompt %d tok, reused %d, forwarded %d (%.1f tok/s) | answer %d tok (%.1f tok/s) | "
            "cache holds %d tok%s]\n",
            s->turn, res.n_prompt_tokens, res.n_prompt_reused, res.n_prompt_forwarded, prefill_tps, res.n_generated,
            decode_tps, seq_len, stop_note(res.stop_reason));
    return 0;
}

/* ---- arguments ------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: chat --model FILE [options]\n"
            "  --model FILE          GGUF file or Hugging Face model directory (required)\n"
            "  --backend NAME        cpu, vulkan, cuda or auto (default auto)\n"
            "  --cache TYPE          cache type (default auto)\n"
            "  --max-cache-len N     capacity of fixed-size caches\n"
            "  --threads N           CPU threads (default: all cores)\n"
            "  --system TEXT         system message\n"
            "  --max-new-tokens N    longest answer (default 256)\n"
            "  --temperature T       0 = greedy (default 0)\n"
            "  --seed S              sampling seed (default 0)\n"
            "  --prompt TEXT         run this user turn non-interactively (repeatable)\n"
            "Interactive mode: one line per turn; an empty line or EOF quits.\n");
}

static int parse_long(const char *text, long min, long max, long *out) {
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < min || v > max) return 0;
    *out = v;
    return 1;
}

static int parse_double(const char *text, double min, double max, double *out) {
    char *end = NULL;
    double v = strtod(text, &end);
    if (!*text || *end || !(v >= min && v <= max)) return 0;
    *out = v;
    return 1;
}

static int parse_seed(const char *text, unsigned long *out) {
    char *end = NULL;
    unsigned long v = strtoul(text, &end, 10);
    if (!*text || *text == '-' || *end) return 0;
    *out = v;
    return 1;
}

typedef struct options {
    const char *model, *backend, *cache, *system;
    long max_cache_len, threads, max_new_tokens;
    double temperature;
    unsigned long seed;
    const char **prompts;
    int n_prompts;
} options;

/* Returns -1 to go on, else the exit code. */
static int parse_options(int argc, char **argv, options *o) {
    int i;
    o->max_new_tokens = 256;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "chat: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--cache")) o->cache = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "--prompt")) o->prompts[o->n_prompts++] = v;
        else if (!strcmp(a, "--max-cache-len")) ok = parse_long(v, 0, 2147483647L, &o->max_cache_len);
        else if (!strcmp(a, "--threads")) ok = parse_long(v, 0, 4096, &o->threads);
        else if (!strcmp(a, "--max-new-tokens")) ok = parse_long(v, 1, 1L << 20, &o->max_new_tokens);
        else if (!strcmp(a, "--temperature")) ok = parse_double(v, 0.0, 1e6, &o->temperature);
        else if (!strcmp(a, "--seed")) ok = parse_seed(v, &o->seed);
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "chat: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!o->model) {
        fprintf(stderr, "chat: --model is required\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv) {
    options o;
    chat_state s;
    ekv_model_params mp = ekv_model_default_params();
    ekv_cache_params cp = ekv_cache_default_params();
    ekv_status st;
    int rc = 0, i;

    memset(&o, 0, sizeof o);
    memset(&s, 0, sizeof s);
    o.prompts = (const char **)calloc((size_t)argc, sizeof *o.prompts);
    if (!o.prompts) return 1;
    rc = parse_options(argc, argv, &o);
    if (rc >= 0) {
        free((void *)o.prompts);
        return rc;
    }
    rc = 0;

    if (o.backend && ekv_backend_from_name(o.backend, &mp.backend) != EKV_OK) {
        fprintf(stderr, "chat: unknown backend '%s'\n", o.backend);
        free((void *)o.prompts);
        return 2;
    }
    if (o.cache && ekv_cache_type_from_name(o.cache, &cp.type) != EKV_OK) {
        fprintf(stderr, "chat: unknown cache type '%s'\n", o.cache);
        free((void *)o.prompts);
        return 2;
    }
    mp.n_threads = (int32_t)o.threads;
    cp.max_cache_len = (int32_t)o.max_cache_len;

    st = ekv_model_load(o.model, &mp, &s.model);
    if (st != EKV_OK) {
        rc = report(st, "loading the model");
        goto done;
    }
    {
        /* Say where it runs: backend auto picks a GPU when the build has one. */
        ekv_model_info info = ekv_model_info_default();
        if (ekv_model_get_info(s.model, &info) == EKV_OK)
            fprintf(stderr, "chat: %s on %s (backend %s)\n", info.name[0] ? info.name : info.architecture,
                    info.device, ekv_backend_name(info.backend));
    }
    st = ekv_cache_create(s.model, &cp, &s.cache);
    if (st != EKV_OK) {
        rc = report(st, "creating the cache");
        goto done;
    }
    s.gp = ekv_generate_default_params();
    s.gp.max_new_tokens = (int32_t)o.max_new_tokens;
    s.gp.temperature = (float)o.temperature;
    s.gp.seed = o.seed;
    s.gp.on_token = stream_piece;
    s.answer = (int32_t *)malloc((size_t)o.max_new_tokens * sizeof *s.answer);
    s.answer_text_cap = 4096;
    s.answer_text = (char *)malloc(s.answer_text_cap);
    if (!s.answer || !s.answer_text) {
        rc = report(EKV_ERR_OUT_OF_MEMORY, "allocating buffers");
        goto done;
    }
    if (o.system) {
        if (!conversation_add(&s.conv, "system", o.system, strlen(o.system))) {
            rc = report(EKV_ERR_OUT_OF_MEMORY, "adding message");
            goto done;
        }
        s.n_fixed = 1;
    }

    if (o.n_prompts > 0) {
        for (i = 0; i < o.n_prompts && rc == 0; i++) {
            printf("> %s\n", o.prompts[i]);
            rc = run_turn(&s, o.prompts[i]);
        }
    } else {
        for (;;) {
            char *line;
            printf("> ");
            fflush(stdout);
            line = read_line(stdin);
            if (!line || !line[0]) {
                if (!line) putchar('\n'); /* EOF: end the prompt line */
                free(line);
                break;
            }
            rc = run_turn(&s, line);
            free(line);
            if (rc) break;
        }
    }

done:
    conversation_free(&s.conv);
    free(s.answer);
    free(s.answer_text);
    free((void *)o.prompts);
    ekv_cache_free(s.cache);
    ekv_model_free(s.model);
    return rc;
}
