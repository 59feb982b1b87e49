package dev.edgekv

import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock

/**
 * A loaded model (`ekv_model`): immutable, shared by any number of threads
 * and caches.
 *
 * [close] is idempotent and may come before the caches' close: caches and
 * conversations made from the model keep it alive and keep working, and the
 * native model is freed when the last of them closes. After [close] the
 * model's own methods throw [IllegalStateException]. Calls running on other
 * threads when it closes finish first (close never frees under them).
 * There is no finalizer: close what you open (`use {}`).
 */
class Model private constructor(
    handle: Long,
    /** The path it was loaded from, or a description of the buffer or descriptor. */
    val path: String,
    /** What the native model reads in place (a model loaded from a ByteBuffer): reachable while any cache is. */
    @Suppress("unused") private val borrowed: Any? = null
) : AutoCloseable {
    private val lock = ReentrantLock()
    private val changed = lock.newCondition() // signalled when a call ends
    private var handle: Long = handle
    private var open = true       // the application's reference
    private var refs = 1          // the application's + one per open cache
    private var calls = 0         // threads inside a native call on the handle

    /** Architecture, sizes, backend and natural cache. */
    val info: ModelInfo = readInfo(handle)

    companion object {
        /**
         * Loads a GGUF file or a Hugging Face model directory.
         * @throws EdgeKvException with [Status.IO] (missing file),
         *   [Status.INVALID_FILE] (malformed or hostile file),
         *   [Status.UNSUPPORTED_ARCH], [Status.CANCELLED] (stopped by
         *   [ModelParams.cancel] or [ModelParams.onProgress]), ...
         */
        @JvmStatic
        @JvmOverloads
        fun load(path: String, params: ModelParams = ModelParams()): Model {
            val p = Native.cString(path, "path")
            return loadFrom(path, null, params) { c, sink -> nativeLoad(p, null, 0, 0L, 0L, params, c, sink) }
        }

        /**
         * Loads a GGUF model from bytes [offset, offset + length) of an open
         * file descriptor, mapped read-only; the descriptor may be closed once
         * this returns. On Android this reads a model stored in the APK
         * without extracting it: `context.assets.openFd(name).use {
         * Model.loadFromFd(it.parcelFileDescriptor.fd, it.startOffset, it.length) }`
         * (store it uncompressed and page-aligned: `noCompress 'gguf'`,
         * zipalign -p; an unaligned offset works but copies the tensors it
         * misaligns).
         * @throws EdgeKvException [Status.IO] for a bad descriptor or a range
         *   past its end, [Status.INVALID_FILE] for bytes that are not a GGUF file.
         */
        @JvmStatic
        @JvmOverloads
        fun loadFromFd(fd: Int, offset: Long, length: Long, params: ModelParams = ModelParams()): Model {
            require(offset >= 0 && length >= 0) { "offset and length must not be negative" }
            return loadFrom("fd $fd [$offset, +$length)", null, params) { c, sink ->
                nativeLoad(null, null, fd, offset, length, params, c, sink)
            }
        }

        /**
         * Loads a GGUF model from a direct [ByteBuffer][java.nio.ByteBuffer]'s
         * bytes between its position and limit (e.g. `FileChannel.map`),
         * read in place: the model keeps the buffer reachable until it and
         * every cache made from it are closed. Nothing is copied when the
         * bytes start on a multiple of the file's alignment (32 bytes).
         * @throws IllegalArgumentException for a heap (non-direct) buffer.
         */
        @JvmStatic
        @JvmOverloads
        fun loadFromBuffer(buffer: java.nio.ByteBuffer, params: ModelParams = ModelParams()): Model {
            require(buffer.isDirect) { "the model's ByteBuffer must be direct (ByteBuffer.allocateDirect or a mapped file)" }
            val offset = buffer.position().toLong()
            val length = (buffer.limit() - buffer.position()).toLong()
            return loadFrom("buffer of $length bytes", buffer, params) { c, sink ->
                nativeLoad(null, buffer, 0, offset, length, params, c, sink)
            }
        }

        private fun loadFrom(
            description: String, borrowed: Any?, params: ModelParams, load: (Long, ProgressSink?) -> Long
        ): Model {
            val sink = params.onProgress?.let { ProgressSink(it) }
            val h = if (params.cancel != null) params.cancel.withHandle { c -> load(c, sink) } else load(0L, sink)
            try {
                return Model(h, description, borrowed)
            } catch (t: Throwable) {
                Native.modelFree(h)
                throw t
            }
        }

        private fun nativeLoad(
            path: ByteArray?, buffer: java.nio.ByteBuffer?, fd: Int, offset: Long, length: Long,
            p: ModelParams, cancel: Long, sink: ProgressSink?
        ): Long = Native.modelLoad(path, buffer, fd, offset, length, p.backend.code, p.deviceIndex, p.nThreads,
            p.int8Activations, cancel, sink, p.memoryBudgetBytes)

        private fun readInfo(h: Long): ModelInfo {
            val n = LongArray(16)
            val s = arrayOfNulls<ByteArray>(3)
            Native.modelInfo(h, n, s)
            fun str(i: Int) = s[i]?.let { Native.utf8(it) } ?: ""
            return ModelInfo(
                architecture = str(0), name = str(1), nLayers = n[0].toInt(), nHeads = n[1].toInt(),
                nKvHeads = n[2].toInt(), headDim = n[3].toInt(), nEmbd = n[4].toInt(), nFf = n[5].toInt(),
                contextLength = n[6].toInt(), nVocab = n[7].toInt(), nParams = n[8], weightBytes = n[9],
                backend = Backend.of(n[10].toInt()), device = str(2), naturalCache = CacheType.of(n[11].toInt()),
                nSlidingLayers = n[12].toInt(), slidingWindow = n[13].toInt(), nRecurrentLayers = n[14].toInt(),
                decodeWeightBytes = n[15]
            )
        }
    }

    // ---- lifetime -----------------------------------------------------------

    /** False once [close] was called (caches may still keep the native model). */
    val isOpen: Boolean
        get() = lock.withLock { open }

    /** True once the native model is freed: closed and no cache left. */
    internal val isReleased: Boolean
        get() = lock.withLock { refs == 0 }

    /**
     * Runs block with the native handle. [user] calls (the model's own
     * methods) need the application's reference; calls on behalf of a cache
     * need only the cache's.
     */
    internal fun <T> call(user: Boolean, block: (Long) -> T): T {
        val h = lock.withLock {
            if (user) check(open) { "Model is closed" }
            check(refs > 0) { "Model is released" }
            calls++
            handle
        }
        try {
            return block(h)
        } finally {
            lock.withLock {
                calls--
                if (calls == 0) changed.signalAll()
            }
        }
    }

    /** The handle for a cache that holds a reference (valid while it does). */
    internal val retainedHandle: Long
        get() = lock.withLock {
            check(refs > 0) { "Model is released" }
            handle
        }

    internal fun retain(user: Boolean) {
        lock.withLock {
            if (user) check(open) { "Model is closed" }
            check(refs > 0) { "Model is released" }
            refs++
        }
    }

    internal fun release() {
        val h = lock.withLock {
            check(refs > 0) { "Model released twice" }
            refs--
            if (refs > 0) return
            while (calls > 0) changed.awaitUninterruptibly()
            val last = handle
            handle = 0L
            last
        }
        Native.modelFree(h)
    }

    /** Drops the application's reference; idempotent. */
    override fun close() {
        lock.withLock {
            if (!open) return
            open = false
        }
        release()
    }

    // ---- caches ---------------------------------------------------------------

    /**
     * A new empty cache.
     * @throws EdgeKvException [Status.UNSUPPORTED] for a type this model
     *   cannot use ("cache type 'hybrid' needs interleaved local/global
     *   attention layers; llama has none"), [Status.INVALID_ARGUMENT] for bad
     *   parameters.
     */
    @JvmOverloads
    fun newCache(params: CacheParams = CacheParams()): Cache {
        retain(user = true)
        val h = try {
            call(user = true) { m -> Native.cacheCreate(m, params.toInts(), params.memoryBudgetBytes) }
        } catch (t: Throwable) {
            release()
            throw t
        }
        return Cache.adopt(this, h)
    }

    /**
     * Plans a cache for a conversation of [contextTokens] tokens without
     * allocating anything. With [CacheType.AUTO] and a
     * [CacheParams.memoryBudgetBytes] the library chooses: the model's
     * natural cache in f16 if it holds the whole context, else KIVI 8, 4,
     * then 2 bits, else the sink cache with the longest window that fits
     * ([CachePlan.chosen] is null when nothing does). Any other parameters
     * are only sized.
     * @throws EdgeKvException for bad parameters or a cache this model cannot use.
     */
    @JvmOverloads
    fun planCache(params: CacheParams = CacheParams(), contextTokens: Int): CachePlan = call(user = true) { m ->
        val ints = params.toInts()
        fun candidate(index: Int): Pair<CachePlanCandidate, LongArray> {
            val config = IntArray(9)
            val nums = LongArray(12)
            val reason = Native.cachePlan(m, ints, params.memoryBudgetBytes, contextTokens, index, config, nums)
            return CachePlanCandidate.of(config, nums, Native.utf8(reason)) to nums
        }
        val (summary, nums) = candidate(-1)
        val all = (0 until nums[7].toInt()).map { candidate(it).first }
        CachePlan(if (nums[11] == 0L) summary else null, summary.reason, all)
    }

    /**
     * Reads a cache written by [Cache.save]. A truncated or corrupted file is
     * [Status.INVALID_FILE], another format version [Status.UNSUPPORTED],
     * another model's [Status.MODEL_MISMATCH].
     */
    fun loadCache(path: String): Cache {
        val p = Native.cString(path, "path")
        return adoptLoaded { m -> Native.cacheLoad(m, p) }
    }

    /** Reads a cache from the bytes [Cache.saveToBytes] returned (copied; refused as [loadCache] refuses files). */
    fun loadCache(bytes: ByteArray): Cache = adoptLoaded { m -> Native.cacheLoadFromBytes(m, bytes) }

    private fun adoptLoaded(load: (Long) -> Long): Cache {
        retain(user = true)
        val h = try {
            call(user = true, block = load)
        } catch (t: Throwable) {
            release()
            throw t
        }
        return Cache.adopt(this, h)
    }

    /** A chat with its own cache; see [Conversation]. */
    @JvmOverloads
    fun newConversation(
        systemPrompt: String? = null,
        cacheParams: CacheParams = CacheParams(),
        template: String? = null
    ): Conversation = Conversation(this, cacheParams, systemPrompt, template)

    // ---- text -----------------------------------------------------------------

    /** Token ids of UTF-8 text; [addSpecial] prepends BOS where the tokenizer does. */
    @JvmOverloads
    fun tokenize(text: String, addSpecial: Boolean = true, parseSpecial: Boolean = false): IntArray =
        tokenize(text, addSpecial, parseSpecial, user = true)

    internal fun tokenize(text: String, addSpecial: Boolean, parseSpecial: Boolean, user: Boolean): IntArray =
        call(user) { Native.tokenize(it, Native.bytes(text), addSpecial, parseSpecial) }

    /** Text of a token sequence. */
    @JvmOverloads
    fun detokenize(tokens: IntArray, skipSpecial: Boolean = false): String =
        detokenize(tokens, skipSpecial, user = true)

    internal fun detokenize(tokens: IntArray, skipSpecial: Boolean, user: Boolean): String =
        call(user) { Native.utf8(Native.detokenize(it, tokens, skipSpecial)) }

    /** The raw bytes of one token (may be part of a UTF-8 character). */
    @JvmOverloads
    fun tokenBytes(token: Int, special: Boolean = false): ByteArray =
        call(user = true) { Native.tokenToPiece(it, token, special) }

    /** Id of a special token, or null when the model has none. */
    fun specialToken(which: SpecialToken): Int? =
        call(user = true) { Native.tokenSpecial(it, which.code) }.takeIf { it >= 0 }

    /** True if the token ends generation (EOS, EOT, ...). */
    fun isEndOfGeneration(token: Int): Boolean = call(user = true) { Native.tokenIsEog(it, token) }

    /** A string metadata value ("general.name"). */
    fun metadata(key: String): String {
        val k = Native.cString(key, "key")
        return call(user = true) { Native.utf8(Native.modelMetaString(it, k)) }
    }

    /**
     * Renders messages with the model's chat template (ChatML, Llama 3,
     * Gemma), or [template] ("chatml", "llama3", "gemma").
     */
    @JvmOverloads
    fun applyChatTemplate(messages: List<ChatMessage>, addGenerationPrompt: Boolean = true, template: String? = null): String =
        applyChatTemplate(messages, addGenerationPrompt, template, user = true)

    internal fun applyChatTemplate(
        messages: List<ChatMessage>, addGenerationPrompt: Boolean, template: String?, user: Boolean
    ): String {
        val c = NativeChat(messages, template)
        return call(user) { Native.utf8(Native.chatApplyTemplate(it, c.template, c.roles, c.contents, addGenerationPrompt)) }
    }

    /**
     * The token ids of a conversation as [applyChatTemplate] renders it: the
     * template's markers become control tokens, while roles and contents stay
     * text even when they spell one (a user who types "<|im_end|>" does not
     * end the turn). Use this, not `tokenize(text, parseSpecial = true)` of
     * the rendered text, for anything a user typed.
     */
    @JvmOverloads
    fun chatTokens(messages: List<ChatMessage>, addGenerationPrompt: Boolean = true, template: String? = null): IntArray =
        chatTokens(messages, addGenerationPrompt, template, user = true)

    internal fun chatTokens(
        messages: List<ChatMessage>, addGenerationPrompt: Boolean, template: String?, user: Boolean
    ): IntArray {
        val c = NativeChat(messages, template)
        return call(user) { Native.chatTokenize(it, c.template, c.roles, c.contents, addGenerationPrompt) }
    }

    /** A conversation as the C strings the native chat calls take. */
    private class NativeChat(messages: List<ChatMessage>, template: String?) {
        val roles = Array(messages.size) { Native.cString(messages[it].role, "a role") }
        val contents = Array(messages.size) { Native.cString(messages[it].content, "a message") }
        val template = template?.let { Native.cString(it, "template") }
    }

    // ---- without a cache -----------------------------------------------------

    /** Logits of a whole sequence without a cache (HF use_cache=False). */
    @JvmOverloads
    fun forward(tokens: IntArray, mode: LogitsMode = LogitsMode.LAST): FloatArray =
        call(user = true) { Native.forward(it, 0L, tokens, null, mode.code, info.nVocab, 0L) }

    override fun toString(): String = "Model(${info.architecture}, $path)"
}
