// Cancellation reaches the native work: leaving the loop or cancelling the
// task stops decoding after N tokens, stops a long prefill midway (the
// latency is measured and printed), and leaves the cache usable.
import EdgeKV
import XCTest

final class CancellationTests: XCTestCase {
    private func chatPrompt(_ model: Model, _ user: String) throws -> [Token] {
        try model.tokenize(try model.applyChatTemplate([.user(user)]), addSpecial: false, parseSpecial: true)
    }

    /// A 2,000-token prompt of real English text.
    private func longPrompt(_ model: Model) throws -> [Token] {
        let tokens = try model.tokenize(Fixtures.longText(), addSpecial: false)
        XCTAssertGreaterThanOrEqual(tokens.count, 2000)
        return Array(tokens.prefix(2000))
    }

    func testBreakingOutOfTheLoopAfterNTokensStopsTheGeneration() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try chatPrompt(model, "Tell me a long story about a dragon who learns to cook.")
        let cache = try Cache(model: model)
        let n = 5
        var received: [Token] = []
        var leftAt = ContinuousClock.now
        for try await event in cache.generate(prompt: prompt, parameters: GenerationParameters(maxNewTokens: 400)) {
            if case .token(let id, _) = event {
                received.append(id)
                if received.count == n {
                    leftAt = .now
                    break
                }
            }
        }
        // Queued behind the generation: returns once the native loop has ended.
        let held = try await cache.sequenceLength()
        let stopped = leftAt.duration(to: .now)
        print("  break after \(n) tokens: native generation ended \(String(format: "%.1f", stopped.milliseconds)) ms later, cache holds \(held) tokens (prompt \(prompt.count))")
        XCTAssertEqual(received.count, n)
        XCTAssertLessThan(stopped.milliseconds, 1000)
        XCTAssertGreaterThanOrEqual(held, prompt.count + n - 1)
        XCTAssertLessThan(held, prompt.count + 40, "the generation ran on after the consumer left")

        // The cache is usable, and its content is right: the same prompt
        // again reuses it and gives the same greedy tokens.
        let again = try await cache.complete(prompt: prompt, parameters: GenerationParameters(maxNewTokens: n))
        XCTAssertEqual(again.tokens, received)
        XCTAssertGreaterThanOrEqual(again.stats.promptTokensReused, prompt.count - 1)
    }

    func testCancellingTheConsumingTaskAfterNTokensStopsTheGeneration() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try chatPrompt(model, "List every prime number you know, one per line.")
        let cache = try Cache(model: model)
        let n = 3
        let consumer = Task { () -> [Token] in
            var received: [Token] = []
            for try await event in cache.generate(prompt: prompt, parameters: GenerationParameters(maxNewTokens: 400)) {
                if case .token(let id, _) = event {
                    received.append(id)
                    if received.count == n { withUnsafeCurrentTask { $0?.cancel() } }
                }
            }
            return received
        }
        let received = try await consumer.value
        let held = try await cache.sequenceLength()
        XCTAssertGreaterThanOrEqual(received.count, n)
        XCTAssertLessThan(received.count, n + 10, "the stream went on after the task was cancelled")
        XCTAssertLessThan(held, prompt.count + 40)
        let next = try await cache.complete(prompt: prompt, parameters: GenerationParameters(maxNewTokens: 2))
        XCTAssertEqual(next.tokens, Array(received.prefix(2)))
    }

    /// The issue's headline check: cancelling during a long prefill stops
    /// the native computation within milliseconds, not at the end of the
    /// prompt, and the cache is as before.
    func testCancellingTheStreamDuringALongPrefillStopsItPromptly() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try longPrompt(model)
        let cache = try Cache(model: model)
        let consumer = Task { () -> Int in
            var events = 0
            for try await _ in cache.generate(prompt: prompt, parameters: GenerationParameters(maxNewTokens: 8)) {
                events += 1
            }
            return events
        }
        try await Task.sleep(for: .milliseconds(200))
        let cancelledAt = ContinuousClock.now
        consumer.cancel()
        let events = try await consumer.value
        let streamEnded = cancelledAt.duration(to: .now)
        let held = try await cache.sequenceLength()
        let nativeStopped = cancelledAt.duration(to: .now)
        print(String(format: "  CANCEL LATENCY (2000-token prefill, stream): Task.cancel -> stream ended %.1f ms, -> native prefill stopped %.1f ms",
                     streamEnded.milliseconds, nativeStopped.milliseconds))
        XCTAssertEqual(events, 0, "the prefill ended before the cancel; the test needs a longer prompt")
        XCTAssertLessThan(nativeStopped.milliseconds, 1000)
        XCTAssertEqual(held, 0, "a prefill stopped midway leaves the cache as it was")

        let reuse = try await cache.complete(prompt: Array(prompt.prefix(24)), parameters: GenerationParameters(maxNewTokens: 4))
        XCTAssertEqual(reuse.stats.promptTokensForwarded, 24)
        XCTAssertEqual(reuse.tokens.count, 4)
    }

    func testCancellingTheCompletionCallDuringALongPrefillReturnsPromptly() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try longPrompt(model)
        let cache = try Cache(model: model)
        let call = Task { try await cache.complete(prompt: prompt, parameters: GenerationParameters(maxNewTokens: 8)) }
        try await Task.sleep(for: .milliseconds(200))
        let cancelledAt = ContinuousClock.now
        call.cancel()
        let completion = try await call.value
        let latency = cancelledAt.duration(to: .now)
        print(String(format: "  CANCEL LATENCY (2000-token prefill, complete()): Task.cancel -> returned %.1f ms", latency.milliseconds))
        XCTAssertEqual(completion.stopReason, .cancelled)
        XCTAssertEqual(completion.tokens, [])
        XCTAssertLessThan(latency.milliseconds, 1000)
        let held = try await cache.sequenceLength()
        XCTAssertEqual(held, 0)
    }

    func testCancellingAForwardDuringALongPrefillThrowsCancelled() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try longPrompt(model)
        let cache = try Cache(model: model)
        let call = Task { try await cache.forward(prompt) }
        try await Task.sleep(for: .milliseconds(200))
        let cancelledAt = ContinuousClock.now
        call.cancel()
        await assertEdgeKVError(.cancelled) { try await call.value }
        let latency = cancelledAt.duration(to: .now)
        print(String(format: "  CANCEL LATENCY (2000-token forward): Task.cancel -> threw %.1f ms", latency.milliseconds))
        XCTAssertLessThan(latency.milliseconds, 1000)
        let held = try await cache.sequenceLength()
        XCTAssertEqual(held, 0)
        // The stop request was detached: the next forward runs.
        let logits = try await cache.forward(Array(prompt.prefix(8)))
        XCTAssertEqual(logits.count, model.info.vocabularySize)
        let held2 = try await cache.sequenceLength()
        XCTAssertEqual(held2, 8)
    }

    func testWorkStartedByAnAlreadyCancelledTaskStopsAtOnce() async throws {
        let model = try await Fixtures.tinyLlama()
        let cache = try Cache(model: model)
        let result = await Task { () -> Completion in
            withUnsafeCurrentTask { $0?.cancel() }
            return try await cache.complete(prompt: [1, 2, 3], parameters: GenerationParameters(maxNewTokens: 8))
        }.result
        let completion = try result.get()
        XCTAssertEqual(completion.stopReason, .cancelled)
        XCTAssertEqual(completion.tokens, [])
        let held = try await cache.sequenceLength()
        XCTAssertEqual(held, 0)
    }

    func testCancellingAModelLoadThrowsCancelled() async throws {
        let path = Fixtures.smolLM2Path
        let load = Task { () -> Model in
            withUnsafeCurrentTask { $0?.cancel() }
            return try await Model.load(from: path)
        }
        await assertEdgeKVError(.cancelled) { try await load.value }
    }
}
