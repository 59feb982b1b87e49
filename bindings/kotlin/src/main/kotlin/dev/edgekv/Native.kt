package dev.edgekv

import java.nio.charset.StandardCharsets

/**
 * The JNI entry points (jni/edgekv_jni.c), one per C function of edgekv.h.
 * Not API: handles are raw pointers here, and the classes of this package
 * make sure none is used after it is freed. Text is UTF-8 in byte arrays.
 */
internal object Native {
    init {
        // -Dedgekv.jni.library=/abs/path/libedgekv_jni.so overrides the
        // search of java.library.path (Android: the APK's lib/<abi>/).
        val explicit = System.getProperty("edgekv.jni.library")
        if (explicit != null && explicit.isNotEmpty()) System.load(explicit) else System.loadLibrary("edgekv_jni")
    }

    /** Called by the C layer to build the exception of a failed call. */
    @JvmStatic
    fun newException(code: Int, message: ByteArray): Throwable =
        EdgeKvException(Status.fromCode(code), code, utf8(message))

    // ---- library
    @JvmStatic external fun version(): ByteArray
    @JvmStatic external fun versionNumber(): Int
    @JvmStatic external fun statusString(status: Int): ByteArray
    @JvmStatic external fun backendAvailable(kind: Int): Boolean
    @JvmStatic external fun deviceCount(kind: Int): Int
    @JvmStatic external fun deviceInfo(kind: Int, index: Int, nums: LongArray): ByteArray
    @JvmStatic external fun logSetHandler(handler: LogSink?)

    // ---- stop requests
    @JvmStatic external fun cancelCreate(): Long
    @JvmStatic external fun cancelTrigger(cancel: Long)
    @JvmStatic external fun cancelReset(cancel: Long)
    @JvmStatic external fun cancelIsTriggered(cancel: Long): Boolean
    @JvmStatic external fun cancelFree(cancel: Long)

    // ---- models
    /** From path when not null, else from buffer's bytes [offset, offset + length), else from fd's. */
    @JvmStatic external fun modelLoad(
        path: ByteArray?, buffer: java.nio.ByteBuffer?, fd: Int, offset: Long, length: Long,
        backend: Int, deviceIndex: Int, nThreads: Int, int8Activations: Boolean,
        cancel: Long, listener: ProgressSink?, memoryBudgetBytes: Long
    ): Long
    @JvmStatic external fun modelFree(model: Long)
    @JvmStatic external fun modelInfo(model: Long, nums: LongArray, strs: Array<ByteArray?>)
    @JvmStatic external fun modelMetaString(model: Long, key: ByteArray): ByteArray

    // ---- text
    @JvmStatic external fun tokenize(model: Long, text: ByteArray, addSpecial: Boolean, parseSpecial: Boolean): IntArray
    @JvmStatic external fun detokenize(model: Long, tokens: IntArray, skipSpecial: Boolean): ByteArray
    @JvmStatic external fun tokenToPiece(model: Long, token: Int, special: Boolean): ByteArray
    @JvmStatic external fun tokenSpecial(model: Long, which: Int): Int
    @JvmStatic external fun tokenIsEog(model: Long, token: Int): Boolean
    @JvmStatic external fun chatApplyTemplate(
        model: Long, template: ByteArray?, roles: Array<ByteArray>, contents: Array<ByteArray>, addGenerationPrompt: Boolean
    ): ByteArray
    @JvmStatic external fun chatTokenize(
        model: Long, template: ByteArray?, roles: Array<ByteArray>, contents: Array<ByteArray>, addGenerationPrompt: Boolean
    ): IntArray

    // ---- caches
    @JvmStatic external fun cacheParamsDefaults(out: IntArray)
    @JvmStatic external fun cacheCreate(model: Long, params: IntArray, memoryBudgetBytes: Long): Long
    @JvmStatic external fun cachePlan(
        model: Long, params: IntArray, memoryBudgetBytes: Long, context: Int, index: Int, config: IntArray,
        nums: LongArray
    ): ByteArray
    @JvmStatic external fun cacheFree(cache: Long)
    @JvmStatic external fun cacheSetCancel(cache: Long, cancel: Long)
    @JvmStatic external fun cacheType(cache: Long): Int
    @JvmStatic external fun cacheSeqLen(cache: Long): Int
    @JvmStatic external fun cacheCapacity(cache: Long): Int
    @JvmStatic external fun cacheStats(cache: Long, out: LongArray)
    @JvmStatic external fun cacheReset(cache: Long)
    @JvmStatic external fun cacheCrop(cache: Long, newLen: Int)
    @JvmStatic external fun cacheClone(cache: Long): Long
    @JvmStatic external fun cacheSave(cache: Long, path: ByteArray)
    @JvmStatic external fun cacheLoad(model: Long, path: ByteArray): Long
    @JvmStatic external fun cacheSaveToBytes(cache: Long): ByteArray
    @JvmStatic external fun cacheLoadFromBytes(model: Long, data: ByteArray): Long
    @JvmStatic external fun cacheGetParams(cache: Long, out: IntArray, budget: LongArray)

    // ---- forward and generation
    /** cancel (0: none) stops this call only; the cache's attached request stays as it is. */
    @JvmStatic external fun forward(
        model: Long, cache: Long, tokens: IntArray, positions: IntArray?, mode: Int, nVocab: Int, cancel: Long
    ): FloatArray
    @JvmStatic external fun generateParamsDefaults(ints: IntArray, floats: FloatArray)
    @JvmStatic external fun generate(
        model: Long, cache: Long, prompt: IntArray, ints: IntArray, floats: FloatArray, seed: Long,
        stopTokens: IntArray?, stopStrings: Array<ByteArray>?, cancel: Long, sink: PieceSink?,
        longs: LongArray, doubles: DoubleArray
    ): IntArray
    @JvmStatic external fun generatorCreate(
        model: Long, cache: Long, prompt: IntArray, ints: IntArray, floats: FloatArray, seed: Long,
        stopTokens: IntArray?, stopStrings: Array<ByteArray>?, cancel: Long
    ): Long
    @JvmStatic external fun generatorNext(generator: Long, event: IntArray): ByteArray
    @JvmStatic external fun generatorResult(generator: Long, longs: LongArray, doubles: DoubleArray)
    @JvmStatic external fun generatorFree(generator: Long)

    fun utf8(bytes: ByteArray): String = String(bytes, StandardCharsets.UTF_8)
    fun bytes(text: String): ByteArray = text.toByteArray(StandardCharsets.UTF_8)

    /** A path or name handed to C as a NUL-terminated string. */
    fun cString(text: String, what: String): ByteArray {
        require(text.indexOf('\u0000') < 0) { "$what contains a NUL character" }
        return bytes(text)
    }
}

/** Receives the text pieces of a blocking generation (called from C). */
internal class PieceSink(private val onText: ((String) -> Unit)?) {
    private val text = java.io.ByteArrayOutputStream()

    fun onPiece(token: Int, piece: ByteArray): Boolean {
        text.write(piece, 0, piece.size)
        onText?.invoke(Native.utf8(piece))
        return true
    }

    fun text(): String = Native.utf8(text.toByteArray())
}

/** Receives a model load's progress (called from C on the loading thread). */
internal class ProgressSink(private val listener: (Float) -> Boolean) {
    fun onProgress(progress: Float): Boolean = listener(progress)
}
