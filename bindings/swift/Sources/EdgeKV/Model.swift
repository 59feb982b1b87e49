import CEdgeKV
import Foundation

/// A loaded model: weights, tokenizer and chat template. Immutable and shared
/// freely: any number of caches and tasks may use one model at once.
///
/// Releasing a model while its caches or generations still run is safe: they
/// hold their own reference to the native model, which is freed when the last
/// of them goes.
public final class Model: Sendable {
    /// The native `ekv_model`. A loaded model is immutable and thread safe by
    /// the C ABI's contract, so the pointer may be shared across threads.
    nonisolated(unsafe) let handle: OpaquePointer

    /// What the model is (architecture, sizes, backend, natural cache).
    public let info: ModelInfo

    /// How a model is loaded.
    public struct Options: Sendable, Hashable {
        /// Backend to run on (default `.auto`: CUDA, then Vulkan, then the CPU).
        public var backend: Backend
        /// Device of that backend (default 0).
        public var deviceIndex: Int
        /// CPU worker threads; 0 = one per core (default).
        public var threads: Int
        /// Quantize activations to 8 bits inside quantized matmuls
        /// (faster; logits ~1% of their spread away from Hugging Face). Default `false`: HF-exact numerics.
        public var int8Activations: Bool
        /// The memory the app gives this model in all (0 = none): weights
        /// larger than it are refused (`.outOfMemory`) before anything loads.
        public var memoryBudgetBytes: UInt64

        /// Options with the library's defaults, overridable one by one.
        public init(backend: Backend = .auto, deviceIndex: Int = 0, threads: Int = 0, int8Activations: Bool = false,
                    memoryBudgetBytes: UInt64 = 0) {
            self.backend = backend
            self.deviceIndex = deviceIndex
            self.threads = threads
            self.int8Activations = int8Activations
            self.memoryBudgetBytes = memoryBudgetBytes
        }
    }

    /// Loads a GGUF file (v2/v3, memory-mapped) or a Hugging Face model
    /// directory (config.json + *.safetensors + tokenizer.json) on a
    /// dedicated thread.
    ///
    /// Cancelling the calling task stops the load (`EdgeKVError` with status
    /// `.cancelled`).
    /// - Parameters:
    ///   - path: the file or directory.
    ///   - options: backend, device and threads.
    ///   - progress: called with the fraction loaded, in [0, 1], from the loading thread.
    /// - Throws: `EdgeKVError` (`.io` for a missing file, `.invalidFile` for a
    ///   malformed one, `.unsupportedArchitecture`, `.backend`, ...).
    public static func load(
        from path: String, options: Options = Options(), progress: (@Sendable (Float) -> Void)? = nil
    ) async throws -> Model {
        let stop = try StopRequest()
        return try await withTaskCancellationHandler {
            try await NativeThread.run(name: "edgekv.load") {
                try Model(source: .path(path), options: options, progress: progress, stop: stop)
            }
        } onCancel: {
            stop.trigger()
        }
    }

    /// Loads a GGUF model from bytes `offset ..< offset + length` of an open
    /// file descriptor, memory-mapped read-only, on a dedicated thread; the
    /// descriptor may be closed once this returns. For a model inside an
    /// archive or a container file; store it uncompressed at an offset that
    /// is a multiple of 32 (an unaligned one works, copying the tensors it
    /// misaligns).
    /// - Throws: `EdgeKVError` (`.invalidArgument` for a negative descriptor,
    ///   `.io` for a closed one or a range past its end, `.invalidFile`, ...).
    public static func load(
        fileDescriptor fd: Int32, offset: UInt64, length: UInt64, options: Options = Options(),
        progress: (@Sendable (Float) -> Void)? = nil
    ) async throws -> Model {
        let stop = try StopRequest()
        return try await withTaskCancellationHandler {
            try await NativeThread.run(name: "edgekv.load") {
                try Model(source: .descriptor(fd, offset, length), options: options, progress: progress, stop: stop)
            }
        } onCancel: {
            stop.trigger()
        }
    }

    /// Loads a GGUF model held in memory (downloaded, decrypted, unpacked),
    /// on a dedicated thread. The bytes are copied once into an aligned
    /// buffer that the model and every cache made from it keep alive, and
    /// the weights are read in place there: the caller's `Data` may go as
    /// soon as this returns (peak memory is twice the file while it copies).
    /// - Throws: `EdgeKVError` (`.invalidFile` for bytes that are not a GGUF
    ///   model, `.outOfMemory` when the copy cannot be allocated, ...).
    public static func load(
        data: Data, options: Options = Options(), progress: (@Sendable (Float) -> Void)? = nil
    ) async throws -> Model {
        let stop = try StopRequest()
        return try await withTaskCancellationHandler {
            try await NativeThread.run(name: "edgekv.load") {
                try Model(source: .memory(try ModelBytes(copying: data)), options: options, progress: progress,
                          stop: stop)
            }
        } onCancel: {
            stop.trigger()
        }
    }

    /// Loads a GGUF model held in memory on the calling thread (blocking);
    /// see `Model.load(data:options:progress:)`.
    public convenience init(data: Data, options: Options = Options()) throws {
        try self.init(source: .memory(try ModelBytes(copying: data)), options: options, progress: nil, stop: nil)
    }

    /// Loads a model on the calling thread (blocking; for command-line tools
    /// and code already on a thread of its own). From async code prefer
    /// `Model.load(from:options:progress:)`.
    public convenience init(path: String, options: Options = Options()) throws {
        try self.init(source: .path(path), options: options, progress: nil, stop: nil)
    }

    /// Loads bytes `offset ..< offset + length` of a descriptor on the
    /// calling thread (blocking); see `Model.load(fileDescriptor:offset:length:options:progress:)`.
    public convenience init(fileDescriptor fd: Int32, offset: UInt64, length: UInt64, options: Options = Options()) throws {
        try self.init(source: .descriptor(fd, offset, length), options: options, progress: nil, stop: nil)
    }

    private enum Source {
        case path(String)
        case descriptor(Int32, UInt64, UInt64)
        case memory(ModelBytes)

        var description: String {
            switch self {
            case .path(let path): return path
            case .descriptor(let fd, let offset, let length): return "descriptor \(fd) [\(offset), +\(length))"
            case .memory(let bytes): return "\(bytes.count) bytes in memory"
            }
        }
    }

    /// The weights of a model loaded from memory (nil otherwise): the native
    /// model reads them in place, so they live as long as this model and its
    /// caches (a `Cache` holds them too, as it may outlive the `Model`).
    let bytes: ModelBytes?

    private init(source: Source, options: Options, progress: (@Sendable (Float) -> Void)?, stop: StopRequest?) throws {
        var params = ekv_model_default_params()
        params.backend = options.backend.cValue
        params.device_index = Int32(clamping: options.deviceIndex)
        params.n_threads = Int32(clamping: options.threads)
        params.int8_activations = options.int8Activations ? 1 : 0
        params.memory_budget_bytes = options.memoryBudgetBytes
        params.cancel = stop?.handle
        let box = progress.map(ProgressBox.init)
        if box != nil {
            params.progress = { fraction, userData in
                guard let userData else { return 1 }
                Unmanaged<ProgressBox>.fromOpaque(userData).takeUnretainedValue().report(fraction)
                return 1
            }
            params.progress_user_data = box.map { Unmanaged.passUnretained($0).toOpaque() }
        }
        var model: OpaquePointer?
        let status = withExtendedLifetime(box) { () -> ekv_status in
            switch source {
            case .path(let path): return ekv_model_load(path, &params, &model)
            case .descriptor(let fd, let offset, let length): return ekv_model_load_from_fd(fd, offset, length, &params, &model)
            case .memory(let bytes): return ekv_model_load_from_memory(bytes.pointer, bytes.count, &params, &model)
            }
        }
        try check(status, "loading \(source.description)")
        guard let model else {
            throw EdgeKVError(status: .internal, message: "no model returned", operation: "loading \(source.description)")
        }
        do {
            info = try ModelInfo(model: model)
        } catch {
            ekv_model_free(model)
            throw error
        }
        handle = model
        if case .memory(let storage) = source { bytes = storage } else { bytes = nil }
    }

    deinit { ekv_model_free(handle) }

    // MARK: Text

    /// Tokenizes UTF-8 text.
    /// - Parameters:
    ///   - text: the text.
    ///   - addSpecial: prepend BOS where the model's tokenizer does (default `true`).
    ///   - parseSpecial: treat special-token text ("<|im_start|>") as the token
    ///     (default `false`; `true` for rendered chat templates).
    public func tokenize(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) throws -> [Token] {
        var bytes = Array(text.utf8)
        let length = bytes.count
        bytes.append(0)
        var capacity = length + 16
        for _ in 0..<3 {
            var tokens = [Token](repeating: 0, count: capacity)
            var count: Int32 = 0
            let status = bytes.withUnsafeBufferPointer { utf8 in
                utf8.withMemoryRebound(to: CChar.self) { text in
                    ekv_tokenize(handle, text.baseAddress, length, addSpecial ? 1 : 0, parseSpecial ? 1 : 0,
                                 &tokens, Int32(clamping: capacity), &count)
                }
            }
            if status == EKV_ERR_BUFFER_TOO_SMALL, Int(count) > capacity {
                capacity = Int(count)
                continue
            }
            try check(status, "tokenizing")
            tokens.removeSubrange(Int(count)...)
            return tokens
        }
        throw EdgeKVError(status: .bufferTooSmall, message: "token count kept growing", operation: "tokenizing")
    }

    /// The text of a token sequence.
    /// - Parameter skipSpecial: drop special tokens (BOS, EOS, chat markers).
    public func detokenize(_ tokens: [Token], skipSpecial: Bool = false) throws -> String {
        try readString(capacity: tokens.count * 8 + 16, "detokenizing") { buffer, capacity, length in
            ekv_detokenize(handle, tokens, Int32(clamping: tokens.count), skipSpecial ? 1 : 0, buffer, capacity, length)
        }
    }

    /// The bytes of one token. They may be part of a UTF-8 character (an
    /// emoji is often several tokens), which is why they are not a `String`;
    /// generation streams only ever hand out complete characters.
    /// - Parameter special: render a special token's text (else it gives no bytes).
    public func bytes(of token: Token, special: Bool = false) throws -> [UInt8] {
        var capacity = 64
        for _ in 0..<3 {
            var buffer = [CChar](repeating: 0, count: capacity)
            var length = 0
            let status = ekv_token_to_piece(handle, token, special ? 1 : 0, &buffer, capacity, &length)
            if status == EKV_ERR_BUFFER_TOO_SMALL, length + 1 > capacity {
                capacity = length + 1
                continue
            }
            try check(status, "reading token \(token)")
            return buffer[..<length].map { UInt8(bitPattern: $0) }
        }
        throw EdgeKVError(status: .bufferTooSmall, message: "token text kept growing", operation: "reading token \(token)")
    }

    /// The id of a special token, or `nil` when the model has none.
    public func specialToken(_ kind: SpecialToken) throws -> Token? {
        var id: Int32 = -1
        try check(ekv_token_special(handle, ekv_special_token(rawValue: .init(truncatingIfNeeded: kind.rawValue)), &id),
                  "looking up the \(kind) token")
        return id >= 0 ? id : nil
    }

    /// Whether `token` ends generation (EOS, end of turn, ...).
    public func isEndOfGeneration(_ token: Token) -> Bool { ekv_token_is_eog(handle, token) != 0 }

    /// Renders a conversation with the model's chat template (ChatML, Llama 3
    /// and Gemma families are recognised).
    /// - Parameters:
    ///   - messages: the conversation so far.
    ///   - addGenerationPrompt: end with the assistant's turn header, ready to generate.
    ///   - template: "chatml", "llama3" or "gemma" to override the model's template.
    public func applyChatTemplate(
        _ messages: [ChatMessage], addGenerationPrompt: Bool = true, template: String? = nil
    ) throws -> String {
        let roles = messages.map(\.role.rawValue)
        let contents = messages.map(\.content)
        let capacity = contents.reduce(1024) { $0 + $1.utf8.count + 64 }
        return try withCStrings(roles + contents) { strings in
            let cMessages = (0..<messages.count).map {
                ekv_chat_message(role: strings[$0], content: strings[messages.count + $0])
            }
            return try readString(capacity: capacity, "applying the chat template") { buffer, cap, length in
                if let template {
                    return ekv_chat_apply_template(handle, template, cMessages, cMessages.count,
                                                   addGenerationPrompt ? 1 : 0, buffer, cap, length)
                }
                return ekv_chat_apply_template(handle, nil, cMessages, cMessages.count, addGenerationPrompt ? 1 : 0,
                                               buffer, cap, length)
            }
        }
    }

    /// The token ids of a conversation as `applyChatTemplate` renders it:
    /// the template's markers become control tokens, while roles and contents
    /// stay text even when they spell one (a user who types "<|im_end|>" does
    /// not end the turn). Use this, not `tokenize(_:parseSpecial: true)` of the
    /// rendered text, for anything a user typed.
    public func chatTokens(
        _ messages: [ChatMessage], addGenerationPrompt: Bool = true, template: String? = nil
    ) throws -> [Token] {
        let roles = messages.map(\.role.rawValue)
        let contents = messages.map(\.content)
        var capacity = contents.reduce(256) { $0 + $1.utf8.count + 16 }
        return try withCStrings(roles + contents) { strings in
            let cMessages = (0..<messages.count).map {
                ekv_chat_message(role: strings[$0], content: strings[messages.count + $0])
            }
            for _ in 0..<3 {
                var tokens = [Token](repeating: 0, count: capacity)
                var count: Int32 = 0
                let status = template.withOptionalCString { name in
                    ekv_chat_tokenize(handle, name, cMessages, cMessages.count, addGenerationPrompt ? 1 : 0, &tokens,
                                      Int32(clamping: capacity), &count)
                }
                if status == EKV_ERR_BUFFER_TOO_SMALL, Int(count) > capacity {
                    capacity = Int(count)
                    continue
                }
                try check(status, "tokenizing the conversation")
                tokens.removeSubrange(Int(count)...)
                return tokens
            }
            throw EdgeKVError(status: .bufferTooSmall, message: "token count kept growing",
                              operation: "tokenizing the conversation")
        }
    }

    /// A string metadata value of the model file ("general.name").
    /// - Throws: `EdgeKVError` when the key is missing or not a string.
    public func metadata(_ key: String) throws -> String {
        try readString("reading metadata \(key)") { buffer, capacity, length in
            ekv_model_meta_string(handle, key, buffer, capacity, length)
        }
    }

    /// Device work counters of the model's backend (zeros on the CPU).
    public func backendStats() throws -> BackendStats {
        var stats = ekv_backend_stats_default()
        try check(ekv_model_get_backend_stats(handle, &stats), "reading backend stats")
        return BackendStats(submissions: stats.submissions, replayedSubmissions: stats.replayed_submissions,
                            recordNanoseconds: stats.record_ns)
    }

    /// Makes an empty cache for this model (shorthand for `Cache(model:configuration:)`).
    public func makeCache(_ configuration: CacheConfiguration = CacheConfiguration()) throws -> Cache {
        try Cache(model: self, configuration: configuration)
    }
}

/// Carries a progress closure through the C callback's user data.
private final class ProgressBox: Sendable {
    let report: @Sendable (Float) -> Void
    init(_ report: @escaping @Sendable (Float) -> Void) { self.report = report }
}

/// Special tokens a model may have.
public enum SpecialToken: Int32, Sendable, CaseIterable {
    /// Beginning of sequence.
    case bos = 0
    /// End of sequence.
    case eos = 1
    /// End of turn, for chat models that have one.
    case eot = 2
    /// Padding.
    case pad = 3
}

/// Device work a backend submitted (`ekv_backend_stats`).
public struct BackendStats: Sendable, Hashable {
    /// Command buffers submitted.
    public let submissions: UInt64
    /// Of which replayed without recording.
    public let replayedSubmissions: UInt64
    /// Host time spent recording them, in nanoseconds.
    public let recordNanoseconds: UInt64
}

/// What a model is (`ekv_model_info`).
public struct ModelInfo: Sendable, Hashable {
    /// Architecture ("llama", "gemma3", "mamba", ...).
    public let architecture: String
    /// `general.name`; may be empty.
    public let name: String
    /// Transformer (or Mamba) layers.
    public let layerCount: Int
    /// Attention heads.
    public let headCount: Int
    /// Key/value heads (grouped-query attention).
    public let kvHeadCount: Int
    /// Dimension of one head.
    public let headDimension: Int
    /// Embedding width.
    public let embeddingLength: Int
    /// Feed-forward width.
    public let feedForwardLength: Int
    /// Trained context length.
    public let contextLength: Int
    /// Vocabulary size: token ids are `0..<vocabularySize`.
    public let vocabularySize: Int
    /// Parameter count.
    public let parameterCount: UInt64
    /// Bytes of weights as stored (quantized).
    public let weightBytes: UInt64
    /// The backend the model runs on.
    public let backend: Backend
    /// The device's name.
    public let device: String
    /// What `CacheType.auto` resolves to for this model.
    public let naturalCache: CacheType
    /// Local sliding-window attention layers (Gemma); 0 when none.
    public let slidingLayerCount: Int
    /// Their window in positions; 0 when none.
    public let slidingWindow: Int
    /// Mamba layers (a fixed-size state, no KV); 0 when none.
    public let recurrentLayerCount: Int
    /// Weight bytes one decode step reads (every matrix once, an untied
    /// embedding table as one row): with the cache's bytes, what a token
    /// must stream from memory.
    public let decodeWeightBytes: UInt64

    init(model: OpaquePointer) throws {
        var i = ekv_model_info_default()
        try check(ekv_model_get_info(model, &i), "reading model info")
        architecture = stringFromCharTuple(i.architecture)
        name = stringFromCharTuple(i.name)
        layerCount = Int(i.n_layers)
        headCount = Int(i.n_heads)
        kvHeadCount = Int(i.n_kv_heads)
        headDimension = Int(i.head_dim)
        embeddingLength = Int(i.n_embd)
        feedForwardLength = Int(i.n_ff)
        contextLength = Int(i.context_length)
        vocabularySize = Int(i.n_vocab)
        parameterCount = i.n_params
        weightBytes = i.weight_bytes
        backend = Backend(i.backend)
        device = stringFromCharTuple(i.device)
        naturalCache = CacheType(i.natural_cache)
        slidingLayerCount = Int(i.n_sliding_layers)
        slidingWindow = Int(i.sliding_window)
        recurrentLayerCount = Int(i.n_recurrent_layers)
        decodeWeightBytes = i.decode_weight_bytes
    }
}

/// A model file copied into memory aligned for in-place tensor reads
/// (64 bytes: any GGUF alignment up to that reads without a copy).
final class ModelBytes: @unchecked Sendable {
    /// Written once in init, then only read (by the native model).
    let pointer: UnsafeMutableRawPointer
    let count: Int

    init(copying data: Data) throws {
        guard !data.isEmpty else {
            throw EdgeKVError(status: .invalidFile, message: "no bytes to load a model from", operation: "loading a model from memory")
        }
        count = data.count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: data.count, alignment: 64)
        data.copyBytes(to: pointer.assumingMemoryBound(to: UInt8.self), count: data.count)
    }

    deinit { pointer.deallocate() }
}

extension Optional where Wrapped == String {
    /// Calls `body` with a C string of the value, or NULL.
    func withOptionalCString<R>(_ body: (UnsafePointer<CChar>?) throws -> R) rethrows -> R {
        switch self {
        case .some(let value): return try value.withCString { try body($0) }
        case .none: return try body(nil)
        }
    }
}
