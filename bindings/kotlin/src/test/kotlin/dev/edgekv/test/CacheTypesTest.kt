package dev.edgekv.test

import dev.edgekv.CacheParams
import dev.edgekv.CacheType
import dev.edgekv.EdgeKvException
import dev.edgekv.GenerateParams
import dev.edgekv.KvDtype
import dev.edgekv.Placement
import dev.edgekv.Status
import dev.edgekv.StopReason
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/** Every generic cache type with its HF parameters, and the cache operations. */
class CacheTypesTest {
    private val ref = Reference.load()
    private val model = Shared.tiny
    private val greedy = GenerateParams(maxNewTokens = 16, stopAtEos = false)

    @Test
    fun everyGenericTypeGeneratesWithItsParameters() {
        // (params, resolved type, capacity, equals HF's greedy ids)
        val cases = listOf(
            Triple(CacheParams(), CacheType.DYNAMIC, -1),
            Triple(CacheParams.dynamic(), CacheType.DYNAMIC, -1),
            Triple(CacheParams.static(maxCacheLen = 40), CacheType.STATIC, 40),
            Triple(CacheParams.offloaded(), CacheType.OFFLOADED, -1),
            Triple(CacheParams.offloaded(Placement.UNIFIED), CacheType.OFFLOADED, -1),
            Triple(CacheParams.offloadedStatic(maxCacheLen = 40), CacheType.OFFLOADED_STATIC, 40),
            Triple(CacheParams.slidingWindow(windowLength = 32), CacheType.SLIDING_WINDOW, 32),
            Triple(CacheParams.sink(windowLength = 32, numSinkTokens = 4), CacheType.SINK, 32),
            Triple(CacheParams(type = CacheType.DYNAMIC, dtype = KvDtype.F32, offload = Placement.HOST), CacheType.DYNAMIC, -1)
        )
        for ((params, type, capacity) in cases) {
            model.newCache(params).use { cache ->
                assertEquals("$params", type, cache.type)
                assertEquals("$params", capacity, cache.capacity)
                val r = cache.generate(ref.inputIds, greedy)
                // 27 tokens fit in every window here, so each type is exact.
                assertArrayEquals("$params", ref.greedy, r.tokens)
                val s = cache.stats()
                assertEquals(27, s.seqLen)
                assertEquals(27, s.tokensHeld)
                assertEquals(capacity, s.capacity)
                assertEquals(27L, s.tokensForwarded)
                assertTrue("$params: ${s.bytesPerToken}", s.bytesPerToken > 0)
                assertTrue(s.usedBytes > 0 && s.deviceBytes + s.hostBytes >= s.usedBytes)
                if (params.offload == Placement.HOST || type == CacheType.OFFLOADED || type == CacheType.OFFLOADED_STATIC)
                    assertTrue("$params lives in host memory", s.hostBytes > 0)
            }
        }
    }

    @Test
    fun quantizedKiviCachesRun() {
        for (nbits in intArrayOf(2, 4, 8)) {
            model.newCache(CacheParams.quantized(nbits = nbits, qGroupSize = 16, residualLength = 16)).use { cache ->
                assertEquals(CacheType.QUANTIZED, cache.type)
                val r = cache.generate(ref.inputIds, greedy.copy(maxNewTokens = 40))
                assertEquals(40, r.nGenerated)
                // 8-bit KIVI of this tiny model keeps the greedy path of f16.
                if (nbits == 8) assertArrayEquals(ref.greedy, r.tokens.copyOfRange(0, 16))
                assertEquals(51, cache.seqLen)
            }
        }
        // KIVI storage under another retention policy: a 4-bit sink cache in host memory.
        val p = CacheParams(type = CacheType.SINK, windowLength = 32, numSinkTokens = 4, dtype = KvDtype.KIVI,
            nbits = 4, qGroupSize = 16, residualLength = 16, offload = Placement.HOST)
        model.newCache(p).use { cache ->
            val r = cache.generate(ref.inputIds, greedy.copy(maxNewTokens = 60))
            assertEquals(60, r.nGenerated)
            val s = cache.stats()
            assertEquals(71, s.seqLen)
            assertEquals(32, s.tokensHeld)
        }
    }

    @Test
    fun ringsKeepTheirWindowOnLongStreams() {
        model.newCache(CacheParams.sink(windowLength = 16, numSinkTokens = 4)).use { cache ->
            cache.generate(ref.inputIds, greedy.copy(maxNewTokens = 400))
            val s = cache.stats()
            assertEquals(411, s.seqLen)
            assertEquals(16, s.tokensHeld)
            assertEquals(16, s.capacity)
            // The ring dropped what a crop to 10 would need.
            try {
                cache.crop(10)
                fail("crop of a ring past its window")
            } catch (e: EdgeKvException) {
                assertEquals(Status.INVALID_STATE, e.status)
                assertTrue(e.message!!.isNotEmpty())
            }
        }
    }

    @Test
    fun resetCropAndReuse() {
        model.newCache().use { cache ->
            val first = cache.generate(ref.inputIds, greedy)
            assertEquals(27, cache.seqLen)
            // The same prompt again: everything but the last prompt token is reused.
            val again = cache.generate(ref.inputIds, greedy)
            assertArrayEquals(first.tokens, again.tokens)
            assertEquals(ref.inputIds.size - 1, again.nPromptReused)
            assertEquals(1, again.nPromptForwarded)
            cache.crop(5)
            assertEquals(5, cache.seqLen)
            val afterCrop = cache.generate(ref.inputIds, greedy)
            assertArrayEquals(ref.greedy, afterCrop.tokens)
            assertEquals(5, afterCrop.nPromptReused)
            cache.reset()
            assertEquals(0, cache.seqLen)
            assertEquals(0, cache.stats().tokensHeld)
            assertArrayEquals(ref.greedy, cache.generate(ref.inputIds, greedy).tokens)
        }
    }

    @Test
    fun cloneSharesAPrefix() {
        model.newCache().use { base ->
            base.forward(ref.inputIds)
            base.clone().use { copy ->
                assertEquals(12, copy.seqLen)
                val r = copy.generate(ref.inputIds, greedy)
                assertArrayEquals(ref.greedy, r.tokens)
                assertEquals(11, r.nPromptReused)
                assertEquals(12, base.seqLen) // the original is untouched
            }
            // The original still works after its clone is gone.
            assertArrayEquals(ref.greedy, base.generate(ref.inputIds, greedy).tokens)
        }
    }

    @Test
    fun saveAndLoad() {
        val file = File.createTempFile("edgekv-cache", ".ekvc")
        try {
            model.newCache(CacheParams.static(maxCacheLen = 64)).use { cache ->
                cache.forward(ref.inputIds)
                cache.save(file.path)
            }
            assertTrue(file.length() > 0)
            model.loadCache(file.path).use { loaded ->
                assertEquals(CacheType.STATIC, loaded.type)
                assertEquals(64, loaded.capacity)
                assertEquals(12, loaded.seqLen)
                val r = loaded.generate(ref.inputIds, greedy)
                assertArrayEquals(ref.greedy, r.tokens)
                assertEquals(11, r.nPromptReused)
                assertEquals(StopReason.MAX_TOKENS, r.stopReason)
            }
        } finally {
            file.delete()
        }
    }
}
