/* jni_generate.c - JNI layer: generation, blocking and step by step. Rules and layout: jni_common.h. */
#include "jni_common.h"

/* ---- generation ------------------------------------------------------------------------- */

/* Generation params travel as ints (max_new_tokens, top_k, repetition_last_n,
 * stop_at_eos, use_cache), floats (temperature, top_p, min_p,
 * repetition_penalty), the seed, stop tokens and stop strings. */
JNIEXPORT void JNICALL FN(generateParamsDefaults)(JNIEnv *env, jclass cls, jintArray ints, jfloatArray floats) {
    ekv_generate_params p = ekv_generate_default_params();
    jint iv[5];
    jfloat fv[4];
    (void)cls;
    iv[0] = p.max_new_tokens;
    iv[1] = p.top_k;
    iv[2] = p.repetition_last_n;
    iv[3] = p.stop_at_eos;
    iv[4] = p.use_cache;
    fv[0] = p.temperature;
    fv[1] = p.top_p;
    fv[2] = p.min_p;
    fv[3] = p.repetition_penalty;
    (*env)->SetIntArrayRegion(env, ints, 0, 5, iv);
    (*env)->SetFloatArrayRegion(env, floats, 0, 4, fv);
}

typedef struct gen_args {
    ekv_generate_params gp;
    int32_t *prompt;
    jsize n_prompt;
    int32_t *stop_tokens;
    jsize n_stop_tokens;
    char **stop_strings;
    jsize n_stop_strings;
} gen_args;

static void gen_args_free(gen_args *a) {
    free(a->prompt);
    free(a->stop_tokens);
    jni_free_strings(a->stop_strings, a->n_stop_strings);
}

static int gen_args_read(JNIEnv *env, gen_args *a, jintArray prompt, jintArray ints, jfloatArray floats, jlong seed,
                         jintArray stop_tokens, jobjectArray stop_strings, jlong cancel) {
    jint iv[5];
    jfloat fv[4];
    memset(a, 0, sizeof *a);
    a->gp = ekv_generate_default_params();
    (*env)->GetIntArrayRegion(env, ints, 0, 5, iv);
    (*env)->GetFloatArrayRegion(env, floats, 0, 4, fv);
    if ((*env)->ExceptionCheck(env)) return 0;
    a->gp.max_new_tokens = iv[0];
    a->gp.top_k = iv[1];
    a->gp.repetition_last_n = iv[2];
    a->gp.stop_at_eos = iv[3];
    a->gp.use_cache = iv[4];
    a->gp.temperature = fv[0];
    a->gp.top_p = fv[1];
    a->gp.min_p = fv[2];
    a->gp.repetition_penalty = fv[3];
    a->gp.seed = (uint64_t)seed;
    a->gp.cancel = H_CANCEL(cancel);
    a->prompt = jni_copy_ints(env, prompt, &a->n_prompt);
    if (!a->prompt) return 0;
    if (stop_tokens) {
        a->stop_tokens = jni_copy_ints(env, stop_tokens, &a->n_stop_tokens);
        if (!a->stop_tokens) return 0;
        a->gp.stop_tokens = a->stop_tokens;
        a->gp.n_stop_tokens = a->n_stop_tokens;
    }
    if (stop_strings) {
        a->stop_strings = jni_copy_strings(env, stop_strings, &a->n_stop_strings);
        if (!a->stop_strings || (*env)->ExceptionCheck(env)) return 0;
        a->gp.stop_strings = (const char *const *)a->stop_strings;
        a->gp.n_stop_strings = a->n_stop_strings;
    }
    return 1;
}

/* Result: longs (n_generated, n_prompt_tokens, n_prompt_reused,
 * n_prompt_forwarded, n_forwarded, stop_reason), doubles (prefill_seconds,
 * decode_seconds). */
static void put_result(JNIEnv *env, const ekv_generate_result *r, jlongArray longs, jdoubleArray doubles) {
    jlong lv[6];
    jdouble dv[2];
    lv[0] = r->n_generated;
    lv[1] = r->n_prompt_tokens;
    lv[2] = r->n_prompt_reused;
    lv[3] = r->n_prompt_forwarded;
    lv[4] = r->n_forwarded;
    lv[5] = r->stop_reason;
    dv[0] = r->prefill_seconds;
    dv[1] = r->decode_seconds;
    (*env)->SetLongArrayRegion(env, longs, 0, 6, lv);
    (*env)->SetDoubleArrayRegion(env, doubles, 0, 2, dv);
}

/* Each non-empty piece goes to sink.onPiece(I[B)Z on the calling thread. */
typedef struct piece_ctx {
    JNIEnv *env;
    jobject sink;
    jmethodID on_piece;
    int failed; /* a Kotlin exception is pending: no more JNI calls */
} piece_ctx;

static int piece_trampoline(int32_t token, const char *piece, size_t len, void *user_data) {
    piece_ctx *c = (piece_ctx *)user_data;
    JNIEnv *env = c->env;
    jbyteArray bytes;
    jboolean go;
    if (c->failed) return 0;
    if (len == 0) return 1;
    bytes = jni_new_bytes(env, piece, len);
    if (!bytes) {
        c->failed = 1;
        return 0;
    }
    go = (*env)->CallBooleanMethod(env, c->sink, c->on_piece, (jint)token, bytes);
    if ((*env)->ExceptionCheck(env)) {
        (*env)->DeleteLocalRef(env, bytes);
        c->failed = 1;
        return 0;
    }
    (*env)->DeleteLocalRef(env, bytes);
    return go ? 1 : 0;
}

/* Blocking generation (ekv_generate). Returns the generated ids; a stop
 * request is not an error here (stop reason CANCELLED in the result). */
JNIEXPORT jintArray JNICALL FN(generate)(JNIEnv *env, jclass cls, jlong model, jlong cache, jintArray prompt,
                                         jintArray ints, jfloatArray floats, jlong seed, jintArray stop_tokens,
                                         jobjectArray stop_strings, jlong cancel, jobject sink, jlongArray longs,
                                         jdoubleArray doubles) {
    gen_args a;
    piece_ctx ctx;
    ekv_generate_result res = ekv_generate_default_result();
    int32_t *out = NULL, cap;
    ekv_status st;
    jintArray result = NULL;
    (void)cls;
    if (!gen_args_read(env, &a, prompt, ints, floats, seed, stop_tokens, stop_strings, cancel)) goto done;
    /* ekv_generate stops when out_tokens is full: one blocking call makes at
     * most EKV_JNI_MAX_BLOCKING_TOKENS tokens (a stream has no such bound). */
    cap = a.gp.max_new_tokens > 0 ? a.gp.max_new_tokens : 0;
    if (cap > EKV_JNI_MAX_BLOCKING_TOKENS) cap = EKV_JNI_MAX_BLOCKING_TOKENS;
    out = (int32_t *)malloc((size_t)(cap > 0 ? cap : 1) * sizeof *out);
    if (!out) {
        jni_throw_oom(env, "edgekv: output tokens");
        goto done;
    }
    memset(&ctx, 0, sizeof ctx);
    if (sink) {
        jclass scls = (*env)->GetObjectClass(env, sink);
        ctx.env = env;
        ctx.sink = sink;
        ctx.on_piece = (*env)->GetMethodID(env, scls, "onPiece", "(I[B)Z");
        (*env)->DeleteLocalRef(env, scls);
        if (!ctx.on_piece) goto done;
        a.gp.on_token = piece_trampoline;
        a.gp.user_data = &ctx;
    }
    st = ekv_generate(H_MODEL(model), H_CACHE(cache), a.prompt, a.n_prompt, &a.gp, out, cap, &res);
    if (ctx.failed) goto done; /* the callback's exception propagates unchanged */
    if (st != EKV_OK && st != EKV_ERR_CANCELLED) {
        jni_throw_status(env, st);
        goto done;
    }
    put_result(env, &res, longs, doubles);
    result = jni_new_ints(env, out, res.n_generated);
done:
    free(out);
    gen_args_free(&a);
    return result;
}

JNIEXPORT jlong JNICALL FN(generatorCreate)(JNIEnv *env, jclass cls, jlong model, jlong cache, jintArray prompt,
                                            jintArray ints, jfloatArray floats, jlong seed, jintArray stop_tokens,
                                            jobjectArray stop_strings, jlong cancel) {
    gen_args a;
    ekv_generator *gen = NULL;
    ekv_status st;
    (void)cls;
    if (!gen_args_read(env, &a, prompt, ints, floats, seed, stop_tokens, stop_strings, cancel)) {
        gen_args_free(&a);
        return 0;
    }
    /* The generator copies the prompt, stop tokens and stop strings. */
    st = ekv_generator_create(H_MODEL(model), H_CACHE(cache), a.prompt, a.n_prompt, &a.gp, &gen);
    if (st != EKV_OK) jni_throw_status(env, st);
    gen_args_free(&a);
    return TO_HANDLE(gen);
}

/* One event: returns its text; event (3) gets type, token, stop_reason. */
JNIEXPORT jbyteArray JNICALL FN(generatorNext)(JNIEnv *env, jclass cls, jlong h, jintArray event) {
    ekv_generator_event ev = ekv_generator_event_default();
    char small[512], *buf = small;
    jint v[3];
    ekv_status st;
    jbyteArray out = NULL;
    (void)cls;
    st = ekv_generator_next(H_GEN(h), &ev, small, sizeof small);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        /* The event is kept: the next call returns it without computing. */
        buf = (char *)malloc(ev.text_len + 1);
        if (!buf) {
            jni_throw_oom(env, "edgekv: event text");
            return NULL;
        }
        st = ekv_generator_next(H_GEN(h), &ev, buf, ev.text_len + 1);
    }
    if (st != EKV_OK) {
        jni_throw_status(env, st);
    } else {
        v[0] = ev.type;
        v[1] = ev.token;
        v[2] = ev.stop_reason;
        (*env)->SetIntArrayRegion(env, event, 0, 3, v);
        out = jni_new_bytes(env, buf, ev.text_len);
    }
    if (buf != small) free(buf);
    return out;
}

JNIEXPORT void JNICALL FN(generatorResult)(JNIEnv *env, jclass cls, jlong h, jlongArray longs, jdoubleArray doubles) {
    ekv_generate_result r = ekv_generate_default_result();
    ekv_status st = ekv_generator_get_result(H_GEN(h), &r);
    (void)cls;
    if (st != EKV_OK) {
        jni_throw_status(env, st);
        return;
    }
    put_result(env, &r, longs, doubles);
}

JNIEXPORT void JNICALL FN(generatorFree)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    ekv_generator_free(H_GEN(h));
}
