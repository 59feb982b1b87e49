/* jni_cache.c - JNI layer: caches and forward. Rules and layout: jni_common.h. */
#include "jni_common.h"

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

/* The reverse of cache_params_from, into out (9 ints). */
static void cache_params_to(JNIEnv *env, const ekv_cache_params *p, jintArray out) {
    jint v[9];
    v[0] = p->type;
    v[1] = p->max_cache_len;
    v[2] = p->dtype;
    v[3] = p->window_length;
    v[4] = p->num_sink_tokens;
    v[5] = p->nbits;
    v[6] = p->q_group_size;
    v[7] = p->residual_length;
    v[8] = p->offload;
    (*env)->SetIntArrayRegion(env, out, 0, 9, v);
}

JNIEXPORT void JNICALL FN(cacheParamsDefaults)(JNIEnv *env, jclass cls, jintArray out) {
    ekv_cache_params p = ekv_cache_default_params();
    (void)cls;
    cache_params_to(env, &p, out);
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
        jni_throw_status(env, st);
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
        jni_throw_status(env, st);
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
        return jni_new_bytes(env, r.reason, len);
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
    if (st != EKV_OK) jni_throw_status(env, st);
}

JNIEXPORT jint JNICALL FN(cacheType)(JNIEnv *env, jclass cls, jlong h) {
    ekv_cache_type t = EKV_CACHE_AUTO;
    ekv_status st = ekv_cache_get_type(H_CACHE(h), &t);
    (void)cls;
    if (st != EKV_OK) jni_throw_status(env, st);
    return (jint)t;
}

JNIEXPORT jint JNICALL FN(cacheSeqLen)(JNIEnv *env, jclass cls, jlong h) {
    int32_t n = 0;
    ekv_status st = ekv_cache_seq_len(H_CACHE(h), &n);
    (void)cls;
    if (st != EKV_OK) jni_throw_status(env, st);
    return n;
}

JNIEXPORT jint JNICALL FN(cacheCapacity)(JNIEnv *env, jclass cls, jlong h) {
    int32_t n = 0;
    ekv_status st = ekv_cache_capacity(H_CACHE(h), &n);
    (void)cls;
    if (st != EKV_OK) jni_throw_status(env, st);
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
        jni_throw_status(env, st);
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
    if (st != EKV_OK) jni_throw_status(env, st);
}

JNIEXPORT void JNICALL FN(cacheCrop)(JNIEnv *env, jclass cls, jlong h, jint new_len) {
    ekv_status st = ekv_cache_crop(H_CACHE(h), new_len);
    (void)cls;
    if (st != EKV_OK) jni_throw_status(env, st);
}

JNIEXPORT jlong JNICALL FN(cacheClone)(JNIEnv *env, jclass cls, jlong h) {
    ekv_cache *out = NULL;
    ekv_status st = ekv_cache_clone(H_CACHE(h), &out);
    (void)cls;
    if (st != EKV_OK) {
        jni_throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(out);
}

JNIEXPORT void JNICALL FN(cacheSave)(JNIEnv *env, jclass cls, jlong h, jbyteArray path) {
    char *cpath = jni_copy_cstring(env, path, NULL);
    ekv_status st;
    (void)cls;
    if (!cpath) return;
    st = ekv_cache_save(H_CACHE(h), cpath);
    free(cpath);
    if (st != EKV_OK) jni_throw_status(env, st);
}

JNIEXPORT jlong JNICALL FN(cacheLoad)(JNIEnv *env, jclass cls, jlong model, jbyteArray path) {
    char *cpath = jni_copy_cstring(env, path, NULL);
    ekv_cache *out = NULL;
    ekv_status st;
    (void)cls;
    if (!cpath) return 0;
    st = ekv_cache_load(H_MODEL(model), cpath, &out);
    free(cpath);
    if (st != EKV_OK) {
        jni_throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(out);
}

/* The bytes ekv_cache_save would write, as a byte array. */
JNIEXPORT jbyteArray JNICALL FN(cacheSaveToBytes)(JNIEnv *env, jclass cls, jlong h) {
    size_t len = 0;
    char *buf;
    jbyteArray out;
    ekv_status st = ekv_cache_save_to_memory(H_CACHE(h), NULL, 0, &len);
    (void)cls;
    if (st != EKV_OK && st != EKV_ERR_BUFFER_TOO_SMALL) {
        jni_throw_status(env, st);
        return NULL;
    }
    if (len > (size_t)0x7fffffff) {
        jni_throw_named(env, "java/lang/IllegalStateException", "edgekv: the cache's bytes exceed a Java array (2 GiB)");
        return NULL;
    }
    buf = (char *)malloc(len ? len : 1);
    if (!buf) {
        jni_throw_oom(env, "edgekv: cannot hold the cache's bytes");
        return NULL;
    }
    /* The cache is the caller's alone (the Kotlin Cache serialises calls),
     * so the size cannot change between the two calls. */
    st = ekv_cache_save_to_memory(H_CACHE(h), buf, len, &len);
    if (st != EKV_OK) {
        free(buf);
        jni_throw_status(env, st);
        return NULL;
    }
    out = jni_new_bytes(env, buf, len);
    free(buf);
    return out;
}

JNIEXPORT jlong JNICALL FN(cacheLoadFromBytes)(JNIEnv *env, jclass cls, jlong model, jbyteArray data) {
    ekv_cache *out = NULL;
    jsize n = (*env)->GetArrayLength(env, data);
    jbyte *bytes = (*env)->GetByteArrayElements(env, data, NULL);
    ekv_status st;
    (void)cls;
    if (!bytes) return 0; /* OutOfMemoryError pending */
    st = ekv_cache_load_from_memory(H_MODEL(model), bytes, (size_t)n, &out);
    (*env)->ReleaseByteArrayElements(env, data, bytes, JNI_ABORT);
    if (st != EKV_OK) {
        jni_throw_status(env, st);
        return 0;
    }
    return TO_HANDLE(out);
}

/* The cache's parameters (9 ints as cacheCreate takes them, then the memory
 * budget in budget[0]): what AUTO chose, or what a loaded file said. */
JNIEXPORT void JNICALL FN(cacheGetParams)(JNIEnv *env, jclass cls, jlong h, jintArray out, jlongArray budget) {
    ekv_cache_params p = ekv_cache_default_params();
    jlong b;
    ekv_status st = ekv_cache_get_params(H_CACHE(h), &p);
    (void)cls;
    if (st != EKV_OK) {
        jni_throw_status(env, st);
        return;
    }
    b = (jlong)p.memory_budget_bytes;
    cache_params_to(env, &p, out);
    (*env)->SetLongArrayRegion(env, budget, 0, 1, &b);
}

/* ---- forward --------------------------------------------------------------------------- */

/* cancel (0: none) is the call's own stop request (ekv_forward_params):
 * whatever is attached to the cache stays attached. */
JNIEXPORT jfloatArray JNICALL FN(forward)(JNIEnv *env, jclass cls, jlong model, jlong cache, jintArray tokens,
                                          jintArray positions, jint mode, jint n_vocab, jlong cancel) {
    ekv_forward_params fp = ekv_forward_default_params();
    jsize n = 0, n_pos = 0;
    int32_t *ids = NULL, *pos = NULL;
    float *logits = NULL;
    size_t n_logits;
    ekv_status st;
    jfloatArray out = NULL;
    (void)cls;
    ids = jni_copy_ints(env, tokens, &n);
    if (!ids) return NULL;
    if (positions) {
        pos = jni_copy_ints(env, positions, &n_pos);
        if (!pos) goto done;
        if (n_pos != n) {
            jni_throw_named(env, "java/lang/IllegalArgumentException",
                        "edgekv: cachePosition must hold one position per token");
            goto done;
        }
    }
    n_logits = (size_t)n_vocab * (mode == EKV_LOGITS_ALL ? (size_t)(n > 0 ? n : 1) : 1);
    if (n_logits > 0x7fffffff) {
        jni_throw_named(env, "java/lang/IllegalArgumentException", "edgekv: too many logits for one Java array");
        goto done;
    }
    logits = (float *)malloc(n_logits * sizeof *logits + 1);
    if (!logits) {
        jni_throw_oom(env, "edgekv: logits");
        goto done;
    }
    fp.cancel = H_CANCEL(cancel);
    st = ekv_forward_ex(H_MODEL(model), H_CACHE(cache), ids, n, pos, (ekv_logits_mode)mode, logits, n_logits, &fp);
    if (st != EKV_OK) {
        jni_throw_status(env, st);
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
