// Models read from memory and from a byte range of a file descriptor (a
// model inside an archive), and caches written to and read from bytes, each
// against the same model or cache through its path.
import EdgeKV
import Foundation
import XCTest

final class InMemoryTests: XCTestCase {
    private func greedy(_ model: Model, _ reference: Fixtures.Reference) async throws -> [Token] {
        var p = GenerationParameters(maxNewTokens: reference.greedyTokens.count)
        p.stopAtEndOfGeneration = false
        let cache = try Cache(model: model, configuration: .dynamic)
        return try await cache.complete(prompt: reference.inputIds, parameters: p).tokens
    }

    func testModelFromADescriptorRangeGeneratesAsFromItsPath() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        let want = try await greedy(try await Fixtures.tinyLlama(), reference)
        XCTAssertEqual(want, reference.greedyTokens)
        let model = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.tinyLlamaPath)))
        let files = TemporaryFiles()
        // Aligned (read in place) and misaligned (tensors copied) offsets.
        for padding in [0, 4096, 101] {
            let path = try files.write("asset-\(padding).bin", [UInt8](repeating: 0, count: padding) + model)
            let fd = open(path, O_RDONLY)
            XCTAssertGreaterThanOrEqual(fd, 0)
            let loaded = try await Model.load(fileDescriptor: fd, offset: UInt64(padding), length: UInt64(model.count))
            close(fd) // the mapping outlives the descriptor
            let got = try await greedy(loaded, reference)
            XCTAssertEqual(got, want, "offset \(padding)")
        }
    }

    func testModelFromMemoryGeneratesAsFromItsPath() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        let want = try await greedy(try await Fixtures.tinyLlama(), reference)
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.tinyLlamaPath))
        let loaded = try await Model.load(data: data)
        XCTAssertEqual(loaded.info.architecture, "llama")
        let got = try await greedy(loaded, reference)
        XCTAssertEqual(got, want)
        // The blocking form, from a Data slice that does not start at index 0.
        let padded = Data(count: 13) + data
        let blocking = try Model(data: padded[13...])
        let again = try await greedy(blocking, reference)
        XCTAssertEqual(again, want)
    }

    func testCachesOfAMemoryModelOutliveTheModel() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        let want = try await greedy(try await Fixtures.tinyLlama(), reference)
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.tinyLlamaPath))
        weak var gone: Model?
        // Synchronous, so nothing async holds the model past the closure.
        let cache: Cache = try {
            let model = try Model(data: data)
            gone = model
            return try Cache(model: model, configuration: .dynamic)
        }()
        XCTAssertNil(gone, "the Model object is released; only the cache keeps the weights")
        var p = GenerationParameters(maxNewTokens: want.count)
        p.stopAtEndOfGeneration = false
        let clone = try await cache.clone()
        let got = try await cache.complete(prompt: reference.inputIds, parameters: p).tokens
        XCTAssertEqual(got, want)
        let fromClone = try await clone.complete(prompt: reference.inputIds, parameters: p).tokens
        XCTAssertEqual(fromClone, want)
    }

    func testBadModelBytesAreRefused() async throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.tinyLlamaPath))
        await assertEdgeKVError(.invalidFile) { try Model(data: Data()) }
        await assertEdgeKVError(.invalidFile) { try Model(data: Data(repeating: 0x47, count: 4096)) }
        await assertEdgeKVError(.invalidFile) { try Model(data: bytes.prefix(bytes.count / 2)) }
        await assertEdgeKVError(.invalidFile) { try await Model.load(data: bytes.prefix(64)) }
    }

    func testBadDescriptorsAndRangesAreRefused() async throws {
        let files = TemporaryFiles()
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.tinyLlamaPath)))
        let path = try files.write("asset.bin", bytes)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let n = UInt64(bytes.count)
        await assertEdgeKVError(.io) { try Model(fileDescriptor: fd, offset: 0, length: n + 1) }
        await assertEdgeKVError(.io) { try Model(fileDescriptor: fd, offset: n, length: 1) }
        await assertEdgeKVError(.invalidFile) { try Model(fileDescriptor: fd, offset: 1, length: n - 1) }
        await assertEdgeKVError(.invalidArgument) { try Model(fileDescriptor: -1, offset: 0, length: 16) }
        await assertEdgeKVError(.io) { try Model(fileDescriptor: 987_654, offset: 0, length: 16) }
    }

    func testSerializedCacheRoundTripsAndContinuesLikeTheOriginal() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        let next = Array(reference.greedyTokens.prefix(4))
        for configuration in [CacheConfiguration.dynamic, .quantized(nbits: 4, qGroupSize: 8, residualLength: 8),
                              .sink(windowLength: 12, numSinkTokens: 2)] {
            let original = try Cache(model: model, configuration: configuration)
            _ = try await original.forward(reference.inputIds)
            let bytes = try await original.serialized()
            let copy = try await Cache.load(serialized: bytes, model: model)
            XCTAssertEqual(copy.type, original.type)
            let copyLength = try await copy.sequenceLength()
            XCTAssertEqual(copyLength, reference.inputIds.count)
            let a = try await original.forward(next)
            let b = try await copy.forward(next)
            XCTAssertEqual(a, b, "\(configuration.type)")
            // The same bytes as the file save writes.
            let path = Fixtures.temporaryPath("serialized.ekvc")
            defer { try? FileManager.default.removeItem(atPath: path) }
            let again = try Cache(model: model, configuration: configuration)
            _ = try await again.forward(reference.inputIds)
            try await again.save(to: path)
            let fileBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let againBytes = try await again.serialized()
            XCTAssertEqual(againBytes, fileBytes)
        }
    }

    func testCorruptOrForeignCacheBytesAreRefused() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        let cache = try Cache(model: model)
        _ = try await cache.forward(reference.inputIds)
        let bytes = try await cache.serialized()
        var corrupt = bytes
        corrupt[corrupt.count / 2] &+= 1
        await assertEdgeKVError(.invalidFile) { try await Cache.load(serialized: corrupt, model: model) }
        await assertEdgeKVError(.invalidFile) { try await Cache.load(serialized: Array(bytes.prefix(bytes.count / 2)), model: model) }
        await assertEdgeKVError(.invalidFile) { try await Cache.load(serialized: [], model: model) }
        let smol = try await Fixtures.smolLM2()
        await assertEdgeKVError(.modelMismatch) { try await Cache.load(serialized: bytes, model: smol) }
    }
}
