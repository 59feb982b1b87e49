/*
 * edgekv_jni.c - the JNI layer of the Kotlin binding: one thin C function per
 * call of the public C ABI (sdk/include/edgekv.h), nothing else.
 *
 * Rules this file keeps (each is a bug other LLM bindings shipped):
 *  - Text crosses JNI only as byte arrays holding UTF-8, decoded and encoded
 *    in Kotlin. NewStringUTF/GetStringUTFChars speak *modified* UTF-8 and
 *    mangle emoji, so they are never used.
 *  - No static or global state: no cached JNIEnv, jclass or method id, no
 *    handle table. Handles travel as jlong; every call gets what it needs
 *    from its arguments, so any number of models and caches live in one
 *    process and the library can be loaded by several class loaders.
 *  - A failing call throws dev.edgekv.EdgeKvException built from the status
 *    and ekv_last_error(), read on the same thread right after the failure.
 *  - Callbacks into Kotlin run on the thread that made the call. A Kotlin
 *    exception thrown inside one stops the native work and stays pending:
 *    after it no JNI function but the exception-safe ones is called and the
 *    native method returns at once, so the JVM rethrows it unchanged.
 *  - Lifetimes are not this file's business: the Kotlin classes guarantee
 *    that a handle is never freed while another thread is inside a call on
 *    it (close() waits for or refuses running calls).
 */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgekv.h"

#define EKV_JNI_CLASS "dev/edgekv/Native"
#define EKV_JNI_MAX_BLOCKING_TOKENS (1 << 20)
#define FN(name) Java_dev_edgekv_Native_##name

#define H_MODEL(h) ((ekv_model *)(intptr_t)(h))
#define H_CACHE(h) ((ekv_cache *)(intptr_t)(h))
#define H_CANCEL(h) ((ekv_cancel *)(intptr_t)(h))
#define H_GEN(h) ((ekv_generator *)(intptr_t)(h))
#define TO_HANDLE(p) ((jlong)(intptr_t)(p))

/* ---- errors ------------------------------------------------------------- */

static void throw_named(JNIEnv *env, const char *cls_name, const char *ascii_message) {
    jclass cls;
    if ((*env)->ExceptionCheck(env)) return;
    cls = (*env)->FindClass(env, cls_name);
    if (cls) {
        (*env)->ThrowNew(env, cls, ascii_message);
        (*env)->DeleteLocalRef(env, cls);
    }
}

static void throw_oom(JNIEnv *env, const char *what) { throw_named(env, "java/lang/OutOfMemoryError", what); }

/* Throws EdgeKvException(status, message) with the library's message for the
 * failure that just happened on this thread. Nothing here calls edgekv, so
 * ekv_last_error() stays valid until it is copied. */
static void throw_status(JNIEnv *env, ekv_status status) {
    const char *message = ekv_last_error();
    size_t len = message ? strlen(message) : 0;
    jclass cls;
    jmethodID factory;
    jbyteArray bytes;
    jobject exception;
    if ((*env)->ExceptionCheck(env)) return; /* a Kotlin exception is already on its way */
    bytes = (*env)->NewByteArray(env, (jsize)len);
    if (!bytes) return; /* OutOfMemoryError pending */
    if (len) (*env)->SetByteArrayRegion(env, bytes, 0, (jsize)len, (const jbyte *)message);
    cls = (*env)->FindClass(env, EKV_JNI_CLASS);
    if (!cls) return;
    factory = (*env)->GetStaticMethodID(env, cls, "newException", "(I[B)Ljava/lang/Throwable;");
    if (!factory) return;
    exception = (*env)->CallStaticObjectMethod(env, cls, factory, (jint)status, bytes);
    if ((*env)->ExceptionCheck(env)) return;
    if (exception) (*env)->Throw(env, (jthrowable)exception);
    (*env)->DeleteLocalRef(env, exception);
    (*env)->DeleteLocalRef(env, bytes);
    (*env)->DeleteLocalRef(env, cls);
}

/* ---- conversions ---------------------------------------------------------- */

/* A NUL-terminated malloc'd copy of a byte array (NULL array: NULL, no error). */
static char *copy_cstring(JNIEnv *env, jbyteArray array, size_t *out_len) {
    jsize n;
    char *s;
    if (!array) return NULL;
    n = (*env)->GetArrayLength(env, array);
    s = (char *)malloc((size_t)n + 1);
    if (!s) {
        throw_oom(env, "edgekv: cannot copy a string");
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, array, 0, n, (jbyte *)s);
    s[n] = '\0';
    if (out_len) *out_len = (size_t)n;
    return s;
}

static int32_t *copy_ints(JNIEnv *env, jintArray array, jsize *out_n) {
    jsize n = array ? (*env)->GetArrayLength(env, array) : 0;
    int32_t *v = (int32_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) {
        throw_oom(env, "edgekv: cannot copy token ids");
        return NULL;
    }
    if (n > 0) (*env)->GetIntArrayRegion(env, array, 0, n, (jint *)v);
    *out_n = n;
    return v;
}

static jbyteArray new_bytes(JNIEnv *env, const char *data, size_t len) {
    jbyteArray a = (*env)->NewByteArray(env, (jsize)len);
    if (a && len) (*env)->SetByteArrayRegion(env, a, 0, (jsize)len, (const jbyte *)data);
    return a;
}

static jintArray new_ints(JNIEnv *env, const int32_t *data, jsize n) {
    jintArray a = (*env)->NewIntArray(env, n);
    if (a && n) (*env)->SetIntArrayRegion(env, a, 0, n, (const jint *)data);
    return a;
}

/* An array of byte arrays as NUL-terminated strings; free with free_strings. */
static char **copy_strings(JNIEnv *env, jobjectArray array, jsize *out_n) {
    jsize n = array ? (*env)->GetArrayLength(env, array) : 0, i;
    char **v = (char **)calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    *out_n = 0;
    if (!v) {
        throw_oom(env, "edgekv: cannot copy strings");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        jbyteArray item = (jbyteArray)(*env)->GetObjectArrayElement(env, array, i);
        if ((*env)->ExceptionCheck(env)) break;
        v[i] = copy_cstring(env, item, NULL);
        (*env)->DeleteLocalRef(env, item);
        if (!v[i] && !(*env)->ExceptionCheck(env)) v[i] = (char *)calloc(1, 1);
        if (!v[i]) break;
        *out_n = i + 1;
    }
    return v;
}

static void free_strings(char **v, jsize n) {
    jsize i;
    if (!v) return;
    for (i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ---- library ---------------------------------------------------------------- */

JNIEXPORT jbyteArray JNICALL FN(version)(JNIEnv *env, jclass cls) {
    const char *v = ekv_version();
    (void)cls;
    return new_bytes(env, v, strlen(v));
}

JNIEXPORT jint JNICALL FN(versionNumber)(JNIEnv *env, jclass cls) {
    (void)env;
    (void)cls;
    return ekv_version_number();
}

JNIEXPORT jbyteArray JNICALL FN(statusString)(JNIEnv *env, jclass cls, jint status) {
    const char *s = ekv_status_string((ekv_status)status);
    (void)cls;
    return new_bytes(env, s, strlen(s));
}

JNIEXPORT jboolean JNICALL FN(backendAvailable)(JNIEnv *env, jclass cls, jint kind) {
    (void)env;
    (void)cls;
    return ekv_backend_available((ekv_backend_kind)kind) ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jint JNICALL FN(deviceCount)(JNIEnv *env, jclass cls, jint kind) {
    int32_t n = 0;
    ekv_status st = ekv_device_count((ekv_backend_kind)kind, &n);
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
    return n;
}

/* nums: backend, index, device_memory_bytes, unified_memory, n_threads. */
JNIEXPORT jbyteArray JNICALL FN(deviceInfo)(JNIEnv *env, jclass cls, jint kind, jint index, jlongArray nums) {
    ekv_device_info info = ekv_device_info_default();
    jlong out[5];
    ekv_status st = ekv_device_get_info((ekv_backend_kind)kind, index, &info);
    (void)cls;
    if (st != EKV_OK) {
        throw_status(env, st);
        return NULL;
    }
    out[0] = info.backend;
    out[1] = info.index;
    out[2] = (jlong)info.device_memory_bytes;
    out[3] = info.unified_memory;
    out[4] = info.n_threads;
    (*env)->SetLongArrayRegion(env, nums, 0, 5, out);
    return new_bytes(env, info.name, strnlen(info.name, sizeof info.name));
}

/* ---- stop requests ------------------------------------------------------------ */

JNIEXPORT jlong JNICALL FN(cancelCreate)(JNIEnv *env, jclass cls) {
    ekv_cancel *c = NULL;
    ekv_status st = ekv_cancel_create(&c);
    (void)cls;
    if (st != EKV_OK) {
        throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(c);
}

JNIEXPORT void JNICALL FN(cancelTrigger)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    ekv_cancel_trigger(H_CANCEL(h));
}

JNIEXPORT void JNICALL FN(cancelReset)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    ekv_cancel_reset(H_CANCEL(h));
}

JNIEXPORT jboolean JNICALL FN(cancelIsTriggered)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    return ekv_cancel_is_triggered(H_CANCEL(h)) ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT void JNICALL FN(cancelFree)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    ekv_cancel_free(H_CANCEL(h));
}

/* ---- models --------------------------------------------------------------------- */

/* The load's progress goes to listener.onProgress(F)Z on the loading thread. */
typedef struct progress_ctx {
    JavaVM *vm;
    JNIEnv *env;
    jobject listener;
    jmethodID on_progress;
} progress_ctx;

static int progress_trampoline(float progress, void *user_data) {
    progress_ctx *c = (progress_ctx *)user_data;
    JNIEnv *env = NULL;
    jboolean go;
    /* Only the thread that called load may call into the JVM here. */
    if ((*c->vm)->GetEnv(c->vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK || env != c->env) return 1;
    if ((*env)->ExceptionCheck(env)) return 0;
    go = (*env)->CallBooleanMethod(env, c->listener, c->on_progress, (jfloat)progress);
    if ((*env)->ExceptionCheck(env)) return 0;
    return go ? 1 : 0;
}

JNIEXPORT jlong JNICALL FN(modelLoad)(JNIEnv *env, jclass cls, jbyteArray path, jint backend, jint device_index,
                                      jint n_threads, jboolean int8_activations, jlong cancel, jobject listener,
                                      jlong memory_budget_bytes) {
    ekv_model_params mp = ekv_model_default_params();
    ekv_model *model = NULL;
    progress_ctx ctx;
    ekv_status st;
    char *cpath;
    (void)cls;
    cpath = copy_cstring(env, path, NULL);
    if (!cpath) return 0;
    mp.backend = (ekv_backend_kind)backend;
    mp.device_index = device_index;
    mp.n_threads = n_threads;
    mp.int8_activations = int8_activations ? 1 : 0;
    mp.memory_budget_bytes = (uint64_t)memory_budget_bytes;
    mp.cancel = H_CANCEL(cancel);
    if (listener) {
        jclass lcls = (*env)->GetObjectClass(env, listener);
        memset(&ctx, 0, sizeof ctx);
        if ((*env)->GetJavaVM(env, &ctx.vm) != 0) {
            free(cpath);
            throw_named(env, "java/lang/IllegalStateException", "edgekv: GetJavaVM failed");
            return 0;
        }
        ctx.env = env;
        ctx.listener = listener;
        ctx.on_progress = (*env)->GetMethodID(env, lcls, "onProgress", "(F)Z");
        (*env)->DeleteLocalRef(env, lcls);
        if (!ctx.on_progress) {
            free(cpath);
            return 0;
        }
        mp.progress = progress_trampoline;
        mp.progress_user_data = &ctx;
    }
    st = ekv_model_load(cpath, &mp, &model);
    free(cpath);
    if ((*env)->ExceptionCheck(env)) { /* the listener threw: rethrown unchanged */
        ekv_model_free(model);
        return 0;
    }
    if (st != EKV_OK) {
        throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(model);
}

JNIEXPORT void JNICALL FN(modelFree)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    ekv_model_free(H_MODEL(h));
}

/* nums (16): n_layers, n_heads, n_kv_heads, head_dim, n_embd, n_ff,
 * context_length, n_vocab, n_params, weight_bytes, backend, natural_cache,
 * n_sliding_layers, sliding_window, n_recurrent_layers, decode_weight_bytes. strs (3):
 * architecture, name, device. */
JNIEXPORT void JNICALL FN(modelInfo)(JNIEnv *env, jclass cls, jlong h, jlongArray nums, jobjectArray strs) {
    ekv_model_info info = ekv_model_info_default();
    jlong v[16];
    const char *s[3];
    size_t cap[3];
    int i;
    ekv_status st = ekv_model_get_info(H_MODEL(h), &info);
    (void)cls;
    if (st != EKV_OK) {
        throw_status(env, st);
        return;
    }
    v[0] = info.n_layers;
    v[1] = info.n_heads;
    v[2] = info.n_kv_heads;
    v[3] = info.head_dim;
    v[4] = info.n_embd;
    v[5] = info.n_ff;
    v[6] = info.context_length;
    v[7] = info.n_vocab;
    v[8] = (jlong)info.n_params;
    v[9] = (jlong)info.weight_bytes;
    v[10] = info.backend;
    v[11] = info.natural_cache;
    v[12] = info.n_sliding_layers;
    v[13] = info.sliding_window;
    v[14] = info.n_recurrent_layers;
    v[15] = (jlong)info.decode_weight_bytes;
    (*env)->SetLongArrayRegion(env, nums, 0, 16, v);
    s[0] = info.architecture;
    cap[0] = sizeof info.architecture;
    s[1] = info.name;
    cap[1] = sizeof info.name;
    s[2] = info.device;
    cap[2] = sizeof info.device;
    for (i = 0; i < 3; i++) {
        jbyteArray b = new_bytes(env, s[i], strnlen(s[i], cap[i]));
        if (!b) return;
        (*env)->SetObjectArrayElement(env, strs, i, b);
        (*env)->DeleteLocalRef(env, b);
    }
}

JNIEXPORT jbyteArray JNICALL FN(modelMetaString)(JNIEnv *env, jclass cls, jlong h, jbyteArray key) {
    char small[256], *buf = small, *ckey;
    size_t len = 0;
    ekv_status st;
    jbyteArray out = NULL;
    (void)cls;
    ckey = copy_cstring(env, key, NULL);
    if (!ckey) return NULL;
    st = ekv_model_meta_string(H_MODEL(h), ckey, small, sizeof small, &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        buf = (char *)malloc(len + 1);
        if (!buf) {
            free(ckey);
            throw_oom(env, "edgekv: metadata value");
            return NULL;
        }
        st = ekv_model_meta_string(H_MODEL(h), ckey, buf, len + 1, &len);
    }
    if (st != EKV_OK) throw_status(env, st);
    else out = new_bytes(env, buf, len);
    if (buf != small) free(buf);
    free(ckey);
    return out;
}

/* ---- text -------------------------------------------------------------------------- */

JNIEXPORT jintArray JNICALL FN(tokenize)(JNIEnv *env, jclass cls, jlong h, jbyteArray text, jboolean add_special,
                                         jboolean parse_special) {
    size_t len = 0;
    char *ctext = copy_cstring(env, text, &len);
    int32_t cap, n = 0, *tokens;
    ekv_status st;
    jintArray out = NULL;
    (void)cls;
    if (!ctext) return NULL;
    cap = (int32_t)(len < 0x7ffffff0 ? len + 16 : 0x7ffffff0);
    tokens = (int32_t *)malloc((size_t)cap * sizeof *tokens);
    if (!tokens) {
        free(ctext);
        throw_oom(env, "edgekv: token buffer");
        return NULL;
    }
    st = ekv_tokenize(H_MODEL(h), ctext, len, add_special, parse_special, tokens, cap, &n);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && n > cap) {
        int32_t *grown = (int32_t *)realloc(tokens, (size_t)n * sizeof *tokens);
        if (!grown) {
            free(tokens);
            free(ctext);
            throw_oom(env, "edgekv: token buffer");
            return NULL;
        }
        tokens = grown;
        cap = n;
        st = ekv_tokenize(H_MODEL(h), ctext, len, add_special, parse_special, tokens, cap, &n);
    }
    if (st != EKV_OK) throw_status(env, st);
    else out = new_ints(env, tokens, n);
    free(tokens);
    free(ctext);
    return out;
}

JNIEXPORT jbyteArray JNICALL FN(detokenize)(JNIEnv *env, jclass cls, jlong h, jintArray tokens,
                                            jboolean skip_special) {
    jsize n = 0;
    int32_t *ids = copy_ints(env, tokens, &n);
    char small[1024], *buf = small;
    size_t len = 0;
    ekv_status st;
    jbyteArray out = NULL;
    (void)cls;
    if (!ids) return NULL;
    st = ekv_detokenize(H_MODEL(h), ids, n, skip_special, small, sizeof small, &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        buf = (char *)malloc(len + 1);
        if (!buf) {
            free(ids);
            throw_oom(env, "edgekv: text buffer");
            return NULL;
        }
        st = ekv_detokenize(H_MODEL(h), ids, n, skip_special, buf, len + 1, &len);
    }
    if (st != EKV_OK) throw_status(env, st);
    else out = new_bytes(env, buf, len);
    if (buf != small) free(buf);
    free(ids);
    return out;
}

JNIEXPORT jbyteArray JNICALL FN(tokenToPiece)(JNIEnv *env, jclass cls, jlong h, jint token, jboolean special) {
    char small[256], *buf = small;
    size_t len = 0;
    ekv_status st;
    jbyteArray out = NULL;
    (void)cls;
    st = ekv_token_to_piece(H_MODEL(h), token, special, small, sizeof small, &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        buf = (char *)malloc(len + 1);
        if (!buf) {
            throw_oom(env, "edgekv: piece buffer");
            return NULL;
        }
        st = ekv_token_to_piece(H_MODEL(h), token, special, buf, len + 1, &len);
    }
    if (st != EKV_OK) throw_status(env, st);
    else out = new_bytes(env, buf, len);
    if (buf != small) free(buf);
    return out;
}

JNIEXPORT jint JNICALL FN(tokenSpecial)(JNIEnv *env, jclass cls, jlong h, jint which) {
    int32_t id = -1;
    ekv_status st = ekv_token_special(H_MODEL(h), (ekv_special_token)which, &id);
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
    return id;
}

JNIEXPORT jboolean JNICALL FN(tokenIsEog)(JNIEnv *env, jclass cls, jlong h, jint token) {
    (void)env;
    (void)cls;
    return ekv_token_is_eog(H_MODEL(h), token) ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jbyteArray JNICALL FN(chatApplyTemplate)(JNIEnv *env, jclass cls, jlong h, jbyteArray template_name,
                                                   jobjectArray roles, jobjectArray contents,
                                                   jboolean add_generation_prompt) {
    jsize n_roles = 0, n_contents = 0, i;
    char **r = NULL, **c = NULL, *tmpl = NULL, *buf = NULL;
    ekv_chat_message *msgs = NULL;
    size_t cap = 1024, len = 0;
    ekv_status st;
    jbyteArray out = NULL;
    (void)cls;
    if (template_name) {
        tmpl = copy_cstring(env, template_name, NULL);
        if (!tmpl) goto done;
    }
    r = copy_strings(env, roles, &n_roles);
    if (!r || (*env)->ExceptionCheck(env)) goto done;
    c = copy_strings(env, contents, &n_contents);
    if (!c || (*env)->ExceptionCheck(env)) goto done;
    if (n_roles != n_contents) {
        throw_named(env, "java/lang/IllegalArgumentException", "edgekv: roles and contents differ in length");
        goto done;
    }
    msgs = (ekv_chat_message *)calloc((size_t)(n_roles > 0 ? n_roles : 1), sizeof *msgs);
    if (!msgs) {
        throw_oom(env, "edgekv: chat messages");
        goto done;
    }
    for (i = 0; i < n_roles; i++) {
        msgs[i].role = r[i];
        msgs[i].content = c[i];
        cap += strlen(c[i]) + 64;
    }
    buf = (char *)malloc(cap);
    if (!buf) {
        throw_oom(env, "edgekv: chat text");
        goto done;
    }
    st = ekv_chat_apply_template(H_MODEL(h), tmpl, msgs, (size_t)n_roles, add_generation_prompt, buf, cap, &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        char *grown = (char *)realloc(buf, len + 1);
        if (!grown) {
            throw_oom(env, "edgekv: chat text");
            goto done;
        }
        buf = grown;
        st = ekv_chat_apply_template(H_MODEL(h), tmpl, msgs, (size_t)n_roles, add_generation_prompt, buf, len + 1,
                                     &len);
    }
    if (st != EKV_OK) throw_status(env, st);
    else out = new_bytes(env, buf, len);
done:
    free(buf);
    free(msgs);
    free_strings(r, n_roles);
    free_strings(c, n_contents);
    free(tmpl);
    return out;
}

/* ---- caches ------------------------------------------------------------------------ */

/* params (10): type, max_cache_len, dtype, window_length, num_sink_tokens,
 * nbits, q_group_size, residual_length, offload. */
static void cache_params_from(const jint *v, ekv_cache_params *p) {
    p->type = (ekv_cache_type)v[0];
    p->max_cache_len = v[1];
    p->dtype = (ekv_kv_dtype)v[2];
    p->window_length = v[3];
    p->num_sink_tokens = v[4];
    p->nbits = v[5];
    p->q_group_size = v[6];
    p->residual_length = v[7];
    p->offload = (ekv_placement)v[8];
}

JNIEXPORT void JNICALL FN(cacheParamsDefaults)(JNIEnv *env, jclass cls, jintArray out) {
    ekv_cache_params p = ekv_cache_default_params();
    jint v[9];
    (void)cls;
    v[0] = p.type;
    v[1] = p.max_cache_len;
    v[2] = p.dtype;
    v[3] = p.window_length;
    v[4] = p.num_sink_tokens;
    v[5] = p.nbits;
    v[6] = p.q_group_size;
    v[7] = p.residual_length;
    v[8] = p.offload;
    (*env)->SetIntArrayRegion(env, out, 0, 9, v);
}

JNIEXPORT jlong JNICALL FN(cacheCreate)(JNIEnv *env, jclass cls, jlong model, jintArray params,
                                        jlong memory_budget_bytes) {
    ekv_cache_params p = ekv_cache_default_params();
    ekv_cache *cache = NULL;
    jint v[9];
    ekv_status st;
    (void)cls;
    (*env)->GetIntArrayRegion(env, params, 0, 9, v);
    if ((*env)->ExceptionCheck(env)) return 0;
    cache_params_from(v, &p);
    p.memory_budget_bytes = (uint64_t)memory_budget_bytes;
    st = ekv_cache_create(H_MODEL(model), &p, &cache);
    if (st != EKV_OK) {
        throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(cache);
}

/* ekv_cache_plan (index -1) or ekv_cache_plan_candidate (index >= 0) with
 * params (9 ints, as cacheCreate) and the budget. config (9 ints) gets the
 * configuration, nums (12) tokens_held, capacity, max_tokens, device_bytes,
 * host_bytes, bytes when full, fits, n_candidates, candidate_index,
 * chosen_index, the configuration's budget, and the status (0, or
 * EKV_ERR_OUT_OF_MEMORY when nothing fits: not thrown, the candidates are
 * still there). Returns the reason (UTF-8). */
JNIEXPORT jbyteArray JNICALL FN(cachePlan)(JNIEnv *env, jclass cls, jlong model, jintArray params,
                                           jlong memory_budget_bytes, jint context, jint index, jintArray config,
                                           jlongArray nums) {
    ekv_cache_params p = ekv_cache_default_params(), chosen = ekv_cache_default_params();
    ekv_cache_plan_result r = ekv_cache_plan_result_default();
    jint v[9];
    jlong n[12];
    ekv_status st;
    (void)cls;
    (*env)->GetIntArrayRegion(env, params, 0, 9, v);
    if ((*env)->ExceptionCheck(env)) return NULL;
    cache_params_from(v, &p);
    p.memory_budget_bytes = (uint64_t)memory_budget_bytes;
    st = index < 0 ? ekv_cache_plan(H_MODEL(model), &p, context, &chosen, &r)
                   : ekv_cache_plan_candidate(H_MODEL(model), &p, context, index, &chosen, &r);
    if (st != EKV_OK && !(st == EKV_ERR_OUT_OF_MEMORY && index < 0 && r.n_candidates > 0)) {
        throw_status(env, st);
        return NULL;
    }
    v[0] = chosen.type;
    v[1] = chosen.max_cache_len;
    v[2] = chosen.dtype;
    v[3] = chosen.window_length;
    v[4] = chosen.num_sink_tokens;
    v[5] = chosen.nbits;
    v[6] = chosen.q_group_size;
    v[7] = chosen.residual_length;
    v[8] = chosen.offload;
    (*env)->SetIntArrayRegion(env, config, 0, 9, v);
    n[0] = r.tokens_held;
    n[1] = r.capacity;
    n[2] = r.max_tokens;
    n[3] = (jlong)r.device_bytes;
    n[4] = (jlong)r.host_bytes;
    n[5] = (jlong)(r.capacity_device_bytes + r.capacity_host_bytes);
    n[6] = r.fits;
    n[7] = r.n_candidates;
    n[8] = r.candidate_index;
    n[9] = r.chosen_index;
    n[10] = (jlong)chosen.memory_budget_bytes;
    n[11] = st;
    (*env)->SetLongArrayRegion(env, nums, 0, 12, n);
    if ((*env)->ExceptionCheck(env)) return NULL;
    {
        size_t len = 0;
        while (len < sizeof r.reason && r.reason[len]) ++len;
        return new_bytes(env, r.reason, len);
    }
}

JNIEXPORT void JNICALL FN(cacheFree)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    ekv_cache_free(H_CACHE(h));
}

JNIEXPORT void JNICALL FN(cacheSetCancel)(JNIEnv *env, jclass cls, jlong h, jlong cancel) {
    ekv_status st = ekv_cache_set_cancel(H_CACHE(h), H_CANCEL(cancel));
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
}

JNIEXPORT jint JNICALL FN(cacheType)(JNIEnv *env, jclass cls, jlong h) {
    ekv_cache_type t = EKV_CACHE_AUTO;
    ekv_status st = ekv_cache_get_type(H_CACHE(h), &t);
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
    return (jint)t;
}

JNIEXPORT jint JNICALL FN(cacheSeqLen)(JNIEnv *env, jclass cls, jlong h) {
    int32_t n = 0;
    ekv_status st = ekv_cache_seq_len(H_CACHE(h), &n);
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
    return n;
}

JNIEXPORT jint JNICALL FN(cacheCapacity)(JNIEnv *env, jclass cls, jlong h) {
    int32_t n = 0;
    ekv_status st = ekv_cache_capacity(H_CACHE(h), &n);
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
    return n;
}

/* out (8): seq_len, capacity, device_bytes, host_bytes, used_bytes,
 * bytes_per_token, tokens_forwarded, tokens_held. */
JNIEXPORT void JNICALL FN(cacheStats)(JNIEnv *env, jclass cls, jlong h, jlongArray out) {
    ekv_cache_stats s = ekv_cache_stats_default();
    jlong v[8];
    ekv_status st = ekv_cache_get_stats(H_CACHE(h), &s);
    (void)cls;
    if (st != EKV_OK) {
        throw_status(env, st);
        return;
    }
    v[0] = s.seq_len;
    v[1] = s.capacity;
    v[2] = (jlong)s.device_bytes;
    v[3] = (jlong)s.host_bytes;
    v[4] = (jlong)s.used_bytes;
    v[5] = (jlong)s.bytes_per_token;
    v[6] = (jlong)s.tokens_forwarded;
    v[7] = s.tokens_held;
    (*env)->SetLongArrayRegion(env, out, 0, 8, v);
}

JNIEXPORT void JNICALL FN(cacheReset)(JNIEnv *env, jclass cls, jlong h) {
    ekv_status st = ekv_cache_reset(H_CACHE(h));
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
}

JNIEXPORT void JNICALL FN(cacheCrop)(JNIEnv *env, jclass cls, jlong h, jint new_len) {
    ekv_status st = ekv_cache_crop(H_CACHE(h), new_len);
    (void)cls;
    if (st != EKV_OK) throw_status(env, st);
}

JNIEXPORT jlong JNICALL FN(cacheClone)(JNIEnv *env, jclass cls, jlong h) {
    ekv_cache *out = NULL;
    ekv_status st = ekv_cache_clone(H_CACHE(h), &out);
    (void)cls;
    if (st != EKV_OK) {
        throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(out);
}

JNIEXPORT void JNICALL FN(cacheSave)(JNIEnv *env, jclass cls, jlong h, jbyteArray path) {
    char *cpath = copy_cstring(env, path, NULL);
    ekv_status st;
    (void)cls;
    if (!cpath) return;
    st = ekv_cache_save(H_CACHE(h), cpath);
    free(cpath);
    if (st != EKV_OK) throw_status(env, st);
}

JNIEXPORT jlong JNICALL FN(cacheLoad)(JNIEnv *env, jclass cls, jlong model, jbyteArray path) {
    char *cpath = copy_cstring(env, path, NULL);
    ekv_cache *out = NULL;
    ekv_status st;
    (void)cls;
    if (!cpath) return 0;
    st = ekv_cache_load(H_MODEL(model), cpath, &out);
    free(cpath);
    if (st != EKV_OK) {
        throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(out);
}

/* ---- forward --------------------------------------------------------------------------- */

JNIEXPORT jfloatArray JNICALL FN(forward)(JNIEnv *env, jclass cls, jlong model, jlong cache, jintArray tokens,
                                          jintArray positions, jint mode, jint n_vocab) {
    jsize n = 0, n_pos = 0;
    int32_t *ids = NULL, *pos = NULL;
    float *logits = NULL;
    size_t n_logits;
    ekv_status st;
    jfloatArray out = NULL;
    (void)cls;
    ids = copy_ints(env, tokens, &n);
    if (!ids) return NULL;
    if (positions) {
        pos = copy_ints(env, positions, &n_pos);
        if (!pos) goto done;
        if (n_pos != n) {
            throw_named(env, "java/lang/IllegalArgumentException",
                        "edgekv: cachePosition must hold one position per token");
            goto done;
        }
    }
    n_logits = (size_t)n_vocab * (mode == EKV_LOGITS_ALL ? (size_t)(n > 0 ? n : 1) : 1);
    if (n_logits > 0x7fffffff) {
        throw_named(env, "java/lang/IllegalArgumentException", "edgekv: too many logits for one Java array");
        goto done;
    }
    logits = (float *)malloc(n_logits * sizeof *logits + 1);
    if (!logits) {
        throw_oom(env, "edgekv: logits");
        goto done;
    }
    st = ekv_forward(H_MODEL(model), H_CACHE(cache), ids, n, pos, (ekv_logits_mode)mode, logits, n_logits);
    if (st != EKV_OK) {
        throw_status(env, st);
        goto done;
    }
    out = (*env)->NewFloatArray(env, (jsize)n_logits);
    if (out) (*env)->SetFloatArrayRegion(env, out, 0, (jsize)n_logits, logits);
done:
    free(logits);
    free(pos);
    free(ids);
    return out;
}

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
    free_strings(a->stop_strings, a->n_stop_strings);
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
    a->prompt = copy_ints(env, prompt, &a->n_prompt);
    if (!a->prompt) return 0;
    if (stop_tokens) {
        a->stop_tokens = copy_ints(env, stop_tokens, &a->n_stop_tokens);
        if (!a->stop_tokens) return 0;
        a->gp.stop_tokens = a->stop_tokens;
        a->gp.n_stop_tokens = a->n_stop_tokens;
    }
    if (stop_strings) {
        a->stop_strings = copy_strings(env, stop_strings, &a->n_stop_strings);
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
    bytes = new_bytes(env, piece, len);
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
        throw_oom(env, "edgekv: output tokens");
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
        throw_status(env, st);
        goto done;
    }
    put_result(env, &res, longs, doubles);
    result = new_ints(env, out, res.n_generated);
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
    if (st != EKV_OK) throw_status(env, st);
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
            throw_oom(env, "edgekv: event text");
            return NULL;
        }
        st = ekv_generator_next(H_GEN(h), &ev, buf, ev.text_len + 1);
    }
    if (st != EKV_OK) {
        throw_status(env, st);
    } else {
        v[0] = ev.type;
        v[1] = ev.token;
        v[2] = ev.stop_reason;
        (*env)->SetIntArrayRegion(env, event, 0, 3, v);
        out = new_bytes(env, buf, ev.text_len);
    }
    if (buf != small) free(buf);
    return out;
}

JNIEXPORT void JNICALL FN(generatorResult)(JNIEnv *env, jclass cls, jlong h, jlongArray longs, jdoubleArray doubles) {
    ekv_generate_result r = ekv_generate_default_result();
    ekv_status st = ekv_generator_get_result(H_GEN(h), &r);
    (void)cls;
    if (st != EKV_OK) {
        throw_status(env, st);
        return;
    }
    put_result(env, &r, longs, doubles);
}

JNIEXPORT void JNICALL FN(generatorFree)(JNIEnv *env, jclass cls, jlong h) {
    (void)env;
    (void)cls;
    ekv_generator_free(H_GEN(h));
}
