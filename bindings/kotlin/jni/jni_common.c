/* jni_common.c - errors thrown into Kotlin and array conversions of the JNI layer. Rules and layout: jni_common.h. */
#include "jni_common.h"

/* ---- errors ------------------------------------------------------------- */

void jni_throw_named(JNIEnv *env, const char *cls_name, const char *ascii_message) {
    jclass cls;
    if ((*env)->ExceptionCheck(env)) return;
    cls = (*env)->FindClass(env, cls_name);
    if (cls) {
        (*env)->ThrowNew(env, cls, ascii_message);
        (*env)->DeleteLocalRef(env, cls);
    }
}

void jni_throw_oom(JNIEnv *env, const char *what) { jni_throw_named(env, "java/lang/OutOfMemoryError", what); }

/* Throws EdgeKvException(status, message) with the library's message for the
 * failure that just happened on this thread. Nothing here calls edgekv, so
 * ekv_last_error() stays valid until it is copied. */
void jni_throw_status(JNIEnv *env, ekv_status status) {
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
char *jni_copy_cstring(JNIEnv *env, jbyteArray array, size_t *out_len) {
    jsize n;
    char *s;
    if (!array) return NULL;
    n = (*env)->GetArrayLength(env, array);
    s = (char *)malloc((size_t)n + 1);
    if (!s) {
        jni_throw_oom(env, "edgekv: cannot copy a string");
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, array, 0, n, (jbyte *)s);
    s[n] = '\0';
    if (out_len) *out_len = (size_t)n;
    return s;
}

int32_t *jni_copy_ints(JNIEnv *env, jintArray array, jsize *out_n) {
    jsize n = array ? (*env)->GetArrayLength(env, array) : 0;
    int32_t *v = (int32_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) {
        jni_throw_oom(env, "edgekv: cannot copy token ids");
        return NULL;
    }
    if (n > 0) (*env)->GetIntArrayRegion(env, array, 0, n, (jint *)v);
    *out_n = n;
    return v;
}

jbyteArray jni_new_bytes(JNIEnv *env, const char *data, size_t len) {
    jbyteArray a = (*env)->NewByteArray(env, (jsize)len);
    if (a && len) (*env)->SetByteArrayRegion(env, a, 0, (jsize)len, (const jbyte *)data);
    return a;
}

jintArray jni_new_ints(JNIEnv *env, const int32_t *data, jsize n) {
    jintArray a = (*env)->NewIntArray(env, n);
    if (a && n) (*env)->SetIntArrayRegion(env, a, 0, n, (const jint *)data);
    return a;
}

/* An array of byte arrays as NUL-terminated strings; free with jni_free_strings. */
char **jni_copy_strings(JNIEnv *env, jobjectArray array, jsize *out_n) {
    jsize n = array ? (*env)->GetArrayLength(env, array) : 0, i;
    char **v = (char **)calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    *out_n = 0;
    if (!v) {
        jni_throw_oom(env, "edgekv: cannot copy strings");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        jbyteArray item = (jbyteArray)(*env)->GetObjectArrayElement(env, array, i);
        if ((*env)->ExceptionCheck(env)) break;
        v[i] = jni_copy_cstring(env, item, NULL);
        (*env)->DeleteLocalRef(env, item);
        if (!v[i] && !(*env)->ExceptionCheck(env)) v[i] = (char *)calloc(1, 1);
        if (!v[i]) break;
        *out_n = i + 1;
    }
    return v;
}

void jni_free_strings(char **v, jsize n) {
    jsize i;
    if (!v) return;
    for (i = 0; i < n; i++) free(v[i]);
    free(v);
}
