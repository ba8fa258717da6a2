import CamclassTestSupport
import WireFormat
import Client
import Foundation
import Glibc
import Publishing
import Support
import Testing

/// The bridge (`camclass mqtt`, its own process) against a real mosquitto on a loopback port, fed
/// by the real camclassd on replay (or, for camera records, a protocol v1 stand-in: only V4L2
/// cameras emit them). Observed with mosquitto_sub (MQTT 5, retain-as-published, QoS 2
/// subscriptions, so QoS and retain flags are the published ones).
@Suite(.serialized) struct MQTTBrokerTests {
    static func seqs(_ ms: [SubMessage]) -> [Int] { ms.compactMap { $0.json?["seq"] as? Int } }

    /// Topics, QoS, retain, the daemon-side filters and rate, `camclass fleet`, a daemon restart
    /// (the bridge resubscribes and records resume), and `offline` on a clean stop.
    @Test func realDaemonTopicsFiltersFleetAndDaemonRestart() async throws {
        let broker = try TestBroker("topics")
        let dir = TestEnv.tempDir("mqtt-topics")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/s.sock"
        var daemon = try MQTTTestEnv.daemon(dir: dir, socket: socket)
        let sub = try TestSubscriber(broker, topics: ["camclass/r1/#"])
        let bridge = try BridgeProcess(dir: dir, yaml: """
            topics:
              robot: r1
              status_interval_s: 1
            classification:
              labels: [cat]
              min_score: 0.05
              max_rate_hz: 2
            daemon:
              backoff_max_ms: 500
            """, args: ["--socket", socket, "--broker", "mqtt://127.0.0.1:\(broker.port)"])
        let flowing = await eventually(120) {
            sub.messages("/classification").count >= 8 && sub.messages("/change").count >= 3 && sub.messages("/status").count >= 2
        }
        #expect(flowing, "bridge: \(bridge.stderr.suffix(2000))\ndaemon: \(daemon.stderr.suffix(1000))\nsub: \(sub.messages.suffix(5))")

        let cls = sub.messages("/classification")
        #expect(cls.allSatisfy { $0.topic == "camclass/r1/alternating/classification" && $0.qos == 0 && !$0.retained }, "\(cls.prefix(3))")
        // Filters hold: only cat classes (281-285) scoring at least 0.05 …
        for m in cls {
            let top = m.json?["top"] as? [[String: Any]] ?? []
            #expect(!top.isEmpty && top.allSatisfy { (281...285).contains($0["class"] as? Int ?? -1) && ($0["score"] as? Double ?? 0) >= 0.05 }, "\(m)")
        }
        // … at most 2 per second of capture time on average over any stretch (the daemon's rate
        // limit lets a record follow early when the previous one came late, docs/protocol.md).
        let captures = cls.compactMap { $0.json?["capture_ns"] as? Int }
        #expect(captures.count == cls.count)
        for i in captures.indices { for j in captures.indices where j > i {
            let seconds = Double(captures[j] - captures[i]) / 1e9
            #expect(Double(j - i) <= 2 * 1.05 * seconds + 1, "\(j - i + 1) records within \(seconds) s at max_rate_hz 2")
        } }
        #expect(Double(captures.count - 1) / (Double(captures.last! - captures.first!) / 1e9) <= 2.1)
        let changes = sub.messages("/change")
        #expect(changes.allSatisfy { $0.topic == "camclass/r1/alternating/change" && $0.qos == 1 && !$0.retained && $0.json?["type"] as? String == "change" }, "\(changes.prefix(3))")
        let status = sub.messages("camclass/r1/status")
        #expect(status.allSatisfy { $0.qos == 1 && $0.retained && $0.json?["type"] as? String == "status" }, "\(status.prefix(2))")
        #expect((status.last?.json?["source"] as? [String: Any])?["state"] as? String == "streaming")
        let avail = sub.messages("/availability")
        #expect(avail.last.map { $0.payload == "online" && $0.qos == 1 && $0.retained } == true, "\(avail)")
        #expect(sub.messages.allSatisfy { !$0.topic.hasSuffix("/camera") }, "no camera records from a replay")

        // Retained, read after the fact by a new subscriber.
        let retained = try TestSubscriber.retained(broker, topics: ["camclass/r1/status", "camclass/r1/availability"], count: 2)
        #expect(retained.count == 2 && retained.allSatisfy(\.retained), "\(retained)")
        #expect(retained.first { $0.topic.hasSuffix("availability") }?.payload == "online")

        // The fleet view of the same broker.
        let fleet = try await StatusTests.run(try StatusTests.camclassBinary(), ["fleet", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--once", "--wait", "1"])
        let row = fleet.out.split(separator: "\n").first { $0.hasPrefix("r1 ") }
        #expect(fleet.code == 0 && row != nil && row!.contains("online") && row!.contains("streaming") && row!.contains("alternating"), "\(fleet)")

        // Daemon restart: availability says so, then records resume on the same topics.
        daemon.signal(SIGTERM)
        #expect(await daemon.waitExit(timeout: 30) == 0)
        #expect(await eventually(20) { sub.messages("/availability").last?.payload == "daemon_unreachable" }, "\(bridge.stderr.suffix(1500))")
        let down = try #require(sub.messages.lastIndex { $0.topic.hasSuffix("/availability") && $0.payload == "daemon_unreachable" })
        #expect(sub.messages("camclass/r1/status").last?.json?["daemon"] as? String == "unreachable")
        daemon = try MQTTTestEnv.daemon(dir: dir, socket: socket)
        let resumed = await eventually(120) {
            let after = sub.messages[(down + 1)...]
            return after.contains { $0.topic.hasSuffix("/availability") && $0.payload == "online" }
                && after.filter { $0.topic.hasSuffix("/classification") }.count >= 3
        }
        #expect(resumed, "bridge: \(bridge.stderr.suffix(2000))")
        #expect(bridge.stderr.components(separatedBy: "reading camclassd").count - 1 == 2, "two daemon connections: \(bridge.stderr.suffix(1500))")
        // The filter was sent again: the resumed records are filtered too.
        for m in sub.messages[(down + 1)...] where m.topic.hasSuffix("/classification") {
            #expect((m.json?["top"] as? [[String: Any]] ?? []).allSatisfy { (281...285).contains($0["class"] as? Int ?? -1) }, "\(m)")
        }

        // Clean stop: `offline`, retained.
        #expect(await bridge.stop() == 0, "\(bridge.stderr.suffix(1500))")
        #expect(await eventually(5) { sub.messages("/availability").last?.payload == "offline" })
        #expect(sub.messages("/availability").last?.retained == true)
        daemon.signal(SIGTERM)
        _ = await daemon.waitExit(timeout: 30)
        sub.stop()
    }

    /// Camera records come only from V4L2 cameras (Sources/CamclassDaemon/CameraEvents.swift): here
    /// a protocol v1 stand-in on a real Unix socket feeds the bridge camera, classification, change
    /// and status lines, and checks the filter the bridge asks the daemon for.
    @Test func cameraTopicBytesAndSubscribeFilterViaProtocolStandIn() async throws {
        let broker = try TestBroker("camera")
        let dir = TestEnv.tempDir("mqtt-camera")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = try FakeDaemonSocket(path: dir + "/fake.sock",
                                        hello: #"{"type":"hello","protocol":1,"daemon":"camclassd","version":"0.1.0","source":"/dev/video0","requests":["subscribe","status","last"]}"#)
        let sub = try TestSubscriber(broker, topics: ["camclass/r2/#"])
        let bridge = try BridgeProcess(dir: dir, yaml: """
            topics:
              robot: r2
              status_interval_s: 1
            classification:
              labels: [cat, espresso]
              min_score: 0.2
              top_k: 1
              every_n: 2
              max_rate_hz: 5
            daemon:
              backoff_initial_ms: 50
              backoff_max_ms: 200
            """, args: ["--socket", fake.path, "--broker", "mqtt://127.0.0.1:\(broker.port)"])
        #expect(await eventually(10) { fake.received.contains { $0.hasPrefix("{\"subscribe\"") } }, "\(bridge.stderr)")
        let request = try #require(fake.received.first { $0.hasPrefix("{\"subscribe\"") })
        let filter = try #require((try JSONSerialization.jsonObject(with: Data(request.utf8)) as? [String: [String: Any]])?["subscribe"])
        #expect(filter["labels"] as? [String] == ["cat", "espresso"] && filter["min_score"] as? Double == 0.2 && filter["top_k"] as? Int == 1)
        #expect(filter["every_n"] as? Int == 2 && filter["max_rate_hz"] as? Double == 5 && filter["events"] as? [String] == ["change", "camera"], "\(request)")
        #expect(await eventually(10) { sub.messages("/availability").last?.payload == "online" })

        let lost = #"{"type":"camera","state":"lost","time":"2026-11-23T09:20:05.000001Z","source":"/dev/video0","reason":"VIDIOC_DQBUF: No such device"}"#
        let streaming = #"{"type":"camera","state":"streaming","time":"2026-11-23T09:20:06.5Z","source":"/dev/video0","device":"/dev/video0","driver":"uvcvideo","card":"Cam","bus":"usb-1","format":"MJPEG","width":640,"height":480,"fps":30.000,"buffers":4,"downtime_ms":1500}"#
        let record = #"{"type":"classification","seq":7,"time":"2026-11-23T09:20:07.000000Z","capture_ns":123,"source":"/dev/video0","model":"m","top":[{"class":285,"label":"Egyptian cat","score":0.3921}],"stable":"cat","stable_score":0.8117,"latency_ms":{"preprocess":0.612,"inference":9.874,"total":11.203},"dropped":0}"#
        let change = #"{"type":"change","seq":8,"time":"2026-11-23T09:20:07.1Z","capture_ns":124,"stable":"dog","score":0.6342,"previous":"cat","previous_ms":5230.4}"#
        for line in [lost, streaming, record, change] { fake.write(line) }
        #expect(await eventually(10) { sub.messages("/camera").count == 2 && sub.messages("/classification").count == 1 && sub.messages("/change").count == 1 },
                "\(sub.messages)\n\(bridge.stderr)")
        let camera = sub.messages("/camera")
        #expect(camera.map(\.payload) == [lost, streaming], "bytes and order unchanged")
        #expect(camera.allSatisfy { $0.topic == "camclass/r2/video0/camera" && $0.qos == 1 && $0.retained })
        #expect(sub.messages("/classification").first.map { $0.payload == record && $0.topic == "camclass/r2/video0/classification" && $0.qos == 0 } == true)
        #expect(sub.messages("/change").first.map { $0.payload == change && $0.topic == "camclass/r2/video0/change" && $0.qos == 1 } == true)
        #expect(await eventually(5) { sub.messages("camclass/r2/status").contains { $0.json?["stable"] as? String == "cat" && $0.retained } })
        let kept = try TestSubscriber.retained(broker, topics: ["camclass/r2/video0/camera"], count: 1)
        #expect(kept.first.map { $0.payload == streaming && $0.retained } == true, "the latest camera state is retained: \(kept)")

        // The daemon's socket goes away: shown as availability and as a retained status.
        fake.close()
        #expect(await eventually(10) { sub.messages("/availability").last?.payload == "daemon_unreachable" })
        let down = sub.messages("camclass/r2/status").last
        #expect(down?.json?["daemon"] as? String == "unreachable" && down?.retained == true, "\(String(describing: down))")
        #expect(bridge.isRunning)
        #expect(await bridge.stop() == 0)
        sub.stop()
    }

    /// The broker is stopped for 10 s and restarted: both bridges reconnect; the one with room
    /// delivers every change of the outage in order, none twice; the one with a 2-message buffer
    /// keeps the newest 2 and counts the rest. The subscriber has a persistent session (and the
    /// broker persistence), so that it misses nothing of what reaches the broker while it reconnects.
    @Test func brokerOutageBuffersChangesInOrderAndCountsDrops() async throws {
        let broker = try TestBroker("outage", persistence: true)
        let dir = TestEnv.tempDir("mqtt-outage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/s.sock"
        let daemon = try MQTTTestEnv.daemon(dir: dir, socket: socket)
        #expect(await eventually(120) { FileManager.default.fileExists(atPath: socket) }, "no socket: \(daemon.stderr.suffix(1500))")
        // The truth: every change the daemon publishes, straight from its socket.
        let (truth, _) = try TestClient.connect(socket)
        try truth.send(#"{"subscribe":{"classifications":false,"events":["change"]}}"#)
        let truthLines = Spawned { () -> [(Int, Date)] in
            var out: [(Int, Date)] = []
            while let o = try truth.next(timeoutMs: 30_000) {
                if o["type"] as? String == "change", let s = o["seq"] as? Int { out.append((s, Date())) }
            }
            return out
        }
        let sub = try TestSubscriber(broker, topics: ["camclass/+/+/change"], extra: ["-c", "-i", "outage-observer"], qos: 1)
        func yaml(_ robot: String, _ buffer: Int) -> String {
            """
            broker:
              buffer_messages: \(buffer)
              backoff_initial_ms: 100
              backoff_max_ms: 1000
            topics:
              robot: \(robot)
            classification:
              enabled: false
            """
        }
        let args = ["--socket", socket, "--broker", "mqtt://127.0.0.1:\(broker.port)"]
        let big = try BridgeProcess(dir: dir, yaml: yaml("big", 1000), args: args)
        let small = try BridgeProcess(dir: dir, yaml: yaml("small", 2), args: args)
        #expect(await eventually(60) { sub.messages("/change").filter { $0.topic.hasPrefix("camclass/big/") }.count >= 2
                                         && sub.messages("/change").filter { $0.topic.hasPrefix("camclass/small/") }.count >= 2 },
                "\(big.stderr.suffix(1000))\n\(sub.messages.suffix(3))")

        broker.stop(SIGTERM)  // persistence is written at SIGTERM (the observer's session survives)
        let stoppedAt = Date()
        try await Task.sleep(for: .seconds(10))
        let restartAt = Date()
        try broker.start()
        func reconnected(_ b: BridgeProcess) -> Bool { b.stderr.components(separatedBy: "connected to the broker").count - 1 >= 2 }
        #expect(await eventually(20) { reconnected(big) && reconnected(small) }, "\(big.stderr.suffix(1500))\n\(small.stderr.suffix(1500))")
        try await Task.sleep(for: .seconds(3))
        #expect(await big.stop() == 0)
        #expect(await small.stop() == 0)
        try await Task.sleep(for: .milliseconds(500))
        sub.stop()
        daemon.signal(SIGTERM)
        _ = await daemon.waitExit(timeout: 30)
        let truthAll = try await truthLines.value
        let t = truthAll.map(\.0)
        let duringOutage = truthAll.filter { $0.1 > stoppedAt.addingTimeInterval(0.2) && $0.1 < restartAt }.map(\.0)
        #expect(duringOutage.count >= 5, "changes during the outage: \(duringOutage)")

        let rb = Self.seqs(sub.messages("/change").filter { $0.topic.hasPrefix("camclass/big/") })
        #expect(Set(rb).count == rb.count, "duplicates: \(rb)")
        #expect(rb == rb.sorted(), "out of order: \(rb)")
        let span = t.filter { $0 >= rb.first ?? 0 && $0 <= rb.last ?? 0 }
        #expect(rb == span, "lost within the bound: truth \(span), got \(rb)")
        #expect(Set(duringOutage).isSubset(of: Set(rb)), "outage changes \(duringOutage) missing from \(rb)")

        let rs = Self.seqs(sub.messages("/change").filter { $0.topic.hasPrefix("camclass/small/") })
        #expect(Set(rs).count == rs.count && rs == rs.sorted(), "\(rs)")
        let spanS = t.filter { $0 >= rs.first ?? 0 && $0 <= rs.last ?? 0 }
        #expect(Set(rs).isSubset(of: Set(spanS)))
        let missing = spanS.filter { !rs.contains($0) }
        let counted = small.stderr.matches(of: /connected to the broker.*mqtt\.buffer_dropped=(\d+)/).compactMap { Int($0.1) }.reduce(0, +)
        #expect(counted > 0 && missing.count == counted, "missing \(missing), counted \(counted): \(small.stderr.suffix(1500))")
        // The dropped ones are the oldest of the outage: one contiguous run, and the newest 2 kept.
        if let first = missing.first, let i = spanS.firstIndex(of: first) {
            #expect(Array(spanS[i..<min(spanS.count, i + missing.count)]) == missing, "not one contiguous run: \(missing) in \(spanS)")
        }
        // At least every outage change but the 2 newest was dropped (more arrive until the reconnect).
        #expect(counted >= duringOutage.count - 2, "counted \(counted), outage changes \(duringOutage.count)")
    }

    /// SIGKILL: no clean DISCONNECT, so the broker publishes the retained Last Will `offline`.
    @Test func sigkilledBridgeLeavesRetainedOfflineWill() async throws {
        let broker = try TestBroker("will")
        let dir = TestEnv.tempDir("mqtt-will")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sub = try TestSubscriber(broker, topics: ["camclass/r4/availability"])
        let bridge = try BridgeProcess(dir: dir, yaml: "topics:\n  robot: r4\n",
                                       args: ["--socket", dir + "/absent.sock", "--broker", "mqtt://127.0.0.1:\(broker.port)"])
        #expect(await eventually(10) { sub.messages.last?.payload == "daemon_unreachable" }, "\(bridge.stderr)")
        #expect(await bridge.stop(SIGKILL) == nil || !bridge.isRunning)
        #expect(await eventually(10) { sub.messages.last?.payload == "offline" }, "\(sub.messages)")
        #expect(sub.messages.last.map { $0.qos == 1 && $0.retained } == true)
        let kept = try TestSubscriber.retained(broker, topics: ["camclass/r4/availability"], count: 1)
        #expect(kept.first?.payload == "offline" && kept.first?.retained == true, "\(kept)")
        sub.stop()
    }

    /// TLS (a CA and server certificate made by openssl here) with a password read from a file:
    /// works. The same password over plain TCP: refused before connecting, with a clear error.
    @Test func tlsWithPasswordWorksAndPlainTCPPasswordIsRefused() async throws {
        let users = ["robot": "pa55 word"]
        let broker = try TestBroker("tls", tls: true, users: users)
        let dir = TestEnv.tempDir("mqtt-tls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "pa55 word\n".write(toFile: dir + "/password", atomically: true, encoding: .utf8)
        let sub = try TestSubscriber(broker, topics: ["camclass/r5/#"], extra: ["-u", "robot", "-P", "pa55 word"])
        let yaml = """
            auth:
              username: robot
              password_file: \(dir)/password
            tls:
              ca_file: \(broker.caFile)
            topics:
              robot: r5
            """
        let bridge = try BridgeProcess(dir: dir, yaml: yaml, args: ["--socket", dir + "/absent.sock", "--broker", "mqtts://127.0.0.1:\(broker.port)"])
        #expect(await eventually(15) { sub.messages("/availability").last?.payload == "daemon_unreachable" },
                "bridge: \(bridge.stderr.suffix(1500))\nsub: \(sub.stderr)\nbroker: \(broker.log.suffix(1500))")
        #expect(bridge.stderr.contains("connected to the broker"))
        #expect(await bridge.stop() == 0)
        #expect(await eventually(5) { sub.messages("/availability").last?.payload == "offline" })
        sub.stop()

        // The same credentials towards a plain-TCP broker: exit 78 and why, and no connection made.
        let plain = try TestBroker("plain-pw", users: users)
        let refused = try BridgeProcess(dir: dir, yaml: yaml, args: ["--socket", dir + "/absent.sock", "--broker", "mqtt://127.0.0.1:\(plain.port)"])
        #expect(await refused.stop(0, timeout: 10) == 78, "\(refused.stderr)")
        #expect(refused.stderr.contains("refusing to send the password in clear text over plain TCP") && refused.stderr.contains("mqtts://"), "\(refused.stderr)")
        let check = try await StatusTests.run(try StatusTests.camclassBinary(), [
            "mqtt", "--config", dir + "/" + (try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasSuffix(".yaml") }!),
            "--broker", "mqtt://127.0.0.1:\(plain.port)", "--check-config"])
        #expect(check.code == 78 && check.err.contains("clear text"), "\(check)")
    }

    /// A broker that refuses the credentials: a clear error, retries with growing delays, no crash.
    @Test func refusedCredentialsAreReportedAndRetriedWithBackoff() async throws {
        let broker = try TestBroker("refuse", users: ["robot": "right"])
        let dir = TestEnv.tempDir("mqtt-refuse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "wrong\n".write(toFile: dir + "/password", atomically: true, encoding: .utf8)
        let bridge = try BridgeProcess(dir: dir, yaml: """
            broker:
              backoff_initial_ms: 100
              backoff_max_ms: 800
            auth:
              username: robot
              password_file: \(dir)/password
              allow_insecure: true
            """, args: ["--socket", dir + "/absent.sock", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--robot", "r6"])
        #expect(await eventually(15) { bridge.stderr.contains("attempts=4") }, "\(bridge.stderr)")
        let refusals = bridge.stderr.split(separator: "\n").filter { $0.contains("the broker refused the connection") }
        #expect(refusals.count >= 3, "\(refusals)")
        #expect(refusals.allSatisfy { $0.contains("not authorised") && $0.contains("check auth.username and the password file") }, "\(refusals)")
        // Attempts 1, 2 and 4 are logged (powers of two): the gaps grow with the backoff.
        let times = refusals.prefix(3).compactMap { line -> Double? in
            guard let m = line.firstMatch(of: /T(\d\d):(\d\d):(\d\d\.\d+)Z/), let h = Double(m.1), let mi = Double(m.2), let s = Double(m.3) else { return nil }
            return h * 3600 + mi * 60 + s
        }
        #expect(times.count == 3 && times[2] - times[1] > times[1] - times[0], "\(times)")
        #expect(bridge.isRunning, "no crash")
        #expect(await bridge.stop() == 0, "\(bridge.stderr)")
    }

    /// systemd/camclass-mqtt.service: verifies, exposure ≤ 2.5, own user in group camclassd, network.
    @Test func bridgeUnitVerifiesAndScoresAtMost2_5() async throws {
        let (status, out) = try await PackagingTests.run(["bash", "Tests/systemd/check-unit.sh", "--mqtt", try StatusTests.camclassBinary()])
        #expect(status == 0 && out.split(separator: "\n").last == "4 passed, 0 failed", "\(out)")
        print(out)
    }
}
