import CamclassTestSupport
import Client
import WireFormat
import Foundation
import Glibc
import Logging
@testable import Publishing
import Support
import Synchronization
import Testing

/// Log lines captured from a component under test (level and message), to count warnings.
final class HardeningLogCapture: @unchecked Sendable {
    private let lines = Mutex<[(Logger.Level, String)]>([])

    var logger: Logger { Logger(label: "hardening") { _ in Handler(capture: self) } }

    func count(_ level: Logger.Level? = nil, containing text: String) -> Int {
        lines.withLock { $0.filter { (level == nil || $0.0 == level!) && $0.1.contains(text) }.count }
    }

    func all() -> [(Logger.Level, String)] { lines.withLock { $0 } }

    struct Handler: LogHandler {
        let capture: HardeningLogCapture
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var text = "\(event.message)"
            if let m = event.metadata, !m.isEmpty { text += " " + m.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ") }
            capture.lines.withLock { $0.append((event.level, text)) }
        }
    }
}

/// Issue 11, the socket side: requests that must not trap, the subscriber limit, the socket file
/// of another daemon, and warnings that repeat. (Descriptors running out, F9, is tested against
/// the daemon process in HardeningDaemonTests: libdispatch traps in a process without descriptors.)
/// Environment: none (real sockets in a temporary directory, in process).
@Suite(.serialized) struct HardeningProtocolTests {
    /// F1: a tiny `max_rate_hz` used to be accepted, then trapped the I/O thread (Double → UInt64
    /// overflow) at the next record, killing the daemon for every subscriber.
    @Test func tinyMaxRateIsABadValueAndNothingElseHappens() async throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("f1")
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let feeder = RecordFeeder(sinks: [pub])
        let (bystander, _) = try TestClient.connect(path)
        let (client, _) = try TestClient.connect(path)
        for value in ["1e-11", "1e-300", "5e-324", "0.0009", "0", "-1", "1000001", "1e308"] {
            let reply = try #require(try client.request("{\"subscribe\":{\"max_rate_hz\":\(value)}}", expect: ["subscribed", "error"]))
            #expect(reply["type"] as? String == "error", "max_rate_hz \(value): \(reply)")
            #expect(reply["code"] as? String == "bad_value", "max_rate_hz \(value)")
            #expect((reply["error"] as? String)?.contains("0.001") == true, "the message states the range: \(reply)")
        }
        // Records flow after the refused requests: nobody trapped, both clients still served.
        for _ in 0..<5 { feeder.publish(top: [(285, 0.9)]) }
        #expect(ProtocolTestEnv.seqs(try client.drain()) == Array(0..<5))
        #expect(ProtocolTestEnv.seqs(try bystander.drain()) == Array(0..<5))
        // The smallest accepted rate works (one record, then the next only 1000 s later).
        let ack = try #require(try client.request("{\"subscribe\":{\"max_rate_hz\":0.001}}", expect: ["subscribed", "error"]))
        #expect(ack["type"] as? String == "subscribed")
        for _ in 0..<5 { feeder.publish(top: [(285, 0.9)]) }
        #expect(ProtocolTestEnv.seqs(try client.drain()) == [5])
    }

    /// F1 (audit): every numeric request field at extreme values is refused with bad_value; none traps.
    @Test func extremeNumbersInEveryFieldAreRefusedWithoutTrapping() throws {
        let vocabulary = RecordVocabulary(labels: (0..<1000).map { "class \($0)" })
        let bad = [
            #"{"subscribe":{"every_n":1e300}}"#, #"{"subscribe":{"every_n":9223372036854775807}}"#,
            #"{"subscribe":{"every_n":1000001}}"#, #"{"subscribe":{"every_n":-9223372036854775808}}"#,
            #"{"subscribe":{"every_n":0}}"#, #"{"subscribe":{"every_n":2.5}}"#,
            #"{"subscribe":{"top_k":1e300}}"#, #"{"subscribe":{"top_k":9223372036854775807}}"#, #"{"subscribe":{"top_k":0}}"#,
            #"{"subscribe":{"classes":[1e300]}}"#, #"{"subscribe":{"classes":[-1]}}"#, #"{"subscribe":{"classes":[1000]}}"#,
            #"{"subscribe":{"classes":[9223372036854775807]}}"#, #"{"subscribe":{"classes":[4294967296]}}"#,
            #"{"subscribe":{"min_score":1e300}}"#, #"{"subscribe":{"min_score":-1e-300}}"#, #"{"subscribe":{"min_score":1.0000001}}"#,
            #"{"subscribe":{"max_rate_hz":5e-324}}"#, #"{"subscribe":{"max_rate_hz":1e308}}"#,
        ]
        for line in bad {
            var bytes = Array(line.utf8)
            let result = bytes.withUnsafeMutableBytes { raw in
                Result { () throws(ProtocolError) in try ProtocolRequest.parse(UnsafeRawBufferPointer(raw), vocabulary: vocabulary, maxTopK: 5) }
            }
            switch result {
            case .success(let r): Issue.record("\(line) accepted as \(r)")
            case .failure(let e): #expect(e.code == .badValue, "\(line): \(e)")
            }
        }
        // Without a vocabulary (class count unknown) a huge class id is still refused.
        var bytes = Array(#"{"subscribe":{"classes":[9.2e18]}}"#.utf8)
        #expect(throws: ProtocolError.self) {
            try bytes.withUnsafeMutableBytes { try ProtocolRequest.parse(UnsafeRawBufferPointer($0), vocabulary: nil, maxTopK: 5) }
        }
        // The largest accepted values encode and filter without overflow.
        var ok = Array(#"{"subscribe":{"every_n":1000000,"top_k":1000000,"max_rate_hz":1000000,"min_score":1}}"#.utf8)
        let r = try ok.withUnsafeMutableBytes { try ProtocolRequest.parse(UnsafeRawBufferPointer($0), vocabulary: vocabulary, maxTopK: 5) }
        guard case .subscribe(let f) = r else { Issue.record("not a subscribe: \(r)"); return }
        #expect(f.maxRateIntervalNs == 1000)
        #expect(f.topK == 5)
        #expect(String(decoding: f.encodeAck(), as: UTF8.self).contains("\"every_n\":1000000"))
    }

    /// Subscriber limit: a leaky client that has been losing records longest is evicted (with an
    /// `evicted` error line, whole, after the whole records it had) to let a new client in.
    @Test func leakyClientIsEvictedAtTheLimitWithAReason() async throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("evict", configure: {
            $0.maxSubscribers = 2
            $0.subscriberBufferBytes = 8192
            $0.kernelSendBufferBytes = 4096
            $0.evictLosingAfterMs = 200
        })
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let feeder = RecordFeeder(sinks: [pub])
        let (good, _) = try TestClient.connect(path)
        let (leaky, _) = try TestClient.connect(path)
        let goodSeqs = Spawned { () -> [Int] in
            var out: [Int] = []
            while let o = try good.next(timeoutMs: 3000) {
                if o["type"] as? String == "classification", let s = o["seq"] as? Int { out.append(s) }
                if out.count == 400 { break }
            }
            return out
        }
        for _ in 0..<200 {
            feeder.publish(top: [(285, 0.9), (281, 0.05)])
            usleep(500)
        }
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberStats.contains { $0.dropped > 0 } }, "the leaky client never lost a record")
        usleep(300_000)  // losing for longer than evictLosingAfterMs
        let (newcomer, hello) = try TestClient.connect(path)
        #expect(hello["type"] as? String == "hello", "the new client was refused: \(hello)")
        #expect(ProtocolTestEnv.waitUntil { pub.evictedTotal == 1 })
        // The leaky client reads what it had, whole lines only, then the reason, then EOF.
        var sawEvicted = false
        while let o = try leaky.next(timeoutMs: 3000) {
            if o["type"] as? String == "error" {
                #expect(o["code"] as? String == "evicted")
                #expect((o["error"] as? String)?.contains("max_subscribers") == true)
                sawEvicted = true
            }
        }
        #expect(sawEvicted)
        #expect(leaky.connection.atEOF)
        for _ in 0..<200 { feeder.publish(top: [(285, 0.9)]) ; usleep(500) }
        #expect(try await goodSeqs.value == Array(0..<400), "the reading subscriber lost nothing")
        _ = newcomer
        // Nobody losing: at the limit a new client is refused as before.
        let (pub2, dir2) = try ProtocolTestEnv.publisher("evict2", configure: { $0.maxSubscribers = 1; $0.evictLosingAfterMs = 0 })
        defer { pub2.stop(); try? FileManager.default.removeItem(atPath: dir2) }
        let (only, _) = try TestClient.connect(dir2 + "/s.sock")
        let refused = try TestClient(path: dir2 + "/s.sock")
        #expect(try refused.next(timeoutMs: 3000)?["code"] as? String == "too_many_subscribers")
        #expect(pub2.evictedTotal == 0)
        _ = only
    }

    /// F18: A's socket file was removed and B bound the path; stopping A must not unlink B's socket.
    @Test func stoppingLeavesAnotherDaemonsSocketInPlace() throws {
        let dir = TestEnv.tempDir("f18")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let a = UnixSocketPublisher(options: SocketOptions(path: path), logger: ProtocolTestEnv.quiet)
        try a.start()
        unlink(path)
        let b = UnixSocketPublisher(options: SocketOptions(path: path), logger: ProtocolTestEnv.quiet)
        try b.start()
        a.stop()
        #expect(access(path, F_OK) == 0, "A removed B's socket file")
        let (client, _) = try TestClient.connect(path)  // B still reachable
        _ = client
        b.stop()
        #expect(access(path, F_OK) != 0, "B removes its own socket file")
    }

    /// F19: refused connections log one warning per interval with a count, not one each; connects
    /// and disconnects are not info lines.
    @Test func refusedConnectionsAreRateLimitedAndConnectsAreNotInfo() throws {
        let capture = HardeningLogCapture()
        let dir = TestEnv.tempDir("f19")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = SocketOptions(path: dir + "/s.sock")
        o.maxSubscribers = 1
        let pub = UnixSocketPublisher(options: o, logger: capture.logger)
        try pub.start()
        defer { pub.stop() }
        let (first, _) = try TestClient.connect(dir + "/s.sock")
        for _ in 0..<300 {
            let c = try TestClient(path: dir + "/s.sock")
            _ = try c.next(timeoutMs: 3000)
        }
        #expect(ProtocolTestEnv.waitUntil { pub.refusedTotal == 300 })
        #expect(capture.count(.warning, containing: "subscriber refused") == 1, "\(capture.count(containing: "subscriber refused")) refusal lines")
        for _ in 0..<50 { _ = try TestClient(path: dir + "/s.sock").next(timeoutMs: 3000) }  // refused too (limit 1)
        _ = first
        #expect(capture.all().filter { $0.0 >= .info && $0.1.contains("subscriber connected") }.isEmpty)
        #expect(capture.all().filter { $0.0 >= .info && $0.1.contains("subscriber disconnected") }.isEmpty)
    }

    /// The rate limiter itself: the first occurrence at once, then one per interval with the count.
    @Test func rateLimiterAdmitsOnePerIntervalWithTheSuppressedCount() {
        var l = LogRateLimiter(intervalNs: 1_000)
        #expect(l.admit(nowNs: 10) == 0)
        #expect(l.admit(nowNs: 11) == nil)
        #expect(l.admit(nowNs: 500) == nil)
        #expect(l.admit(nowNs: 1_010) == 2)
        #expect(l.admit(nowNs: 1_011) == nil)
        #expect(l.total == 5)
        var edge = LogRateLimiter(intervalNs: UInt64.max)
        #expect(edge.admit(nowNs: UInt64.max - 1) == 0)  // no overflow trap
        #expect(edge.admit(nowNs: UInt64.max - 1) == nil)
    }
}
