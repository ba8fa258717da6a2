import Glibc
import Support
import Synchronization

/// A client connection to camclassd's socket: reads newline-delimited records, sends request lines.
/// Thread context: one thread at a time; reads block (with an optional timeout).
public final class SubscriberConnection: @unchecked Sendable {
    public let fd: Int32
    private var buffer: [UInt8] = []
    /// True once the daemon closed the connection (`readLine` then returns nil for good).
    public private(set) var atEOF = false
    private var start = 0

    /// - Throws: `SystemCallError` naming the socket when nothing listens there.
    public init(path: String) throws {
        fd = try syscall("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var addr = try unixSocketAddress(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            throw SystemCallError("connect(\(path))", errno: e)
        }
        buffer.reserveCapacity(1 << 16)
    }

    deinit { close(fd) }

    /// Sends one request line (a newline is appended if missing).
    public func send(line: String) throws {
        var s = line.hasSuffix("\n") ? line : line + "\n"
        try s.withUTF8 { p in
            var off = 0
            while off < p.count {
                let n = try syscall("send") { Glibc.send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL)) }
                off += n
            }
        }
    }

    /// The next line without its newline, or nil at end of stream / after `timeoutMs` (when given).
    public func readLine(timeoutMs: Int32 = -1) throws -> String? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[start..<nl], as: UTF8.self)
                start = nl + 1
                if start > 1 << 15 { buffer.removeFirst(start); start = 0 }
                return line
            }
            if timeoutMs >= 0 {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = try syscall("poll") { poll(&p, 1, timeoutMs) }
                if r == 0 { return nil }
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = try chunk.withUnsafeMutableBytes { raw in try syscall("read") { read(fd, raw.baseAddress, raw.count) } }
            if n == 0 { atEOF = true; return nil }
            buffer += chunk[0..<n]
        }
    }

    /// A background reader that discards everything (benchmarks: a subscriber that keeps up).
    /// Its thread blocks in read(2); `stop` shuts the socket down, which ends that read (no
    /// periodic wake-up to look at a flag).
    public final class Drain: @unchecked Sendable {
        let connection: SubscriberConnection?
        let thread: DedicatedThread?
        init(path: String) {
            connection = try? SubscriberConnection(path: path)
            thread = connection.map { c in
                DedicatedThread(name: "bench-sub") {
                    var buf = [UInt8](repeating: 0, count: 1 << 16)
                    while true {
                        let n = buf.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 { break }  // closed by the daemon, or shut down by `stop`
                    }
                }
            }
        }

        /// Ends the reader: shutdown(2) makes its blocked read return 0. Later calls do nothing.
        public func stop() {
            if let c = connection { _ = Glibc.shutdown(c.fd, Int32(SHUT_RDWR)) }
            thread?.join()
        }
    }

    public static func drainInBackground(path: String) -> Drain { Drain(path: path) }
}
