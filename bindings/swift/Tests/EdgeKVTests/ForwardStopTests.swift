// A stop request the application attached to the native cache
// (ekv_cache_set_cancel) stays attached across `Cache.forward` and still
// stops it: the binding passes its own request per call (ekv_forward_ex)
// instead of attaching and detaching one around each forward. Reaching the
// native handle needs @testable (debug builds, as `swift test` makes).
import CEdgeKV
@testable import EdgeKV
import XCTest

final class ForwardStopTests: XCTestCase {
    func testAnAppStopRequestAttachedToTheCacheSurvivesAForward() async throws {
        let model = try await Fixtures.tinyLlama()
        let ids = try Fixtures.tinyLlamaReference().inputIds
        let head = Array(ids.prefix(6)), next = ids[6], rest = Array(ids[6...])
        let cache = try Cache(model: model, configuration: CacheConfiguration(dtype: .f32))
        var created: OpaquePointer?
        XCTAssertEqual(ekv_cancel_create(&created), EKV_OK)
        let app = try XCTUnwrap(created)
        defer { ekv_cancel_free(app) }
        let attach = ekv_cache_set_cancel(cache.handle, app)  // nothing runs on the cache yet
        XCTAssertEqual(attach, EKV_OK)

        _ = try await cache.forward(head)
        // Still attached after the forward: triggering it stops the next one.
        ekv_cancel_trigger(app)
        await assertEdgeKVError(.cancelled) { try await cache.forward([next]) }
        var held = try await cache.sequenceLength()
        XCTAssertEqual(held, head.count, "a stopped forward leaves the cache as it was")
        ekv_cancel_reset(app)

        // The binding's own stop (the task is cancelled) works beside it and
        // leaves the app's request alone.
        let call = Task { () async throws -> [Float] in
            withUnsafeCurrentTask { $0?.cancel() }
            return try await cache.forward([next])
        }
        await assertEdgeKVError(.cancelled) { try await call.value }
        XCTAssertEqual(ekv_cancel_is_triggered(app), 0)
        held = try await cache.sequenceLength()
        XCTAssertEqual(held, head.count)

        // The stopped calls changed nothing: the cache goes on exactly as
        // one that never saw them.
        let got = try await cache.forward(rest)
        let fresh = try Cache(model: model, configuration: CacheConfiguration(dtype: .f32))
        _ = try await fresh.forward(head)
        let want = try await fresh.forward(rest)
        XCTAssertTrue(got == want, "the logits differ from a cache that never saw the stopped calls")
    }
}
