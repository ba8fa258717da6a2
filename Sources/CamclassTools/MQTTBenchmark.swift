import Foundation
import Glibc
import Client
import MQTTBridge
import WireFormat
import Support
import Synchronization

/// `camclass bench-mqtt`: capture → MQTT subscriber latency and the bridge's CPU per message, with
/// a real broker (mosquitto on a loopback port), the real daemon replaying photos and the bridge as
/// its own process with `max_rate_hz: 0` (every classification). Prints figures; not a test.
public enum MQTTBenchmark {
    public struct Options: Sendable {
        public var camclassd: String
        public var camclass: String
        public var mosquitto = "/usr/sbin/mosquitto"
        public var model: String
        public var source: String
        public var fps = 30.0
        public var warmupSeconds = 3.0
        public var seconds = 20.0
        public var qos = 0
        public init(camclassd: String, camclass: String, model: String, source: String) {
            self.camclassd = camclassd
            self.camclass = camclass
            self.model = model
            self.source = source
        }
    }

    public struct Result: Sendable {
        public var messages = 0
        public var socketRecords = 0
        public var mqttMs: (p50: Double, p90: Double, p99: Double, max: Double) = (0, 0, 0, 0)
        public var socketMs: (p50: Double, p90: Double, p99: Double, max: Double) = (0, 0, 0, 0)
        public var bridgeCPUSeconds = 0.0
        public var seconds = 0.0
        public var bridgeCPUPerMessageUs: Double { messages > 0 ? bridgeCPUSeconds * 1e6 / Double(messages) : 0 }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs the three processes, measures, stops them. Blocking: call from a plain thread.
    public static func run(_ o: Options, log: (String) -> Void) throws -> Result {
        let dir = NSTemporaryDirectory() + "camclass-bench-mqtt-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try freeLoopbackPort()
        try "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence false\n".write(toFile: dir + "/mosquitto.conf", atomically: true, encoding: .utf8)
        let broker = try BenchProcess.spawn(o.mosquitto, ["-c", dir + "/mosquitto.conf"], stderr: dir + "/mosquitto.log")
        defer { BenchProcess.stopProcess(broker) }
        let socket = dir + "/s.sock"
        let daemon = try BenchProcess.spawn(o.camclassd, ["--source", o.source, "--model", o.model, "--socket", socket, "--log", dir + "/c.log",
                                             "--fps", "\(o.fps)"], stderr: dir + "/camclassd.log")
        defer { BenchProcess.stopProcess(daemon) }
        log("waiting for camclassd (model compile)…")
        guard BenchProcess.waitFor(seconds: 120, { FileManager.default.fileExists(atPath: socket) }) else {
            throw Failure(description: "camclassd did not open \(socket): \(BenchProcess.tail(dir + "/camclassd.log"))")
        }
        try "classification:\n  max_rate_hz: 0\ntopics:\n  classification_qos: \(o.qos)\n".write(toFile: dir + "/mqtt.yaml", atomically: true, encoding: .utf8)
        let bridge = try BenchProcess.spawn(o.camclass, ["mqtt", "--config", dir + "/mqtt.yaml", "--socket", socket, "--broker", "mqtt://127.0.0.1:\(port)",
                                            "--robot", "bench"], stderr: dir + "/bridge.log")
        defer { BenchProcess.stopProcess(bridge) }

        // The MQTT side: latency from the record's capture_ns (CLOCK_MONOTONIC, this machine).
        struct Samples { var mqtt: [Double] = []; var socket: [Double] = []; var measuring = false }
        let samples = Mutex(Samples())
        var co = MosquittoClient.Options(url: BrokerURL(tls: false, host: "127.0.0.1", port: port), clientID: "bench-sub-\(getpid())")
        co.backoffInitialMs = 50
        co.backoffMaxMs = 500
        let sub = try MosquittoClient(options: co)
        sub.onEvent = { e in if case .connected = e { _ = sub.subscribe("camclass/bench/+/classification", qos: Int32(o.qos)) } }
        sub.onMessage = { m in
            let now = Clock.monotonicNs()
            guard let cap = captureNs(m.payload) else { return }
            samples.withLock { s in if s.measuring { s.mqtt.append(Double(Int64(now) - Int64(cap)) / 1e6) } }
        }
        sub.start()
        defer { sub.stop() }
        // The socket side, for comparison: what a direct subscriber of the daemon sees.
        let direct = try SubscriberConnection(path: socket)
        let stopDirect = AtomicFlag()
        let reader = DedicatedThread(name: "bench-direct") {
            while !stopDirect.isSet, let line = try? direct.readLine(timeoutMs: 200) ?? "" {
                let now = Clock.monotonicNs()
                guard line.hasPrefix("{\"type\":\"classification\""), let cap = captureNs(Array(line.utf8)) else {
                    if direct.atEOF { break }
                    continue
                }
                samples.withLock { s in if s.measuring { s.socket.append(Double(Int64(now) - Int64(cap)) / 1e6) } }
            }
        }
        defer { stopDirect.set(); reader.join() }

        log("warming up \(o.warmupSeconds) s…")
        let pause = Condition()
        _ = pause.wait(timeoutNs: UInt64(o.warmupSeconds * 1e9)) { false }
        guard bridge.isRunning else { throw Failure(description: "the bridge exited: \(BenchProcess.tail(dir + "/bridge.log"))") }
        let cpu0 = cpuSeconds(pid: bridge.processIdentifier)
        let t0 = Clock.monotonicNs()
        samples.withLock { $0.measuring = true }
        log("measuring \(o.seconds) s at \(o.fps) FPS…")
        _ = pause.wait(timeoutNs: UInt64(o.seconds * 1e9)) { false }
        let got = samples.withLock { s -> Samples in s.measuring = false; return s }
        let cpu1 = cpuSeconds(pid: bridge.processIdentifier)
        var r = Result()
        r.seconds = Double(Clock.monotonicNs() - t0) / 1e9
        r.messages = got.mqtt.count
        r.socketRecords = got.socket.count
        r.mqttMs = percentiles(got.mqtt)
        r.socketMs = percentiles(got.socket)
        r.bridgeCPUSeconds = cpu1 - cpu0
        guard r.messages > 0 else { throw Failure(description: "no MQTT messages arrived: \(BenchProcess.tail(dir + "/bridge.log"))") }
        return r
    }

    static func captureNs(_ b: [UInt8]) -> UInt64? {
        let key = Array("\"capture_ns\":".utf8)
        guard let r = b.firstRange(of: key) else { return nil }
        var v: UInt64 = 0
        var i = r.upperBound
        while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(b[i] - 0x30))
            if o1 || o2 { return nil }
            v = a
            i += 1
        }
        return i > r.upperBound ? v : nil
    }

    static func percentiles(_ xs: [Double]) -> (p50: Double, p90: Double, p99: Double, max: Double) {
        guard !xs.isEmpty else { return (0, 0, 0, 0) }
        let s = xs.sorted()
        func p(_ q: Double) -> Double { s[min(s.count - 1, max(0, Int((q * Double(s.count)).rounded(.up)) - 1))] }
        return (p(0.5), p(0.9), p(0.99), s.last!)
    }

    /// utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15).
    static func cpuSeconds(pid: Int32) -> Double {
        guard let text = readTextFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func freeLoopbackPort() throws -> Int {
        let fd = try syscall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &a) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                _ = try syscall("bind") { bind(fd, sp, len) }
                _ = try syscall("getsockname") { getsockname(fd, sp, &len) }
            }
        }
        return Int(UInt16(bigEndian: a.sin_port))
    }




}
