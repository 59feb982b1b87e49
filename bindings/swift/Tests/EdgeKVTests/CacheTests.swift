// Cache types with their Hugging Face-named parameters, and the cache
// operations: stats, reset, crop, clone, save/load, forward.
import EdgeKV
import XCTest

final class CacheTests: XCTestCase {
    func testEveryGenericCacheTypeWithItsParameters() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        // (configuration, expected resolved type, expected capacity)
        let cases: [(CacheConfiguration, CacheType, Int?)] = [
            (.auto, .dynamic, nil),
            (.dynamic, .dynamic, nil),
            (.static(maxCacheLen: 48), .static, 48),
            (.offloaded, .offloaded, nil),
            (CacheConfiguration(type: .offloaded, offload: .unified), .offloaded, nil),
            (.offloadedStatic(maxCacheLen: 40), .offloadedStatic, 40),
            (.quantized(nbits: 4, qGroupSize: 16, residualLength: 16), .quantized, nil),
            (.quantized(nbits: 2, qGroupSize: 16, residualLength: 32), .quantized, nil),
            (.slidingWindow(windowLength: 12), .slidingWindow, 12),
            (.sink(windowLength: 12, numSinkTokens: 4), .sink, 12),
            (CacheConfiguration(type: .sink, dtype: .kivi, windowLength: 64, numSinkTokens: 4, nbits: 8, qGroupSize: 16,
                                residualLength: 16, offload: .host), .sink, 64),
            (CacheConfiguration(type: .static, maxCacheLen: 32, dtype: .f32, offload: .host), .static, 32),
        ]
        for (configuration, type, capacity) in cases {
            let cache = try Cache(model: model, configuration: configuration)
            XCTAssertEqual(cache.type, type, "\(configuration)")
            let cap = try await cache.capacity()
            XCTAssertEqual(cap, capacity, "\(configuration)")
            // Each of them runs: 12 prompt tokens + 8 generated (the rings wrap).
            let completion = try await cache.complete(prompt: reference.inputIds, parameters: GenerationParameters(maxNewTokens: 8))
            XCTAssertEqual(completion.tokens.count, 8, "\(configuration)")
            let stats = try await cache.stats()
            XCTAssertEqual(stats.sequenceLength, reference.inputIds.count + 7, "\(configuration)")
            XCTAssertEqual(stats.capacity, capacity)
            XCTAssertEqual(stats.tokensHeld, min(stats.sequenceLength, capacity ?? .max), "\(configuration)")
            XCTAssertGreaterThan(stats.bytesPerToken, 0)
            XCTAssertGreaterThan(stats.deviceBytes + stats.hostBytes, 0)
            XCTAssertEqual(stats.tokensForwarded, UInt64(reference.inputIds.count + 7))
        }
    }

    func testCacheTypeNamesAreHuggingFaces() {
        XCTAssertEqual(CacheType.offloadedStatic.name, "offloaded_static")
        XCTAssertEqual(CacheType.slidingWindow.name, "sliding_window")
        XCTAssertEqual(CacheType(name: "sink"), .sink)
        XCTAssertEqual(CacheType(name: "hybrid_mamba"), .hybridMamba)
        XCTAssertEqual(CacheType(name: "auto"), .auto)
        XCTAssertNil(CacheType(name: "nonsense"))
        for type in CacheType.allCases { XCTAssertEqual(CacheType(name: type.name), type) }
        XCTAssertEqual(Backend(name: "cpu"), .cpu)
        XCTAssertNil(Backend(name: "tpu"))
        XCTAssertTrue(Backend.cpu.isAvailable)
    }

    func testResetCropAndStats() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        let cache = try Cache(model: model, configuration: CacheConfiguration(type: .dynamic, dtype: .f32))
        _ = try await cache.forward(reference.inputIds)
        var length = try await cache.sequenceLength()
        XCTAssertEqual(length, 12)
        try await cache.crop(to: 7)
        length = try await cache.sequenceLength()
        XCTAssertEqual(length, 7)
        // Cropped back to 7, the rest of the prompt continues as one sequence:
        // the greedy continuation equals the reference.
        var p = GenerationParameters(maxNewTokens: reference.greedyTokens.count)
        p.stopAtEndOfGeneration = false
        let completion = try await cache.complete(prompt: reference.inputIds, parameters: p)
        XCTAssertEqual(completion.stats.promptTokensReused, 7)
        XCTAssertEqual(completion.stats.promptTokensForwarded, 5)
        XCTAssertEqual(completion.tokens, reference.greedyTokens)
        try await cache.reset()
        let stats = try await cache.stats()
        XCTAssertEqual(stats.sequenceLength, 0)
        XCTAssertEqual(stats.tokensHeld, 0)
    }

    func testForwardLogitsOfEveryRowMatchTheLastRow() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        let n = model.info.vocabularySize
        let all = try await Cache(model: model, configuration: CacheConfiguration(dtype: .f32)).forward(reference.inputIds, logits: .all)
        XCTAssertEqual(all.count, reference.inputIds.count * n)
        let cache = try Cache(model: model, configuration: CacheConfiguration(type: .static, maxCacheLen: 32, dtype: .f32))
        // Chunked prefill with explicit positions, as HF's cache_position.
        _ = try await cache.forward(Array(reference.inputIds[0..<7]), positions: Array(0..<7))
        let last = try await cache.forward(Array(reference.inputIds[7...]), positions: Array(7..<12))
        XCTAssertEqual(last.count, n)
        let row = Array(all[(11 * n)..<(12 * n)])
        let spread = max(row.map(abs).max() ?? 1, 1e-6)
        for i in 0..<n { XCTAssertEqual(last[i], row[i], accuracy: 1e-4 * spread) }
        // argmax is the reference's first greedy token
        XCTAssertEqual(Token(last.indices.max { last[$0] < last[$1] }!), reference.greedyTokens[0])
    }

    func testCloneForksAConversation() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        var p = GenerationParameters(maxNewTokens: reference.greedyTokens.count)
        p.stopAtEndOfGeneration = false
        let cache = try Cache(model: model, configuration: CacheConfiguration(dtype: .f32))
        _ = try await cache.forward(reference.inputIds)
        let fork = try await cache.clone()
        XCTAssertEqual(fork.type, cache.type)
        let a = try await cache.complete(prompt: reference.inputIds, parameters: p)
        let b = try await fork.complete(prompt: reference.inputIds, parameters: p)
        XCTAssertEqual(a.tokens, reference.greedyTokens)
        XCTAssertEqual(b.tokens, reference.greedyTokens)
        XCTAssertEqual(b.stats.promptTokensReused, reference.inputIds.count - 1)
        // They are independent: resetting one leaves the other.
        try await cache.reset()
        let forkLength = try await fork.sequenceLength()
        XCTAssertEqual(forkLength, reference.inputIds.count + reference.greedyTokens.count - 1)
    }

    func testSaveAndLoadRestoreTheCache() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        var p = GenerationParameters(maxNewTokens: reference.greedyTokens.count)
        p.stopAtEndOfGeneration = false
        let path = Fixtures.temporaryPath("cache.ekvc")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let cache = try Cache(model: model, configuration: .sink(windowLength: 64, numSinkTokens: 4))
        _ = try await cache.forward(reference.inputIds)
        try await cache.save(to: path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let loaded = try await Cache.load(from: path, model: model)
        XCTAssertEqual(loaded.type, .sink)
        let capacity = try await loaded.capacity()
        XCTAssertEqual(capacity, 64)
        let length = try await loaded.sequenceLength()
        XCTAssertEqual(length, reference.inputIds.count)
        let a = try await loaded.complete(prompt: reference.inputIds, parameters: p)
        let b = try await cache.complete(prompt: reference.inputIds, parameters: p)
        XCTAssertEqual(a.tokens, b.tokens)
        XCTAssertEqual(a.stats.promptTokensReused, b.stats.promptTokensReused)
    }

    func testModelInfoMetadataAndSpecialTokens() async throws {
        let model = try await Fixtures.smolLM2()
        let info = model.info
        XCTAssertEqual(info.architecture, "llama")
        XCTAssertEqual(info.layerCount, 30)
        XCTAssertEqual(info.vocabularySize, 49152)
        XCTAssertEqual(info.naturalCache, .dynamic)
        XCTAssertEqual(info.backend, .cpu)
        XCTAssertFalse(info.device.isEmpty)
        XCTAssertGreaterThan(info.parameterCount, 100_000_000)
        // Tied embeddings: the output head reads the whole table every step.
        XCTAssertLessThanOrEqual(info.decodeWeightBytes, info.weightBytes)
        XCTAssertGreaterThan(info.decodeWeightBytes, info.weightBytes / 10 * 9)
        XCTAssertEqual(try model.metadata("general.architecture"), "llama")
        let eos = try XCTUnwrap(try model.specialToken(.eos))
        XCTAssertTrue(model.isEndOfGeneration(eos))
        XCTAssertFalse(model.isEndOfGeneration(try model.tokenize("Hello", addSpecial: false)[0]))
        let rendered = try model.applyChatTemplate([.system("Be brief."), .user("Hi"), .assistant("Hello!"), .user("Bye")])
        XCTAssertTrue(rendered.contains("<|im_start|>user\nBye<|im_end|>"), rendered)
        XCTAssertTrue(rendered.hasSuffix("<|im_start|>assistant\n"), rendered)
        let llama3 = try model.applyChatTemplate([.user("Hi")], template: "llama3")
        XCTAssertTrue(llama3.contains("<|start_header_id|>user<|end_header_id|>"), llama3)
        XCTAssertFalse(try Backend.cpu.devices().isEmpty)
        XCTAssertEqual(Library.versionNumber, Library.headerVersionNumber)
        XCTAssertFalse(Library.version.isEmpty)
    }

    func testLogHandlerReceivesLibraryMessages() async throws {
        let lines = LogLines()
        Library.setLogHandler { level, message in lines.append(level, message) }
        defer { Library.setLogHandler(nil) }
        _ = try await Model.load(from: Fixtures.tinyLlamaPath)
        let received = lines.all
        XCTAssertTrue(received.contains { $0.0 == .info && $0.1.contains("loaded") }, "\(received)")
    }

    func testLoadProgressReachesOne() async throws {
        let progress = LogLines()
        _ = try await Model.load(from: Fixtures.tinyLlamaPath) { fraction in progress.append(.info, String(fraction)) }
        let values = progress.all.compactMap { Float($0.1) }
        XCTAssertFalse(values.isEmpty)
        XCTAssertEqual(values.last, 1)
        XCTAssertEqual(values, values.sorted())
    }
}

/// Thread-safe collection of (level, message) pairs for callbacks.
final class LogLines: Sendable {
    private let lines = Mutexed<[(LogLevel, String)]>([])
    func append(_ level: LogLevel, _ message: String) { lines.with { $0.append((level, message)) } }
    var all: [(LogLevel, String)] { lines.with { $0 } }
}

/// A value behind a lock, for test callbacks.
final class Mutexed<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func with<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
