package dev.edgekv

/** Severity of a library log line (`ekv_log_level`). */
enum class LogLevel(val code: Int) {
    ERROR(0), WARN(1), INFO(2), DEBUG(3);

    companion object {
        @JvmStatic fun of(code: Int): LogLevel = values().firstOrNull { it.code == code } ?: DEBUG
    }
}

/** Called by the JNI layer (jni_log.c) with each line, as UTF-8 bytes. */
internal class LogSink(private val handler: (LogLevel, String) -> Unit) {
    fun onLog(level: Int, message: ByteArray) {
        inside.set(true)
        try {
            handler(LogLevel.of(level), Native.utf8(message))
        } finally {
            inside.set(false)
        }
    }

    companion object {
        /** True on a thread running a handler, which holds the library's log lock. */
        val inside: ThreadLocal<Boolean> = ThreadLocal.withInitial { false }
    }
}

/**
 * A handler for [EdgeKv.setLogHandler] that writes to Android's logcat
 * (tag "edgekv", android.util.Log.println), found by reflection so this
 * library needs no Android classes to build; null off Android.
 */
internal fun androidLogcatHandler(): ((LogLevel, String) -> Unit)? {
    val println = try {
        Class.forName("android.util.Log").getMethod(
            "println", Int::class.javaPrimitiveType, String::class.java, String::class.java
        )
    } catch (e: ReflectiveOperationException) {
        return null
    } catch (e: LinkageError) {
        return null
    }
    return { level, message ->
        // android.util.Log priorities: ERROR 6, WARN 5, INFO 4, DEBUG 3.
        val priority = when (level) {
            LogLevel.ERROR -> 6
            LogLevel.WARN -> 5
            LogLevel.INFO -> 4
            LogLevel.DEBUG -> 3
        }
        println.invoke(null, priority, "edgekv", message)
    }
}
