// Cache planning (`ekv_cache_plan`): which cache fits a memory budget for a
// wanted context, why, and the alternatives with their bytes. Nothing is
// allocated; the policy is the library's.
import CEdgeKV

/// A cache configuration sized for a context (`ekv_cache_plan_result`).
public struct CachePlanCandidate: Sendable, Hashable {
    /// The configuration, resolved: `Model.makeCache(configuration)` makes exactly it.
    public let configuration: CacheConfiguration
    /// Of the context, the tokens it still holds at the end (a ring keeps its window).
    public let tokensHeld: Int
    /// Most tokens held at once; `nil` when unbounded.
    public let capacity: Int?
    /// Longest sequence it takes (a fixed capacity, or as far as the budget
    /// lets it grow); `nil` when unlimited.
    public let maxTokens: Int?
    /// Bytes in device memory once it holds the context (`CacheStats.deviceBytes`).
    public let deviceBytes: UInt64
    /// Bytes in host memory once it holds the context (`CacheStats.hostBytes`).
    public let hostBytes: UInt64
    /// Bytes when full: at its capacity, or for unbounded caches at the model's context length.
    public let fullBytes: UInt64
    /// Whether it takes the context within the budget (and its capacity).
    public let fits: Bool
    /// Why it was chosen, or why it does not fit.
    public let reason: String

    init(_ r: ekv_cache_plan_result, _ params: ekv_cache_params) {
        configuration = CacheConfiguration(resolved: params)
        tokensHeld = Int(r.tokens_held)
        capacity = r.capacity >= 0 ? Int(r.capacity) : nil
        maxTokens = r.max_tokens >= 0 ? Int(r.max_tokens) : nil
        deviceBytes = r.device_bytes
        hostBytes = r.host_bytes
        fullBytes = r.capacity_device_bytes + r.capacity_host_bytes
        fits = r.fits != 0
        reason = withUnsafeBytes(of: r.reason) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

/// What `Model.planCache` found: the choice (`nil` when nothing fits the
/// budget), why, and every candidate considered.
public struct CachePlan: Sendable, Hashable {
    /// The chosen cache, or `nil` when nothing fits.
    public let chosen: CachePlanCandidate?
    /// Why it was chosen, or what the smallest option needs when nothing fits.
    public let reason: String
    /// Every configuration considered, in the order of the library's rule.
    public let candidates: [CachePlanCandidate]
}

extension Model {
    /// Plans a cache for a conversation of `contextTokens` tokens without
    /// allocating anything. With `.auto` and a `memoryBudgetBytes` the library
    /// chooses: the model's natural cache in f16 if it holds the whole
    /// context, else KIVI 8, 4, then 2 bits, else the sink cache with the
    /// longest window that fits. Any other configuration is only sized.
    /// - Throws: `EdgeKVError` for bad parameters or a cache this model cannot use.
    public func planCache(_ configuration: CacheConfiguration = .auto, contextTokens: Int) throws -> CachePlan {
        var params = configuration.cParams
        let context = Int32(clamping: contextTokens)
        var result = ekv_cache_plan_result_default()
        var chosenParams = ekv_cache_default_params()
        let status = ekv_cache_plan(handle, &params, context, &chosenParams, &result)
        // Nothing fitting the budget is an answer, not a failure.
        if status != EKV_ERR_OUT_OF_MEMORY || result.n_candidates == 0 { try check(status, "planning a cache") }
        let summary = CachePlanCandidate(result, chosenParams)
        var candidates: [CachePlanCandidate] = []
        for index in 0..<result.n_candidates {
            var r = ekv_cache_plan_result_default()
            var p = ekv_cache_default_params()
            try check(ekv_cache_plan_candidate(handle, &params, context, index, &p, &r), "sizing candidate \(index)")
            candidates.append(CachePlanCandidate(r, p))
        }
        return CachePlan(chosen: status == EKV_OK ? summary : nil, reason: summary.reason, candidates: candidates)
    }
}
