package dev.edgekv

/**
 * A cache configuration sized for a context (`ekv_cache_plan_result`):
 * what [Model.planCache] proposes, chosen or not.
 */
data class CachePlanCandidate(
    /** The configuration, resolved: [Model.newCache] with it makes exactly this cache. */
    val params: CacheParams,
    /** Of the context, the tokens it still holds at the end (a ring keeps its window). */
    val tokensHeld: Int,
    /** Most tokens held at once; -1 when unbounded. */
    val capacity: Int,
    /** Longest sequence it takes (a fixed capacity, or as far as the budget lets it grow); -1 when unlimited. */
    val maxTokens: Int,
    /** Bytes in device memory once it holds the context ([CacheStats.deviceBytes]). */
    val deviceBytes: Long,
    /** Bytes in host memory once it holds the context ([CacheStats.hostBytes]). */
    val hostBytes: Long,
    /** Bytes when full: at its capacity, or for unbounded caches at the model's context length. */
    val fullBytes: Long,
    /** Whether it takes the context within the budget (and its capacity). */
    val fits: Boolean,
    /** Why it was chosen, or why it does not fit. */
    val reason: String
) {
    internal companion object {
        fun of(config: IntArray, nums: LongArray, reason: String) = CachePlanCandidate(
            params = CacheParams(
                CacheType.of(config[0]), config[1], KvDtype.of(config[2]), config[3], config[4], config[5], config[6],
                config[7], Placement.of(config[8]), nums[10]
            ),
            tokensHeld = nums[0].toInt(), capacity = nums[1].toInt(), maxTokens = nums[2].toInt(),
            deviceBytes = nums[3], hostBytes = nums[4], fullBytes = nums[5], fits = nums[6] != 0L, reason = reason
        )
    }
}

/** What [Model.planCache] found: the choice (null when nothing fits the budget), why, and every candidate. */
data class CachePlan(
    val chosen: CachePlanCandidate?,
    /** Why it was chosen, or what the smallest option needs when nothing fits. */
    val reason: String,
    /** Every configuration considered, in the order of the library's rule. */
    val candidates: List<CachePlanCandidate>
)
