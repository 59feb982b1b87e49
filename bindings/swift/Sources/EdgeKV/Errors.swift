import CEdgeKV

/// A status code of the edgekv C ABI (`ekv_status`).
///
/// The numbers are stable: the library never renumbers or reuses them. A
/// status this binding does not know yet (from a newer library) keeps its raw
/// value, so `Status` is a struct of named constants rather than an enum.
public struct Status: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The `ekv_status` number.
    public let rawValue: Int32

    /// Wraps an `ekv_status` number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    init(_ status: ekv_status) { self.rawValue = Int32(truncatingIfNeeded: status.rawValue) }

    /// `EKV_OK`: success.
    public static let ok = Status(rawValue: 0)
    /// `EKV_ERR_INVALID_ARGUMENT`: a NULL handle, an out-of-range value or bad parameters.
    public static let invalidArgument = Status(rawValue: 1)
    /// `EKV_ERR_OUT_OF_MEMORY`: a host or device allocation failed.
    public static let outOfMemory = Status(rawValue: 2)
    /// `EKV_ERR_IO`: a file cannot be opened, read or written.
    public static let io = Status(rawValue: 3)
    /// `EKV_ERR_INVALID_FILE`: a malformed, truncated or hostile file.
    public static let invalidFile = Status(rawValue: 4)
    /// `EKV_ERR_UNSUPPORTED`: a feature, type or combination that is not supported.
    public static let unsupported = Status(rawValue: 5)
    /// `EKV_ERR_UNSUPPORTED_ARCH`: the model architecture is not supported.
    public static let unsupportedArchitecture = Status(rawValue: 6)
    /// `EKV_ERR_CACHE_FULL`: a fixed-capacity cache cannot take the tokens.
    public static let cacheFull = Status(rawValue: 7)
    /// `EKV_ERR_INVALID_TOKEN`: a token id outside `0..<vocabularySize`.
    public static let invalidToken = Status(rawValue: 8)
    /// `EKV_ERR_CONTEXT_OVERFLOW`: the input is longer than the cache or model allows.
    public static let contextOverflow = Status(rawValue: 9)
    /// `EKV_ERR_BACKEND`: a backend or device failure, or the backend is not available.
    public static let backend = Status(rawValue: 10)
    /// `EKV_ERR_CANCELLED`: the call was stopped by the caller (task cancellation).
    public static let cancelled = Status(rawValue: 11)
    /// `EKV_ERR_MODEL_MISMATCH`: the object belongs to another model.
    public static let modelMismatch = Status(rawValue: 12)
    /// `EKV_ERR_INTERNAL`: a bug in edgekv.
    public static let `internal` = Status(rawValue: 13)
    /// `EKV_ERR_BUFFER_TOO_SMALL`: an output buffer was too small (handled inside this binding).
    public static let bufferTooSmall = Status(rawValue: 14)
    /// `EKV_ERR_DEVICE_LOST`: the GPU device was lost; free and recreate the objects.
    public static let deviceLost = Status(rawValue: 15)
    /// `EKV_ERR_INVALID_STATE`: the call is not valid in the object's current state.
    public static let invalidState = Status(rawValue: 16)

    /// The library's short description of the status ("invalid argument").
    public var description: String {
        String(cString: ekv_status_string(ekv_status(rawValue: .init(truncatingIfNeeded: rawValue))))
    }
}

/// An error reported by the edgekv library: its status and the library's
/// message (`ekv_last_error()`, read on the thread that made the failing call).
public struct EdgeKVError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Why the call failed.
    public let status: Status
    /// The library's details ("tensor blk.3.attn_q.weight extends past end of file").
    public let message: String
    /// What this binding was doing ("loading the model"), for context.
    public let operation: String

    /// Makes an error; the binding creates these, applications may for their own checks.
    public init(status: Status, message: String, operation: String = "") {
        self.status = status
        self.message = message
        self.operation = operation
    }

    /// "loading the model: invalid file: <details>".
    public var description: String {
        var text = operation.isEmpty ? "" : operation + ": "
        text += status.description
        if !message.isEmpty { text += ": " + message }
        return text
    }
}

/// Throws an `EdgeKVError` carrying `ekv_last_error()` if `status` is not
/// `EKV_OK`. Must run on the thread that made the call, right after it.
@inline(__always)
func check(_ status: ekv_status, _ operation: @autoclosure () -> String) throws {
    if status == EKV_OK { return }
    throw lastError(status, operation())
}

/// The error of a failed call, read from this thread's last-error slot.
func lastError(_ status: ekv_status, _ operation: String) -> EdgeKVError {
    let message = ekv_last_error().map { String(cString: $0) } ?? ""
    return EdgeKVError(status: Status(status), message: message, operation: operation)
}
