// Streaming on SmolLM2-135M-Instruct: the stream's text equals the completion
// call's, multi-byte text (emoji, CJK) is never split or garbled, stop
// strings never leak into the text.
import EdgeKV
import Foundation
import XCTest

final class StreamingTests: XCTestCase {
    private func chatPrompt(_ model: Model, _ user: String) throws -> [Token] {
        let text = try model.applyChatTemplate([.user(user)], addGenerationPrompt: true)
        return try model.tokenize(text, addSpecial: false, parseSpecial: true)
    }

    func testStreamedTextEqualsCompletionText() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try chatPrompt(model, "Write a short sentence about the sea.")
        let parameters = GenerationParameters(maxNewTokens: 40)

        let streamed = try await collect(try Cache(model: model).generate(prompt: prompt, parameters: parameters))
        let completion = try await Cache(model: model).complete(prompt: prompt, parameters: parameters)

        XCTAssertFalse(completion.text.isEmpty)
        XCTAssertEqual(streamed.text, completion.text)
        XCTAssertEqual(streamed.tokens, completion.tokens)
        XCTAssertEqual(streamed.completion?.stopReason, completion.stopReason)
        XCTAssertEqual(streamed.completion?.stats.generatedTokens, completion.stats.generatedTokens)
        XCTAssertEqual(streamed.completion?.text, completion.text)
        XCTAssertEqual(try model.detokenize(completion.tokens, skipSpecial: true), completion.text)
        print("  streamed == completed: \(completion.text.debugDescription) (\(completion.tokens.count) tokens, \(completion.stopReason))")
    }

    func testEndOfGenerationTokenEndsTheAnswer() async throws {
        let model = try await Fixtures.smolLM2()
        let completion = try await Cache(model: model).complete(
            prompt: try chatPrompt(model, "What is the capital of France?"), parameters: GenerationParameters(maxNewTokens: 64))
        XCTAssertEqual(completion.stopReason, .endOfGeneration)
        XCTAssertTrue(completion.text.contains("Paris"), completion.text)
        XCTAssertTrue(model.isEndOfGeneration(try XCTUnwrap(completion.tokens.last)))
    }

    func testStopStringNeverReachesTheText() async throws {
        let model = try await Fixtures.smolLM2()
        let prompt = try chatPrompt(model, "What is the capital of France?")
        var parameters = GenerationParameters(maxNewTokens: 64)
        parameters.stopStrings = ["Paris"]
        let streamed = try await collect(try Cache(model: model).generate(prompt: prompt, parameters: parameters))
        XCTAssertEqual(streamed.completion?.stopReason, .stopString)
        XCTAssertFalse(streamed.text.contains("Paris"), streamed.text)
        XCTAssertFalse(streamed.text.contains("Par"), "a held-back stop-string prefix leaked: \(streamed.text)")
        XCTAssertTrue(streamed.text.hasPrefix("The capital of France is"), streamed.text)
    }

    func testMultiByteTextRoundTripsThroughTheTokenizer() async throws {
        let model = try await Fixtures.smolLM2()
        let samples = ["你好，世界！", "🙂🚀🌟 emoji", "日本語のテキスト", "naïve café — ünïcödé", "👩‍👩‍👧 family", "한국어 😀"]
        for text in samples {
            let tokens = try model.tokenize(text, addSpecial: false)
            XCTAssertEqual(try model.detokenize(tokens), text)
        }
        // An emoji is several tokens whose bytes are not text on their own.
        let star = try model.tokenize("🌟", addSpecial: false)
        XCTAssertGreaterThan(star.count, 1, "🌟 is expected to be split into byte tokens")
        let pieces = try star.map { try model.bytes(of: $0) }
        XCTAssertEqual(pieces.flatMap { $0 }, Array("🌟".utf8))
        XCTAssertTrue(pieces.contains { String(bytes: $0, encoding: .utf8) == nil }, "no partial piece")
    }

    /// Emoji and CJK generated through the stream: the bytes of a character
    /// split across tokens are held back until it completes, so every piece
    /// is whole text, and the pieces add up to the completion's text.
    func testEmojiAndCJKStreamWithoutSplitCharacters() async throws {
        let model = try await Fixtures.smolLM2()
        let cases: [(prompt: String, expect: (Unicode.Scalar) -> Bool, what: String)] = [
            ("Give me one emoji for happy.", { $0.value >= 0x1F000 }, "emoji"),
            ("Translate 'good morning' into Chinese.", { (0x4E00...0x9FFF).contains($0.value) }, "CJK"),
        ]
        for c in cases {
            var parameters = GenerationParameters(maxNewTokens: 30)
            parameters.stopAtEndOfGeneration = true
            let streamed = try await collect(try Cache(model: model).generate(prompt: try chatPrompt(model, c.prompt), parameters: parameters))
            let completion = try XCTUnwrap(streamed.completion)
            print("  \(c.what): \(streamed.text.debugDescription) in \(streamed.tokens.count) tokens")

            XCTAssertTrue(streamed.text.unicodeScalars.contains(where: c.expect), "no \(c.what) in \(streamed.text)")
            XCTAssertEqual(streamed.text, completion.text)
            var heldBack = 0
            for event in streamed.events {
                guard case .token(_, let text) = event else { continue }
                XCTAssertFalse(text.contains("\u{FFFD}"), "a piece holds a broken character: \(text.debugDescription)")
                if text.isEmpty { heldBack += 1 }
            }
            XCTAssertGreaterThan(heldBack, 0, "no token held its bytes back: nothing multi-token was generated")
            // Whole characters only: the text survives tokenize -> detokenize,
            // and equals the detokenized ids (up to a character cut off by max tokens).
            let complete = completion.text.hasSuffix("\u{FFFD}") ? String(completion.text.dropLast()) : completion.text
            XCTAssertEqual(try model.detokenize(try model.tokenize(complete, addSpecial: false)), complete)
            XCTAssertTrue(try model.detokenize(completion.tokens, skipSpecial: true).hasPrefix(complete))
        }
    }
}
