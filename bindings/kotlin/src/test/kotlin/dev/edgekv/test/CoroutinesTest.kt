package dev.edgekv.test

import dev.edgekv.EdgeKvException
import dev.edgekv.GenerateParams
import dev.edgekv.GenerationEvent
import dev.edgekv.Status
import dev.edgekv.StopReason
import dev.edgekv.coroutines.generateChannel
import dev.edgekv.coroutines.sendChannel
import kotlinx.coroutines.GlobalScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.channels.toList
import kotlinx.coroutines.delay
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** The kotlinx-coroutines Channel adapter, and cancellation reaching native code. */
class CoroutinesTest {
    private val ref = Reference.load()
    private val greedy = GenerateParams(maxNewTokens = 16, stopAtEos = false)

    /** Waits until the cache is free again (its running call returned); returns the wait in ms. */
    private fun waitUntilFree(cache: dev.edgekv.Cache, limitMs: Long = 10_000): Double {
        val t0 = System.nanoTime()
        while (cache.isBusy) {
            if (millisSince(t0) > limitMs) die("the cache is still busy after $limitMs ms")
            Thread.sleep(1)
        }
        return millisSince(t0)
    }

    @Test
    fun channelEventsEqualTheReference() = runBlocking {
        Shared.tiny.newCache().use { cache ->
            val events = cache.generateChannel(this, ref.inputIds, greedy).toList()
            assertArrayEquals(ref.greedy, events.filterIsInstance<GenerationEvent.Token>().map { it.id }.toIntArray())
            val done = events.last() as GenerationEvent.Done
            assertEquals(StopReason.MAX_TOKENS, done.stopReason)
            assertEquals(27, cache.seqLen)
        }
    }

    @Test
    fun cancellingTheJobStopsANativePrefill() {
        val model = Shared.smollm2
        val prompt = syntheticPrompt(2000, 1000, 20000, 4)
        model.newCache().use { cache ->
            var received = 0
            var tCancel = 0L
            runBlocking {
                val job: Job = GlobalScope.launch {
                    for (ev in cache.generateChannel(this, prompt, GenerateParams(maxNewTokens = 8))) received++
                }
                delay(300)
                tCancel = System.nanoTime()
                job.cancel()
                job.join()
            }
            val joinedMs = millisSince(tCancel)
            // The producer was blocked in the prefill; the job's cancellation stopped it there.
            val freeMs = waitUntilFree(cache) + joinedMs
            println(String.format("[ cancel ] coroutine: job.cancel() during a 2000-token prefill; cache free %.1f ms later", freeMs))
            assertEquals(0, received)
            assertTrue("$freeMs ms", freeMs < 2000)
            assertEquals(0, cache.seqLen)
        }
    }

    @Test
    fun cancellingTheChannelStopsDecoding() = runBlocking {
        Shared.tiny.newCache().use { cache ->
            val channel = cache.generateChannel(this, ref.inputIds, GenerateParams(maxNewTokens = 100_000, stopAtEos = false), capacity = 0)
            val first = ArrayList<Int>()
            for (ev in channel) {
                first.add((ev as GenerationEvent.Token).id)
                if (first.size == 3) break
            }
            channel.cancel()
            val freeMs = waitUntilFree(cache)
            println(String.format("[ cancel ] coroutine: channel.cancel() while decoding; cache free %.1f ms later", freeMs))
            assertArrayEquals(ref.greedy.copyOf(3), first.toIntArray())
            assertTrue(cache.seqLen in 14..(12 + 100))
            // The cache goes on: the reference continuation again.
            assertArrayEquals(ref.greedy, cache.generate(ref.inputIds, greedy).tokens)
        }
    }

    @Test
    fun errorsCloseTheChannel() = runBlocking {
        Shared.tiny.newCache().use { cache ->
            cache.stream(ref.inputIds, greedy).use { busy ->
                busy.iterator().next()
                try {
                    cache.generateChannel(this, ref.inputIds, greedy).toList()
                    fail("a busy cache produced events")
                } catch (e: EdgeKvException) {
                    assertEquals(Status.INVALID_STATE, e.status)
                }
                // The failure went to the consumer only: this scope is still active.
                assertTrue(isActive)
            }
        }
    }

    @Test
    fun conversationTurnsAsChannels() = runBlocking {
        Shared.smollm2.newConversation().use { chat ->
            val params = GenerateParams(maxNewTokens = 16)
            val t1 = chat.sendChannel(this, "Hi! What is your name?", params).toList().last() as GenerationEvent.Done
            val t2 = chat.sendChannel(this, "And what can you do?", params).toList().last() as GenerationEvent.Done
            assertEquals(0, t1.result.nPromptReused)
            assertTrue(t2.result.nPromptReused >= t1.result.nPromptTokens)
            assertEquals(4, chat.messages.size)
            assertEquals(t2.result.text, chat.messages[3].content)
        }
    }
}
