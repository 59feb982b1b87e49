// Cross-language golden test: greedy tokens of the committed tiny Llama
// fixture equal Hugging Face transformers' reference ids
// (tests/fixtures/tiny_llama/ref_f32.json, made by tools/gen_tiny_llama.py).
import EdgeKV
import XCTest

final class GoldenTests: XCTestCase {
    /// HF generate(do_sample=False) ran 16 steps without stopping at EOS.
    private func referenceParameters(_ reference: Fixtures.Reference) -> GenerationParameters {
        var p = GenerationParameters()
        p.maxNewTokens = reference.greedyTokens.count
        p.stopAtEndOfGeneration = false
        return p
    }

    func testGreedyTokensEqualHuggingFaceReference() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        let model = try await Fixtures.tinyLlama()
        XCTAssertEqual(model.info.vocabularySize, reference.vocabularySize)
        XCTAssertEqual(model.info.architecture, "llama")

        let cache = try Cache(model: model, configuration: CacheConfiguration(type: .dynamic, dtype: .f32))
        let completion = try await cache.complete(prompt: reference.inputIds, parameters: referenceParameters(reference))
        XCTAssertEqual(completion.tokens, reference.greedyTokens)
        XCTAssertEqual(completion.stopReason, .maxTokens)
        XCTAssertEqual(completion.stats.promptTokens, reference.inputIds.count)
        XCTAssertEqual(completion.stats.generatedTokens, reference.greedyTokens.count)
    }

    func testStreamedGreedyTokensEqualHuggingFaceReference() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        let model = try await Fixtures.tinyLlama()
        let cache = try Cache(model: model, configuration: CacheConfiguration(type: .dynamic, dtype: .f32))
        let streamed = try await collect(cache.generate(prompt: reference.inputIds, parameters: referenceParameters(reference)))
        XCTAssertEqual(streamed.tokens, reference.greedyTokens)
        XCTAssertEqual(streamed.completion?.tokens, reference.greedyTokens)
        XCTAssertEqual(streamed.completion?.stopReason, .maxTokens)
        guard case .finished = streamed.events.last else { return XCTFail("the last event is not .finished") }
    }

    /// Every generic cache type (and f16 storage) gives the reference ids on
    /// the fixture's 28 positions: none of them evicts anything here.
    func testGreedyTokensEqualReferenceOnEveryGenericCacheType() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        let model = try await Fixtures.tinyLlama()
        let configurations: [CacheConfiguration] = [
            CacheConfiguration(type: .dynamic, dtype: .f16),
            CacheConfiguration(type: .static, maxCacheLen: 64, dtype: .f32),
            CacheConfiguration(type: .offloaded, dtype: .f32),
            CacheConfiguration(type: .offloadedStatic, maxCacheLen: 64, dtype: .f32),
            CacheConfiguration(type: .slidingWindow, dtype: .f32, windowLength: 64),
            CacheConfiguration(type: .sink, dtype: .f32, windowLength: 64, numSinkTokens: 4),
            CacheConfiguration(type: .auto, dtype: .f32),
        ]
        for configuration in configurations {
            let cache = try Cache(model: model, configuration: configuration)
            let completion = try await cache.complete(prompt: reference.inputIds, parameters: referenceParameters(reference))
            XCTAssertEqual(completion.tokens, reference.greedyTokens, "cache \(configuration)")
        }
    }

    func testTokenizerRoundTripsTheReferencePrompt() async throws {
        let reference = try Fixtures.tinyLlamaReference()
        let model = try await Fixtures.tinyLlama()
        let text = try model.detokenize(reference.inputIds, skipSpecial: true)
        XCTAssertTrue(text.contains(reference.promptText) || reference.promptText.contains(text),
                      "detokenized '\(text)' vs prompt '\(reference.promptText)'")
        let bos = try model.specialToken(.bos)
        let tokens = try model.tokenize(reference.promptText, addSpecial: true)
        XCTAssertEqual(tokens, reference.inputIds, "BOS \(String(describing: bos))")
    }

    /// The model-specific caches on the committed tiny Gemma 2/3 (hybrid),
    /// Mamba (mamba) and Jamba (hybrid_mamba) models: the natural cache is
    /// chosen by `.auto`, and greedy ids equal HF's.
    func testModelSpecificCachesGiveReferenceIds() async throws {
        let cases: [(model: String, reference: String, natural: CacheType)] = [
            ("tiny_gemma2/tiny_gemma2_f32.gguf", "tiny_gemma2/ref_f32.json", .hybrid),
            ("tiny_gemma3/tiny_gemma3_f32.gguf", "tiny_gemma3/ref_f32.json", .hybrid),
            ("tiny_mamba/tiny_mamba_f32.gguf", "tiny_mamba/ref_f32.json", .mamba),
            ("tiny_jamba/tiny_jamba_f32.gguf", "tiny_jamba/ref_f32.json", .hybridMamba),
        ]
        for c in cases {
            let model = try await Fixtures.fixtureModel(c.model)
            let reference = try Fixtures.reference(c.reference)
            XCTAssertEqual(model.info.naturalCache, c.natural, c.model)
            for type in [CacheType.auto, c.natural] {
                let cache = try Cache(model: model, configuration: CacheConfiguration(type: type, dtype: .f32))
                XCTAssertEqual(cache.type, c.natural)
                let streamed = try await collect(cache.generate(prompt: reference.inputIds, parameters: referenceParameters(reference)))
                XCTAssertEqual(streamed.tokens, reference.greedyTokens, "\(c.model) \(type)")
            }
        }
        let gemma = try await Fixtures.fixtureModel("tiny_gemma3/tiny_gemma3_f32.gguf")
        XCTAssertEqual(gemma.info.slidingWindow, 8)
        XCTAssertGreaterThan(gemma.info.slidingLayerCount, 0)
        let mamba = try await Fixtures.fixtureModel("tiny_mamba/tiny_mamba_f32.gguf")
        XCTAssertGreaterThan(mamba.info.recurrentLayerCount, 0)
    }

    /// The real SmolLM2-135M-Instruct Q4_1 against HF transformers on the
    /// same (dequantized) weights: 32 greedy ids after a ChatML prompt and
    /// after a plain sentence.
    func testSmolLM2GreedyIdsEqualHuggingFace() async throws {
        let model = try await Fixtures.smolLM2()
        for file in ["smollm2/chat.json", "smollm2/sentence.json"] {
            let reference = try Fixtures.reference(file)
            XCTAssertEqual(reference.vocabularySize, model.info.vocabularySize)
            for configuration in [CacheConfiguration.dynamic, .static(maxCacheLen: 256)] {
                let completion = try await Cache(model: model, configuration: configuration)
                    .complete(prompt: reference.inputIds, parameters: referenceParameters(reference))
                XCTAssertEqual(completion.tokens, reference.greedyTokens, "\(file) \(configuration.type)")
            }
        }
    }
}
