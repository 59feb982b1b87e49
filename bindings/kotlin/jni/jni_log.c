/* jni_log.c - JNI layer: the library's log routed to a Kotlin handler.
 * Rules and layout: jni_common.h. The log callback is process-wide in the C
 * ABI, so this is the one place the layer keeps state: the handler travels
 * as the callback's user data (a global reference), never in a static. */
#include "jni_common.h"

#include <stdio.h>

typedef struct log_sink {
    JavaVM *vm;
    jobject handler; /* global reference to a dev.edgekv.LogSink */
    jmethodID on_log;
} log_sink;

static void log_trampoline(ekv_log_level level, const char *message, void *user_data) {
    log_sink *sink = (log_sink *)user_data;
    JNIEnv *env = NULL;
    jbyteArray bytes;
    int attached = 0;
    jint got = (*sink->vm)->GetEnv(sink->vm, (void **)&env, JNI_VERSION_1_6);
    if (got == JNI_EDETACHED) {
        /* A library thread (a worker, a driver's): attached for this message only. */
        if ((*sink->vm)->AttachCurrentThreadAsDaemon(sink->vm, (void **)&env, NULL) != JNI_OK) return;
        attached = 1;
    } else if (got != JNI_OK) {
        return;
    }
    if ((*env)->ExceptionCheck(env)) {
        /* A Kotlin exception is on its way out of this thread's call, and no
         * Java code may run until it is delivered: keep the message anyway. */
        if (level <= EKV_LOG_WARN) fprintf(stderr, "edgekv: %s\n", message);
        return;
    }
    bytes = jni_new_bytes(env, message, strlen(message));
    if (bytes) {
        (*env)->CallVoidMethod(env, sink->handler, sink->on_log, (jint)level, bytes);
        (*env)->DeleteLocalRef(env, bytes);
    }
    /* The handler's exception (or an OutOfMemoryError) cannot reach the code
     * that logged, which may be on another thread: it is dropped here. */
    if ((*env)->ExceptionCheck(env)) (*env)->ExceptionClear(env);
    if (attached) (*sink->vm)->DetachCurrentThread(sink->vm);
}

/* The sink installed now, kept to release it when replaced. Only
 * logSetHandler touches it, and the Kotlin side serialises those calls. */
static log_sink *installed;

/* Installs handler (a LogSink, or null for the library's default: warnings
 * and errors to stderr). Returns once no message is being delivered to the
 * previous handler, which is then released. Calls are serialised by the
 * Kotlin side (EdgeKv.setLogHandler), which also refuses them from inside a
 * handler: the library's log lock is held there. */
JNIEXPORT void JNICALL FN(logSetHandler)(JNIEnv *env, jclass cls, jobject handler) {
    log_sink *next = NULL, *previous;
    (void)cls;
    if (handler) {
        jclass hcls;
        next = (log_sink *)calloc(1, sizeof *next);
        if (!next) {
            jni_throw_oom(env, "edgekv: cannot install the log handler");
            return;
        }
        if ((*env)->GetJavaVM(env, &next->vm) != 0) {
            free(next);
            jni_throw_named(env, "java/lang/IllegalStateException", "edgekv: GetJavaVM failed");
            return;
        }
        hcls = (*env)->GetObjectClass(env, handler);
        next->on_log = (*env)->GetMethodID(env, hcls, "onLog", "(I[B)V");
        (*env)->DeleteLocalRef(env, hcls);
        if (!next->on_log) {
            free(next);
            return; /* NoSuchMethodError pending */
        }
        next->handler = (*env)->NewGlobalRef(env, handler);
        if (!next->handler) {
            free(next);
            jni_throw_oom(env, "edgekv: cannot install the log handler");
            return;
        }
    }
    previous = installed;
    installed = next;
    if (next) {
        ekv_log_set_callback(log_trampoline, next);
    } else {
        ekv_log_set_callback(NULL, NULL);
    }
    /* ekv_log_set_callback took the library's log lock: no message is in
     * the previous handler any more. */
    if (previous) {
        (*env)->DeleteGlobalRef(env, previous->handler);
        free(previous);
    }
}
