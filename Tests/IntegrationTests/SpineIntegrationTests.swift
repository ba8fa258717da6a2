import CamclassTestSupport
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Foundation
import Logging
import Publishing
import Testing

/// The spine end to end with real components: replay of real photos → real OpenVINO with the real
/// default model → real Unix socket (two subscribers, one stalled) → real rolling log.
@Suite(.serialized) struct SpineIntegrationTests {
    struct Received: @unchecked Sendable {  // JSON dictionaries, handed over once
        var records: [[String: Any]] = []
        var droppedNotices: [Int] = []
    }

    static func read(_ c: SubscriberConnection, into r: inout Received, until deadline: Date) throws {
        while Date() < deadline && !c.atEOF {
            guard let line = try c.readLine(timeoutMs: 200) else { continue }
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "bad line: \(line)")
            switch obj["type"] as? String {
            case "classification": r.records.append(obj)
            case "dropped": r.droppedNotices.append(obj["count"] as? Int ?? -1)
            default: break
            }
        }
    }

    static func readOnThread(_ c: SubscriberConnection) async throws -> Received {
        try await withCheckedThrowingContinuation { cont in
            Thread {
                var r = Received()
                do {
                    try read(c, into: &r, until: Date().addingTimeInterval(30))
                    cont.resume(returning: r)
                } catch { cont.resume(throwing: error) }
            }.start()
        }
    }

    @Test func replayToSocketAndLogWithRealOpenVINO() async throws {
        _ = try TestEnv.openVINO()
        let dir = TestEnv.tempDir("spine")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = DaemonConfig()
        config.source.path = try TestEnv.samples()
        config.model.path = try TestEnv.model()
        config.source.fps = 60
        config.frameLimit = 200
        config.publish.path = dir + "/camclassd.sock"
        config.log.path = dir + "/log/classifications.log"
        config.log.maxBytes = 8 * 1024          // forces several rotations
        config.log.keep = 100
        config.publish.subscriberBufferBytes = 4096    // the stalled subscriber overflows quickly
        let daemon = try buildDaemon(config: config, logger: Logger(label: "spine-test"))
        let run = Task { try await daemon.run() }

        // Subscribe as soon as the socket exists.
        var fast: SubscriberConnection?
        var stalled: SubscriberConnection?
        for _ in 0..<200 where fast == nil {
            if FileManager.default.fileExists(atPath: config.publish.path) {
                fast = try? SubscriberConnection(path: config.publish.path)
                stalled = try? SubscriberConnection(path: config.publish.path)
            }
            if fast == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        let fastConn = try #require(fast), stalledConn = try #require(stalled)

        // The fast subscriber reads continuously; the stalled one reads nothing for 1.5 s, then resumes.
        let started = Date()
        // Blocking readers run on their own threads: the cooperative pool (2 threads here) must stay
        // free for the daemon's services.
        async let fastResult = Self.readOnThread(fastConn)
        try await Task.sleep(for: .milliseconds(2000))
        let countersAfterStall = daemon.pipeline.counters
        let stalledStats = daemon.socket.subscriberStats
        async let stalledResult = Self.readOnThread(stalledConn)
        try await run.value
        let elapsed = Date().timeIntervalSince(started)
        let f = try await fastResult
        let s = try await stalledResult

        // The pipeline was never held back by the stalled subscriber: 60 fps for 2 s ≈ 120 frames
        // captured, and classification went on (this machine's CPU decides how many were published).
        #expect(countersAfterStall.captured >= 100, "captured only \(countersAfterStall.captured) during the stall")
        #expect(countersAfterStall.published >= 40, "published only \(countersAfterStall.published) during the stall")
        #expect(stalledStats.contains { $0.dropped > 0 }, "the stalled subscriber should be losing records: \(stalledStats)")
        #expect(elapsed < 10)
        #expect(daemon.pipeline.counters.published == 200)

        // Fast subscriber: every published record from the first it saw, in order, no gaps.
        let fastSeqs = f.records.compactMap { $0["seq"] as? Int }
        #expect(f.droppedNotices.isEmpty)
        #expect(!fastSeqs.isEmpty)

        // The log holds exactly the published records, across rotated files, in order.
        let logDir = dir + "/log"
        let files = try FileManager.default.contentsOfDirectory(atPath: logDir).filter { $0.hasPrefix("classifications.log") }
        #expect(files.count >= 3, "expected rotations, got \(files)")
        let ordered = files.sorted { a, b in
            let na = Int(a.split(separator: ".").last.flatMap { Int($0) } ?? 0)
            let nb = Int(b.split(separator: ".").last.flatMap { Int($0) } ?? 0)
            return na > nb  // .N (oldest) … .1, then the live file (0)
        }
        var logSeqs: [Int] = []
        var logRecords: [[String: Any]] = []
        for name in ordered {
            let text = try String(contentsOfFile: logDir + "/" + name, encoding: .utf8)
            for line in text.split(separator: "\n") {
                let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                guard obj["type"] as? String == "classification" else { continue }  // e.g. the shutdown record
                logSeqs.append(try #require(obj["seq"] as? Int))
                logRecords.append(obj)
            }
        }
        #expect(logSeqs.count == 200)
        #expect(logSeqs == logSeqs.sorted() && Set(logSeqs).count == logSeqs.count, "log out of order or duplicated")
        let firstFast = try #require(fastSeqs.first)
        #expect(fastSeqs == logSeqs.filter { $0 >= firstFast }, "the fast subscriber missed records")
        #expect(fastSeqs.count >= 180)

        // The stalled subscriber lost records, was told so, and then received the rest.
        #expect(!s.droppedNotices.isEmpty, "no dropped record for the stalled subscriber")
        #expect(s.records.count < f.records.count)
        let stalledSeqs = s.records.compactMap { $0["seq"] as? Int }
        #expect(stalledSeqs == stalledSeqs.sorted())
        #expect(s.droppedNotices.reduce(0, +) + s.records.count >= f.records.count - 2)

        // Labels are right on real photos.
        func tops(_ file: String) -> [[Int]] {
            logRecords.filter { $0["file"] as? String == file }.map { ($0["top"] as! [[String: Any]]).map { $0["class"] as! Int } }
        }
        let cat = tops("chelsea.jpg"), coffee = tops("coffee.jpg")
        #expect(!cat.isEmpty && !coffee.isEmpty)
        for t in cat { #expect(t.prefix(5).contains { (281...285).contains($0) }, "chelsea top-5 \(t) has no cat") }
        for t in coffee { #expect([967, 968].contains(t[0]), "coffee top-1 \(t[0]) is not espresso/cup") }
        for r in logRecords {
            let lat = r["latency_ms"] as! [String: Any]
            #expect((lat["total"] as! Double) >= (lat["inference"] as! Double))
            #expect((r["time"] as! String).hasSuffix("Z"))
        }
    }

    @Test func missingModelSaysWhatIsMissing() throws {
        var config = DaemonConfig()
        config.model.path = "/nonexistent/model.model.yaml"
        config.source.path = try TestEnv.samples()
        #expect {
            _ = try buildDaemon(config: config, logger: Logger(label: "t"))
        } throws: { e in
            let s = e as? DaemonError
            return s?.status == .noInput && "\(e)".contains("/nonexistent/model.model.yaml")
        }
    }

    @Test func missingOpenVINOSaysHowToInstall() throws {
        var config = DaemonConfig()
        config.model.path = try TestEnv.model()
        config.source.path = try TestEnv.samples()
        config.inference.openVINOLibrary = "/nonexistent/libopenvino_c.so"
        #expect {
            _ = try buildDaemon(config: config, logger: Logger(label: "t"))
        } throws: { e in
            let s = e as? DaemonError
            return s?.status == .unavailable && "\(e)".contains("pip install openvino")
        }
    }
}
