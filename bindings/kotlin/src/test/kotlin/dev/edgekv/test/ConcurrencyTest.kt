package dev.edgekv.test

import dev.edgekv.CacheParams
import dev.edgekv.ChatMessage
import dev.edgekv.GenerateParams
import dev.edgekv.Model
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test
import java.util.concurrent.CyclicBarrier

/** Two models and four caches in one process, on four threads at once. */
class ConcurrencyTest {
    private val ref = Reference.load()

    @Test
    fun twoModelsFourCachesFourThreads() {
        val tiny = Model.load(Env.tinyLlamaPath, Env.cpu2) // a model of its own, closed at the end
        val smol = Shared.smollm2
        val chatPrompt = { q: String ->
            smol.tokenize(smol.applyChatTemplate(listOf(ChatMessage.user(q))), addSpecial = false, parseSpecial = true)
        }
        val smolPrompts = listOf(chatPrompt("Name three colors."), chatPrompt("What is 2 + 2?"))
        val smolParams = GenerateParams(maxNewTokens = 12, stopAtEos = false)
        val tinyParams = GenerateParams(maxNewTokens = 16, stopAtEos = false)
        // Expected outputs, computed one at a time first.
        val smolExpected = smolPrompts.map { p -> smol.newCache().use { it.generate(p, smolParams).tokens } }

        val tinyIds = tiny.tokenize("The GNU General Pu", addSpecial = false)
        val barrier = CyclicBarrier(5)
        val rounds = 4
        val caches = listOf(
            tiny.newCache(CacheParams.dynamic()),
            tiny.newCache(CacheParams.static(maxCacheLen = 64)),
            smol.newCache(CacheParams.dynamic()),
            smol.newCache(CacheParams.sink(windowLength = 256))
        )
        val threads = caches.mapIndexed { i, cache ->
            TestThread("worker-$i") {
                barrier.await()
                repeat(rounds) { round ->
                    if (i < 2) {
                        val r = cache.generate(ref.inputIds, tinyParams)
                        assertArrayEquals("tiny cache $i round $round", ref.greedy, r.tokens)
                    } else {
                        // Alternating prompts: the cache is cropped and refilled each round.
                        val which = (round + i) % 2
                        val r = cache.generate(smolPrompts[which], smolParams)
                        assertArrayEquals("smol cache $i round $round", smolExpected[which], r.tokens)
                    }
                }
            }.start()
        }
        // Meanwhile the models are shared for text work on this thread.
        barrier.await()
        repeat(50) {
            assertEquals("a😀z", smol.detokenize(smol.tokenize("a😀z", addSpecial = false)))
            assertArrayEquals(tinyIds, tiny.tokenize("The GNU General Pu", addSpecial = false))
        }
        threads.forEach { it.join(300_000) }
        caches.forEach { it.close() }
        tiny.close()
    }
}
