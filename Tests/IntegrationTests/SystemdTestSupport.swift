import CamclassTestSupport
import Foundation
import Glibc
import Testing

/// The real camclassd binary as a child process, the way systemd runs it: stderr to a file the
/// test reads, signals by pid. Waits poll with `Task.sleep`, so tests never block the cooperative
/// pool (2 threads here) that in-process daemons of other suites need.
final class DaemonProcess: @unchecked Sendable {
    let process = Process()
    let stderrPath: String
    let dir: String

    static func binary() throws -> String { try TestBinary.camclassd() }

    /// - Parameters:
    ///   - environment: added to the test's environment (CAMCLASSD_OPENVINO_LIB is passed on).
    ///   - stderrFD: when given, the child's stderr (for the journal-stream test); else a file.
    init(arguments: [String], environment: [String: String] = [:], dir: String, stderrHandle: FileHandle? = nil,
         stdoutHandle: FileHandle? = nil) throws {
        self.dir = dir
        stderrPath = dir + "/stderr-\(UUID().uuidString.prefix(6)).txt"
        process.executableURL = URL(fileURLWithPath: try Self.binary())
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        // The test runner may itself run under systemd: the child must see only what the test sets.
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID"] { env[key] = nil }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardError = stderrHandle ?? FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = stdoutHandle ?? FileHandle.nullDevice
        try startUnmasked(process)
    }

    var pid: Int32 { process.processIdentifier }
    func signal(_ sig: Int32) { kill(pid, sig) }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Exit status, or nil if still running after `timeout` (then it is killed).
    func waitExit(timeout: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(pid, SIGKILL) } }
}


/// Plays systemd's side of sd_notify: a datagram socket (abstract `@name` or a path) whose
/// messages a dedicated thread collects with their arrival time.
final class NotifyListener: @unchecked Sendable {
    struct Message: Sendable {
        var time: Date
        var text: String
        var fields: [String: String] {
            var f: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                f[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            return f
        }
    }

    let name: String   // what NOTIFY_SOCKET says
    private let fd: Int32
    private let lock = NSLock()
    private var received: [Message] = []
    private var stopped = false
    private var thread: Thread?

    /// - Parameter abstract: bind in the abstract namespace (`@…`, as systemd's own socket can be).
    init(abstract: Bool, dir: String) throws {
        let n = abstract ? "@camclass-test-\(UUID().uuidString.prefix(12))" : dir + "/notify.sock"
        name = n
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(n.utf8)
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EINVAL) }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { [self] in loop() }
        thread = t
        t.start()
    }

    private func loop() {
        var buf = [UInt8](repeating: 0, count: 4096)
        while !(lock.withLock { stopped }) {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                let m = Message(time: Date(), text: String(decoding: buf[0..<n], as: UTF8.self))
                lock.withLock { received.append(m) }
            }
        }
        close(fd)
    }

    var messages: [Message] { lock.withLock { received } }

    func stop() { lock.withLock { stopped = true } }

    deinit { stop() }
}

/// A subscriber reading JSON lines on its own thread until the daemon closes the connection.
final class RecordReader: @unchecked Sendable {
    struct Line: @unchecked Sendable {
        var time: Date
        var object: [String: Any]
        var type: String { object["type"] as? String ?? "" }
    }

    private let lock = NSLock()
    private var received: [Line] = []
    private var eof = false
    private let fd: Int32

    init(socketPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(socketPath.utf8) + [0]) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECONNREFUSED)
        }
        Thread { [self] in loop() }.start()
    }

    private func loop() {
        var pending = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending += buf[0..<n]
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = Data(pending[..<nl])
                pending.removeSubrange(...nl)
                if let obj = try? JSONSerialization.jsonObject(with: line) as? [String: Any] {
                    lock.withLock { received.append(Line(time: Date(), object: obj)) }
                }
            }
        }
        lock.withLock { eof = true }
        close(fd)
    }

    var lines: [Line] { lock.withLock { received } }
    var atEOF: Bool { lock.withLock { eof } }
    func classifications() -> [Line] { lines.filter { $0.type == "classification" } }
}

/// A config file for the real daemon: samples replayed at `fps`, socket and log in `dir`.
func writeDaemonConfig(_ path: String, dir: String, fps: Int = 20, topK: Int = 5, extra: String = "") throws {
    let yaml = """
    source:
      path: \(try TestEnv.samples())
      fps: \(fps)
    model:
      path: \(try TestEnv.model())
      top_k: \(topK)
    publish:
      socket: \(dir)/camclassd.sock
    log:
      path: \(dir)/log/classifications.log
    \(extra)
    """
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
}
