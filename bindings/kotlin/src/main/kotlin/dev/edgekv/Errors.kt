package dev.edgekv

/** The library's status codes (`ekv_status`), stable numbers. */
enum class Status(val code: Int) {
    OK(0),
    INVALID_ARGUMENT(1),
    OUT_OF_MEMORY(2),
    IO(3),
    INVALID_FILE(4),
    UNSUPPORTED(5),
    UNSUPPORTED_ARCH(6),
    CACHE_FULL(7),
    INVALID_TOKEN(8),
    CONTEXT_OVERFLOW(9),
    BACKEND(10),
    CANCELLED(11),
    MODEL_MISMATCH(12),
    INTERNAL(13),
    BUFFER_TOO_SMALL(14),
    DEVICE_LOST(15),
    INVALID_STATE(16),

    /** A code this binding does not know (a newer library); see [EdgeKvException.code]. */
    UNKNOWN(-1);

    /** The library's short description ("invalid argument"). */
    val description: String
        get() = Native.utf8(Native.statusString(code))

    companion object {
        @JvmStatic
        fun fromCode(code: Int): Status = values().firstOrNull { it.code == code && it != UNKNOWN } ?: UNKNOWN
    }
}

/**
 * A failed call: the library's [status] and its message (`ekv_last_error()`,
 * read on the failing thread right after the call) as [message].
 */
class EdgeKvException internal constructor(
    val status: Status,
    /** The raw status number (differs from [status].code only for [Status.UNKNOWN]). */
    val code: Int,
    details: String
) : RuntimeException(if (details.isNotEmpty()) details else "status $code") {

    constructor(status: Status, details: String) : this(status, status.code, details)

    override fun toString(): String = "EdgeKvException[$status]: $message"
}

internal fun busyError(): EdgeKvException = EdgeKvException(
    Status.INVALID_STATE,
    "cache is busy: another thread is using it, or a generator on it is not done"
)
