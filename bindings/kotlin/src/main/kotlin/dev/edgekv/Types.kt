package dev.edgekv

/** Compute backends (`ekv_backend_kind`). */
enum class Backend(internal val code: Int) {
    AUTO(0), CPU(1), VULKAN(2), CUDA(3);

    /** True if this build has the backend and it found a device. */
    val isAvailable: Boolean
        get() = Native.backendAvailable(code)

    companion object {
        internal fun of(code: Int): Backend = values().firstOrNull { it.code == code } ?: AUTO
    }
}

/** Retention policies of the Hugging Face `Cache` family (`ekv_cache_type`). */
enum class CacheType(internal val code: Int, /** The HF / CLI name ("sliding_window"). */ val hfName: String) {
    AUTO(0, "auto"),
    DYNAMIC(1, "dynamic"),
    STATIC(2, "static"),
    OFFLOADED(3, "offloaded"),
    OFFLOADED_STATIC(4, "offloaded_static"),
    QUANTIZED(5, "quantized"),
    SLIDING_WINDOW(6, "sliding_window"),
    SINK(7, "sink"),
    HYBRID(8, "hybrid"),
    MAMBA(9, "mamba"),
    HYBRID_MAMBA(10, "hybrid_mamba"),
    ENCODER_DECODER(11, "encoder_decoder");

    companion object {
        internal fun of(code: Int): CacheType = values().firstOrNull { it.code == code } ?: AUTO

        /** Parses an HF name ("offloaded_static"). */
        @JvmStatic
        fun fromName(name: String): CacheType =
            values().firstOrNull { it.hfName == name }
                ?: throw EdgeKvException(Status.INVALID_ARGUMENT, "unknown cache type '$name'")
    }
}

/** Storage format of the KV (`ekv_kv_dtype`). */
enum class KvDtype(internal val code: Int) {
    F16(0), F32(1),
    /** KIVI quantization (nbits, qGroupSize, residualLength). */
    KIVI(2);

    companion object {
        internal fun of(code: Int): KvDtype = values().firstOrNull { it.code == code } ?: F16
    }
}

/** Where the KV lives (`ekv_placement`). */
enum class Placement(internal val code: Int) {
    DEVICE(0), HOST(1), UNIFIED(2);

    companion object {
        internal fun of(code: Int): Placement = values().firstOrNull { it.code == code } ?: DEVICE
    }
}

/** Why a generation ended (`ekv_stop_reason`). */
enum class StopReason(internal val code: Int) {
    NONE(0), MAX_TOKENS(1), EOS(2), TOKEN(3), STRING(4), CANCELLED(5), CACHE_FULL(6), ERROR(7);

    companion object {
        internal fun of(code: Int): StopReason = values().firstOrNull { it.code == code } ?: ERROR
    }
}

/** Which logits [Cache.forward] returns. */
enum class LogitsMode(internal val code: Int) {
    /** The last token's: nVocab floats. */
    LAST(0),
    /** Every token's: nTokens * nVocab floats, token-major. */
    ALL(1)
}

/** Special tokens a model may have (`ekv_special_token`). */
enum class SpecialToken(internal val code: Int) { BOS(0), EOS(1), EOT(2), PAD(3) }

/**
 * How a model is loaded (`ekv_model_params`).
 *
 * @property onProgress called on the loading thread with the progress in
 *   [0, 1]; return false to stop the load (it then fails with
 *   [Status.CANCELLED]). An exception thrown here stops the load and
 *   propagates out of [Model.load] unchanged.
 * @property cancel a stop request any thread may trigger during the load.
 */
data class ModelParams @JvmOverloads constructor(
    val backend: Backend = Backend.AUTO,
    val deviceIndex: Int = 0,
    /** CPU threads; 0 = number of cores. */
    val nThreads: Int = 0,
    /** Quantize activations inside quantized matmuls to 8 bits (faster; logits ~1% of their spread away from HF). */
    val int8Activations: Boolean = false,
    val onProgress: ((Float) -> Boolean)? = null,
    val cancel: CancelSignal? = null,
    /** The memory the app gives this model in all (0 = none): larger weights are refused before anything loads. */
    val memoryBudgetBytes: Long = 0
)

/** What [Model.info] reports (`ekv_model_info`). */
data class ModelInfo(
    val architecture: String,
    val name: String,
    val nLayers: Int,
    val nHeads: Int,
    val nKvHeads: Int,
    val headDim: Int,
    val nEmbd: Int,
    val nFf: Int,
    val contextLength: Int,
    val nVocab: Int,
    val nParams: Long,
    val weightBytes: Long,
    val backend: Backend,
    val device: String,
    /** What [CacheType.AUTO] resolves to for this model. */
    val naturalCache: CacheType,
    val nSlidingLayers: Int,
    val slidingWindow: Int,
    val nRecurrentLayers: Int,
    /** Weight bytes one decode step reads (every matrix once, an untied embedding table as one row). */
    val decodeWeightBytes: Long
)

/**
 * A cache's configuration (`ekv_cache_params`), with Hugging Face's parameter
 * names. Every type is a retention policy ([type]) combined with a storage
 * format ([dtype], KIVI parameters) and a placement ([offload]); parameters a
 * type does not use are ignored. The defaults equal the library's.
 */
data class CacheParams @JvmOverloads constructor(
    val type: CacheType = CacheType.AUTO,
    /** Fixed-capacity types (static, offloaded_static, hybrid's global layers); 0 = the model's context length. */
    val maxCacheLen: Int = 0,
    val dtype: KvDtype = KvDtype.F16,
    /** sliding_window / sink: tokens held, sinks included. */
    val windowLength: Int = 0,
    /** sink: first tokens pinned (StreamingLLM). */
    val numSinkTokens: Int = 4,
    /** KIVI: 2, 4 or 8. */
    val nbits: Int = 4,
    /** KIVI: tokens per key group and channels per value group. */
    val qGroupSize: Int = 64,
    /** KIVI: newest tokens kept in full precision. */
    val residualLength: Int = 128,
    val offload: Placement = Placement.DEVICE,
    /**
     * Most bytes the cache may take, device and host together (0 = none).
     * With [CacheType.AUTO] the library picks the cache that fits
     * ([Model.planCache]) for a context of [maxCacheLen] tokens (0: the
     * model's); a fixed cache past it is refused and a growing one stops at
     * it ([Status.OUT_OF_MEMORY]).
     */
    val memoryBudgetBytes: Long = 0
) {
    internal fun toInts(): IntArray = intArrayOf(
        type.code, maxCacheLen, dtype.code, windowLength, numSinkTokens, nbits, qGroupSize, residualLength, offload.code
    )

    companion object {
        @JvmStatic fun auto() = CacheParams()
        @JvmStatic fun dynamic() = CacheParams(type = CacheType.DYNAMIC)
        @JvmStatic fun static(maxCacheLen: Int) = CacheParams(type = CacheType.STATIC, maxCacheLen = maxCacheLen)
        @JvmStatic @JvmOverloads fun offloaded(offload: Placement = Placement.HOST) =
            CacheParams(type = CacheType.OFFLOADED, offload = offload)
        @JvmStatic @JvmOverloads fun offloadedStatic(maxCacheLen: Int, offload: Placement = Placement.HOST) =
            CacheParams(type = CacheType.OFFLOADED_STATIC, maxCacheLen = maxCacheLen, offload = offload)
        @JvmStatic @JvmOverloads fun quantized(nbits: Int = 4, qGroupSize: Int = 64, residualLength: Int = 128) =
            CacheParams(type = CacheType.QUANTIZED, dtype = KvDtype.KIVI, nbits = nbits, qGroupSize = qGroupSize,
                residualLength = residualLength)
        @JvmStatic fun slidingWindow(windowLength: Int) =
            CacheParams(type = CacheType.SLIDING_WINDOW, windowLength = windowLength)
        @JvmStatic @JvmOverloads fun sink(windowLength: Int, numSinkTokens: Int = 4) =
            CacheParams(type = CacheType.SINK, windowLength = windowLength, numSinkTokens = numSinkTokens)
        @JvmStatic @JvmOverloads fun hybrid(maxCacheLen: Int = 0) = CacheParams(type = CacheType.HYBRID, maxCacheLen = maxCacheLen)
        @JvmStatic fun mamba() = CacheParams(type = CacheType.MAMBA)
        @JvmStatic fun hybridMamba() = CacheParams(type = CacheType.HYBRID_MAMBA)
        @JvmStatic fun encoderDecoder() = CacheParams(type = CacheType.ENCODER_DECODER)

        /** The library's own defaults (`ekv_cache_params_init`). */
        @JvmStatic
        fun libraryDefaults(): CacheParams {
            val v = IntArray(9)
            Native.cacheParamsDefaults(v)
            return of(v, 0L)
        }

        internal fun of(v: IntArray, memoryBudgetBytes: Long) = CacheParams(
            CacheType.of(v[0]), v[1], KvDtype.of(v[2]), v[3], v[4], v[5], v[6], v[7], Placement.of(v[8]), memoryBudgetBytes
        )
    }
}

/** A cache's memory and bookkeeping (`ekv_cache_stats`). */
data class CacheStats(
    /** Tokens consumed: the position of the next token (HF get_seq_length). */
    val seqLen: Int,
    /** Tokens held at most: max_cache_len, the window of a ring, -1 when unbounded. */
    val capacity: Int,
    val deviceBytes: Long,
    val hostBytes: Long,
    val usedBytes: Long,
    val bytesPerToken: Long,
    /** Tokens computed through this cache so far. */
    val tokensForwarded: Long,
    /** Tokens whose keys and values are still held (less than seqLen in a ring). */
    val tokensHeld: Int
)

/**
 * Sampling and stopping (`ekv_generate_params`), with Hugging Face's names.
 * The defaults equal the library's: greedy, 128 new tokens, stop at the
 * model's end-of-generation tokens.
 */
data class GenerateParams @JvmOverloads constructor(
    val maxNewTokens: Int = 128,
    /** 0 = greedy. */
    val temperature: Float = 0f,
    val topK: Int = 0,
    val topP: Float = 1f,
    val minP: Float = 0f,
    val repetitionPenalty: Float = 1f,
    /** Tokens the penalty looks back at; 0 = the whole context. */
    val repetitionLastN: Int = 64,
    val seed: Long = 0,
    val stopAtEos: Boolean = true,
    val stopTokens: List<Int> = emptyList(),
    /** Stop strings: generation ends when one appears; it is never part of the text. */
    val stopStrings: List<String> = emptyList(),
    /** False recomputes the whole sequence every step (HF use_cache=False). */
    val useCache: Boolean = true
) {
    internal fun ints() = intArrayOf(maxNewTokens, topK, repetitionLastN, if (stopAtEos) 1 else 0, if (useCache) 1 else 0)
    internal fun floats() = floatArrayOf(temperature, topP, minP, repetitionPenalty)
    internal fun stopTokenArray(): IntArray? = if (stopTokens.isEmpty()) null else stopTokens.toIntArray()
    internal fun stopStringArray(): Array<ByteArray>? =
        if (stopStrings.isEmpty()) null else Array(stopStrings.size) { Native.cString(stopStrings[it], "a stop string") }

    companion object {
        /** The library's own defaults (`ekv_generate_params_init`). */
        @JvmStatic
        fun libraryDefaults(): GenerateParams {
            val i = IntArray(5)
            val f = FloatArray(4)
            Native.generateParamsDefaults(i, f)
            return GenerateParams(
                maxNewTokens = i[0], topK = i[1], repetitionLastN = i[2], stopAtEos = i[3] != 0, useCache = i[4] != 0,
                temperature = f[0], topP = f[1], minP = f[2], repetitionPenalty = f[3]
            )
        }
    }
}

/**
 * The outcome of a generation (`ekv_generate_result` plus the ids and text).
 * [text] is what was streamed: UTF-8 complete, stop strings excluded.
 */
class GenerationResult internal constructor(
    val tokens: IntArray,
    val text: String,
    val nPromptTokens: Int,
    /** Prompt tokens found in the cache and not recomputed. */
    val nPromptReused: Int,
    /** Prompt tokens computed. */
    val nPromptForwarded: Int,
    /** Every token run through the model. */
    val nForwarded: Long,
    val prefillSeconds: Double,
    val decodeSeconds: Double,
    val stopReason: StopReason
) {
    val nGenerated: Int get() = tokens.size

    override fun toString(): String =
        "GenerationResult(generated=$nGenerated, prompt=$nPromptTokens, reused=$nPromptReused, " +
            "forwarded=$nPromptForwarded, stop=$stopReason)"

    internal companion object {
        fun of(tokens: IntArray, text: String, longs: LongArray, doubles: DoubleArray) = GenerationResult(
            tokens, text, longs[1].toInt(), longs[2].toInt(), longs[3].toInt(), longs[4], doubles[0], doubles[1],
            StopReason.of(longs[5].toInt())
        )
    }
}

/** One message of a chat. */
data class ChatMessage(val role: String, val content: String) {
    companion object {
        @JvmStatic fun system(content: String) = ChatMessage("system", content)
        @JvmStatic fun user(content: String) = ChatMessage("user", content)
        @JvmStatic fun assistant(content: String) = ChatMessage("assistant", content)
    }
}

/** A compute device (`ekv_device_info`). */
data class DeviceInfo(
    val backend: Backend,
    val index: Int,
    val name: String,
    val deviceMemoryBytes: Long,
    val unifiedMemory: Boolean,
    val nThreads: Int
)

/** Library-wide information. */
object EdgeKv {
    /** Version of the loaded native library ("0.1.0"). */
    @JvmStatic
    val version: String
        get() = Native.utf8(Native.version())

    @JvmStatic
    val versionNumber: Int
        get() = Native.versionNumber()

    /** The devices of a backend (empty when it is not built or has none). */
    @JvmStatic
    fun devices(backend: Backend): List<DeviceInfo> {
        val n = Native.deviceCount(backend.code)
        return (0 until n).map { i ->
            val nums = LongArray(5)
            val name = Native.utf8(Native.deviceInfo(backend.code, i, nums))
            DeviceInfo(Backend.of(nums[0].toInt()), nums[1].toInt(), name, nums[2], nums[3] != 0L, nums[4].toInt())
        }
    }

    /**
     * Receives every line the library logs (each load's summary, warnings
     * such as misaligned tensors that were copied, Vulkan validation
     * messages) on the thread that logged it, one call at a time; null
     * restores the default (warnings and errors to stderr). The handler
     * must be quick and must not call edgekv: it runs under the library's
     * log lock (installing a handler from inside one throws
     * [IllegalStateException]). What it throws is dropped.
     */
    @JvmStatic
    fun setLogHandler(handler: ((LogLevel, String) -> Unit)?) {
        // Checked before the lock: another thread may hold it while it waits
        // for the library's log lock, which this handler's call holds.
        check(!LogSink.inside.get()) { "a log handler cannot install a log handler (it runs under the log lock)" }
        synchronized(this) { Native.logSetHandler(handler?.let { LogSink(it) }) }
    }

    /**
     * On Android, sends the library's log to logcat (tag "edgekv") and
     * returns true; elsewhere changes nothing and returns false.
     */
    @JvmStatic
    fun logToLogcat(): Boolean {
        val handler = androidLogcatHandler() ?: return false
        setLogHandler(handler)
        return true
    }
}
