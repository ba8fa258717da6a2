import WireFormat
import Capture
import Glibc
import Inference
import Logging
import Pipeline
import Publishing
import Support
import Synchronization

extension DaemonConfig {
    /// The model's labels plus the coarse groups of `stable.groups` (when set).
    /// - Throws: `DaemonError` (config) naming the groups file and the bad entry.
    public func recordVocabulary(labels: LabelSet) throws -> RecordVocabulary {
        guard stable.enabled, !stable.groups.isEmpty else { return RecordVocabulary(labels: labels.names) }
        do {
            return RecordVocabulary(labels: labels.names, groups: try CoarseGroups.load(path: stable.groups, classes: labels.count))
        } catch {
            throw DaemonError(message: "stable.groups: \(error)", status: .config)
        }
    }
}

extension Daemon {
    /// What `hello` says and where `status` comes from; given to the socket before it starts.
    /// Called on the socket's I/O thread for each connection: reads the running generation once, so
    /// a reload in between cannot mix old and new values, and computes nothing expensive.
    public func protocolContext() -> ProtocolContext {
        let g = supervisor.current
        var hello = ProtocolHello()
        hello.modelID = g.parts.model.name
        hello.modelSHA256 = g.parts.modelSHA256
        hello.modelFile = g.parts.model.modelPath.split(separator: "/").last.map(String.init) ?? g.parts.model.modelPath
        hello.engine = g.parts.engine.info.summary
        hello.source = g.sources.first?.name ?? ""
        hello.sources = g.sources.map { h in
            HelloSource(name: h.name, path: h.spec.options.path, state: Self.state(of: h, in: g.pipeline))
        }
        hello.labels = g.parts.labels.count
        hello.topK = g.config.model.topK
        hello.stable = g.config.stable.enabled
        hello.stableGroups = g.pipeline.vocabulary.groupCount
        let status: @Sendable () -> [UInt8] = { [weak self] in self?.statusReport().encode() ?? [] }
        return ProtocolContext(hello: hello, vocabulary: g.pipeline.vocabulary, maxTopK: g.config.model.topK, status: status)
    }

    /// A source's state as the pipeline sees it, and `lost` while its camera is gone.
    static func state(of h: SourceHandle, in pipeline: ClassificationPipeline) -> SourceState {
        var state = pipeline.lane(named: h.name)?.state ?? .stopped
        if let camera = h.inner as? V4L2Camera, state == .streaming || state == .starting, camera.isLost { state = .lost }
        return state
    }

    /// Everything `status` reports, gathered now (called on the socket's I/O thread) from one
    /// generation read once: the totals over every source, then each source.
    public func statusReport() -> StatusReport {
        let g = supervisor.current
        let pipeline = g.pipeline
        var r = StatusReport()
        r.realtimeNs = Clock.realtimeNs()
        r.uptimeSeconds = ProcessClock.uptimeSeconds()
        r.modelID = g.parts.model.name
        r.engine = g.parts.engine.info.summary
        let c = pipeline.counters
        let summary = pipeline.latency.summary(captured: c.captured)
        r.windowSeconds = summary.windowSeconds
        r.fpsIn = summary.fpsIn
        r.fpsOut = summary.fpsOut
        r.latency = summary.stages
        r.queueDepth = c.queueDepth
        r.queueCapacity = pipeline.options.queueCapacity * max(1, g.sources.count)
        r.captured = c.captured
        r.published = c.published
        r.drops = StatusReport.Drops(c)
        r.drops.subscriberOverflow = socket.droppedTotal
        for h in g.sources {
            guard let lane = pipeline.lane(named: h.name) else { continue }
            var s = StatusReport.SourceStatus(name: h.name, path: h.spec.options.path, state: Self.state(of: h, in: pipeline))
            let lc = pipeline.counters(of: lane)
            let ls = lane.latency.summary(captured: lc.captured)
            s.weight = lane.weight
            s.fpsIn = ls.fpsIn
            s.fpsOut = ls.fpsOut
            s.latency = ls.stages
            s.captured = lc.captured
            s.published = lc.published
            s.drops = StatusReport.Drops(lc)
            s.queueDepth = lc.queueDepth
            s.queueCapacity = lane.queueCapacity
            s.stableLabel = lane.stableLabelName
            let size = lane.frameSize
            if size.width > 0 { (s.width, s.height) = (size.width, size.height) }
            if let camera = h.inner as? V4L2Camera {
                // The camera counts both kinds (short raw buffers at capture, MJPEG the workers
                // refused) over its whole life; the lane only the workers', since the last reload.
                s.drops.corruptFrame = max(lc.droppedCorrupt, camera.stats.corruptFrames)
                if let f = camera.format {
                    s.format = f.format.rawValue
                    (s.width, s.height) = (f.width, f.height)
                }
                if s.state == .lost { s.detail = "camera lost; re-opening" }
            }
            if let e = lane.error { s.detail = e }
            r.sources.append(s)
        }
        r.drops.corruptFrame = max(r.drops.corruptFrame, r.sources.reduce(0) { $0 + $1.drops.corruptFrame })
        // The single-source fields describe the first source.
        if let first = r.sources.first {
            r.sourceName = first.name
            r.sourceState = first.state
            if let f = first.format { r.format = f }
            r.width = first.width ?? 0
            r.height = first.height ?? 0
            r.stableLabel = first.stableLabel
        }
        r.subscribers = socket.subscriberStats
        let l = log.currentStats
        r.log.path = log.options.path
        r.log.format = log.options.format.rawValue
        r.log.bytesWritten = l.bytesWritten
        r.log.recordsWritten = l.recordsWritten
        r.log.currentFileBytes = l.currentFileBytes
        r.log.rotations = l.rotations
        r.log.lostRecords = l.lostRecords
        r.log.writeErrors = l.writeErrors
        r.log.failing = l.failing
        r.log.lastError = l.lastError
        return r
    }
}

extension StatusReport.Drops {
    /// The pipeline's drop counters by cause (subscriber overflow is the socket's, set apart).
    init(_ c: PipelineCounters) {
        self.init()
        queueFull = c.droppedQueueFull
        poolExhausted = c.droppedPoolExhausted
        driverGap = c.droppedSource
        inferenceError = c.inferenceErrors
        corruptFrame = c.droppedCorrupt
    }
}

/// The process's own age, from /proc (so `uptime_s` counts from exec, not from some later step).
enum ProcessClock {
    static func uptimeSeconds() -> Double {
        guard let text = readTextFile("/proc/self/stat"), let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // Field 22 (starttime, clock ticks after boot) is the 20th after the command name.
        guard fields.count > 19, let ticks = Double(fields[19]) else { return 0 }
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let now = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        return max(0, now - ticks / Double(sysconf(Int32(_SC_CLK_TCK))))
    }
}
