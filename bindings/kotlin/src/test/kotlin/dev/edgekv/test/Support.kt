package dev.edgekv.test

import dev.edgekv.Backend
import dev.edgekv.Model
import dev.edgekv.ModelParams
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun die(message: String): Nothing = throw AssertionError(message)

/** Where the models are: set by run_tests.sh; a missing one fails, never skips. */
object Env {
    val fixturesDir: String
        get() = System.getenv("EKV_FIXTURES_DIR") ?: die("EKV_FIXTURES_DIR is not set")

    val smollm2Path: String
        get() {
            val p = System.getenv("EKV_SMOLLM2_GGUF")
            if (p == null || p.isEmpty()) die("EKV_SMOLLM2_GGUF is not set")
            if (!File(p).isFile) die("EKV_SMOLLM2_GGUF=$p does not exist")
            return p
        }

    val tinyLlamaPath: String
        get() = "$fixturesDir/tiny_llama/tiny_llama_f32.gguf"

    /** The tests run on the CPU with two threads (the CI machine has two cores). */
    val cpu2 = ModelParams(backend = Backend.CPU, nThreads = 2)
}

/**
 * Models shared by the tests that only read them (loaded once per JVM,
 * never closed: the tests that close models load their own).
 */
object Shared {
    val smollm2: Model by lazy { Model.load(Env.smollm2Path, Env.cpu2) }
    val tiny: Model by lazy { Model.load(Env.tinyLlamaPath, Env.cpu2) }
}

/** The tiny Llama fixture's HF reference (tests/fixtures/tiny_llama/ref_f32.json). */
class Reference(val inputIds: IntArray, val greedy: IntArray, val nVocab: Int, private val logits: FloatArray) {
    fun row(position: Int): FloatArray = logits.copyOfRange(position * nVocab, (position + 1) * nVocab)

    companion object {
        fun load(name: String = "ref_f32.json"): Reference {
            val dir = File(Env.fixturesDir, "tiny_llama")
            val json = File(dir, name).readText()
            fun ints(key: String): IntArray {
                val m = Regex("\"$key\"\\s*:\\s*\\[([^\\]]*)\\]").find(json) ?: die("no $key in $name")
                return m.groupValues[1].split(',').map { it.trim() }.filter { it.isNotEmpty() }.map { it.toInt() }.toIntArray()
            }
            fun string(key: String): String =
                Regex("\"$key\"\\s*:\\s*\"([^\"]*)\"").find(json)?.groupValues?.get(1) ?: die("no $key in $name")
            val nVocab = Regex("\"n_vocab\"\\s*:\\s*(\\d+)").find(json)!!.groupValues[1].toInt()
            val raw = File(dir, string("logits_file")).readBytes()
            val buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
            val logits = FloatArray(buf.remaining())
            buf.get(logits)
            return Reference(ints("input_ids"), ints("greedy_tokens"), nVocab, logits)
        }
    }
}

/** Largest |a - b| relative to the RMS of the reference row (as tests/model/test_util.h). */
fun normalizedMaxError(got: FloatArray, want: FloatArray): Double {
    var rms = 0.0
    var maxErr = 0.0
    for (i in want.indices) {
        rms += want[i].toDouble() * want[i]
        maxErr = maxOf(maxErr, Math.abs(got[i].toDouble() - want[i]))
    }
    return maxErr / (Math.sqrt(rms / want.size) + 1e-12)
}

fun argmax(v: FloatArray): Int {
    var best = 0
    for (i in 1 until v.size) if (v[i] > v[best]) best = i
    return best
}

/** The C++ tests' synthetic prompt (tests/threads/thread_test_util.h), bit for bit. */
fun syntheticPrompt(n: Int, lo: Int, hi: Int, seed: Int): IntArray {
    var x = (seed.toLong() * 2654435761L + 1) and 0xffffffffL
    return IntArray(n) {
        x = (x * 1664525L + 1013904223L) and 0xffffffffL
        lo + ((x ushr 8) % (hi - lo).toLong()).toInt()
    }
}

fun millisSince(t0: Long): Double = (System.nanoTime() - t0) / 1e6

/** Runs block on a new thread; join() rethrows what it threw. */
class TestThread(name: String, private val block: () -> Unit) {
    @Volatile var error: Throwable? = null
    val thread = Thread({
        try {
            block()
        } catch (t: Throwable) {
            error = t
        }
    }, name)

    fun start(): TestThread = also { thread.start() }

    fun join(timeoutMs: Long = 120_000) {
        thread.join(timeoutMs)
        if (thread.isAlive) die("${thread.name} still runs after $timeoutMs ms")
        error?.let { throw AssertionError("${thread.name} failed: $it", it) }
    }
}

/**
 * The descriptor number the JVM gave an open [stream] of [file] (Linux:
 * found through /proc/self/fd, no reflection into java.io.FileDescriptor).
 */
fun descriptorOf(stream: java.io.FileInputStream, file: File): Int {
    val target = file.toPath().toRealPath()
    val fds = File("/proc/self/fd").list()?.mapNotNull { it.toIntOrNull() } ?: die("no /proc/self/fd")
    val matches = fds.filter { fd ->
        try {
            java.nio.file.Files.readSymbolicLink(java.nio.file.Paths.get("/proc/self/fd/$fd")) == target
        } catch (e: Exception) {
            false
        }
    }
    if (!stream.fd.valid() || matches.isEmpty()) die("no descriptor for $target")
    return matches.max()!!
}
