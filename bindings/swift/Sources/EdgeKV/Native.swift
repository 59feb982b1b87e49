// Plumbing between Swift concurrency and the blocking C ABI: locks, the
// threads native work runs on, stop requests and buffer helpers.
import CEdgeKV
import Foundation

/// Mutable state guarded by a lock.
///
/// `@unchecked Sendable` because the compiler cannot see that every access
/// goes through `withLock`; it is the only such type besides the handle
/// fields marked `nonisolated(unsafe)` (whose thread safety is the C ABI's
/// contract). `Synchronization.Mutex` would do without it but needs macOS 15
/// / iOS 18.
final class Locked<State: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var state: State

    init(_ state: State) { self.state = state }

    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }
}

/// Dedicated threads for blocking native calls, so that they never occupy a
/// thread of Swift's cooperative pool (which has one thread per core).
enum NativeThread {
    /// Stack of a worker thread: the library recurses little, but
    /// AddressSanitizer builds need room.
    static let stackSize = 8 << 20

    /// Starts `body` on a new thread.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        thread.stackSize = stackSize
        thread.start()
    }

    /// Runs `body` on a new thread and suspends (without blocking) until it returns.
    static func run<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            start(name: name) { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// A serial queue of native jobs that run, in submission order, on a
/// dedicated thread started when work arrives and ended when the queue is
/// empty. Every operation on one cache goes through the cache's lane, so a
/// new call waits for a cancelled generation to wind down instead of getting
/// "cache is busy".
final class Lane: Sendable {
    private struct State: Sendable {
        var jobs: [@Sendable () -> Void] = []
        var head = 0
        var running = false
    }

    private let state = Locked(State())
    let name: String

    init(name: String) { self.name = name }

    /// Queues `job`; starts the lane's thread when it is idle.
    func submit(_ job: @escaping @Sendable () -> Void) {
        let startThread = state.withLock { s -> Bool in
            s.jobs.append(job)
            if s.running { return false }
            s.running = true
            return true
        }
        if startThread { NativeThread.start(name: name) { self.drain() } }
    }

    /// Runs `body` on the lane and suspends until it returns.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit { continuation.resume(with: Result { try body() }) }
        }
    }

    private func drain() {
        while let job = next() { job() }
    }

    private func next() -> (@Sendable () -> Void)? {
        state.withLock { s in
            if s.head == s.jobs.count {
                s.jobs.removeAll(keepingCapacity: true)
                s.head = 0
                s.running = false
                return nil
            }
            let job = s.jobs[s.head]
            s.head += 1
            return job
        }
    }
}

/// An `ekv_cancel`: a stop request any thread may trigger at any moment.
final class StopRequest: Sendable {
    /// Thread safe by the C ABI: trigger/reset/is_triggered may run anywhere.
    nonisolated(unsafe) let handle: OpaquePointer

    init() throws {
        var h: OpaquePointer?
        try check(ekv_cancel_create(&h), "creating a stop request")
        handle = h!
    }

    /// Requests the stop (never blocks).
    func trigger() { ekv_cancel_trigger(handle) }

    /// Whether the stop was requested.
    var isTriggered: Bool { ekv_cancel_is_triggered(handle) != 0 }

    deinit { ekv_cancel_free(handle) }
}

// MARK: - Buffers and strings

/// Decodes `count` UTF-8 bytes (the library only hands out complete characters).
func decodeUTF8(_ pointer: UnsafePointer<CChar>, count: Int) -> String {
    pointer.withMemoryRebound(to: UInt8.self, capacity: max(count, 1)) {
        String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
    }
}

/// Calls `fill(buffer, capacity, &length)`, growing the buffer once when the
/// library answers `EKV_ERR_BUFFER_TOO_SMALL` with the length it needs.
func readString(
    capacity initialCapacity: Int = 256, _ operation: @autoclosure () -> String,
    _ fill: (UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<Int>) -> ekv_status
) throws -> String {
    var capacity = max(initialCapacity, 16)
    for _ in 0..<3 {
        var length = 0
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        let status = fill(buffer, capacity, &length)
        if status == EKV_ERR_BUFFER_TOO_SMALL, length + 1 > capacity {
            capacity = length + 1
            continue
        }
        try check(status, operation())
        return decodeUTF8(buffer, count: length)
    }
    throw EdgeKVError(status: .bufferTooSmall, message: "the text kept growing", operation: operation())
}

/// The text of a fixed-size, NUL-terminated `char[N]` field (imported as a tuple).
func stringFromCharTuple<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.bindMemory(to: UInt8.self)
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        return String(decoding: bytes[..<end], as: UTF8.self)
    }
}

/// Calls `body` with NUL-terminated copies of `strings` (valid during the call).
func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) throws -> R) rethrows -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    return try body(copies.map { $0.map { UnsafePointer($0) } })
}
