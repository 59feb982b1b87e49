// Release order and sharing: a model released before its caches, caches and
// models released while a generation runs, a stream dropped unread, one
// model used by several tasks at once, and the blocking work kept off the
// cooperative pool. Run under AddressSanitizer by run_tests.sh.
import CEdgeKV
import EdgeKV
import XCTest

final class LifetimeTests: XCTestCase {
    private func referenceParameters(_ reference: Fixtures.Reference) -> GenerationParameters {
        var p = GenerationParameters(maxNewTokens: reference.greedyTokens.count)
        p.stopAtEndOfGeneration = false
        return p
    }

    func testModelReleasedBeforeItsCaches() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        weak var weakModel: Model?
        var cache: Cache?
        do {
            let model = try await Model.load(from: Fixtures.tinyLlamaPath)  // not the shared one
            weakModel = model
            cache = try Cache(model: model, configuration: CacheConfiguration(dtype: .f32))
        }
        // (The loading thread may hold the result a moment after handing it over.)
        for _ in 0..<200 where weakModel != nil { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertNil(weakModel, "the Swift model is gone; its native state lives on in the cache")
        let first = try await cache!.complete(prompt: reference.inputIds, parameters: referenceParameters(reference))
        XCTAssertEqual(first.tokens, reference.greedyTokens)
        var clone: Cache? = try await cache!.clone()
        let path = Fixtures.temporaryPath("orphan.ekvc")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await cache!.save(to: path)
        cache = nil
        try await clone!.crop(to: reference.inputIds.count)
        let second = try await clone!.complete(prompt: reference.inputIds, parameters: referenceParameters(reference))
        XCTAssertEqual(second.tokens, reference.greedyTokens)
        clone = nil  // the last reference: frees the native model
    }

    func testModelAndCacheReleasedWhileAStreamRuns() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        var stream: AsyncThrowingStream<GenerationEvent, any Error>?
        weak var weakModel: Model?
        weak var weakCache: Cache?
        do {
            let model = try await Model.load(from: Fixtures.tinyLlamaPath)
            let cache = try Cache(model: model, configuration: CacheConfiguration(dtype: .f32))
            weakModel = model
            weakCache = cache
            stream = cache.generate(prompt: reference.inputIds, parameters: referenceParameters(reference))
        }
        for _ in 0..<200 where weakModel != nil { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertNil(weakModel)
        let collected = try await collect(stream!)
        XCTAssertEqual(collected.tokens, reference.greedyTokens)
        stream = nil
        // The cache lives while its work is queued, then goes.
        for _ in 0..<200 where weakCache != nil { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertNil(weakCache)
    }

    func testDroppingAStreamUnreadStopsItsGeneration() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try model.tokenize(try model.applyChatTemplate([.user("Count from one to one thousand.")]),
                                        addSpecial: false, parseSpecial: true)
        let cache = try Cache(model: model)
        do {
            let stream = cache.generate(prompt: prompt, parameters: GenerationParameters(maxNewTokens: 300))
            _ = stream
        }
        let held = try await cache.sequenceLength()
        XCTAssertLessThan(held, prompt.count + 20, "an abandoned stream kept generating")
    }

    func testOneModelServesManyConcurrentTasks() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        let parameters = referenceParameters(reference)
        let results = try await withThrowingTaskGroup(of: [Token].self) { group in
            for i in 0..<4 {
                group.addTask {
                    let cache = try Cache(model: model, configuration: CacheConfiguration(dtype: .f32))
                    if i % 2 == 0 {
                        return try await cache.complete(prompt: reference.inputIds, parameters: parameters).tokens
                    }
                    return try await collect(cache.generate(prompt: reference.inputIds, parameters: parameters)).tokens
                }
            }
            var all: [[Token]] = []
            for try await tokens in group { all.append(tokens) }
            return all
        }
        XCTAssertEqual(results.count, 4)
        for tokens in results { XCTAssertEqual(tokens, reference.greedyTokens) }
    }

    func testCallsOnOneCacheRunInOrder() async throws {
        let model = try await Fixtures.tinyLlama()
        let reference = try Fixtures.tinyLlamaReference()
        let cache = try Cache(model: model, configuration: CacheConfiguration(dtype: .f32))
        // Queued back to back without awaiting: no "cache is busy".
        let stream = cache.generate(prompt: reference.inputIds, parameters: referenceParameters(reference))
        async let length = cache.sequenceLength()
        async let stats = cache.stats()
        let collected = try await collect(stream)
        let (l, s) = try await (length, stats)
        XCTAssertEqual(collected.tokens, reference.greedyTokens)
        XCTAssertEqual(s.sequenceLength, l)
    }

    /// Native work runs on threads of its own: while two long prefills
    /// compute, tasks on the cooperative pool keep running.
    func testNativeWorkLeavesTheCooperativePoolFree() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = Array(try model.tokenize(Fixtures.longText(), addSpecial: false).prefix(1500))
        let workers = (0..<2).map { _ in
            Task { try await Cache(model: model).complete(prompt: prompt, parameters: GenerationParameters(maxNewTokens: 1)) }
        }
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        // More tasks than pool threads, each hopping many times.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<20 {
                        await Task.yield()
                        try await Task.sleep(for: .milliseconds(1))
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = start.duration(to: .now)
        var stillRunning = 0
        for worker in workers {
            worker.cancel()
            if try await worker.value.stopReason == .cancelled { stillRunning += 1 }
        }
        print(String(format: "  pool tasks finished in %.1f ms while %d prefills ran", elapsed.milliseconds, stillRunning))
        XCTAssertGreaterThan(stillRunning, 0, "the prefills ended before the pool check: use a longer prompt")
        XCTAssertLessThan(elapsed.milliseconds, 2000)
    }

    /// The C contract this binding relies on, straight through the C API:
    /// free the model, then the cache, while a generator still runs on both.
    func testNativeHandlesFreedInAnyOrder() throws {
        let reference = try Fixtures.tinyLlamaReference()
        var model: OpaquePointer?
        var params = ekv_model_default_params()
        XCTAssertEqual(ekv_model_load(Fixtures.tinyLlamaPath, &params, &model), EKV_OK)
        var cache: OpaquePointer?
        var cp = ekv_cache_default_params()
        cp.dtype = EKV_KV_F32
        XCTAssertEqual(ekv_cache_create(model, &cp, &cache), EKV_OK)
        var gp = ekv_generate_default_params()
        gp.max_new_tokens = Int32(reference.greedyTokens.count)
        gp.stop_at_eos = 0
        var generator: OpaquePointer?
        XCTAssertEqual(ekv_generator_create(model, cache, reference.inputIds, Int32(reference.inputIds.count), &gp, &generator), EKV_OK)
        ekv_model_free(model)
        ekv_cache_free(cache)
        var tokens: [Token] = []
        var text = [CChar](repeating: 0, count: 256)
        while true {
            var event = ekv_generator_event_default()
            XCTAssertEqual(ekv_generator_next(generator, &event, &text, text.count), EKV_OK)
            if event.type == EKV_EVENT_DONE { break }
            tokens.append(event.token)
        }
        ekv_generator_free(generator)
        XCTAssertEqual(tokens, reference.greedyTokens)
    }
}
