import Glibc
import Support

/// Why a camera cannot be used; each message says what to do about it.
public enum CameraError: Error, CustomStringConvertible, Equatable {
    case notFound(path: String)
    case permissionDenied(path: String)
    case busy(path: String, call: String)
    case notCaptureDevice(path: String, card: String, capabilities: UInt32, reason: String)
    case noUsableFormat(path: String, offered: [String], wanted: [String])
    case tooLarge(path: String, width: Int, height: Int, maxWidth: Int, maxHeight: Int)
    case formatRefused(path: String, asked: String, got: String)
    /// The device went away or its stream broke (ENODEV, EIO, …): a hot-unplug, retried.
    case gone(path: String, call: String, errno: Int32)
    case system(path: String, call: String, errno: Int32)

    public var description: String {
        switch self {
        case .notFound(let p):
            return "camera '\(p)' does not exist (unplugged? `camclass cameras` lists the cameras present)"
        case .permissionDenied(let p):
            return "permission denied opening camera '\(p)': add the user camclassd runs as to the 'video' group " +
                "(sudo usermod -aG video USER, then log in again or restart the service)"
        case .busy(let p, let call):
            return "camera '\(p)' is used by another process (\(call): device busy): stop the other program " +
                "(`fuser \(p)` shows it) or configure another camera"
        case .notCaptureDevice(let p, let card, let caps, let reason):
            return "'\(p)' (\(card)) is not usable as a camera: \(reason) (capabilities 0x\(String(caps, radix: 16))); " +
                "pick a capture node from `camclass cameras`"
        case .noUsableFormat(let p, let offered, let wanted):
            return "camera '\(p)' offers \(offered.isEmpty ? "no formats" : offered.joined(separator: ", ")), none of " +
                "camera.formats [\(wanted.joined(separator: ", "))]: add one of NV12, YUYV, MJPEG that it offers"
        case .tooLarge(let p, let w, let h, let mw, let mh):
            return "camera '\(p)' came back offering no size within \(mw)x\(mh) (closest \(w)x\(h)), the frame " +
                "size the daemon started with: restart camclassd to renegotiate"
        case .formatRefused(let p, let asked, let got):
            return "camera '\(p)' was asked for \(asked) but set \(got): set camera.formats to the format it keeps"
        case .gone(let p, let call, let e):
            return "camera '\(p)' went away (\(call): \(String(cString: strerror(e))))"
        case .system(let p, let call, let e):
            return "camera '\(p)': \(call) failed: \(String(cString: strerror(e))) (errno \(e))"
        }
    }

    /// Classifies a failed call's errno. `opening`: ENOENT means "no such camera".
    public static func from(errno e: Int32, call: String, path: String, opening: Bool = false) -> CameraError {
        switch e {
        case ENOENT where opening: return .notFound(path: path)
        case EACCES, EPERM: return .permissionDenied(path: path)
        case EBUSY: return .busy(path: path, call: call)
        case ENODEV, ENXIO, EIO, EPIPE, ESHUTDOWN, ENOENT: return .gone(path: path, call: call, errno: e)
        default: return .system(path: path, call: call, errno: e)
        }
    }

    static func from(_ e: SystemCallError, path: String, opening: Bool = false) -> CameraError {
        from(errno: e.errno, call: e.call, path: path, opening: opening)
    }

    /// Errors that mean "not there (yet)": the daemon waits and retries instead of refusing to start.
    public var isAbsence: Bool {
        switch self {
        case .notFound, .gone: return true
        default: return false
        }
    }
}
