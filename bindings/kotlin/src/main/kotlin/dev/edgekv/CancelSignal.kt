package dev.edgekv

import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock

/**
 * A stop request (`ekv_cancel`) that any thread may trigger at any moment,
 * e.g. to stop a [Model.load] from a UI thread. Caches have their own (see
 * [Cache.cancel]); this class is for calls that are not on a cache.
 *
 * Triggering is sticky until [reset]. [close] waits until no call is using
 * the signal, then frees it.
 */
class CancelSignal : AutoCloseable {
    private val lock = ReentrantLock()
    private val changed = lock.newCondition() // signalled when a call ends
    private var handle: Long = Native.cancelCreate()
    private var users = 0

    /** Requests the stop. Any thread; never blocks on native work. No-op once closed. */
    fun cancel() {
        lock.withLock { if (handle != 0L) Native.cancelTrigger(handle) }
    }

    /** Clears the request so the signal can serve another call. */
    fun reset() {
        lock.withLock { if (handle != 0L) Native.cancelReset(handle) }
    }

    val isCancelled: Boolean
        get() = lock.withLock { handle != 0L && Native.cancelIsTriggered(handle) }

    /** Runs block with the native handle, which stays valid until it returns. */
    internal fun <T> withHandle(block: (Long) -> T): T {
        val h = lock.withLock {
            check(handle != 0L) { "CancelSignal is closed" }
            users++
            handle
        }
        try {
            return block(h)
        } finally {
            lock.withLock {
                users--
                changed.signalAll()
            }
        }
    }

    override fun close() {
        lock.withLock {
            if (handle == 0L) return
            while (users > 0) changed.awaitUninterruptibly()
            Native.cancelFree(handle)
            handle = 0L
        }
    }
}
