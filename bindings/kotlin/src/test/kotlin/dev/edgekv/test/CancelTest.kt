package dev.edgekv.test

import dev.edgekv.Cache
import dev.edgekv.CacheParams
import dev.edgekv.ChatMessage
import dev.edgekv.EdgeKvException
import dev.edgekv.GenerateParams
import dev.edgekv.GenerationEvent
import dev.edgekv.Native
import dev.edgekv.Status
import dev.edgekv.StopReason
import dev.edgekv.StopRequest
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** cancel() from another thread: during a long prefill and after N tokens. */
class CancelTest {
    private val model = Shared.smollm2
    private val head = syntheticPrompt(16, 1000, 20000, 3)
    private val longPrompt = syntheticPrompt(2000, 1000, 20000, 4)

    /** Triggers `cancel` from another thread after [afterMs]; returns the trigger time. */
    private fun cancelLater(afterMs: Long, cancel: () -> Unit): Pair<TestThread, LongArray> {
        val at = LongArray(1)
        val t = TestThread("canceller") {
            Thread.sleep(afterMs)
            at[0] = System.nanoTime()
            cancel()
        }.start()
        return t to at
    }

    @Test
    fun cancelDuringALongPrefillStopsPromptlyAndKeepsTheCache() {
        model.newCache(CacheParams.dynamic()).use { cache ->
            model.newCache(CacheParams.dynamic()).use { reference ->
                cache.forward(head)
                reference.forward(head)
                val (canceller, at) = cancelLater(300) { cache.cancel() }
                val t0 = System.nanoTime()
                try {
                    cache.forward(longPrompt)
                    fail("the 2000-token prefill was not cancelled")
                } catch (e: EdgeKvException) {
                    assertEquals(Status.CANCELLED, e.status)
                }
                val tReturn = System.nanoTime()
                canceller.join()
                val latencyMs = (tReturn - at[0]) / 1e6
                println(String.format(
                    "[ cancel ] forward: 2000-token prefill on SmolLM2 cancelled %.0f ms in, returned %.1f ms after cancel()",
                    (at[0] - t0) / 1e6, latencyMs))
                assertTrue("latency $latencyMs ms", latencyMs < 2000)
                // The cache is as before the call, and goes on like one that never saw it.
                assertEquals(16, cache.seqLen)
                assertArrayEquals(reference.forward(intArrayOf(1234)), cache.forward(intArrayOf(1234)), 0f)
            }
        }
    }

    /**
     * A stop request the app attached to the native cache itself (as a C
     * caller sharing the cache would) stays attached and honoured across the
     * binding's calls, and cancel() still stops a forward beside it: the
     * binding passes its own request per call instead of attaching it.
     */
    @Test
    fun anAppRequestAttachedToTheNativeCacheStaysBesideCancel() {
        model.newCache(CacheParams.dynamic()).use { cache ->
            model.newCache(CacheParams.dynamic()).use { reference ->
                val app = Native.cancelCreate()
                try {
                    Native.cacheSetCancel(nativeHandle(cache), app)
                    cache.forward(head)
                    reference.forward(head)
                    // cancel() as soon as the 2000-token forward holds the cache.
                    val canceller = TestThread("canceller") {
                        while (!cache.isBusy) Thread.sleep(1)
                        cache.cancel()
                    }.start()
                    try {
                        cache.forward(longPrompt)
                        fail("cancel() did not stop the forward")
                    } catch (e: EdgeKvException) {
                        assertEquals(Status.CANCELLED, e.status)
                    }
                    canceller.join()
                    assertEquals(16, cache.seqLen)
                    assertFalse(Native.cancelIsTriggered(app))

                    // The app's request is still attached: it stops a forward and a generation.
                    Native.cancelTrigger(app)
                    try {
                        cache.forward(intArrayOf(42))
                        fail("the app's stop request attached to the cache was not honoured")
                    } catch (e: EdgeKvException) {
                        assertEquals(Status.CANCELLED, e.status)
                    }
                    assertEquals(StopReason.CANCELLED, cache.generate(head, GenerateParams(maxNewTokens = 2)).stopReason)
                    assertEquals(16, cache.seqLen)
                    Native.cancelReset(app)
                    assertArrayEquals(reference.forward(intArrayOf(1234)), cache.forward(intArrayOf(1234)), 0f)
                } finally {
                    Native.cancelFree(app) // the native cache keeps its own reference until it is freed
                }
            }
        }
    }

    /** The native `ekv_cache` behind [cache] (private: reached as an app mixing C calls would hold it). */
    private fun nativeHandle(cache: Cache): Long =
        Cache::class.java.getDeclaredField("handle").apply { isAccessible = true }.getLong(cache)

    @Test
    fun cancelDuringThePrefillOfAGeneration() {
        model.newCache().use { cache ->
            // Blocking call: a stop is a result, not an exception.
            val (canceller, at) = cancelLater(300) { cache.cancel() }
            val r = cache.generate(longPrompt, GenerateParams(maxNewTokens = 8))
            val latencyMs = millisSince(at[0])
            canceller.join()
            println(String.format("[ cancel ] generate: 2000-token prefill returned %.1f ms after cancel()", latencyMs))
            assertEquals(StopReason.CANCELLED, r.stopReason)
            assertEquals(0, r.nGenerated)
            assertTrue(latencyMs < 2000)
            assertEquals(0, cache.seqLen)

            // The stream: the first step (the prefill) ends with Done(CANCELLED).
            val stream = cache.stream(longPrompt, GenerateParams(maxNewTokens = 8))
            val (canceller2, at2) = cancelLater(300) { stream.cancel() }
            val events = stream.toList()
            val latency2 = millisSince(at2[0])
            canceller2.join()
            println(String.format("[ cancel ] stream: 2000-token prefill returned %.1f ms after cancel()", latency2))
            assertEquals(1, events.size)
            assertEquals(StopReason.CANCELLED, (events[0] as GenerationEvent.Done).stopReason)
            assertTrue(latency2 < 2000)

            // Prompt and cache are reusable: a short generation afterwards
            // equals one in a fresh cache.
            val short = longPrompt.copyOf(24)
            val after = cache.generate(short, GenerateParams(maxNewTokens = 12, stopAtEos = false))
            val fresh = model.newCache().use { it.generate(short, GenerateParams(maxNewTokens = 12, stopAtEos = false)) }
            assertArrayEquals(fresh.tokens, after.tokens)
        }
    }

    @Test
    fun cancelAfterNTokensFromAnotherThread() {
        val prompt = model.tokenize(
            model.applyChatTemplate(listOf(ChatMessage.user("Tell me a long story about a dragon."))), false, true)
        val params = GenerateParams(maxNewTokens = 64, stopAtEos = false)
        val full = model.newCache().use { it.generate(prompt, params) }
        assertEquals(64, full.nGenerated)

        model.newCache().use { cache ->
            // The stream: cancelled by another thread right after the 5th token.
            val stream = cache.stream(prompt, params)
            val seen = ArrayList<GenerationEvent>()
            for (ev in stream) {
                seen.add(ev)
                if (seen.size == 5) TestThread("canceller") { stream.cancel() }.start().join()
            }
            assertEquals(6, seen.size)
            val done = seen.last() as GenerationEvent.Done
            assertEquals(StopReason.CANCELLED, done.stopReason)
            assertArrayEquals(full.tokens.copyOf(5), done.result.tokens)
            assertEquals(prompt.size + 4, cache.seqLen) // every token but the last went in

            // The blocking call: cancelled from another thread after 5 pieces.
            var pieces = 0
            var tCancel = 0L
            val r = cache.generate(prompt, params) {
                if (++pieces == 5) TestThread("canceller") { tCancel = System.nanoTime(); cache.cancel() }.start().join()
            }
            println(String.format("[ cancel ] decode: returned %.1f ms after cancel()", millisSince(tCancel)))
            assertEquals(StopReason.CANCELLED, r.stopReason)
            assertTrue(r.nGenerated in 5..8)
            assertArrayEquals(full.tokens.copyOf(r.nGenerated), r.tokens)
            // The prompt was found in the cache: nothing of it recomputed but the last token.
            assertEquals(prompt.size - 1, r.nPromptReused)

            // Reusable: the whole answer again, equal to the uninterrupted one.
            val again = cache.generate(prompt, params)
            assertArrayEquals(full.tokens, again.tokens)
            assertEquals(full.text, again.text)
        }
    }

    @Test
    fun conversationCancelReachesATurnBeforeAndDuringItsGeneration() {
        // A stop asked while the turn was still rendering its prompt: the call starts stopped.
        Shared.tiny.newCache().use { cache ->
            val stop = StopRequest().apply { requested = true }
            val params = GenerateParams(maxNewTokens = 10, stopAtEos = false)
            val r = cache.generate(intArrayOf(1, 2, 3), params, null, stop)
            assertEquals(StopReason.CANCELLED, r.stopReason)
            assertEquals(0, r.nGenerated)
            assertEquals(10, cache.generate(intArrayOf(1, 2, 3), params).nGenerated) // the next call is not affected
        }
        // From another thread during the turn: the partial answer is kept.
        Shared.tiny.newConversation(template = "chatml").use { conv ->
            var pieces = 0
            val r = conv.send("hello", GenerateParams(maxNewTokens = 100_000, stopAtEos = false)) {
                if (++pieces == 3) TestThread("ui") { conv.cancel() }.start().join()
            }
            assertEquals(StopReason.CANCELLED, r.stopReason)
            assertEquals(2, conv.messages.size)
            assertEquals(r.text, conv.messages[1].content)
            conv.cancel() // idle: nothing happens to the next turn
            assertEquals(StopReason.MAX_TOKENS, conv.send("again", GenerateParams(maxNewTokens = 5, stopAtEos = false)).stopReason)
        }
    }

    @Test
    fun cancelWhenIdleDoesNothing() {
        Shared.tiny.newCache().use { cache ->
            cache.cancel()
            val r = cache.generate(intArrayOf(1, 2, 3), GenerateParams(maxNewTokens = 10, stopAtEos = false))
            assertEquals(StopReason.MAX_TOKENS, r.stopReason)
            assertEquals(10, r.nGenerated)
        }
    }
}
