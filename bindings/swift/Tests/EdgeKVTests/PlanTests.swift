// Memory budgets: Model.planCache's choice and bytes (equal to the created
// cache's stats), a budget nothing fits, and budgets on caches and models.
import EdgeKV
import XCTest

final class PlanTests: XCTestCase {
    func testTheChosenCacheTakesThePlannedBytes() async throws {
        let model = try await Fixtures.tinyLlama()
        // f16 K and V of 200 tokens in 256 rows (the cache grows in chunks of
        // 256): 2 layers x 2 x 2 kv heads x 16 x 2 bytes = 256 bytes a row.
        let plan = try model.planCache(CacheConfiguration(memoryBudgetBytes: 65536), contextTokens: 200)
        let chosen = try XCTUnwrap(plan.chosen)
        XCTAssertEqual(chosen.configuration.type, .dynamic)
        XCTAssertEqual(chosen.deviceBytes + chosen.hostBytes, 256 * 256)
        XCTAssertEqual(chosen.tokensHeld, 200)
        XCTAssertTrue(chosen.fits)
        XCTAssertEqual(plan.candidates.first, chosen)
        XCTAssertFalse(plan.reason.isEmpty)
        let cache = try model.makeCache(chosen.configuration)
        _ = try await cache.forward((0..<200).map { Token(3 + $0 % 300) })
        let stats = try await cache.stats()
        XCTAssertEqual(stats.deviceBytes, chosen.deviceBytes)
        XCTAssertEqual(stats.hostBytes, chosen.hostBytes)
    }

    func testABudgetNothingFitsListsTheCandidates() async throws {
        let model = try await Fixtures.tinyLlama()
        let plan = try model.planCache(CacheConfiguration(memoryBudgetBytes: 4096), contextTokens: 200)
        XCTAssertNil(plan.chosen)
        XCTAssertTrue(plan.reason.contains("nothing fits"), plan.reason)
        XCTAssertFalse(plan.candidates.isEmpty)
        for candidate in plan.candidates {
            XCTAssertFalse(candidate.fits)
            XCTAssertGreaterThan(candidate.deviceBytes + candidate.hostBytes, 4096)
        }
        await assertEdgeKVError(.outOfMemory) {
            try model.makeCache(CacheConfiguration(maxCacheLen: 200, memoryBudgetBytes: 4096))
        }
    }

    func testBudgetsOnCachesAndModels() async throws {
        let model = try await Fixtures.tinyLlama()
        // A static cache of 200 tokens takes 200 rows: 51200 bytes.
        let sized = try model.planCache(.static(maxCacheLen: 200), contextTokens: 100)
        XCTAssertEqual(sized.candidates.count, 1)
        XCTAssertEqual(sized.chosen?.deviceBytes, 51200)
        var tight = CacheConfiguration.static(maxCacheLen: 200)
        tight.memoryBudgetBytes = 51199
        let error = await assertEdgeKVError(.outOfMemory) { try model.makeCache(tight) }
        XCTAssertTrue(error?.message.contains("51200 bytes") ?? false, String(describing: error))
        await assertEdgeKVError(.outOfMemory) {
            try Model(path: Fixtures.tinyLlamaPath, options: Model.Options(backend: .cpu, memoryBudgetBytes: 100_000))
        }
    }
}
