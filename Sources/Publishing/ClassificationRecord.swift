/// One classified frame, in storage that is allocated once and reused (the pipeline keeps a ring
/// of these), so producing a record allocates nothing.
/// Thread context: written by one worker, then read by the result thread; the pipeline's ring
/// hand-off orders the two.
public final class ClassificationResult: @unchecked Sendable {
    public var seq: UInt64 = 0
    public var captureNs: UInt64 = 0
    /// Wall-clock time of capture (CLOCK_REALTIME ns), for the record's `time`.
    public var realtimeNs: UInt64 = 0
    public var fileIndex: Int32 = -1
    public var topCount = 0
    public let topClasses: UnsafeMutableBufferPointer<Int32>
    public let topScores: UnsafeMutableBufferPointer<Float>
    public var preprocessNs: UInt64 = 0
    public var inferenceNs: UInt64 = 0
    /// Capture → hand-off to the publishers.
    public var totalNs: UInt64 = 0
    /// Frames lost (any cause) since the previous record.
    public var dropped: UInt64 = 0
    /// False when inference failed for this frame (no record is published for it).
    public var ok = true

    public init(maxTopK: Int) {
        topClasses = .allocate(capacity: maxTopK)
        topClasses.initialize(repeating: 0)
        topScores = .allocate(capacity: maxTopK)
        topScores.initialize(repeating: 0)
    }

    deinit {
        topClasses.deallocate()
        topScores.deallocate()
    }
}

/// Encodes records as JSON Lines (one object and a newline per record); see docs/protocol.md.
/// Strings that repeat (source, model, labels, file names) are escaped once at start-up.
/// Thread context: one encoder per thread.
public final class RecordEncoder {
    public var writer = ByteWriter(capacity: 16 * 1024)
    private let source: [UInt8]
    private let model: [UInt8]
    private let labels: [[UInt8]]
    private let files: [[UInt8]]

    public init(source: String, model: String, jsonEscapedLabels: [[UInt8]], fileNames: [String]) {
        var w = ByteWriter(capacity: 4096)
        func escaped(_ s: String) -> [UInt8] {
            w.reset()
            w.jsonString(s)
            return Array(w.bytes)
        }
        self.source = escaped(source)
        self.model = escaped(model)
        labels = jsonEscapedLabels
        files = fileNames.map(escaped)
    }

    /// `{"type":"classification",…}\n` into `writer`; returns the bytes (valid until the next call).
    public func classification(_ r: ClassificationResult) -> UnsafeRawBufferPointer {
        writer.reset()
        writer.ascii("{\"type\":\"classification\",\"seq\":")
        writer.uint(r.seq)
        writer.ascii(",\"time\":\"")
        writer.rfc3339(realtimeNs: r.realtimeNs)
        writer.ascii("\",\"capture_ns\":")
        writer.uint(r.captureNs)
        writer.ascii(",\"source\":")
        writer.raw(source)
        if r.fileIndex >= 0 && Int(r.fileIndex) < files.count {
            writer.ascii(",\"file\":")
            writer.raw(files[Int(r.fileIndex)])
        }
        writer.ascii(",\"model\":")
        writer.raw(model)
        writer.ascii(",\"top\":[")
        for i in 0..<r.topCount {
            if i > 0 { writer.byte(UInt8(ascii: ",")) }
            let c = Int(r.topClasses[i])
            writer.ascii("{\"class\":")
            writer.int(Int64(c))
            writer.ascii(",\"label\":")
            if c >= 0 && c < labels.count {
                writer.byte(0x22); writer.raw(labels[c]); writer.byte(0x22)
            } else {
                writer.ascii("null")
            }
            writer.ascii(",\"score\":")
            writer.fixed(Double(r.topScores[i]), decimals: 4)
            writer.byte(UInt8(ascii: "}"))
        }
        writer.ascii("],\"latency_ms\":{\"preprocess\":")
        writer.fixed(Double(r.preprocessNs) / 1e6, decimals: 3)
        writer.ascii(",\"inference\":")
        writer.fixed(Double(r.inferenceNs) / 1e6, decimals: 3)
        writer.ascii(",\"total\":")
        writer.fixed(Double(r.totalNs) / 1e6, decimals: 3)
        writer.ascii("},\"dropped\":")
        writer.uint(r.dropped)
        writer.ascii("}\n")
        return writer.bytes
    }
}

/// Where encoded records go (the socket, the rolling log).
/// Thread context: `publish` is called from the pipeline's result thread and must never block on
/// a consumer: a sink that cannot keep up drops and counts.
public protocol RecordSink: AnyObject, Sendable {
    /// `line` is one complete JSON object followed by a newline; valid only during the call.
    func publish(_ line: UnsafeRawBufferPointer)
}
