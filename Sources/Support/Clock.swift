import Glibc

/// Monotonic and wall clocks in nanoseconds.
public enum Clock {
    public static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public static func realtimeNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Sleeps until the monotonic deadline (absolute), resuming after signals.
    public static func sleep(untilMonotonicNs deadline: UInt64) {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
    }
}

/// Unbuffered writes to the standard streams (no shared `FILE *` state across threads).
public enum Console {
    public static func out(_ s: String) { write(fd: STDOUT_FILENO, s) }
    public static func err(_ s: String) { write(fd: STDERR_FILENO, s) }

    /// Writes `s` to stdout; false when stdout is gone (EPIPE: the reader closed the pipe, with
    /// SIGPIPE ignored) or failed, so the caller can stop writing there.
    @discardableResult
    public static func tryOut(_ s: String) -> Bool { write(fd: STDOUT_FILENO, s) }

    @discardableResult
    static func write(fd: Int32, _ s: String) -> Bool {
        var s = s
        return s.withUTF8 { p -> Bool in
            var off = 0
            while off < p.count {
                let n = Glibc.write(fd, p.baseAddress! + off, p.count - off)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                off += n
            }
            return true
        }
    }
}

/// Reads a whole (small) file as UTF-8 text, retrying EINTR; nil when it cannot be opened.
/// For configuration, sidecars and catalogues — start-up work, never the per-frame path.
public func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += buf[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}
