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
        hello.labels = g.parts.labels.count
        hello.topK = g.config.model.topK
        hello.stable = g.config.stable.enabled
        hello.stableGroups = g.pipeline.vocabulary.groupCount
        let status: @Sendable () -> [UInt8] = { [weak self] in self?.statusReport().encode() ?? [] }
        return ProtocolContext(hello: hello, vocabulary: g.pipeline.vocabulary, maxTopK: g.config.model.topK, status: status)
    }

    /// Everything `status` reports, gathered now (called on the socket's I/O thread) from one
    /// generation read once.
    public func statusReport() -> StatusReport {
        let g = supervisor.current
        let pipeline = g.pipeline, source = g.sources[0].inner
        var r = StatusReport()
        r.realtimeNs = Clock.realtimeNs()
        r.uptimeSeconds = ProcessClock.uptimeSeconds()
        r.modelID = g.parts.model.name
        r.engine = g.parts.engine.info.summary
        r.sourceName = g.sources[0].name
        r.sourceState = pipeline.sourceState
        let size = pipeline.frameSize
        r.width = size.width
        r.height = size.height
        let c = pipeline.counters
        let summary = pipeline.latency.summary(captured: c.captured)
        r.windowSeconds = summary.windowSeconds
        r.fpsIn = summary.fpsIn
        r.fpsOut = summary.fpsOut
        r.latency = summary.stages
        r.queueDepth = c.queueDepth
        r.queueCapacity = pipeline.options.queueCapacity
        r.captured = c.captured
        r.published = c.published
        r.drops.queueFull = c.droppedQueueFull
        r.drops.poolExhausted = c.droppedPoolExhausted
        r.drops.driverGap = c.droppedSource
        r.drops.inferenceError = c.inferenceErrors
        r.drops.subscriberOverflow = socket.droppedTotal
        if let camera = source as? V4L2Camera {
            let s = camera.stats
            r.drops.corruptFrame = s.corruptFrames
            if let f = camera.format {
                r.format = f.format.rawValue
                r.width = f.width
                r.height = f.height
            }
            if r.sourceState == .streaming || r.sourceState == .starting, s.losses > s.recoveries {
                r.sourceState = .lost
            }
        }
        r.stableLabel = pipeline.stableLabelName
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
