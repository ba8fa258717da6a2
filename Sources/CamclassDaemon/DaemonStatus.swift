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
    public func protocolContext() -> ProtocolContext {
        var hello = ProtocolHello()
        hello.modelID = model.name
        hello.modelSHA256 = modelIdentity.sha256
        hello.modelFile = model.modelPath.split(separator: "/").last.map(String.init) ?? model.modelPath
        hello.engine = engine.info.summary
        hello.source = source.name
        hello.labels = labels.count
        hello.topK = config.model.topK
        hello.stable = config.stable.enabled
        hello.stableGroups = pipeline.vocabulary.groupCount
        let status: @Sendable () -> [UInt8] = { [weak self] in self?.statusReport().encode() ?? [] }
        return ProtocolContext(hello: hello, vocabulary: pipeline.vocabulary, maxTopK: config.model.topK, status: status)
    }

    /// The model file's SHA-256: the sidecar's `sha256` when it has one, else computed once per
    /// model file (at start-up, see `buildDaemon`) and remembered.
    var modelIdentity: (sha256: String, computed: Bool) {
        if let s = model.sha256, !s.isEmpty { return (s.lowercased(), false) }
        return (ModelHashes.sha256(of: model.modelPath, logger: logger), true)
    }

    /// Everything `status` reports, gathered now (called on the socket's I/O thread).
    public func statusReport() -> StatusReport {
        var r = StatusReport()
        r.realtimeNs = Clock.realtimeNs()
        r.uptimeSeconds = ProcessClock.uptimeSeconds()
        r.modelID = model.name
        r.engine = engine.info.summary
        r.sourceName = source.name
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
        r.queueCapacity = pipeline.queue.capacity
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

/// SHA-256 of model files without a sidecar hash, computed once per file (identity: path, inode,
/// size, mtime) and kept.
enum ModelHashes {
    private static let known = Mutex<[String: String]>([:])

    static func sha256(of path: String, logger: Logger) -> String {
        let f = FileStamp(path)
        let stamp = "\(f.path)|\(f.device)|\(f.inode)|\(f.size)|\(f.mtimeNs)"
        if let h = known.withLock({ $0[stamp] }) { return h }
        do {
            let h = try SHA256.hex(file: path)
            known.withLock { $0[stamp] = h }
            logger.info("model file hashed", metadata: ["model.path": "\(path)", "model.sha256": "\(h)"])
            return h
        } catch {
            logger.warning("cannot hash the model file; hello reports sha256 null", metadata: ["model.path": "\(path)", "error": "\(error)"])
            return ""
        }
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
