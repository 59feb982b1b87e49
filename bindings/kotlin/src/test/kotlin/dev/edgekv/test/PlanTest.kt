package dev.edgekv.test

import dev.edgekv.CacheParams
import dev.edgekv.CacheType
import dev.edgekv.EdgeKvException
import dev.edgekv.Model
import dev.edgekv.ModelParams
import dev.edgekv.Status
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** Memory budgets: Model.planCache, budgets on caches and on model loads. */
class PlanTest {
    private val model = Shared.tiny

    @Test
    fun theChosenCacheTakesThePlannedBytes() {
        // f16 K and V of 200 tokens in 256 rows (the cache grows in chunks
        // of 256): 2 layers x 2 x 2 kv heads x 16 x 2 bytes = 256 bytes a row.
        val plan = model.planCache(CacheParams(memoryBudgetBytes = 65536), contextTokens = 200)
        val chosen = plan.chosen
        assertNotNull(plan.reason, chosen)
        chosen!!
        assertEquals(CacheType.DYNAMIC, chosen.params.type)
        assertEquals(65536L, chosen.params.memoryBudgetBytes)
        assertEquals(256L * 256, chosen.deviceBytes + chosen.hostBytes)
        assertEquals(200, chosen.tokensHeld)
        assertEquals(chosen, plan.candidates[0])
        model.newCache(chosen.params).use { cache ->
            cache.forward(IntArray(200) { 3 + it % 300 })
            val s = cache.stats()
            assertEquals(chosen.deviceBytes, s.deviceBytes)
            assertEquals(chosen.hostBytes, s.hostBytes)
        }
    }

    @Test
    fun aBudgetNothingFitsListsTheCandidates() {
        val plan = model.planCache(CacheParams(memoryBudgetBytes = 4096), contextTokens = 200)
        assertNull(plan.chosen)
        assertTrue(plan.reason, plan.reason.contains("nothing fits"))
        assertTrue(plan.candidates.isNotEmpty())
        for (c in plan.candidates) {
            assertFalse(c.fits)
            assertTrue(c.deviceBytes + c.hostBytes > 4096)
        }
        expectStatus(Status.OUT_OF_MEMORY) { model.newCache(CacheParams(maxCacheLen = 200, memoryBudgetBytes = 4096)) }
    }

    @Test
    fun budgetsOnCachesAndModels() {
        // A static cache of 200 tokens takes 200 rows: 51200 bytes.
        val sized = model.planCache(CacheParams.static(maxCacheLen = 200), contextTokens = 100)
        assertEquals(1, sized.candidates.size)
        assertEquals(51200L, sized.chosen?.deviceBytes)
        val e = expectStatus(Status.OUT_OF_MEMORY) {
            model.newCache(CacheParams.static(maxCacheLen = 200).copy(memoryBudgetBytes = 51199))
        }
        assertTrue(e.message ?: "", (e.message ?: "").contains("51200 bytes"))
        expectStatus(Status.OUT_OF_MEMORY) {
            Model.load(Env.tinyLlamaPath, ModelParams(nThreads = 2, memoryBudgetBytes = 100000))
        }
    }

    private fun expectStatus(status: Status, block: () -> AutoCloseable): EdgeKvException {
        try {
            block().close()
        } catch (e: EdgeKvException) {
            assertEquals(e.message, status, e.status)
            return e
        }
        fail("expected $status")
        throw AssertionError()
    }
}
