/*
 * jni_common.h - what the files of the JNI layer of the Kotlin binding share.
 * The layer is one thin C function per call of the public C ABI
 * (sdk/include/edgekv.h), nothing else, split by subject: edgekv_jni.c
 * (library, stop requests, models, text), jni_cache.c (caches, forward),
 * jni_generate.c (generation), jni_log.c (the log handler), jni_common.c
 * (errors, conversions).
 *
 * Rules these files keep (each is a bug other LLM bindings shipped):
 *  - Text crosses JNI only as byte arrays holding UTF-8, decoded and encoded
 *    in Kotlin. NewStringUTF/GetStringUTFChars speak *modified* UTF-8 and
 *    mangle emoji, so they are never used.
 *  - No static or global state: no cached JNIEnv, jclass or method id, no
 *    handle table. Handles travel as jlong; every call gets what it needs
 *    from its arguments, so any number of models and caches live in one
 *    process and the library can be loaded by several class loaders. The
 *    one exception is the log handler (jni_log.c), process-wide in the C
 *    ABI itself: the last class loader to install one receives the log.
 *  - A failing call throws dev.edgekv.EdgeKvException built from the status
 *    and ekv_last_error(), read on the same thread right after the failure.
 *  - Callbacks into Kotlin run on the thread that made the call. A Kotlin
 *    exception thrown inside one stops the native work and stays pending:
 *    after it no JNI function but the exception-safe ones is called and the
 *    native method returns at once, so the JVM rethrows it unchanged.
 *  - Lifetimes are not this layer's business: the Kotlin classes guarantee
 *    that a handle is never freed while another thread is inside a call on
 *    it (close() waits for or refuses running calls).
 */
#ifndef EDGEKV_JNI_COMMON_H
#define EDGEKV_JNI_COMMON_H

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

/* Errors: each throws unless an exception is already pending. */
void jni_throw_named(JNIEnv *env, const char *cls_name, const char *ascii_message);
void jni_throw_oom(JNIEnv *env, const char *what);
/* EdgeKvException(status, ekv_last_error()) for the failure that just
 * happened on this thread. */
void jni_throw_status(JNIEnv *env, ekv_status status);

/* Conversions. The copies are malloc'd; on failure they throw and return NULL. */
char *jni_copy_cstring(JNIEnv *env, jbyteArray array, size_t *out_len);
int32_t *jni_copy_ints(JNIEnv *env, jintArray array, jsize *out_n);
jbyteArray jni_new_bytes(JNIEnv *env, const char *data, size_t len);
jintArray jni_new_ints(JNIEnv *env, const int32_t *data, jsize n);
char **jni_copy_strings(JNIEnv *env, jobjectArray array, jsize *out_n);
void jni_free_strings(char **v, jsize n);

#endif
