package dev.edgekv.test

import dev.edgekv.EdgeKv
import dev.edgekv.LogLevel
import dev.edgekv.Model
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File
import java.io.FileInputStream
import java.util.Collections

/** The library's log delivered to a Kotlin handler (ekv_log_set_callback). */
class LogTest {
    private class Lines {
        val all: MutableList<Pair<LogLevel, String>> = Collections.synchronizedList(ArrayList())
        val threads: MutableSet<String> = Collections.synchronizedSet(HashSet())

        fun add(level: LogLevel, message: String) {
            all.add(level to message)
            threads.add(Thread.currentThread().name)
        }

        fun any(level: LogLevel, fragment: String) = synchronized(all) { all.any { it.first == level && it.second.contains(fragment) } }
    }

    private fun loadTiny() = Model.load(Env.tinyLlamaPath, Env.cpu2).close()

    @Test
    fun handlerReceivesLinesFromAnyThreadUntilRemoved() {
        val lines = Lines()
        EdgeKv.setLogHandler(lines::add)
        try {
            loadTiny()
            assertTrue("${lines.all}", lines.any(LogLevel.INFO, "loaded"))
            // A warning, from another thread: a model at a misaligned offset has its tensors copied.
            val bytes = File(Env.tinyLlamaPath).readBytes()
            val f = File.createTempFile("edgekv-log", ".bin")
            f.deleteOnExit()
            f.writeBytes(ByteArray(101) + bytes)
            TestThread("loader") {
                FileInputStream(f).use { s ->
                    val fd = descriptorOf(s, f)
                    Model.loadFromFd(fd, 101, bytes.size.toLong(), Env.cpu2).close()
                }
            }.start().join()
            assertTrue("${lines.all}", lines.any(LogLevel.WARN, "copied"))
            assertTrue("${lines.threads}", lines.threads.contains("loader"))
        } finally {
            EdgeKv.setLogHandler(null)
        }
        val before = lines.all.size
        loadTiny()
        assertEquals("no line after the handler was removed", before, lines.all.size)
    }

    @Test
    fun aThrowingHandlerLosesNothingAndCannotReinstallItself() {
        var calls = 0
        var refused: Throwable? = null
        EdgeKv.setLogHandler { _, _ ->
            calls++
            try {
                EdgeKv.setLogHandler(null)
            } catch (e: IllegalStateException) {
                refused = e
            }
            throw RuntimeException("a handler's own failure")
        }
        try {
            loadTiny() // the handler's exception does not reach the load
            loadTiny()
        } finally {
            EdgeKv.setLogHandler(null)
        }
        assertTrue(calls >= 2)
        assertTrue("$refused", refused?.message?.contains("log handler") == true)
    }

    @Test
    fun logcatIsOnlyOnAndroid() {
        assertFalse(EdgeKv.logToLogcat())
    }
}
