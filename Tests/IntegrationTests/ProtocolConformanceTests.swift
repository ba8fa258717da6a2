import CamclassTestSupport
import CamclassDaemon
import CamclassTools
import Client
import WireFormat
import Foundation
import Glibc
import Publishing
import Support
import Testing

/// Protocol v1 over a real Unix socket: hello, every request type, filters, errors, limits.
@Suite struct ProtocolConformanceTests {
    static let labels: [String] = {
        var l = (0..<1000).map { "class \($0)" }
        l[281] = "tabby"; l[285] = "Egyptian cat"; l[967] = "espresso"; l[968] = "cup"
        return l
    }()
    static let groups: [(name: String, classes: [Int])] = [("cat", [281, 282, 283, 284, 285])]

    static func context(status: (@Sendable () -> [UInt8])? = nil) -> ProtocolContext {
        var h = ProtocolHello()
        h.modelID = "efficientnet_lite0"
        h.modelSHA256 = "fcf924a17270521522364e780af2e344a2b43c6dfabf6000472cf35a4e013225"
        h.modelFile = "efficientnet_lite0.onnx"
        h.engine = "openvino CPU"
        h.source = "samples"
        h.labels = 1000
        h.topK = 5
        h.stable = true
        h.stableGroups = 1
        return ProtocolContext(hello: h, vocabulary: RecordVocabulary(labels: labels, groups: groups), maxTopK: 5, status: status)
    }

    static let sample: [(Int, Float)] = [(285, 0.40), (281, 0.30), (967, 0.12), (968, 0.08), (5, 0.01)]

    @Test func helloSaysProtocolDaemonModelSourceAndLabels() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("hello", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (_, hello) = try TestClient.connect(dir + "/s.sock")
        #expect(hello["protocol"] as? Int == 1)
        #expect(hello["daemon"] as? String == "camclassd")
        #expect(hello["version"] as? String == CamclassProtocol.daemonVersion)
        let model = try #require(hello["model"] as? [String: Any])
        #expect(model["id"] as? String == "efficientnet_lite0")
        #expect(model["sha256"] as? String == "fcf924a17270521522364e780af2e344a2b43c6dfabf6000472cf35a4e013225")
        #expect(model["file"] as? String == "efficientnet_lite0.onnx")
        #expect(hello["source"] as? String == "samples")
        #expect(hello["labels"] as? Int == 1000)
        #expect(hello["top_k"] as? Int == 5)
        #expect(hello["requests"] as? [String] == ["subscribe", "status", "last"])
    }

    @Test func defaultSubscriptionGetsEverythingUnchanged() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("default", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        let feeder = RecordFeeder(sinks: [pub], labels: Self.labels)
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberCount == 1 })
        for _ in 0..<10 { feeder.publish(top: Self.sample) }
        feeder.publishRaw("{\"type\":\"change\",\"seq\":9,\"stable\":\"cat\",\"previous\":\"unknown\",\"previous_ms\":10.0}")
        feeder.publishRaw("{\"type\":\"camera\",\"state\":\"lost\",\"source\":\"/dev/video0\"}")
        let got = try c.drain()
        #expect(ProtocolTestEnv.seqs(got) == Array(0..<10))
        #expect(got.filter { $0["type"] as? String == "classification" }.allSatisfy { ($0["top"] as? [Any])?.count == 5 })
        #expect(got.map { $0["type"] as? String ?? "" }.suffix(2) == ["change", "camera"])
    }

    @Test func subscribeAckShowsTheFilterAsUnderstood() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("ack", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        let ack = try #require(try c.request(
            #"{"subscribe":{"min_score":0.3,"classes":[281,285],"labels":["espresso","CAT"],"top_k":3,"every_n":5,"max_rate_hz":2,"events":["change","camera"]}}"#,
            expect: ["subscribed", "error"]))
        #expect(ack["type"] as? String == "subscribed", "\(ack)")
        let f = try #require(ack["filter"] as? [String: Any])
        #expect(f["min_score"] as? Double == 0.3)
        #expect(f["classes"] as? [Int] == [281, 282, 283, 284, 285, 967])  // labels resolved, group expanded
        #expect(f["top_k"] as? Int == 3)
        #expect(f["every_n"] as? Int == 5)
        #expect(f["max_rate_hz"] as? Double == 2)
        #expect(f["events"] as? [String] == ["change", "camera"])
        #expect(f["classifications"] as? Bool == true)
    }

    @Test func minScoreClassesAndTopKCutEntriesAndSkipRecords() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("filters", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let (byScore, _) = try TestClient.connect(path)
        let (byClass, _) = try TestClient.connect(path)
        let (byLabel, _) = try TestClient.connect(path)
        let (topOne, _) = try TestClient.connect(path)
        #expect(try byScore.request(#"{"subscribe":{"min_score":0.25}}"#, expect: ["subscribed"]) != nil)
        #expect(try byClass.request(#"{"subscribe":{"classes":[967,968],"min_score":0.1}}"#, expect: ["subscribed"]) != nil)
        #expect(try byLabel.request(#"{"subscribe":{"labels":["cat"],"top_k":1}}"#, expect: ["subscribed"]) != nil)
        #expect(try topOne.request(#"{"subscribe":{"top_k":1}}"#, expect: ["subscribed"]) != nil)

        let feeder = RecordFeeder(sinks: [pub], labels: Self.labels)
        feeder.publish(top: Self.sample)                                       // seq 0: cat 0.40, tabby 0.30, espresso 0.12
        feeder.publish(top: [(967, 0.2), (968, 0.05), (1, 0.01)])              // seq 1: espresso only (0.2)
        feeder.publish(top: [(3, 0.9), (4, 0.05)])                             // seq 2: neither

        func tops(_ recs: [[String: Any]]) -> [[Int]] {
            recs.filter { $0["type"] as? String == "classification" }.map { (($0["top"] as? [[String: Any]]) ?? []).map { $0["class"] as! Int } }
        }
        let s = try byScore.drain()
        #expect(ProtocolTestEnv.seqs(s) == [0, 2])
        #expect(tops(s) == [[285, 281], [3]])
        let k = try byClass.drain()
        #expect(ProtocolTestEnv.seqs(k) == [0, 1])
        #expect(tops(k) == [[967], [967]])
        let l = try byLabel.drain()
        #expect(ProtocolTestEnv.seqs(l) == [0])
        #expect(tops(l) == [[285]])
        let t = try topOne.drain()
        #expect(tops(t) == [[285], [967], [3]])
        // A cut record is still a complete, valid record with every other field.
        let first = try #require(s.first { $0["type"] as? String == "classification" })
        #expect(first["model"] as? String == "test-model")
        #expect((first["latency_ms"] as? [String: Any])?["total"] as? Double == 6)
        let entry = try #require((first["top"] as? [[String: Any]])?.first)
        #expect(entry["label"] as? String == "Egyptian cat")
        #expect(entry["score"] as? Double == 0.4)
    }

    @Test func everyNAndMaxRateThinTheStream() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("rate", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (everyFifth, _) = try TestClient.connect(dir + "/s.sock")
        let (twoHz, _) = try TestClient.connect(dir + "/s.sock")
        #expect(try everyFifth.request(#"{"subscribe":{"every_n":5}}"#, expect: ["subscribed"]) != nil)
        #expect(try twoHz.request(#"{"subscribe":{"max_rate_hz":2}}"#, expect: ["subscribed"]) != nil)
        let feeder = RecordFeeder(sinks: [pub], labels: Self.labels)
        // 90 frames at 30 fps of capture time = 3 s.
        for i in 0..<90 { feeder.publish(top: Self.sample, captureNs: 5_000_000_000 + UInt64(i) * 33_333_333) }
        #expect(ProtocolTestEnv.seqs(try everyFifth.drain()) == Array(stride(from: 0, to: 90, by: 5)))
        // 2 per second of capture time: frames 0, 15, 30, 45, 60, 75 (one every 500 ms, no drift).
        #expect(ProtocolTestEnv.seqs(try twoHz.drain()) == [0, 15, 30, 45, 60, 75])
    }

    @Test func eventsOnlyAndNoEvents() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("events", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (changesOnly, _) = try TestClient.connect(dir + "/s.sock")
        let (quiet, _) = try TestClient.connect(dir + "/s.sock")
        #expect(try changesOnly.request(#"{"subscribe":{"classifications":false,"events":["change"]}}"#, expect: ["subscribed"]) != nil)
        #expect(try quiet.request(#"{"subscribe":{"events":[]}}"#, expect: ["subscribed"]) != nil)
        let feeder = RecordFeeder(sinks: [pub], labels: Self.labels)
        feeder.publish(top: Self.sample)
        feeder.publishRaw("{\"type\":\"change\",\"seq\":0,\"stable\":\"cat\",\"previous\":\"unknown\",\"previous_ms\":1.0}")
        feeder.publishRaw("{\"type\":\"camera\",\"state\":\"lost\",\"source\":\"/dev/video0\"}")
        feeder.publish(top: Self.sample)
        #expect(try changesOnly.drain().map { $0["type"] as? String } == ["change"])
        #expect(try quiet.drain().map { $0["type"] as? String } == ["classification", "classification"])
    }

    @Test func statusRequestAnswersFromTheProvider() throws {
        let ctx = Self.context(status: {
            var r = StatusReport()
            r.sourceName = "samples"
            r.sourceState = .streaming
            r.fpsIn = 30
            r.fpsOut = 29.5
            r.latency = [.init(name: "total", ms: .init(p50: 7, p95: 9, p99: 12))]
            r.log.path = "/tmp/x.log"
            return r.encode()
        })
        let (pub, dir) = try ProtocolTestEnv.publisher("status", context: ctx)
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        let s = try #require(try c.request(#"{"status":{}}"#, expect: ["status"]))
        #expect((s["source"] as? [String: Any])?["state"] as? String == "streaming")
        #expect((s["fps"] as? [String: Any])?["out"] as? Double == 29.5)
        #expect(((s["latency_ms"] as? [String: Any])?["total"] as? [String: Any])?["p99"] as? Double == 12)
        #expect((s["log"] as? [String: Any])?["path"] as? String == "/tmp/x.log")
        // `null` body is accepted too.
        #expect(try c.request(#"{"status":null}"#, expect: ["status"]) != nil)
    }

    @Test func lastAnswersAtOnceWithTheLatestRecord() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("last", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        #expect(try c.request(#"{"subscribe":{"classifications":false,"events":[]}}"#, expect: ["subscribed"]) != nil)
        let none = try #require(try c.request(#"{"last":{}}"#, expect: ["error", "classification"]))
        #expect(none["type"] as? String == "error")
        #expect(none["code"] as? String == "no_result_yet")
        let feeder = RecordFeeder(sinks: [pub], labels: Self.labels)
        for _ in 0..<7 { feeder.publish(top: Self.sample) }
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberStats.first?.filtered == 7 })
        let last = try #require(try c.request(#"{"last":{}}"#, expect: ["classification", "error"]))
        #expect(last["type"] as? String == "classification")
        #expect(last["reply"] as? String == "last")
        #expect(last["seq"] as? Int == 6)
        #expect((last["top"] as? [Any])?.count == 5)
    }

    @Test func badRequestsGetErrorsAndTheConnectionStaysUsable() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("errors", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        let cases: [(String, String)] = [
            (#"{"subscribe":{"min_score":0.3"#, "malformed_json"),
            ("not json at all", "malformed_json"),
            (#"{"subscribe":{},"status":{}}"#, "bad_request"),
            (#"[1,2,3]"#, "bad_request"),
            (#"{"subscribe":[]}"#, "bad_request"),
            (#"{"unsubscribe":{}}"#, "unknown_request"),
            (#"{"subscribe":{"min_scor":0.3}}"#, "unknown_key"),
            (#"{"status":{"verbose":true}}"#, "unknown_key"),
            (#"{"subscribe":{"min_score":1.5}}"#, "bad_value"),
            (#"{"subscribe":{"classes":[1000]}}"#, "bad_value"),
            (#"{"subscribe":{"classes":[1.5]}}"#, "bad_value"),
            (#"{"subscribe":{"labels":["espreso"]}}"#, "bad_value"),
            (#"{"subscribe":{"top_k":0}}"#, "bad_value"),
            (#"{"subscribe":{"every_n":-1}}"#, "bad_value"),
            (#"{"subscribe":{"max_rate_hz":0}}"#, "bad_value"),
            (#"{"subscribe":{"events":["classification"]}}"#, "bad_value"),
            (#"{"subscribe":{"classifications":"yes"}}"#, "bad_value"),
            ("{\"subscribe\":{\"labels\":[\"\u{FFFD}\\ud800\"]}}", "malformed_json"),
        ]
        for (line, code) in cases {
            let e = try #require(try c.request(line, expect: ["error"]), "no error for \(line)")
            #expect(e["code"] as? String == code, "\(line) → \(e)")
            #expect((e["error"] as? String ?? "").count > 10, "the message should say what is wrong: \(e)")
            #expect(e["disconnect"] == nil)
        }
        // A rejected subscribe leaves the previous filter in place, and the connection works.
        #expect(try c.request(#"{"subscribe":{"top_k":2}}"#, expect: ["subscribed"]) != nil)
        _ = try c.request(#"{"subscribe":{"top_k":"two"}}"#, expect: ["error"])
        let feeder = RecordFeeder(sinks: [pub], labels: Self.labels)
        feeder.publish(top: Self.sample)
        let r = try #require(try c.next(type: "classification"))
        #expect((r["top"] as? [Any])?.count == 2)
        #expect(ProtocolTestEnv.waitUntil { pub.protocolErrors == cases.count + 1 }, "\(pub.protocolErrors)")
    }

    @Test func oversizedLineIsAnErrorAndADisconnect() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("oversize", configure: { $0.maxRequestBytes = 512 }, context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        let (other, _) = try TestClient.connect(dir + "/s.sock")
        // Exactly at the limit is fine (an error for the content, not the size).
        let head = "{\"status\":{\"x\":\"", tail = "\"}}"
        let atLimit = head + String(repeating: "a", count: 512 - head.utf8.count - tail.utf8.count) + tail
        #expect(atLimit.utf8.count == 512)
        let e1 = try #require(try c.request(atLimit, expect: ["error"]))
        #expect(e1["code"] as? String == "unknown_key")
        try c.send(String(repeating: "x", count: 600))
        let e2 = try #require(try c.next(type: "error"))
        #expect(e2["code"] as? String == "request_too_long")
        #expect(e2["disconnect"] as? Bool == true)
        #expect(try c.next(timeoutMs: 2000) == nil && c.connection.atEOF)
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberCount == 1 })
        // The other client is unaffected.
        #expect(try other.request(#"{"status":{}}"#, expect: ["error"])?["code"] as? String == "unavailable")
    }

    @Test func floodIsAnErrorAndADisconnect() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("flood", configure: { $0.maxRequestsPerSecond = 10 }, context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        // Ten at once are within the burst; the eleventh within the same second is a flood.
        try c.send(String(repeating: "{\"subscribe\":{}}\n", count: 30))
        var acks = 0
        var flood: [String: Any]?
        while let o = try c.next(timeoutMs: 2000) {
            if o["type"] as? String == "subscribed" { acks += 1 }
            if o["code"] as? String == "flood" { flood = o }
        }
        #expect(acks == 10)
        #expect(flood?["disconnect"] as? Bool == true)
        #expect(c.connection.atEOF)
        #expect(ProtocolTestEnv.waitUntil { pub.floodDisconnects == 1 })
        // A polite client (requests spread out) is never cut off.
        let (polite, _) = try TestClient.connect(dir + "/s.sock")
        for _ in 0..<15 {
            #expect(try polite.request(#"{"subscribe":{}}"#, expect: ["subscribed"]) != nil)
            usleep(110_000)
        }
    }

    @Test func tooManySubscribersIsAnErrorLine() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("full", configure: { $0.maxSubscribers = 2 }, context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let a = try TestClient.connect(dir + "/s.sock"), b = try TestClient.connect(dir + "/s.sock")
        _ = (a, b)
        let c = try TestClient(path: dir + "/s.sock")
        let e = try #require(try c.next(timeoutMs: 3000))
        #expect(e["type"] as? String == "error")
        #expect(e["code"] as? String == "too_many_subscribers")
    }

    /// 10 000 random byte strings (some with newlines, some huge, some valid-looking) from a
    /// reconnecting fuzz client, while two good clients receive every record in order.
    @Test func fuzzClientDoesNotDisturbGoodClients() async throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("fuzz", configure: {
            $0.maxRequestBytes = 1024
            $0.maxRequestsPerSecond = 1000
        }, context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let (good1, _) = try TestClient.connect(path)
        let (good2, _) = try TestClient.connect(path)
        #expect(try good2.request(#"{"subscribe":{"top_k":2}}"#, expect: ["subscribed"]) != nil)
        let readers = (good1, good2)
        let r1 = Spawned { try Self.readSeqs(readers.0) }
        let r2 = Spawned { try Self.readSeqs(readers.1) }
        let fuzzDone = AtomicFlag()
        let feeder = RecordFeeder(sinks: [pub], labels: Self.labels)
        // Records flow the whole time the fuzzer runs (at least 1000 of them), then an end marker.
        let fed = Spawned { () -> Int in
            var n = 0
            while !fuzzDone.isSet || n < 1000 {
                feeder.publish(top: Self.sample)
                n += 1
                usleep(300)
            }
            feeder.publishRaw("{\"type\":\"end\"}")
            return n
        }
        let fuzzStats = try await Spawned { () -> (sent: Int, reconnects: Int) in
            defer { fuzzDone.set() }
            var rng = SystemRandomNumberGenerator()
            var sent = 0, reconnects = 0
            var fd = Self.rawConnect(path)
            let fragments = ["{", "}", "[", "\"", "subscribe", "status", "last", ":", ",", "min_score", "0.5", "null",
                             "\\u00", "\n", "{\"status\":{}}\n", "{\"subscribe\":{\"classes\":[", "\u{0}", "\u{FF}"]
            var buf = [UInt8](repeating: 0, count: 65536)
            for i in 0..<10_000 {
                var bytes: [UInt8]
                switch i % 4 {
                case 0: bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                case 1: bytes = Array((0..<Int.random(in: 1...8, using: &rng)).map { _ in fragments.randomElement(using: &rng)! }.joined().utf8)
                case 2: bytes = (0..<Int.random(in: 0...2048, using: &rng)).map { _ in UInt8.random(in: 32...126, using: &rng) }
                default: bytes = Array("{\"subscribe\":{\"min_score\":\(Double.random(in: -1...2, using: &rng)),\"top_k\":\(Int.random(in: -2...9, using: &rng))}}".utf8)
                }
                bytes.append(0x0A)
                let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                if n < 0 && errno != EAGAIN {
                    close(fd)
                    fd = Self.rawConnect(path)
                    reconnects += 1
                }
                // Read and discard whatever the server says.
                while buf.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
                sent += 1
            }
            close(fd)
            return (sent, reconnects)
        }.value
        let records = try await fed.value
        let s1 = try await r1.value, s2 = try await r2.value
        #expect(fuzzStats.sent == 10_000)
        #expect(fuzzStats.reconnects > 0, "the fuzzer should have been disconnected (oversized lines) at least once")
        expectSeqs(s1, 0..<records, "good client 1")
        expectSeqs(s2, 0..<records, "good client 2")
        #expect(ProtocolTestEnv.waitUntil { pub.protocolErrors > 100 })
        let stats = pub.subscriberStats
        #expect(stats.filter { $0.dropped > 0 }.count <= 1, "only the fuzz client may lose records: \(stats)")
    }

    /// Classification seqs until the `end` marker. Reads lines without a JSON parser (a debug
    /// build's JSONSerialization on a loaded 2-core machine is slower than the records come).
    static func readSeqs(_ c: TestClient) throws -> [Int] {
        var seqs: [Int] = []
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            guard let line = try c.connection.readLine(timeoutMs: 500) else { if c.connection.atEOF { break }; continue }
            switch QuickRecord(line) {
            case .end: return seqs
            case .dropped: Issue.record("a good client was told it lost records: \(line)")
            case .classification(let seq): seqs.append(seq)
            case .other: break
            }
        }
        return seqs
    }

    static func rawConnect(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let b = Array(path.utf8)
            raw.copyBytes(from: b)
            raw[b.count] = 0
        }
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return fd
    }
}
