import CEdgeKV

/// The retention axis of a cache, named after the Hugging Face `Cache` classes.
public enum CacheType: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// The model's natural cache (dynamic for Llama, hybrid for Gemma, mamba, ...).
    case auto = 0
    /// `DynamicCache`: grows in chunks, unbounded.
    case dynamic = 1
    /// `StaticCache`: preallocated `maxCacheLen` tokens; overflow is `.cacheFull`.
    case `static` = 2
    /// `OffloadedCache`: unbounded, in host memory by default.
    case offloaded = 3
    /// `OffloadedStaticCache`: fixed capacity in host memory.
    case offloadedStatic = 4
    /// `QuantizedCache` (KIVI): a dynamic cache with quantized storage.
    case quantized = 5
    /// `SlidingWindowCache`: a ring of the last `windowLength` tokens.
    case slidingWindow = 6
    /// `SinkCache` (StreamingLLM): `numSinkTokens` pinned plus a ring; `windowLength` includes the sinks.
    case sink = 7
    /// `HybridCache` (Gemma 2/3): a ring on local layers, unbounded global layers.
    case hybrid = 8
    /// `MambaCache`: a conv window and an SSM state per layer.
    case mamba = 9
    /// `HybridMambaAttentionDynamicCache` (Jamba).
    case hybridMamba = 10
    /// `EncoderDecoderCache` (Whisper).
    case encoderDecoder = 11

    var cValue: ekv_cache_type { ekv_cache_type(rawValue: .init(truncatingIfNeeded: rawValue)) }

    init(_ type: ekv_cache_type) { self = CacheType(rawValue: Int32(truncatingIfNeeded: type.rawValue)) ?? .auto }

    /// Parses a Hugging Face name ("dynamic", "offloaded_static", ...) or "auto".
    public init?(name: String) {
        var type = EKV_CACHE_AUTO
        guard ekv_cache_type_from_name(name, &type) == EKV_OK else { return nil }
        self.init(type)
    }

    /// The Hugging Face name ("sliding_window").
    public var name: String { String(cString: ekv_cache_type_name(cValue)) }

    /// Same as `name`.
    public var description: String { name }
}

/// The storage-format axis: how keys and values are stored.
public enum KVStorage: Int32, Sendable, CaseIterable {
    /// Half precision (default, as HF's caches in half precision).
    case f16 = 0
    /// Single precision.
    case f32 = 1
    /// KIVI quantization (`nbits`, `qGroupSize`, `residualLength`) on any cache type.
    case kivi = 2
}

/// The placement axis: where the keys and values live.
public enum KVPlacement: Int32, Sendable, CaseIterable {
    /// Device memory (the offloaded types default to `.host`).
    case device = 0
    /// Host memory, prefetched layer by layer on a device with its own memory.
    case host = 1
    /// Host memory the device reads in place (refused without unified memory).
    case unified = 2
}

/// How a cache is made (`ekv_cache_params`). Parameter names follow Hugging
/// Face's (`max_cache_len`, `window_length`, `num_sink_tokens`, `nbits`,
/// `q_group_size`, `residual_length`, `offload`); a parameter a type does not
/// use is ignored. `nil` means the library's default.
public struct CacheConfiguration: Sendable, Hashable {
    /// Retention (default `.auto`, the model's natural cache).
    public var type: CacheType
    /// Fixed-capacity caches: tokens held (`nil` = the model's context length).
    public var maxCacheLen: Int?
    /// Storage format (default `.f16`).
    public var dtype: KVStorage?
    /// `sliding_window` / `sink`: tokens held, sinks included; must exceed `numSinkTokens`.
    public var windowLength: Int?
    /// `sink`: first tokens pinned (StreamingLLM; default 4).
    public var numSinkTokens: Int?
    /// KIVI: bits per code, 2, 4 or 8 (default 4).
    public var nbits: Int?
    /// KIVI: tokens per key group and channels per value group (default 64).
    public var qGroupSize: Int?
    /// KIVI: newest tokens kept in full precision (default 128).
    public var residualLength: Int?
    /// Placement (default: device; host for the offloaded types).
    public var offload: KVPlacement?
    /// Most bytes the cache may take, device and host together (`nil` = no
    /// budget). With `.auto` the library picks the cache that fits
    /// (`Model.planCache`) for a context of `maxCacheLen` tokens (`nil`: the
    /// model's); a fixed cache past it is refused and a growing one stops at
    /// it (`.outOfMemory`).
    public var memoryBudgetBytes: UInt64?

    /// A configuration; every parameter defaults to the library's value.
    public init(
        type: CacheType = .auto, maxCacheLen: Int? = nil, dtype: KVStorage? = nil, windowLength: Int? = nil,
        numSinkTokens: Int? = nil, nbits: Int? = nil, qGroupSize: Int? = nil, residualLength: Int? = nil,
        offload: KVPlacement? = nil, memoryBudgetBytes: UInt64? = nil
    ) {
        self.type = type
        self.maxCacheLen = maxCacheLen
        self.dtype = dtype
        self.windowLength = windowLength
        self.numSinkTokens = numSinkTokens
        self.nbits = nbits
        self.qGroupSize = qGroupSize
        self.residualLength = residualLength
        self.offload = offload
        self.memoryBudgetBytes = memoryBudgetBytes
    }

    /// The model's natural cache.
    public static let auto = CacheConfiguration()
    /// `DynamicCache`.
    public static let dynamic = CacheConfiguration(type: .dynamic)
    /// `OffloadedCache` (host memory).
    public static let offloaded = CacheConfiguration(type: .offloaded)

    /// `StaticCache` of `maxCacheLen` tokens.
    public static func `static`(maxCacheLen: Int) -> CacheConfiguration {
        CacheConfiguration(type: .static, maxCacheLen: maxCacheLen)
    }

    /// `OffloadedStaticCache` of `maxCacheLen` tokens.
    public static func offloadedStatic(maxCacheLen: Int) -> CacheConfiguration {
        CacheConfiguration(type: .offloadedStatic, maxCacheLen: maxCacheLen)
    }

    /// `QuantizedCache` (KIVI).
    public static func quantized(nbits: Int = 4, qGroupSize: Int? = nil, residualLength: Int? = nil) -> CacheConfiguration {
        CacheConfiguration(type: .quantized, nbits: nbits, qGroupSize: qGroupSize, residualLength: residualLength)
    }

    /// `SlidingWindowCache` holding the last `windowLength` tokens.
    public static func slidingWindow(windowLength: Int) -> CacheConfiguration {
        CacheConfiguration(type: .slidingWindow, windowLength: windowLength)
    }

    /// `SinkCache`: `numSinkTokens` pinned plus a ring, `windowLength` tokens in all.
    public static func sink(windowLength: Int, numSinkTokens: Int = 4) -> CacheConfiguration {
        CacheConfiguration(type: .sink, windowLength: windowLength, numSinkTokens: numSinkTokens)
    }

    var cParams: ekv_cache_params {
        var p = ekv_cache_default_params()
        p.type = type.cValue
        if let maxCacheLen { p.max_cache_len = Int32(clamping: maxCacheLen) }
        if let dtype { p.dtype = ekv_kv_dtype(rawValue: .init(truncatingIfNeeded: dtype.rawValue)) }
        if let windowLength { p.window_length = Int32(clamping: windowLength) }
        if let numSinkTokens { p.num_sink_tokens = Int32(clamping: numSinkTokens) }
        if let nbits { p.nbits = Int32(clamping: nbits) }
        if let qGroupSize { p.q_group_size = Int32(clamping: qGroupSize) }
        if let residualLength { p.residual_length = Int32(clamping: residualLength) }
        if let offload { p.offload = ekv_placement(rawValue: .init(truncatingIfNeeded: offload.rawValue)) }
        if let memoryBudgetBytes { p.memory_budget_bytes = memoryBudgetBytes }
        return p
    }

    /// Every parameter as the library resolved it (`ekv_cache_get_params`, a plan's choice).
    init(resolved p: ekv_cache_params) {
        self.init(
            type: CacheType(p.type), maxCacheLen: Int(p.max_cache_len),
            dtype: KVStorage(rawValue: Int32(truncatingIfNeeded: p.dtype.rawValue)),
            windowLength: Int(p.window_length), numSinkTokens: Int(p.num_sink_tokens), nbits: Int(p.nbits),
            qGroupSize: Int(p.q_group_size), residualLength: Int(p.residual_length),
            offload: KVPlacement(rawValue: Int32(truncatingIfNeeded: p.offload.rawValue)),
            memoryBudgetBytes: p.memory_budget_bytes == 0 ? nil : p.memory_budget_bytes)
    }
}

/// Memory and token accounting of a cache (`ekv_cache_stats`).
public struct CacheStats: Sendable, Hashable {
    /// Tokens consumed so far: the position of the next token (HF `get_seq_length`).
    public let sequenceLength: Int
    /// Most tokens held at once; `nil` when unbounded.
    public let capacity: Int?
    /// Bytes allocated in device memory.
    public let deviceBytes: UInt64
    /// Bytes allocated in host or unified memory.
    public let hostBytes: UInt64
    /// Bytes holding live tokens.
    public let usedBytes: UInt64
    /// What one more token costs across all layers.
    public let bytesPerToken: UInt64
    /// Tokens computed through this cache since it was made.
    public let tokensForwarded: UInt64
    /// Tokens whose keys and values are still held (rings drop old ones).
    public let tokensHeld: Int
}

/// Which logits `Cache.forward` returns.
public enum LogitsMode: Sendable {
    /// Logits of the last input token: `vocabularySize` floats.
    case last
    /// Logits of every input token: `tokens.count * vocabularySize` floats, row-major.
    case all
}

/// The key/value cache of one conversation: the state a model's generation
/// builds on. Keep one per conversation and reuse it across turns; only new
/// tokens are computed.
///
/// Every operation runs on the cache's own native thread, one at a time in
/// the order they were called, so operations are `async` and never block a
/// thread of Swift's cooperative pool. Operations called while a generation
/// runs wait for it; a cancelled generation stops within milliseconds.
///
/// A cache keeps its model's native state alive: releasing the `Model` first
/// is safe.
public final class Cache: Sendable {
    /// The native `ekv_cache`; used only on `lane`, one thread at a time.
    nonisolated(unsafe) let handle: OpaquePointer
    /// The native model, kept alive by the native cache's own reference
    /// (immutable and thread safe).
    nonisolated(unsafe) let modelHandle: OpaquePointer
    /// The weights of a model loaded from memory, which the native model
    /// (and so this cache) reads in place; nil for a file.
    let modelBytes: ModelBytes?
    /// Where this cache's native calls run.
    let lane = Lane(name: "edgekv.cache")

    /// The resolved cache type (never `.auto`).
    public let type: CacheType
    /// Vocabulary size of the model (the width of a logits row).
    public let vocabularySize: Int

    /// Makes an empty cache for `model`.
    /// - Throws: `EdgeKVError` with `.unsupported` and the reason when the
    ///   model cannot use the type ("cache type 'hybrid' needs interleaved
    ///   local/global attention layers; llama has none"), `.invalidArgument`
    ///   for bad parameters.
    public convenience init(model: Model, configuration: CacheConfiguration = CacheConfiguration()) throws {
        var params = configuration.cParams
        var cache: OpaquePointer?
        try check(ekv_cache_create(model.handle, &params, &cache), "creating a \(configuration.type) cache")
        try self.init(adopting: cache!, model: model)
    }

    /// Takes ownership of one reference to `handle`, a cache of `model`.
    convenience init(adopting handle: OpaquePointer, model: Model) throws {
        try self.init(adopting: handle, modelHandle: model.handle, modelBytes: model.bytes,
                      vocabularySize: model.info.vocabularySize)
    }

    /// Takes ownership of one reference to `handle`.
    init(adopting handle: OpaquePointer, modelHandle: OpaquePointer, modelBytes: ModelBytes?, vocabularySize: Int) throws {
        var type = EKV_CACHE_AUTO
        let status = ekv_cache_get_type(handle, &type)
        if status != EKV_OK {
            let error = lastError(status, "reading the cache type")
            ekv_cache_free(handle)
            throw error
        }
        self.handle = handle
        self.modelHandle = modelHandle
        self.modelBytes = modelBytes
        self.type = CacheType(type)
        self.vocabularySize = vocabularySize
    }

    deinit { ekv_cache_free(handle) }

    /// Reads a file written by `save(to:)` into a new cache of `model` (same
    /// type and parameters).
    /// - Throws: `EdgeKVError`: `.io` (no such file), `.invalidFile`
    ///   (truncated, corrupted), `.unsupported` (another format version),
    ///   `.modelMismatch` (written for another model).
    public static func load(from path: String, model: Model) async throws -> Cache {
        try await NativeThread.run(name: "edgekv.cache-load") {
            var cache: OpaquePointer?
            try check(ekv_cache_load(model.handle, path, &cache), "loading the cache \(path)")
            return try Cache(adopting: cache!, model: model)
        }
    }

    /// Reads the bytes `serialized()` returned into a new cache of `model`
    /// (copied; refused as `load(from:model:)` refuses files).
    public static func load(serialized bytes: [UInt8], model: Model) async throws -> Cache {
        try await NativeThread.run(name: "edgekv.cache-load") {
            var cache: OpaquePointer?
            let status = bytes.withUnsafeBytes { raw in
                ekv_cache_load_from_memory(model.handle, raw.baseAddress, raw.count, &cache)
            }
            try check(status, "loading a cache from \(bytes.count) bytes")
            return try Cache(adopting: cache!, model: model)
        }
    }

    /// Memory and token accounting.
    public func stats() async throws -> CacheStats {
        try await lane.run { [self] in
            var s = ekv_cache_stats_default()
            try check(ekv_cache_get_stats(handle, &s), "reading cache stats")
            return CacheStats(
                sequenceLength: Int(s.seq_len), capacity: s.capacity < 0 ? nil : Int(s.capacity),
                deviceBytes: s.device_bytes, hostBytes: s.host_bytes, usedBytes: s.used_bytes,
                bytesPerToken: s.bytes_per_token, tokensForwarded: s.tokens_forwarded, tokensHeld: Int(s.tokens_held))
        }
    }

    /// Tokens consumed so far, i.e. the position of the next token (HF
    /// `get_seq_length`). Rings keep counting past their window.
    public func sequenceLength() async throws -> Int {
        try await lane.run { [self] in
            var n: Int32 = 0
            try check(ekv_cache_seq_len(handle, &n), "reading the sequence length")
            return Int(n)
        }
    }

    /// Most tokens held at once (`max_cache_len`, the window of a ring);
    /// `nil` when unbounded (HF `get_max_cache_shape`).
    public func capacity() async throws -> Int? {
        try await lane.run { [self] in
            var n: Int32 = 0
            try check(ekv_cache_capacity(handle, &n), "reading the capacity")
            return n < 0 ? nil : Int(n)
        }
    }

    /// Drops every token; keeps the allocation.
    public func reset() async throws {
        try await lane.run { [self] in try check(ekv_cache_reset(handle), "resetting the cache") }
    }

    /// Keeps the first `length` tokens (HF `crop`).
    /// - Throws: `.invalidArgument` past the sequence length; `.invalidState`
    ///   for a ring or KIVI cache that no longer holds what the shorter
    ///   sequence needs (and for Mamba states).
    public func crop(to length: Int) async throws {
        try await lane.run { [self] in
            try check(ekv_cache_crop(handle, Int32(clamping: length)), "cropping the cache to \(length) tokens")
        }
    }

    /// A deep copy, for prefix reuse: prefill a shared prompt once and clone
    /// it per request.
    public func clone() async throws -> Cache {
        try await lane.run { [self] in
            var copy: OpaquePointer?
            try check(ekv_cache_clone(handle, &copy), "cloning the cache")
            return try Cache(adopting: copy!, modelHandle: modelHandle, modelBytes: modelBytes,
                             vocabularySize: vocabularySize)
        }
    }

    /// Writes the cache to `path`: a versioned, checksummed file that records
    /// its configuration and the model it belongs to.
    public func save(to path: String) async throws {
        try await lane.run { [self] in try check(ekv_cache_save(handle, path), "saving the cache to \(path)") }
    }

    /// The bytes `save(to:)` would write (for a database, a socket, app
    /// storage); read them back with `Cache.load(serialized:model:)`.
    public func serialized() async throws -> [UInt8] {
        try await lane.run { [self] in
            var length = 0
            let sized = ekv_cache_save_to_memory(handle, nil, 0, &length)
            if sized != EKV_OK && sized != EKV_ERR_BUFFER_TOO_SMALL { try check(sized, "sizing the cache's bytes") }
            var bytes = [UInt8](repeating: 0, count: length)
            try bytes.withUnsafeMutableBytes { raw in
                try check(ekv_cache_save_to_memory(handle, raw.baseAddress, raw.count, &length), "writing the cache's bytes")
            }
            return Array(bytes.prefix(length))
        }
    }

    /// Runs the model on `tokens`, extends the cache with them and returns logits.
    ///
    /// Cancelling the calling task stops the computation between layers and
    /// chunks (`EdgeKVError` `.cancelled`) and leaves the cache as it was.
    /// - Parameters:
    ///   - tokens: the input ids.
    ///   - positions: `nil` continues at the sequence length; otherwise one
    ///     ascending, consecutive position per token starting at most at the
    ///     sequence length (a start below it crops the cache first), as HF's
    ///     `cache_position`.
    ///   - logits: the last row only, or every row.
    /// - Throws: `.invalidToken`, `.cacheFull` (a fixed-capacity cache
    ///   cannot take them; nothing is written), `.cancelled`, ...
    public func forward(_ tokens: [Token], positions: [Int32]? = nil, logits: LogitsMode = .last) async throws -> [Float] {
        let stop = try StopRequest()
        let rows = logits == .all ? tokens.count : 1
        return try await withTaskCancellationHandler {
            try await lane.run { [self] in
                var out = [Float](repeating: 0, count: rows * vocabularySize)
                // This call's own stop request: whatever is attached to the
                // native cache stays attached (and stops the call too).
                var params = ekv_forward_default_params()
                params.cancel = stop.handle
                let mode = logits == .all ? EKV_LOGITS_ALL : EKV_LOGITS_LAST
                let status: ekv_status
                if let positions {
                    status = ekv_forward_ex(modelHandle, handle, tokens, Int32(clamping: tokens.count), positions, mode,
                                            &out, out.count, &params)
                } else {
                    status = ekv_forward_ex(modelHandle, handle, tokens, Int32(clamping: tokens.count), nil, mode, &out,
                                            out.count, &params)
                }
                try check(status, "running \(tokens.count) tokens")
                return out
            }
        } onCancel: {
            stop.trigger()
        }
    }
}
