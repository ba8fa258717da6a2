/// The process exit statuses of both executables, from sysexits(3), so `systemctl status` and
/// scripts tell the cause. One type, so no status is spelled as a bare number anywhere.
public enum ExitStatus: Int32, Sendable, CaseIterable {
    case success = 0
    /// A tool's check did not pass (a benchmark row failed, a camera was not found).
    case failure = 1
    /// EX_USAGE: wrong flags or arguments.
    case usage = 64
    /// EX_NOINPUT: a model, replay or photo file is missing or unreadable.
    case noInput = 66
    /// EX_UNAVAILABLE: a library, device or the daemon is not there or not usable.
    case unavailable = 69
    /// EX_SOFTWARE: an internal failure (or a shutdown that did not finish in time).
    case software = 70
    /// EX_CANTCREAT: the socket or the log cannot be created.
    case cantCreate = 73
    /// EX_IOERR: a source failed while running.
    case ioError = 74
    /// EX_TEMPFAIL: no answer in time; trying again may work.
    case tempFail = 75
    /// EX_PROTOCOL: the other side does not speak the protocol expected.
    case protocolError = 76
    /// EX_NOPERM: e.g. the camera, without the video group.
    case noPermission = 77
    /// EX_CONFIG: the configuration (file or flags) is invalid.
    case config = 78

    public var code: Int32 { rawValue }
}
