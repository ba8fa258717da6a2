import CamclassTestSupport
import WireFormat
import Client
import Foundation
import Glibc
import Support
import Synchronization
import Testing


/// A real mosquitto broker on a loopback port, with a generated config (optionally TLS with
/// certificates made by openssl here, a password file, persistence). Fails — never skips — when
/// mosquitto is missing (`make test-deps` installs it).
final class TestBroker: @unchecked Sendable {
    let dir: String
    let port: Int
    let tls: Bool
    private(set) var process: Process?
    var caFile: String { dir + "/ca.crt" }

    static func binary(_ name: String) throws -> String {
        try TestBinary.system(name, package: "mosquitto, mosquitto-clients and openssl")
    }

    /// - Parameters:
    ///   - users: name → password; when given, anonymous clients are refused.
    ///   - persistence: sessions and queued messages survive a restart (saved at SIGTERM).
    init(_ tag: String, tls: Bool = false, users: [String: String] = [:], persistence: Bool = false) throws {
        dir = TestEnv.tempDir("broker-\(tag)")
        port = try Self.freePort()
        self.tls = tls
        var conf = "listener \(port) 127.0.0.1\npersistence \(persistence)\n"
        if getuid() == 0 { conf += "user root\n" }  // keep read access to the test's files
        if persistence { conf += "persistence_location \(dir)/\nautosave_interval 0\n" }
        if users.isEmpty {
            conf += "allow_anonymous true\n"
        } else {
            let pw = dir + "/passwords"
            for (i, (u, p)) in users.sorted(by: { $0.key < $1.key }).enumerated() {
                let r = try Self.run(try Self.binary("mosquitto_passwd"), (i == 0 ? ["-c"] : []) + ["-b", pw, u, p])
                try #require(r.0 == 0, "mosquitto_passwd: \(r.1)")
            }
            conf += "allow_anonymous false\npassword_file \(pw)\n"
        }
        if tls {
            try Self.makeCertificates(dir)
            conf += "cafile \(dir)/ca.crt\ncertfile \(dir)/server.crt\nkeyfile \(dir)/server.key\n"
        }
        try conf.write(toFile: dir + "/mosquitto.conf", atomically: true, encoding: .utf8)
        try start()
    }

    /// Starts (or restarts) the broker on the same port; returns once it accepts connections.
    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.binary("mosquitto"))
        p.arguments = ["-c", dir + "/mosquitto.conf"]
        let log = dir + "/mosquitto.log"
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let h = try #require(FileHandle(forWritingAtPath: log))
        h.seekToEndOfFile()
        p.standardError = h
        p.standardOutput = h
        try startUnmasked(p)
        process = p
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if Self.accepts(port: port) { return }
            guard p.isRunning else { break }
            usleep(20_000)
        }
        Issue.record("mosquitto did not start on port \(port): \(self.log)")
        throw TestEnv.MissingInput(name: "mosquitto")
    }

    /// Stops the broker with `signal` and waits for it to exit.
    func stop(_ signal: Int32 = SIGTERM) {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning {
            Issue.record("mosquitto ignored signal \(signal) for 10 s: killed")
            kill(p.processIdentifier, SIGKILL)
        }
        p.waitUntilExit()
        process = nil
    }

    var log: String { (try? String(contentsOfFile: dir + "/mosquitto.log", encoding: .utf8)) ?? "" }

    deinit {
        stop(SIGKILL)
        try? FileManager.default.removeItem(atPath: dir)
    }

    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        try #require(ok, "no free port")
        return Int(UInt16(bigEndian: a.sin_port))
    }

    /// A CA and a server certificate for localhost / 127.0.0.1, made with openssl.
    static func makeCertificates(_ dir: String) throws {
        let openssl = try binary("openssl")
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\n".write(toFile: dir + "/san.ext", atomically: true, encoding: .utf8)
        for args in [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/ca.key", "-out", dir + "/ca.crt", "-days", "2", "-subj", "/CN=camclass test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/server.key", "-out", dir + "/server.csr", "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.crt", "-CAkey", dir + "/ca.key", "-CAcreateserial",
             "-out", dir + "/server.crt", "-days", "2", "-extfile", dir + "/san.ext"],
        ] {
            let r = try run(openssl, args)
            try #require(r.0 == 0, "openssl \(args.joined(separator: " ")): \(r.1)")
        }
    }

    static func run(_ path: String, _ args: [String]) throws -> (Int32, String) {
        let r = try runCommand(path, args, mergeOutput: true)
        return (r.status, r.stdout)
    }
}

/// One message as `mosquitto_sub -F '%t|%q|%r|%p'` prints it.
struct SubMessage: Sendable, CustomStringConvertible {
    var topic: String
    var qos: Int
    var retained: Bool
    var payload: String
    var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any] }
    var description: String { "\(topic) q\(qos) r\(retained ? 1 : 0) \(payload.prefix(120))" }
}

/// `mosquitto_sub` running in the background, MQTT 5 with retain-as-published (so live retained
/// messages keep their flag) and QoS 2 subscriptions (so the delivered QoS is the published one).
final class TestSubscriber: @unchecked Sendable {
    let process = Process()
    let outPath: String
    let errPath: String

    init(_ broker: TestBroker, topics: [String], extra: [String] = [], qos: Int = 2) throws {
        outPath = broker.dir + "/sub-\(UUID().uuidString.prefix(6)).txt"
        errPath = outPath + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: try TestBroker.binary("mosquitto_sub"))
        var args = ["-h", "127.0.0.1", "-p", "\(broker.port)", "-V", "5", "--retain-as-published",
                    "-q", "\(qos)", "-F", "%t|%q|%r|%p"] + extra
        if broker.tls { args += ["--cafile", broker.caFile] }
        for t in topics { args += ["-t", t] }
        process.arguments = args
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try startUnmasked(process)
    }

    var messages: [SubMessage] {
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: "|", maxSplits: 3, omittingEmptySubsequences: false)
            guard f.count == 4, let q = Int(f[1]) else { return nil }
            return SubMessage(topic: String(f[0]), qos: q, retained: f[2] == "1", payload: String(f[3]))
        }
    }

    func messages(_ suffix: String) -> [SubMessage] { messages.filter { $0.topic.hasSuffix(suffix) } }

    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// SIGKILL: mosquitto_sub keeps the signal mask it was spawned with, and processes started from
    /// Swift's cooperative threads inherit one that blocks SIGTERM and SIGINT.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    /// Retained messages read after the fact: a fresh subscriber that exits after `count` messages.
    static func retained(_ broker: TestBroker, topics: [String], count: Int, extra: [String] = []) throws -> [SubMessage] {
        var args = ["-h", "127.0.0.1", "-p", "\(broker.port)", "-V", "5", "-q", "1",
                    "-F", "%t|%q|%r|%p", "-C", "\(count)", "-W", "5", "--retained-only"] + extra
        if broker.tls { args += ["--cafile", broker.caFile] }
        for t in topics { args += ["-t", t] }
        let (_, out) = try TestBroker.run(try TestBroker.binary("mosquitto_sub"), args)
        return out.split(separator: "\n").compactMap { line in
            let f = line.split(separator: "|", maxSplits: 3, omittingEmptySubsequences: false)
            guard f.count == 4, let q = Int(f[1]) else { return nil }
            return SubMessage(topic: String(f[0]), qos: q, retained: f[2] == "1", payload: String(f[3]))
        }
    }
}

/// `camclass mqtt` as its own process (the bridge), with a generated config.
final class BridgeProcess: @unchecked Sendable {
    let process = Process()
    let stderrPath: String

    init(dir: String, yaml: String, args: [String], environment: [String: String] = [:]) throws {
        let conf = dir + "/mqtt-\(UUID().uuidString.prefix(6)).yaml"
        try yaml.write(toFile: conf, atomically: true, encoding: .utf8)
        stderrPath = conf + ".stderr"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: try StatusTests.camclassBinary())
        process.arguments = ["mqtt", "--config", conf] + args
        var env = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID", "CREDENTIALS_DIRECTORY"] { env[key] = nil }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = FileHandle.nullDevice
        try startUnmasked(process)
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    func signal(_ s: Int32) { kill(process.processIdentifier, s) }

    /// Exit status after `signal` (nil if it had to be killed after `timeout`).
    func stop(_ s: Int32 = SIGTERM, timeout: Double = 15) async -> Int32? {
        signal(s)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit(); return nil }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// A stand-in for camclassd's socket speaking protocol v1 lines, for what the daemon cannot be
/// made to do here: camera records come only from V4L2 cameras (Sources/CamclassDaemon/CameraEvents.swift).
final class FakeDaemonSocket: @unchecked Sendable {
    let path: String
    private let listenFD: Int32
    private let lock = NSLock()
    private var clientFD: Int32 = -1
    private var lines: [String] = []
    private var thread: Thread?

    /// A line written before each `status` reply (nil: none): a record broadcast to every
    /// subscriber that reaches the client before its reply, as a busy daemon's may.
    private let beforeStatusReply: String?

    init(path: String, hello: String, beforeStatusReply: String? = nil) throws {
        self.path = path
        self.beforeStatusReply = beforeStatusReply
        listenFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        _ = withUnsafeMutableBytes(of: &addr.sun_path) { p in path.utf8CString.withUnsafeBytes { p.copyMemory(from: $0) } }
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } } == 0
        try #require(ok && listen(listenFD, 4) == 0, "fake socket \(path): \(String(cString: strerror(errno)))")
        let t = Thread { [self] in serve(hello: hello) }
        thread = t
        t.start()
    }

    /// Accepts one client, greets it, collects what it sends (answering subscribe and status).
    private func serve(hello: String) {
        let fd = accept(listenFD, nil, nil)
        guard fd >= 0 else { return }
        lock.withLock { clientFD = fd }
        write(hello)
        var buf = [UInt8](repeating: 0, count: 4096)
        var pending: [UInt8] = []
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            pending += buf[0..<n]
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeFirst(nl + 1)
                lock.withLock { lines.append(line) }
                if line.hasPrefix("{\"subscribe\"") { write(#"{"type":"subscribed","filter":{}}"#) }
                if line.hasPrefix("{\"status\"") {
                    if let beforeStatusReply { write(beforeStatusReply) }
                    write(#"{"type":"status","time":"2026-11-23T09:20:00.000000Z","source":{"name":"/dev/video0","state":"streaming"},"fps":{"in":30.0,"out":30.0,"window_s":10.0},"stable":"cat"}"#)
                }
            }
        }
    }

    /// Sends one line to the connected client.
    func write(_ line: String) {
        let fd = lock.withLock { clientFD }
        guard fd >= 0 else { return }
        var s = line + "\n"
        s.withUTF8 { p in var off = 0; while off < p.count { let n = send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL)); if n <= 0 { return }; off += n } }
    }

    var connected: Bool { lock.withLock { clientFD >= 0 } }
    var received: [String] { lock.withLock { lines } }

    /// Closes the client and the listening socket and removes the path (the daemon is gone).
    func close() {
        lock.withLock {
            if clientFD >= 0 { shutdown(clientFD, Int32(SHUT_RDWR)); Glibc.close(clientFD); clientFD = -1 }
        }
        shutdown(listenFD, Int32(SHUT_RDWR))
        Glibc.close(listenFD)
        unlink(path)
    }
}

enum MQTTTestEnv {
    /// A replay folder whose photos change every `run` frames: `run` links to chelsea.jpg (a cat),
    /// then `run` to coffee.jpg (espresso), so the stable label changes about every run/fps seconds.
    static func alternatingSource(_ dir: String, run: Int = 15) throws -> String {
        let samples = try TestEnv.samples()
        let src = dir + "/alternating"
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        for i in 0..<run {
            try FileManager.default.createSymbolicLink(atPath: src + String(format: "/a%03d.jpg", i), withDestinationPath: samples + "/chelsea.jpg")
            try FileManager.default.createSymbolicLink(atPath: src + String(format: "/b%03d.jpg", i), withDestinationPath: samples + "/coffee.jpg")
        }
        return src
    }

    /// camclassd on the alternating photos at `fps`, stable labels with a short dwell.
    static func daemon(dir: String, socket: String, fps: Int = 30) throws -> DaemonProcess {
        let yaml = """
            stable:
              groups: \(TestEnv.repoRoot)/config/coarse-groups.yaml
              min_dwell_ms: 100
            """
        try yaml.write(toFile: dir + "/camclassd.yaml", atomically: true, encoding: .utf8)
        let source = FileManager.default.fileExists(atPath: dir + "/alternating") ? dir + "/alternating" : try alternatingSource(dir)
        return try DaemonProcess(arguments: [
            "--config", dir + "/camclassd.yaml", "--source", source, "--model", try TestEnv.model(),
            "--socket", socket, "--log", dir + "/c.log", "--fps", "\(fps)",
        ], environment: ["CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO()], dir: dir)
    }
}
