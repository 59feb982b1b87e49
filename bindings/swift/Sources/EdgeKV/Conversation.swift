import CEdgeKV

/// One message of a chat.
public struct ChatMessage: Sendable, Hashable {
    /// Who speaks.
    public enum Role: String, Sendable, Hashable, CaseIterable {
        /// Instructions for the assistant.
        case system
        /// The person chatting.
        case user
        /// The model.
        case assistant
    }

    /// Who speaks.
    public var role: Role
    /// What they say (UTF-8 text).
    public var content: String

    /// A message.
    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }

    /// A system message.
    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: .system, content: content) }
    /// A user message.
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: .user, content: content) }
    /// An assistant message.
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: .assistant, content: content) }
}

/// A multi-turn chat: the message history plus one cache that lives across
/// turns.
///
/// Each turn renders the whole history with the model's chat template and
/// tokenizes it; the generation matches that prompt against the tokens the
/// cache already holds and computes only the new suffix (see
/// `Completion.stats.promptTokensForwarded`). Turns run one after another in
/// the order they were sent.
public final class Conversation: Sendable {
    /// The model that answers.
    public let model: Model
    /// The conversation's cache.
    public let cache: Cache
    /// Chat template override ("chatml", "llama3", "gemma"); `nil` = the model's.
    public let template: String?

    private let history: Locked<[ChatMessage]>

    /// A conversation with a new cache.
    /// - Parameters:
    ///   - model: the model.
    ///   - cache: the cache to make (default: the model's natural cache).
    ///   - systemPrompt: an optional system message, kept by `reset()`.
    ///   - template: a chat template override.
    public convenience init(
        model: Model, cache: CacheConfiguration = CacheConfiguration(), systemPrompt: String? = nil,
        template: String? = nil
    ) throws {
        self.init(model: model, cache: try Cache(model: model, configuration: cache),
                  messages: systemPrompt.map { [.system($0)] } ?? [], template: template)
    }

    /// A conversation over an existing cache (which may hold the rendered
    /// `messages` already, e.g. loaded from a file, or nothing).
    public init(model: Model, cache: Cache, messages: [ChatMessage] = [], template: String? = nil) {
        self.model = model
        self.cache = cache
        self.template = template
        self.history = Locked(messages)
    }

    /// The messages so far (the answer of a running turn is added when it ends).
    public var messages: [ChatMessage] { history.withLock { $0 } }

    /// Sends a user message and streams the answer.
    ///
    /// When the turn ends the answer is added to the history. A cancelled
    /// turn (task cancelled, loop left early) keeps the part already
    /// generated as the answer; a turn that failed or was cancelled before
    /// its first token is removed from the history.
    public func send(
        _ message: String, parameters: GenerationParameters = GenerationParameters()
    ) -> AsyncThrowingStream<GenerationEvent, any Error> {
        let turn = Turn(conversation: self, message: message)
        return cache.streamGeneration(parameters: parameters, prompt: turn.prompt, finish: turn.finish)
    }

    /// Sends a user message and returns the whole answer (see `send`).
    /// Cancelling the task stops the answer within milliseconds and returns
    /// what was generated, with `stopReason == .cancelled`.
    public func respond(
        to message: String, parameters: GenerationParameters = GenerationParameters()
    ) async throws -> Completion {
        let turn = Turn(conversation: self, message: message)
        return try await cache.runGeneration(parameters: parameters, prompt: turn.prompt, finish: turn.finish)
    }

    /// Forgets the history (keeping system messages when asked) and empties the cache.
    public func reset(keepingSystemMessages: Bool = true) async throws {
        try await cache.reset()
        history.withLock { messages in
            messages = keepingSystemMessages ? messages.filter { $0.role == .system } : []
        }
    }

    /// The tokenized prompt of `messages` (with the assistant's turn header),
    /// as a turn sends it: the template's markers as control tokens, the
    /// messages as text (`Model.chatTokens`).
    public func promptTokens(for messages: [ChatMessage]) throws -> [Token] {
        try model.chatTokens(messages, addGenerationPrompt: true, template: template)
    }

    /// One turn's steps, run on the cache's lane.
    private struct Turn: Sendable {
        let conversation: Conversation
        let message: String
        /// Position of this turn's user message in the history, once added.
        let index = Locked<Int?>(nil)

        var prompt: @Sendable () throws -> [Token] {
            { [self] in
                let messages = conversation.history.withLock { history in
                    index.withLock { $0 = history.count }
                    history.append(.user(message))
                    return history
                }
                return try conversation.promptTokens(for: messages)
            }
        }

        var finish: @Sendable (Result<Completion, any Error>) -> Void {
            { [self] result in
                guard let index = index.withLock({ $0 }) else { return }
                conversation.history.withLock { history in
                    guard history.count == index + 1 else { return }
                    switch result {
                    case .success(let completion) where !(completion.tokens.isEmpty && completion.stopReason == .cancelled):
                        history.append(.assistant(completion.text))
                    default:
                        history.removeLast()
                    }
                }
            }
        }
    }
}
