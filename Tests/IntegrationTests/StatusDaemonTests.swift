import CamclassTestSupport
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Capture
import Foundation
import Glibc
import Logging
import Pipeline
import Publishing
import Support
import Testing

/// Status: the latency window's arithmetic, the record's shape, and the real daemon with real
/// OpenVINO answering hello/status/last — in process, and as the binary under SIGTERM.
@Suite struct StatusTests {
    @Test func latencyWindowPercentilesAndRates() {
        let w = LatencyWindow(seconds: 10, capacity: 64)
        let start: UInt64 = 1_000_000_000_000
        // 100 samples over 9.9 s (10 per second), total = 1…100 ms; more than the capacity (64).
        for i in 0..<100 {
            var s = LatencyWindow.Sample()
            s.timeNs = start + UInt64(i) * 100_000_000
            s.totalNs = UInt64(i + 1) * 1_000_000
            s.inferenceNs = 5_000_000
            s.captured = 2 * (i + 1)  // twice as many captured as published: half dropped
            w.record(s)
        }
        let sum = w.summary(nowNs: start + 9_900_000_000, captured: 200)
        let total = sum.stages.first { $0.name == "total" }!.ms
        // The ring kept the last 64 samples (totals 37…100 ms): nearest-rank percentiles.
        #expect(total.p50 == 68 && total.p95 == 97 && total.p99 == 100, "\(total)")
        #expect(sum.stages.first { $0.name == "inference" }!.ms.p99 == 5)
        #expect(abs(sum.fpsIn - 20) < 0.5 && sum.fpsOut > 0, "\(sum.fpsIn) \(sum.fpsOut)")
        // Nothing in the last 10 s: zero rates, zero percentiles.
        let idle = w.summary(nowNs: start + 60_000_000_000, captured: 200)
        #expect(idle.fpsOut == 0 && idle.stages.allSatisfy { $0.ms.p99 == 0 })
    }

    @Test func statusRecordHasEveryField() throws {
        var r = StatusReport()
        r.realtimeNs = 1_795_425_600_000_000_000
        r.uptimeSeconds = 12.5
        r.sourceName = "/dev/video0"
        r.sourceState = .lost
        r.sourceDetail = "VIDIOC_DQBUF: No such device"
        r.latency = [.init(name: "total", ms: .init(p50: 7, p95: 8, p99: 9))]
        r.drops.corruptFrame = 3
        r.subscribers = [.init(id: 4, delivered: 10, dropped: 2, buffered: 100, filtered: 5)]
        r.log.failing = true
        r.log.lastError = "write: No space left on device"
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.encode())) as? [String: Any])
        #expect(o["type"] as? String == "status")
        for key in ["time", "version", "uptime_s", "model", "source", "fps", "latency_ms", "queue", "frames", "drops", "stable", "subscribers", "log"] {
            #expect(o[key] != nil, "missing \(key)")
        }
        let drops = try #require(o["drops"] as? [String: Int])
        #expect(Set(drops.keys) == ["queue_full", "corrupt_frame", "driver_gap", "inference_error", "pool_exhausted", "subscriber_overflow"])
        #expect(drops["corrupt_frame"] == 3)
        #expect((o["source"] as? [String: Any])?["state"] as? String == "lost")
        #expect((o["log"] as? [String: Any])?["failing"] as? Bool == true)
        #expect((o["subscribers"] as? [[String: Any]])?.first?["dropped"] as? Int == 2)
    }

    /// The real daemon (in process) on one photo of a cat: hello names the model and its
    /// SHA-256, status reports every stage, last answers at once, and the stable label settles on
    /// the coarse group "cat" with one change record.
    @Test func realDaemonAnswersHelloStatusLastWithStableLabel() async throws {
        _ = try TestEnv.openVINO()
        let dir = TestEnv.tempDir("status-daemon")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = DaemonConfig()
        config.source.path = try TestEnv.samples() + "/chelsea.jpg"
        config.model.path = try TestEnv.model()
        config.source.fps = 30
        config.frameLimit = 120
        config.publish.path = dir + "/s.sock"
        config.log.path = dir + "/c.log"
        config.stable.groups = TestEnv.repoRoot + "/config/coarse-groups.yaml"
        config.stable.minDwellMs = 300
        let daemon = try buildDaemon(config: config, logger: ProtocolTestEnv.quiet)
        let run = Task { try await daemon.run() }
        #expect(await eventually(60) { FileManager.default.fileExists(atPath: config.publish.path) })
        let (client, hello) = try TestClient.connect(config.publish.path)
        let records = Spawned { () -> [String] in
            var out: [String] = []
            while let line = try client.connection.readLine(timeoutMs: 10_000) { out.append(line) }
            return out
        }
        // hello: protocol, daemon, model id and the sidecar's sha256, source, labels.
        let sidecar = try String(contentsOfFile: config.model.path, encoding: .utf8)
        let sha = try #require(sidecar.split(separator: "\n").first { $0.hasPrefix("sha256:") }?.split(separator: " ").last.map(String.init))
        let model = try #require(hello["model"] as? [String: Any])
        #expect(hello["protocol"] as? Int == 1)
        #expect(model["id"] as? String == "efficientnet_lite0")
        #expect(model["sha256"] as? String == sha)
        #expect(model["file"] as? String == "efficientnet_lite0.onnx")
        #expect(hello["source"] as? String == SourceSpec.derivedName(path: config.source.path), "records and hello carry the source's name")
        #expect(hello["labels"] as? Int == 1000)
        #expect(hello["stable_groups"] as? Int == 15)

        // status and last from a second connection while the first streams.
        let (asker, _) = try TestClient.connect(config.publish.path)
        #expect(try asker.request(#"{"subscribe":{"classifications":false,"events":[]}}"#, expect: ["subscribed"]) != nil)
        #expect(await eventually(30) { daemon.pipeline.counters.published >= 40 })
        let status = try #require(try asker.request(#"{"status":{}}"#, expect: ["status"]))
        let source = try #require(status["source"] as? [String: Any])
        #expect(source["state"] as? String == "streaming")
        #expect(source["width"] as? Int == 450 && source["height"] as? Int == 300, "\(source)")  // chelsea.jpg is 451x300
        #expect(((status["fps"] as? [String: Any])?["out"] as? Double ?? 0) > 5)
        let latency = try #require(status["latency_ms"] as? [String: [String: Double]])
        #expect(Set(latency.keys) == ["preprocess", "inference", "wait", "publish", "total"])
        for (stage, p) in latency { #expect(p["p50"]! <= p["p95"]! && p["p95"]! <= p["p99"]!, "\(stage): \(p)") }
        #expect(latency["inference"]!["p50"]! > 0)
        #expect((status["subscribers"] as? [[String: Any]])?.count == 2)
        #expect((status["log"] as? [String: Any])?["path"] as? String == config.log.path)
        #expect(((status["log"] as? [String: Any])?["bytes_written"] as? Int ?? 0) > 0)
        #expect(status["stable"] as? String == "cat")
        let last = try #require(try asker.request(#"{"last":{}}"#, expect: ["classification"]))
        #expect(last["reply"] as? String == "last")
        #expect(last["stable"] as? String == "cat")

        try await run.value
        let got = try await records.value.compactMap { CamclassClient.object($0) }
        let classifications = got.filter { $0["type"] as? String == "classification" }
        let changes = got.filter { $0["type"] as? String == "change" }
        // Frames published before this client connected are not its to see: a contiguous tail.
        let seqs = classifications.compactMap { $0["seq"] as? Int }
        #expect(seqs.count >= 100 && seqs.last == 119 && seqs == Array((120 - seqs.count)..<120), "\(seqs.prefix(5))… (\(seqs.count))")
        // unknown until the dwell passed, then cat for good: exactly one change.
        #expect(changes.count == 1, "\(changes)")
        #expect(changes.first?["previous"] as? String == "unknown")
        #expect(changes.first?["stable"] as? String == "cat")
        #expect(classifications.last?["stable"] as? String == "cat")
        let firstCat = try #require(classifications.firstIndex { $0["stable"] as? String == "cat" })
        #expect(classifications[firstCat...].allSatisfy { $0["stable"] as? String == "cat" })
        #expect(classifications[..<firstCat].allSatisfy { $0["stable"] as? String == "unknown" })
    }

    /// The camclassd binary, SIGTERM mid-stream: everything it published (to a subscriber, as
    /// counted at shutdown) is in the log, and the clients (`camclass status/last`, the Python
    /// and C examples) work against it first.
    @Test func sigtermMidStreamLeavesEverythingPublishedInTheLog() async throws {
        let openVINO = try TestEnv.openVINO()
        let dir = TestEnv.tempDir("sigterm")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = """
            log:
              max_bytes: 16384
              keep: 1000
            stable:
              groups: \(TestEnv.repoRoot)/config/coarse-groups.yaml
            """
        try yaml.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let socketPath = dir + "/s.sock"
        let daemon = try DaemonProcess(arguments: [
            "--config", dir + "/c.yaml", "--source", try TestEnv.samples(), "--model", try TestEnv.model(),
            "--socket", socketPath, "--log", dir + "/log/c.log", "--fps", "60", "--log-level", "info",
        ], environment: ["CAMCLASSD_OPENVINO_LIB": openVINO], dir: dir)
        #expect(await eventually(90) { FileManager.default.fileExists(atPath: socketPath) }, "no socket: \(daemon.stderr)")
        let (client, _) = try TestClient.connect(socketPath)
        let received = Spawned { () -> [Int] in
            var seqs: [Int] = []
            while let o = try client.next(timeoutMs: 15_000) {
                if o["type"] as? String == "classification", let s = o["seq"] as? Int { seqs.append(s) }
            }
            return seqs
        }
        try await Task.sleep(for: .seconds(2))

        // The clients, against the live daemon.
        let camclass = try Self.camclassBinary()
        let status = try await Self.run(camclass, ["status", "--socket", socketPath, "--json"])
        let statusObj = try #require(CamclassClient.object(status.out.trimmingCharacters(in: .newlines)), "camclass status: \(status)")
        #expect(statusObj["type"] as? String == "status")
        let human = try await Self.run(camclass, ["status", "--socket", socketPath])
        #expect(human.code == 0 && human.out.contains("latency ms") && human.out.contains("subscribers"), "\(human)")
        let last = try await Self.run(camclass, ["last", "--socket", socketPath, "--json"])
        #expect(CamclassClient.object(last.out.trimmingCharacters(in: .newlines))?["reply"] as? String == "last", "\(last)")
        let sub = try await Self.run(camclass, ["subscribe", "--socket", socketPath, "--json", "--count", "3", "--top-k", "1", "--label", "cat", "--label", "drink"])
        let subLines = sub.out.split(separator: "\n").compactMap { CamclassClient.object(String($0)) }
        #expect(subLines.filter { $0["type"] as? String == "classification" }.count == 3, "\(sub)")
        #expect(subLines.filter { $0["type"] as? String == "classification" }.allSatisfy { ($0["top"] as? [Any])?.count == 1 })
        let py = try await Self.run("/usr/bin/python3", [TestEnv.repoRoot + "/examples/python/subscribe.py", "--socket", socketPath, "--json", "--count", "3"])
        #expect(py.code == 0 && py.out.split(separator: "\n").count >= 3, "\(py)")
        let pyStatus = try await Self.run("/usr/bin/python3", [TestEnv.repoRoot + "/examples/python/subscribe.py", "--socket", socketPath, "--status"])
        #expect(CamclassClient.object(pyStatus.out.trimmingCharacters(in: .newlines))?["type"] as? String == "status", "\(pyStatus)")
        let cc = try await Self.run("/usr/bin/cc", ["-O2", "-Wall", "-Werror", "-o", dir + "/subscribe", TestEnv.repoRoot + "/examples/c/subscribe.c"])
        #expect(cc.code == 0, "\(cc)")
        let c = try await Self.run(dir + "/subscribe", [socketPath, "2"])
        let cLines = c.out.split(separator: "\n").compactMap { CamclassClient.object(String($0)) }
        #expect(c.code == 0 && cLines.first?["type"] as? String == "hello", "\(c)")
        #expect(cLines.contains { $0["type"] as? String == "subscribed" })

        // SIGTERM mid-stream.
        daemon.signal(SIGTERM)
        let code = await daemon.waitExit(timeout: 30)
        #expect(code == 0, "camclassd exit \(String(describing: code)): \(daemon.stderr.suffix(2000))")
        let seqs = try await received.value
        let logged = try LogFiles.seqs(LogFiles.lines(dir + "/log/c.log"))
        let stderr = daemon.stderr
        let published = try #require(stderr.firstMatch(of: /pipeline\.published=(\d+)/).flatMap { Int($0.1) }, "no published count in: \(stderr.suffix(1500))")
        #expect(published > 50)
        #expect(logged.count == published, "the log holds \(logged.count) of \(published) published classifications")
        #expect(logged == logged.sorted() && Set(logged).count == logged.count, "log out of order or duplicated")
        #expect(Set(seqs).isSubset(of: Set(logged)), "the subscriber saw records the log lacks")
        #expect(seqs.last == logged.last, "the subscriber got the last record before the socket closed")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/log").count > 3, "expected rotations")
    }

    static func camclassBinary() throws -> String { try TestBinary.camclass() }

    struct Output: Sendable, CustomStringConvertible {
        var code: Int32
        var out: String
        var err: String
        var description: String { "exit \(code)\nstdout: \(out.prefix(2000))\nstderr: \(err.prefix(2000))" }
    }

    /// Runs a program to completion (off the cooperative pool), with a 60 s limit.
    static func run(_ path: String, _ args: [String]) async throws -> Output {
        let r = try await runCommand(path, args, timeoutSeconds: 60)
        return Output(code: r.status, out: r.stdout, err: r.stderr)
    }
}
