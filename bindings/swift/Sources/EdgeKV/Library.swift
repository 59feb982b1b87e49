import CEdgeKV

/// A token id of a model's vocabulary.
public typealias Token = Int32

/// Process-wide facts and settings of the linked edgekv library.
public enum Library {
    /// Version of the linked library, e.g. "0.1.0".
    public static var version: String { String(cString: ekv_version()) }

    /// Version of the linked library as major * 10000 + minor * 100 + patch.
    public static var versionNumber: Int { Int(ekv_version_number()) }

    /// Version of the header this binding was compiled against.
    public static let headerVersionNumber = Int(EKV_VERSION_MAJOR * 10000 + EKV_VERSION_MINOR * 100 + EKV_VERSION_PATCH)

    /// Routes every library message (warnings, errors, driver messages) to
    /// `handler`, called from whichever thread produced the message, one call
    /// at a time. `nil` restores the default (warnings and errors to stderr).
    public static func setLogHandler(_ handler: (@Sendable (LogLevel, String) -> Void)?) {
        logHandler.withLock { $0 = handler }
        if handler != nil {
            ekv_log_set_callback({ level, message, _ in
                guard let handler = logHandler.withLock({ $0 }) else { return }
                let text = message.map { String(cString: $0) } ?? ""
                handler(LogLevel(rawValue: Int32(truncatingIfNeeded: level.rawValue)) ?? .debug, text)
            }, nil)
        } else {
            ekv_log_set_callback(nil, nil)
        }
    }
}

/// The handler `Library.setLogHandler` installed (a global, so that the C
/// callback can reach it without capturing context).
private let logHandler = Locked<(@Sendable (LogLevel, String) -> Void)?>(nil)

/// Severity of a library message.
public enum LogLevel: Int32, Sendable, Comparable {
    /// A failure.
    case error = 0
    /// Something that works, but not as asked (a fallback).
    case warning = 1
    /// Progress and facts.
    case info = 2
    /// Details for debugging.
    case debug = 3

    /// Orders by severity's number: `.error < .warning < .info < .debug`.
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// A compute backend.
public enum Backend: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// The best available: CUDA, then Vulkan, then the CPU.
    case auto = 0
    /// The multi-threaded CPU backend.
    case cpu = 1
    /// Vulkan compute.
    case vulkan = 2
    /// CUDA.
    case cuda = 3

    var cValue: ekv_backend_kind { ekv_backend_kind(rawValue: .init(truncatingIfNeeded: rawValue)) }

    init(_ kind: ekv_backend_kind) { self = Backend(rawValue: Int32(truncatingIfNeeded: kind.rawValue)) ?? .auto }

    /// Parses "auto", "cpu", "vulkan" or "cuda"; `nil` for anything else.
    public init?(name: String) {
        var kind = EKV_BACKEND_AUTO
        guard ekv_backend_from_name(name, &kind) == EKV_OK else { return nil }
        self.init(kind)
    }

    /// The library's name of the backend ("cpu").
    public var name: String { String(cString: ekv_backend_name(cValue)) }

    /// Same as `name`.
    public var description: String { name }

    /// Whether this build has the backend and it found at least one device.
    public var isAvailable: Bool { ekv_backend_available(cValue) != 0 }

    /// The backend's devices (empty when it is not built).
    public func devices() throws -> [Device] {
        var count: Int32 = 0
        try check(ekv_device_count(cValue, &count), "counting \(name) devices")
        return try (0..<count).map { index in
            var info = ekv_device_info_default()
            try check(ekv_device_get_info(cValue, index, &info), "describing \(name) device \(index)")
            return Device(info)
        }
    }
}

/// A device a backend can run on.
public struct Device: Sendable, Hashable {
    /// The backend it belongs to.
    public let backend: Backend
    /// Its index within the backend (`Model.Options.deviceIndex`).
    public let index: Int
    /// Its name ("AMD Ryzen 7 (8 threads)").
    public let name: String
    /// Memory local to the device (RAM for the CPU).
    public let memoryBytes: UInt64
    /// Whether host and device share memory (UMA).
    public let hasUnifiedMemory: Bool
    /// CPU: worker threads used by default.
    public let threadCount: Int

    init(_ info: ekv_device_info) {
        backend = Backend(info.backend)
        index = Int(info.index)
        name = stringFromCharTuple(info.name)
        memoryBytes = info.device_memory_bytes
        hasUnifiedMemory = info.unified_memory != 0
        threadCount = Int(info.n_threads)
    }
}
