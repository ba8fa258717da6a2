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

    /// One source's part of the report (`"sources":[…]`): the same shapes as the totals.
    public struct SourceStatus: Sendable, Equatable {
        /// The configured name, as records carry it in `source`.
        public var name: String
        /// The configured path (device, by-id link, `auto`, replay folder/file).
        public var path: String
        public var state: SourceState
        /// Why the state is what it is, when there is something to say (e.g. the loss reason).
        public var detail: String?
        /// The negotiated pixel format and size; nil (`null`) until known.
        public var format: String?
        public var width: Int?
        public var height: Int?
        /// The source's share of the engine (`weight`, default 1).
        public var weight = 1
        /// Over the report's `window_s`.
        public var fpsIn = 0.0
        public var fpsOut = 0.0
        public var captured = 0
        public var published = 0
        /// Frames this source lost, by cause (`subscriberOverflow` is not per source and is not encoded).
        public var drops = Drops()
        public var queueDepth = 0
        public var queueCapacity = 0
        /// Per-stage latency, as the totals' `latency`.
        public var latency: [Stage] = []
        public var stableLabel: String?

        public init(name: String, path: String, state: SourceState) {
            self.name = name
            self.path = path
            self.state = state
        }
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
    /// Each configured source, in configuration order (the fields above are the totals, and
    /// `sourceName`… the first source, for clients written before `sources`).
    public var sources: [SourceStatus] = []
    public var subscribers: [SubscriberStats] = []
    public var log = Log()

    public init() {}

    /// `"latency_ms":{"stage":{"p50":…,"p95":…,"p99":…},…}`
    private static func latencyBlock(_ stages: [Stage], _ w: inout ByteWriter) {
        w.ascii("\"latency_ms\":{")
        for (i, s) in stages.enumerated() {
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
        w.byte(UInt8(ascii: "}"))
    }

    /// `"drops":{"queue_full":…,…` (without the closing brace: the totals add `subscriber_overflow`).
    private static func dropsBlock(_ d: Drops, _ w: inout ByteWriter) {
        w.ascii("\"drops\":{\"queue_full\":")
        w.uint(UInt64(max(0, d.queueFull)))
        w.ascii(",\"corrupt_frame\":")
        w.uint(UInt64(max(0, d.corruptFrame)))
        w.ascii(",\"driver_gap\":")
        w.uint(UInt64(max(0, d.driverGap)))
        w.ascii(",\"inference_error\":")
        w.uint(UInt64(max(0, d.inferenceError)))
        w.ascii(",\"pool_exhausted\":")
        w.uint(UInt64(max(0, d.poolExhausted)))
    }

    private static func sourceBlock(_ s: SourceStatus, _ w: inout ByteWriter) {
        w.ascii("{\"name\":")
        w.jsonString(s.name)
        w.ascii(",\"path\":")
        w.jsonString(s.path)
        w.ascii(",\"state\":")
        w.jsonString(s.state.name)
        if let d = s.detail { w.ascii(",\"detail\":"); w.jsonString(d) }
        w.ascii(",\"format\":")
        if let f = s.format { w.jsonString(f) } else { w.ascii("null") }
        w.ascii(",\"width\":")
        if let v = s.width { w.uint(UInt64(max(0, v))) } else { w.ascii("null") }
        w.ascii(",\"height\":")
        if let v = s.height { w.uint(UInt64(max(0, v))) } else { w.ascii("null") }
        w.ascii(",\"weight\":")
        w.uint(UInt64(max(0, s.weight)))
        w.ascii(",\"fps\":{\"in\":")
        w.fixed(s.fpsIn, decimals: 2)
        w.ascii(",\"out\":")
        w.fixed(s.fpsOut, decimals: 2)
        w.ascii("},")
        latencyBlock(s.latency, &w)
        w.ascii(",\"queue\":{\"depth\":")
        w.uint(UInt64(max(0, s.queueDepth)))
        w.ascii(",\"capacity\":")
        w.uint(UInt64(max(0, s.queueCapacity)))
        w.ascii("},\"frames\":{\"captured\":")
        w.uint(UInt64(max(0, s.captured)))
        w.ascii(",\"published\":")
        w.uint(UInt64(max(0, s.published)))
        w.ascii("},")
        dropsBlock(s.drops, &w)
        w.ascii("},\"stable\":")
        if let l = s.stableLabel { w.jsonString(l) } else { w.ascii("null") }
        w.byte(UInt8(ascii: "}"))
    }

    public func encode() -> [UInt8] {
        ByteWriter.whole(capacity: 16 * 1024 + subscribers.count * 200 + log.path.utf8.count * 6 + (sourceDetail?.utf8.count ?? 0) * 6
                         + sources.count * 1024) { w in
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
            w.ascii("},")
            Self.latencyBlock(latency, &w)
            w.ascii(",\"queue\":{\"depth\":")
            w.uint(UInt64(queueDepth))
            w.ascii(",\"capacity\":")
            w.uint(UInt64(queueCapacity))
            w.ascii("},\"frames\":{\"captured\":")
            w.uint(UInt64(captured))
            w.ascii(",\"published\":")
            w.uint(UInt64(published))
            w.ascii("},")
            Self.dropsBlock(drops, &w)
            w.ascii(",\"subscriber_overflow\":")
            w.uint(UInt64(drops.subscriberOverflow))
            w.ascii("},\"stable\":")
            if let s = stableLabel { w.jsonString(s) } else { w.ascii("null") }
            w.ascii(",\"sources\":[")
            for (i, s) in sources.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                Self.sourceBlock(s, &w)
            }
            w.ascii("],\"subscribers\":[")
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
