package dev.edgekv.test

import dev.edgekv.Backend
import dev.edgekv.CacheParams
import dev.edgekv.CacheType
import dev.edgekv.EdgeKv
import dev.edgekv.GenerateParams
import dev.edgekv.GenerationEvent
import dev.edgekv.KvDtype
import dev.edgekv.LogitsMode
import dev.edgekv.StopReason
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The committed tiny Llama fixture against its Hugging Face reference. */
class TinyLlamaTest {
    private val ref = Reference.load()
    private val model = Shared.tiny
    private val greedy = GenerateParams(maxNewTokens = 16, stopAtEos = false)

    @Test
    fun modelInfoAndLibrary() {
        val info = model.info
        assertEquals("llama", info.architecture)
        assertEquals(ref.nVocab, info.nVocab)
        assertEquals(Backend.CPU, info.backend)
        assertEquals(CacheType.DYNAMIC, info.naturalCache)
        assertTrue(info.nLayers > 0 && info.nParams > 0)
        assertTrue(info.decodeWeightBytes > 0 && info.decodeWeightBytes <= info.weightBytes)
        assertTrue(EdgeKv.version.matches(Regex("\\d+\\.\\d+\\.\\d+")))
        assertEquals(1, EdgeKv.devices(Backend.CPU).size.coerceAtMost(1))
        assertTrue(Backend.CPU.isAvailable)
    }

    @Test
    fun greedyIdsEqualTheReferenceIds() {
        assertEquals(16, ref.greedy.size)
        model.newCache(CacheParams.dynamic()).use { cache ->
            val r = cache.generate(ref.inputIds, greedy)
            assertArrayEquals(ref.greedy, r.tokens)
            assertEquals(StopReason.MAX_TOKENS, r.stopReason)
            assertEquals(ref.inputIds.size, r.nPromptTokens)
            assertEquals(0, r.nPromptReused)
            assertEquals(ref.inputIds.size, r.nPromptForwarded)
            // Every token but the last went through the model.
            assertEquals(ref.inputIds.size + 15, cache.seqLen)
        }
    }

    @Test
    fun greedyIdsEqualTheReferenceThroughTheSequenceAndWithoutCache() {
        model.newCache().use { cache ->
            val events = cache.stream(ref.inputIds, greedy).toList()
            val ids = events.filterIsInstance<GenerationEvent.Token>().map { it.id }.toIntArray()
            assertArrayEquals(ref.greedy, ids)
            val done = events.last() as GenerationEvent.Done
            assertEquals(StopReason.MAX_TOKENS, done.stopReason)
            assertArrayEquals(ref.greedy, done.result.tokens)
            assertEquals(17, events.size)
        }
        // use_cache=False recomputes each step and picks the same tokens.
        model.newCache().use { cache ->
            val r = cache.generate(ref.inputIds, greedy.copy(useCache = false))
            assertArrayEquals(ref.greedy, r.tokens)
            assertEquals(0, cache.seqLen)
        }
    }

    @Test
    fun logitsMatchTheReference() {
        val seq = ref.inputIds + ref.greedy.copyOfRange(0, ref.greedy.size - 1)
        model.newCache(CacheParams(type = CacheType.DYNAMIC, dtype = KvDtype.F32)).use { cache ->
            val all = cache.forward(seq, LogitsMode.ALL)
            assertEquals(seq.size * ref.nVocab, all.size)
            for (p in seq.indices) {
                val row = all.copyOfRange(p * ref.nVocab, (p + 1) * ref.nVocab)
                val err = normalizedMaxError(row, ref.row(p))
                assertTrue("position $p: normalized error $err", err < 1e-4)
                assertEquals("argmax at $p", argmax(ref.row(p)), argmax(row))
            }
        }
        // Chunked prefill with explicit cache positions, then the last row.
        model.newCache(CacheParams(type = CacheType.STATIC, dtype = KvDtype.F32, maxCacheLen = 64)).use { cache ->
            cache.forward(seq.copyOfRange(0, 7), LogitsMode.LAST, IntArray(7) { it })
            val last = cache.forward(seq.copyOfRange(7, 12), LogitsMode.LAST, IntArray(5) { 7 + it })
            assertTrue(normalizedMaxError(last, ref.row(11)) < 1e-4)
            // A position below seq_len crops first (HF cache_position): rewrite 11.
            val again = cache.forward(intArrayOf(seq[11]), LogitsMode.LAST, intArrayOf(11))
            assertTrue(normalizedMaxError(again, ref.row(11)) < 1e-4)
            assertEquals(12, cache.seqLen)
        }
        // Without a cache (use_cache=False; the temporary cache keeps f16 KV: 1e-2 as in the C++ tests).
        val nc = model.forward(ref.inputIds)
        assertTrue(normalizedMaxError(nc, ref.row(ref.inputIds.size - 1)) < 1e-2)
        assertEquals(argmax(ref.row(ref.inputIds.size - 1)), argmax(nc))
    }

    @Test
    fun tokenizerRoundTrip() {
        val text = "The GNU General Pu"
        val ids = model.tokenize(text, addSpecial = false)
        // The reference prompt is this text's HF tokenization.
        assertArrayEquals(ref.inputIds, ids)
        assertEquals(text, model.detokenize(ids))
        val pieces = ids.map { String(model.tokenBytes(it), Charsets.UTF_8) }.joinToString("")
        assertEquals(text, pieces)
    }

    @Test
    fun libraryDefaultsAreTheBindingsDefaults() {
        assertEquals(CacheParams.libraryDefaults(), CacheParams())
        assertEquals(GenerateParams.libraryDefaults(), GenerateParams())
    }
}
