/// One classified frame, in storage that is allocated once and reused (the pipeline keeps a ring
/// of these), so producing a record allocates nothing.
/// Thread context: written by one worker, then read by the publishing worker; the pipeline's ring
/// hand-off orders the two.
public final class ClassificationResult: @unchecked Sendable {
    public var seq: UInt64 = 0
    public var captureNs: UInt64 = 0
    /// Wall-clock time of capture (CLOCK_REALTIME ns), for the record's `time`.
    public var realtimeNs: UInt64 = 0
    public var fileIndex: Int32 = -1
    /// Frame size as captured (the negotiated format's size).
    public var width: Int32 = 0
    public var height: Int32 = 0
    public var topCount = 0
    public let topClasses: UnsafeMutableBufferPointer<Int32>
    public let topScores: UnsafeMutableBufferPointer<Float>
    /// Probabilities of every class (after softmax), for the stable-label stage; empty when the
    /// result was created without `classes`.
    public let allScores: UnsafeMutableBufferPointer<Float>
    public var preprocessNs: UInt64 = 0
    public var inferenceNs: UInt64 = 0
    /// Capture → hand-off to the publishers.
    public var totalNs: UInt64 = 0
    /// Frames lost (any cause) since the previous record.
    public var dropped: UInt64 = 0
    /// False when inference failed for this frame (no record is published for it).
    public var ok = true

    /// Stable label (an index into `RecordVocabulary.stableNames`, -1 = `unknown`); meaningful when
    /// `hasStable`.
    public var hasStable = false
    public var stableLabel: Int32 = -1
    public var stableScore: Float = 0
    /// Set on the frame that confirmed a new stable label: the previous label and how long it lasted.
    public var stableChanged = false
    public var previousStable: Int32 = -1
    public var previousStableNs: UInt64 = 0

    public init(maxTopK: Int, classes: Int = 0) {
        topClasses = .allocate(capacity: maxTopK)
        topClasses.initialize(repeating: 0)
        topScores = .allocate(capacity: maxTopK)
        topScores.initialize(repeating: 0)
        allScores = .allocate(capacity: classes)
        allScores.initialize(repeating: 0)
    }

    deinit {
        topClasses.deallocate()
        topScores.deallocate()
        allScores.deallocate()
    }
}

/// The names records use, escaped once at start-up: class labels, and the stable-label space
/// (coarse groups plus the classes no group covers, or just the classes).
/// Thread context: immutable, shared.
public final class RecordVocabulary: Sendable {
    public let labels: [String]
    public let labelsJSON: [[UInt8]]
    public let stableNames: [String]
    public let stableNamesJSON: [[UInt8]]
    /// Stable-label index of each class.
    public let classToStable: [Int32]
    /// Names that are coarse groups (a prefix of `stableNames`).
    public let groupCount: Int

    /// - Parameters:
    ///   - groups: coarse groups in order, each with its class ids; classes in no group keep
    ///     their own label in the stable space.
    public init(labels: [String], groups: [(name: String, classes: [Int])] = []) {
        self.labels = labels
        labelsJSON = labels.map(RecordVocabulary.escapedBody)
        var names = groups.map(\.name)
        var map = [Int32](repeating: -1, count: labels.count)
        for (g, group) in groups.enumerated() {
            for c in group.classes where c >= 0 && c < labels.count && map[c] < 0 { map[c] = Int32(g) }
        }
        for c in 0..<labels.count where map[c] < 0 {
            map[c] = Int32(names.count)
            names.append(labels[c])
        }
        stableNames = names
        stableNamesJSON = names.map(RecordVocabulary.escapedBody)
        classToStable = map
        groupCount = groups.count
    }

    /// Classes whose label or coarse group is `name` (case-insensitive); empty if none.
    public func classes(named name: String) -> [Int] {
        let wanted = name.lowercased()
        var out: [Int] = []
        for (c, l) in labels.enumerated() where l.lowercased() == wanted { out.append(c) }
        if let g = stableNames.prefix(groupCount).firstIndex(where: { $0.lowercased() == wanted }) {
            for (c, s) in classToStable.enumerated() where Int(s) == g { out.append(c) }
        }
        return Array(Set(out)).sorted()
    }

    /// The JSON string body (no quotes) of `s`.
    static func escapedBody(_ s: String) -> [UInt8] {
        var w = ByteWriter(capacity: s.utf8.count * 6 + 2)
        w.jsonString(s)
        return Array(w.bytes.dropFirst().dropLast())
    }
}

/// What kind of record a line is; subscribers filter on it.
public enum RecordKind: UInt8, Sendable {
    case classification = 1
    case change = 2
    case camera = 3
    case status = 4
    case dropped = 5
    /// Anything else (raw lines whose type is not known to the publisher).
    case other = 6

    public var name: String {
        switch self {
        case .classification: return "classification"
        case .change: return "change"
        case .camera: return "camera"
        case .status: return "status"
        case .dropped: return "dropped"
        case .other: return "other"
        }
    }

    /// The kind of an encoded line, from its `{"type":"…"` prefix.
    public static func of(line: UnsafeRawBufferPointer) -> RecordKind {
        func has(_ prefix: StaticString) -> Bool {
            let n = prefix.utf8CodeUnitCount
            guard line.count >= n else { return false }
            let p = prefix.utf8Start
            for i in 0..<n where line[i] != p[i] { return false }
            return true
        }
        if has("{\"type\":\"classification\"") { return .classification }
        if has("{\"type\":\"change\"") { return .change }
        if has("{\"type\":\"camera\"") { return .camera }
        if has("{\"type\":\"status\"") { return .status }
        if has("{\"type\":\"dropped\"") { return .dropped }
        return .other
    }
}

/// The state of the frame source, as `camera` records and `status` report it.
public enum SourceState: UInt8, Sendable {
    case starting = 0
    case streaming = 1
    /// A non-looping replay reached its end, or the frame limit was reached.
    case ended = 2
    /// Stopped on request (SIGTERM, `stop()`).
    case stopped = 3
    case failed = 4
    /// Frames stopped arriving (a live source that lost its device); may return to streaming.
    case lost = 5

    public var name: String {
        switch self {
        case .starting: return "starting"
        case .streaming: return "streaming"
        case .ended: return "ended"
        case .stopped: return "stopped"
        case .failed: return "failed"
        case .lost: return "lost"
        }
    }
}

/// One record as the publishing worker hands it to the sinks: its JSON line plus what sinks need to
/// filter or re-render it without parsing. Valid only during `publish`.
public struct PublishedRecord {
    public var kind: RecordKind
    /// One complete JSON object followed by a newline.
    public var json: UnsafeRawBufferPointer
    /// The classified frame, for classification and change records.
    public var result: ClassificationResult?
    /// Byte spans of the `top` entries inside `json` (classification records from `RecordEncoder`).
    public var spans: TopSpans?
    /// The configured name of the source the record is about (classification, change and camera
    /// records; the same as the line's `"source"`); "" for records about the daemon as a whole
    /// (`reload`, `shutdown`), which every subscriber gets whatever its `sources` filter.
    /// Pass a `String` kept per source (e.g. `RecordEncoder.sourceName`): copying it only retains.
    public var source: String

    public init(kind: RecordKind, json: UnsafeRawBufferPointer, result: ClassificationResult? = nil, spans: TopSpans? = nil,
                source: String = "") {
        self.kind = kind
        self.json = json
        self.result = result
        self.spans = spans
        self.source = source
    }
}

/// Where each entry of a classification record's `top` array sits in the line, so a subscriber's
/// `top_k` / `min_score` / `classes` filter can cut entries out without re-encoding.
/// `open` is the offset just after `"top":[`, `close` the offset of the matching `]`; entry i spans
/// `starts[i]..<ends[i]`.
public struct TopSpans {
    public var open: Int
    public var close: Int
    public var count: Int
    public var starts: UnsafeMutableBufferPointer<Int32>
    public var ends: UnsafeMutableBufferPointer<Int32>
}

/// Encodes records as JSON Lines (one object and a newline per record); see docs/protocol.md.
/// Strings that repeat (source, model, labels, file names) are escaped once at start-up.
/// The source name is the encoder's: with several sources, keep one encoder per source.
/// Thread context: one encoder per thread.
public final class RecordEncoder {
    /// Sized at start-up for the longest record this configuration can produce (see `init`), so a
    /// record is never cut; should it still overflow, nothing is returned rather than a cut line.
    public var writer: ByteWriter
    /// The source name every record of this encoder carries (as given to `init`), for
    /// `PublishedRecord.source`.
    public let sourceName: String
    private let source: [UInt8]
    private let model: [UInt8]
    public let vocabulary: RecordVocabulary
    private let files: [[UInt8]]
    private let spanStarts: UnsafeMutableBufferPointer<Int32>
    private let spanEnds: UnsafeMutableBufferPointer<Int32>
    /// Spans of the last `classification` call.
    public private(set) var spans: TopSpans

    public init(source: String, model: String, vocabulary: RecordVocabulary, fileNames: [String], maxTopK: Int = 64) {
        var w = ByteWriter(capacity: 4096)
        func escaped(_ s: String) -> [UInt8] {
            w.reset()
            w.jsonString(s)
            return Array(w.bytes)
        }
        sourceName = source
        self.source = escaped(source)
        self.model = escaped(model)
        self.vocabulary = vocabulary
        files = fileNames.map(escaped)
        // The longest classification and change records: fixed fields and numbers (~400 bytes),
        // the strings as escaped, and per `top` entry its label plus ~48 bytes of keys and numbers.
        let longestLabel = vocabulary.labelsJSON.map(\.count).max() ?? 0
        let longestStable = max(9, vocabulary.stableNamesJSON.map(\.count).max() ?? 0)
        let capacity = 1024 + self.source.count + self.model.count + (files.map(\.count).max() ?? 0)
            + max(1, maxTopK) * (longestLabel + 64) + 2 * longestStable
        writer = ByteWriter(capacity: capacity)
        spanStarts = .allocate(capacity: max(1, maxTopK))
        spanStarts.initialize(repeating: 0)
        spanEnds = .allocate(capacity: max(1, maxTopK))
        spanEnds.initialize(repeating: 0)
        spans = TopSpans(open: 0, close: 0, count: 0, starts: spanStarts, ends: spanEnds)
    }

    /// Class labels only, no coarse groups. `labels` are plain names (escaped here, once).
    public convenience init(source: String, model: String, labels: [String], fileNames: [String]) {
        self.init(source: source, model: model, vocabulary: RecordVocabulary(labels: labels), fileNames: fileNames)
    }

    deinit {
        spanStarts.deallocate()
        spanEnds.deallocate()
    }

    private func stableName(_ index: Int32) {
        if index >= 0 && Int(index) < vocabulary.stableNamesJSON.count {
            writer.byte(0x22); writer.raw(vocabulary.stableNamesJSON[Int(index)]); writer.byte(0x22)
        } else {
            writer.ascii("\"unknown\"")
        }
    }

    private func header(_ type: StaticString, _ r: ClassificationResult) {
        writer.reset()
        writer.ascii(type)
        writer.uint(r.seq)
        writer.ascii(",\"time\":\"")
        writer.rfc3339(realtimeNs: r.realtimeNs)
        writer.ascii("\",\"capture_ns\":")
        writer.uint(r.captureNs)
    }

    /// `{"type":"classification",…}\n` into `writer`; returns the bytes (valid until the next call)
    /// and records the `top` entries' spans in `spans`.
    public func classification(_ r: ClassificationResult) -> UnsafeRawBufferPointer {
        header("{\"type\":\"classification\",\"seq\":", r)
        writer.ascii(",\"source\":")
        writer.raw(source)
        if r.fileIndex >= 0 && Int(r.fileIndex) < files.count {
            writer.ascii(",\"file\":")
            writer.raw(files[Int(r.fileIndex)])
        }
        writer.ascii(",\"model\":")
        writer.raw(model)
        writer.ascii(",\"top\":[")
        spans.open = writer.count
        let n = min(r.topCount, spanStarts.count)
        for i in 0..<n {
            if i > 0 { writer.byte(UInt8(ascii: ",")) }
            spanStarts[i] = Int32(writer.count)
            let c = Int(r.topClasses[i])
            writer.ascii("{\"class\":")
            writer.int(Int64(c))
            writer.ascii(",\"label\":")
            if c >= 0 && c < vocabulary.labelsJSON.count {
                writer.byte(0x22); writer.raw(vocabulary.labelsJSON[c]); writer.byte(0x22)
            } else {
                writer.ascii("null")
            }
            writer.ascii(",\"score\":")
            writer.fixed(Double(r.topScores[i]), decimals: 4)
            writer.byte(UInt8(ascii: "}"))
            spanEnds[i] = Int32(writer.count)
        }
        spans.count = n
        spans.close = writer.count
        writer.byte(UInt8(ascii: "]"))
        if r.hasStable {
            writer.ascii(",\"stable\":")
            stableName(r.stableLabel)
            writer.ascii(",\"stable_score\":")
            writer.fixed(Double(r.stableScore), decimals: 4)
        }
        writer.ascii(",\"latency_ms\":{\"preprocess\":")
        writer.fixed(Double(r.preprocessNs) / 1e6, decimals: 3)
        writer.ascii(",\"inference\":")
        writer.fixed(Double(r.inferenceNs) / 1e6, decimals: 3)
        writer.ascii(",\"total\":")
        writer.fixed(Double(r.totalNs) / 1e6, decimals: 3)
        writer.ascii("},\"dropped\":")
        writer.uint(r.dropped)
        writer.ascii("}\n")
        return complete()
    }

    /// The record, or an empty buffer when it did not fit (never a cut record).
    private func complete() -> UnsafeRawBufferPointer {
        if writer.overflowed {
            spans.count = 0
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return writer.bytes
    }

    /// `{"type":"change",…}\n`: the stable label `r` confirmed, the previous one and how long it lasted.
    public func change(_ r: ClassificationResult) -> UnsafeRawBufferPointer {
        header("{\"type\":\"change\",\"seq\":", r)
        writer.ascii(",\"source\":")
        writer.raw(source)
        writer.ascii(",\"stable\":")
        stableName(r.stableLabel)
        writer.ascii(",\"score\":")
        writer.fixed(Double(r.stableScore), decimals: 4)
        writer.ascii(",\"previous\":")
        stableName(r.previousStable)
        writer.ascii(",\"previous_ms\":")
        writer.fixed(Double(r.previousStableNs) / 1e6, decimals: 1)
        writer.ascii("}\n")
        return complete()
    }
}

/// Renders records as human-readable lines for the rolling log's `text` format:
/// `2026-11-23T09:20:00.123Z #123 Egyptian cat 0.39 (stable: cat) 7.1 ms`.
/// Thread context: one encoder per owner (the rolling log uses it under its lock).
public final class TextRecordEncoder {
    public var writer = ByteWriter(capacity: 4096)
    private let labels: [[UInt8]]
    private let stableNames: [[UInt8]]

    public init(vocabulary: RecordVocabulary) {
        labels = vocabulary.labels.map { Self.printable($0) }
        stableNames = vocabulary.stableNames.map { Self.printable($0) }
    }

    /// UTF-8 bytes without control characters (a label must not break the line).
    static func printable(_ s: String) -> [UInt8] { s.utf8.map { $0 < 0x20 ? UInt8(ascii: " ") : $0 } }

    private func stable(_ i: Int32) {
        if i >= 0 && Int(i) < stableNames.count { writer.raw(stableNames[Int(i)]) } else { writer.ascii("unknown") }
    }

    /// ` name` when the record names its source (several sources share one log), else nothing.
    /// Names are `[a-z0-9_-]`; anything else is made printable all the same.
    private func sourceName(_ record: PublishedRecord) {
        guard !record.source.isEmpty else { return }
        writer.byte(0x20)
        var s = record.source
        s.withUTF8 { p in for b in p { writer.byte(b < 0x21 ? UInt8(ascii: "_") : b) } }
    }

    /// The text line for `record`, or nil for kinds that have no text form (they are not logged).
    public func encode(_ record: PublishedRecord) -> UnsafeRawBufferPointer? {
        writer.reset()
        switch record.kind {
        case .classification:
            guard let r = record.result else { return nil }
            writer.rfc3339Millis(realtimeNs: r.realtimeNs)
            sourceName(record)
            writer.ascii(" #")
            writer.uint(r.seq)
            if r.topCount > 0 {
                writer.byte(0x20)
                let c = Int(r.topClasses[0])
                if c >= 0 && c < labels.count { writer.raw(labels[c]) } else { writer.ascii("class "); writer.int(Int64(c)) }
                writer.byte(0x20)
                writer.fixed(Double(r.topScores[0]), decimals: 2)
            }
            if r.hasStable {
                writer.ascii(" (stable: ")
                stable(r.stableLabel)
                writer.byte(UInt8(ascii: ")"))
            }
            writer.byte(0x20)
            writer.fixed(Double(r.totalNs) / 1e6, decimals: 1)
            writer.ascii(" ms")
            if r.dropped > 0 {
                writer.ascii(" (dropped ")
                writer.uint(r.dropped)
                writer.byte(UInt8(ascii: ")"))
            }
        case .change:
            guard let r = record.result else { return nil }
            writer.rfc3339Millis(realtimeNs: r.realtimeNs)
            sourceName(record)
            writer.ascii(" #")
            writer.uint(r.seq)
            writer.ascii(" change: ")
            stable(r.previousStable)
            writer.ascii(" -> ")
            stable(r.stableLabel)
            writer.ascii(" (")
            stable(r.previousStable)
            writer.ascii(" lasted ")
            writer.fixed(Double(r.previousStableNs) / 1e9, decimals: 1)
            writer.ascii(" s)")
        case .camera:
            // Camera records come from the source as JSON lines (rare): render their main fields.
            guard case .object(let o)? = try? JSONParser.parse(UnsafeRawBufferPointer(rebasing: record.json.prefix(while: { $0 != 0x0A }))) else {
                return nil
            }
            func str(_ k: String) -> String? { if case .string(let s)? = o[k] { return s }; return nil }
            func num(_ k: String) -> Int? { if case .number(let d)? = o[k] { return Int(d) }; return nil }
            writer.raw(Self.printable(str("time").map { String($0.prefix(23)) + "Z" } ?? "-"))
            writer.ascii(" camera ")
            writer.raw(Self.printable(str("source") ?? "?"))
            writer.ascii(": ")
            writer.raw(Self.printable(str("state") ?? "?"))
            if let f = str("format"), let w = num("width"), let h = num("height") {
                writer.raw(Self.printable(" \(f) \(w)x\(h)"))
            }
            if let d = num("downtime_ms") { writer.raw(Self.printable(" after \(d) ms down")) }
            if let r = str("reason") ?? str("detail") { writer.raw(Self.printable(" (\(r))")) }
        default:
            return nil
        }
        writer.byte(0x0A)
        return writer.overflowed ? nil : writer.bytes
    }
}

/// Where encoded records go (the socket, the rolling log).
/// Thread context: `publish` is called from the pipeline's publishing worker and must never block on
/// a consumer: a sink that cannot keep up drops and counts.
public protocol RecordSink: AnyObject, Sendable {
    /// `line` is one complete JSON object followed by a newline; valid only during the call.
    func publish(_ line: UnsafeRawBufferPointer)
    /// The same with what the sink may need to filter or re-render the record.
    func publish(_ record: PublishedRecord)
}

extension RecordSink {
    public func publish(_ record: PublishedRecord) { publish(record.json) }
}
