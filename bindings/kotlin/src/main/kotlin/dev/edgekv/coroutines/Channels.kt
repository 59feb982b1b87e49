package dev.edgekv.coroutines

import dev.edgekv.Cache
import dev.edgekv.Conversation
import dev.edgekv.GenerateParams
import dev.edgekv.GenerationEvent
import dev.edgekv.GenerationStream
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.ReceiveChannel
import kotlinx.coroutines.channels.produce
import kotlinx.coroutines.launch
import kotlinx.coroutines.suspendCancellableCoroutine

/**
 * Coroutine adapters (kotlinx-coroutines 1.0+): a generation as a
 * [ReceiveChannel] of [GenerationEvent]s, produced on [Dispatchers.IO].
 *
 * Cancelling the channel (`channel.cancel()`) or the scope's job stops the
 * native work at once, prefill included: a watcher coroutine triggers the
 * stream's stop request the moment the producer is cancelled, although the
 * producer itself is blocked in native code. The producer then frees the
 * generator and releases the cache. Errors (a busy cache, a failed step)
 * close the channel with the [dev.edgekv.EdgeKvException]: the consumer's
 * receive (or `for` loop) throws it, and [scope] is not cancelled by it.
 */
fun Cache.generateChannel(
    scope: CoroutineScope,
    prompt: IntArray,
    params: GenerateParams = GenerateParams(),
    capacity: Int = 64
): ReceiveChannel<GenerationEvent> = produceFrom(scope, capacity) { stream(prompt, params) }

/** One turn of a [Conversation] as a channel; see [generateChannel]. */
fun Conversation.sendChannel(
    scope: CoroutineScope,
    user: String,
    params: GenerateParams = GenerateParams(),
    capacity: Int = 64
): ReceiveChannel<GenerationEvent> = produceFrom(scope, capacity) { stream(user, params) }

private fun produceFrom(
    scope: CoroutineScope,
    capacity: Int,
    open: () -> GenerationStream
): ReceiveChannel<GenerationEvent> = scope.produce(Dispatchers.IO, capacity) {
    val stream = try {
        open()
    } catch (e: Exception) {
        close(e)
        return@produce
    }
    try {
        // Runs until the producer ends or is cancelled; on cancellation it
        // stops the step the producer is blocked in.
        val watcher = launch(start = CoroutineStart.UNDISPATCHED) {
            try {
                suspendCancellableCoroutine<Unit> { }
            } finally {
                stream.cancel()
            }
        }
        try {
            for (event in stream) send(event)
        } catch (e: Exception) {
            if (e is CancellationException) throw e
            close(e) // to the consumer, not to the scope
        } finally {
            watcher.cancel()
        }
    } finally {
        stream.close()
    }
}
