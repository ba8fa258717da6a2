/// Everything `{"status":{}}` and `camclass status` report, gathered by the daemon from its
/// stages and encoded as one `{"type":"status",…}` line (docs/protocol.md).
public struct StatusReport: Sendable, Equatable {
    public struct Percentiles: Sendable, Equatable {
        public var p50 = 0.0, p95 = 0.0, p99 = 0.0
        public init(p50: Double = 0, p95: Double = 0, p99: Double = 0) {
            self.p50 = p50
            self.p95 = p95
            self.p99 = p99
        }
    }

    public struct Stage: Sendable, Equatable {
        public var name: String
        public var ms: Percentiles
        public init(name: String, ms: Percentiles) {
            self.name = name
            self.ms = ms
        }
    }

    public struct Drops: Sendable, Equatable {
        public var queueFull = 0
        public var corruptFrame = 0
        public var driverGap = 0
        public var inferenceError = 0
        public var poolExhausted = 0
        public var subscriberOverflow = 0
        public init() {}
    }

    public struct Log: Sendable, Equatable {
        public var path = ""
        public var format = "json"
        public var bytesWritten = 0
        public var recordsWritten = 0
        public var currentFileBytes = 0
        public var rotations = 0
        public var lostRecords = 0
        public var writeErrors = 0
        public var failing = false
        public var lastError: String?
        public init() {}
    }

    public var realtimeNs: UInt64 = 0
    public var uptimeSeconds = 0.0
    public var modelID = ""
    public var engine = ""
    public var sourceName = ""
    public var sourceState = SourceState.starting
    public var sourceDetail: String?
    public var format = "NV12"
    public var width = 0
    public var height = 0
    public var windowSeconds = 0.0
    public var fpsIn = 0.0
    public var fpsOut = 0.0
    public var latency: [Stage] = []
    public var queueDepth = 0
    public var queueCapacity = 0
    public var captured = 0
    public var published = 0
    public var drops = Drops()
    public var stableLabel: String?
    public var subscribers: [SubscriberStats] = []
    public var log = Log()

    public init() {}

    public func encode() -> [UInt8] {
        ByteWriter.whole(capacity: 16 * 1024 + subscribers.count * 200 + log.path.utf8.count * 6 + (sourceDetail?.utf8.count ?? 0) * 6) { w in
            w.ascii("{\"type\":\"status\",\"time\":\"")
            w.rfc3339(realtimeNs: realtimeNs)
            w.ascii("\",\"version\":")
            w.jsonString(CamclassProtocol.daemonVersion)
            w.ascii(",\"uptime_s\":")
            w.fixed(uptimeSeconds, decimals: 3)
            w.ascii(",\"model\":{\"id\":")
            w.jsonString(modelID)
            w.ascii(",\"engine\":")
            w.jsonString(engine)
            w.ascii("},\"source\":{\"name\":")
            w.jsonString(sourceName)
            w.ascii(",\"state\":")
            w.jsonString(sourceState.name)
            if let d = sourceDetail { w.ascii(",\"detail\":"); w.jsonString(d) }
            w.ascii(",\"format\":")
            w.jsonString(format)
            w.ascii(",\"width\":")
            w.uint(UInt64(width))
            w.ascii(",\"height\":")
            w.uint(UInt64(height))
            w.ascii("},\"fps\":{\"in\":")
            w.fixed(fpsIn, decimals: 2)
            w.ascii(",\"out\":")
            w.fixed(fpsOut, decimals: 2)
            w.ascii(",\"window_s\":")
            w.fixed(windowSeconds, decimals: 1)
            w.ascii("},\"latency_ms\":{")
            for (i, s) in latency.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.jsonString(s.name)
                w.ascii(":{\"p50\":")
                w.fixed(s.ms.p50, decimals: 3)
                w.ascii(",\"p95\":")
                w.fixed(s.ms.p95, decimals: 3)
                w.ascii(",\"p99\":")
                w.fixed(s.ms.p99, decimals: 3)
                w.byte(UInt8(ascii: "}"))
            }
            w.ascii("},\"queue\":{\"depth\":")
            w.uint(UInt64(queueDepth))
            w.ascii(",\"capacity\":")
            w.uint(UInt64(queueCapacity))
            w.ascii("},\"frames\":{\"captured\":")
            w.uint(UInt64(captured))
            w.ascii(",\"published\":")
            w.uint(UInt64(published))
            w.ascii("},\"drops\":{\"queue_full\":")
            w.uint(UInt64(drops.queueFull))
            w.ascii(",\"corrupt_frame\":")
            w.uint(UInt64(drops.corruptFrame))
            w.ascii(",\"driver_gap\":")
            w.uint(UInt64(drops.driverGap))
            w.ascii(",\"inference_error\":")
            w.uint(UInt64(drops.inferenceError))
            w.ascii(",\"pool_exhausted\":")
            w.uint(UInt64(drops.poolExhausted))
            w.ascii(",\"subscriber_overflow\":")
            w.uint(UInt64(drops.subscriberOverflow))
            w.ascii("},\"stable\":")
            if let s = stableLabel { w.jsonString(s) } else { w.ascii("null") }
            w.ascii(",\"subscribers\":[")
            for (i, s) in subscribers.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.ascii("{\"id\":")
                w.uint(UInt64(s.id))
                w.ascii(",\"delivered\":")
                w.uint(UInt64(s.delivered))
                w.ascii(",\"dropped\":")
                w.uint(UInt64(s.dropped))
                w.ascii(",\"filtered\":")
                w.uint(UInt64(s.filtered))
                w.ascii(",\"buffered_bytes\":")
                w.uint(UInt64(s.buffered))
                w.ascii(",\"connected_s\":")
                w.fixed(s.connectedSeconds, decimals: 1)
                w.byte(UInt8(ascii: "}"))
            }
            w.ascii("],\"log\":{\"path\":")
            w.jsonString(log.path)
            w.ascii(",\"format\":")
            w.jsonString(log.format)
            w.ascii(",\"bytes_written\":")
            w.uint(UInt64(log.bytesWritten))
            w.ascii(",\"records_written\":")
            w.uint(UInt64(log.recordsWritten))
            w.ascii(",\"current_file_bytes\":")
            w.uint(UInt64(log.currentFileBytes))
            w.ascii(",\"rotations\":")
            w.uint(UInt64(log.rotations))
            w.ascii(",\"lost_records\":")
            w.uint(UInt64(log.lostRecords))
            w.ascii(",\"write_errors\":")
            w.uint(UInt64(log.writeErrors))
            w.ascii(",\"failing\":")
            w.ascii(log.failing ? "true" : "false")
            w.ascii(",\"last_error\":")
            if let e = log.lastError { w.jsonString(e) } else { w.ascii("null") }
            w.ascii("}}\n")
        }
    }
}

/// One subscriber as `status` reports it (kept by the socket publisher's I/O thread).
public struct SubscriberStats: Sendable, Equatable {
    public var id: Int
    public var delivered: Int
    public var dropped: Int
    public var buffered: Int
    /// Records the subscriber's filter skipped (not losses).
    public var filtered: Int = 0
    public var requests: Int = 0
    public var connectedSeconds: Double = 0

    public init(id: Int, delivered: Int, dropped: Int, buffered: Int, filtered: Int = 0, requests: Int = 0,
                connectedSeconds: Double = 0) {
        self.id = id
        self.delivered = delivered
        self.dropped = dropped
        self.buffered = buffered
        self.filtered = filtered
        self.requests = requests
        self.connectedSeconds = connectedSeconds
    }
}
