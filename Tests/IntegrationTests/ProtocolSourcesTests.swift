import CamclassTestSupport
import Foundation
import Publishing
import Support
import Testing
import WireFormat

/// Issue 13 over a real Unix socket: records of several sources on one publisher, a subscriber's
/// `sources` filter, `last` per source, and the source list in `hello`.
@Suite struct ProtocolSourcesTests {
    static let labels = (0..<1000).map { "class \($0)" }
    static let sample: [(Int, Float)] = [(285, 0.40), (281, 0.30), (967, 0.12), (968, 0.08), (5, 0.01)]

    static func context(sources: [String] = ["a", "b"]) -> ProtocolContext {
        var h = ProtocolHello()
        h.modelID = "m"
        h.source = sources.first ?? ""
        h.sources = sources.map { HelloSource(name: $0, path: "/dev/video-\($0)", state: .streaming) }
        h.labels = 1000
        h.topK = 5
        return ProtocolContext(hello: h, vocabulary: RecordVocabulary(labels: labels), maxTopK: 5)
    }

    /// Every line as the client received it, each parsed on its own: a record cut short or glued to
    /// the next is not one JSON object and fails here.
    static func lines(_ c: TestClient, quietMs: Int32 = 400) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        while let line = try c.connection.readLine(timeoutMs: quietMs) {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not one object: \(line)")
            out.append(o)
        }
        return out
    }

    static func seqs(_ records: [[String: Any]], type: String = "classification", source: String) -> [Int] {
        records.filter { $0["type"] as? String == type && $0["source"] as? String == source }.compactMap { $0["seq"] as? Int }
    }

    @Test func helloListsTheSources() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("src-hello", context: Self.context(sources: ["front", "rear"]))
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (_, hello) = try TestClient.connect(dir + "/s.sock")
        #expect(hello["source"] as? String == "front")
        let sources = try #require(hello["sources"] as? [[String: Any]])
        #expect(sources.map { $0["name"] as? String } == ["front", "rear"])
        #expect(sources.map { $0["path"] as? String } == ["/dev/video-front", "/dev/video-rear"])
        #expect(sources.allSatisfy { $0["state"] as? String == "streaming" })
    }

    /// Two subscribers, one with `sources:["a"]`, one unfiltered; records of "a" and "b" interleaved
    /// (classifications, changes, camera events) plus lifecycle records about no source.
    @Test func sourcesFilterSendsOnlyThoseSourcesAndLifecycleRecords() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("src-filter", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (onlyA, _) = try TestClient.connect(dir + "/s.sock")
        let (everything, _) = try TestClient.connect(dir + "/s.sock")
        let ack = try #require(try onlyA.request(#"{"subscribe":{"sources":["a"]}}"#, expect: ["subscribed", "error"]))
        #expect(ack["type"] as? String == "subscribed", "\(ack)")
        #expect((ack["filter"] as? [String: Any])?["sources"] as? [String] == ["a"])
        #expect(ack["unknown_sources"] as? [String] == [])

        let a = RecordFeeder(sinks: [pub], labels: Self.labels, source: "a")
        let b = RecordFeeder(sinks: [pub], labels: Self.labels, source: "b")
        for i in 0..<40 {
            a.publish(top: Self.sample, stable: i == 10 ? 1 : nil, change: i == 10)
            b.publish(top: Self.sample, stable: i == 20 ? 2 : nil, change: i == 20)
            b.publish(top: Self.sample)  // b runs at twice a's rate
            if i == 15 {
                a.publishNamed(.camera, #"{"type":"camera","state":"lost","time":"2026-11-23T09:20:05.000000Z","source":"a","reason":"gone"}"#)
                b.publishNamed(.camera, #"{"type":"camera","state":"lost","time":"2026-11-23T09:20:05.000000Z","source":"b","reason":"gone"}"#)
            }
            if i == 30 { a.publishRaw(#"{"type":"reload","time":"2026-11-23T09:20:06.000000Z","changed":["sources"]}"#) }
        }
        a.publishRaw(#"{"type":"shutdown","reason":"SIGTERM","published":120,"dropped":0}"#)

        let gotA = try Self.lines(onlyA)
        #expect(Self.seqs(gotA, source: "a") == Array(0..<40))
        #expect(Self.seqs(gotA, source: "b").isEmpty)
        #expect(Self.seqs(gotA, type: "change", source: "a") == [10])
        #expect(gotA.filter { $0["type"] as? String == "camera" }.map { $0["source"] as? String } == ["a"])
        #expect(gotA.filter { $0["source"] as? String == "b" }.isEmpty, "a record of b reached the a-only subscriber")
        #expect(gotA.compactMap { $0["type"] as? String }.filter { $0 == "reload" || $0 == "shutdown" } == ["reload", "shutdown"])
        #expect(gotA.allSatisfy { ($0["type"] as? String) != "classification" || ($0["top"] as? [Any])?.count == 5 })

        let gotAll = try Self.lines(everything)
        #expect(Self.seqs(gotAll, source: "a") == Array(0..<40))
        #expect(Self.seqs(gotAll, source: "b") == Array(0..<80))
        #expect(Self.seqs(gotAll, type: "change", source: "b") == [40])
        #expect(gotAll.filter { $0["type"] as? String == "camera" }.map { $0["source"] as? String } == ["a", "b"])
        #expect(gotAll.compactMap { $0["type"] as? String }.filter { $0 == "reload" || $0 == "shutdown" } == ["reload", "shutdown"])
        // Everything published reached the unfiltered subscriber: 120 classifications, 2 changes,
        // 2 camera records, 2 lifecycle records; the filtered one skipped b's 80 + 1 + 1.
        #expect(gotAll.count == 126, "\(gotAll.count)")
        #expect(gotA.count == 126 - 82, "\(gotA.count)")  // (its `subscribed` reply was read by `request`)
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberStats.map(\.filtered).sorted() == [0, 82] }, "\(pub.subscriberStats)")
        #expect(pub.subscriberStats.allSatisfy { $0.dropped == 0 })
    }

    /// The sources filter composes with the others (every_n counts the records of those sources only).
    @Test func sourcesFilterComposesWithTheOtherFilters() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("src-compose", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        #expect(try c.request(#"{"subscribe":{"sources":["b"],"every_n":2,"top_k":1}}"#, expect: ["subscribed"]) != nil)
        let a = RecordFeeder(sinks: [pub], labels: Self.labels, source: "a")
        let b = RecordFeeder(sinks: [pub], labels: Self.labels, source: "b")
        for _ in 0..<10 {
            a.publish(top: Self.sample)
            b.publish(top: Self.sample)
        }
        let got = try Self.lines(c)
        #expect(Self.seqs(got, source: "b") == [0, 2, 4, 6, 8])
        #expect(Self.seqs(got, source: "a").isEmpty)
        #expect(got.filter { $0["type"] as? String == "classification" }.allSatisfy { ($0["top"] as? [Any])?.count == 1 })
    }

    @Test func subscribeAckNamesSourcesNotConfiguredNow() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("src-unknown", context: Self.context())
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        let ack = try #require(try c.request(#"{"subscribe":{"sources":["zz","a"]}}"#, expect: ["subscribed", "error"]))
        #expect(ack["type"] as? String == "subscribed", "\(ack)")
        #expect((ack["filter"] as? [String: Any])?["sources"] as? [String] == ["a", "zz"])
        #expect(ack["unknown_sources"] as? [String] == ["zz"])
        // A bad name is an error; the previous filter stays, the connection works.
        let e = try #require(try c.request(#"{"subscribe":{"sources":["Z Z"]}}"#, expect: ["error", "subscribed"]))
        #expect(e["code"] as? String == "bad_value" && e["disconnect"] == nil, "\(e)")
        let zz = RecordFeeder(sinks: [pub], labels: Self.labels, source: "zz")
        let b = RecordFeeder(sinks: [pub], labels: Self.labels, source: "b")
        b.publish(top: Self.sample)
        zz.publish(top: Self.sample)  // the source appeared (after a reload, say): it is delivered
        let got = try Self.lines(c)
        #expect(got.filter { $0["type"] as? String == "classification" }.map { $0["source"] as? String } == ["zz"])
    }

    @Test func lastAnswersPerSource() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("src-last", context: Self.context(sources: ["a", "b", "c"]))
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        #expect(try c.request(#"{"subscribe":{"classifications":false,"events":[]}}"#, expect: ["subscribed"]) != nil)
        let a = RecordFeeder(sinks: [pub], labels: Self.labels, source: "a")
        let b = RecordFeeder(sinks: [pub], labels: Self.labels, source: "b")
        for _ in 0..<5 { a.publish(top: Self.sample) }
        for _ in 0..<3 { b.publish(top: [(7, 0.9)]) }
        a.publish(top: Self.sample)  // a's seq 5 is now the latest of all
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberStats.first?.filtered == 9 })

        let any = try #require(try c.request(#"{"last":{}}"#, expect: ["classification", "error"]))
        #expect(any["reply"] as? String == "last" && any["source"] as? String == "a" && any["seq"] as? Int == 5, "\(any)")
        let lastB = try #require(try c.request(#"{"last":{"source":"b"}}"#, expect: ["classification", "error"]))
        #expect(lastB["reply"] as? String == "last" && lastB["source"] as? String == "b" && lastB["seq"] as? Int == 2, "\(lastB)")
        #expect((lastB["top"] as? [[String: Any]])?.first?["class"] as? Int == 7)
        let lastA = try #require(try c.request(#"{"last":{"source":"a"}}"#, expect: ["classification", "error"]))
        #expect(lastA["source"] as? String == "a" && lastA["seq"] as? Int == 5)

        // Configured but nothing published yet: not yet; not configured: an error naming the known ones.
        let notYet = try #require(try c.request(#"{"last":{"source":"c"}}"#, expect: ["classification", "error"]))
        #expect(notYet["code"] as? String == "no_result_yet", "\(notYet)")
        let unknown = try #require(try c.request(#"{"last":{"source":"d"}}"#, expect: ["classification", "error"]))
        #expect(unknown["code"] as? String == "unknown_source", "\(unknown)")
        #expect(unknown["request"] as? String == "last")
        #expect((unknown["error"] as? String)?.contains("known: a, b, c") == true, "\(unknown)")
        #expect(unknown["disconnect"] == nil)
        let bad = try #require(try c.request(#"{"last":{"source":"/dev/video0"}}"#, expect: ["classification", "error"]))
        #expect(bad["code"] as? String == "bad_value", "\(bad)")
        // Still usable.
        #expect(try c.request(#"{"last":{"source":"b"}}"#, expect: ["classification"])?["seq"] as? Int == 2)
    }

    /// `last` keeps 16 sources: a 17th takes the slot of the source seen least recently.
    @Test func lastKeepsTheSixteenSourcesSeenMostRecently() throws {
        let (pub, dir) = try ProtocolTestEnv.publisher("src-last16", context: Self.context(sources: []))
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let (c, _) = try TestClient.connect(dir + "/s.sock")
        #expect(try c.request(#"{"subscribe":{"classifications":false,"events":[]}}"#, expect: ["subscribed"]) != nil)
        let feeders = (0...UnixSocketPublisher.maxLastSources).map { RecordFeeder(sinks: [pub], labels: Self.labels, source: "s\($0)") }
        for f in feeders.prefix(UnixSocketPublisher.maxLastSources) { f.publish(top: Self.sample) }
        feeders[0].publish(top: Self.sample)  // s0 seen again: s1 is now the least recent
        feeders[UnixSocketPublisher.maxLastSources].publish(top: Self.sample)  // the 17th
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberStats.first?.filtered == UnixSocketPublisher.maxLastSources + 2 })
        let s0 = try #require(try c.request(#"{"last":{"source":"s0"}}"#, expect: ["classification", "error"]))
        #expect(s0["seq"] as? Int == 1, "\(s0)")
        let s16 = try #require(try c.request(#"{"last":{"source":"s16"}}"#, expect: ["classification", "error"]))
        #expect(s16["source"] as? String == "s16", "\(s16)")
        let s1 = try #require(try c.request(#"{"last":{"source":"s1"}}"#, expect: ["classification", "error"]))
        #expect(s1["code"] as? String == "unknown_source", "\(s1)")
        #expect((s1["error"] as? String)?.contains("s16") == true)
        let any = try #require(try c.request(#"{"last":{}}"#, expect: ["classification", "error"]))
        #expect(any["source"] as? String == "s16")
    }

    // MARK: the client tools (the real camclass binary)

    /// `camclass subscribe --source`, `last --source`, `status` against a publisher with two sources.
    @Test func camclassToolsSelectAndShowSources() throws {
        let camclass = try TestBinary.camclass()
        var ctx = Self.context()
        ctx.status = {
            var r = StatusReport()
            r.sourceName = "a"
            r.sourceState = .streaming
            var a = StatusReport.SourceStatus(name: "a", path: "/dev/video-a", state: .streaming)
            a.format = "MJPEG"
            a.width = 640
            a.height = 480
            a.fpsIn = 30
            a.fpsOut = 30
            a.captured = 12
            a.published = 11
            a.drops.queueFull = 1
            a.latency = [.init(name: "total", ms: .init(p50: 8.25, p95: 9, p99: 10))]
            let b = StatusReport.SourceStatus(name: "b", path: "/dev/video-b", state: .lost)
            r.sources = [a, b]
            return r.encode()
        }
        let (pub, dir) = try ProtocolTestEnv.publisher("src-cli", context: ctx)
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let a = RecordFeeder(sinks: [pub], labels: Self.labels, source: "a")
        let b = RecordFeeder(sinks: [pub], labels: Self.labels, source: "b")

        let json = Spawned { try runCommand(camclass, ["subscribe", "--socket", path, "--source", "a", "--count", "3", "--json"], timeoutSeconds: 60) }
        let human = Spawned { try runCommand(camclass, ["subscribe", "--socket", path, "--source", "b", "--source", "c", "--count", "2"], timeoutSeconds: 60) }
        // Both connected and their filters set.
        #expect(ProtocolTestEnv.waitUntil(timeoutMs: 20_000) { pub.subscriberStats.count == 2 && pub.subscriberStats.allSatisfy { $0.requests == 1 } },
                "\(pub.subscriberStats)")
        for _ in 0..<3 {
            b.publish(top: Self.sample)
            a.publish(top: Self.sample)
        }
        let j = try json.wait(), h = try human.wait()
        #expect(j.status == 0, "\(j.stderr)")
        let classifications = j.stdout.split(separator: "\n").filter { $0.hasPrefix("{\"type\":\"classification\"") }
        #expect(classifications.count == 3)
        #expect(classifications.allSatisfy { $0.contains("\"source\":\"a\"") }, "\(j.stdout)")
        #expect(h.status == 0, "\(h.stderr)")
        // Human lines name the source (the hello lists two); the unknown name is reported, not fatal.
        let lines = h.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("sources a (/dev/video-a, streaming), b (/dev/video-b, streaming)") == true, "\(h.stdout)")
        #expect(lines.filter { $0.contains("Z b #") }.count == 2, "\(h.stdout)")
        #expect(h.stderr.contains("no source is named c"), "\(h.stderr)")

        let last = try runCommand(camclass, ["last", "--socket", path, "--source", "b", "--json"], timeoutSeconds: 60)
        #expect(last.status == 0, "\(last.stderr)")
        #expect(last.stdout.contains("\"reply\":\"last\"") && last.stdout.contains("\"source\":\"b\"") && last.stdout.contains("\"seq\":2"),
                "\(last.stdout)")
        let lastHuman = try runCommand(camclass, ["last", "--socket", path, "--source", "a"], timeoutSeconds: 60)
        #expect(lastHuman.stdout.contains("Z a #2 class 285 0.40"), "\(lastHuman.stdout)")
        let unknown = try runCommand(camclass, ["last", "--socket", path, "--source", "zz"], timeoutSeconds: 60)
        #expect(unknown.status == ExitStatus.usage.rawValue, "\(unknown.status) \(unknown.stderr)")
        #expect(unknown.stderr.contains("no source is named 'zz' (known: a, b)"), "\(unknown.stderr)")

        let status = try runCommand(camclass, ["status", "--socket", path], timeoutSeconds: 60)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("sources      2\n  a  streaming MJPEG 640x480  fps 30.0/30.0  captured 12 published 11 dropped 1  p50 8.25 ms\n  b  lost  fps 0.0/0.0"),
                "\(status.stdout)")
        let statusJSON = try runCommand(camclass, ["status", "--socket", path, "--json"], timeoutSeconds: 60)
        let o = try #require(try JSONSerialization.jsonObject(with: Data(statusJSON.stdout.utf8)) as? [String: Any])
        #expect((o["sources"] as? [[String: Any]])?.map { $0["name"] as? String } == ["a", "b"])
    }
}
