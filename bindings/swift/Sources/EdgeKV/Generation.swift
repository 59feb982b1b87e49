import CEdgeKV

/// How tokens are chosen and when generation stops (`ekv_generate_params`).
/// `init()` takes the library's defaults: greedy, 128 new tokens, stop at the
/// model's end-of-generation tokens.
public struct GenerationParameters: Sendable, Hashable {
    /// Most tokens to generate.
    public var maxNewTokens: Int
    /// Sampling temperature; 0 = greedy.
    public var temperature: Float
    /// Keep the `topK` most likely tokens; 0 = off.
    public var topK: Int
    /// Nucleus sampling threshold; 1 = off.
    public var topP: Float
    /// Drop tokens below `minP` times the top probability; 0 = off.
    public var minP: Float
    /// Repetition penalty (HF/CTRL semantics); 1 = off.
    public var repetitionPenalty: Float
    /// Tokens the penalty looks back over; 0 = the whole context.
    public var repetitionLastN: Int
    /// Sampling seed.
    public var seed: UInt64
    /// Stop at the model's end-of-generation tokens (EOS, end of turn).
    public var stopAtEndOfGeneration: Bool
    /// Extra token ids that stop generation.
    public var stopTokens: [Token]
    /// Strings that stop generation when they appear in the text; a stop
    /// string is never part of the streamed text.
    public var stopStrings: [String]

    /// The library's defaults (greedy).
    public init() {
        let d = ekv_generate_default_params()
        maxNewTokens = Int(d.max_new_tokens)
        temperature = d.temperature
        topK = Int(d.top_k)
        topP = d.top_p
        minP = d.min_p
        repetitionPenalty = d.repetition_penalty
        repetitionLastN = Int(d.repetition_last_n)
        seed = d.seed
        stopAtEndOfGeneration = d.stop_at_eos != 0
        stopTokens = []
        stopStrings = []
    }

    /// The defaults with the most common settings overridden.
    public init(maxNewTokens: Int, temperature: Float = 0, seed: UInt64 = 0, stopStrings: [String] = []) {
        self.init()
        self.maxNewTokens = maxNewTokens
        self.temperature = temperature
        self.seed = seed
        self.stopStrings = stopStrings
    }
}

/// Why a generation ended (`ekv_stop_reason`).
public enum StopReason: Int32, Sendable, CaseIterable {
    /// Not ended.
    case none = 0
    /// `maxNewTokens` reached.
    case maxTokens = 1
    /// An end-of-generation token of the model.
    case endOfGeneration = 2
    /// One of `stopTokens`.
    case stopToken = 3
    /// One of `stopStrings` appeared in the text.
    case stopString = 4
    /// Stopped by the caller: task cancelled or the stream's consumer left.
    case cancelled = 5
    /// A fixed-capacity cache filled up.
    case cacheFull = 6
    /// A call failed (reported as a thrown `EdgeKVError`).
    case error = 7

    init(_ reason: ekv_stop_reason) { self = StopReason(rawValue: Int32(truncatingIfNeeded: reason.rawValue)) ?? .error }
}

/// Counts and times of one generation (`ekv_generate_result`).
public struct GenerationStats: Sendable, Hashable {
    /// Prompt length.
    public let promptTokens: Int
    /// Prompt tokens found in the cache and not recomputed.
    public let promptTokensReused: Int
    /// Prompt tokens computed.
    public let promptTokensForwarded: Int
    /// Tokens generated.
    public let generatedTokens: Int
    /// Every token run through the model.
    public let forwardedTokens: Int
    /// Time computing the prompt, in seconds.
    public let prefillSeconds: Double
    /// Time generating, in seconds.
    public let decodeSeconds: Double

    /// Prompt tokens computed per second (0 when nothing was computed).
    public var prefillTokensPerSecond: Double {
        prefillSeconds > 0 ? Double(promptTokensForwarded) / prefillSeconds : 0
    }

    /// Generated tokens per second after the first (0 when fewer than two).
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 && generatedTokens > 1 ? Double(generatedTokens - 1) / decodeSeconds : 0
    }

    init(_ r: ekv_generate_result) {
        promptTokens = Int(r.n_prompt_tokens)
        promptTokensReused = Int(r.n_prompt_reused)
        promptTokensForwarded = Int(r.n_prompt_forwarded)
        generatedTokens = Int(r.n_generated)
        forwardedTokens = Int(r.n_forwarded)
        prefillSeconds = r.prefill_seconds
        decodeSeconds = r.decode_seconds
    }
}

/// The outcome of a generation.
public struct Completion: Sendable, Hashable {
    /// The generated text: every piece of the stream, concatenated.
    public let text: String
    /// The generated token ids.
    public let tokens: [Token]
    /// Why it ended.
    public let stopReason: StopReason
    /// Counts and times.
    public let stats: GenerationStats
}

/// One step of a streamed generation.
public enum GenerationEvent: Sendable, Hashable {
    /// A generated token and the text it released: complete UTF-8 characters,
    /// never part of a stop string; empty while bytes are held back (the
    /// first half of an emoji, a possible stop string).
    case token(Token, text: String)
    /// Text released at the end without a new token (what was still held
    /// back); only sent when not empty.
    case text(String)
    /// The end: why, and the whole completion. The last event of a stream.
    case finished(Completion)

    /// The text this event adds to the answer ("" for `.finished`).
    public var text: String {
        switch self {
        case .token(_, let text), .text(let text): return text
        case .finished: return ""
        }
    }
}

extension Cache {
    /// Generates after `prompt`, one event per token, as an
    /// `AsyncThrowingStream`.
    ///
    /// The prompt is matched against the tokens the cache already holds
    /// (multi-turn reuse): only the new suffix is computed. The work runs on
    /// the cache's native thread and starts at once. Cancelling the consuming
    /// task, or leaving the `for try await` loop early, stops the native work
    /// within milliseconds (prefill included) and leaves the cache usable:
    /// it then holds the prompt and the tokens generated so far, or, when
    /// stopped during the prefill, what it held before.
    ///
    /// Errors (an invalid token, a busy or mismatched cache, ...) are thrown
    /// by the stream as `EdgeKVError`.
    public func generate(
        prompt: [Token], parameters: GenerationParameters = GenerationParameters()
    ) -> AsyncThrowingStream<GenerationEvent, any Error> {
        streamGeneration(parameters: parameters, prompt: { prompt }, finish: { _ in })
    }

    /// Generates after `prompt` and returns the whole completion.
    ///
    /// Cancelling the calling task stops the native work within milliseconds
    /// and returns what was generated, with `stopReason == .cancelled`.
    public func complete(
        prompt: [Token], parameters: GenerationParameters = GenerationParameters()
    ) async throws -> Completion {
        try await runGeneration(parameters: parameters, prompt: { prompt }, finish: { _ in })
    }

    /// Streams a generation whose prompt is computed on the lane (so it sees
    /// the state earlier jobs left); `finish` runs on the lane after the
    /// generation, before the `.finished` event is delivered.
    func streamGeneration(
        parameters: GenerationParameters, prompt: @escaping @Sendable () throws -> [Token],
        finish: @escaping @Sendable (Result<Completion, any Error>) -> Void
    ) -> AsyncThrowingStream<GenerationEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self, throwing: (any Error).self)
        let stop: StopRequest
        do {
            stop = try StopRequest()
        } catch {
            continuation.finish(throwing: error)
            return stream
        }
        // The consumer left (break, task cancelled, stream dropped): stop the native work.
        continuation.onTermination = { termination in
            if case .cancelled = termination { stop.trigger() }
        }
        lane.submit { [self] in
            do {
                let completion = try generateOnLane(prompt: try prompt(), parameters: parameters, stop: stop) {
                    if case .terminated = continuation.yield($0) { stop.trigger() }
                }
                finish(.success(completion))
                continuation.yield(.finished(completion))
                continuation.finish()
            } catch {
                finish(.failure(error))
                continuation.finish(throwing: error)
            }
        }
        return stream
    }

    /// Runs a generation on the lane and returns its completion.
    func runGeneration(
        parameters: GenerationParameters, prompt: @escaping @Sendable () throws -> [Token],
        finish: @escaping @Sendable (Result<Completion, any Error>) -> Void
    ) async throws -> Completion {
        let stop = try StopRequest()
        return try await withTaskCancellationHandler {
            try await lane.run { [self] in
                do {
                    let completion = try generateOnLane(prompt: try prompt(), parameters: parameters, stop: stop) { _ in }
                    finish(.success(completion))
                    return completion
                } catch {
                    finish(.failure(error))
                    throw error
                }
            }
        } onCancel: {
            stop.trigger()
        }
    }

    /// The generation loop over `ekv_generator_next`. Runs on the lane
    /// (blocking); `emit` gets `.token` and `.text` events.
    private func generateOnLane(
        prompt: [Token], parameters: GenerationParameters, stop: StopRequest, emit: (GenerationEvent) -> Void
    ) throws -> Completion {
        var gp = ekv_generate_default_params()
        gp.max_new_tokens = Int32(clamping: parameters.maxNewTokens)
        gp.temperature = parameters.temperature
        gp.top_k = Int32(clamping: parameters.topK)
        gp.top_p = parameters.topP
        gp.min_p = parameters.minP
        gp.repetition_penalty = parameters.repetitionPenalty
        gp.repetition_last_n = Int32(clamping: parameters.repetitionLastN)
        gp.seed = parameters.seed
        gp.stop_at_eos = parameters.stopAtEndOfGeneration ? 1 : 0
        gp.cancel = stop.handle

        var generator: OpaquePointer?
        let status = parameters.stopTokens.withUnsafeBufferPointer { stopTokens in
            withCStrings(parameters.stopStrings) { stopStrings in
                stopStrings.withUnsafeBufferPointer { strings in
                    gp.stop_tokens = stopTokens.isEmpty ? nil : stopTokens.baseAddress
                    gp.n_stop_tokens = Int32(stopTokens.count)
                    gp.stop_strings = strings.isEmpty ? nil : strings.baseAddress
                    gp.n_stop_strings = Int32(strings.count)
                    return prompt.withUnsafeBufferPointer { p in
                        ekv_generator_create(modelHandle, handle, p.baseAddress, Int32(clamping: p.count), &gp, &generator)
                    }
                }
            }
        }
        try check(status, "starting a generation")
        defer { ekv_generator_free(generator) }

        var capacity = 256
        var buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        var tokens: [Token] = []
        var text = ""
        while true {
            var event = ekv_generator_event_default()
            var st = ekv_generator_next(generator, &event, buffer, capacity)
            if st == EKV_ERR_BUFFER_TOO_SMALL {
                // The event is kept: grow the buffer and fetch it again.
                buffer.deallocate()
                capacity = event.text_len + 1
                buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
                st = ekv_generator_next(generator, &event, buffer, capacity)
            }
            try check(st, "generating")
            let piece = decodeUTF8(buffer, count: event.text_len)
            text += piece
            if event.type == EKV_EVENT_TOKEN {
                tokens.append(event.token)
                emit(.token(event.token, text: piece))
                continue
            }
            if !piece.isEmpty { emit(.text(piece)) }
            var result = ekv_generate_default_result()
            try check(ekv_generator_get_result(generator, &result), "reading the generation result")
            return Completion(text: text, tokens: tokens, stopReason: StopReason(event.stop_reason),
                              stats: GenerationStats(result))
        }
    }
}
