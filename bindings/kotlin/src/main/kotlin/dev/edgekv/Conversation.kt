package dev.edgekv

/**
 * A multi-turn chat over one [Cache]: each turn renders the whole
 * conversation with the model's chat template and generates; the cache
 * already holds the earlier turns, so only the new suffix is computed
 * ([GenerationResult.nPromptReused] / [GenerationResult.nPromptForwarded]).
 *
 * Used by one thread at a time, except [cancel] and [close] (any thread; see
 * [Cache.close]). Closing the conversation closes its cache. The model may be
 * closed first: the conversation keeps it alive.
 */
class Conversation @JvmOverloads constructor(
    val model: Model,
    cacheParams: CacheParams = CacheParams(),
    systemPrompt: String? = null,
    /** Chat template override ("chatml", "llama3", "gemma"); null = the model's. */
    private val template: String? = null
) : AutoCloseable {
    /** The conversation's cache (stats, save, clone...). */
    val cache: Cache = model.newCache(cacheParams)
    private val messageList = ArrayList<ChatMessage>()
    @Volatile private var turn: StopRequest? = null // the running turn's, for cancel()

    init {
        if (systemPrompt != null) messageList.add(ChatMessage.system(systemPrompt))
    }

    /** The messages so far. */
    val messages: List<ChatMessage>
        get() = synchronized(messageList) { ArrayList(messageList) }

    /** The prompt tokens of the conversation plus [user], with the generation prompt. */
    private fun promptWith(user: String): IntArray {
        val msgs = messages + ChatMessage.user(user)
        // The template's markers (its BOS included) as control tokens, what
        // was typed as text.
        return model.chatTokens(msgs, true, template, user = false)
    }

    private fun record(user: String, answer: String) {
        synchronized(messageList) {
            messageList.add(ChatMessage.user(user))
            messageList.add(ChatMessage.assistant(answer))
        }
    }

    /**
     * One turn, blocking: [onText] receives the answer piece by piece. The
     * user message and the answer are added to [messages] when the turn ends
     * (also when it was cancelled: the partial answer is kept).
     */
    @JvmOverloads
    fun send(user: String, params: GenerateParams = GenerateParams(), onText: ((String) -> Unit)? = null): GenerationResult {
        val stop = StopRequest()
        turn = stop
        try {
            val r = cache.generate(promptWith(user), params, onText, stop)
            record(user, r.text)
            return r
        } finally {
            turn = null
        }
    }

    /** One turn as a stream of events; the turn is recorded at its Done event. */
    @JvmOverloads
    fun stream(user: String, params: GenerateParams = GenerateParams()): GenerationStream {
        val stop = StopRequest()
        turn = stop
        try {
            return cache.openStream(promptWith(user), params, { r -> record(user, r.text) }, stop)
        } finally {
            turn = null // from here on the stream holds the cache: cache.cancel() reaches it
        }
    }

    /** Starts over: drops the messages (keeping the system prompt) and the cache's tokens. */
    fun clear() {
        cache.reset()
        synchronized(messageList) {
            val system = messageList.firstOrNull()?.takeIf { it.role == "system" }
            messageList.clear()
            if (system != null) messageList.add(system)
        }
    }

    /**
     * Stops the running turn (any thread), also one still rendering its
     * prompt (it then ends at once with [StopReason.CANCELLED]).
     */
    fun cancel() {
        turn?.requested = true
        cache.cancel()
    }

    override fun close() = cache.close()
}
