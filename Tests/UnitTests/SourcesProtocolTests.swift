import CamclassDaemon
import Capture
import Client
import Foundation
import Testing
import WireFormat

/// Issue 13, protocol side: several sources on one daemon. `hello.sources`, `status.sources`,
/// `subscribe.sources`, `last.source`, the source name on every record, and the client's rendering.
/// Unit tests: no environment.
@Suite struct SourcesProtocolTests {
    static func object(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(bytes.last == 0x0A && bytes.filter { $0 == 0x0A }.count == 1, "one line", sourceLocation: sourceLocation)
        let o = try JSONSerialization.jsonObject(with: Data(bytes))
        return try #require(o as? [String: Any], sourceLocation: sourceLocation)
    }

    static func parse(_ line: String) throws(ProtocolError) -> ProtocolRequest {
        let bytes = Array(line.utf8)
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(ProtocolError) in try ProtocolRequest.parse(raw, vocabulary: nil, maxTopK: 5) }
        }
        return try result.get()
    }

    static func parseError(_ line: String) -> ProtocolError? {
        do { _ = try parse(line); return nil } catch { return error }
    }

    // MARK: hello

    @Test func helloListsEverySourceAndKeepsTheFirstAsSource() throws {
        var h = ProtocolHello()
        h.modelID = "m"
        h.source = "front"
        h.sources = [HelloSource(name: "front", path: "/dev/v4l/by-id/usb-cam-video-index0", state: .streaming),
                     HelloSource(name: "rear", path: "/var/lib/replay \"x\"", state: .lost)]
        let o = try Self.object(h.encode())
        #expect(o["type"] as? String == "hello")
        #expect(o["source"] as? String == "front")
        let sources = try #require(o["sources"] as? [[String: Any]])
        #expect(sources.count == 2)
        #expect(sources.map { $0["name"] as? String } == ["front", "rear"])
        #expect(sources.map { $0["path"] as? String } == ["/dev/v4l/by-id/usb-cam-video-index0", "/var/lib/replay \"x\""])
        #expect(sources.map { $0["state"] as? String } == ["streaming", "lost"])
        #expect(sources.allSatisfy { $0.count == 3 })
        // `source` defaults to the first source's name.
        h.source = ""
        #expect(try Self.object(h.encode())["source"] as? String == "front")
        // Without sources (embedded uses), the list is there and empty.
        #expect((try Self.object(ProtocolHello().encode())["sources"] as? [Any])?.isEmpty == true)
    }

    // MARK: status

    @Test func statusHasOneBlockPerSourceBesidesTheTotals() throws {
        var r = StatusReport()
        r.sourceName = "front"
        r.sourceState = .streaming
        r.captured = 300
        r.published = 290
        r.drops.queueFull = 10
        r.drops.subscriberOverflow = 4
        r.latency = [.init(name: "inference", ms: .init(p50: 9, p95: 11, p99: 12)), .init(name: "total", ms: .init(p50: 12, p95: 14, p99: 15))]
        var front = StatusReport.SourceStatus(name: "front", path: "/dev/video0", state: .streaming)
        front.format = "MJPEG"
        front.width = 640
        front.height = 480
        front.weight = 2
        front.fpsIn = 30
        front.fpsOut = 29.5
        front.captured = 200
        front.published = 195
        front.drops.queueFull = 3
        front.drops.driverGap = 1
        front.drops.corruptFrame = 1
        front.queueDepth = 1
        front.queueCapacity = 2
        front.latency = [.init(name: "total", ms: .init(p50: 11.5, p95: 13, p99: 14))]
        front.stableLabel = "cat"
        var rear = StatusReport.SourceStatus(name: "rear", path: "/srv/replay", state: .lost)
        rear.detail = "VIDIOC_DQBUF: No such device"
        rear.captured = 100
        rear.published = 95
        rear.drops.inferenceError = 2
        rear.drops.poolExhausted = 3
        r.sources = [front, rear]
        let o = try Self.object(r.encode())
        // The totals are unchanged.
        #expect((o["frames"] as? [String: Any])?["captured"] as? Int == 300)
        #expect((o["drops"] as? [String: Any])?["subscriber_overflow"] as? Int == 4)
        #expect((o["source"] as? [String: Any])?["name"] as? String == "front")
        let sources = try #require(o["sources"] as? [[String: Any]])
        #expect(sources.count == 2)
        let f = sources[0], b = sources[1]
        #expect(f["name"] as? String == "front" && f["path"] as? String == "/dev/video0" && f["state"] as? String == "streaming")
        #expect(f["format"] as? String == "MJPEG" && f["width"] as? Int == 640 && f["height"] as? Int == 480)
        #expect(f["weight"] as? Int == 2)
        #expect((f["fps"] as? [String: Any])?["in"] as? Double == 30)
        #expect((f["fps"] as? [String: Any])?["out"] as? Double == 29.5)
        #expect((f["frames"] as? [String: Any])?["captured"] as? Int == 200)
        #expect((f["frames"] as? [String: Any])?["published"] as? Int == 195)
        let fd = try #require(f["drops"] as? [String: Any])
        #expect(fd.keys.sorted() == ["corrupt_frame", "driver_gap", "inference_error", "pool_exhausted", "queue_full"])
        #expect(fd["queue_full"] as? Int == 3 && fd["driver_gap"] as? Int == 1 && fd["corrupt_frame"] as? Int == 1)
        #expect((f["queue"] as? [String: Any])?["depth"] as? Int == 1)
        #expect((f["queue"] as? [String: Any])?["capacity"] as? Int == 2)
        // The same latency shape as the totals'.
        let total = try #require((f["latency_ms"] as? [String: Any])?["total"] as? [String: Any])
        #expect(total["p50"] as? Double == 11.5 && total["p95"] as? Double == 13 && total["p99"] as? Double == 14)
        #expect(f["stable"] as? String == "cat")
        #expect(f["detail"] == nil)
        // Unknown format/size are null; the detail says why it is lost.
        #expect(b["format"] is NSNull && b["width"] is NSNull && b["height"] is NSNull)
        #expect(b["state"] as? String == "lost" && b["detail"] as? String == "VIDIOC_DQBUF: No such device")
        #expect((b["drops"] as? [String: Any])?["inference_error"] as? Int == 2)
        #expect((b["drops"] as? [String: Any])?["pool_exhausted"] as? Int == 3)
        #expect(b["stable"] is NSNull)
        #expect((b["latency_ms"] as? [String: Any])?.isEmpty == true)
        // Without sources, the list is empty.
        #expect((try Self.object(StatusReport().encode())["sources"] as? [Any])?.isEmpty == true)
    }

    // MARK: subscribe.sources

    @Test func subscribeSourcesAreParsedSortedAndUnique() throws {
        guard case .subscribe(let f) = try Self.parse(#"{"subscribe":{"sources":["rear","front","rear","wrist_2-b"]}}"#) else {
            Issue.record("not a subscribe"); return
        }
        #expect(f.sources == ["front", "rear", "wrist_2-b"])
        guard case .subscribe(let all) = try Self.parse(#"{"subscribe":{"sources":[]}}"#) else { Issue.record("not a subscribe"); return }
        #expect(all.sources.isEmpty)
        guard case .subscribe(let none) = try Self.parse(#"{"subscribe":{}}"#) else { Issue.record("not a subscribe"); return }
        #expect(none.sources.isEmpty)
    }

    @Test func badSourceNamesAreRefusedWithBadValue() throws {
        let tooMany = "[" + (0...SubscriptionFilter.maxSources).map { "\"s\($0)\"" }.joined(separator: ",") + "]"
        let cases = [
            #"{"subscribe":{"sources":"front"}}"#,
            #"{"subscribe":{"sources":[1]}}"#,
            #"{"subscribe":{"sources":[""]}}"#,
            #"{"subscribe":{"sources":["Front"]}}"#,
            #"{"subscribe":{"sources":["front cam"]}}"#,
            #"{"subscribe":{"sources":["/dev/video0"]}}"#,
            #"{"subscribe":{"sources":["é"]}}"#,
            "{\"subscribe\":{\"sources\":[\"\(String(repeating: "a", count: 33))\"]}}",
            "{\"subscribe\":{\"sources\":\(tooMany)}}",
        ]
        for line in cases {
            let e = try #require(Self.parseError(line), "accepted: \(line)")
            #expect(e.code == .badValue, "\(line) → \(e)")
            #expect(e.message.hasPrefix("subscribe.sources: "), "\(e.message)")
            #expect(e.request == "subscribe")
        }
        // 32 bytes is the longest name.
        guard case .subscribe(let f) = try Self.parse("{\"subscribe\":{\"sources\":[\"\(String(repeating: "a", count: 32))\"]}}") else {
            Issue.record("not a subscribe"); return
        }
        #expect(f.sources == [String(repeating: "a", count: 32)])
        #expect(SourceName.isValid("front-1_b") && !SourceName.isValid("front.1") && !SourceName.isValid(""))
    }

    @Test func subscribeAckShowsSourcesAndTheUnknownOnes() throws {
        var f = SubscriptionFilter()
        f.sources = ["front", "side"]
        let o = try Self.object(f.encodeAck(unknownSources: ["side"]))
        #expect(o["type"] as? String == "subscribed")
        #expect((o["filter"] as? [String: Any])?["sources"] as? [String] == ["front", "side"])
        #expect(o["unknown_sources"] as? [String] == ["side"])
        let plain = try Self.object(SubscriptionFilter().encodeAck())
        #expect((plain["filter"] as? [String: Any])?["sources"] as? [String] == [])
        #expect(plain["unknown_sources"] as? [String] == [])
    }

    // MARK: last.source

    @Test func lastTakesAnOptionalSource() throws {
        #expect(try Self.parse(#"{"last":{}}"#) == .last(source: nil))
        #expect(try Self.parse(#"{"last":null}"#) == .last(source: nil))
        #expect(try Self.parse(#"{"last":{"source":null}}"#) == .last(source: nil))
        #expect(try Self.parse(#"{"last":{"source":"rear"}}"#) == .last(source: "rear"))
        #expect(Self.parseError(#"{"last":{"source":"Rear!"}}"#)?.code == .badValue)
        #expect(Self.parseError(#"{"last":{"source":5}}"#)?.code == .badValue)
        #expect(Self.parseError(#"{"last":{"src":"rear"}}"#)?.code == .unknownKey)
        #expect(Self.parseError(#"{"last":{"src":"rear"}}"#)?.message.contains("known: source") == true)
    }

    // MARK: records

    @Test func changeRecordsAndTextLinesNameTheSource() throws {
        let vocabulary = RecordVocabulary(labels: ["cat", "dog"])
        let encoder = RecordEncoder(source: "rear", model: "m", vocabulary: vocabulary, fileNames: [])
        #expect(encoder.sourceName == "rear")
        let r = ClassificationResult(maxTopK: 5, classes: 2)
        r.seq = 4
        r.topCount = 1
        r.topClasses[0] = 1
        r.topScores[0] = 0.9
        r.hasStable = true
        r.stableLabel = 1
        r.previousStable = 0
        r.stableChanged = true
        let change = Array(encoder.change(r))
        let o = try Self.object(change)
        #expect(o["type"] as? String == "change" && o["source"] as? String == "rear" && o["stable"] as? String == "dog")
        let text = TextRecordEncoder(vocabulary: vocabulary)
        let line = try #require(text.encode(PublishedRecord(kind: .classification, json: encoder.classification(r), result: r,
                                                            source: encoder.sourceName)))
        #expect(String(decoding: line, as: UTF8.self).contains("Z rear #4 dog 0.90"), "\(String(decoding: line, as: UTF8.self))")
        // Records about no source keep the old form.
        let plain = try #require(text.encode(PublishedRecord(kind: .classification, json: encoder.classification(r), result: r)))
        #expect(String(decoding: plain, as: UTF8.self).contains("Z #4 dog 0.90"))
    }

    @Test func cameraRecordsCarryTheSourceNameAndPath() throws {
        let e = CameraStateChange(state: .lost, source: "/dev/video2", reason: "gone", format: nil, downtimeNs: nil,
                                  monotonicNs: 1, realtimeNs: 1_700_000_000_000_000_000)
        var w = ByteWriter(capacity: 4096)
        CameraEventRecord.encode(e, name: "rear", into: &w)
        let named = try Self.object(Array(w.bytes))
        #expect(named["source"] as? String == "rear" && named["path"] as? String == "/dev/video2" && named["reason"] as? String == "gone")
        CameraEventRecord.encode(e, into: &w)
        let unnamed = try Self.object(Array(w.bytes))
        #expect(unnamed["source"] as? String == "/dev/video2" && unnamed["path"] == nil)
    }

    /// The camera event handler publishes a record that carries the source's name for the sinks.
    @Test func cameraEventPublisherHandsTheNameToTheSinks() throws {
        final class Capturing: RecordSink, @unchecked Sendable {
            var got: [(String, RecordKind, String)] = []
            func publish(_ line: UnsafeRawBufferPointer) { Issue.record("raw publish: the record's source would be lost") }
            func publish(_ record: PublishedRecord) {
                got.append((record.source, record.kind, String(decoding: record.json, as: UTF8.self)))
            }
        }
        let sink = Capturing()
        let handler = CameraEventRecord.publisher(to: [sink], sourceName: "front")
        handler(CameraStateChange(state: .lost, source: "/dev/video0", reason: "x", format: nil, downtimeNs: nil, monotonicNs: 1, realtimeNs: 1))
        #expect(sink.got.count == 1)
        #expect(sink.got.first?.0 == "front" && sink.got.first?.1 == .camera)
        #expect(sink.got.first?.2.contains("\"source\":\"front\",\"path\":\"/dev/video0\"") == true)
    }

    // MARK: client

    @Test func subscribeAndLastRequestsCarryTheSources() throws {
        let s = try #require(CamclassClient.subscribeRequest(minScore: nil, classes: [], labels: [], topK: nil, everyN: nil, maxRateHz: nil,
                                                             events: nil, eventsOnly: false, sources: ["front", "rear"]))
        #expect(s == #"{"subscribe":{"sources":["front","rear"]}}"#)
        #expect(CamclassClient.lastRequest(source: nil) == #"{"last":{}}"#)
        #expect(CamclassClient.lastRequest(source: "rear") == #"{"last":{"source":"rear"}}"#)
        // Both parse as the server reads them.
        guard case .subscribe(let f) = try Self.parse(s) else { Issue.record("not a subscribe"); return }
        #expect(f.sources == ["front", "rear"])
        #expect(try Self.parse(CamclassClient.lastRequest(source: "rear")) == .last(source: "rear"))
    }

    @Test func humanLinesNameTheSourceWhenThereAreSeveral() throws {
        let a = #"{"type":"classification","seq":3,"time":"2026-11-23T09:20:00.123456Z","source":"front","top":[{"class":1,"label":"dog","score":0.9}]}"#
        let b = #"{"type":"classification","seq":9,"time":"2026-11-23T09:20:00.223456Z","source":"rear","top":[{"class":1,"label":"dog","score":0.8}]}"#
        // One source so far: no name (as before).
        let log = HumanLine.Renderer()
        #expect(log.format(jsonLine: a) == "2026-11-23T09:20:00.123Z #3 dog 0.90")
        // A second source appears (the log has no hello): from then on every line names its source.
        #expect(log.format(jsonLine: b) == "2026-11-23T09:20:00.223Z rear #9 dog 0.80")
        #expect(log.format(jsonLine: a) == "2026-11-23T09:20:00.123Z front #3 dog 0.90")
        // A hello listing two sources turns it on at once, and says which.
        let sub = HumanLine.Renderer()
        let hello = #"{"type":"hello","protocol":1,"version":"0.1.0","model":{"id":"m"},"source":"front","sources":[{"name":"front","path":"/dev/video0","state":"streaming"},{"name":"rear","path":"/dev/video2","state":"lost"}]}"#
        #expect(sub.format(jsonLine: hello) == "-- camclassd 0.1.0 (protocol 1): model m, sources front (/dev/video0, streaming), rear (/dev/video2, lost)")
        #expect(sub.showSource)
        #expect(sub.format(jsonLine: a) == "2026-11-23T09:20:00.123Z front #3 dog 0.90")
    }

    @Test func statusSummaryHasALinePerSource() throws {
        var r = StatusReport()
        var front = StatusReport.SourceStatus(name: "front", path: "/dev/video0", state: .streaming)
        front.format = "MJPEG"
        front.width = 640
        front.height = 480
        front.fpsIn = 30
        front.fpsOut = 29.9
        front.captured = 1000
        front.published = 990
        front.drops.queueFull = 7
        front.drops.driverGap = 3
        front.latency = [.init(name: "total", ms: .init(p50: 7.1, p95: 9, p99: 10))]
        var rear = StatusReport.SourceStatus(name: "rear", path: "/srv/replay", state: .lost)
        rear.detail = "no frames for 2 s"
        r.sources = [front, rear]
        let s = try Self.object(r.encode())
        let text = CamclassClient.renderStatus(s, hello: ["protocol": 1])
        let lines = text.split(separator: "\n").map(String.init)
        let header = try #require(lines.firstIndex(of: "sources      2"), "\(text)")
        #expect(lines[header + 1] == "  front  streaming MJPEG 640x480  fps 30.0/29.9  captured 1000 published 990 dropped 10  p50 7.10 ms", "\(text)")
        #expect(lines[header + 2] == "  rear   lost  fps 0.0/0.0  captured 0 published 0 dropped 0 (no frames for 2 s)", "\(text)")
        // After the totals, before the subscribers.
        #expect(lines.firstIndex { $0.hasPrefix("drops") }! < header)
        #expect(lines.firstIndex { $0.hasPrefix("subscribers") }! > header)
    }
}
