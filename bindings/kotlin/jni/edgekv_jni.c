/* edgekv_jni.c - JNI layer: library, stop requests, models and text. Rules and layout: jni_common.h. */
#include "jni_common.h"

/* ---- library ---------------------------------------------------------------- */

JNIEXPORT jbyteArray JNICALL FN(version)(JNIEnv *env, jclass cls) {
    const char *v = ekv_version();
    (void)cls;
    return jni_new_bytes(env, v, strlen(v));
}

JNIEXPORT jint JNICALL FN(versionNumber)(JNIEnv *env, jclass cls) {
    (void)env;
    (void)cls;
    return ekv_version_number();
}

JNIEXPORT jbyteArray JNICALL FN(statusString)(JNIEnv *env, jclass cls, jint status) {
    const char *s = ekv_status_string((ekv_status)status);
    (void)cls;
    return jni_new_bytes(env, s, strlen(s));
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
    if (st != EKV_OK) jni_throw_status(env, st);
    return n;
}

/* nums: backend, index, device_memory_bytes, unified_memory, n_threads. */
JNIEXPORT jbyteArray JNICALL FN(deviceInfo)(JNIEnv *env, jclass cls, jint kind, jint index, jlongArray nums) {
    ekv_device_info info = ekv_device_info_default();
    jlong out[5];
    ekv_status st = ekv_device_get_info((ekv_backend_kind)kind, index, &info);
    (void)cls;
    if (st != EKV_OK) {
        jni_throw_status(env, st);
        return NULL;
    }
    out[0] = info.backend;
    out[1] = info.index;
    out[2] = (jlong)info.device_memory_bytes;
    out[3] = info.unified_memory;
    out[4] = info.n_threads;
    (*env)->SetLongArrayRegion(env, nums, 0, 5, out);
    return jni_new_bytes(env, info.name, strnlen(info.name, sizeof info.name));
}

/* ---- stop requests ------------------------------------------------------------ */

JNIEXPORT jlong JNICALL FN(cancelCreate)(JNIEnv *env, jclass cls) {
    ekv_cancel *c = NULL;
    ekv_status st = ekv_cancel_create(&c);
    (void)cls;
    if (st != EKV_OK) {
        jni_throw_status(env, st);
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

/* The model comes from path when it is not null, else from the direct
 * ByteBuffer buffer (bytes [position, limit), which the Kotlin Model keeps
 * reachable for the native model's life), else from bytes [offset,
 * offset + length) of the descriptor fd. */
JNIEXPORT jlong JNICALL FN(modelLoad)(JNIEnv *env, jclass cls, jbyteArray path, jobject buffer, jint fd,
                                      jlong offset, jlong length, jint backend, jint device_index,
                                      jint n_threads, jboolean int8_activations, jlong cancel, jobject listener,
                                      jlong memory_budget_bytes) {
    ekv_model_params mp = ekv_model_default_params();
    ekv_model *model = NULL;
    progress_ctx ctx;
    ekv_status st;
    char *cpath = NULL;
    const char *bytes = NULL;
    jlong n_bytes = 0;
    (void)cls;
    if (path) {
        cpath = jni_copy_cstring(env, path, NULL);
        if (!cpath) return 0;
    } else if (buffer) {
        bytes = (const char *)(*env)->GetDirectBufferAddress(env, buffer);
        n_bytes = (*env)->GetDirectBufferCapacity(env, buffer);
        if (!bytes || n_bytes < 0) {
            jni_throw_named(env, "java/lang/IllegalArgumentException", "edgekv: the model buffer is not a direct ByteBuffer");
            return 0;
        }
        /* the Kotlin side passes the view [position, limit) as offset, length */
        if (offset < 0 || length < 0 || offset > n_bytes || length > n_bytes - offset) {
            jni_throw_named(env, "java/lang/IllegalArgumentException", "edgekv: the model's range is outside the buffer");
            return 0;
        }
        bytes += offset;
        n_bytes = length;
    } else if (offset < 0 || length < 0) {
        jni_throw_named(env, "java/lang/IllegalArgumentException", "edgekv: negative descriptor offset or length");
        return 0;
    }
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
            jni_throw_named(env, "java/lang/IllegalStateException", "edgekv: GetJavaVM failed");
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
    if (cpath) {
        st = ekv_model_load(cpath, &mp, &model);
        free(cpath);
    } else if (bytes) {
        st = ekv_model_load_from_memory(bytes, (size_t)n_bytes, &mp, &model);
    } else {
        st = ekv_model_load_from_fd(fd, (uint64_t)offset, (uint64_t)length, &mp, &model);
    }
    if ((*env)->ExceptionCheck(env)) { /* the listener threw: rethrown unchanged */
        ekv_model_free(model);
        return 0;
    }
    if (st != EKV_OK) {
        jni_throw_status(env, st);
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
        jni_throw_status(env, st);
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
        jbyteArray b = jni_new_bytes(env, s[i], strnlen(s[i], cap[i]));
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
    ckey = jni_copy_cstring(env, key, NULL);
    if (!ckey) return NULL;
    st = ekv_model_meta_string(H_MODEL(h), ckey, small, sizeof small, &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        buf = (char *)malloc(len + 1);
        if (!buf) {
            free(ckey);
            jni_throw_oom(env, "edgekv: metadata value");
            return NULL;
        }
        st = ekv_model_meta_string(H_MODEL(h), ckey, buf, len + 1, &len);
    }
    if (st != EKV_OK) jni_throw_status(env, st);
    else out = jni_new_bytes(env, buf, len);
    if (buf != small) free(buf);
    free(ckey);
    return out;
}

/* ---- text -------------------------------------------------------------------------- */

JNIEXPORT jintArray JNICALL FN(tokenize)(JNIEnv *env, jclass cls, jlong h, jbyteArray text, jboolean add_special,
                                         jboolean parse_special) {
    size_t len = 0;
    char *ctext = jni_copy_cstring(env, text, &len);
    int32_t cap, n = 0, *tokens;
    ekv_status st;
    jintArray out = NULL;
    (void)cls;
    if (!ctext) return NULL;
    cap = (int32_t)(len < 0x7ffffff0 ? len + 16 : 0x7ffffff0);
    tokens = (int32_t *)malloc((size_t)cap * sizeof *tokens);
    if (!tokens) {
        free(ctext);
        jni_throw_oom(env, "edgekv: token buffer");
        return NULL;
    }
    st = ekv_tokenize(H_MODEL(h), ctext, len, add_special, parse_special, tokens, cap, &n);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && n > cap) {
        int32_t *grown = (int32_t *)realloc(tokens, (size_t)n * sizeof *tokens);
        if (!grown) {
            free(tokens);
            free(ctext);
            jni_throw_oom(env, "edgekv: token buffer");
            return NULL;
        }
        tokens = grown;
        cap = n;
        st = ekv_tokenize(H_MODEL(h), ctext, len, add_special, parse_special, tokens, cap, &n);
    }
    if (st != EKV_OK) jni_throw_status(env, st);
    else out = jni_new_ints(env, tokens, n);
    free(tokens);
    free(ctext);
    return out;
}

JNIEXPORT jbyteArray JNICALL FN(detokenize)(JNIEnv *env, jclass cls, jlong h, jintArray tokens,
                                            jboolean skip_special) {
    jsize n = 0;
    int32_t *ids = jni_copy_ints(env, tokens, &n);
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
            jni_throw_oom(env, "edgekv: text buffer");
            return NULL;
        }
        st = ekv_detokenize(H_MODEL(h), ids, n, skip_special, buf, len + 1, &len);
    }
    if (st != EKV_OK) jni_throw_status(env, st);
    else out = jni_new_bytes(env, buf, len);
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
            jni_throw_oom(env, "edgekv: piece buffer");
            return NULL;
        }
        st = ekv_token_to_piece(H_MODEL(h), token, special, buf, len + 1, &len);
    }
    if (st != EKV_OK) jni_throw_status(env, st);
    else out = jni_new_bytes(env, buf, len);
    if (buf != small) free(buf);
    return out;
}

JNIEXPORT jint JNICALL FN(tokenSpecial)(JNIEnv *env, jclass cls, jlong h, jint which) {
    int32_t id = -1;
    ekv_status st = ekv_token_special(H_MODEL(h), (ekv_special_token)which, &id);
    (void)cls;
    if (st != EKV_OK) jni_throw_status(env, st);
    return id;
}

JNIEXPORT jboolean JNICALL FN(tokenIsEog)(JNIEnv *env, jclass cls, jlong h, jint token) {
    (void)env;
    (void)cls;
    return ekv_token_is_eog(H_MODEL(h), token) ? JNI_TRUE : JNI_FALSE;
}

/* A conversation from Java: the template name (or NULL) and the messages,
 * copied to C strings that chat_free() releases. */
typedef struct chat_args {
    char *tmpl;
    char **roles, **contents;
    jsize n_roles, n_contents;
    ekv_chat_message *msgs;
    size_t text_bytes; /* the contents' length, for a first buffer size */
} chat_args;

static void chat_free(chat_args *a) {
    free(a->msgs);
    jni_free_strings(a->roles, a->n_roles);
    jni_free_strings(a->contents, a->n_contents);
    free(a->tmpl);
}

/* 0 with a pending Java exception on failure. */
static int chat_copy(JNIEnv *env, jbyteArray template_name, jobjectArray roles, jobjectArray contents, chat_args *a) {
    jsize i;
    memset(a, 0, sizeof *a);
    if (template_name) {
        a->tmpl = jni_copy_cstring(env, template_name, NULL);
        if (!a->tmpl) return 0;
    }
    a->roles = jni_copy_strings(env, roles, &a->n_roles);
    if (!a->roles || (*env)->ExceptionCheck(env)) return 0;
    a->contents = jni_copy_strings(env, contents, &a->n_contents);
    if (!a->contents || (*env)->ExceptionCheck(env)) return 0;
    if (a->n_roles != a->n_contents) {
        jni_throw_named(env, "java/lang/IllegalArgumentException", "edgekv: roles and contents differ in length");
        return 0;
    }
    a->msgs = (ekv_chat_message *)calloc((size_t)(a->n_roles > 0 ? a->n_roles : 1), sizeof *a->msgs);
    if (!a->msgs) {
        jni_throw_oom(env, "edgekv: chat messages");
        return 0;
    }
    for (i = 0; i < a->n_roles; i++) {
        a->msgs[i].role = a->roles[i];
        a->msgs[i].content = a->contents[i];
        a->text_bytes += strlen(a->contents[i]) + strlen(a->roles[i]);
    }
    return 1;
}

JNIEXPORT jbyteArray JNICALL FN(chatApplyTemplate)(JNIEnv *env, jclass cls, jlong h, jbyteArray template_name,
                                                   jobjectArray roles, jobjectArray contents,
                                                   jboolean add_generation_prompt) {
    chat_args a;
    char *buf = NULL;
    size_t cap, len = 0;
    ekv_status st;
    jbyteArray out = NULL;
    (void)cls;
    if (!chat_copy(env, template_name, roles, contents, &a)) goto done;
    cap = 1024 + a.text_bytes + 64 * (size_t)a.n_roles;
    buf = (char *)malloc(cap);
    if (!buf) {
        jni_throw_oom(env, "edgekv: chat text");
        goto done;
    }
    st = ekv_chat_apply_template(H_MODEL(h), a.tmpl, a.msgs, (size_t)a.n_roles, add_generation_prompt, buf, cap,
                                 &len);
    if (st == EKV_ERR_BUFFER_TOO_SMALL) {
        char *grown = (char *)realloc(buf, len + 1);
        if (!grown) {
            jni_throw_oom(env, "edgekv: chat text");
            goto done;
        }
        buf = grown;
        st = ekv_chat_apply_template(H_MODEL(h), a.tmpl, a.msgs, (size_t)a.n_roles, add_generation_prompt, buf,
                                     len + 1, &len);
    }
    if (st != EKV_OK) jni_throw_status(env, st);
    else out = jni_new_bytes(env, buf, len);
done:
    free(buf);
    chat_free(&a);
    return out;
}

/* The conversation's ids: the template's markers as control tokens, the
 * messages as text (ekv_chat_tokenize). */
JNIEXPORT jintArray JNICALL FN(chatTokenize)(JNIEnv *env, jclass cls, jlong h, jbyteArray template_name,
                                             jobjectArray roles, jobjectArray contents,
                                             jboolean add_generation_prompt) {
    chat_args a;
    int32_t *tokens = NULL, cap, n = 0;
    ekv_status st;
    jintArray out = NULL;
    (void)cls;
    if (!chat_copy(env, template_name, roles, contents, &a)) goto done;
    cap = (int32_t)(a.text_bytes < 0x7ffff000 ? a.text_bytes + 256 : 0x7ffffff0);
    tokens = (int32_t *)malloc((size_t)cap * sizeof *tokens);
    if (!tokens) {
        jni_throw_oom(env, "edgekv: token buffer");
        goto done;
    }
    st = ekv_chat_tokenize(H_MODEL(h), a.tmpl, a.msgs, (size_t)a.n_roles, add_generation_prompt, tokens, cap, &n);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && n > cap) {
        int32_t *grown = (int32_t *)realloc(tokens, (size_t)n * sizeof *tokens);
        if (!grown) {
            jni_throw_oom(env, "edgekv: token buffer");
            goto done;
        }
        tokens = grown;
        st = ekv_chat_tokenize(H_MODEL(h), a.tmpl, a.msgs, (size_t)a.n_roles, add_generation_prompt, tokens, n, &n);
    }
    if (st != EKV_OK) jni_throw_status(env, st);
    else out = jni_new_ints(env, tokens, n);
done:
    free(tokens);
    chat_free(&a);
    return out;
}
