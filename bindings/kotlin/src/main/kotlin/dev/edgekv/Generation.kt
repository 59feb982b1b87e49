package dev.edgekv

import java.io.ByteArrayOutputStream

/** One step of a generation. */
sealed class GenerationEvent {
    /** The text this event released (UTF-8 complete; may be empty). */
    abstract val text: String

    /** A generated token and the text it released. */
    class Token internal constructor(val id: Int, override val text: String) : GenerationEvent() {
        override fun toString() = "Token($id, \"$text\")"
    }

    /** The end: why, the text still held back, and the whole result. */
    class Done internal constructor(
        val stopReason: StopReason,
        override val text: String,
        val result: GenerationResult
    ) : GenerationEvent() {
        override fun toString() = "Done($stopReason, \"$text\")"
    }
}

/**
 * A generation as a [Sequence] of events over the library's step-wise
 * generator (`ekv_generator`), iterable once. Each step blocks the iterating
 * thread for one token (the first for the prefill too).
 *
 * The stream holds its cache from creation until the [GenerationEvent.Done]
 * event or [close]. [cancel] (any thread) makes the next or the running step
 * end the stream with [StopReason.CANCELLED]; [close] (idempotent, any
 * thread) cancels a running step, waits for it and frees the generator.
 */
class GenerationStream internal constructor(
    private val cache: Cache,
    generator: Long,
    private val onDone: ((GenerationResult) -> Unit)?
) : Sequence<GenerationEvent>, AutoCloseable {
    // Guarded by the cache's lock (see Cache.stream*).
    internal var generator: Long = generator
        private set
    @Volatile private var iterated = false
    private var finished = false
    private val tokens = ArrayList<Int>()
    private val text = ByteArrayOutputStream()

    /** The result once the stream is done, else null. */
    @Volatile
    var result: GenerationResult? = null
        private set

    override fun iterator(): Iterator<GenerationEvent> {
        synchronized(this) {
            check(!iterated) { "a GenerationStream can be iterated only once" }
            iterated = true
        }
        return object : Iterator<GenerationEvent> {
            override fun hasNext(): Boolean = !finished
            override fun next(): GenerationEvent {
                if (finished) throw NoSuchElementException("the generation is done")
                return step()
            }
        }
    }

    private fun step(): GenerationEvent {
        val ev = IntArray(3)
        val longs = LongArray(6)
        val doubles = DoubleArray(2)
        val bytes = try {
            cache.streamStep(this, ev, longs, doubles)
        } catch (t: Throwable) {
            finished = true
            close()
            throw t
        }
        text.write(bytes, 0, bytes.size)
        val piece = Native.utf8(bytes)
        if (ev[0] != Cache.EVENT_DONE) {
            tokens.add(ev[1])
            return GenerationEvent.Token(ev[1], piece)
        }
        finished = true
        close()
        val r = GenerationResult.of(tokens.toIntArray(), Native.utf8(text.toByteArray()), longs, doubles)
        result = r
        onDone?.invoke(r)
        return GenerationEvent.Done(r.stopReason, piece, r)
    }

    /** Stops the generation from any thread; the stream then ends with a Done(CANCELLED) event. */
    fun cancel() = cache.streamCancel(this)

    /** Frees the generator and releases the cache; idempotent. */
    override fun close() = cache.streamClose(this)

    /** Called by the cache with its lock held. */
    internal fun freeNativeLocked() {
        if (generator != 0L) {
            Native.generatorFree(generator)
            generator = 0L
        }
    }
}
