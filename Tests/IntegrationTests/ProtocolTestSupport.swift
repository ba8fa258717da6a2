import CamclassTestSupport
import CamclassDaemon
import CamclassTools
import Client
import WireFormat
import Foundation
import Glibc
import Logging
import Publishing
import Support
import Testing

/// Drives sinks the way the pipeline's publishing worker does: real `ClassificationResult`s, encoded by
/// the real `RecordEncoder`, handed over as `PublishedRecord`s with their `top` spans.
final class RecordFeeder: @unchecked Sendable {  // one thread at a time
    let vocabulary: RecordVocabulary
    let encoder: RecordEncoder
    let result: ClassificationResult
    let sinks: [any RecordSink]
    /// `PublishedRecord.source` of what this feeder publishes.
    let sourceName: String
    private(set) var seq: UInt64 = 0

    init(sinks: [any RecordSink], labels: [String] = (0..<1000).map { "class \($0)" },
         groups: [(name: String, classes: [Int])] = [], topK: Int = 5, source: String? = nil) {
        vocabulary = RecordVocabulary(labels: labels, groups: groups)
        // Without a name, records are about no source for the sinks (as before sources had names).
        sourceName = source ?? ""
        encoder = RecordEncoder(source: source ?? "test-source", model: "test-model", vocabulary: vocabulary, fileNames: ["a.jpg"], maxTopK: topK)
        result = ClassificationResult(maxTopK: topK, classes: labels.count)
        self.sinks = sinks
    }

    /// Publishes one classification with `top` (class, score) entries, best first.
    @discardableResult
    /// With `change`, a `change` record (to `stable`) follows, as when the frame confirmed a new stable label.
    func publish(top: [(Int, Float)], captureNs: UInt64? = nil, stable: Int32? = nil, change: Bool = false) -> UInt64 {
        let r = result
        r.seq = seq
        r.captureNs = captureNs ?? (1_000_000_000 + seq * 33_333_333)
        r.realtimeNs = 1_795_000_000_000_000_000 + r.captureNs
        r.fileIndex = 0
        r.topCount = top.count
        for (i, e) in top.enumerated() {
            r.topClasses[i] = Int32(e.0)
            r.topScores[i] = e.1
        }
        r.preprocessNs = 100_000
        r.inferenceNs = 5_000_000
        r.totalNs = 6_000_000
        r.hasStable = stable != nil
        r.stableLabel = stable ?? -1
        let line = encoder.classification(r)
        let record = PublishedRecord(kind: .classification, json: line, result: r, spans: encoder.spans, source: sourceName)
        for s in sinks { s.publish(record) }
        if change {
            r.previousStable = -1
            r.previousStableNs = 1_000_000
            let change = PublishedRecord(kind: .change, json: encoder.change(r), result: r, source: sourceName)
            for s in sinks { s.publish(change) }
        }
        seq += 1
        return r.seq
    }

    /// A record of `kind` naming this feeder's source, as the camera event handler publishes it.
    func publishNamed(_ kind: RecordKind, _ line: String) {
        var l = line.hasSuffix("\n") ? line : line + "\n"
        l.withUTF8 { p in
            let record = PublishedRecord(kind: kind, json: UnsafeRawBufferPointer(p), source: sourceName)
            for s in sinks { s.publish(record) }
        }
    }

    /// A raw line (any record type), as other stages publish (camera events, lifecycle records).
    func publishRaw(_ line: String) {
        var l = line.hasSuffix("\n") ? line : line + "\n"
        l.withUTF8 { p in for s in sinks { s.publish(UnsafeRawBufferPointer(p)) } }
    }
}

/// A protocol client for tests: JSON lines in, JSON objects out.
final class TestClient: @unchecked Sendable {
    let connection: SubscriberConnection

    init(path: String) throws { connection = try SubscriberConnection(path: path) }

    /// Connects and consumes the `hello` line (returned).
    static func connect(_ path: String) throws -> (TestClient, [String: Any]) {
        let c = try TestClient(path: path)
        let hello = try #require(try c.next(timeoutMs: 5000), "no hello within 5 s")
        #expect(hello["type"] as? String == "hello")
        return (c, hello)
    }

    func send(_ line: String) throws { try connection.send(line: line) }

    /// The next line as a JSON object; nil on timeout or end of stream.
    func next(timeoutMs: Int32 = 2000) throws -> [String: Any]? {
        guard let line = try connection.readLine(timeoutMs: timeoutMs) else { return nil }
        let obj = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(obj as? [String: Any], "not an object: \(line)")
    }

    /// The next line of `type`, skipping others.
    func next(type: String, timeoutMs: Int32 = 3000) throws -> [String: Any]? {
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while Date() < deadline {
            guard let o = try next(timeoutMs: 200) else { if connection.atEOF { return nil }; continue }
            if o["type"] as? String == type { return o }
        }
        return nil
    }

    /// Every line until `timeoutMs` passes with nothing new (or the stream ends).
    func drain(quietMs: Int32 = 300) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        while let o = try next(timeoutMs: quietMs) { out.append(o) }
        return out
    }

    /// Sends a request and returns the reply (the first line of one of `types`).
    func request(_ line: String, expect types: Set<String>, timeoutMs: Int32 = 3000) throws -> [String: Any]? {
        try send(line)
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while Date() < deadline {
            guard let o = try next(timeoutMs: 200) else { if connection.atEOF { return nil }; continue }
            if let t = o["type"] as? String, types.contains(t) { return o }
        }
        return nil
    }
}

enum ProtocolTestEnv {
    static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A started publisher on a socket in a fresh temporary directory.
    static func publisher(_ tag: String, configure: (inout SocketOptions) -> Void = { _ in },
                          context: ProtocolContext? = nil) throws -> (UnixSocketPublisher, String) {
        let dir = TestEnv.tempDir(tag)
        var o = SocketOptions(path: dir + "/s.sock")
        configure(&o)
        let p = UnixSocketPublisher(options: o, logger: quiet)
        if let context { p.configure(context) }
        try p.start()
        return (p, dir)
    }

    static func waitUntil(timeoutMs: Int = 5000, _ condition: () -> Bool) -> Bool {
        CamclassTestSupport.waitUntil(timeoutMs: timeoutMs, condition)
    }

    static func seqs(_ records: [[String: Any]]) -> [Int] {
        records.filter { $0["type"] as? String == "classification" }.compactMap { $0["seq"] as? Int }
    }
}

/// Runs blocking work on a thread of its own (the cooperative pool is small on this machine).
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        Thread {
            do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
        }.start()
    }
}

/// Work started on its own thread at once (not when the cooperative pool gets round to it);
/// `value` waits for its result.
final class Spawned<T: Sendable>: @unchecked Sendable {
    private let done = Condition()
    private var result: Result<T, any Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        Thread { [self] in
            let r = Result { try body() }
            done.locked { result = r }
            done.broadcast()
        }.start()
    }

    func wait() throws -> T {
        var r: Result<T, any Error>?
        done.wait(until: { r = result; return r != nil })
        return try r!.get()
    }

    var value: T { get async throws { try await onThread { try self.wait() } } }
}

/// Compares a sequence of seqs with the expected range, reporting count and first difference
/// instead of both arrays.
func expectSeqs(_ got: [Int], _ expected: Range<Int>, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    if got == Array(expected) { return }
    let firstDiff = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }
    let detail = firstDiff.map { "first difference at index \($0.offset): got \($0.element.0), expected \($0.element.1)" }
        ?? "one is a prefix of the other"
    Issue.record("\(what): got \(got.count) seqs, expected \(expected.count) (\(expected)); \(detail)", sourceLocation: sourceLocation)
}

/// The type (and seq) of a record line, by prefix: cheap enough for readers that must keep up.
enum QuickRecord: Equatable {
    case classification(Int)
    case dropped(count: Int, total: Int)
    case end
    case other

    init(_ line: String) {
        func int(after key: String) -> Int? {
            guard let r = line.range(of: key) else { return nil }
            return Int(line[r.upperBound...].prefix { $0.isNumber })
        }
        if line.hasPrefix("{\"type\":\"classification\"") {
            self = .classification(int(after: "\"seq\":") ?? -1)
        } else if line.hasPrefix("{\"type\":\"dropped\"") {
            self = .dropped(count: int(after: "\"count\":") ?? -1, total: int(after: "\"total\":") ?? -1)
        } else if line.hasPrefix("{\"type\":\"end\"") {
            self = .end
        } else {
            self = .other
        }
    }
}
