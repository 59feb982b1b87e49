package dev.edgekv

import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock

/**
 * A KV cache (`ekv_cache`): the state of one conversation, of any type of
 * the Hugging Face `Cache` family (see [CacheParams]).
 *
 * One call at a time: a call while another thread's call (or an open
 * [GenerationStream]) is using the cache throws [EdgeKvException] with
 * [Status.INVALID_STATE] ("cache is busy"), as the C library does. The
 * read-only queries ([type], [seqLen], [capacity], [stats]) are passed to the
 * library as they are, which answers them or reports the cache busy.
 *
 * [cancel] may be called from any thread at any moment: it stops the running
 * forward, prefill or generation promptly (a 2,000-token prefill within tens
 * of milliseconds). A cancelled forward or prefill leaves the cache as it
 * was before the call; a cancelled generation keeps the tokens made so far
 * (a later prompt that starts the same way reuses them). A cancel when
 * nothing runs does nothing.
 *
 * [close] is idempotent and safe from any thread: when a call is running on
 * another thread it cancels it and waits until it has returned, then frees
 * the cache; an open stream is closed. Called from inside a call on this
 * cache (e.g. from a generation callback) it throws [IllegalStateException]:
 * call [cancel] there instead. After close every method but [cancel] and
 * [close] throws [IllegalStateException].
 */
class Cache private constructor(
    /** The model this cache belongs to (kept alive until this cache closes). */
    val model: Model,
    handle: Long
) : AutoCloseable {
    private val lock = ReentrantLock()
    private val changed = lock.newCondition() // signalled when a call ends
    private var handle: Long = handle
    // This object's stop request, passed to each call (never attached to the
    // native cache, whose attached request is left to the application).
    private var cancelHandle: Long = 0L
    private var closed = false
    private var owner: Any? = null      // the operation (a call or a stream) using the cache
    private var inside: Thread? = null  // the thread inside native code for it
    private var readers = 0             // threads inside a read-only query

    internal companion object {
        const val EVENT_DONE = 1

        /** Wraps a new native cache that holds a reference on [model]. */
        fun adopt(model: Model, handle: Long): Cache {
            var cancel = 0L
            try {
                cancel = Native.cancelCreate()
                return Cache(model, handle).also { it.cancelHandle = cancel }
            } catch (t: Throwable) {
                Native.cacheFree(handle)
                if (cancel != 0L) Native.cancelFree(cancel)
                model.release()
                throw t
            }
        }
    }

    // ---- use ------------------------------------------------------------------

    private fun beginLocked(op: Any, stop: StopRequest? = null) {
        check(!closed) { "Cache is closed" }
        if (owner != null) throw busyError()
        owner = op
        inside = Thread.currentThread()
        Native.cancelReset(cancelHandle) // a new call starts without an old stop request...
        if (stop != null && stop.requested) Native.cancelTrigger(cancelHandle) // ...unless its own came early
    }

    private fun endLocked() {
        owner = null
        inside = null
        changed.signalAll()
    }

    /** Runs block alone on the cache with its handle. */
    private inline fun <T> exclusive(stop: StopRequest? = null, block: (Long) -> T): T {
        val op = Any()
        val h = lock.withLock {
            beginLocked(op, stop)
            handle
        }
        try {
            return block(h)
        } finally {
            lock.withLock { endLocked() }
        }
    }

    /** Runs a read-only query with the handle, which stays valid until it returns. */
    private inline fun <T> query(block: (Long) -> T): T {
        val h = lock.withLock {
            check(!closed) { "Cache is closed" }
            readers++
            handle
        }
        try {
            return block(h)
        } finally {
            lock.withLock {
                readers--
                changed.signalAll()
            }
        }
    }

    /** True while a call or an open [GenerationStream] holds the cache. */
    val isBusy: Boolean
        get() = lock.withLock { owner != null }

    /**
     * Stops what runs on this cache now (a forward, a generation, an open
     * stream), from any thread. Never blocks on native work.
     */
    fun cancel() {
        lock.withLock {
            if (!closed && owner != null) Native.cancelTrigger(cancelHandle)
        }
    }

    val isClosed: Boolean
        get() = lock.withLock { closed }

    override fun close() {
        lock.withLock {
            if (closed) return
            check(inside !== Thread.currentThread()) {
                "Cache.close() called from inside a call on this cache (e.g. its generation callback); call cancel() there"
            }
            closed = true
            if (inside != null) Native.cancelTrigger(cancelHandle)
            while (inside != null || readers > 0) changed.awaitUninterruptibly()
            (owner as? GenerationStream)?.freeNativeLocked()
            owner = null
            Native.cacheFree(handle)
            Native.cancelFree(cancelHandle)
            handle = 0L
            cancelHandle = 0L
            changed.signalAll()
        }
        model.release()
    }

    // ---- inspection -------------------------------------------------------------

    /** The resolved type (never AUTO). */
    val type: CacheType
        get() = query { CacheType.of(Native.cacheType(it)) }

    /** Tokens consumed: the position of the next token (HF get_seq_length). */
    val seqLen: Int
        get() = query { Native.cacheSeqLen(it) }

    /** Tokens held at most (max_cache_len, a ring's window), -1 when unbounded. */
    val capacity: Int
        get() = query { Native.cacheCapacity(it) }

    fun stats(): CacheStats = query {
        val v = LongArray(8)
        Native.cacheStats(it, v)
        CacheStats(v[0].toInt(), v[1].toInt(), v[2], v[3], v[4], v[5], v[6], v[7].toInt())
    }

    // ---- operations ---------------------------------------------------------------

    /** Drops every token; keeps the allocation. */
    fun reset() = exclusive { Native.cacheReset(it) }

    /**
     * Keeps the first [newLen] tokens (HF crop). A ring or KIVI cache that no
     * longer holds what the shorter sequence needs refuses with
     * [Status.INVALID_STATE].
     */
    fun crop(newLen: Int) = exclusive { Native.cacheCrop(it, newLen) }

    /** A deep copy (prefix reuse: prefill a shared prompt once, clone per request). */
    fun clone(): Cache {
        model.retain(user = false)
        val h = try {
            exclusive { Native.cacheClone(it) }
        } catch (t: Throwable) {
            model.release()
            throw t
        }
        return adopt(model, h)
    }

    /** Writes a versioned, checksummed file recording the configuration and the model. */
    fun save(path: String) {
        val p = Native.cString(path, "path")
        exclusive { Native.cacheSave(it, p) }
    }

    /** The bytes [save] would write (for a database, a socket, app storage); read back with [Model.loadCache]. */
    fun saveToBytes(): ByteArray = exclusive { Native.cacheSaveToBytes(it) }

    /**
     * The cache's configuration: with [CacheType.AUTO] what the library
     * chose, for a loaded cache what its file recorded (with no memory budget).
     */
    val params: CacheParams
        get() = query {
            val v = IntArray(9)
            val budget = LongArray(1)
            Native.cacheGetParams(it, v, budget)
            CacheParams.of(v, budget[0])
        }

    /**
     * Runs the model on [tokens] through this cache and returns logits (HF
     * `cache_position` semantics: null continues at [seqLen]; positions below
     * it crop first). A stop request ends it with [Status.CANCELLED] and the
     * cache as before; a full fixed-capacity cache is [Status.CACHE_FULL]
     * with nothing written.
     */
    @JvmOverloads
    fun forward(tokens: IntArray, mode: LogitsMode = LogitsMode.LAST, cachePosition: IntArray? = null): FloatArray {
        val nVocab = model.info.nVocab
        return exclusive {
            Native.forward(model.retainedHandle, it, tokens, cachePosition, mode.code, nVocab, cancelHandle)
        }
    }

    // ---- generation -------------------------------------------------------------------

    /**
     * Generates after [prompt] (token ids), blocking. The prompt is matched
     * against the tokens the cache holds: only the new suffix is computed.
     * [onText] (optional) receives each piece of text as it is released:
     * UTF-8 complete, never part of a stop string. A [cancel] ends the
     * generation with [StopReason.CANCELLED] (not an exception). An
     * exception thrown by [onText] stops the generation and propagates
     * unchanged; the cache stays usable.
     */
    @JvmOverloads
    fun generate(prompt: IntArray, params: GenerateParams = GenerateParams(), onText: ((String) -> Unit)? = null): GenerationResult =
        generate(prompt, params, onText, null)

    internal fun generate(prompt: IntArray, params: GenerateParams, onText: ((String) -> Unit)?, stop: StopRequest?): GenerationResult {
        val sink = PieceSink(onText)
        val longs = LongArray(6)
        val doubles = DoubleArray(2)
        val ints = params.ints()
        val floats = params.floats()
        val stopTokens = params.stopTokenArray()
        val stopStrings = params.stopStringArray()
        val tokens = exclusive(stop) {
            Native.generate(
                model.retainedHandle, it, prompt, ints, floats, params.seed, stopTokens, stopStrings, cancelHandle, sink,
                longs, doubles
            )
        }
        return GenerationResult.of(tokens, sink.text(), longs, doubles)
    }

    /**
     * The step-wise generator as a [Sequence] of [GenerationEvent]s: one
     * [GenerationEvent.Token] per generated token, then one
     * [GenerationEvent.Done]. Nothing is computed until the first event is
     * asked for (the first does the prefill). The stream holds the cache
     * until it is done or closed: close it when abandoning it early
     * (`use {}`).
     */
    @JvmOverloads
    fun stream(prompt: IntArray, params: GenerateParams = GenerateParams()): GenerationStream =
        openStream(prompt, params, null, null)

    internal fun openStream(
        prompt: IntArray, params: GenerateParams, onDone: ((GenerationResult) -> Unit)?, stop: StopRequest?
    ): GenerationStream {
        val ints = params.ints()
        val floats = params.floats()
        val stopTokens = params.stopTokenArray()
        val stopStrings = params.stopStringArray()
        val placeholder = Any()
        val h = lock.withLock {
            beginLocked(placeholder, stop)
            handle
        }
        val gen = try {
            Native.generatorCreate(
                model.retainedHandle, h, prompt, ints, floats, params.seed, stopTokens, stopStrings, cancelHandle
            )
        } catch (t: Throwable) {
            lock.withLock { endLocked() }
            throw t
        }
        val stream = GenerationStream(this, gen, onDone)
        lock.withLock {
            owner = stream
            inside = null
            changed.signalAll()
        }
        return stream
    }

    // ---- for GenerationStream (its calls go through the cache's lock) ----

    /**
     * One step; for the DONE event also the result (read before the step
     * counts as finished, so a concurrent close() cannot free it first).
     */
    internal fun streamStep(stream: GenerationStream, event: IntArray, longs: LongArray, doubles: DoubleArray): ByteArray {
        val gen = lock.withLock {
            check(owner === stream && !closed) { "the generation stream is closed" }
            check(inside == null) { "GenerationStream is used by two threads at once" }
            inside = Thread.currentThread()
            stream.generator
        }
        try {
            val text = Native.generatorNext(gen, event)
            if (event[0] == EVENT_DONE) Native.generatorResult(gen, longs, doubles)
            return text
        } finally {
            lock.withLock {
                inside = null
                changed.signalAll()
            }
        }
    }

    internal fun streamCancel(stream: GenerationStream) {
        lock.withLock {
            if (owner === stream && !closed) Native.cancelTrigger(cancelHandle)
        }
    }

    /** Ends the stream's use of the cache; waits for a step running on another thread. */
    internal fun streamClose(stream: GenerationStream) {
        lock.withLock {
            if (owner !== stream) return
            check(inside !== Thread.currentThread()) { "GenerationStream.close() from inside its own step" }
            if (inside != null) {
                Native.cancelTrigger(cancelHandle)
                while (inside != null) changed.awaitUninterruptibly()
            }
            if (owner !== stream) return
            stream.freeNativeLocked()
            endLocked()
        }
    }

    override fun toString(): String = if (isClosed) "Cache(closed)" else "Cache(${model.info.architecture})"
}

/**
 * A stop asked for a call that may not have reached the cache yet (a
 * conversation turn still rendering its prompt): the call starts stopped.
 */
internal class StopRequest {
    @Volatile
    var requested = false
}
