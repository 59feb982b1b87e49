package dev.edgekv.test

import dev.edgekv.CacheParams
import dev.edgekv.CacheType
import dev.edgekv.EdgeKvException
import dev.edgekv.GenerateParams
import dev.edgekv.KvDtype
import dev.edgekv.Model
import dev.edgekv.Status
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.channels.FileChannel
import java.nio.file.Paths
import java.nio.file.StandardOpenOption

/**
 * Models read from a file descriptor (Android assets) and from a direct
 * ByteBuffer, caches written to and read from byte arrays, and a cache's
 * parameters: each against the same model loaded from its path.
 */
class InMemoryTest {
    private val ref = Reference.load()
    private val greedy = GenerateParams(maxNewTokens = 16, stopAtEos = false)

    private fun greedyIds(model: Model): IntArray =
        model.newCache(CacheParams.dynamic()).use { it.generate(ref.inputIds, greedy).tokens }

    private inline fun expectError(status: Status, block: () -> Unit) {
        try {
            block()
        } catch (e: EdgeKvException) {
            assertEquals("${e.message}", status, e.status)
            assertTrue((e.message ?: "").isNotEmpty())
            return
        }
        fail("expected EdgeKvException($status)")
    }

    /** The fixture's bytes after [padding] bytes of zeros, in a temporary file (an APK-like container). */
    private fun paddedCopy(padding: Int): File {
        val f = File.createTempFile("edgekv-asset", ".bin")
        f.deleteOnExit()
        f.writeBytes(ByteArray(padding) + File(Env.tinyLlamaPath).readBytes())
        return f
    }

    @Test
    fun modelFromADescriptorRangeGeneratesAsFromItsPath() {
        val want = greedyIds(Shared.tiny)
        assertArrayEquals(ref.greedy, want)
        val size = File(Env.tinyLlamaPath).length()
        // Page-aligned (read in place) and misaligned (tensors copied) offsets.
        for (padding in intArrayOf(0, 4096, 101)) {
            val f = paddedCopy(padding)
            val model = FileInputStream(f).use { s ->
                Model.loadFromFd(descriptorOf(s, f), padding.toLong(), size, Env.cpu2)
            } // the descriptor is closed here; the mapping stays
            model.use {
                assertEquals("llama", it.info.architecture)
                assertTrue(it.path.startsWith("fd "))
                assertArrayEquals("offset $padding", want, greedyIds(it))
            }
        }
    }

    @Test
    fun badDescriptorsAndRangesAreRefused() {
        val f = paddedCopy(0)
        FileInputStream(f).use { s ->
            val fd = descriptorOf(s, f)
            expectError(Status.IO) { Model.loadFromFd(fd, 0, f.length() + 1, Env.cpu2) }  // past the end
            expectError(Status.IO) { Model.loadFromFd(fd, f.length(), 1, Env.cpu2) }
            expectError(Status.INVALID_FILE) { Model.loadFromFd(fd, 1, f.length() - 1, Env.cpu2) }  // not GGUF there
        }
        expectError(Status.INVALID_ARGUMENT) { Model.loadFromFd(-1, 0, 16, Env.cpu2) }
        expectError(Status.IO) { Model.loadFromFd(987_654, 0, 16, Env.cpu2) }  // not open
        try {
            Model.loadFromFd(0, -1, 16, Env.cpu2)
            fail("a negative offset was accepted")
        } catch (e: IllegalArgumentException) {
        }
    }

    @Test
    fun modelFromAMappedBufferAndFromADirectCopy() {
        val want = greedyIds(Shared.tiny)
        val mapped = FileChannel.open(Paths.get(Env.tinyLlamaPath), StandardOpenOption.READ).use {
            it.map(FileChannel.MapMode.READ_ONLY, 0, it.size())
        }
        Model.loadFromBuffer(mapped, Env.cpu2).use { assertArrayEquals(want, greedyIds(it)) }

        // Bytes between position and limit: the model after 64 bytes of junk.
        val bytes = File(Env.tinyLlamaPath).readBytes()
        val direct = ByteBuffer.allocateDirect(bytes.size + 64)
        direct.position(64)
        direct.put(bytes)
        direct.position(64)
        Model.loadFromBuffer(direct, Env.cpu2).use { assertArrayEquals(want, greedyIds(it)) }
        assertEquals("the buffer's position is left as it was", 64, direct.position())
    }

    @Test
    fun aBufferModelOutlivesTheCallersReferenceThroughItsCache() {
        val want = greedyIds(Shared.tiny)
        // Only the model (and then only the cache) keeps the direct buffer reachable.
        val cache = run {
            val bytes = File(Env.tinyLlamaPath).readBytes()
            val model = Model.loadFromBuffer(ByteBuffer.allocateDirect(bytes.size).put(bytes).also { it.flip() }, Env.cpu2)
            val c = model.newCache(CacheParams.dynamic())
            model.close()
            c
        }
        repeat(3) {
            System.gc()
            Thread.sleep(20)
        }
        cache.use { assertArrayEquals(want, it.generate(ref.inputIds, greedy).tokens) }
    }

    @Test
    fun heapAndGarbageBuffersAreRefused() {
        try {
            Model.loadFromBuffer(ByteBuffer.wrap(File(Env.tinyLlamaPath).readBytes()), Env.cpu2)
            fail("a heap buffer was accepted")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("direct"))
        }
        val junk = ByteBuffer.allocateDirect(4096)
        for (i in 0 until 4096) junk.put(i, (i * 31).toByte())
        expectError(Status.INVALID_FILE) { Model.loadFromBuffer(junk, Env.cpu2) }
    }

    @Test
    fun cacheBytesRoundTripAndContinueLikeTheOriginal() {
        val model = Shared.tiny
        for (params in listOf(CacheParams.dynamic(), CacheParams.quantized(nbits = 4, qGroupSize = 8, residualLength = 8),
            CacheParams.sink(windowLength = 12, numSinkTokens = 2))) {
            model.newCache(params).use { original ->
                original.forward(ref.inputIds)
                val bytes = original.saveToBytes()
                assertTrue(bytes.size > 16)
                model.loadCache(bytes).use { copy ->
                    assertEquals(original.seqLen, copy.seqLen)
                    assertEquals(original.params, copy.params)
                    val next = ref.greedy.copyOfRange(0, 4)
                    assertArrayEquals("${params.type}", original.forward(next), copy.forward(next), 0f)
                }
                // The same bytes as the file save writes.
                val f = File.createTempFile("edgekv-cache", ".ekv")
                f.deleteOnExit()
                model.newCache(params).use { again ->
                    again.forward(ref.inputIds)
                    again.save(f.path)
                    assertArrayEquals(again.saveToBytes(), f.readBytes())
                }
            }
        }
    }

    @Test
    fun corruptOrForeignCacheBytesAreRefused() {
        val bytes = Shared.tiny.newCache().use { it.forward(ref.inputIds); it.saveToBytes() }
        val corrupt = bytes.copyOf()
        corrupt[corrupt.size / 2] = (corrupt[corrupt.size / 2] + 1).toByte()
        expectError(Status.INVALID_FILE) { Shared.tiny.loadCache(corrupt) }
        expectError(Status.INVALID_FILE) { Shared.tiny.loadCache(bytes.copyOf(bytes.size / 2)) }
        expectError(Status.INVALID_FILE) { Shared.tiny.loadCache(ByteArray(0)) }
        expectError(Status.MODEL_MISMATCH) { Shared.smollm2.loadCache(bytes) }
    }

    @Test
    fun paramsReportWhatTheLibraryChose() {
        val model = Shared.tiny
        val asked = CacheParams.quantized(nbits = 2, qGroupSize = 8, residualLength = 16)
        model.newCache(asked).use { c ->
            assertEquals(asked.type, c.params.type)
            assertEquals(KvDtype.KIVI, c.params.dtype)
            assertEquals(2, c.params.nbits)
            assertEquals(16, c.params.residualLength)
        }
        // AUTO under a budget: the library picks; params say what.
        model.newCache(CacheParams(maxCacheLen = 64, memoryBudgetBytes = 1L shl 30)).use { c ->
            assertNotEquals(CacheType.AUTO, c.params.type)
            assertEquals(1L shl 30, c.params.memoryBudgetBytes)
        }
    }
}
