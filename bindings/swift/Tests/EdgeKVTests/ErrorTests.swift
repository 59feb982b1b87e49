// Every error path arrives as an EdgeKVError with the library's status and
// message: missing and hostile files, wrong cache types, a full static
// cache, invalid tokens and parameters, cache files of another model.
import EdgeKV
import Foundation
import XCTest

/// Temporary files of one test, removed when it goes out of scope. (Not
/// XCTest teardown blocks: XCTest on Linux never frees its test-case objects,
/// so what they hold would show up as leaks under AddressSanitizer.)
final class TemporaryFiles {
    private var paths: [String] = []

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = Fixtures.temporaryPath(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        paths.append(path)
        return path
    }

    func track(_ path: String) -> String {
        paths.append(path)
        return path
    }

    deinit { for path in paths { try? FileManager.default.removeItem(atPath: path) } }
}

final class ErrorTests: XCTestCase {

    func testMissingModelFile() async throws {
        let error = await assertEdgeKVError(.io) { try await Model.load(from: "/nonexistent/dir/model.gguf") }
        XCTAssertTrue(error?.message.contains("/nonexistent/dir/model.gguf") ?? false, "\(String(describing: error))")
        XCTAssertTrue(error?.description.contains("I/O") == true || error?.description.contains("io") == true
                      || error?.description.contains("file") == true, "\(String(describing: error))")
    }

    func testHostileModelFiles() async throws {
        let files = TemporaryFiles()
        let garbage = try files.write("garbage.gguf", [0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x13, 0x37])
        await assertEdgeKVError(.invalidFile) { try await Model.load(from: garbage) }

        let empty = try files.write("empty.gguf", [])
        await assertEdgeKVError(.invalidFile) { try await Model.load(from: empty) }

        // The GGUF magic and version, then a tensor count far past the file.
        var header: [UInt8] = Array("GGUF".utf8) + [3, 0, 0, 0]
        header += [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]  // n_tensors
        header += [1, 0, 0, 0, 0, 0, 0, 0]  // n_kv
        header += [0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0]  // key length past the end
        let hostile = try files.write("hostile.gguf", header)
        await assertEdgeKVError(.invalidFile) { try await Model.load(from: hostile) }

        // A real model cut short.
        let real = try Data(contentsOf: URL(fileURLWithPath: Fixtures.tinyLlamaPath))
        let truncated = try files.write("truncated.gguf", Array(real.prefix(real.count / 2)))
        await assertEdgeKVError(.invalidFile) { try await Model.load(from: truncated) }

        // The synchronous initializer reports the same way.
        XCTAssertThrowsError(try Model(path: garbage)) { error in
            XCTAssertEqual((error as? EdgeKVError)?.status, .invalidFile)
        }
    }

    func testWrongCacheTypeForTheModel() async throws {
        let model = try await Fixtures.tinyLlama()
        for type in [CacheType.hybrid, .mamba, .hybridMamba] {
            let error = await assertEdgeKVError(.unsupported) { try Cache(model: model, configuration: CacheConfiguration(type: type)) }
            XCTAssertTrue(error?.message.contains(type.name) ?? false, "message should name '\(type.name)': \(String(describing: error))")
        }
    }

    func testAttentionCachesOnAMambaModelAndDecodingWithoutAudio() async throws {
        let mamba = try await Fixtures.fixtureModel("tiny_mamba/tiny_mamba_f32.gguf")
        for type in [CacheType.sink, .dynamic, .hybrid] {
            let error = await assertEdgeKVError(.unsupported) { try Cache(model: mamba, configuration: CacheConfiguration(type: type)) }
            XCTAssertTrue(error?.message.contains(type.name) ?? false, "\(String(describing: error))")
        }
        // A Mamba state cannot be cropped.
        let state = try Cache(model: mamba)
        _ = try await state.forward([84, 104, 101, 32])
        await assertEdgeKVError(.invalidState) { try await state.crop(to: 2) }

        // Whisper's encoder-decoder cache: decoding before any audio was encoded is refused.
        let whisper = try await Fixtures.fixtureModel("tiny_whisper/tiny_whisper.gguf")
        let cache = try Cache(model: whisper)
        XCTAssertEqual(cache.type, .encoderDecoder)
        await assertEdgeKVError(.invalidState) {
            try await cache.complete(prompt: [1, 2, 3], parameters: GenerationParameters(maxNewTokens: 2))
        }
    }

    func testInvalidCacheParameters() async throws {
        let model = try await Fixtures.tinyLlama()
        await assertEdgeKVError(.invalidArgument) { try Cache(model: model, configuration: .sink(windowLength: 4, numSinkTokens: 4)) }
        await assertEdgeKVError(.invalidArgument) { try Cache(model: model, configuration: .quantized(nbits: 3)) }
        await assertEdgeKVError(.invalidArgument) { try Cache(model: model, configuration: .static(maxCacheLen: -5)) }
    }

    func testFullStaticCache() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        let cache = try Cache(model: model, configuration: .static(maxCacheLen: 16))
        // A forward that does not fit is refused and writes nothing.
        let tooLong = Array(repeating: reference.inputIds, count: 2).flatMap { $0 }  // 24 tokens
        await assertEdgeKVError(.cacheFull) { try await cache.forward(tooLong) }
        var length = try await cache.sequenceLength()
        XCTAssertEqual(length, 0)
        // A generation that fills it ends with .cacheFull after the room it had.
        var p = GenerationParameters(maxNewTokens: 32)
        p.stopAtEndOfGeneration = false
        let completion = try await cache.complete(prompt: reference.inputIds, parameters: p)
        XCTAssertEqual(completion.stopReason, .cacheFull)
        XCTAssertEqual(completion.tokens, Array(reference.greedyTokens.prefix(completion.tokens.count)))
        length = try await cache.sequenceLength()
        XCTAssertEqual(length, 16)
        await assertEdgeKVError(.cacheFull) { try await cache.forward([5]) }
        // Still usable after a reset.
        try await cache.reset()
        _ = try await cache.forward(reference.inputIds)
    }

    func testInvalidTokens() async throws {
        let model = try await Fixtures.tinyLlama()
        let cache = try Cache(model: model)
        await assertEdgeKVError(.invalidToken) { try await cache.forward([1, 2, 1_000_000]) }
        await assertEdgeKVError(.invalidToken) { try await cache.forward([-3]) }
        // From a stream, the error is thrown by the loop.
        let error = await assertEdgeKVError(.invalidToken) {
            try await collect(cache.generate(prompt: [1, 99_999], parameters: GenerationParameters(maxNewTokens: 4)))
        }
        XCTAssertEqual(error?.operation, "starting a generation")
        await assertEdgeKVError(.invalidToken) { try model.detokenize([1, 77_777]) }
        let length = try await cache.sequenceLength()
        XCTAssertEqual(length, 0)
    }

    func testInvalidGenerationParameters() async throws {
        let model = try await Fixtures.tinyLlama()
        let cache = try Cache(model: model)
        var p = GenerationParameters(maxNewTokens: 4)
        p.topP = -1
        await assertEdgeKVError(.invalidArgument) { try await cache.complete(prompt: [1, 2, 3], parameters: p) }
        p = GenerationParameters(maxNewTokens: 4)
        p.temperature = -2
        await assertEdgeKVError(.invalidArgument) { try await collect(cache.generate(prompt: [1, 2, 3], parameters: p)) }
        await assertEdgeKVError(.invalidArgument) { try await cache.crop(to: 5) }
    }

    func testCacheFilesOfAnotherModelOrBroken() async throws {
        let files = TemporaryFiles()
        let tiny = try await Fixtures.tinyLlama()
        let smol = try await Fixtures.smolLM2()
        let reference = try Fixtures.tinyLlamaReference()
        let cache = try Cache(model: tiny)
        _ = try await cache.forward(reference.inputIds)
        let path = files.track(Fixtures.temporaryPath("tiny.ekvc"))
        try await cache.save(to: path)

        await assertEdgeKVError(.modelMismatch) { try await Cache.load(from: path, model: smol) }
        await assertEdgeKVError(.io) { try await Cache.load(from: path + ".missing", model: tiny) }

        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let truncated = try files.write("truncated.ekvc", Array(bytes.prefix(bytes.count - 100)))
        await assertEdgeKVError(.invalidFile) { try await Cache.load(from: truncated, model: tiny) }
        var flipped = Array(bytes)
        flipped[flipped.count / 2] ^= 0xFF
        let corrupted = try files.write("corrupted.ekvc", flipped)
        await assertEdgeKVError(.invalidFile) { try await Cache.load(from: corrupted, model: tiny) }
        let garbage = try files.write("garbage.ekvc", [1, 2, 3, 4, 5])
        await assertEdgeKVError(.invalidFile) { try await Cache.load(from: garbage, model: tiny) }
        await assertEdgeKVError(.io) { try await cache.save(to: "/nonexistent/dir/cache.ekvc") }
    }

    func testCacheOfAnotherModelInAConversation() async throws {
        let tiny = try await Fixtures.tinyLlama()
        let smol = try await Fixtures.smolLM2()
        // The cache was made for tiny; the conversation renders with SmolLM2.
        let conversation = Conversation(model: smol, cache: try Cache(model: tiny))
        let error = await assertEdgeKVError(.invalidToken) { try await conversation.respond(to: "Hi") }
        _ = error
        XCTAssertEqual(conversation.messages, [], "a failed turn is not kept")
    }

    func testUnknownChatTemplateAndMetadata() async throws {
        let model = try await Fixtures.smolLM2()
        await assertEdgeKVError(.invalidArgument) { try model.applyChatTemplate([.user("Hi")], template: "no-such-template") }
        _ = await assertEdgeKVError(.invalidArgument) { try model.metadata("no.such.key") }
    }

    /// Each error carries its own call's message (read on the calling
    /// thread right after the call), never a stale one.
    func testMessagesBelongToTheirCall() async throws {
        let model = try await Fixtures.tinyLlama()
        let a = await assertEdgeKVError(.unsupported) { try Cache(model: model, configuration: CacheConfiguration(type: .hybrid)) }
        let b = await assertEdgeKVError(.io) { try await Model.load(from: "/nonexistent/other.gguf") }
        let c = await assertEdgeKVError(.unsupported) { try Cache(model: model, configuration: CacheConfiguration(type: .mamba)) }
        XCTAssertNotEqual(a?.message, b?.message)
        XCTAssertNotEqual(a?.message, c?.message)
    }
}
