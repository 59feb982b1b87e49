package dev.edgekv.test

import dev.edgekv.CacheParams
import dev.edgekv.CacheType
import dev.edgekv.CancelSignal
import dev.edgekv.ChatMessage
import dev.edgekv.EdgeKvException
import dev.edgekv.GenerateParams
import dev.edgekv.Model
import dev.edgekv.ModelParams
import dev.edgekv.Status
import dev.edgekv.StopReason
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertSame
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.io.RandomAccessFile

/** Every error path: the status and the library's message reach Kotlin. */
class ErrorsTest {
    private val ref = Reference.load()
    private val model = Shared.tiny

    private inline fun expectError(status: Status, vararg fragments: String, block: () -> Unit): EdgeKvException {
        try {
            block()
        } catch (e: EdgeKvException) {
            assertEquals("${e.message}", status, e.status)
            assertEquals(status.code, e.code)
            val msg = e.message ?: ""
            assertTrue("empty message for $status", msg.isNotEmpty())
            for (f in fragments) assertTrue("'$f' not in '$msg'", msg.contains(f))
            return e
        }
        fail("expected EdgeKvException($status)")
        throw AssertionError()
    }

    private fun tempFile(bytes: ByteArray): File {
        val f = File.createTempFile("edgekv-bad", ".gguf")
        f.writeBytes(bytes)
        f.deleteOnExit()
        return f
    }

    @Test
    fun missingFile() {
        val path = "/nonexistent/dir/model-😀.gguf"
        val e = expectError(Status.IO, "model-😀.gguf") { Model.load(path, Env.cpu2) }
        assertTrue(e.toString().startsWith("EdgeKvException[IO]: "))
        assertTrue(Status.IO.description.isNotEmpty())
    }

    @Test
    fun hostileFiles() {
        // Not a GGUF at all.
        expectError(Status.INVALID_FILE) { Model.load(tempFile("hello, world".toByteArray()).path, Env.cpu2) }
        // The magic and a version, then an absurd tensor count.
        val header = byteArrayOf('G'.toByte(), 'G'.toByte(), 'U'.toByte(), 'F'.toByte(), 3, 0, 0, 0) +
            ByteArray(8) { 0xff.toByte() } + ByteArray(8)
        expectError(Status.INVALID_FILE) { Model.load(tempFile(header).path, Env.cpu2) }
        // The real fixture cut in half: tensors extend past the end of the file.
        val whole = File(Env.tinyLlamaPath).readBytes()
        expectError(Status.INVALID_FILE) { Model.load(tempFile(whole.copyOf(whole.size / 2)).path, Env.cpu2) }
        // The real fixture with its metadata overwritten by garbage.
        val corrupt = whole.copyOf()
        for (i in 24 until 600) corrupt[i] = (i * 131).toByte()
        expectError(Status.INVALID_FILE) { Model.load(tempFile(corrupt).path, Env.cpu2) }
    }

    @Test
    fun wrongCacheTypes() {
        expectError(Status.UNSUPPORTED, "hybrid") { model.newCache(CacheParams.hybrid()) }
        expectError(Status.UNSUPPORTED, "mamba") { model.newCache(CacheParams.mamba()) }
        expectError(Status.UNSUPPORTED) { model.newCache(CacheParams.hybridMamba()) }
        expectError(Status.INVALID_ARGUMENT) { model.newCache(CacheParams(maxCacheLen = -1)) }
        expectError(Status.INVALID_ARGUMENT) { model.newCache(CacheParams.sink(windowLength = 4, numSinkTokens = 4)) }
        expectError(Status.INVALID_ARGUMENT) { CacheType.fromName("lru") }
        assertEquals(CacheType.OFFLOADED_STATIC, CacheType.fromName("offloaded_static"))
    }

    @Test
    fun fullStaticCache() {
        model.newCache(CacheParams.static(maxCacheLen = 16)).use { cache ->
            val prompt = syntheticPrompt(20, 3, 300, 1)
            // More tokens than the cache can hold: nothing is written.
            expectError(Status.CACHE_FULL, "16") { cache.forward(prompt) }
            expectError(Status.CONTEXT_OVERFLOW, "20", "16") { cache.generate(prompt, GenerateParams(maxNewTokens = 4)) }
            assertEquals(0, cache.seqLen)
            // A forward that does not fit what is left writes nothing.
            cache.forward(prompt.copyOf(10))
            expectError(Status.CACHE_FULL) { cache.forward(prompt.copyOfRange(10, 20)) }
            assertEquals(10, cache.seqLen)
            // Filling up while decoding ends the generation (not an error).
            val r = cache.generate(prompt.copyOf(10), GenerateParams(maxNewTokens = 30, stopAtEos = false))
            assertEquals(StopReason.CACHE_FULL, r.stopReason)
            assertTrue("${r.nGenerated}", r.nGenerated in 1..7)
            assertEquals(16, cache.seqLen)
            // Still usable after a reset.
            cache.reset()
            assertEquals(4, cache.generate(prompt.copyOf(10), GenerateParams(maxNewTokens = 4, stopAtEos = false)).nGenerated)
        }
    }

    @Test
    fun badTokensAndParameters() {
        model.newCache().use { cache ->
            expectError(Status.INVALID_TOKEN) { cache.forward(intArrayOf(1, 2, 100_000)) }
            expectError(Status.INVALID_TOKEN) { cache.generate(intArrayOf(1, -5)) }
            assertEquals(0, cache.seqLen)
            expectError(Status.INVALID_ARGUMENT) { cache.generate(ref.inputIds, GenerateParams(temperature = 1f, topP = 2f)) }
            expectError(Status.INVALID_ARGUMENT) { cache.crop(5) } // longer than seq_len 0
            expectError(Status.INVALID_ARGUMENT) { cache.forward(intArrayOf(1, 2), cachePosition = intArrayOf(3, 4)) }
            try {
                cache.forward(intArrayOf(1, 2), cachePosition = intArrayOf(0))
                fail("a position per token is required")
            } catch (e: IllegalArgumentException) {
            }
            // After all that the cache works.
            assertArrayEquals(ref.greedy, cache.generate(ref.inputIds, GenerateParams(maxNewTokens = 16, stopAtEos = false)).tokens)
        }
        expectError(Status.INVALID_ARGUMENT, "nosuch") {
            Shared.smollm2.applyChatTemplate(listOf(ChatMessage.user("hi")), template = "nosuch")
        }
        expectError(Status.INVALID_ARGUMENT) { model.metadata("no.such.key") }
        expectError(Status.INVALID_ARGUMENT) { Model.load(Env.tinyLlamaPath, ModelParams(nThreads = -3)) }
        try {
            Model.load("bad\u0000path")
            fail("NUL in a path")
        } catch (e: IllegalArgumentException) {
        }
    }

    @Test
    fun badCacheFiles() {
        val good = File.createTempFile("edgekv-cache", ".ekvc").also { it.deleteOnExit() }
        model.newCache().use { cache ->
            cache.forward(ref.inputIds)
            cache.save(good.path)
        }
        expectError(Status.IO) { model.loadCache("/nonexistent/cache.ekvc") }
        val bytes = good.readBytes()
        expectError(Status.INVALID_FILE) { model.loadCache(tempFile(bytes.copyOf(bytes.size - 100)).path) }
        val flipped = bytes.copyOf().also { it[it.size / 2] = (it[it.size / 2].toInt() xor 0x40).toByte() }
        expectError(Status.INVALID_FILE) { model.loadCache(tempFile(flipped).path) }
        // Written for another model.
        expectError(Status.MODEL_MISMATCH) { Shared.smollm2.loadCache(good.path) }
        // Saving where nothing can be written.
        model.newCache().use { cache -> expectError(Status.IO) { cache.save("/nonexistent/dir/c.ekvc") } }
    }

    @Test
    fun cancelledAndStoppedLoads() {
        CancelSignal().use { signal ->
            signal.cancel()
            assertTrue(signal.isCancelled)
            expectError(Status.CANCELLED) { Model.load(Env.tinyLlamaPath, Env.cpu2.copy(cancel = signal)) }
            signal.reset()
            Model.load(Env.tinyLlamaPath, Env.cpu2.copy(cancel = signal)).close()
        }
        var calls = 0
        expectError(Status.CANCELLED) {
            Model.load(Env.tinyLlamaPath, Env.cpu2.copy(onProgress = { calls++; false }))
        }
        assertEquals(1, calls)
        val seen = ArrayList<Float>()
        Model.load(Env.tinyLlamaPath, Env.cpu2.copy(onProgress = { seen.add(it); true })).use { m ->
            assertEquals("llama", m.info.architecture)
        }
        assertTrue(seen.isNotEmpty() && seen.last() == 1f && seen.zipWithNext().all { (a, b) -> a <= b })
        // An exception from the listener propagates unchanged.
        val boom = IllegalStateException("listener failed")
        try {
            Model.load(Env.tinyLlamaPath, Env.cpu2.copy(onProgress = { throw boom }))
            fail("the listener's exception was lost")
        } catch (e: IllegalStateException) {
            assertSame(boom, e)
        }
    }

    @Test
    fun callbackExceptionPropagatesUnchangedAndTheCacheStaysUsable() {
        class AppError : RuntimeException("from the app")
        val thrown = AppError()
        model.newCache().use { cache ->
            var pieces = 0
            try {
                cache.generate(ref.inputIds, GenerateParams(maxNewTokens = 16, stopAtEos = false)) {
                    if (++pieces == 3) throw thrown
                }
                fail("the callback's exception was lost")
            } catch (e: AppError) {
                assertSame(thrown, e)
            }
            assertEquals(3, pieces)
            // The cache is free again and its content consistent.
            val r = cache.generate(ref.inputIds, GenerateParams(maxNewTokens = 16, stopAtEos = false))
            assertArrayEquals(ref.greedy, r.tokens)
        }
        // Through the conversation and a checked exception too.
        val checked = java.io.IOException("checked")
        Shared.tiny.newConversation(template = "chatml").use { conv ->
            try {
                conv.send("hello", GenerateParams(maxNewTokens = 8, stopAtEos = false)) { throw checked }
                fail("lost")
            } catch (e: java.io.IOException) {
                assertSame(checked, e)
            }
            assertTrue(conv.messages.isEmpty())
        }
    }
}
