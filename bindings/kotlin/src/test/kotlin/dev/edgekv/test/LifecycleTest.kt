package dev.edgekv.test

import dev.edgekv.CacheParams
import dev.edgekv.EdgeKvException
import dev.edgekv.GenerateParams
import dev.edgekv.GenerationEvent
import dev.edgekv.GenerationResult
import dev.edgekv.Model
import dev.edgekv.Status
import dev.edgekv.StopReason
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.util.Random
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

/** close() against running calls, close order, one call at a time per cache. */
class LifecycleTest {
    private val ref = Reference.load()
    private val greedy = GenerateParams(maxNewTokens = 16, stopAtEos = false)
    private val long = GenerateParams(maxNewTokens = 100_000, stopAtEos = false)

    private inline fun expectIllegalState(fragment: String, block: () -> Unit) {
        try {
            block()
            fail("expected IllegalStateException containing '$fragment'")
        } catch (e: IllegalStateException) {
            assertTrue("'${e.message}' lacks '$fragment'", e.message!!.contains(fragment))
        }
    }

    @Test
    fun closeIsIdempotentAndUseAfterCloseThrows() {
        val model = Model.load(Env.tinyLlamaPath, Env.cpu2)
        val cache = model.newCache()
        cache.forward(ref.inputIds)
        cache.close()
        cache.close()
        assertTrue(cache.isClosed)
        cache.cancel() // a no-op, never a crash
        expectIllegalState("closed") { cache.seqLen }
        expectIllegalState("closed") { cache.generate(ref.inputIds) }
        expectIllegalState("closed") { cache.stream(ref.inputIds) }
        expectIllegalState("closed") { cache.clone() }
        model.close()
        model.close()
        assertFalse(model.isOpen)
        assertTrue(model.isReleased)
        expectIllegalState("closed") { model.tokenize("x") }
        expectIllegalState("closed") { model.newCache() }
    }

    /**
     * close() on the main thread while another thread generates: close
     * cancels the call, waits until it has left native code, then frees.
     * Repeated with random timing, through the blocking call and the stream.
     */
    @Test
    fun closeRacesAGenerationOnAnotherThread() {
        val model = Shared.tiny
        val random = Random(42)
        var cancelledRuns = 0
        var refusedRuns = 0
        for (round in 0 until 24) {
            val cache = model.newCache(if (round % 3 == 2) CacheParams.static(maxCacheLen = 4096) else CacheParams())
            val started = CountDownLatch(1)
            val pieces = AtomicInteger()
            var result: GenerationResult? = null
            var refused: Throwable? = null
            val useStream = round % 2 == 1
            val worker = TestThread("generator-$round") {
                try {
                    if (useStream) {
                        cache.stream(ref.inputIds, long).use { s ->
                            for (ev in s) {
                                pieces.incrementAndGet()
                                started.countDown()
                                if (ev is GenerationEvent.Done) result = ev.result
                            }
                        }
                    } else {
                        result = cache.generate(ref.inputIds, long) {
                            pieces.incrementAndGet()
                            started.countDown()
                        }
                    }
                } catch (e: IllegalStateException) {
                    refused = e // closed before it began, or the stream was closed under the iterator
                } finally {
                    started.countDown()
                }
            }.start()
            when (round % 4) {
                0 -> Unit // close at once: before, while or just after the call begins
                1 -> Thread.sleep(random.nextInt(5).toLong())
                else -> started.await(10, TimeUnit.SECONDS)
            }
            val t0 = System.nanoTime()
            cache.close()
            val closeMs = millisSince(t0)
            worker.join()
            assertTrue(cache.isClosed)
            val r = result
            if (r != null) {
                // The run was under way: close cancelled it (100,000 tokens never finish).
                assertEquals(StopReason.CANCELLED, r.stopReason)
                cancelledRuns++
            } else {
                val e = refused ?: die("round $round: neither a result nor a refusal")
                assertTrue("${e.message}", e.message!!.contains("closed"))
                refusedRuns++
            }
            assertTrue("round $round: close took $closeMs ms", closeMs < 5_000)
        }
        println("[ close ] 24 rounds: $cancelledRuns cancelled under way, $refusedRuns refused (closed first)")
        assertTrue(cancelledRuns > 0)
        // The model is intact: a fresh cache reproduces the reference.
        model.newCache().use { assertArrayEquals(ref.greedy, it.generate(ref.inputIds, greedy).tokens) }
    }

    @Test
    fun closeFromInsideTheCallbackIsRefusedAndCancelWorks() {
        Shared.tiny.newCache().use { cache ->
            var refusal: IllegalStateException? = null
            val r = cache.generate(ref.inputIds, long) {
                if (refusal == null) {
                    try {
                        cache.close()
                    } catch (e: IllegalStateException) {
                        refusal = e
                    }
                    cache.cancel()
                }
            }
            assertTrue(refusal!!.message!!.contains("cancel()"))
            assertEquals(StopReason.CANCELLED, r.stopReason)
            assertFalse(cache.isClosed)
            // Re-entering the cache from its own callback is a busy cache, as in C.
            cache.generate(ref.inputIds, greedy) {
                assertTrue(cache.isBusy)
                try {
                    cache.reset()
                    fail("re-entered a busy cache")
                } catch (e: EdgeKvException) {
                    assertEquals(Status.INVALID_STATE, e.status)
                    assertTrue(e.message!!.contains("busy"))
                }
            }
            assertFalse(cache.isBusy)
        }
    }

    @Test
    fun modelClosedBeforeItsCaches() {
        val model = Model.load(Env.tinyLlamaPath, Env.cpu2)
        val cache = model.newCache()
        val conversation = model.newConversation(template = "chatml")
        model.close()
        assertFalse(model.isOpen)
        assertFalse(model.isReleased) // its caches keep it alive
        expectIllegalState("closed") { model.tokenize("x") }
        expectIllegalState("closed") { model.newCache() }
        // The caches go on working, clones included.
        assertArrayEquals(ref.greedy, cache.generate(ref.inputIds, greedy).tokens)
        val clone = cache.clone()
        assertEquals(27, clone.seqLen)
        val turn = conversation.send("hi", GenerateParams(maxNewTokens = 5, stopAtEos = false))
        assertEquals(5, turn.nGenerated)
        assertEquals(2, conversation.messages.size)
        cache.close()
        clone.close()
        assertFalse(model.isReleased)
        conversation.close()
        assertTrue(model.isReleased) // the last one freed it
    }

    @Test
    fun oneCallAtATimePerCache() {
        Shared.tiny.newCache().use { cache ->
            val stream = cache.stream(ref.inputIds, greedy)
            val it = stream.iterator()
            it.next()
            // Another thread (or this one) meets a busy cache while the stream holds it.
            val other = TestThread("other") {
                try {
                    cache.generate(ref.inputIds)
                    fail("a busy cache ran a second generation")
                } catch (e: EdgeKvException) {
                    assertEquals(Status.INVALID_STATE, e.status)
                    assertTrue(e.message!!.contains("busy"))
                }
            }.start()
            other.join()
            assertTrue(cache.isBusy)
            for (write in listOf<() -> Unit>({ cache.reset() }, { cache.crop(0) }, { cache.forward(intArrayOf(1)) }, { cache.clone().close() })) {
                try {
                    write()
                    fail("changed a busy cache")
                } catch (e: EdgeKvException) {
                    assertEquals(Status.INVALID_STATE, e.status)
                }
            }
            // Read-only queries go to the library, which answers them (the state
            // after the last finished step) or, in older versions, reports busy.
            try {
                assertTrue(cache.stats().seqLen >= 0)
            } catch (e: EdgeKvException) {
                assertEquals(Status.INVALID_STATE, e.status)
            }
            while (it.hasNext()) it.next()
            // Done: the stream released the cache.
            assertEquals(27, cache.seqLen)
            assertArrayEquals(ref.greedy, stream.result!!.tokens)
            try {
                stream.iterator()
                fail("iterated twice")
            } catch (e: IllegalStateException) {
            }
        }
    }

    @Test
    fun abandonedStreamIsClosedWithItsCache() {
        val cache = Shared.tiny.newCache()
        val stream = cache.stream(ref.inputIds, greedy)
        val it = stream.iterator()
        it.next()
        it.next()
        cache.close() // frees the generator too
        expectIllegalState("closed") { it.next() }
        stream.close() // idempotent
        // A stream closed early releases the cache for other calls.
        Shared.tiny.newCache().use { c ->
            c.stream(ref.inputIds, greedy).use { s -> s.iterator().next() }
            assertArrayEquals(ref.greedy, c.generate(ref.inputIds, greedy).tokens)
        }
    }
}
